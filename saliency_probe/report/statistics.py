"""Rendering of Section 5.2's test (``tables/statistics_finetune.json``): are the fine-tuning improvements
different across categories? Console lines and the report's section, from the JSON payload only.

The payload is :func:`saliency_probe.probe.inner.finetune_payload`'s: ``layer``, ``top_k``, ``alpha``,
``reference`` (setup I), ``skipped``, ``models`` (per fine-tuned model ``anova``, ``tukey``, ``improvement``,
``differs_from_all``, ``skipped``) and ``not_tested``; docs/protocol.md says which values enter.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from saliency_probe.report import files
from saliency_probe.report.files import in_tables
from saliency_probe.report.tables import format_number, markdown_table

__all__ = ["finetune_lines", "finetune_markdown", "finetune_section", "DESCRIPTION"]

#: report.md's line for the file.
DESCRIPTION = ("Section 5.2: per fine-tuned model, one-way ANOVA and Tukey HSD across categories of the rank-matched "
               "top-k improvements over setup I (the trunk before fine-tuning) at the improvement layer.")


def _p(value: Any) -> str:
    return "–" if value is None else f"{float(value):.2g}"


def _anova(anova: Mapping[str, Any]) -> str:
    return f"F({anova.get('df_between')}, {anova.get('df_within')}) = {format_number(anova.get('F'))}"


def finetune_lines(payload: Mapping[str, Any]) -> list[str]:
    """The console summary: one line per fine-tuned model, or the reason the test was not run."""
    if payload.get("skipped"):
        return [f"Section 5.2 test not run: {payload['skipped']}"]
    reference = (payload.get("reference") or {}).get("name")
    lines = []
    for model, entry in (payload.get("models") or {}).items():
        if entry.get("skipped"):
            lines.append(f"Section 5.2 {model} vs {reference}: not run ({entry['skipped']})")
            continue
        differ = ", ".join(entry.get("differs_from_all") or []) or "none"
        lines.append(f"Section 5.2 {model} vs {reference} at {payload.get('layer')}: ANOVA p = "
                     f"{_p(entry['anova'].get('p'))}, {len(entry.get('tukey') or [])} Tukey pair(s) differ; "
                     f"different from every other category: {differ}")
    lines += [f"Section 5.2 {model}: WARNING {entry['start_differs']}"
              for model, entry in (payload.get("models") or {}).items() if entry.get("start_differs")]
    lines += [f"Section 5.2 {model}: not run ({reason})" for model, reason in (payload.get("not_tested") or {}).items()]
    return lines


def finetune_markdown(payload: Mapping[str, Any], paper: Mapping[str, Any] | None = None) -> list[str]:
    """Markdown lines of the test: a table of the tests per model (with the paper's finding when ``paper``, the
    ``section5_2`` entry of ``paper_values.json``, is given) and the mean improvement per category."""
    layer, top_k = payload.get("layer"), payload.get("top_k")
    reference = payload.get("reference") or {}
    lines = [f"Values: per category the {top_k} rank-matched differences of the {layer} unit means, fine-tuned "
             f"minus setup I (`{reference.get('name', '–')}`, the trunk before fine-tuning); one-way ANOVA "
             f"(scipy `f_oneway`) across categories, Tukey HSD (scipy `tukey_hsd`) pairs at alpha = "
             f"{payload.get('alpha')}.", ""]
    if payload.get("skipped"):
        return lines + [f"**Not tested:** {payload['skipped']}.", ""]
    models = payload.get("models") or {}
    body = []
    for model, entry in models.items():
        if entry.get("skipped"):
            body.append([model, entry.get("finetune_layers", "–"), "–", "–", "–", f"not tested: {entry['skipped']}"])
            continue
        body.append([model, str(entry.get("finetune_layers", "–")), _anova(entry["anova"]), _p(entry["anova"].get("p")),
                     str(len(entry.get("tukey") or [])), ", ".join(entry.get("differs_from_all") or []) or "none"])
    if paper:
        body.append(["paper (Section 5.2)", "–", "–", "–", "–",
                     ", ".join(paper.get("differs_from_all") or [])])
    lines += [markdown_table(["model", "layers tuned", "one-way ANOVA", "p", "Tukey pairs that differ",
                              "different from every other category"], body), ""]
    tested = {model: entry for model, entry in models.items() if not entry.get("skipped")}
    if tested:
        categories = list(dict.fromkeys(c for entry in tested.values() for c in entry.get("improvement", {})))
        rows = [[model, *(format_number(entry["improvement"].get(c)) for c in categories)]
                for model, entry in tested.items()]
        lines += [f"**mean improvement per category (top-{top_k} mean NSS change at {layer})**", "",
                  markdown_table(["model", *categories], rows), ""]
    other_start = [f"- **{model}** {entry['start_differs']}." for model, entry in models.items()
                   if entry.get("start_differs")]
    lines += [*other_start, *([""] if other_start else [])]
    lines += [f"- {model}: not tested ({reason})" for model, reason in (payload.get("not_tested") or {}).items()]
    return lines + ([""] if payload.get("not_tested") else [])


def finetune_section(run: Path, paper: Mapping[str, Any] | None = None) -> list[str]:
    """report.md's section for ``tables/statistics_finetune.json`` (nothing when the file is absent)."""
    path = run / in_tables(files.STATISTICS_FINETUNE)
    if not path.is_file():
        return []
    payload = json.loads(path.read_text(encoding="utf-8"))
    return ["## Fine-tuning improvements across categories (Section 5.2)", "",
            f"`{in_tables(files.STATISTICS_FINETUNE)}`: {DESCRIPTION}", "", *finetune_markdown(payload, paper)]
