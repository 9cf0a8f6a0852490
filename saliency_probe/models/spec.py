"""What a ``backbone`` config names: the trunk's architecture and its starting weights (docs/backbones.md).

A :class:`BackboneSpec` is the plain form of the ``backbone`` group (``conf/backbone/*.yaml``): the model's name
(``vgg16``, ``resnet50``, any torchvision classification model, or ``custom``), its weights, optional layer
nodes, the head's layer and (``custom``) the builder. It is what checkpoints record and what every trunk is
rebuilt from, so it holds only strings, numbers, lists and dicts.
"""

from __future__ import annotations

import functools
import json
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from typing import Any

from saliency_probe.errors import ConfigError

#: The backbones with a file in ``conf/backbone`` (besides ``torchvision`` and ``custom``).
NAMED_BACKBONES: tuple[str, ...] = ("vgg16", "vgg19", "resnet18", "resnet50")
#: Keys of the ``backbone`` group that the framework reads; with ``custom`` every other key goes to the builder.
RESERVED_KEYS: tuple[str, ...] = ("name", "weights", "layers", "head_layer", "output")
CUSTOM = "custom"

_VGG_NAMES = ("vgg11", "vgg13", "vgg16", "vgg19")
_RESNET_PREFIXES = ("resnet", "resnext", "wide_resnet")


@functools.lru_cache(maxsize=1)
def torchvision_classification_models() -> tuple[str, ...]:
    """Names of torchvision's classification models (``torchvision.models.list_models``)."""
    import torchvision
    from torchvision.models import list_models

    return tuple(sorted(list_models(module=torchvision.models)))


def family(name: str) -> str:
    """``vgg``, ``resnet``, ``torchvision`` (any other torchvision classification model) or ``custom``."""
    if name == CUSTOM:
        return CUSTOM
    if name.removesuffix("_bn") in _VGG_NAMES:
        return "vgg"
    if name.startswith(_RESNET_PREFIXES) and name in torchvision_classification_models():
        return "resnet"
    if name in torchvision_classification_models():
        return "torchvision"
    raise ConfigError(unknown_backbone_message(name))


def unknown_backbone_message(name: str) -> str:
    models = ", ".join(torchvision_classification_models())
    return (
        f"unknown backbone {name!r}: choose backbone={' | '.join(NAMED_BACKBONES)} (conf/backbone), "
        f"backbone=torchvision backbone.name=<one of torchvision's classification models: {models}>, or "
        "backbone=custom backbone._target_=<your nn.Module builder> backbone.layers=[<its nodes>] (docs/backbones.md)"
    )


def _plain(value: Any) -> Any:
    """OmegaConf containers (or anything list/dict-like) as plain Python containers."""
    try:
        from omegaconf import DictConfig, ListConfig, OmegaConf

        if isinstance(value, (DictConfig, ListConfig)):
            return OmegaConf.to_container(value, resolve=True, throw_on_missing=False)
    except ImportError:  # pragma: no cover - omegaconf is a dependency
        pass
    if isinstance(value, Mapping):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    return value


@dataclass(frozen=True)
class BackboneSpec:
    """The ``backbone`` config as plain values.

    Attributes:
        name: ``vgg16`` (the paper's), ``vgg19``, ``resnet18``, ``resnet50``, any torchvision classification
            model (``densenet161``, ``efficientnet_b0``, ...) or ``custom``.
        weights: ``None`` (random initialisation), the model's torchvision weights enum name (``IMAGENET1K_V1``)
            or a path to a state-dict file.
        layers: the layer table's nodes (``custom``: required; torchvision models: replaces the detected
            stages): a list of graph nodes (probe name = node) or a ``{probe name: node}`` mapping.
        head_layer: the layer the saliency and scene heads read (default: the last table layer).
        output: ``custom`` only: the node or method of the model that gives its own saliency map.
        builder: ``custom`` only: ``_target_`` and its arguments (Hydra ``instantiate``).
    """

    name: str = "vgg16"
    weights: str | None = None
    layers: Any = None
    head_layer: str | None = None
    output: str | None = None
    builder: dict[str, Any] = field(default_factory=dict)

    @classmethod
    def from_config(cls, config: Any = None, weights: Any = "__keep__") -> BackboneSpec:
        """From a ``backbone`` config (DictConfig or dict), a name, a spec or None (VGG-16); ``weights``
        replaces the config's weights when given."""
        if isinstance(config, BackboneSpec):
            spec = config
        else:
            if config is None:
                values: dict[str, Any] = {}
            elif isinstance(config, str):
                values = {"name": config}
            else:
                values = dict(_plain(config))
            name = str(values.pop("name", None) or "vgg16").strip()
            if name == "???":
                raise ConfigError("backbone=torchvision needs backbone.name=<a torchvision classification model>: "
                                 + ", ".join(torchvision_classification_models()))
            values = {key: (None if value == "???" and key != "_target_" else value) for key, value in values.items()}
            extra = {key: values.pop(key) for key in list(values) if key not in RESERVED_KEYS}
            if extra and name != CUSTOM:
                raise ConfigError(
                    f"backbone={name} takes the keys {', '.join(RESERVED_KEYS)}; {sorted(extra)} are for "
                    "backbone=custom (the builder's _target_ and its arguments)"
                )
            if name == CUSTOM and extra.get("_target_") in (None, "", "???"):
                raise ConfigError(
                    "backbone=custom needs backbone._target_ (the import path of a function or class that builds "
                    "your nn.Module) and backbone.layers (its nodes); see docs/backbones.md"
                )
            layers = values.get("layers")
            spec = cls(
                name=name,
                weights=_weights_value(values.get("weights")),
                layers=_plain(layers) if layers is not None else None,
                head_layer=None if values.get("head_layer") is None else str(values["head_layer"]),
                output=None if values.get("output") is None else str(values["output"]),
                builder=extra,
            )
        if weights != "__keep__":
            spec = replace(spec, weights=_weights_value(weights))
        if family(spec.name) in ("vgg", "resnet") and spec.layers:  # unknown names fail here, listing the valid ones
            raise ConfigError(
                f"backbone.layers is for torchvision models and custom backbones; {spec.name} has a fixed layer table "
                f"(`python -m saliency_probe.models.backbone {spec.name}`); probe.py takes any of its graph nodes "
                "in layers=[...]"
            )
        if spec.name == CUSTOM and not spec.layers:
            raise ConfigError(
                "backbone=custom needs backbone.layers: the graph nodes of your model to probe (a list, or a "
                "{name: node} mapping), e.g. backbone.layers=[encoder.1,encoder.3]; "
                "`python -m saliency_probe.models.backbone custom backbone._target_=...` lists the nodes"
            )
        if spec.output is not None and spec.name != CUSTOM:
            raise ConfigError(f"backbone.output is for backbone=custom; {spec.name} is scored through its 1x1 head")
        return spec

    @property
    def family(self) -> str:
        return family(self.name)

    def to_dict(self) -> dict[str, Any]:
        """The plain config (what checkpoints record; :meth:`from_config` reads it back)."""
        values: dict[str, Any] = {"name": self.name, "weights": self.weights}
        if self.layers is not None:
            values["layers"] = self.layers
        if self.head_layer is not None:
            values["head_layer"] = self.head_layer
        if self.output is not None:
            values["output"] = self.output
        values.update(self.builder)
        return values

    def architecture_key(self) -> str:
        """Everything but the weights, as a string: equal keys build the same architecture."""
        values = self.to_dict()
        values.pop("weights")
        return json.dumps(values, sort_keys=True, default=str)

    def describe(self) -> str:
        """``resnet18`` or ``custom (my_models.TinyNet)`` for messages."""
        if self.name == CUSTOM:
            return f"custom ({self.builder.get('_target_')})"
        return self.name


def _weights_value(weights: Any) -> str | None:
    if weights is None:
        return None
    text = str(weights).strip()
    return None if text.lower() in {"", "none", "null", "random"} else text
