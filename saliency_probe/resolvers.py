"""OmegaConf resolvers that the configs in conf/ use (registered when the package is imported)."""

from __future__ import annotations

import os

from omegaconf import OmegaConf

__all__ = ["loader_workers", "register_resolvers"]


def loader_workers(at_most: int | str = 4) -> int:
    """``${loader_workers:4}``: data-loader workers, ``min(at_most, CPU cores available to this process)``."""
    try:
        cores = len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        cores = os.cpu_count() or 1
    return max(0, min(int(at_most), cores))


def register_resolvers() -> None:
    OmegaConf.register_new_resolver("loader_workers", loader_workers, replace=True)
