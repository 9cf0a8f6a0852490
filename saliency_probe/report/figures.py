"""Writing figures: PNG files saved atomically from ``matplotlib.figure.Figure`` objects.

Every figure of the project is built with the object-oriented API (``Figure(...)``, ``figure.subplots(...)``),
which needs no backend and no global pyplot state: the report modules never choose a backend at import time.
"""

from __future__ import annotations

import os
from pathlib import Path

from matplotlib.figure import Figure

from saliency_probe.io_utils import atomic_path

__all__ = ["save_figure"]


def save_figure(figure: Figure, path: str | os.PathLike[str], dpi: int = 110) -> Path:
    """Save ``figure`` as PNG at ``path`` atomically (temporary file, then rename); return the path."""
    with atomic_path(path) as temporary:
        figure.savefig(temporary, format="png", dpi=dpi, bbox_inches="tight")
    return Path(path)
