"""``report.md`` of a probe run: every table and figure of the run folder, one line on how each was computed,
and the paper's published values beside ours where the paper has them (``paper_values.json``).

Built from the files of the run folder (and ``probe_summary.json`` for the models), so it can be rebuilt at
any time: ``python -m saliency_probe.report.report_md <run folder>``. The paper's numbers come from other data
(OSIE-SR, SALICON-SAL-SCE, ImageNet weights, 224 px): they are context, not targets, for other settings.
"""

from __future__ import annotations

import argparse
import fnmatch
import functools
import json
import math
from collections.abc import Mapping, Sequence
from importlib import resources
from pathlib import Path
from typing import Any

from saliency_probe.io_utils import write_text
from saliency_probe.report import files
from saliency_probe.report.conditions import (
    conditions_line,
    describe_conditions,
    experiment_row,
    probe_differences,
    same_images_differences,
    same_start_differences,
    table_title,
)
from saliency_probe.report.files import in_tables
from saliency_probe.report.output import paper_comparison
from saliency_probe.report.statistics import DESCRIPTION as FINETUNE_DESCRIPTION
from saliency_probe.report.statistics import finetune_section
from saliency_probe.report.tables import format_number, markdown_table, read_csv

#: (file pattern under the run folder, how it was computed). First match wins; unknown files are still listed.
DESCRIPTIONS: list[tuple[str, str]] = [
    (in_tables(files.INNER_CSV), "Eq. 1 region NSS of every unit, averaged per category over all regions; "
     "per model, layer and category the top-k mean and the number of units above T (Tables 2, 3, 7), with the "
     "shuffled-region baseline."),
    (in_tables(files.INNER_MD), "the same in the paper's layout."),
    (in_tables(files.inner_units_npz("*")), "per model and layer the (units x categories) means, stds and region counts."),
    (in_tables(files.OUTPUT_CSV), "per saliency checkpoint and category: inner NSS (top-k mean at the head layer, VGG-16: conv5_3), OS_c "
     "(Eq. 2: mean NSS of the prediction over the category's regions), OD_c (Eq. 3: mean |NSS(pred) - NSS(GT)|)."),
    (in_tables(files.OUTPUT_REGIONS_CSV), "every region's NSS of the prediction and of the ground truth (the values the "
     "ANOVA and Tukey tests use)."),
    (in_tables(files.OUTPUT_MD), "the output table with the tests per model."),
    (in_tables(files.OUTPUT_STATISTICS), "Spearman r_s(inner NSS, OS_c) across categories; one-way ANOVA and Tukey HSD "
     "across categories on per-region OD (and OS); the two-factor ANOVA (category x measurement: per-region NSS of "
     "the output and of the ground truth), the paper's test; per model, the primary model at the top level."),
    (in_tables(files.STATISTICS_FINETUNE), FINETUNE_DESCRIPTION),
    (in_tables(files.SCENE_CSV), "Table 8: NSS of the scene network's mean head-layer map (VGG-16: conv5_3) on held-out images, split "
     "by correct / wrong scene prediction, with a percentile-bootstrap interval of the mean."),
    (in_tables(files.SCENE_PER_IMAGE_CSV), "every held-out image's label, prediction and attention NSS."),
    (in_tables(files.SCENE_MD), "Table 8 with the Mann-Whitney test between the groups."),
    (in_tables(files.POPOUT_MODELS + ".*"), "Table 4: model outputs on the pop-out arrays (NMM, distractor NMM, target rank, "
     "GSI, fixations to find)."),
    (in_tables(files.POPOUT_LAYERS + ".*"), "Table 5: top-k unit NMM per probed layer and trunk."),
    (in_tables(files.POPOUT_SWEEP + ".*"), "Table 6: top-k unit NMM at the deepest layer per fine-tuned layer count."),
    (in_tables(files.POPOUT_LEVELS + ".*"), "pop-out scores per dimension and contrast level (psychometric curves)."),
    (in_tables(files.POPOUT_PER_IMAGE + ".*"), "pop-out scores per array."),
    (in_tables("benchmark*"), "saliency benchmark on human fixations (NSS, CC, KLD, SIM, AUC-Judd, shuffled AUC)."),
    (f"{files.FIGURES_DIR}/{files.inner_units_png('*', '*')}", "Fig. 3: per category the unit with the largest mean NSS on the image where it "
     "scores highest."),
    (f"{files.FIGURES_DIR}/{files.inner_improvement_png('*')}", "Fig. 4: top-k mean NSS change per category against the model before fine-tuning (setup I: the probed pre-trained weights or the finetune.layers=0 checkpoint; else the first model)."),
    (f"{files.FIGURES_DIR}/{files.FIG5_UNIT_GAIN}_*", "Fig. 5: the conv5_3 unit and category with the largest mean-NSS gain from "
     "fine-tuning, before and after, on the image where it changed most."),
    (f"{files.FIGURES_DIR}/{files.fig6_unit('*')}", "Fig. 6: the fine-tuned trunk's best unit for the least-improved category, before "
     "and after, on the image where it changed most."),
    (f"{files.FIGURES_DIR}/{files.fig11_tasks('*')}", "Fig. 11: one conv5_3 unit in the pretrained, scene-tuned and saliency-tuned "
     "trunks (the unit and category where saliency and scene tuning differ most)."),
    (f"{files.FIGURES_DIR}/{files.output_fig7_png('*')}", "Fig. 7: inner vs output saliency per category (r_s), OD per category (95% CI), "
     "and the image with the largest mean OD."),
    (f"{files.FIGURES_DIR}/{files.popout_fig9('*')}.png", "Fig. 9: pop-out arrays, their target masks and the "
     "unit maps (VGG: conv4_1) that best match each target (NMM, Eq. 4)."),
    (f"{files.FIGURES_DIR}/popout_*", "Fig. 8 and psychometric curves of the pop-out analysis."),
    (f"{files.FIGURES_DIR}/benchmark_*", "benchmark example maps."),
]


@functools.lru_cache(maxsize=1)
def paper_values() -> dict[str, Any]:
    """The paper's published numbers (Tables 2-8, Section 6), with their citation."""
    text = resources.files("saliency_probe.report").joinpath("paper_values.json").read_text(encoding="utf-8")
    return json.loads(text)


def describe(relative: str) -> str:
    """The one-line description of a run file (``tables/x.csv``), or a generic line."""
    for pattern, text in DESCRIPTIONS:
        if fnmatch.fnmatch(relative, pattern):
            return text
    return "written by an analysis of this run (no description registered)."


def _info(model: Mapping[str, Any]) -> dict[str, Any]:
    """A model's details: ``probe_summary.json`` flattens them into the entry, a source keeps them in ``info``."""
    return {**model, **(model.get("info") or {})}


def _number(value: Any) -> float:
    try:
        return float(value)
    except (TypeError, ValueError):
        return math.nan


def _pair(ours: Any, theirs: Any, digits: int) -> str:
    return f"{format_number(_number(ours), digits)} ({format_number(theirs, digits) if theirs is not None else '–'})"


# ------------------------------------------------------------------------------------------------------------
# sections
# ------------------------------------------------------------------------------------------------------------


def _embed(path: Path) -> list[str]:
    """A Markdown table file without its title, its other headings pushed two levels down."""
    lines = path.read_text(encoding="utf-8").rstrip().splitlines()
    if lines and lines[0].startswith("# "):
        lines = lines[1:]
    return [("##" + line) if line.startswith("#") else line for line in lines] + [""]


def _conditions_lines(matched: Sequence[tuple[Mapping[str, Any], tuple[str, str]]],
                      probe: Mapping[str, Any]) -> list[str]:
    """The visible conditions line of every matched model whose conditions differ from the paper's."""
    found = [line for model, row in matched if (line := conditions_line(model, row, {}))]
    found += same_images_differences([model for model, _ in matched])
    found += same_start_differences([model for model, _ in matched])
    run = probe_differences(probe)
    if run:
        found.append("every row: the probe's conditions differ from the paper's: " + "; ".join(run) + ".")
    return [*(f"> **{line}**" if i == 0 else f">\n> **{line}**" for i, line in enumerate(found)), ""] if found else []


def inner_section(run: Path, models: Sequence[Mapping[str, Any]], probe: Mapping[str, Any] | None = None) -> list[str]:
    csv = run / in_tables(files.INNER_CSV)
    if not csv.is_file():
        return []
    probe = probe or {}
    rows = read_csv(csv)
    stat = next(key for key in rows[0] if key.endswith("_mean_nss") and not key.startswith("shuffled"))
    paper = paper_values()
    lines = ["## Inner representation (Tables 2, 3, 7)", "",
             f"`{csv.relative_to(run)}`: {describe(in_tables(files.INNER_CSV))}", ""]
    categories = list(dict.fromkeys(row["category"] for row in rows))
    layers = list(dict.fromkeys(row["layer"] for row in rows))
    matched = [(m, row) for m in models if (row := experiment_row(m)) is not None]
    captions = {"table3": ("Table 3", "rows by fine-tuned layers (k = 0: the pretrained trunk; saliency models "
                           "fine-tuned on SALICON)"),
                "table7": ("Table 7", "pt / sp / sr: the pretrained trunk and the saliency- and scene-tuned trunks "
                           "(1 layer) of the same images")}
    for table, (title, how) in captions.items():
        group = [(m, row) for m, row in matched if row[0] == table]
        if not group or "conv5_3" not in layers:
            continue
        lines += [f"### conv5_3 beside the paper's {title}: ours (paper)", "", f"Paper rows: {how}.", "",
                  *_conditions_lines(group, probe)]
        for key, caption, digits in ((stat, "top-k mean NSS", 2), ("n_above_threshold", "units above T", 0)):
            paper_key = "top10_mean_nss" if key == stat else "n_above_threshold"
            values_of = {(r["model"], r["category"]): r[key] for r in rows if r["layer"] == "conv5_3"}
            body = []
            for model, (name, row) in group:
                values = paper[name][paper_key][row]
                body.append([f"{model['name']} ↔ {title} {row}",
                             *(_pair(values_of.get((model["name"], c)), values.get(c), digits) for c in categories)])
            lines += [f"**{caption}**", "", markdown_table(["model ↔ paper", *categories], body), ""]
    pretrained = [(m, row) for m, row in matched if m.get("kind") == "weights"]
    if pretrained and len(layers) > 1:
        model, row = pretrained[0]
        table = {(r["layer"], r["category"]): r[stat] for r in rows if r["model"] == model["name"]}
        body = [[layer, *(_pair(table.get((layer, c)), paper["table2"]["top10_mean_nss"].get(layer, {}).get(c), 2)
                          for c in categories)]
                for layer in reversed(layers) if layer in paper["table2"]["top10_mean_nss"]]
        if body:
            lines += [f"### Layers of {model['name']} beside Table 2 (top-k mean NSS): ours (paper)", "",
                      *_conditions_lines([(model, ("table2", "layers"))], probe),
                      markdown_table(["layer", *categories], body), ""]
    if (run / in_tables(files.INNER_MD)).is_file():
        lines += [f"### Full table (`{in_tables(files.INNER_MD)}`)", "", *_embed(run / in_tables(files.INNER_MD))]
    return lines


def output_section(run: Path, paper_values_shown: bool = True, models: Sequence[Mapping[str, Any]] = (),
                   probe: Mapping[str, Any] | None = None) -> list[str]:
    csv, statistics = run / in_tables(files.OUTPUT_CSV), run / in_tables(files.OUTPUT_STATISTICS)
    if not csv.is_file():
        return []
    lines = ["## Output saliency and output difference (Section 6, Eqs. 2-3, Fig. 7)", ""]
    for name in (files.OUTPUT_CSV, files.OUTPUT_REGIONS_CSV, files.OUTPUT_STATISTICS):
        if (run / in_tables(name)).is_file():
            lines.append(f"- `{in_tables(name)}`: {describe(in_tables(name))}")
    lines.append("")
    if (run / in_tables(files.OUTPUT_MD)).is_file():
        lines += _embed(run / in_tables(files.OUTPUT_MD))
    if statistics.is_file() and paper_values_shown:
        data = json.loads(statistics.read_text(encoding="utf-8"))
        body = paper_comparison(data, paper_values()["section6"])
        lines += [f"### {data.get('model')} beside the paper", "",
                  *_named_conditions([str(data.get("model"))], models, ("section6", ""), probe or {}, regions=True),
                  markdown_table(["statistic", "ours", "paper"], body), ""]
    return lines


def _p(value: Any) -> str:
    return "–" if value is None or not math.isfinite(_number(value)) else f"{_number(value):.2g}"


def _named_conditions(names: Sequence[str], models: Sequence[Mapping[str, Any]], row: tuple[str, str],
                      probe: Mapping[str, Any], regions: bool = False) -> list[str]:
    """Conditions lines of the probed models among ``names`` (compared with ``row``'s experiment) and of the probe
    run; ``regions=False`` for comparisons that do not use the categorised regions (Table 8, the pop-out tables)."""
    entries = [(m, row) for m in models if m.get("name") in set(names) and m.get("kind") != "random"]
    found = [line for model, r in entries if (line := conditions_line(model, r, {}))]
    run = probe_differences(probe, regions=regions)
    if run:
        found.append("every row: the probe's conditions differ from the paper's: " + "; ".join(run) + ".")
    return [*(f"> **{line}**" if i == 0 else f">\n> **{line}**" for i, line in enumerate(found)), ""] if found else []


def scene_section(run: Path, paper_values_shown: bool = True, models: Sequence[Mapping[str, Any]] = (),
                  probe: Mapping[str, Any] | None = None) -> list[str]:
    csv = run / in_tables(files.SCENE_CSV)
    if not csv.is_file():
        return []
    paper = paper_values()["table8"]["nss"] if paper_values_shown else {}
    lines = ["## Scene network attention (Section 8, Table 8)", ""]
    if paper_values_shown:
        lines += _named_conditions([r["model"] for r in read_csv(csv)], models, ("table8", "sr"), probe or {})
    for name in (files.SCENE_CSV, files.SCENE_PER_IMAGE_CSV):
        if (run / in_tables(name)).is_file():
            lines.append(f"- `{in_tables(name)}`: {describe(in_tables(name))}")
    body = [[r["model"], r["prediction"], format_number(_number(r["nss"]), 3),
             f"[{format_number(_number(r['ci_low']), 3)}, {format_number(_number(r['ci_high']), 3)}]", r["n_images"],
             *([format_number(paper.get(r["prediction"]), 2)] if paper_values_shown else [])] for r in read_csv(csv)]
    columns = ["model", "prediction", "NSS", "CI", "images", *(["paper NSS"] if paper_values_shown else [])]
    lines += ["", markdown_table(columns, body), ""]
    markdown = run / in_tables(files.SCENE_MD)
    if markdown.is_file():
        lines += [line for line in markdown.read_text(encoding="utf-8").splitlines() if line.startswith("- ")] + [""]
    return lines


def popout_section(run: Path, paper_values_shown: bool = True, models: Sequence[Mapping[str, Any]] = (),
                   probe: Mapping[str, Any] | None = None) -> list[str]:
    paper = paper_values()
    lines: list[str] = []
    if paper_values_shown:
        shown = [r["model"] for name in (files.POPOUT_MODELS, files.POPOUT_LAYERS, files.POPOUT_SWEEP)
                 if (run / in_tables(name + ".csv")).is_file() for r in read_csv(run / in_tables(name + ".csv"))]
        lines += _named_conditions(shown, models, ("table6", "k"), probe or {}) if shown else []
    models = run / in_tables(files.POPOUT_MODELS + ".csv")
    if not paper_values_shown:  # another backbone: the tables themselves, no paper column
        for name in (files.POPOUT_MODELS, files.POPOUT_LAYERS, files.POPOUT_SWEEP):
            if (run / in_tables(name + ".md")).is_file():
                lines += [f"`{in_tables(name + '.csv')}`: {describe(in_tables(name + '.csv'))}", "",
                          *_embed(run / in_tables(name + ".md"))]
        return (["## Pop-out search arrays (Section 7, Tables 4-6)", "", *lines]) if lines else []
    if models.is_file():
        reference = {key.lower(): value for key, value in paper["table4"]["nmm"].items()}
        body = [[r["model"], format_number(_number(r.get("nmm"))), format_number(reference.get(r["model"].lower()))]
                for r in read_csv(models)]
        lines += [f"`{in_tables(files.POPOUT_MODELS + '.csv')}`: {describe(in_tables(files.POPOUT_MODELS + '.csv'))}", "",
                  markdown_table(["model", "NMM (ours)", "NMM (paper, Table 4)"], body),
                  "", "Paper, deep models: " + ", ".join(f"{k} {v}" for k, v in paper["table4"]["nmm"].items()
                                                         if k.lower() not in ("bms", "gbvs")), ""]
    layers = run / in_tables(files.POPOUT_LAYERS + ".csv")
    if layers.is_file():
        rows = read_csv(layers)
        stat = next((key for key in rows[0] if key.endswith("_nmm") and key.startswith("top")), None) if rows else None
        if stat:
            body = [[r["model"], r["layer"], format_number(_number(r[stat])),
                     format_number(paper["table5"]["top10_nmm"].get(r["layer"]))] for r in rows]
            name = in_tables(files.POPOUT_LAYERS + ".csv")
            lines += [f"`{name}`: {describe(name)} Paper: pretrained model.",
                      "", markdown_table(["model", "layer", "top-k NMM (ours)", "paper (Table 5)"], body), ""]
    sweep = run / in_tables(files.POPOUT_SWEEP + ".csv")
    if sweep.is_file():
        rows = read_csv(sweep)
        stat = next((key for key in rows[0] if key.endswith("_nmm") and key.startswith("top")), None) if rows else None
        if stat:
            body = [[r["model"], r.get("finetune_layers", ""), format_number(_number(r[stat])),
                     format_number(paper["table6"]["top10_nmm"].get(str(r.get("finetune_layers"))))] for r in rows]
            name = in_tables(files.POPOUT_SWEEP + ".csv")
            lines += [f"`{name}`: {describe(name)}", "",
                      markdown_table(["model", "layers tuned", "top-k NMM (ours)", "paper (Table 6)"], body), ""]
    return (["## Pop-out search arrays (Section 7, Tables 4-6)", "", *lines]) if lines else []


def run_files(run: Path, produced: Sequence[str | Path] | None = None) -> list[Path]:
    """The run's own tables and figures: ``produced`` (what its analyses wrote), else the files of its
    ``manifest.json``, else what ``tables/`` and ``figures/`` hold."""
    if produced is None:
        manifest = run / files.MANIFEST
        if manifest.is_file():
            produced = json.loads(manifest.read_text(encoding="utf-8")).get("files", [])
    if produced is None:
        found = [p for folder in (files.TABLES_DIR, files.FIGURES_DIR) for p in (run / folder).glob("*")]
    else:
        found = [Path(p) if Path(p).is_absolute() else run / p for p in produced]
    inside = {files.TABLES_DIR, files.FIGURES_DIR}
    return sorted({p for p in found if p.is_file() and not p.name.startswith(".")
                   and p.resolve().parent.name in inside and p.resolve().parent.parent == run.resolve()})


def files_section(run: Path, produced: Sequence[str | Path] | None = None) -> list[str]:
    """Every table and figure of the run with its line; figures embedded."""
    lines = ["## All files of this run", ""]
    own = run_files(run, produced)
    tables = [p for p in own if p.parent.name == files.TABLES_DIR]
    for path in tables:
        relative = path.relative_to(run).as_posix()
        lines.append(f"- [`{relative}`]({relative}): {describe(relative)}")
    figures = [p for p in own if p.parent.name == files.FIGURES_DIR and p.suffix == ".png"]
    if figures:
        lines += ["", "### Figures", ""]
        for path in figures:
            relative = path.relative_to(run).as_posix()
            lines += [f"**`{relative}`**: {describe(relative)}", "", f"![{path.stem}]({relative})", ""]
    return lines + [""]


def models_section(models: Sequence[Mapping[str, Any]], probe: Mapping[str, Any] | None = None) -> list[str]:
    if not models:
        return []
    body = []
    for model in models:
        info = _info(model)
        match = experiment_row(model)
        body.append([model["name"], str(model.get("kind")), str(info.get("task", "–")),
                     str(info.get("finetune_layers", "–")), "yes" if model.get("control") else "",
                     f"{table_title(match[0])} {match[1]}" if match else "–"])
    lines = ["## Models", "", markdown_table(["model", "kind", "task", "layers tuned", "control", "paper row"], body),
             ""]
    described = [f"- {model['name']}: {describe_conditions(model, probe or {})}" for model in models
                 if model.get("conditions")]
    return lines + (["Conditions (initial weights, training data, epochs, checkpoint; probe data, input size, "
                     "precision):", "", *described, ""] if described else [])


# ------------------------------------------------------------------------------------------------------------
# regions built from fixations (saliency_probe.data.regions; docs/regions.md)
# ------------------------------------------------------------------------------------------------------------

#: The build record the region builder writes beside a region set.
REGIONS_RECORD = "regions.json"


def built_regions(summary: Mapping[str, Any]) -> dict[str, dict[str, Any]]:
    """Per data module of ``probe_summary.json``, how its regions were built: the module's own
    ``built_regions``, else the ``regions.json`` beside its ``regions_root`` (a built set read as OSIE-SR)."""
    found: dict[str, dict[str, Any]] = {}
    for key, info in (summary.get("data") or {}).items():
        if not isinstance(info, Mapping):
            continue
        if isinstance(info.get("built_regions"), Mapping):
            found[key] = dict(info["built_regions"])
            continue
        record = Path(str(info.get("regions_root", ""))) / REGIONS_RECORD
        if info.get("regions_root") and record.is_file():
            data = json.loads(record.read_text(encoding="utf-8"))
            inputs = data.get("inputs", {})
            settings, mapping = inputs.get("settings", {}), inputs.get("mapping")
            found[key] = {"kind": data.get("kind"), "method": settings.get("method"),
                          "bandwidth": settings.get("bandwidth"), "min_observers": settings.get("min_observers"),
                          "dilation": settings.get("dilation_in_force"), "annotations": inputs.get("annotations"),
                          "mapping": mapping.get("path") if mapping else None,
                          "person_split": bool(mapping and mapping.get("person_split")),
                          "images": data.get("images"), "regions": data.get("regions"),
                          "images_without_regions": len(data.get("images_without_regions", [])),
                          "unmapped": {k: v.get("regions") for k, v in data.get("unmapped", {}).items()}}
    return found


def regions_section(summary: Mapping[str, Any]) -> list[str]:
    """States that the regions were built automatically from fixations, and how (nothing for OSIE-SR)."""
    lines: list[str] = []
    for key, build in built_regions(summary).items():
        how = (f"{build.get('method')} clustering of all observers' fixations (bandwidth {build.get('bandwidth')} px; "
               f"a cluster counts when at least {build.get('min_observers')} observers fixated it)")
        annotations = build.get("annotations")
        if annotations:
            shape = (f"each region is the {annotations.get('format')} instance under most of its cluster's fixations "
                     f"(`{annotations.get('path')}`), its category from the table `{build.get('mapping')}`"
                     + ("; persons split into head and part by keypoints" if build.get("person_split") else ""))
        else:
            shape = (f"each region is its cluster's blob (hull dilated by {build.get('dilation')} px), "
                     "category `salient region`")
        unmapped = build.get("unmapped") or {}
        left = f"; unmapped classes left out: {dict(unmapped)}" if unmapped else ""
        lines += [f"- `{key}`: the regions were **built automatically** from fixations by "
                  f"`saliency_probe.data.regions` (docs/regions.md), not annotated by hand as OSIE-SR: {how}; "
                  f"{shape}. {build.get('regions')} regions in {build.get('images')} images "
                  f"({build.get('images_without_regions')} without a region){left}."]
    return ["## Salient regions", "", *lines, ""] if lines else []


def build_report(run_dir: str | Path, models: Sequence[Mapping[str, Any]] | None = None,
                 produced: Sequence[str | Path] | None = None) -> str:
    """The report's Markdown text for the run folder (models from ``probe_summary.json`` when not given; the
    files listed are the run's own, see :func:`run_files`)."""
    run = Path(run_dir)
    summary_path = run / files.SUMMARY
    summary = json.loads(summary_path.read_text(encoding="utf-8")) if summary_path.is_file() else {}
    models = list(models if models is not None else summary.get("models", []))
    paper = paper_values()
    lines = [
        "# Probe report", "",
        f"Run folder `{run.resolve()}`" + (f", {summary['seconds']} s" if "seconds" in summary else "") + ".",
        "Numbers in brackets or in *paper* columns are the published values of "
        f"{paper['citation']} They were measured under other conditions ({paper['conditions']}) and are context "
        "for a run on other data or weights, not a target.", "",
    ]
    vgg16 = str(summary.get("backbone") or "vgg16") == "vgg16"  # paper values only beside VGG-16 rows
    if not vgg16:
        lines += [f"Backbone {summary['backbone']}: the paper measured VGG-16 only, so no paper value is shown.", ""]
    notes = [f"- {note}" for note in summary.get("notes", [])]
    conditions = ["## What this run changed or left out", "", *notes, ""] if notes else []
    probe = summary.get("probe_conditions") or {}
    for section in (models_section(models, probe), conditions, regions_section(summary), inner_section(run, models, probe),
                    finetune_section(run, paper["section5_2"] if vgg16 else None),
                    output_section(run, vgg16, models, probe), scene_section(run, vgg16, models, probe),
                    popout_section(run, vgg16, models, probe),
                    files_section(run, produced)):
        lines += section
    return "\n".join(lines).rstrip() + "\n"


def write_report(run_dir: str | Path, models: Sequence[Mapping[str, Any]] | None = None,
                 produced: Sequence[str | Path] | None = None) -> Path:
    """Write ``<run_dir>/report.md`` atomically and return its path."""
    return write_text(Path(run_dir) / files.REPORT, build_report(run_dir, models, produced))


def main(argv: list[str] | None = None) -> Path:
    parser = argparse.ArgumentParser(description="(Re)build report.md of a probe run folder.")
    parser.add_argument("run_dir", type=Path)
    args = parser.parse_args(argv)
    if not args.run_dir.is_dir():
        raise SystemExit(f"{args.run_dir}: not a folder (expected a probe run folder with tables/ and figures/)")
    path = write_report(args.run_dir)
    print(path)
    return path


if __name__ == "__main__":
    main()
