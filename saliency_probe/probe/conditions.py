"""What each probed model is, in the terms the paper's comparisons depend on (its *conditions*).

Per model: the weights its trunk started from, the data it was fine-tuned on (data set, edition, images, input
size), how long and which checkpoint; per run: the probe data, its input size and the forward's precision.
``probe_summary.json`` records them (``models[i].conditions``, ``probe_conditions``) and the report compares them
with the paper's (:mod:`saliency_probe.report.conditions`), so a number beside a paper value says how it was made.
"""

from __future__ import annotations

import functools
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from omegaconf import DictConfig

from saliency_probe.io_utils import file_sha256
from saliency_probe.models.backbone import TORCHVISION_VGG16_FILE, BackboneSpec, is_random_weights
from saliency_probe.models.checkpoint import LoadedCheckpoint
from saliency_probe.probe.precision import probe_precision
from saliency_probe.probe.sources import TrunkSource

#: torchvision's VGG-16 ImageNet file names the first 8 hex digits of its SHA-256 (``vgg16-397923af.pth``).
IMAGENET_VGG16_SHA256_PREFIX = TORCHVISION_VGG16_FILE.split("-")[1].split(".")[0]
#: torchvision's ImageNet weights enum names.
IMAGENET_ENUMS = {"IMAGENET1K_V1", "IMAGENET1K_V2", "DEFAULT"}


@functools.lru_cache(maxsize=16)
def _weights_digest(path: str, size: int, mtime_ns: int) -> str:
    """SHA-256 of a weights file, read once per (path, size, modification time): Table 7's pt, sp and sr name the
    same few-hundred-MB file."""
    return file_sha256(path)


def weights_origin(weights: Any, backbone: str = "vgg16") -> dict[str, Any]:
    """Where a trunk's starting weights come from.

    Parameters
    ----------
    weights : str or None
        ``backbone.weights``: None (random initialisation), a torchvision enum name or a state-dict file.
    backbone : str
        The backbone's name (only VGG-16's ImageNet file can be recognised by its digest).

    Returns
    -------
    dict
        ``{"weights": str | None, "origin": "imagenet" | "file" | "random" | "torchvision", "sha256": str | None}``:
        ``imagenet`` for torchvision's ImageNet enum names and for a file with the bytes of torchvision's VGG-16
        ImageNet file; ``file`` for any other file (its SHA-256 recorded).
    """
    if is_random_weights(weights):
        return {"weights": None, "origin": "random", "sha256": None}
    text = str(weights)
    path = Path(text).expanduser()
    if path.is_file():
        stat = path.stat()
        digest = _weights_digest(str(path.resolve()), stat.st_size, stat.st_mtime_ns)
        known = backbone == "vgg16" and digest.startswith(IMAGENET_VGG16_SHA256_PREFIX)
        return {"weights": str(path.resolve()), "origin": "imagenet" if known else "file", "sha256": digest}
    name = text.split(".")[-1]
    return {"weights": text, "origin": "imagenet" if name in IMAGENET_ENUMS else "torchvision", "sha256": None}


def training_data(config: dict[str, Any], split: dict[str, Any] | None) -> dict[str, Any]:
    """The data a checkpoint was fine-tuned on, from its recorded run config and split record."""
    data = dict(config.get("data") or {})
    target = str(data.get("_target_", ""))
    synthetic = bool(data.get("synthetic"))
    scenes = target.endswith("SaliconScenesDataModule")
    if target.endswith(("SaliconDataModule", "SaliconScenesDataModule")):
        name = "SALICON-SAL-SCE" if scenes else "SALICON"
        name = f"synthetic {name}" if synthetic else name
    else:
        name = target.rsplit(".", 1)[-1] or "unknown"
    counts = {f"{key}_images": len(split.get(key) or []) for key in ("train", "val")} if split else {}
    if split:
        counts["fingerprints"] = dict(split.get("fingerprints") or {})
    return {"data_set": name, "synthetic": synthetic, "scene_labels": scenes, "edition": data.get("edition"),
            "labels_file": data.get("labels_file"), "image_size": data.get("image_size"), **counts}


def checkpoint_choice(loaded: LoadedCheckpoint, info: dict[str, Any]) -> str:
    """``last`` (the end of training), ``best`` (best by the monitored validation metric) or the file name."""
    choice = info.get("checkpoint_choice")
    if choice:
        return str(choice)
    stem = loaded.path.stem
    if stem.startswith("last"):
        return "last"
    return "best" if stem.startswith("best") else loaded.path.name


def model_conditions(source: TrunkSource) -> dict[str, Any]:
    """The conditions of one probed model (see the module docstring)."""
    spec: BackboneSpec = source.spec
    if source.kind != "checkpoint":
        weights = None if source.kind == "random" else source.weights
        return with_start({"backbone": spec.name, **weights_origin(weights, spec.name), "trained_on": None,
                            "seed": source.seed if source.kind == "random" else None})
    loaded = source.checkpoint()
    assert loaded is not None
    metadata = loaded.metadata
    config = metadata.get("config") or {}
    record = metadata.get("backbone") or {}
    trainer = config.get("trainer") or {}
    return with_start({
        "backbone": spec.name,
        **weights_origin(record.get("weights"), spec.name),
        "trained_on": training_data(config, metadata.get("data_split")),
        "task": loaded.task,
        "finetune_layers": str(metadata.get("finetune_layers")),
        "epochs": loaded.epoch + 1 if loaded.epoch is not None else None,
        "max_epochs": trainer.get("max_epochs"),
        "checkpoint": checkpoint_choice(loaded, source.info),
        "training_precision": str(trainer.get("precision")) if trainer.get("precision") is not None else None,
        "seed": config.get("seed"),
    })


def with_start(conditions: dict[str, Any]) -> dict[str, Any]:
    """``conditions`` with ``start``: ``{"key": [...], "text": ...}`` of :func:`starting_point` (equal keys = the
    same starting weights: :func:`saliency_probe.report.conditions.start_difference` compares them)."""
    key, text = starting_point(conditions)
    return {**conditions, "start": {"key": list(key), "text": text}}


def _torchvision_digest_prefix(backbone: str, weights: Any) -> str | None:
    """The SHA-256 prefix torchvision's file name of weights enum ``weights`` carries (``vgg16-397923af.pth``)."""
    from torchvision.models import get_model_weights

    try:
        enum = get_model_weights(str(backbone))[str(weights).split(".")[-1]]
    except (KeyError, ValueError):
        return None
    stem = Path(enum.url).stem
    return stem.rsplit("-", 1)[-1] if "-" in stem else None


def starting_point(conditions: Mapping[str, Any]) -> tuple[tuple[Any, ...], str]:
    """What a trunk started from, as a comparable key and a text.

    A file and a torchvision enum are the same start when the file's SHA-256 begins with the digest prefix in
    torchvision's file name (``vgg16-397923af.pth``); a random initialisation is keyed by the training seed
    (``conditions["seed"]``; a probed random trunk has none).
    """
    backbone, origin = conditions.get("backbone"), conditions.get("origin")
    weights, digest = conditions.get("weights"), conditions.get("sha256")
    if origin == "random":
        seed = conditions.get("seed")
        return (backbone, "random", seed), f"{backbone} random initialisation (seed {seed})"
    prefix = str(digest)[:8] if digest else _torchvision_digest_prefix(backbone, weights)
    if prefix:
        name = Path(str(weights)).name
        return (backbone, "sha256", prefix), f"{backbone} weights {name} (SHA-256 {prefix}...)"
    return (backbone, "weights", str(weights)), f"{backbone} weights {weights}"


def probe_conditions(cfg: DictConfig, data: dict[str, dict[str, Any]]) -> dict[str, Any]:
    """The run's side of every comparison: probe data, images, input size, precision, statistics."""
    settings = cfg.data
    target = str(settings.get("_target_", ""))
    if target.endswith("RegionSetDataModule"):
        kind = "regions built from fixations"
    elif target.endswith("OsieSrDataModule"):
        kind = "OSIE-SR"
    else:
        kind = target.rsplit(".", 1)[-1]
    synthetic = bool(settings.get("synthetic"))
    main = data.get("data") or next(iter(data.values()), {})
    return {
        "data_set": f"synthetic {kind}" if synthetic else kind,
        "synthetic": synthetic,
        "images": main.get("images"),
        "input_size": int(settings.image_size),
        "precision": probe_precision(cfg),
        "top_k": int(cfg.top_k),
        "threshold": float(cfg.threshold),
    }
