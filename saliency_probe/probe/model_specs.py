"""Saliency models named by strings, as analyses take them: classical names, ``ckpt:<path>``, ``maps:<folder>``,
``model:<name>`` (the configured ``backbone=custom`` model's own output, ``backbone.output``, with
``backbone.weights``).

Every resolved model maps an RGB uint8 image ``(H, W, 3)`` (and its file stem) to a float32 map ``(H, W)``, so
the pop-out and benchmark analyses score classical models, trained checkpoints and other people's maps alike.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from saliency_probe.classical import CLASSICAL_MODELS, build_classical
from saliency_probe.data.images import load_rgb, to_model_input
from saliency_probe.errors import ConfigError, InputFileError, MissingInputError
from saliency_probe.models.backbone import BackboneSpec, build_trunk
from saliency_probe.models.checkpoint import load_checkpoint
from saliency_probe.models.trunks import SaliencyNetwork
from saliency_probe.probe.precision import DEFAULT as FP32
from saliency_probe.probe.precision import check_precision, forward_precision

MAP_SUFFIXES = (".png", ".jpg", ".jpeg", ".npy", ".tif", ".tiff", ".bmp")


@dataclass
class MapModel:
    """A named saliency model: ``predict(rgb, stem)`` gives a float32 map of the image's size."""

    name: str
    kind: str
    params: dict[str, Any] = field(default_factory=dict)

    def predict(self, rgb: np.ndarray, stem: str) -> np.ndarray:
        raise NotImplementedError


@dataclass
class ClassicalMapModel(MapModel):
    model: Any = None

    def predict(self, rgb: np.ndarray, stem: str) -> np.ndarray:
        return np.asarray(self.model(rgb), dtype=np.float32)


@dataclass
class CheckpointMapModel(MapModel):
    """A saliency checkpoint's output (1x1 head on the head layer, VGG-16: conv5_3; or a custom model's own
    output), bilinearly resized to the image; the forward in ``precision`` (``probe_precision``: fp32 | bf16)."""

    network: torch.nn.Module | None = None
    image_size: int = 224
    precision: str = FP32

    @torch.no_grad()
    def predict(self, rgb: np.ndarray, stem: str) -> np.ndarray:
        assert self.network is not None
        batch = to_model_input(rgb, self.image_size).unsqueeze(0)
        with forward_precision(self.precision, ("cpu",)):
            small = self.network(batch).float()
        full = F.interpolate(small, size=rgb.shape[:2], mode="bilinear", align_corners=False)
        return full[0, 0].numpy().astype(np.float32)


@dataclass
class FolderMapModel(MapModel):
    """Precomputed maps in a folder, one per image, named like the image (any common suffix or .npy)."""

    folder: Path = Path(".")

    def predict(self, rgb: np.ndarray, stem: str) -> np.ndarray:
        candidates = [self.folder / f"{stem}{suffix}" for suffix in MAP_SUFFIXES]
        path = next((c for c in candidates if c.is_file()), None)
        if path is None:
            raise MissingInputError(
                f"maps:{self.folder} has no map for image {stem!r} (looked for {stem}.png/.jpg/.npy ...)"
            )
        if path.suffix == ".npy":
            try:
                saliency = np.load(path, allow_pickle=False).astype(np.float32)
            except (OSError, ValueError, TypeError) as error:
                raise InputFileError(f"{path}: not a readable .npy saliency map ({error})") from error
        else:
            image = load_rgb(path)
            saliency = image.astype(np.float32).mean(axis=2)
        if saliency.ndim != 2:
            raise InputFileError(f"{path}: expected a 2-D saliency map, got shape {saliency.shape}")
        if saliency.shape != rgb.shape[:2]:
            tensor = torch.from_numpy(saliency)[None, None]
            saliency = F.interpolate(tensor, size=rgb.shape[:2], mode="bilinear", align_corners=False)[0, 0].numpy()
        return saliency


def _checkpoint_network(path: str) -> tuple[torch.nn.Module, str]:
    checkpoint = load_checkpoint(path)
    network = checkpoint.saliency_network()
    if network is None:
        raise InputFileError(f"ckpt:{path} is a {checkpoint.task} checkpoint; a saliency checkpoint is needed for maps")
    return network, checkpoint.run_name


def model_network(backbone: object) -> tuple[torch.nn.Module, BackboneSpec]:
    """The configured backbone's own saliency map (``backbone=custom`` with ``backbone.output``) with its weights."""
    spec = BackboneSpec.from_config(backbone)
    if spec.output is None:
        raise ConfigError(
            f"model:<name> scores the configured backbone's own saliency map; backbone {spec.describe()} has none: "
            "use backbone=custom with backbone.output=<node or method> (docs/backbones.md), or ckpt:<path> for a "
            "trained checkpoint"
        )
    return SaliencyNetwork(build_trunk(spec.weights, spec), None).eval(), spec


def resolve_model(spec: str, image_size: int = 224, classical_params: dict[str, dict] | None = None,
                  backbone: object = None, precision: str = FP32) -> MapModel:
    """Build the model a string names: ``bms``/``gbvs``/``itti``/``spectral_residual``, ``ckpt:<path>``,
    ``maps:<dir>``, ``model:<name>`` (``backbone``: the configured ``backbone`` with an output).

    ``precision`` (``probe_precision``) is the forward's of the deep models (``ckpt:``, ``model:``); ``bf16``
    adds ``precision=bf16`` to their parameters (so the benchmark's map cache keeps them apart)."""
    spec = str(spec).strip()
    precision = check_precision(precision)
    extra = {} if precision == FP32 else {"precision": precision}
    if spec.startswith("model:"):
        network, model_spec = model_network(backbone)
        params = {"backbone": model_spec.describe(), "weights": model_spec.weights or "random-init"}
        if model_spec.weights and Path(model_spec.weights).expanduser().is_file():
            params["path"] = str(Path(model_spec.weights).expanduser())
        return CheckpointMapModel(name=spec, kind="model", params={**params, **extra}, network=network,
                                  image_size=image_size, precision=precision)
    if spec.startswith("ckpt:"):
        path = spec[len("ckpt:") :]
        network, run_name = _checkpoint_network(path)
        return CheckpointMapModel(name=f"ckpt:{run_name}", kind="checkpoint", params={"path": path, **extra},
                                  network=network, image_size=image_size, precision=precision)
    if spec.startswith("maps:"):
        folder = Path(spec[len("maps:") :]).expanduser()
        if folder.is_file():
            raise InputFileError(f"{spec}: {folder} is a file; expected a folder with one saliency map per image")
        if not folder.is_dir():
            raise MissingInputError(f"{spec}: no folder {folder} (expected one saliency map per image, named like it)")
        return FolderMapModel(name=f"maps:{folder.name}", kind="maps", params={"folder": str(folder)}, folder=folder)
    if spec in CLASSICAL_MODELS:
        model = build_classical(spec, **((classical_params or {}).get(spec) or {}))
        return ClassicalMapModel(name=spec, kind="classical", params=model.params(), model=model)
    raise ConfigError(
        f"unknown model {spec!r}: use one of {sorted(CLASSICAL_MODELS)}, ckpt:<checkpoint path>, maps:<folder> or "
        "model:<name> (the configured backbone=custom model's own output)"
    )
