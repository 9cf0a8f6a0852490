"""Rendering of the output analysis (Eqs. 2-3, Fig. 7): ``tables/output_saliency.md``, ``figures/output_fig7_*``
and its console lines, from plain rows, statistics dicts and arrays (docs/analyses.md describes them).

A row is one ``output_saliency.csv`` row (``model, category, inner_nss, os, od, n_regions``); a model's
statistics are its ``statistics.json`` entry (``spearman``, ``anova``, ``tukey``, ``anova_os``, ``tukey_os``,
``anova_two_factor``). Every test is named; the paper's p (Section 6: 9e-9) belongs to the two-factor ANOVA's
category x measurement interaction and is printed beside that term only (:func:`paper_comparison`).
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
from matplotlib.figure import Figure

from saliency_probe.report.tables import format_number, markdown_table

__all__ = ["output_markdown", "output_lines", "fig7", "two_factor_term", "two_factor_text", "paper_comparison"]

#: The two-factor ANOVA's term that the paper's Section 6 p is compared with (saliency_probe.probe.stats).
PAPER_TERM = "category:measurement"


def _p(value: float | None) -> str:
    """A p-value with 2 significant digits, an en dash for None."""
    return "–" if value is None else f"{value:.2g}"


def two_factor_term(anova: Mapping[str, Any] | None, term: str = PAPER_TERM) -> Mapping[str, Any] | None:
    """One term's row (``{term, df, sum_sq, F, p}``) of a two-factor ANOVA entry, None when absent."""
    for row in (anova or {}).get("terms") or []:
        if row.get("term") == term:
            return row
    return None


def two_factor_text(anova: Mapping[str, Any] | None) -> str:
    """The two-factor ANOVA in one line: each term's F(df, residual df) and p, or why it was not run."""
    if not anova or not anova.get("terms"):
        return "two-factor ANOVA (category x measurement): not run (fewer than 2 categories with >= 2 regions)"
    residual = two_factor_term(anova, "residual") or {}
    parts = [f"{row['term']} F({row['df']}, {residual.get('df')}) = {format_number(row['F'])}, p = {_p(row['p'])}"
             for row in anova["terms"] if row["term"] != "residual"]
    return (f"two-factor ANOVA (category x measurement {'/'.join(anova['levels']['measurement'])}, "
            f"{anova.get('sums_of_squares')} sums of squares, statsmodels) on per-region NSS: " + "; ".join(parts))


def paper_comparison(statistics: Mapping[str, Any], paper: Mapping[str, Any]) -> list[list[str]]:
    """Rows ``[statistic, ours, paper]`` of one model's tests beside the paper's Section 6 values.

    ``paper`` is ``paper_values.json``'s ``section6``. Its ANOVA p goes beside the two-factor ANOVA's
    category x measurement interaction, the test the paper describes ("measurements and clusters as
    factors"); the one-way ANOVA on OD and the main effects have no paper value.
    """
    spearman, anova = statistics.get("spearman") or {}, statistics.get("anova") or {}
    two_factor = statistics.get("anova_two_factor")
    interaction = two_factor_term(two_factor) or {}
    rows = [["Spearman r_s(inner, OS_c)", format_number(spearman.get("r")), format_number(paper["spearman_r"])],
            ["one-way ANOVA p (scipy f_oneway), per-region OD across categories", _p(anova.get("p")), "–"],
            ["Tukey HSD pairs that differ (per-region OD)", str(len(statistics.get("tukey") or [])), "–"]]
    if two_factor is not None:
        kind = two_factor.get("sums_of_squares", "")
        rows.append([f"two-factor ANOVA p (statsmodels, {kind} SS), category x measurement interaction: the "
                     "paper's test", _p(interaction.get("p")), _p(paper["anova_p_od"])])
        for term in ("category", "measurement"):
            row = two_factor_term(two_factor, term) or {}
            rows.append([f"two-factor ANOVA p, {term} main effect", _p(row.get("p")), "–"])
    return rows


def output_markdown(rows: Sequence[Mapping[str, Any]], statistics: Mapping[str, Mapping[str, Any]], header: str,
                    layer: str = "conv5_3") -> str:
    """``output_saliency.md``: per model, inner saliency, OS_c, OD_c and regions per category, then the tests.

    Parameters
    ----------
    rows : sequence of mapping
        ``output_saliency.csv`` rows of every model.
    statistics : mapping
        Model name -> its statistics (the models in this order).
    header : str
        Paragraph under the title (data and settings).
    layer : str
        The layer of the inner saliency (the head layer; VGG-16: conv5_3).
    """
    lines = ["# Output saliency (Eq. 2) and output difference (Eq. 3)", "", header, ""]
    for model, summary in statistics.items():
        subset = [row for row in rows if row["model"] == model]
        lines += [f"## {model}", ""]
        body = [[row["category"], format_number(row["inner_nss"]), format_number(row["os"]),
                 format_number(row["od"]), str(row["n_regions"])] for row in subset]
        lines += [markdown_table(["category", f"inner NSS ({layer} top-k)", "OS_c", "OD_c", "regions"], body), ""]
        rs, anova = summary["spearman"], summary["anova"]
        lines.append(f"- Spearman r_s(inner, OS) = {format_number(rs['r'])} (p = {_p(rs['p'])}, "
                     f"{rs['n_categories']} categories)")
        lines.append(f"- one-way ANOVA (scipy f_oneway) on per-region OD: F({anova['df_between']}, "
                     f"{anova['df_within']}) = {format_number(anova['F'])}, p = {_p(anova['p'])}; Tukey HSD pairs "
                     "that differ: " + (", ".join(f"{p['a']}/{p['b']}" for p in summary["tukey"]) or "none"))
        anova_os = summary["anova_os"]
        lines.append(f"- one-way ANOVA on per-region OS: F = {format_number(anova_os['F'])}, p = {_p(anova_os['p'])}; "
                     f"Tukey pairs that differ: {len(summary['tukey_os'])}")
        if "anova_two_factor" in summary:
            lines.append(f"- {two_factor_text(summary['anova_two_factor'])}")
        lines.append("")
    return "\n".join(lines).rstrip() + "\n"


def output_lines(statistics: Mapping[str, Mapping[str, Any]]) -> list[str]:
    """The console summary: one line per model (r_s, the one-way ANOVA p on OD, the Tukey pairs that differ, the
    two-factor interaction's p)."""
    lines = []
    for model, summary in statistics.items():
        rs = summary["spearman"]
        interaction = two_factor_term(summary.get("anova_two_factor")) or {}
        lines.append(f"{model}: r_s(inner, OS) = {format_number(rs['r'])} (p {_p(rs['p'])}); one-way ANOVA OD p = "
                     f"{_p(summary['anova']['p'])}; {len(summary['tukey'])} Tukey pair(s) differ; two-factor "
                     f"category x measurement p = {_p(interaction.get('p'))}")
    return lines


def fig7(
    rows: Sequence[Mapping[str, Any]],
    od_by_category: Mapping[str, np.ndarray],
    summary: Mapping[str, Any],
    example: Mapping[str, Any] | None,
    title: str,
    layer: str = "conv5_3",
) -> Figure:
    """Fig. 7 of one model (``layer``: the inner saliency's layer).

    Top: inner vs output saliency per category (names on the points, r_s in the title) and OD_c per category in
    increasing inner saliency (error bars: 1.96 standard errors of the mean, the ANOVA p in the title). Bottom,
    with ``example``: the image with its fixations, its ground truth and the model's prediction.

    Parameters
    ----------
    rows : sequence of mapping
        The model's ``output_saliency.csv`` rows.
    od_by_category : mapping
        Category name -> the per-region OD values of its regions with fixations (for the error bars).
    summary : mapping
        The model's statistics (``spearman``, ``anova``).
    example : mapping or None
        ``{image (H, W, 3), fixations (H, W) bool, gt (H, W), prediction (H, W), stem}``.
    title : str
        Figure title.
    """
    has_example = example is not None
    figure = Figure(figsize=(11, 7.6 if has_example else 4.0))
    grid = figure.add_gridspec(2 if has_example else 1, 3)
    scatter = figure.add_subplot(grid[0, :2])
    inner = np.array([row["inner_nss"] for row in rows])
    output = np.array([row["os"] for row in rows])
    scatter.scatter(inner, output, c="tab:blue", s=28)
    for row in rows:
        scatter.annotate(row["category"], (row["inner_nss"], row["os"]), fontsize=7, xytext=(3, 3),
                         textcoords="offset points")
    rs = summary["spearman"]
    scatter.set_xlabel(f"inner saliency ({layer} top-k mean NSS)")
    scatter.set_ylabel("output saliency OS_c")
    scatter.set_title(f"r_s = {format_number(rs['r'])} (p = {_p(rs['p'])})", fontsize=9)
    bars = figure.add_subplot(grid[0, 2])
    order = np.argsort(inner)
    names = [rows[i]["category"] for i in order]
    errors = []
    for name in names:
        values = np.asarray(od_by_category.get(name, ()), dtype=np.float64)
        errors.append(1.96 * values.std(ddof=1) / math.sqrt(values.size) if values.size > 1 else 0.0)
    bars.bar(range(len(names)), [rows[i]["od"] for i in order], yerr=errors, color="tab:orange", capsize=2)
    bars.set_xticks(range(len(names)), names, rotation=60, ha="right", fontsize=7)
    bars.set_ylabel("OD_c (mean |NSS pred - NSS GT|)")
    anova = summary["anova"]
    bars.set_title(f"one-way ANOVA p = {_p(anova['p'])}", fontsize=9)
    if example is not None:
        panels = [("image", example["image"], None), ("ground truth", example["gt"], "gray"),
                  ("prediction", example["prediction"], "gray")]
        for column, (label, values, cmap) in enumerate(panels):
            axis = figure.add_subplot(grid[1, column])
            axis.imshow(values, cmap=cmap)
            ys, xs = np.nonzero(example["fixations"])
            if column == 0:
                axis.scatter(xs, ys, s=3, c="red")
            axis.set_title(f"{label} ({example['stem']})" if column == 0 else label, fontsize=8)
            axis.axis("off")
    figure.suptitle(title, fontsize=10)
    figure.tight_layout()
    return figure
