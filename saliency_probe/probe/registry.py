"""Registry of probe analyses: ``analyses: [inner, output, ...]`` in ``conf/probe.yaml`` names them.

An analysis is a function ``(context: ProbeContext) -> dict`` that writes its tables and figures into the run
folder and returns a small summary (printed at the end and kept in ``context.results[name]``). Modules register
theirs with ``@register_analysis("name")``; the built-in names below are imported on first use, so a new
analysis needs only its module and one line here.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from saliency_probe.probe.runner import ProbeContext

Analysis = Callable[["ProbeContext"], dict[str, Any]]

_REGISTRY: dict[str, Analysis] = {}

#: analysis name -> module that registers it (imported lazily).
BUILTIN_MODULES: dict[str, str] = {
    "inner": "saliency_probe.probe.inner",
    "output": "saliency_probe.probe.output",
    "scene_attention": "saliency_probe.probe.scene_attention",
    "popout": "saliency_probe.probe.popout",
    "benchmark": "saliency_probe.probe.benchmark",
}


def register_analysis(name: str) -> Callable[[Analysis], Analysis]:
    """Decorator: make ``function`` available as ``analyses: [name]``."""

    def decorate(function: Analysis) -> Analysis:
        existing = _REGISTRY.get(name)
        if (
            existing is not None
            and existing is not function
            and existing.__qualname__ != function.__qualname__
        ):
            raise ValueError(
                f"analysis {name!r} is already registered by {existing.__module__}.{existing.__qualname__}"
            )
        _REGISTRY[name] = function
        return function

    return decorate


def available_analyses() -> list[str]:
    """Names that ``get_analysis`` can resolve (registered or built in)."""
    return sorted(set(_REGISTRY) | set(BUILTIN_MODULES))


def get_analysis(name: str) -> Analysis:
    """The analysis registered under ``name``, importing its built-in module if needed."""
    if name not in _REGISTRY and name in BUILTIN_MODULES:
        try:
            importlib.import_module(BUILTIN_MODULES[name])
        except ModuleNotFoundError as error:
            if error.name == BUILTIN_MODULES[name]:
                raise ValueError(
                    f"analysis {name!r} is not implemented yet (module {error.name} is missing)"
                ) from error
            raise
    if name not in _REGISTRY:
        raise ValueError(f"unknown analysis {name!r}; available: {available_analyses()}")
    return _REGISTRY[name]
