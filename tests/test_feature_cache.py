"""The feature cache's key, storage and life cycle: one cache per weights / images / size / dtype, reuse,
interrupted and damaged builds rebuilt, 16-bit storage, refusals, disk per boundary (saliency_probe/feature_cache.py).

Equality of cached and uncached training is in test_feature_cache_equality.py.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from hydra import compose, initialize_config_dir
from test_train import REPO, SMALL, run_in_process, small_data
from torch import nn

from saliency_probe.data.salicon import SaliconDataset
from saliency_probe.errors import ConfigError
from saliency_probe.feature_cache import (
    MARKER,
    FeatureCache,
    FeatureCacheRun,
    cache_key,
    disk_table,
    from_storage,
    prefix_digest,
    prefix_problem,
    to_storage,
)
from saliency_probe.models.backbone import build_trunk
from saliency_probe.training import validate_train_config

LAYERS = 2  # resnet18: layer4.0 and layer4.1 train; the prefix is the stem .. layer3 (the smallest fast case)
SIZE = 64


def splits(synthetic_root: Path, limit: int | None = None, size: int = SIZE) -> dict[str, SaliconDataset]:
    folder = synthetic_root / "salicon"
    return {"train": SaliconDataset(folder, "train", image_size=size, limit=limit),
            "val": SaliconDataset(folder, "val", image_size=size)}


def random_trunk(seed: int):
    torch.manual_seed(seed)
    return build_trunk(None, "resnet18")


def ensure(root: Path, trunk, data, dtype: str = "float32"):
    cache = FeatureCache(root, dtype)
    messages: list[str] = []
    result = cache.ensure(trunk, trunk.split(LAYERS), data, SIZE, batch_size=4, say=messages.append)
    return cache, result, messages


def reference(trunk, dataset) -> torch.Tensor:
    """The prefix's output computed here, independently of the cache (one batch, eval mode)."""
    trunk.eval()
    with torch.no_grad():
        images = torch.stack([dataset[i]["image"] for i in range(len(dataset))])
        return trunk.run_modules(images, trunk.split(LAYERS).prefix)


def stored(cache: FeatureCache, name: str, dataset) -> torch.Tensor:
    features = cache.dataset(name, dataset)
    return torch.stack([features[i]["image"] for i in range(len(features))])


# ------------------------------------------------------------------------------------------------ keying


def test_a_cache_built_for_one_weights_file_is_not_used_for_another(tmp_path: Path, synthetic_root: Path) -> None:
    files = {}
    for seed in (1, 2):
        files[seed] = tmp_path / f"resnet18-seed{seed}.pth"
        torch.save(random_trunk(seed).state_dict(), files[seed])
    data = splits(synthetic_root)
    trunk_a = build_trunk(str(files[1]), "resnet18")
    cache_a, built_a, messages = ensure(tmp_path / "cache", trunk_a, data)
    assert built_a.built and any("building" in m for m in messages)
    assert torch.allclose(stored(cache_a, "train", data["train"]), reference(trunk_a, data["train"]), atol=1e-5)

    again, reused, _ = ensure(tmp_path / "cache", build_trunk(str(files[1]), "resnet18"), data)  # same file
    assert not reused.built and reused.folder == built_a.folder

    trunk_b = build_trunk(str(files[2]), "resnet18")
    cache_b, built_b, _ = ensure(tmp_path / "cache", trunk_b, data)
    assert built_b.built and built_b.folder != built_a.folder
    features_b = stored(cache_b, "val", data["val"])
    assert torch.allclose(features_b, reference(trunk_b, data["val"]), atol=1e-5)
    assert not torch.allclose(features_b, reference(trunk_a, data["val"]), atol=1e-2)
    keys = [json.loads((result.folder / "key.json").read_text())["prefix_digest"] for result in (built_a, built_b)]
    assert keys == [prefix_digest(trunk_a, trunk_a.split(LAYERS)), prefix_digest(trunk_b, trunk_b.split(LAYERS))]


def test_key_follows_weights_images_size_boundary_and_dtype(synthetic_root: Path) -> None:
    trunk = random_trunk(0)
    data = splits(synthetic_root)

    def digest(trunk=trunk, data=data, size=SIZE, dtype="float32", layers=LAYERS, precision="32-true") -> str:
        return cache_key(trunk, trunk.split(layers), data, size, dtype, precision=precision).digest

    base = digest()
    assert digest() == base  # deterministic
    assert digest(trunk=random_trunk(0)) == base  # the same random initialisation (same seed)
    assert digest(trunk=random_trunk(1)) != base  # random init keys by its own weights, hence its seed
    assert digest(data=splits(synthetic_root, limit=11)) != base  # another image list
    assert digest(size=96) != base
    assert digest(dtype="bfloat16") != base
    assert digest(layers=3) != base  # another boundary
    assert digest(precision="bf16-mixed") != base
    image = data["train"].image_file(0)
    stat = image.stat()
    os.utime(image, ns=(stat.st_atime_ns, stat.st_mtime_ns + 1_000_000_000))  # the file was replaced
    try:
        assert digest(data=splits(synthetic_root)) != base
    finally:
        os.utime(image, ns=(stat.st_atime_ns, stat.st_mtime_ns))


# ------------------------------------------------------------------------------------------------ life cycle

KILLED_BUILD = r"""
import os, signal, sys
import torch
from torch.utils.data import Dataset
sys.path.insert(0, sys.argv[1])
from saliency_probe.data.salicon import SaliconDataset
from saliency_probe.feature_cache import FeatureCache
from saliency_probe.models.backbone import build_trunk

class DiesAtItem(Dataset):
    def __init__(self, source, item):
        self.source, self.item = source, item
    def __len__(self):
        return len(self.source)
    def image_file(self, index):
        return self.source.image_file(index)
    def __getitem__(self, index):
        if index == self.item:
            os.kill(os.getpid(), signal.SIGKILL)  # the job is killed in the middle of the build
        return self.source[index]

folder = os.path.join(sys.argv[2], "salicon")
torch.manual_seed(0)
trunk = build_trunk(None, "resnet18")
data = {"train": DiesAtItem(SaliconDataset(folder, "train", image_size=64), 7),
        "val": SaliconDataset(folder, "val", image_size=64)}
FeatureCache(sys.argv[3]).ensure(trunk, trunk.split(2), data, 64, batch_size=4)
"""


def test_an_interrupted_build_is_detected_and_rebuilt(tmp_path: Path, synthetic_root: Path) -> None:
    root = tmp_path / "cache"
    result = subprocess.run([sys.executable, "-c", KILLED_BUILD, str(REPO), str(synthetic_root), str(root)],
                            capture_output=True, text=True, timeout=120)
    assert result.returncode == -signal.SIGKILL, result.stderr[-2000:]
    partials = list(root.glob(".*.partial-*"))
    assert len(partials) == 1 and (partials[0] / "train.npy").is_file() and not (partials[0] / MARKER).exists()
    assert not [p for p in root.iterdir() if not p.name.startswith(".")]  # nothing that looks like a cache

    trunk, data = random_trunk(0), splits(synthetic_root)
    cache, rebuilt, messages = ensure(root, trunk, data)
    assert rebuilt.built and rebuilt.folder.name == partials[0].name[1:].split(".partial-")[0]
    assert any("interrupted" in note for note in rebuilt.notes) and not partials[0].exists()
    assert torch.allclose(stored(cache, "train", data["train"]), reference(trunk, data["train"]), atol=1e-5)
    assert not ensure(root, trunk, data)[1].built  # complete now: reused


@pytest.mark.parametrize("damage", ["truncated", "no_marker", "other_key"])
def test_a_damaged_cache_is_rebuilt_not_read(tmp_path: Path, synthetic_root: Path, damage: str) -> None:
    trunk, data = random_trunk(0), splits(synthetic_root)
    _, first, _ = ensure(tmp_path, trunk, data)
    if damage == "truncated":
        with open(first.folder / "val.npy", "r+b") as handle:
            handle.truncate(os.path.getsize(first.folder / "val.npy") - 64)
    elif damage == "no_marker":
        (first.folder / MARKER).unlink()
    else:
        record = json.loads((first.folder / MARKER).read_text())
        record["key"]["image_size"] = 96
        (first.folder / MARKER).write_text(json.dumps(record))
    cache, second, _ = ensure(tmp_path, trunk, data)
    assert second.built and second.folder == first.folder
    assert any("not a complete cache" in note for note in second.notes)
    assert torch.allclose(stored(cache, "val", data["val"]), reference(trunk, data["val"]), atol=1e-5)


# ------------------------------------------------------------------------------------------------ storage


@pytest.mark.parametrize("dtype", ["float32", "bfloat16", "float16"])
def test_storage_rounds_as_torch_casts(dtype: str) -> None:
    values = torch.randn(3, 8, 5, 5, generator=torch.Generator().manual_seed(0)) * 30
    back = from_storage(to_storage(values, dtype), dtype)
    assert back.dtype == torch.float32
    assert torch.equal(back, values.to(getattr(torch, dtype)).to(torch.float32))
    assert to_storage(values, dtype).nbytes == values.numel() * (4 if dtype == "float32" else 2)


def test_float16_overflow_is_refused() -> None:
    with pytest.raises(ConfigError, match=r"cache.dtype=float16.*bfloat16"):
        to_storage(torch.tensor([1.0, 7e4]), "float16")


def test_bfloat16_cache_holds_rounded_activations(tmp_path: Path, synthetic_root: Path) -> None:
    trunk, data = random_trunk(0), splits(synthetic_root)
    cache, result, _ = ensure(tmp_path, trunk, data, dtype="bfloat16")
    assert np.load(result.folder / "train.npy", mmap_mode="r").dtype == np.uint16
    exact = reference(trunk, data["train"])
    rounded = stored(cache, "train", data["train"])
    assert torch.allclose(rounded, exact, rtol=2 ** -8, atol=1e-6)  # bfloat16 keeps 8 significant bits
    assert not torch.equal(rounded, exact)
    assert cache.summary()["bytes_per_image"] == 256 * 4 * 4 * 2


def test_under_bf16_mixed_a_bfloat16_cache_stores_exactly_what_the_prefix_gives(tmp_path: Path,
                                                                               synthetic_root: Path) -> None:
    trunk, data = random_trunk(0), splits(synthetic_root)
    caches = {}
    for dtype in ("float32", "bfloat16"):
        cache = caches[dtype] = FeatureCache(tmp_path, dtype)
        cache.ensure(trunk, trunk.split(LAYERS), data, SIZE, batch_size=4, precision="bf16-mixed",
                     forward_context=lambda: torch.autocast("cpu", dtype=torch.bfloat16), say=lambda _: None)
    exact, half = (stored(caches[dtype], "train", data["train"]) for dtype in ("float32", "bfloat16"))
    assert torch.equal(exact, half)  # autocast's prefix output is bfloat16 already: nothing is rounded
    assert torch.equal(exact, exact.to(torch.bfloat16).float())


# ------------------------------------------------------------------------------------------------ in the job


def test_train_job_reuses_the_cache_and_reports_it(tmp_path: Path, synthetic_root: Path) -> None:
    overrides = [*SMALL, *small_data(synthetic_root), "backbone=resnet18", f"finetune.layers={LAYERS}",
                 "cache.features=true", f"paths.cache_dir={tmp_path / 'cache'}", "~callbacks.model_checkpoint", "~callbacks.last_checkpoint",
                 "+trainer.enable_checkpointing=false"]
    first = run_in_process(tmp_path / "a", overrides)
    second = run_in_process(tmp_path / "b", overrides)
    cache = first["feature_cache"]
    folder = Path(cache["dir"])
    assert folder.parent == tmp_path / "cache" / "features"
    assert cache["built"] and not second["feature_cache"]["built"] and second["feature_cache"]["dir"] == cache["dir"]
    assert cache["bytes"] == sum(p.stat().st_size for p in folder.iterdir())
    assert cache["images"] == {"train": 12, "val": 6} and cache["shape"] == [256, 4, 4]
    assert json.loads((tmp_path / "b" / "summary.json").read_text())["feature_cache"]["key"] == cache["key"]
    assert second["metrics"] == first["metrics"]


# ------------------------------------------------------------------------------------------------ refusals


def compose_train(*overrides: str):
    with initialize_config_dir(config_dir=str(REPO / "conf"), version_base="1.3"):
        return compose("train", overrides=list(overrides))


@pytest.mark.parametrize(("overrides", "message"), [
    (["backbone=torchvision", "backbone.name=mobilenet_v2"], r"mobilenet_v2 cannot be split.*supported: VGG.*ResNet"),
    (["+data.augment=true"], r"data.augment is set; with augmentation"),
    (["~callbacks.freeze"], r"needs callbacks.freeze"),
    (["cache.dtype=int8"], r"cache.dtype='int8' is not valid"),
    (["cache.features=maybe"], r"cache.features='maybe' is not valid; expected true or false"),
    (["data._target_=saliency_probe.data.datamodules.OsieSrDataModule"], r"does not declare train_augmentation"),
])
def test_refused_before_any_work(overrides: list[str], message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        validate_train_config(compose_train("cache.features=true", *overrides))


def test_finetuning_everything_runs_without_a_cache(synthetic_root: Path) -> None:
    cfg = compose_train("cache.features=true", "finetune.layers=all", f"data.root={synthetic_root}")
    validate_train_config(cfg)
    run = FeatureCacheRun.from_config(cfg, datamodule := object())
    assert run.datamodule is datamodule and run.callback is None
    assert run.summary() == {"used": False, "note": run.note} and "nothing is frozen" in run.note
    validate_train_config(compose_train("cache.features=true", "backbone=resnet50", "finetune.layers=16"))


class Noisy(nn.Module):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + torch.randn_like(x)


def test_a_prefix_that_is_not_fixed_in_eval_mode_is_refused() -> None:
    trunk = random_trunk(0)
    split = trunk.split(LAYERS)
    assert prefix_problem(trunk, split) is None
    trunk.layer2[0].bn1 = nn.BatchNorm2d(128, track_running_stats=False)
    assert "layer2.0.bn1 keeps no running statistics" in prefix_problem(trunk, split)
    trunk = random_trunk(0)
    trunk.layer1[1].relu = Noisy()
    assert "layer1.1.relu (Noisy) is not known to be deterministic" in prefix_problem(trunk, split)
    assert prefix_problem(trunk, trunk.split(8)) is None  # the stem alone is frozen: layer1 is not cached


# ------------------------------------------------------------------------------------------------ disk


def test_disk_per_image_per_boundary_from_vgg16_shapes() -> None:
    rows = {row["finetune.layers"]: row for row in disk_table("vgg16", 224, images=15000)}
    # VGG-16 at 224 px: conv5_* and pool4 give 512 x 14 x 14, conv4_2 / conv4_1 512 x 28 x 28, pool3 256 x 28 x 28
    expected = {"0": (512, 14), "1": (512, 14), "2": (512, 14), "3": (512, 14), "4": (512, 28), "5": (512, 28),
                "6": (256, 28)}
    assert sorted(rows) == sorted(expected)
    for layers, (channels, side) in expected.items():
        assert rows[layers]["shape"] == f"{channels}x{side}x{side}"
        assert rows[layers]["float32_per_image"] == channels * side * side * 4
        assert rows[layers]["float32_total"] == channels * side * side * 4 * 15000
        assert rows[layers]["half_total"] == channels * side * side * 2 * 15000
    assert rows["1"]["boundary"] == "before conv5_3" and rows["6"]["boundary"] == "before conv4_1"



def test_disk_command_prints_the_readme_table(capsys: pytest.CaptureFixture[str]) -> None:
    """``python -m saliency_probe.feature_cache --images 15000`` (README "Running at scale"): 512 x 14 x 14 float32
    = 401,408 B = 392 KiB per image; x 15,000 = 5.6 GiB, half in 16-bit dtypes."""
    from saliency_probe.feature_cache import main

    main(["--images", "15000", "--layers", "0", "6"])
    out = capsys.readouterr().out.splitlines()
    assert out[0] == "vgg16 at 224 px, 15,000 images"
    assert "| 0 | after conv5_3 | 512x14x14 | 392.0 KiB | 5.6 GiB | 2.8 GiB |" in out
    assert "| 6 | before conv4_1 | 256x28x28 | 784.0 KiB | 11.2 GiB | 5.6 GiB |" in out and len(out) == 5
