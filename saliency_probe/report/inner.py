"""Rendering of the inner-representation analysis: the paper's table layout (Tables 2, 3, 7), the best-unit
panels (Fig. 3) and the improvement bars (Fig. 4)."""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import matplotlib
import numpy as np
from matplotlib.figure import Figure

from saliency_probe.maps import minmax
from saliency_probe.report.tables import pivot_markdown


@dataclass
class UnitPanel:
    """One panel: an image, a unit map at the image's size, the highlighted regions and their fixations."""

    image: np.ndarray
    unit_map: np.ndarray
    region_mask: np.ndarray
    fixations: np.ndarray
    title: str


def inner_markdown(
    rows: Sequence[dict[str, Any]],
    models: Sequence[str],
    layers: Sequence[str],
    categories: Sequence[str],
    top_k: int,
    threshold: float,
    controls: Sequence[str] = (),
    header: str = "",
) -> str:
    """The paper's layout: a block per statistic, categories as columns; layers as rows when one model is
    probed (Table 2; controls follow in blocks of their own), else one section per layer with models as rows
    (Tables 3 and 7). Layers are listed deepest first, as in the paper."""
    stat = f"top{top_k}_mean_nss"
    blocks = [
        (stat, f"mean NSS for top {top_k} activation maps", 2),
        ("n_above_threshold", f"# activation maps above threshold (T = {threshold:g})", 0),
        (f"shuffled_{stat}", f"shuffled-region baseline: mean NSS for top {top_k} activation maps", 2),
        (
            "shuffled_n_above_threshold",
            f"shuffled-region baseline: # activation maps above T = {threshold:g}",
            0,
        ),
    ]
    has_shuffled = any(row[f"shuffled_{stat}"] == row[f"shuffled_{stat}"] for row in rows)  # any non-NaN
    if not has_shuffled:
        blocks = blocks[:2]
    deepest_first = list(reversed(list(layers)))
    lines = ["# Inner representation (Eq. 1, Section 4.3)", ""]
    if header:
        lines += [header, ""]
    primary = [m for m in models if m not in controls]

    def section(title: str, subset: list[dict[str, Any]], row_key: str, row_order: Sequence[str]) -> None:
        lines.extend([f"## {title}", ""])
        for key, caption, digits in blocks:
            lines.extend([f"**{caption}**", ""])
            lines.append(
                pivot_markdown(
                    subset,
                    row_key,
                    "category",
                    key,
                    corner=row_key,
                    digits=digits,
                    row_order=row_order,
                    column_order=categories,
                )
            )
            lines.append("")
        lines.extend(["**regions per category (with fixations)**", ""])
        first_label = next(label for label in row_order if any(r[row_key] == label for r in subset))
        first = [r for r in subset if r[row_key] == first_label]  # region counts do not depend on the row
        lines.append(
            pivot_markdown(
                first, lambda _: "regions", "category", "n_regions", corner="", column_order=categories
            )
        )
        lines.append("")

    if len(primary) <= 1:
        for model in [*primary, *controls]:
            subset = [row for row in rows if row["model"] == model]
            if subset:
                suffix = " (control: random initialisation)" if model in controls else ""
                section(f"{model}{suffix}", subset, "layer", deepest_first)
    else:
        for layer in deepest_first:
            subset = [row for row in rows if row["layer"] == layer]
            if subset:
                section(layer, subset, "model", list(models))
    return "\n".join(lines).rstrip() + "\n"


def unit_panels(panels: Sequence[UnitPanel], title: str, columns: int = 4) -> Figure:
    """Fig. 3: a grid of panels: image, unit map (jet, alpha 0.5), region outlines (white), fixations (dots)."""
    count = max(len(panels), 1)
    columns = min(columns, count)
    rows = math.ceil(count / columns)
    figure = Figure(figsize=(3.2 * columns, 2.7 * rows))
    axes = figure.subplots(rows, columns, squeeze=False)
    for axis in axes.ravel():
        axis.axis("off")
    for axis, panel in zip(axes.ravel(), panels, strict=False):
        axis.imshow(panel.image)
        axis.imshow(minmax(panel.unit_map), cmap="jet", alpha=0.5, vmin=0.0, vmax=1.0)
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
    """Fig. 4: grouped bars; per category one bar per model, height = its statistic minus the reference's."""
    models = list(improvements)
    figure = Figure(figsize=(max(6.0, 0.75 * len(categories) * max(1, len(models)) ** 0.5), 3.6))
    axis = figure.subplots()
    width = 0.8 / max(1, len(models))
    positions = np.arange(len(categories))
    colours = matplotlib.colormaps["viridis"](np.linspace(0.1, 0.9, max(1, len(models))))
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


def improvements_against(
    rows: Sequence[dict[str, Any]], models: Sequence[str], reference: str, layer: str, categories: Sequence[str],
    top_k: int,
) -> tuple[list[str], dict[str, list[float]]]:
    """Fig. 4's bar heights: per model other than ``reference``, its top-k mean NSS at ``layer`` minus the
    reference's, for the categories the reference has (NaN where the model lacks one)."""
    stat = f"top{top_k}_mean_nss"
    table = {(r["model"], r["category"]): r[stat] for r in rows if r["layer"] == layer}
    present = [c for c in categories if (reference, c) in table]
    return present, {m: [table.get((m, c), np.nan) - table[(reference, c)] for c in present]
                     for m in models if m != reference}


def improvement_figure(
    rows: Sequence[dict[str, Any]], models: Sequence[str], layer: str, categories: Sequence[str], top_k: int,
    reference: str | None = None,
) -> Figure | None:
    """Fig. 4 from the inner table's rows: top-k mean NSS of each model minus ``reference``'s (the model before
    fine-tuning, setup I; default the first model) at ``layer``; None without another model."""
    reference = models[0] if reference is None else reference
    present, improvements = improvements_against(rows, models, reference, layer, categories, top_k)
    if not improvements:
        return None
    return improvement_bars(
        present,
        improvements,
        reference,
        ylabel=f"top-{top_k} mean NSS change",
        title=f"{layer}: top-{top_k} mean NSS change against {reference}",
    )
