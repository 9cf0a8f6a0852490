"""Rendering of the saliency benchmark (docs/benchmark.md): the Markdown table, the console lines and the
example-maps figure, from plain results (summary rows, per-model timing dicts, arrays)."""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
from matplotlib.figure import Figure

from saliency_probe.maps import minmax
from saliency_probe.report.tables import format_number, markdown_table

#: Column titles of the metrics (keys as in the CSV tables).
METRIC_TITLES = {"nss": "NSS", "cc": "CC", "kld": "KLD", "sim": "SIM", "auc_judd": "AUC-Judd",
                 "auc_shuffled": "sAUC"}

Row = Mapping[str, Any]


def seconds_per_image(timing: Mapping[str, float]) -> tuple[float, float]:
    """``(map seconds, metric seconds)`` per image of one model's timing (``map_seconds``, ``metric_seconds``,
    ``computed``, ``cached``; a missing timing gives zeros)."""
    images = max(1, int(timing.get("computed", 0)) + int(timing.get("cached", 0)))
    return float(timing.get("map_seconds", 0.0)) / images, float(timing.get("metric_seconds", 0.0)) / images


def benchmark_markdown(
    summary: Sequence[Row],
    timings: Mapping[str, Mapping[str, float]],
    notes: Mapping[str, str],
    data_line: str,
    gt_sigma: float,
    metrics: Sequence[str],
) -> str:
    """The summary as a Markdown table with the time per model and the notes that say what each row is.

    Parameters
    ----------
    summary : sequence of dict
        One row per model: ``model``, a value per metric, ``n_images`` and optionally ``sem`` (of the first
        metric, shown as ``± sem``).
    timings : mapping
        Model -> ``{"map_seconds", "metric_seconds", "computed", "cached"}``.
    notes : mapping
        Model -> the note of its row.
    data_line : str
        The sentence on the data set shown above the table.
    gt_sigma : float
        The ground-truth blur in pixels, named below the table.
    metrics : sequence of str
        The metric columns, in order.
    """
    header = ["model", *(METRIC_TITLES[m] for m in metrics), "images", "map s/img", "metric s/img", "notes"]
    body = []
    for row in summary:
        map_seconds, metric_seconds = seconds_per_image(timings.get(row["model"], {}))
        cells = [format_number(row[m], 3) for m in metrics]
        if isinstance(row.get("sem"), float) and math.isfinite(row["sem"]):
            cells[0] += f" ± {row['sem']:.3f}"
        body.append([row["model"], *cells, str(row["n_images"]), f"{map_seconds:.3f}", f"{metric_seconds:.3f}",
                     notes.get(row["model"], "")])
    lines = [
        "## Saliency benchmark",
        "",
        data_line,
        "",
        markdown_table(header, body),
        "",
        f"Ground truth: unique fixated pixels blurred with a Gaussian of sigma {gt_sigma:g} px. NSS, AUC-Judd and "
        "sAUC on the fixated pixels (sAUC negatives: pixels fixated in the other images); CC, KLD and SIM against "
        "the blurred map (inter_observer: against the scored observer's own blurred map). "
        f"{METRIC_TITLES[metrics[0]]} ± standard error over images; KLD: lower is better. Seconds are process "
        "seconds per image (maps: computing or reading the cache; metrics: scoring).",
    ]
    return "\n".join(lines) + "\n"


def ordering_line(summary: Sequence[Row], metric: str = "nss") -> str:
    """Models ordered by ``metric``, worst first (the first thing a reader checks)."""
    finite = [row for row in summary if math.isfinite(row[metric])]
    ranked = sorted(finite, key=lambda row: row[metric], reverse=metric == "kld")
    return f"{METRIC_TITLES[metric]} order: " + " < ".join(f"{row['model']} {row[metric]:.3f}" for row in ranked)


def summary_lines(summary: Sequence[Row], metrics: Sequence[str]) -> list[str]:
    """The console summary: one line per model with its metrics and images, then the NSS ordering (or the first
    metric's when NSS is not scored)."""
    lines = [
        f"{row['model']:<18}" + "  ".join(f"{METRIC_TITLES[m]} {format_number(row[m], 3)}" for m in metrics)
        + f"  ({row['n_images']} images)"
        for row in summary
    ]
    lines.append(ordering_line(summary, "nss" if "nss" in metrics else metrics[0]))
    return lines


def example_figure(
    images: Sequence[np.ndarray],
    fixations: Sequence[np.ndarray],
    maps: Sequence[Mapping[str, np.ndarray]],
    stems: Sequence[str],
) -> Figure:
    """Rows = example images; columns = the image with its fixations, then each map of ``maps`` (the ground
    truth and each model's map, min-max normalised, grey).

    Parameters
    ----------
    images : sequence of ndarray
        ``(H, W, 3)`` uint8 images.
    fixations : sequence of ndarray
        ``(H, W)`` boolean fixation maps of the images.
    maps : sequence of mapping
        Per image, column title -> ``(H, W)`` map; every image has the titles of the first.
    stems : sequence of str
        Image names, written beside each row.
    """
    names = list(maps[0]) if maps else []
    columns = 1 + len(names)
    figure = Figure(figsize=(2.2 * columns, 1.8 * max(1, len(images))))
    axes = figure.subplots(len(images), columns, squeeze=False)
    for row, (image, fixated, image_maps, stem) in enumerate(zip(images, fixations, maps, stems, strict=True)):
        axes[row, 0].imshow(image)
        ys, xs = np.nonzero(fixated)
        axes[row, 0].scatter(xs, ys, s=3, c="red", edgecolors="white", linewidths=0.2)
        axes[row, 0].set_ylabel(stem, fontsize=7)
        for column, name in enumerate(names, start=1):
            axes[row, column].imshow(minmax(image_maps[name]), cmap="gray", vmin=0, vmax=1)
        for column, title in enumerate(["image + fixations", *names]):
            axes[row, column].set_xticks([])
            axes[row, column].set_yticks([])
            if row == 0:
                axes[row, column].set_title(title, fontsize=7)
    figure.tight_layout()
    return figure
