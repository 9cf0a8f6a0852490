"""The trunk shared by every model: which backbone, its weights, its layer table and the freezing rule.

``build_trunk(weights, backbone)`` builds the trunk a ``backbone`` config names (VGG-16 by default, the paper's;
docs/backbones.md lists the others) and loads its weights: ``null`` (random), the model's torchvision weights
enum name (``IMAGENET1K_V1``) or a local state-dict file. Offline, a torchvision name whose file is not in
torchvision's cache fails at once, naming the file.

The VGG-16 constants below (``VGG16_CONV_LAYERS`` ...) are the paper's layer table. VGG-16's trunk is
torchvision's ``vgg16().features`` up to the ReLU after conv5_3 (indices 0..29; no pool5), so state dict keys
are ``features.<index>.weight`` exactly as in torchvision's VGG-16. List any backbone's table with
``python -m saliency_probe.models.backbone resnet18`` (``--nodes`` adds every graph node).
"""

from __future__ import annotations

import argparse
import functools
import os
import sys
import warnings
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch
from torch import nn

from saliency_probe.errors import ConfigError, InputFileError, MissingInputError
from saliency_probe.models.layers import LAST, Layer, LayerTable
from saliency_probe.models.spec import (
    CUSTOM,
    NAMED_BACKBONES,
    BackboneSpec,
    torchvision_classification_models,
)
from saliency_probe.models.trunks import (
    OUTPUT_KEY,
    Architecture,
    GraphTrunk,
    ResNetTrunk,
    Trunk,
    VGGTrunk,
    architecture,
    build_model,
    make_trunk,
)

__all__ = [
    "CONV_LAYER_NAMES", "LAST", "LAYER_CHANNELS", "LAYER_STRIDE", "NAMED_BACKBONES", "OUTPUT_KEY",
    "TORCHVISION_VGG16_FILE", "TRUNK_END", "VALID_FINETUNE_LAYERS", "VGG16_CONV_LAYERS", "Architecture",
    "BackboneSpec", "GraphTrunk", "Layer", "LayerTable", "ResNetTrunk", "Trunk", "VGGTrunk", "architecture",
    "build_trunk", "check_weights_available", "describe_state_dict", "is_random_weights", "layer_table",
    "load_error_reason", "load_state_dict", "load_vgg16_state_dict", "parse_finetune_layers", "relu_node_name",
    "torch_file_problem", "trainable_conv_layers", "validate_layers",
]

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

STATE_DICT_SUFFIXES = {".pth", ".pt", ".ckpt", ".bin"}


def is_random_weights(weights: Any) -> bool:
    """True for the spellings of "no pretrained weights" (``null``, ``none``, ``random``)."""
    return weights is None or str(weights).strip().lower() in {"", "none", "null", "random"}


def layer_table(backbone: Any = None) -> LayerTable:
    """The layer table of a backbone (a ``backbone`` config, a spec or a name; default VGG-16)."""
    return architecture(backbone).table


def relu_node_name(layer: str, backbone: Any = None) -> str:
    """Graph node (``torchvision.models.feature_extraction``) of ``layer``'s post-activation output."""
    if backbone is None and layer in VGG16_CONV_LAYERS:
        return f"features.{VGG16_CONV_LAYERS[layer] + 1}"
    return architecture(backbone).layer(layer).node


def validate_layers(layers: list[str] | tuple[str, ...], key: str | None = None, backbone: Any = None) -> list[str]:
    """Check probe layer names against the table (or the graph); raise ``ConfigError`` (naming ``key`` when given,
    e.g. ``"layers"``) with the valid names otherwise."""
    arch = architecture(backbone)
    unknown = []
    for name in layers:
        try:
            arch.layer(name)
        except ValueError:
            unknown.append(name)
    if unknown:
        where = f"{key}: " if key else ""
        raise ConfigError(where + arch.unknown_layer_message(unknown))
    return list(layers)


def parse_finetune_layers(value: int | str, backbone: Any = None) -> int:
    """Turn ``finetune.layers`` (VGG-16: 0..6 or 'all'; Hydra gives ints or strings) into a count of units."""
    return architecture(backbone).parse_finetune(value)


def trainable_conv_layers(value: int | str, backbone: Any = None) -> list[str]:
    """Names of the units that train for ``finetune.layers=value`` (the last k, counted back from the head)."""
    arch = architecture(backbone)
    count = arch.parse_finetune(value)
    units = arch.table.finetune_units()
    return units[len(units) - count:] if count else []


# ------------------------------------------------------------------------------------------------------------
# weights
# ------------------------------------------------------------------------------------------------------------


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
    return path.suffix in STATE_DICT_SUFFIXES or path.exists()


def _label(spec: BackboneSpec) -> str:
    return "VGG-16" if spec.name == "vgg16" else spec.describe()


def _example_file(spec: BackboneSpec) -> str:
    return f", e.g. {TORCHVISION_VGG16_FILE}" if spec.name == "vgg16" else ""


def _check_weights_file(path: Path, spec: BackboneSpec) -> None:
    """A ``backbone.weights`` file that is absent or a folder fails naming the key and what is expected."""
    if path.is_dir():
        raise InputFileError(
            f"backbone.weights={path} is a folder; expected a {_label(spec)} state_dict file (.pth){_example_file(spec)}"
        )
    if not path.is_file():
        raise MissingInputError(f"backbone.weights: no {_label(spec)} state_dict file at {path}")


def check_weights_available(weights: str | None, backbone: Any = None) -> None:
    """Fail at once (before any data work) when ``backbone.weights`` names a file or cache entry that is absent."""
    spec = BackboneSpec.from_config(backbone, weights=weights)
    if spec.weights is None:
        return
    if _is_file_spec(spec.weights):
        _check_weights_file(Path(os.path.expanduser(spec.weights)), spec)
        return
    _torchvision_weights(spec)


def _torchvision_weights(spec: BackboneSpec) -> Any:
    """The torchvision enum for ``spec.weights``; offline without the cached file, an error naming file and folder."""
    from torchvision.models import get_model_weights

    weights = str(spec.weights)
    if spec.name == CUSTOM:
        raise ConfigError(f"backbone.weights={weights!r}: backbone=custom takes null or a state-dict file of your "
                          "model (torchvision weight names are for torchvision models)")
    enums = get_model_weights(spec.name)
    name = weights.split(".")[-1]
    try:
        enum = enums[name]
    except KeyError:
        valid = ", ".join(w.name for w in enums)
        raise ConfigError(
            f"backbone.weights={weights!r} is neither a file nor a torchvision {enums.__name__} name ({valid}); "
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


def load_state_dict(weights: str, backbone: Any = None) -> dict[str, torch.Tensor]:
    """A state dict from a torchvision enum name (``IMAGENET1K_V1``) of the backbone or from a local file.

    Offline and without the cached file, fail at once naming the file torchvision looks for and where.
    """
    spec = BackboneSpec.from_config(backbone, weights=weights)
    label = _label(spec)
    path = Path(os.path.expanduser(str(weights)))
    if _is_file_spec(str(weights)):
        _check_weights_file(path, spec)
        problem = torch_file_problem(path)
        if problem:
            raise InputFileError(f"backbone.weights: {path} {problem}; expected a {label} state_dict file (.pth)")
        try:
            state = torch.load(path, map_location="cpu", weights_only=True)
        except Exception as error:  # noqa: BLE001 - re-raised with the file name
            raise InputFileError(
                f"backbone.weights: {path} is not a loadable {label} state_dict ({load_error_reason(error)})"
            ) from error
        if isinstance(state, dict) and "state_dict" in state and isinstance(state["state_dict"], dict):
            state = state["state_dict"]
        if not isinstance(state, dict):
            raise InputFileError(f"backbone.weights: {path} holds a {type(state).__name__}, not a state_dict")
        return state
    return _torchvision_weights(spec).get_state_dict(progress=False, check_hash=True)


def load_vgg16_state_dict(weights: str) -> dict[str, torch.Tensor]:
    """Load a VGG-16 state dict from a torchvision enum name (``IMAGENET1K_V1``) or a local file."""
    return load_state_dict(weights, "vgg16")


def _shapes(state: Mapping[str, Any]) -> dict[str, tuple[int, ...]]:
    return {key: tuple(value.shape) for key, value in state.items()
            if isinstance(value, torch.Tensor) and not key.endswith("num_batches_tracked")}


@functools.lru_cache(maxsize=1)
def _torchvision_signatures() -> tuple[tuple[str, frozenset], ...]:
    """(name, frozenset of (key, shape)) of every torchvision classification model, built on the meta device."""
    out = []
    for name in torchvision_classification_models():
        try:
            with torch.device("meta"), warnings.catch_warnings():
                warnings.simplefilter("ignore")  # googlenet / inception_v3 warn about their initialisation
                model = build_model(BackboneSpec(name=name))
        except Exception:  # noqa: BLE001, S112 - a model that cannot be built here is not a candidate
            continue
        out.append((name, frozenset(_shapes(model.state_dict()).items())))
    return tuple(out)


def describe_state_dict(state: Mapping[str, Any]) -> str | None:
    """The torchvision architecture whose state dict ``state`` is (keys and shapes, any ``trunk.``/``model.``/
    ``module.`` prefix), else None."""
    shapes = _shapes(state)
    for prefix in ("", "trunk.", "trunk.model.", "model.", "module."):
        items = frozenset((key[len(prefix):], shape) for key, shape in shapes.items() if key.startswith(prefix))
        if not items:
            continue
        keys = {key for key, _ in items}
        for name, signature in _torchvision_signatures():
            theirs = {key for key, _ in signature}
            trunk_keys = {key for key in theirs if not key.startswith(("fc.", "classifier.", "head.", "heads."))}
            if items <= signature and trunk_keys <= keys:
                return name
    return None


def _match(state: Mapping[str, torch.Tensor], expected: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """The entries of ``state`` that name ``expected`` keys, after the prefix (none, ``trunk.``, ``model.`` ...)
    that matches most of them."""
    best: dict[str, torch.Tensor] = {}
    for prefix in ("", "trunk.", "trunk.model.", "model.", "module.", "module.model."):
        kept = {key[len(prefix):]: value for key, value in state.items()
                if key.startswith(prefix) and key[len(prefix):] in expected}
        if len(kept) > len(best):
            best = kept
    return best


def _other_architecture(state: Mapping[str, Any], spec: BackboneSpec) -> str:
    found = describe_state_dict(state)
    if found is None or found == spec.name:
        return ""
    return f"; the file holds {found} weights (backbone={found} would load them), not {spec.describe()}'s"


def _load_vgg(trunk: VGGTrunk, state: Mapping[str, torch.Tensor], spec: BackboneSpec) -> None:
    label = _label(spec)
    features = {
        key.removeprefix("trunk.").removeprefix("features."): value
        for key, value in state.items()
        if key.startswith(("features.", "trunk.features."))
    }
    if not features:
        raise InputFileError(
            f"backbone.weights={spec.weights}: no 'features.*' keys found; expected a torchvision {label} "
            f"state_dict{_other_architecture(state, spec)}"
        )
    expected = trunk.features.state_dict()
    kept = {key: value for key, value in features.items() if key in expected}
    missing = sorted(set(expected) - set(kept))
    wrong = [key for key, value in kept.items() if tuple(value.shape) != tuple(expected[key].shape)]
    if missing or wrong:
        what = f"lacks {missing[:4]}..." if missing else f"has other shapes for {wrong[:4]}"
        raise InputFileError(
            f"backbone.weights={spec.weights}: {label} state_dict {what}{_other_architecture(state, spec)}")
    trunk.features.load_state_dict(kept)


def _load_module(module: nn.Module, state: Mapping[str, torch.Tensor], spec: BackboneSpec) -> None:
    expected = module.state_dict()
    kept = _match(state, expected)
    missing = sorted(key for key in set(expected) - set(kept) if not key.endswith("num_batches_tracked"))
    wrong = [key for key, value in kept.items() if tuple(value.shape) != tuple(expected[key].shape)]
    if missing or wrong:
        what = f"lacks {len(missing)} of its keys ({missing[:3]}...)" if missing else \
            f"has other shapes for {wrong[:3]}"
        raise InputFileError(f"backbone.weights={spec.weights} does not fit {spec.describe()}: the state_dict {what}"
                             f"{_other_architecture(state, spec)}")
    module.load_state_dict(kept, strict=False)


def build_trunk(weights: str | None = None, backbone: Any = None) -> Trunk:
    """The trunk of ``backbone`` (a ``backbone`` config, a spec or a name; default VGG-16) with random
    initialisation (``weights=None``) or with ``weights`` loaded (see above)."""
    spec = BackboneSpec.from_config(backbone, weights=weights)
    trunk = make_trunk(spec)
    if spec.weights is None:
        return trunk
    state = load_state_dict(spec.weights, spec)
    if isinstance(trunk, VGGTrunk):
        _load_vgg(trunk, state, spec)
    elif isinstance(trunk, GraphTrunk):
        _load_module(trunk.model, state, spec)
    else:
        _load_module(trunk, state, spec)
    return trunk


# ------------------------------------------------------------------------------------------------------------
# python -m saliency_probe.models.backbone NAME [--nodes] [key=value ...]
# ------------------------------------------------------------------------------------------------------------


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description="Print a backbone's layer table (and its graph nodes).")
    parser.add_argument("name", help="vgg16, vgg19, resnet18, resnet50, any torchvision model name, or custom")
    parser.add_argument("overrides", nargs="*",
                        help="backbone keys in Hydra's syntax, e.g. backbone._target_=my.Net backbone.layers=[a,b]")
    parser.add_argument("--nodes", action="store_true", help="also list every graph node with its output shape")
    args = parser.parse_args(argv)
    from hydra.core.override_parser.overrides_parser import OverridesParser

    values: dict[str, Any] = {"name": args.name}
    for override in OverridesParser.create().parse_overrides(list(args.overrides)):
        key = override.key_or_group.removeprefix("backbone.")
        if key == "backbone":
            values["name"] = override.value()
        else:
            values[key] = override.value()
    arch = architecture(values)
    print(arch.table.describe())
    if args.nodes:
        graph = arch.graph()
        print("\nnodes (output shape at a 224 px input):")
        for node in graph.nodes:
            print(f"  {node}  {graph.shapes.get(node)}")


if __name__ == "__main__":
    sys.path.insert(0, os.getcwd())
    main()
