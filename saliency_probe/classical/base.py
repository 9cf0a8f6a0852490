"""One interface for the classical saliency models, and their registry.

Every model is a frozen dataclass whose fields are its documented parameters (so Hydra can build it from a
config with ``_target_`` and the parameters as keys), with a ``name`` and a ``__call__`` that maps an RGB uint8
``H x W x 3`` image to a float32 ``H x W`` map of the same size, as SMILER does.  Subclasses implement only
``_saliency``; input validation and the output contract live here, once.
"""

from __future__ import annotations

import dataclasses
import importlib
from abc import ABC, abstractmethod
from collections.abc import Callable
from typing import Any, ClassVar, TypeVar

import numpy as np

from saliency_probe.errors import ConfigError

#: Modules that register the built-in models (imported lazily to avoid an import cycle with this module).
_BUILTIN_MODULES = ("bms", "gbvs", "itti", "spectral")


class SaliencyModel(ABC):
    """A saliency model: ``model(image) -> map``.

    ``image`` is an RGB ``uint8`` array of shape ``(H, W, 3)``; the result is a finite ``float32`` array of
    shape ``(H, W)`` (larger = more salient; the scale is the model's own, usually 0..1).
    """

    #: Registry key of the model (``bms``, ``gbvs``, ``itti``, ``spectral_residual``).
    name: ClassVar[str] = ""

    def __call__(self, image: np.ndarray) -> np.ndarray:
        """Validate ``image``, compute the map and check it matches the image's height and width."""
        check_rgb_image(image, what=f"{type(self).__name__} input")
        saliency = np.asarray(self._saliency(image), dtype=np.float32)
        if saliency.shape != image.shape[:2]:
            raise RuntimeError(
                f"{type(self).__name__} returned a map of shape {saliency.shape}, expected {image.shape[:2]}"
            )
        return saliency

    @abstractmethod
    def _saliency(self, image: np.ndarray) -> np.ndarray:
        """Compute the map of a validated RGB uint8 image (same height and width as the image)."""

    def params(self) -> dict[str, Any]:
        """The model's parameters (its dataclass fields) as a plain dict, for logging and reports."""
        if dataclasses.is_dataclass(self):
            return {field.name: getattr(self, field.name) for field in dataclasses.fields(self)}
        return {}


def check_rgb_image(image: Any, what: str = "image") -> None:
    """Raise a clear error unless ``image`` is an RGB uint8 array of shape (H, W, 3) with H, W >= 1."""
    if not isinstance(image, np.ndarray):
        raise TypeError(
            f"{what}: expected a numpy array (H, W, 3) of dtype uint8, got {type(image).__name__}"
        )
    if image.ndim != 3 or image.shape[2] != 3 or image.shape[0] < 1 or image.shape[1] < 1:
        raise ValueError(f"{what}: expected an RGB image of shape (H, W, 3), got shape {image.shape}")
    if image.dtype != np.uint8:
        raise ValueError(f"{what}: expected dtype uint8 (0..255 RGB), got {image.dtype}")


class UnknownParameterError(ConfigError, TypeError):
    """A classical model's parameter that does not exist (a ``TypeError``, as calling the class would raise)."""


#: Registry of the classical models: name -> class.  Filled by :func:`register` when the modules are imported.
CLASSICAL_MODELS: dict[str, type[SaliencyModel]] = {}

_Model = TypeVar("_Model", bound=type[SaliencyModel])


def register(name: str) -> Callable[[_Model], _Model]:
    """Class decorator: set ``cls.name = name`` and add the class to :data:`CLASSICAL_MODELS`."""

    def decorate(cls: _Model) -> _Model:
        if name in CLASSICAL_MODELS and CLASSICAL_MODELS[name] is not cls:
            raise ValueError(
                f"classical model name {name!r} is already registered by {CLASSICAL_MODELS[name]}"
            )
        cls.name = name
        CLASSICAL_MODELS[name] = cls
        return cls

    return decorate


def _load_builtin_models() -> None:
    for module in _BUILTIN_MODULES:
        importlib.import_module(f"{__package__}.{module}")


def build_classical(name: str, **params: Any) -> SaliencyModel:
    """Build the classical model registered as ``name`` with ``params`` overriding its published defaults."""
    _load_builtin_models()
    if name not in CLASSICAL_MODELS:
        valid = ", ".join(sorted(CLASSICAL_MODELS))
        raise ConfigError(f"unknown classical saliency model {name!r}; valid names: {valid}")
    cls = CLASSICAL_MODELS[name]
    valid_params = [field.name for field in dataclasses.fields(cls)] if dataclasses.is_dataclass(cls) else []
    unknown = sorted(set(params) - set(valid_params))
    if unknown:
        raise UnknownParameterError(
            f"unknown parameter(s) {unknown} for classical model {name!r}; valid parameters: {valid_params}"
        )
    return cls(**params)
