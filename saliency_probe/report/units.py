"""Rendering of the unit figures before and after fine-tuning (Figs. 5, 6) and across tasks (Fig. 11)."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from matplotlib.figure import Figure

from saliency_probe.maps import minmax


def map_row(image: np.ndarray, fixations: np.ndarray, region_mask: np.ndarray,
            panels: Sequence[tuple[str, np.ndarray | None, bool]], title: str) -> Figure:
    """One row: each panel shows ``image`` with a map overlaid (``overlay`` True), the map alone, or the image
    with the category's regions outlined and the fixations (map None)."""
    figure = Figure(figsize=(3.0 * len(panels), 2.8))
    axes = figure.subplots(1, len(panels), squeeze=False)
    for axis, (label, values, overlay) in zip(axes[0], panels, strict=True):
        axis.axis("off")
        axis.set_title(label, fontsize=8)
        if values is None:
            axis.imshow(image)
            if region_mask.any():
                axis.contour(region_mask.astype(float), levels=[0.5], colors="white", linewidths=1.2)
            ys, xs = np.nonzero(fixations)
            axis.scatter(xs, ys, s=3, c="red")
        elif overlay:
            axis.imshow(image)
            axis.imshow(minmax(values), cmap="jet", alpha=0.5, vmin=0.0, vmax=1.0)
        else:
            axis.imshow(values, cmap="jet")
    figure.suptitle(title, fontsize=9)
    figure.tight_layout()
    return figure
