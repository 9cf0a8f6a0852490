"""Matplotlib figures of the probe (Agg backend, written atomically as PNG).

- :func:`unit_panels`: for the best unit of each category, an example image with the category's regions and
  the unit's map overlaid (the paper's Fig. 3);
- :func:`improvement_bars`: top-k mean NSS change per category against a reference model (the paper's Fig. 4).
"""

from __future__ import annotations

import math
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
from matplotlib.figure import Figure  # noqa: E402

from saliency_probe.io_utils import atomic_path  # noqa: E402


@dataclass
class UnitPanel:
    """One panel: an image, a unit map at the image's size, the highlighted regions and their fixations."""

    image: np.ndarray
    unit_map: np.ndarray
    region_mask: np.ndarray
    fixations: np.ndarray
    title: str


def save_figure(figure: Figure, path: str | os.PathLike[str], dpi: int = 110) -> Path:
    """Save ``figure`` as PNG atomically and close it."""
    try:
        with atomic_path(path) as temporary:
            figure.savefig(temporary, format="png", dpi=dpi, bbox_inches="tight")
    finally:
        plt.close(figure)
    return Path(path)


def _normalise(values: np.ndarray) -> np.ndarray:
    low, high = float(np.min(values)), float(np.max(values))
    return np.zeros_like(values, dtype=np.float64) if high <= low else (values - low) / (high - low)


def unit_panels(panels: Sequence[UnitPanel], title: str, columns: int = 4) -> Figure:
    """A grid of panels: image, unit map (jet, alpha 0.5), region outlines (white) and fixations (dots)."""
    count = max(len(panels), 1)
    columns = min(columns, count)
    rows = math.ceil(count / columns)
    figure, axes = plt.subplots(rows, columns, figsize=(3.2 * columns, 2.7 * rows), squeeze=False)
    for axis in axes.ravel():
        axis.axis("off")
    for axis, panel in zip(axes.ravel(), panels, strict=False):
        axis.imshow(panel.image)
        axis.imshow(_normalise(panel.unit_map), cmap="jet", alpha=0.5, vmin=0.0, vmax=1.0)
        if panel.region_mask.any():
            axis.contour(panel.region_mask.astype(float), levels=[0.5], colors="white", linewidths=1.2)
        ys, xs = np.nonzero(panel.fixations & panel.region_mask)
        axis.scatter(xs, ys, s=4, c="white", edgecolors="black", linewidths=0.3)
        axis.set_title(panel.title, fontsize=8)
    figure.suptitle(title, fontsize=10)
    figure.tight_layout()
    return figure


def improvement_bars(
    categories: Sequence[str],
    improvements: Mapping[str, Sequence[float]],
    reference: str,
    ylabel: str = "top-10 mean NSS change",
    title: str = "",
) -> Figure:
    """Grouped bars: per category, one bar per model, height = its statistic minus the reference's."""
    models = list(improvements)
    figure, axis = plt.subplots(figsize=(max(6.0, 0.75 * len(categories) * max(1, len(models)) ** 0.5), 3.6))
    width = 0.8 / max(1, len(models))
    positions = np.arange(len(categories))
    colours = plt.get_cmap("viridis")(np.linspace(0.1, 0.9, max(1, len(models))))
    for index, model in enumerate(models):
        values = np.asarray(improvements[model], dtype=float)
        axis.bar(
            positions + (index - (len(models) - 1) / 2) * width,
            np.nan_to_num(values),
            width,
            label=model,
            color=colours[index],
        )
    axis.axhline(0.0, color="black", linewidth=0.8)
    axis.set_xticks(positions, list(categories), rotation=35, ha="right", fontsize=8)
    axis.set_ylabel(ylabel)
    axis.set_title(title or f"change against {reference}", fontsize=10)
    if models:
        axis.legend(fontsize=7, ncols=min(4, len(models)), frameon=False)
    figure.tight_layout()
    return figure
