"""The frozen-prefix feature cache (``cache.features=true``): run the frozen part of the trunk once per image,
store its output, train the rest on the stored activations.

With ``finetune.layers=k`` the trunk up to its first trainable unit is frozen and in eval mode for the whole run
(:class:`~saliency_probe.callbacks.FreezeLayers`), and the data have no augmentation, so every epoch pushes the same
images through the same frozen layers to the same activations. Here the prefix runs once over the training and
validation images before the first epoch; its output (the input of the first trainable unit, the *boundary*;
for ``k=0`` the head layer's maps) goes to memory-mapped ``.npy`` files, and training and validation run the
trainable suffix and the head on them. The LightningModule is the usual one, with all of its parameters: only
its trunk's ``forward`` starts at the boundary while the run lasts (``Trunk.start_at``), and the batch's
``image`` entry holds the stored activations. Checkpoints are therefore full models (``probe.py ckpt=...``).

Layout (docs: README "Running at scale", docs/benchmarks.md "Feature cache")::

    <cache.dir>/<backbone>-<boundary>-<size>px-<dtype>-<16 hex of the key>/
        key.json        everything the cache is keyed by (written first)
        train.npy       (N_train, C, h, w) in cache.dtype (bfloat16 is stored as its uint16 bit pattern)
        val.npy         (N_val, C, h, w)
        complete.json   written last, atomically: shapes, bytes, build time

The key holds the architecture, a SHA-256 digest of the frozen prefix's own weights and buffers (so a random
initialisation keys by its seed, and two weights files never share a cache), the boundary, the input size,
a fingerprint of each image list (order, files, sizes, modification times) and of the transform, the dtype,
and where the activations were computed (device type, Trainer precision, torch version). A cache is reused
when every one of these matches and ``complete.json`` agrees with the files; otherwise it is built again, never
read. A build writes into a hidden ``.<name>.partial-<host>-<pid>-<hex>`` folder renamed into place after
``complete.json``, so an interrupted build leaves no folder that looks complete (its leftover is removed by the
next build on that host once its process is gone); concurrent jobs with one key may both build, the first
rename wins. Under DDP rank 0 plans, every rank computes a contiguous share of the images into the same files
(``paths.cache_dir`` must be visible to every rank), rank 0 completes the folder, and all ranks wait at barriers.
"""

from __future__ import annotations

import argparse
import contextlib
import hashlib
import json
import math
import os
import secrets
import shutil
import socket
import sys
import time
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pytorch_lightning as pl
import torch
from pytorch_lightning.utilities import rank_zero_only
from torch import nn
from torch.utils.data import DataLoader, Dataset, RandomSampler, SequentialSampler, Subset
from torchvision.models.resnet import BasicBlock, Bottleneck

from saliency_probe.data.images import IMAGENET_MEAN, IMAGENET_STD
from saliency_probe.data.items import image_file, item_without_image
from saliency_probe.errors import ConfigError
from saliency_probe.io_utils import write_json
from saliency_probe.models.backbone import BackboneSpec, architecture
from saliency_probe.models.trunks import SPLIT_FAMILIES, Trunk, TrunkSplit, make_trunk
from saliency_probe.validation import target_class

FORMAT_VERSION = 1
KEY_FILE = "key.json"
MARKER = "complete.json"
SPLITS = ("train", "val")
#: cache.dtype -> (torch dtype of the values, numpy dtype of the file).
DTYPES: dict[str, tuple[torch.dtype, Any]] = {
    "float32": (torch.float32, np.float32),
    "bfloat16": (torch.bfloat16, np.uint16),
    "float16": (torch.float16, np.float16),
}
#: Leaf modules whose eval-mode output is a fixed function of their input (BatchNorm: with running statistics).
DETERMINISTIC_LEAVES: tuple[type[nn.Module], ...] = (
    nn.Conv2d, nn.BatchNorm2d, nn.ReLU, nn.MaxPool2d, nn.AvgPool2d, nn.AdaptiveAvgPool2d, nn.Identity, nn.Dropout,
)
#: Containers whose forward adds nothing random to their children's (torchvision's residual blocks).
DETERMINISTIC_CONTAINERS: tuple[type[nn.Module], ...] = (nn.Sequential, BasicBlock, Bottleneck)
SUPPORTED_FAMILIES = ("vgg", "resnet")
#: Keys of a data config that would switch augmentation on (none of the framework's data modules has one).
AUGMENTATION_KEYS = ("augment", "augmentation", "augmentations", "train_transform", "transform")


# ------------------------------------------------------------------------------------------------------------
# the config: cache.features, cache.dtype, cache.dir
# ------------------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class CacheOptions:
    """The ``cache`` group: ``features`` (on/off), ``dtype`` of the stored activations, ``dir`` of the caches."""

    features: bool = False
    dtype: str = "float32"
    dir: str = "cache/features"

    @classmethod
    def from_config(cls, cfg: Any) -> CacheOptions:
        cache = cfg.get("cache") if cfg is not None else None
        if not cache:
            return cls()
        features = cache.get("features", False)
        if not isinstance(features, bool):
            raise ConfigError(f"cache.features={features!r} is not valid; expected true or false")
        dtype = str(cache.get("dtype", "float32"))
        if dtype not in DTYPES:
            raise ConfigError(f"cache.dtype={dtype!r} is not valid; choose float32 (exact), bfloat16 or float16 "
                              "(half the disk)")
        folder = cache.get("dir")
        if features and (folder is None or not str(folder).strip()):
            raise ConfigError("cache.dir is empty; expected the folder that holds the feature caches "
                              "(default ${paths.cache_dir}/features)")
        return cls(features, dtype, str(folder or cls.dir))


def finetunes_everything(finetune_layers: Any) -> bool:
    return str(finetune_layers).strip().lower() == "all"


def check_cache_config(cfg: Any) -> None:
    """Refuse ``cache.features=true`` where the cache would change the run (one-line ``ConfigError``): other than
    VGG or ResNet trunks, augmented data, no freezing callback, or a frozen prefix that is not a fixed function
    of the image in eval mode. ``finetune.layers=all`` is accepted and runs without a cache (noted at start)."""
    options = CacheOptions.from_config(cfg)
    if not options.features or finetunes_everything(cfg.finetune.layers):
        return
    spec = BackboneSpec.from_config(cfg.backbone)
    if spec.family not in SUPPORTED_FAMILIES:
        raise ConfigError(f"cache.features=true: backbone {spec.describe()} cannot be split at its freeze boundary; "
                          f"supported: {SPLIT_FAMILIES}; run it with cache.features=false")
    data = cfg.get("data") or {}
    for key in AUGMENTATION_KEYS:
        if data.get(key):
            raise ConfigError(f"cache.features=true: data.{key} is set; with augmentation the frozen layers see other "
                              "images every epoch and their output cannot be stored once (cache.features=false)")
    target = data.get("_target_")
    data_class = target_class(target) if target else None
    if data_class is not None:
        if getattr(data_class, "train_augmentation", "undeclared") is not None:
            raise ConfigError(f"cache.features=true: data module {target} does not declare train_augmentation=None "
                              "(fixed training images); the cache needs the same images every epoch")
    callbacks = cfg.get("callbacks") or {}
    if not any(entry and str(entry.get("_target_", "")).endswith("FreezeLayers") for entry in callbacks.values()):
        raise ConfigError("cache.features=true needs callbacks.freeze (FreezeLayers): without it nothing is frozen "
                          "and no layer output is fixed")
    with torch.device("meta"):
        trunk = make_trunk(spec)
    problem = prefix_problem(trunk, trunk.split(cfg.finetune.layers))
    if problem:
        raise ConfigError(f"cache.features=true: {problem}; run it with cache.features=false")


def prefix_problem(trunk: Trunk, split: TrunkSplit) -> str | None:
    """Why the frozen prefix's eval-mode output is not a fixed function of its input, or None."""
    for path in split.prefix:
        for name, module in trunk.get_submodule(path).named_modules(prefix=path):
            kind = type(module).__name__
            if any(True for _ in module.children()):
                if not isinstance(module, DETERMINISTIC_CONTAINERS):
                    return f"the frozen module {name} ({kind}) is not a known deterministic block"
            elif not isinstance(module, DETERMINISTIC_LEAVES):
                return f"the frozen module {name} ({kind}) is not known to be deterministic in eval mode"
            elif isinstance(module, nn.BatchNorm2d) and not module.track_running_stats:
                return (f"the frozen BatchNorm {name} keeps no running statistics, so in eval mode its output "
                        "depends on the other images of the batch")
    return None


# ------------------------------------------------------------------------------------------------------------
# the key
# ------------------------------------------------------------------------------------------------------------


def prefix_digest(trunk: Trunk, split: TrunkSplit) -> str:
    """SHA-256 of the frozen prefix's parameters and buffers (names, dtypes, shapes, bytes)."""
    digest = hashlib.sha256()
    for path in split.prefix:
        for name, tensor in sorted(trunk.get_submodule(path).state_dict(prefix=f"{path}.").items()):
            value = tensor.detach().to("cpu").contiguous().reshape(-1)
            digest.update(f"{name}|{value.dtype}|{tuple(tensor.shape)}|".encode())
            digest.update(value.view(torch.uint8).numpy().tobytes())
    return digest.hexdigest()


def image_list_fingerprint(dataset: Dataset) -> str:
    """SHA-256 of a data set's image list in order: each item's file (absolute), size and modification time."""
    digest = hashlib.sha256()
    for index in range(len(dataset)):
        path = image_file(dataset, index)
        if path is None:
            raise ConfigError(f"cache.features=true: the data set {type(dataset).__name__} does not name the image "
                              "file of its items (image_file), so a cache of it cannot be keyed")
        stat = path.stat()
        digest.update(f"{index}|{path.resolve()}|{stat.st_size}|{stat.st_mtime_ns}\n".encode())
    return digest.hexdigest()


@dataclass(frozen=True)
class CacheKey:
    """What a cache is keyed by (``fields``, written to ``key.json``) and the folder name derived from it."""

    fields: dict[str, Any]

    @property
    def digest(self) -> str:
        return hashlib.sha256(json.dumps(self.fields, sort_keys=True).encode()).hexdigest()

    @property
    def folder_name(self) -> str:
        boundary = self.fields["boundary"].replace(" ", "_")
        return (f"{self.fields['backbone']['name']}-{boundary}-{self.fields['image_size']}px-"
                f"{self.fields['dtype']}-{self.digest[:16]}")


def cache_key(trunk: Trunk, split: TrunkSplit, datasets: Mapping[str, Dataset], image_size: int, dtype: str,
              device: torch.device | str = "cpu", precision: str = "32-true") -> CacheKey:
    """The key of the cache of ``trunk``'s prefix over ``datasets`` (``{"train": ..., "val": ...}``)."""
    return CacheKey({
        "format": FORMAT_VERSION,
        "backbone": json.loads(trunk.spec.architecture_key()) | {"name": trunk.spec.name},
        "prefix_digest": prefix_digest(trunk, split),
        "boundary": split.boundary,
        "prefix": list(split.prefix),
        "image_size": int(image_size),
        "transform": {"resize": "bilinear, antialiased, aspect not kept", "mean": list(IMAGENET_MEAN),
                      "std": list(IMAGENET_STD)},
        "images": {name: {"count": len(data), "fingerprint": image_list_fingerprint(data)}
                   for name, data in datasets.items()},
        "dtype": dtype,
        "computed": {"device": torch.device(device).type, "precision": str(precision),
                     "torch": torch.__version__.split("+")[0]},
    })


# ------------------------------------------------------------------------------------------------------------
# storage
# ------------------------------------------------------------------------------------------------------------


def to_storage(values: torch.Tensor, dtype: str) -> np.ndarray:
    """Activations as the array stored for ``dtype`` (round to nearest even; bfloat16 as its uint16 bits)."""
    converted = values.detach().to("cpu", DTYPES[dtype][0])
    if dtype == "float16" and not bool(torch.isfinite(converted).all()):
        raise ConfigError(f"cache.dtype=float16: activations at the boundary reach {float(values.abs().max()):.4g}, "
                          "beyond float16's range (65504); use cache.dtype=bfloat16 or float32")
    return (converted.view(torch.uint16) if dtype == "bfloat16" else converted).numpy()


def from_storage(stored: np.ndarray, dtype: str) -> torch.Tensor:
    """Stored rows as float32 activations (a copy out of the memory map)."""
    tensor = torch.from_numpy(np.array(stored))
    if dtype == "bfloat16":
        tensor = tensor.view(torch.bfloat16)
    return tensor.to(torch.float32)


def folder_bytes(folder: Path) -> int:
    return sum(path.stat().st_size for path in folder.iterdir() if path.is_file())


def _complete_problem(folder: Path, key: CacheKey) -> str | None:
    """Why ``folder`` is not a complete cache for ``key``, or None."""
    marker = folder / MARKER
    if not marker.is_file():
        return f"no {MARKER} (an interrupted or foreign build)"
    try:
        record = json.loads(marker.read_text())
    except (OSError, ValueError) as error:
        return f"unreadable {MARKER} ({error})"
    if record.get("key_digest") != key.digest or record.get("key") != key.fields:
        return f"{MARKER} was written for another key"
    for name, entry in (record.get("arrays") or {}).items():
        path = folder / f"{name}.npy"
        if not path.is_file() or path.stat().st_size != entry.get("bytes"):
            return f"{path.name} is missing or has another size than {MARKER} records"
        try:
            array = np.load(path, mmap_mode="r")
        except (OSError, ValueError) as error:
            return f"{path.name} is not a readable .npy file ({error})"
        if list(array.shape) != entry.get("shape") or str(array.dtype) != entry.get("file_dtype"):
            return f"{path.name} holds {array.shape} {array.dtype}, not what {MARKER} records"
    if sorted(record.get("arrays") or {}) != sorted(key.fields["images"]):
        return f"{MARKER} lists other splits"
    return None


def _process_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _partial_name(name: str) -> str:
    """Prefix of the hidden build folders of cache ``name`` (``.<name>.partial-<host>-<pid>-<hex>``)."""
    return f".{name}.partial-"


def _remove_stale_partials(root: Path, name: str) -> list[Path]:
    """Remove the build folders of ``name`` left by dead processes of this host; return them."""
    removed = []
    for folder in sorted(root.glob(_partial_name(name) + "*")):
        try:
            host, pid, _ = folder.name[len(_partial_name(name)):].rsplit("-", 2)
            alive = _process_alive(int(pid))
        except ValueError:
            continue
        if host == socket.gethostname() and not alive:
            shutil.rmtree(folder, ignore_errors=True)
            removed.append(folder)
    return removed


def human_bytes(count: float) -> str:
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if abs(count) < 1024 or unit == "TiB":
            return f"{count:.0f} {unit}" if unit == "B" else f"{count:.1f} {unit}"
        count /= 1024
    raise AssertionError("unreachable")


# ------------------------------------------------------------------------------------------------------------
# ranks (DDP) and the build
# ------------------------------------------------------------------------------------------------------------


@dataclass
class Ranks:
    """This process's place among the training processes and the two collectives the build needs."""

    rank: int = 0
    world: int = 1
    barrier: Callable[[], None] = field(default=lambda: None)
    broadcast: Callable[[Any], Any] = field(default=lambda obj: obj)

    @classmethod
    def of(cls, trainer: pl.Trainer) -> Ranks:
        strategy = trainer.strategy
        return cls(trainer.global_rank, trainer.world_size, strategy.barrier, lambda obj: strategy.broadcast(obj, 0))

    @property
    def is_zero(self) -> bool:
        return self.rank == 0


class _Images(Dataset):
    """The ``image`` entry of a data set's items (what the prefix reads)."""

    def __init__(self, dataset: Dataset) -> None:
        self.dataset = dataset

    def __len__(self) -> int:
        return len(self.dataset)

    def __getitem__(self, index: int) -> torch.Tensor:
        return self.dataset[index]["image"]


@contextlib.contextmanager
def _eval_mode(module: nn.Module) -> Iterator[None]:
    """Every submodule in eval mode, each one's own mode restored afterwards."""
    modes = {sub: sub.training for sub in module.modules()}
    for sub in modes:
        sub.training = False
    try:
        yield
    finally:
        for sub, mode in modes.items():
            sub.training = mode


def _progress(total: int, description: str, enabled: bool) -> Any:
    from tqdm.auto import tqdm

    # disable=None: a bar on a terminal, nothing in log files; rank 0 only
    return tqdm(total=total, desc=description, unit="img", dynamic_ncols=True, leave=False,
                disable=None if enabled else True)


@dataclass
class CacheResult:
    """What :meth:`FeatureCache.ensure` found or made."""

    folder: Path
    built: bool
    build_seconds: float
    shape: tuple[int, int, int]
    counts: dict[str, int]
    notes: list[str] = field(default_factory=list)


class FeatureCache:
    """The cache of one run: builds or reuses the folder of its key and makes data sets over it."""

    def __init__(self, root: str | os.PathLike[str], dtype: str = "float32") -> None:
        if dtype not in DTYPES:
            raise ConfigError(f"cache.dtype={dtype!r} is not valid; choose one of {', '.join(DTYPES)}")
        self.root = Path(root).expanduser().absolute()
        self.dtype = dtype
        self.key: CacheKey | None = None
        self.result: CacheResult | None = None

    def ensure(
        self,
        trunk: Trunk,
        split: TrunkSplit,
        datasets: Mapping[str, Dataset],
        image_size: int,
        batch_size: int,
        num_workers: int = 0,
        device: torch.device | str = "cpu",
        precision: str = "32-true",
        forward_context: Callable[[], Any] = contextlib.nullcontext,
        ranks: Ranks | None = None,
        say: Callable[[str], None] = print,
    ) -> CacheResult:
        """Reuse the complete cache of this key, or build it (every rank its share, rank 0 completes it).

        The prefix runs in eval mode without gradients, inside ``forward_context`` (the Trainer's precision), on
        batches of ``batch_size`` images in data-set order (the batch size of the uncached run: some CPU kernels
        round differently for other batch sizes). The global torch RNG is left as it was.
        """
        ranks = ranks or Ranks()
        device = torch.device(device)
        key = cache_key(trunk, split, datasets, image_size, self.dtype, device, precision)
        if ranks.broadcast(key.digest) != key.digest:
            raise RuntimeError("feature cache: the ranks see different images or weights (their cache keys differ)")
        self.key = key
        final = self.root / key.folder_name
        plan = self._plan(key, final) if ranks.is_zero else None
        plan = ranks.broadcast(plan)
        notes = list(plan["notes"])
        started = time.perf_counter()
        if plan["build"]:
            self._build(trunk, split, datasets, batch_size, num_workers, device, forward_context, ranks,
                        Path(plan["partial"]), final, key, started, say if ranks.is_zero else None)
        ranks.barrier()
        problem = _complete_problem(final, key)
        if problem:
            raise RuntimeError(f"feature cache {final}: {problem} after the build (paths.cache_dir must be one "
                               "folder that every rank sees)")
        record = json.loads((final / MARKER).read_text())
        shape = tuple(record["arrays"]["train" if "train" in record["arrays"] else next(iter(record["arrays"]))]
                      ["shape"][1:])
        self.result = CacheResult(final, bool(plan["build"]), time.perf_counter() - started if plan["build"] else 0.0,
                                  shape, {name: entry["shape"][0] for name, entry in record["arrays"].items()}, notes)
        return self.result

    def _plan(self, key: CacheKey, final: Path) -> dict[str, Any]:
        """Rank 0: reuse ``final``, or build (removing an incomplete folder and dead builds' leftovers)."""
        notes = []
        if final.exists():
            problem = _complete_problem(final, key)
            if problem is None:
                return {"build": False, "partial": None, "notes": notes}
            notes.append(f"{final} was not a complete cache ({problem}): rebuilt")
            shutil.rmtree(final)
        self.root.mkdir(parents=True, exist_ok=True)
        notes += [f"removed {path.name}, left by an interrupted build" for path in
                  _remove_stale_partials(self.root, final.name)]
        partial = self.root / f"{_partial_name(final.name)}{socket.gethostname()}-{os.getpid()}-{secrets.token_hex(4)}"
        return {"build": True, "partial": str(partial), "notes": notes}

    def _build(self, trunk: Trunk, split: TrunkSplit, datasets: Mapping[str, Dataset], batch_size: int,
               num_workers: int, device: torch.device, forward_context: Callable[[], Any], ranks: Ranks,
               partial: Path, final: Path, key: CacheKey, started: float, say: Callable[[str], None] | None) -> None:
        devices = [device.index if device.index is not None else torch.cuda.current_device()] \
            if device.type == "cuda" else []
        try:
            with torch.random.fork_rng(devices=devices), torch.no_grad(), _eval_mode(trunk):
                if ranks.is_zero:
                    partial.mkdir(parents=True)
                    write_json(partial / KEY_FILE, key.fields)
                    sample = datasets[next(iter(datasets))][0]["image"].unsqueeze(0).to(device)
                    with forward_context():
                        shape = tuple(trunk.run_modules(sample, split.prefix).shape[1:])
                    for name, data in datasets.items():
                        np.lib.format.open_memmap(partial / f"{name}.npy", mode="w+", dtype=DTYPES[self.dtype][1],
                                                  shape=(len(data), *shape)).flush()
                    if say:
                        per_image = math.prod(shape) * np.dtype(DTYPES[self.dtype][1]).itemsize
                        counts = " + ".join(f"{len(data)} {name}" for name, data in datasets.items())
                        say(f"feature cache: building {final} ({split.boundary}: {counts} images of "
                            f"{'x'.join(map(str, shape))} {self.dtype}, {human_bytes(per_image)} each)")
                ranks.barrier()
                for name, data in datasets.items():
                    self._fill(trunk, split, data, partial / f"{name}.npy", batch_size, num_workers, device,
                               forward_context, ranks, f"feature cache ({name})")
                ranks.barrier()
                if ranks.is_zero:
                    self._complete(partial, final, key, started)
            ranks.barrier()
        except BaseException:
            if ranks.is_zero:
                shutil.rmtree(partial, ignore_errors=True)
            raise
        if say:
            say(f"feature cache: built in {time.perf_counter() - started:.1f} s, {human_bytes(folder_bytes(final))}")

    def _fill(self, trunk: Trunk, split: TrunkSplit, dataset: Dataset, path: Path, batch_size: int,
              num_workers: int, device: torch.device, forward_context: Callable[[], Any], ranks: Ranks,
              description: str) -> None:
        """Compute this rank's contiguous share of ``dataset`` into the rows of ``path``."""
        low, high = ranks.rank * len(dataset) // ranks.world, (ranks.rank + 1) * len(dataset) // ranks.world
        array = np.load(path, mmap_mode="r+")
        loader = DataLoader(_Images(Subset(dataset, range(low, high))), batch_size=batch_size, shuffle=False,
                            num_workers=num_workers)
        row = low
        with _progress(high - low, description, ranks.is_zero) as bar:
            for images in loader:
                with forward_context():
                    values = trunk.run_modules(images.to(device, non_blocking=True), split.prefix)
                array[row:row + len(values)] = to_storage(values, self.dtype)
                row += len(values)
                bar.update(len(values))
        array.flush()
        with open(path, "rb+") as handle:
            os.fsync(handle.fileno())
        del array

    def _complete(self, partial: Path, final: Path, key: CacheKey, started: float) -> None:
        """Rank 0: write ``complete.json`` last, then rename the folder into place (the first rename wins)."""
        arrays = {}
        for name in key.fields["images"]:
            path = partial / f"{name}.npy"
            array = np.load(path, mmap_mode="r")
            arrays[name] = {"shape": list(array.shape), "file_dtype": str(array.dtype), "bytes": path.stat().st_size}
            del array
        write_json(partial / MARKER, {
            "key_digest": key.digest,
            "key": key.fields,
            "arrays": arrays,
            "build_seconds": round(time.perf_counter() - started, 3),
            "built_by": f"{socket.gethostname()}:{os.getpid()}",
            "built_at": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        })
        try:
            os.rename(partial, final)
        except OSError:  # another job completed this key meanwhile: keep a complete one
            if _complete_problem(final, key) is None:
                shutil.rmtree(partial, ignore_errors=True)
                return
            shutil.rmtree(final, ignore_errors=True)
            os.rename(partial, final)

    # --- reading ---------------------------------------------------------------------------------------------
    def dataset(self, name: str, source: Dataset) -> CachedFeatures:
        """Items of ``source`` with the stored activations as their ``image`` entry."""
        if self.result is None:
            raise RuntimeError("feature cache: ensure() has not run")
        return CachedFeatures(source, self.result.folder / f"{name}.npy", self.dtype)

    def summary(self) -> dict[str, Any]:
        """The ``feature_cache`` entry of summary.json."""
        result = self.result
        if result is None or self.key is None:
            return {"used": False}
        total = folder_bytes(result.folder)
        per_image = math.prod(result.shape) * np.dtype(DTYPES[self.dtype][1]).itemsize
        return {
            "used": True,
            "dir": str(result.folder),
            "bytes": total,
            "dtype": self.dtype,
            "key": self.key.digest,
            "built": result.built,
            "build_seconds": round(result.build_seconds, 3),
            "boundary": self.key.fields["boundary"],
            "shape": list(result.shape),
            "bytes_per_image": per_image,
            "images": dict(result.counts),
            "notes": list(result.notes),
        }


class CachedFeatures(Dataset):
    """``source``'s items with ``image`` replaced by row ``index`` of the cache file (float32); the file is opened
    lazily in each process (DataLoader workers included)."""

    def __init__(self, source: Dataset, path: Path, dtype: str) -> None:
        self.source = source
        self.path = Path(path)
        self.dtype = dtype
        self._array: np.ndarray | None = None
        rows = np.load(self.path, mmap_mode="r").shape[0]
        if rows != len(source):
            raise RuntimeError(f"feature cache {self.path}: {rows} rows for {len(source)} items")

    def __len__(self) -> int:
        return len(self.source)

    def __getitem__(self, index: int) -> dict[str, Any]:
        if self._array is None:
            self._array = np.load(self.path, mmap_mode="r")
        return {"image": from_storage(self._array[index], self.dtype), **item_without_image(self.source, index)}

    def __getstate__(self) -> dict[str, Any]:
        return {**self.__dict__, "_array": None}


# ------------------------------------------------------------------------------------------------------------
# Lightning: the data module over the cache and the callback that builds it
# ------------------------------------------------------------------------------------------------------------


def loader_like(loader: DataLoader, dataset: Dataset) -> DataLoader:
    """A loader over ``dataset`` with ``loader``'s batches, order (its seeded generator), workers and collation."""
    if loader.batch_sampler is not None and type(loader.batch_sampler).__name__ != "BatchSampler":
        raise ConfigError("cache.features=true: the data module's loader uses a custom batch sampler")
    if not isinstance(loader.sampler, (RandomSampler, SequentialSampler)):
        raise ConfigError(f"cache.features=true: the data module's loader uses a {type(loader.sampler).__name__}; "
                          "only shuffled or sequential loaders are supported")
    return DataLoader(
        dataset, batch_size=loader.batch_size, shuffle=isinstance(loader.sampler, RandomSampler),
        num_workers=loader.num_workers, collate_fn=loader.collate_fn, pin_memory=loader.pin_memory,
        drop_last=loader.drop_last, generator=loader.generator,
        persistent_workers=loader.persistent_workers if loader.num_workers > 0 else False,
    )


class CachedDataModule(pl.LightningDataModule):
    """The run's data module with its training and validation loaders over the cache (same order, same batches)."""

    def __init__(self, source: pl.LightningDataModule, cache: FeatureCache) -> None:
        super().__init__()
        self.source = source
        self.cache = cache

    def prepare_data(self) -> None:
        self.source.prepare_data()

    def setup(self, stage: str) -> None:
        self.source.setup(stage)

    def train_dataloader(self) -> DataLoader:
        loader = self.source.train_dataloader()
        return loader_like(loader, self.cache.dataset("train", loader.dataset))

    def val_dataloader(self) -> DataLoader:
        loader = self.source.val_dataloader()
        return loader_like(loader, self.cache.dataset("val", loader.dataset))

    def split_stems(self) -> dict[str, list[str]]:
        """The source's split (checkpoints record it: :func:`saliency_probe.models.checkpoint.data_split`)."""
        return self.source.split_stems()

    def state_dict(self) -> dict[str, Any]:
        return self.source.state_dict()

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        self.source.load_state_dict(state_dict)


class FeatureCacheCallback(pl.Callback):
    """Builds (or reuses) the cache when the fit starts, on the training device, and switches the trunk to start
    at the boundary until the fit ends. The module's weights are final here (a resumed checkpoint is loaded)."""

    def __init__(self, cache: FeatureCache, source: pl.LightningDataModule, finetune_layers: int | str,
                 trunk_attribute: str = "trunk") -> None:
        self.cache = cache
        self.source = source
        self.finetune_layers = finetune_layers
        self.trunk_attribute = trunk_attribute
        self._trunk: Trunk | None = None

    def on_fit_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        trunk: Trunk = getattr(pl_module, self.trunk_attribute)
        split = trunk.split(self.finetune_layers)
        problem = prefix_problem(trunk, split)
        if problem:
            raise ConfigError(f"cache.features=true: {problem}")
        frozen = {name for path in split.prefix for name, p in trunk.get_submodule(path).named_parameters(prefix=path)
                  if p.requires_grad}
        if frozen:
            raise RuntimeError(f"feature cache: {sorted(frozen)[:3]} ... of the prefix train; is callbacks.freeze on?")
        train_loader, val_loader = self.source.train_dataloader(), self.source.val_dataloader()
        image_size = getattr(self.source, "image_size", None) or int(train_loader.dataset[0]["image"].shape[-1])
        ranks = Ranks.of(trainer)

        def say(message: str) -> None:
            if ranks.is_zero:
                print(message, flush=True)

        result = self.cache.ensure(
            trunk, split, {"train": train_loader.dataset, "val": val_loader.dataset}, int(image_size),
            train_loader.batch_size or 1, train_loader.num_workers, pl_module.device, str(trainer.precision),
            trainer.precision_plugin.forward_context, ranks, say,
        )
        for note in result.notes:
            say(f"feature cache: {note}")
        if not result.built:
            say(f"feature cache: reusing {result.folder} ({human_bytes(folder_bytes(result.folder))})")
        trunk.start_at(split)
        self._trunk = trunk

    def teardown(self, trainer: pl.Trainer, pl_module: pl.LightningModule, stage: str) -> None:
        if self._trunk is not None:
            self._trunk.start_at(None)  # the module is a full model again
            self._trunk = None


@dataclass
class FeatureCacheRun:
    """The pieces ``training.train`` wires in: the data module to fit on, the callback, the summary entry."""

    datamodule: pl.LightningDataModule
    callback: pl.Callback | None
    cache: FeatureCache | None
    note: str | None = None

    @classmethod
    def from_config(cls, cfg: Any, datamodule: pl.LightningDataModule) -> FeatureCacheRun:
        """Off (``cache.features=false``, or ``finetune.layers=all``: nothing is frozen): the data module as it is."""
        options = CacheOptions.from_config(cfg)
        if not options.features:
            return cls(datamodule, None, None)
        if finetunes_everything(cfg.finetune.layers):
            note = "finetune.layers=all trains the whole trunk: nothing is frozen, no feature cache is used"
            if rank_zero_only.rank == 0:  # DDP: the other ranks run this too
                print(f"feature cache: {note}", flush=True)
            return cls(datamodule, None, None, note)
        if getattr(datamodule, "train_augmentation", "undeclared") is not None:
            raise ConfigError(f"cache.features=true: data module {type(datamodule).__name__} does not declare "
                              "train_augmentation=None (fixed training images)")
        cache = FeatureCache(options.dir, options.dtype)
        return cls(CachedDataModule(datamodule, cache), FeatureCacheCallback(cache, datamodule, cfg.finetune.layers),
                   cache)

    def summary(self) -> dict[str, Any] | None:
        """summary.json's ``feature_cache``: None when the cache is off."""
        if self.cache is not None:
            return self.cache.summary()
        return {"used": False, "note": self.note} if self.note else None


# ------------------------------------------------------------------------------------------------------------
# disk per image and boundary: python -m saliency_probe.feature_cache [--backbone B] [--image-size S] [--images N]
# ------------------------------------------------------------------------------------------------------------


def boundary_shape(backbone: Any, finetune_layers: int | str, image_size: int) -> tuple[str, tuple[int, ...]]:
    """``(boundary, (C, h, w))`` of the cached activations, from a dry run on the ``meta`` device (no arithmetic)."""
    spec = BackboneSpec.from_config(backbone, weights=None)
    architecture(spec).parse_finetune(finetune_layers)
    with torch.device("meta"):
        trunk = make_trunk(spec)
        split = trunk.split(finetune_layers)
        out = trunk.run_modules(torch.zeros(1, 3, image_size, image_size), split.prefix)
    return split.boundary, tuple(int(size) for size in out.shape[1:])


def disk_table(backbone: str = "vgg16", image_size: int = 224, images: int = 15000,
               layers: list[str] | None = None) -> list[dict[str, Any]]:
    """Per ``finetune.layers`` (default every value but ``all``): boundary, shape, bytes per image and for
    ``images`` images in float32 and in 16-bit dtypes."""
    table = architecture(backbone).table
    values = layers or [value for value in table.valid_finetune() if value != "all"]
    rows = []
    for value in values:
        boundary, shape = boundary_shape(backbone, value, image_size)
        per_image = math.prod(shape) * 4
        rows.append({"finetune.layers": value, "boundary": boundary, "shape": "x".join(map(str, shape)),
                     "float32_per_image": per_image, "float32_total": per_image * images,
                     "half_total": per_image * images // 2})
    return rows


def disk_markdown(backbone: str = "vgg16", image_size: int = 224, images: int = 15000,
                  layers: list[str] | None = None) -> list[str]:
    """:func:`disk_table` as Markdown lines (``python -m saliency_probe.feature_cache``, docs/benchmarks.md)."""
    lines = ["| finetune.layers | boundary | C x h x w | per image, float32 | total, float32 | total, bfloat16/float16 |",
             "|---|---|---|---:|---:|---:|"]
    for row in disk_table(backbone, image_size, images, layers):
        lines.append(f"| {row['finetune.layers']} | {row['boundary']} | {row['shape']} | "
                     f"{human_bytes(row['float32_per_image'])} | {human_bytes(row['float32_total'])} | "
                     f"{human_bytes(row['half_total'])} |")
    return lines


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description="Disk taken by the feature cache, per freeze boundary.")
    parser.add_argument("--backbone", default="vgg16")
    parser.add_argument("--image-size", type=int, default=224)
    parser.add_argument("--images", type=int, default=15000, help="train + val images (SALICON: 10,000 + 5,000)")
    parser.add_argument("--layers", nargs="*", default=None, help="finetune.layers values (default: all but 'all')")
    args = parser.parse_args(argv)
    print(f"{args.backbone} at {args.image_size} px, {args.images:,} images")
    print("\n".join(disk_markdown(args.backbone, args.image_size, args.images, args.layers)))


if __name__ == "__main__":
    sys.path.insert(0, os.getcwd())
    main()
