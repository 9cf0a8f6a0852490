"""Probe analyses as typed plug-ins: ``analyses: [inner, output, ...]`` in ``conf/probe.yaml`` names them.

An analysis is a subclass of :class:`Analysis` with a ``name``, ``applies_to(cfg, sources)`` (does ``analyses:
auto`` run it for these models?) and ``run(context) -> AnalysisResult`` (write its tables and figures, return
its summary). ``@register_analysis`` makes it available by name; the built-in modules below are imported on
first use, so a new analysis needs its module and one line in :data:`BUILTIN_MODULES` (or an import of its
module before ``probe.py`` composes, for a plug-in outside the package).
"""

from __future__ import annotations

import importlib
from abc import ABC, abstractmethod
from collections.abc import Sequence
from typing import TYPE_CHECKING, ClassVar

from omegaconf import DictConfig

if TYPE_CHECKING:
    from saliency_probe.probe.context import AnalysisResult, ProbeContext
    from saliency_probe.probe.sources import TrunkSource


class Analysis(ABC):
    """One analysis of ``probe.py``."""

    #: The name in ``analyses: [...]`` and the key of its ``probe_summary.json`` entry.
    name: ClassVar[str]
    #: False for analyses that score their own models (``benchmark.models``), not the probed trunks.
    uses_trunks: ClassVar[bool] = True

    def applies_to(self, cfg: DictConfig, sources: Sequence[TrunkSource]) -> bool:
        """Whether ``analyses: auto`` runs this analysis for ``sources`` (default: always)."""
        return True

    @abstractmethod
    def run(self, context: ProbeContext) -> AnalysisResult:
        """Write the analysis's tables and figures into ``context.run_dir``; return its result."""


_REGISTRY: dict[str, Analysis] = {}

#: analysis name -> module that registers it (imported lazily).
BUILTIN_MODULES: dict[str, str] = {
    "inner": "saliency_probe.probe.inner",
    "output": "saliency_probe.probe.output",
    "scene_attention": "saliency_probe.probe.scene_attention",
    "popout": "saliency_probe.probe.popout",
    "benchmark": "saliency_probe.probe.benchmark",
}


def register_analysis(cls: type[Analysis]) -> type[Analysis]:
    """Class decorator: make ``cls`` available as ``analyses: [cls.name]``."""
    existing = _REGISTRY.get(cls.name)
    if existing is not None and type(existing).__qualname__ != cls.__qualname__:
        raise ValueError(f"analysis {cls.name!r} is already registered by {type(existing).__module__}."
                         f"{type(existing).__qualname__}")
    _REGISTRY[cls.name] = cls()
    return cls


def available_analyses() -> list[str]:
    """Names that ``get_analysis`` can resolve (registered or built in)."""
    return sorted(set(_REGISTRY) | set(BUILTIN_MODULES))


def get_analysis(name: str) -> Analysis:
    """The analysis registered under ``name``, importing its built-in module if needed."""
    if name not in _REGISTRY and name in BUILTIN_MODULES:
        importlib.import_module(BUILTIN_MODULES[name])
    if name not in _REGISTRY:
        raise ValueError(f"unknown analysis {name!r}; available: {available_analyses()}")
    return _REGISTRY[name]
