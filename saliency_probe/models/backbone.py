"""The VGG-16 trunk shared by every model: layer table, weight loading and the freezing rule.

The trunk is torchvision's ``vgg16().features`` up to the ReLU after conv5_3 (indices 0..29; no pool5), so state
dict keys are ``features.<index>.weight`` exactly as in torchvision's VGG-16 and a torchvision state dict loads
into it after dropping the classifier.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import torch
from torch import nn
from torchvision.models import VGG16_Weights
from torchvision.models.vgg import cfgs, make_layers

from saliency_probe.errors import ConfigError, InputFileError, MissingInputError

#: conv layer name -> index in ``torchvision.models.vgg16().features``; the in-place ReLU sits at index + 1.
VGG16_CONV_LAYERS: dict[str, int] = {
    "conv1_1": 0,
    "conv1_2": 2,
    "conv2_1": 5,
    "conv2_2": 7,
    "conv3_1": 10,
    "conv3_2": 12,
    "conv3_3": 14,
    "conv4_1": 17,
    "conv4_2": 19,
    "conv4_3": 21,
    "conv5_1": 24,
    "conv5_2": 26,
    "conv5_3": 28,
}
CONV_LAYER_NAMES: list[str] = list(VGG16_CONV_LAYERS)
#: Spatial stride of each conv layer's output relative to the input.
LAYER_STRIDE: dict[str, int] = {name: 2 ** int(name[4]) // 2 for name in CONV_LAYER_NAMES}
LAYER_CHANNELS: dict[str, int] = {
    name: {1: 64, 2: 128, 3: 256, 4: 512, 5: 512}[int(name[4])] for name in CONV_LAYER_NAMES
}
VALID_FINETUNE_LAYERS: tuple[str, ...] = ("0", "1", "2", "3", "4", "5", "6", "all")
TORCHVISION_VGG16_FILE = "vgg16-397923af.pth"
#: features index of the ReLU after conv5_3: the trunk is ``features[:TRUNK_END]``.
TRUNK_END = VGG16_CONV_LAYERS["conv5_3"] + 2


def is_random_weights(weights: Any) -> bool:
    """True for the spellings of "no pretrained weights" (``null``, ``none``, ``random``)."""
    return weights is None or str(weights).strip().lower() in {"", "none", "null", "random"}


def relu_node_name(layer: str) -> str:
    """Name of the post-ReLU node of ``layer`` for ``torchvision.models.feature_extraction``."""
    return f"features.{VGG16_CONV_LAYERS[layer] + 1}"


def validate_layers(layers: list[str] | tuple[str, ...], key: str | None = None) -> list[str]:
    """Check probe layer names against the table; raise ``ConfigError`` (naming ``key`` when given, e.g.
    ``"layers"``) with the valid names otherwise."""
    unknown = [name for name in layers if name not in VGG16_CONV_LAYERS]
    if unknown:
        where = f"{key}: " if key else ""
        raise ConfigError(f"{where}unknown VGG-16 layer(s) {unknown}; valid layers are {', '.join(CONV_LAYER_NAMES)}")
    return list(layers)


def parse_finetune_layers(value: int | str) -> int:
    """Turn ``finetune.layers`` (0..6 or 'all'; Hydra gives ints or strings) into a count of conv layers."""
    text = str(value).strip().lower()
    if text not in VALID_FINETUNE_LAYERS:
        raise ConfigError(
            f"finetune.layers={value!r} is not valid; choose one of {', '.join(VALID_FINETUNE_LAYERS)} "
            "(the number of conv layers counted back from conv5_3 that are fine-tuned; 'all' = all 13)"
        )
    return len(CONV_LAYER_NAMES) if text == "all" else int(text)


def trainable_conv_layers(value: int | str) -> list[str]:
    """Names of the conv layers that train for ``finetune.layers=value`` (the last k, counted from conv5_3)."""
    count = parse_finetune_layers(value)
    return CONV_LAYER_NAMES[len(CONV_LAYER_NAMES) - count :] if count else []


class VGGTrunk(nn.Module):
    """VGG-16 conv1_1..conv5_3 with their ReLUs (no pool5); ``forward`` returns conv5_3 post-ReLU maps."""

    def __init__(self) -> None:
        super().__init__()
        # torchvision's own layer builder (no classifier: building VGG-16's 124M-parameter head costs seconds).
        self.features = nn.Sequential(*list(make_layers(cfgs["D"], batch_norm=False).children())[:TRUNK_END])
        for module in self.features.modules():  # torchvision's VGG initialisation
            if isinstance(module, nn.Conv2d):
                nn.init.kaiming_normal_(module.weight, mode="fan_out", nonlinearity="relu")
                nn.init.zeros_(module.bias)

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return self.features(images)

    def conv(self, layer: str) -> nn.Conv2d:
        """The ``nn.Conv2d`` of a named layer."""
        return self.features[VGG16_CONV_LAYERS[layer]]

    def set_trainable(self, finetune_layers: int | str) -> list[str]:
        """Apply the static freezing rule; return the trainable layer names."""
        trainable = set(trainable_conv_layers(finetune_layers))
        for name in CONV_LAYER_NAMES:
            for parameter in self.conv(name).parameters():
                parameter.requires_grad_(name in trainable)
        return [name for name in CONV_LAYER_NAMES if name in trainable]


def _torch_hub_checkpoint_dir() -> Path:
    return Path(torch.hub.get_dir()) / "checkpoints"


#: First bytes of the files ``torch.save`` writes: a zip archive (the default) or a pickle (protocol 2 and up).
TORCH_FILE_MAGIC = (b"PK\x03\x04", b"\x80")


def torch_file_problem(path: Path) -> str | None:
    """Why the existing file ``path`` cannot be a ``torch.save`` file (empty, or other bytes), or None."""
    with path.open("rb") as handle:
        head = handle.read(4)
    if not head:
        return "is an empty file"
    if not head.startswith(TORCH_FILE_MAGIC):
        return "is not a PyTorch file (neither a zip archive nor a pickle)"
    return None


def load_error_reason(error: BaseException) -> str:
    """One line on why ``torch.load`` failed: the weights-only unpickler's own reason when it gives one."""
    lines = [line.strip() for line in str(error).splitlines() if line.strip()]
    specific = [line.removeprefix("WeightsUnpickler error:").strip() for line in lines if "Unsupported" in line]
    reason = (specific or lines or [type(error).__name__])[0]
    return reason.split(". Please ")[0]  # the unpickler's advice to allowlist the class is not for users


def _is_file_spec(weights: str) -> bool:
    path = Path(os.path.expanduser(str(weights)))
    return path.suffix in {".pth", ".pt", ".ckpt", ".bin"} or path.exists()


def _check_weights_file(path: Path) -> None:
    """A ``backbone.weights`` file that is absent or a folder fails naming the key and what is expected."""
    if path.is_dir():
        raise InputFileError(
            f"backbone.weights={path} is a folder; expected a VGG-16 state_dict file (.pth), e.g. {TORCHVISION_VGG16_FILE}"
        )
    if not path.is_file():
        raise MissingInputError(f"backbone.weights: no VGG-16 state_dict file at {path}")


def check_weights_available(weights: str | None) -> None:
    """Fail at once (before any data work) when ``backbone.weights`` names a file or cache entry that is absent."""
    if is_random_weights(weights):
        return
    if _is_file_spec(str(weights)):
        _check_weights_file(Path(os.path.expanduser(str(weights))))
        return
    _torchvision_weights(str(weights))


def _torchvision_weights(weights: str) -> VGG16_Weights:
    """The torchvision enum for ``weights``; offline without the cached file, an error naming file and folder."""
    name = str(weights).split(".")[-1]
    try:
        enum = VGG16_Weights[name]
    except KeyError:
        valid = ", ".join(w.name for w in VGG16_Weights)
        raise ConfigError(
            f"backbone.weights={weights!r} is neither a file nor a torchvision VGG16_Weights name ({valid}); "
            "null = random initialisation"
        ) from None
    file_name = Path(enum.url).name
    cached = _torch_hub_checkpoint_dir() / file_name
    if not cached.is_file() and os.environ.get("SALIENCY_PROBE_ALLOW_DOWNLOAD", "0") != "1":
        raise MissingInputError(
            f"backbone.weights={weights}: {file_name} is not in torchvision's cache {cached.parent} "
            f"($TORCH_HOME/hub/checkpoints); copy it there, pass backbone.weights=/path/to/{file_name}, "
            "or set SALIENCY_PROBE_ALLOW_DOWNLOAD=1 to download it"
        )
    return enum


def load_vgg16_state_dict(weights: str) -> dict[str, torch.Tensor]:
    """Load a VGG-16 state dict from a torchvision enum name (``IMAGENET1K_V1``) or a local file.

    Offline and without the cached file, fail at once naming the file torchvision looks for and where.
    """
    path = Path(os.path.expanduser(str(weights)))
    if _is_file_spec(str(weights)):
        _check_weights_file(path)
        problem = torch_file_problem(path)
        if problem:
            raise InputFileError(f"backbone.weights: {path} {problem}; expected a VGG-16 state_dict file (.pth)")
        try:
            state = torch.load(path, map_location="cpu", weights_only=True)
        except Exception as error:  # noqa: BLE001 - re-raised with the file name
            raise InputFileError(
                f"backbone.weights: {path} is not a loadable VGG-16 state_dict ({load_error_reason(error)})"
            ) from error
        if isinstance(state, dict) and "state_dict" in state and isinstance(state["state_dict"], dict):
            state = state["state_dict"]
        return state
    return _torchvision_weights(str(weights)).get_state_dict(progress=False, check_hash=True)


def build_trunk(weights: str | None = None) -> VGGTrunk:
    """The trunk with random initialisation (``weights=None``) or with VGG-16 weights loaded (see above)."""
    trunk = VGGTrunk()
    if is_random_weights(weights):
        return trunk
    state = load_vgg16_state_dict(str(weights))
    features = {
        key.removeprefix("trunk.").removeprefix("features."): value
        for key, value in state.items()
        if key.startswith(("features.", "trunk.features."))
    }
    if not features:
        raise InputFileError(
            f"backbone.weights={weights}: no 'features.*' keys found; expected a torchvision VGG-16 state_dict"
        )
    expected = set(trunk.features.state_dict())
    kept = {key: value for key, value in features.items() if key in expected}
    missing = sorted(expected - set(kept))
    if missing:
        raise InputFileError(f"backbone.weights={weights}: VGG-16 state_dict lacks {missing[:4]}...")
    trunk.features.load_state_dict(kept)
    return trunk
