"""Rendering of the scene-attention analysis (Table 8): ``tables/scene_attention.md`` and its console lines,
from plain rows (``scene_attention.csv``: ``model, prediction, nss, ci_low, ci_high, n_images``) and the
Mann-Whitney tests per model (``{U, p}``)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from saliency_probe.report.tables import format_number, markdown_table

__all__ = ["scene_markdown", "scene_lines"]


def scene_markdown(rows: Sequence[Mapping[str, Any]], tests: Mapping[str, Mapping[str, Any]], header: str) -> str:
    """``scene_attention.md``: Table 8 (NSS, bootstrap interval and images per model and prediction), then the
    Mann-Whitney U test between correct and wrong predictions per model.

    Parameters
    ----------
    rows : sequence of mapping
        ``scene_attention.csv`` rows.
    tests : mapping
        Model name -> ``{U, p}`` (None when a group is empty).
    header : str
        Paragraph under the title (data and settings).
    """
    lines = ["# Scene network attention vs human fixations (Table 8)", "", header, ""]
    body = [[row["model"], row["prediction"], format_number(row["nss"], 3),
             f"[{format_number(row['ci_low'], 3)}, {format_number(row['ci_high'], 3)}]", str(row["n_images"])]
            for row in rows]
    lines += [markdown_table(["model", "prediction", "NSS", "CI", "images"], body), ""]
    for model, test in tests.items():
        p = "–" if test["p"] is None else f"{test['p']:.2g}"
        lines.append(f"- {model}: Mann-Whitney U correct vs wrong = {format_number(test['U'], 1)}, p = {p}")
    return "\n".join(lines).rstrip() + "\n"


def scene_lines(rows: Sequence[Mapping[str, Any]]) -> list[str]:
    """The console summary: one line per Table 8 row (NSS, interval, images)."""
    return [f"{row['model']}: {row['prediction']:<7} NSS {format_number(row['nss'], 3)} "
            f"[{format_number(row['ci_low'], 3)}, {format_number(row['ci_high'], 3)}] ({row['n_images']} images)"
            for row in rows]
