"""Markdown tables and figures of the pop-out analysis (Tables 4-6, Figs. 8 and 9, psychometric curves).

Builders take the analysis's plain rows and arrays and return a Markdown string or a
:class:`matplotlib.figure.Figure` (saved by :func:`saliency_probe.report.figures.save_figure`);
docs/popout_analysis.md describes the outputs.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

import matplotlib
import numpy as np
from matplotlib.figure import Figure

from saliency_probe.maps import minmax
from saliency_probe.report.tables import markdown_table, pivot_markdown

__all__ = ["SCORE_LABELS", "examples_figure", "fig9_figure", "layers_markdown", "models_markdown",
           "psychometric_figure", "sweep_markdown"]

#: Column and axis labels of the per-image scores (saliency_probe.probe.popout_metrics.SCORE_NAMES).
SCORE_LABELS = {
    "nmm": "NMM (target)",
    "nmm_distractors": "NMM (distractors)",
    "target_rank": "target rank (1 = best)",
    "gsi": "GSI",
    "fixations_to_find": "fixations to find",
}

Row = Mapping[str, Any]


def _cell(value: float) -> str:
    return f"{value:.2f}" if math.isfinite(value) else "–"


def models_markdown(rows: Sequence[Row], levels: Sequence[Row], header: str, scores: Sequence[str]) -> str:
    """Table 4 (models as rows, every score as a column) and NMM and rank per dimension at the strongest contrast.

    Parameters
    ----------
    rows : sequence of mappings
        Table 4 rows: ``model``, each of ``scores``, ``found_rate``, ``images``.
    levels : sequence of mappings
        Mean scores per ``model``, ``dimension`` and ``level``.
    header : str
        The paragraph under the title.
    scores : sequence of str
        Score columns, in table order.
    """
    body = [[row["model"], *(_cell(row[name]) for name in scores), _cell(row["found_rate"]), str(row["images"])]
            for row in rows]
    lines = ["# Pop-out search arrays: models (Table 4)", "", header, "",
             markdown_table(["model", *(SCORE_LABELS[n] for n in scores), "found rate", "arrays"], body), ""]
    top: dict[str, int] = {}
    for row in levels:
        top[row["dimension"]] = max(top.get(row["dimension"], 0), int(row["level"]))
    strongest = [row for row in levels if int(row["level"]) == top[row["dimension"]]]
    if strongest:
        for name in ("nmm", "target_rank"):
            lines += [f"**{SCORE_LABELS[name]} per dimension at the strongest contrast**", "",
                      pivot_markdown(strongest, "model", "dimension", name, corner="model"), ""]
    return "\n".join(lines).rstrip() + "\n"


def layers_markdown(rows: Sequence[Row], layers: Sequence[str], top_k: int, header: str) -> str:
    """Table 5's layout: trunks as rows, probed layers as columns (deepest first)."""
    stat = f"top{top_k}_nmm"
    table = pivot_markdown(rows, "model", "layer", stat, corner="model", column_order=list(reversed(layers)))
    return "\n".join([f"# Pop-out: mean NMM of the top {top_k} units per layer (Table 5)", "", header, "",
                      table, ""])


def sweep_markdown(rows: Sequence[Row], layer: str, top_k: int, header: str) -> str:
    """Table 6's layout: one row, the sweep's jobs as columns."""
    stat = f"top{top_k}_nmm"
    table = pivot_markdown(rows, lambda _: f"top-{top_k} NMM at {layer}", "model", stat, corner="")
    return "\n".join([f"# Pop-out: top-{top_k} unit NMM at {layer} against layers fine-tuned (Table 6)", "",
                      header, "", table, ""])


def examples_figure(examples: Mapping[str, Mapping[str, Any]], models: Sequence[str]) -> Figure:
    """Fig. 8: one row per array (image with the target outlined), then every model's min-max map.

    Parameters
    ----------
    examples : mapping
        ``{id: {"image": (H, W, 3) uint8, "target": (H, W) bool, "title": str, "maps": {model: (H, W)}}}``.
    models : sequence of str
        Map columns, in order (a model missing from an example leaves its cell empty).
    """
    rows = max(1, len(examples))
    columns = 1 + len(models)
    figure = Figure(figsize=(1.9 * columns, 1.9 * rows))
    axes = figure.subplots(rows, columns, squeeze=False)
    for axis in axes.ravel():
        axis.set_xticks([])
        axis.set_yticks([])
    for r, example in enumerate(examples.values()):
        axes[r, 0].imshow(example["image"])
        axes[r, 0].contour(np.asarray(example["target"]).astype(float), levels=[0.5], colors="red", linewidths=0.8)
        axes[r, 0].set_ylabel(example["title"], fontsize=7)
        for c, model in enumerate(models, start=1):
            if model in example["maps"]:
                axes[r, c].imshow(minmax(example["maps"][model]), cmap="gray", vmin=0.0, vmax=1.0)
    for c, title in enumerate(["image", *models]):
        axes[0, c].set_title(title, fontsize=8)
    figure.tight_layout()
    return figure


def fig9_figure(panels: Sequence[Mapping[str, Any]], layer: str, title: str = "") -> Figure:
    """Fig. 9: one column per array; rows: the array, its target mask, then its best-matching unit maps of
    ``layer`` (min-max scaled), titled with the unit index and its NMM on that array.

    Parameters
    ----------
    panels : sequence of mappings
        ``{"title": str, "image": (H, W, 3) uint8, "target": (H, W) bool, "units": [{"unit": int, "nmm":
        float, "map": (H, W)}]}``, best unit first (:func:`saliency_probe.probe.popout.fig9_panels`).
    layer : str
        The units' layer, for the titles.
    title : str
        The figure's title.
    """
    columns = max(1, len(panels))
    units = max([len(panel["units"]) for panel in panels] + [1])
    rows = 2 + units
    figure = Figure(figsize=(2.0 * columns, 2.0 * rows + (0.4 if title else 0.0)))
    axes = figure.subplots(rows, columns, squeeze=False)
    for axis in axes.ravel():
        axis.set_xticks([])
        axis.set_yticks([])
    for c, panel in enumerate(panels):
        axes[0, c].imshow(panel["image"])
        axes[0, c].set_title(panel["title"], fontsize=8)
        axes[1, c].imshow(np.asarray(panel["target"], dtype=float), cmap="gray", vmin=0.0, vmax=1.0)
        for r, unit in enumerate(panel["units"], start=2):
            axes[r, c].imshow(minmax(np.asarray(unit["map"], dtype=np.float64)), cmap="jet", vmin=0.0, vmax=1.0)
            axes[r, c].set_title(f"{layer} unit {unit['unit']}, NMM {unit['nmm']:.2f}", fontsize=7)
        for r in range(2 + len(panel["units"]), rows):
            axes[r, c].axis("off")
    axes[0, 0].set_ylabel("array", fontsize=8)
    axes[1, 0].set_ylabel("target mask", fontsize=8)
    for r in range(2, rows):
        axes[r, 0].set_ylabel("best unit" if units == 1 else f"unit #{r - 1}", fontsize=8)
    if title:
        figure.suptitle(title, fontsize=9)
    figure.tight_layout()
    return figure


def psychometric_figure(levels: Sequence[Row], models: Sequence[str], score: str) -> Figure:
    """One score against the contrast level: a panel per dimension, a line per model.

    Parameters
    ----------
    levels : sequence of mappings
        Mean scores per ``model``, ``dimension`` and ``level``.
    models : sequence of str
        Lines, in legend order.
    score : str
        The plotted score (a key of :data:`SCORE_LABELS`).
    """
    dimensions = list(dict.fromkeys(row["dimension"] for row in levels))
    columns = min(4, max(1, len(dimensions)))
    rows = math.ceil(max(1, len(dimensions)) / columns)
    figure = Figure(figsize=(3.0 * columns, 2.5 * rows))
    axes = figure.subplots(rows, columns, squeeze=False)
    colours = matplotlib.colormaps["tab10"]
    for axis in axes.ravel()[len(dimensions):]:
        axis.axis("off")
    for axis, dimension in zip(axes.ravel(), dimensions, strict=False):
        for index, model in enumerate(models):
            points = sorted((row["level"], row[score]) for row in levels
                            if row["dimension"] == dimension and row["model"] == model)
            if points:
                x, y = zip(*points, strict=True)
                axis.plot(x, y, marker="o", markersize=3, label=model, color=colours(index % 10))
        axis.set_title(dimension, fontsize=9)
        axis.set_xticks(sorted({int(row["level"]) for row in levels if row["dimension"] == dimension}))
        axis.set_xlabel("contrast level", fontsize=8)
        axis.tick_params(labelsize=7)
        if score in ("nmm", "nmm_distractors", "gsi"):
            axis.axhline(0.0, color="grey", linewidth=0.6)
    axes[0, 0].set_ylabel(SCORE_LABELS[score], fontsize=8)
    handles, labels = axes[0, 0].get_legend_handles_labels()
    if handles:
        figure.legend(handles, labels, loc="lower center", ncols=min(5, len(labels)), fontsize=7, frameon=False,
                      bbox_to_anchor=(0.5, -0.02))
    figure.suptitle(f"pop-out: {SCORE_LABELS[score]} against contrast (level 0 = no difference)", fontsize=10)
    figure.tight_layout(rect=(0, 0.05, 1, 1))
    return figure
