"""The inner-representation analysis (Eq. 1 and Section 4.3; Tables 2, 3 and 7; Figs. 3 and 4).

For every model and probed layer: the ``(C, K)`` mean region NSS of each unit over all regions of each category,
then per category the mean of the ``top_k`` largest unit means and the number of units above ``threshold``.
Controls beside each model: the shuffled-region baseline (the same statistics with each region's fixations
replaced by random fixations of the same image) and a random-initialisation trunk (a model row of its own).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from omegaconf import DictConfig

from saliency_probe.data.osie_sr import OsieSrDataset
from saliency_probe.data.popout_datamodule import data_is_popout
from saliency_probe.io_utils import safe_name, write_json, write_text
from saliency_probe.metrics import functional as MF
from saliency_probe.probe.activations import LayerActivations
from saliency_probe.probe.context import AnalysisResult, ProbeContext
from saliency_probe.probe.module import RegionProbeModule
from saliency_probe.probe.options import ControlsOptions, FiguresOptions, OutputOptions
from saliency_probe.probe.registry import Analysis, register_analysis
from saliency_probe.probe.results import LayerResult, results_from_arrays, save_results
from saliency_probe.probe.sources import TrunkSource
from saliency_probe.probe.stats import finetune_statistics
from saliency_probe.probe.unit_figures import reference_source
from saliency_probe.report import files
from saliency_probe.report.conditions import start_difference
from saliency_probe.report.figures import save_figure
from saliency_probe.report.inner import UnitPanel, improvement_figure, inner_markdown, unit_panels
from saliency_probe.report.statistics import finetune_lines
from saliency_probe.report.tables import write_csv


def columns(top_k: int = 10) -> list[str]:
    """CSV columns: the paper's statistics first, then the shuffled-region control, a control flag and the
    number of dead maps (``dead_maps``: the (unit, region) values of the row's layer and category that are 0
    because the unit's map was constant on the region's image; they are inside the means)."""
    stat = f"top{top_k}_mean_nss"
    return [
        "model",
        "layer",
        "category",
        stat,
        "n_above_threshold",
        "n_regions",
        f"shuffled_{stat}",
        "shuffled_n_above_threshold",
        "control",
        "dead_maps",
    ]


def layer_statistics(unit_means: np.ndarray, top_k: int, threshold: float) -> tuple[np.ndarray, np.ndarray]:
    """``(top-k mean (K,), count above threshold (K,))`` of ``(C, K)`` unit means (Section 4.3)."""
    means = torch.from_numpy(np.asarray(unit_means, dtype=np.float64))
    return MF.top_k_mean(means, top_k).numpy(), MF.count_above(means, threshold).numpy()


def inner_rows(
    model: str,
    results: dict[str, LayerResult],
    categories: Sequence[str],
    top_k: int,
    threshold: float,
    control: bool = False,
) -> list[dict[str, Any]]:
    """One row per layer and category that held fixated regions."""
    stat = f"top{top_k}_mean_nss"
    rows = []
    for layer, result in results.items():
        top, above = layer_statistics(result.unit_means, top_k, threshold)
        if result.shuffled_means is not None:
            shuffled_top, shuffled_above = layer_statistics(result.shuffled_means, top_k, threshold)
        for k, category in enumerate(categories):
            if int(result.region_counts[k]) == 0:
                continue
            rows.append(
                {
                    "model": model,
                    "layer": layer,
                    "category": category,
                    stat: float(top[k]),
                    "n_above_threshold": int(above[k]),
                    "n_regions": int(result.region_counts[k]),
                    f"shuffled_{stat}": float(shuffled_top[k])
                    if result.shuffled_means is not None
                    else float("nan"),
                    "shuffled_n_above_threshold": (
                        int(shuffled_above[k]) if result.shuffled_means is not None else float("nan")
                    ),
                    "control": bool(control),
                    "dead_maps": (
                        int(result.dead_maps[:, k].sum()) if result.dead_maps is not None else float("nan")
                    ),
                }
            )
    return rows


# ------------------------------------------------------------------------------------------------------------
# Section 5.2: are the fine-tuning improvements different across categories?
# ------------------------------------------------------------------------------------------------------------


def _is_tuned(source: TrunkSource) -> bool | None:
    """True for a checkpoint whose trunk was fine-tuned, False for anything else, None when a checkpoint does
    not record how many layers it tuned."""
    if source.control or source.kind != "checkpoint":
        return False
    layers = str(source.info.get("finetune_layers"))
    return None if layers in ("None", "") else layers != "0"


def finetune_payload(
    sources: Sequence[TrunkSource],
    per_model: dict[str, dict[str, LayerResult]],
    categories: Sequence[str],
    layer: str,
    top_k: int,
    alpha: float,
    conditions: Callable[[TrunkSource], Mapping[str, Any]] | None = None,
) -> dict[str, Any]:
    """``statistics_finetune.json``: Section 5.2's tests for every fine-tuned checkpoint against setup I.

    Setup I is the trunk before fine-tuning: a probed ``backbone.weights`` model, else a checkpoint with
    ``finetune_layers`` 0 (the rule of the unit figures, :func:`~saliency_probe.probe.unit_figures.
    reference_source`). For every other checkpoint with fine-tuned layers: :func:`~saliency_probe.probe.stats.
    finetune_statistics` of its ``layer`` unit means against setup I's. ``skipped`` (the whole file) and each
    model's ``skipped`` say why a test was not run; nothing is left out silently. With ``conditions`` (a model's
    :func:`~saliency_probe.probe.conditions.model_conditions`) each model's ``start_differs`` says when it did not
    start from setup I's weights (:func:`~saliency_probe.report.conditions.start_difference`; null: the same start,
    or not checked without ``conditions``).
    """
    reference = reference_source(sources)
    tuned = [s for s in sources if _is_tuned(s)]
    unknown = [s.name for s in sources if _is_tuned(s) is None]
    payload: dict[str, Any] = {
        "test": "Section 5.2: one-way ANOVA (scipy.stats.f_oneway) and Tukey HSD (scipy.stats.tukey_hsd) across "
                "categories of the rank-matched top-k improvements, per fine-tuned model",
        "layer": layer,
        "top_k": int(top_k),
        "alpha": float(alpha),
        "reference": None,
        "skipped": None,
        "models": {},
        "not_tested": {name: "the checkpoint does not record finetune_layers" for name in unknown},
        "method": {
            "values": f"per category, the i-th largest {layer} unit mean (Eq. 1 averaged over the category's "
                      f"regions) of the fine-tuned trunk minus the i-th largest of setup I, i = 1..{top_k}; "
                      f"their mean is the change of the top-{top_k} mean NSS (Table 3, Fig. 4)",
            "setup_I": "the trunk before fine-tuning: a probed backbone.weights model, else a checkpoint with "
                       "finetune_layers 0",
            "start": "start_differs: not null when a model's recorded starting weights (file SHA-256, torchvision "
                     "enum digest, or random initialisation and seed) are not setup I's",
            "anova": "scipy.stats.f_oneway across the categories with >= 2 finite values",
            "tukey": f"scipy.stats.tukey_hsd on the same groups; pairs with p < {alpha:g} (output.alpha)",
            "differs_from_all": "tested categories whose Tukey pairs with every other tested category differ",
        },
    }
    if not tuned:
        payload["skipped"] = ("no fine-tuned checkpoint among the probed models (a checkpoint with "
                              "finetune_layers other than 0)")
        return payload
    if reference is None:
        payload["skipped"] = ("no setup I model (the trunk before fine-tuning): probe a backbone.weights model "
                              "or a finetune.layers=0 checkpoint beside the fine-tuned ones")
        return payload
    payload["reference"] = {"name": reference.name, "kind": reference.kind,
                            "finetune_layers": reference.info.get("finetune_layers")}
    before = per_model.get(reference.name, {}).get(layer)
    if before is None:
        payload["skipped"] = f"setup I model {reference.name} has no probed layer {layer}"
        return payload
    for source in tuned:
        entry: dict[str, Any] = {"task": source.info.get("task"), "finetune_layers": source.info.get("finetune_layers"),
                                 "skipped": None, "start_differs": None}
        if conditions is not None:
            entry["start_differs"] = start_difference(conditions(reference), conditions(source))
        after = per_model.get(source.name, {}).get(layer)
        if after is None:
            entry["skipped"] = f"layer {layer} was not probed for this model"
        elif np.shape(after.unit_means) != np.shape(before.unit_means):
            entry["skipped"] = (f"{np.shape(after.unit_means)[0]} units against setup I's "
                                f"{np.shape(before.unit_means)[0]} at {layer}")
        else:
            entry.update(finetune_statistics(after.unit_means, before.unit_means, categories, top_k, alpha))
            if entry["anova"]["F"] is None:
                entry["skipped"] = ("fewer than 2 categories with >= 2 finite values (or constant values): "
                                    f"categories tested {entry['anova']['categories']}")
        payload["models"][source.name] = entry
    return payload


# ------------------------------------------------------------------------------------------------------------
# figures
# ------------------------------------------------------------------------------------------------------------


@torch.no_grad()
def best_unit_panels(
    trunk: torch.nn.Module,
    dataset: OsieSrDataset,
    unit_means: dict[str, np.ndarray],
    categories: Sequence[str],
    search_images: int,
) -> dict[str, list[UnitPanel]]:
    """Fig. 3 panels per layer: for each category, the unit with the largest mean (``unit_means[layer]`` is
    ``(C, K)``), shown on the searched image where it scores highest on a region of that category.

    One forward pass per searched image (the first ``search_images``) serves every layer; the chosen units'
    small maps are kept, so no image is run twice.
    """
    best = {
        layer: {
            k: int(np.nanargmax(means[:, k]))
            for k in range(len(categories))
            if np.isfinite(means[:, k]).any()
        }
        for layer, means in unit_means.items()
    }
    best = {layer: chosen for layer, chosen in best.items() if chosen}
    if not best:
        return {}
    extractor = LayerActivations(trunk, list(best)).eval()
    device = next(trunk.parameters()).device
    found: dict[tuple[str, int], tuple[float, int, torch.Tensor]] = {}
    for index in range(min(len(dataset), int(search_images))):
        item = dataset[index]
        if item["region_masks"].shape[0] == 0:
            continue
        features = extractor(item["image"][None].to(device))
        for layer, chosen in best.items():
            units = sorted(set(chosen.values()))
            maps = features[layer][:, units].float().cpu()
            values = MF.region_nss(maps, item["fixations"][None], item["region_masks"][None])[0]  # (U, R)
            for k, unit in chosen.items():
                row = values[units.index(unit)]
                for r, category in enumerate(item["region_categories"]):
                    value = float(row[r])
                    if (
                        category == categories[k]
                        and value == value
                        and value > found.get((layer, k), (-np.inf,))[0]
                    ):
                        found[(layer, k)] = (value, index, maps[0, units.index(unit)].clone())
    panels: dict[str, list[UnitPanel]] = {layer: [] for layer in best}
    for (layer, k), (value, index, small) in sorted(
        found.items(), key=lambda entry: (entry[0][0], entry[0][1])
    ):
        unit = best[layer][k]
        fixations = dataset.fixation_map(index) != 0
        masks, region_categories = dataset.regions(index)
        selected = [r for r, c in enumerate(region_categories) if c == categories[k]]
        panels[layer].append(
            UnitPanel(
                image=dataset.load_image(index),
                unit_map=F.interpolate(
                    small[None, None], size=fixations.shape, mode="bilinear", align_corners=False
                )[0, 0].numpy(),
                region_mask=masks[selected].any(axis=0),
                fixations=fixations,
                title=f"{categories[k]}: unit {unit} (mean {unit_means[layer][unit, k]:.2f}; "
                f"here {value:.2f}, image {dataset.stems[index]})",
            )
        )
    return panels


# ------------------------------------------------------------------------------------------------------------
# the analysis
# ------------------------------------------------------------------------------------------------------------


def summary_lines(
    rows: Sequence[dict[str, Any]], models: Sequence[str], layer: str, categories: Sequence[str], top_k: int
) -> list[str]:
    """A compact table for the screen: top-k mean NSS per model at ``layer`` (shuffled baseline in brackets)."""
    stat = f"top{top_k}_mean_nss"
    table = {(r["model"], r["category"]): r for r in rows if r["layer"] == layer}
    present = [c for c in categories if any((m, c) in table for m in models)]
    abbreviations = ["".join(word[0] for word in c.split()) if " " in c else c[:5] for c in present]
    width = max([len(m) for m in models] + [8])
    lines = [
        f"{layer}: top-{top_k} mean NSS per category (shuffled-region baseline: mean over categories)",
        f"{'model':<{width}} " + " ".join(f"{a:>6}" for a in abbreviations) + "   baseline",
    ]
    for model in models:
        values = [table[(model, c)][stat] if (model, c) in table else float("nan") for c in present]
        base = [table[(model, c)][f"shuffled_{stat}"] for c in present if (model, c) in table]
        base_text = f"{np.nanmean(base):9.2f}" if base and np.isfinite(base).any() else "        –"
        lines.append(f"{model:<{width}} " + " ".join(f"{v:6.2f}" for v in values) + f"  {base_text}")
    lines.append("categories: " + ", ".join(f"{a}={c}" for a, c in zip(abbreviations, present, strict=True)))
    return lines


def excluded_text(per_model: dict[str, dict[str, LayerResult]]) -> str:
    """What was left out of the means (the same for every model and layer: it depends on the data only)."""
    first = next((result for results in per_model.values() for result in results.values()), None)
    if first is None:
        return "no data"
    return (
        f"left out: {first.excluded_images} image(s) without fixations, {first.excluded_regions} region(s) "
        "without fixations"
    )


@register_analysis
class InnerAnalysis(Analysis):
    """Eq. 1 for every unit of the probed layers of every probed model; Section 4.3's statistics."""

    name = "inner"

    def applies_to(self, cfg: DictConfig, sources: Sequence[TrunkSource]) -> bool:
        """The inner analysis needs categorised regions, which pop-out arrays do not have."""
        return not data_is_popout(cfg)

    def run(self, context: ProbeContext) -> AnalysisResult:
        return run_inner(context)


def run_inner(context: ProbeContext) -> AnalysisResult:
    """Probe every model of ``context.sources``; write tables, per-unit arrays and figures."""
    cfg = context.cfg
    layers = context.layers
    top_k, threshold = int(cfg.top_k), float(cfg.threshold)
    datamodule = context.datamodule()
    dataset = context.dataset(datamodule)
    categories = list(getattr(dataset, "categories", None) or datamodule.categories)
    figures = context.options("figures", FiguresOptions)
    figure_layers = context.architecture.ordered(list(figures.layers or layers)) if figures.enabled else []
    shuffled = context.options("controls", ControlsOptions).shuffled_regions
    improvement_layer = context.architecture.ordered([str(figures.improvement_layer or layers[-1])])[0]
    alpha = context.options("output", OutputOptions).alpha

    all_rows: list[dict[str, Any]] = []
    per_model: dict[str, dict[str, LayerResult]] = {}
    written: list[str] = []
    for number, source in enumerate(context.sources):
        trunk = source.trunk()
        module = RegionProbeModule(trunk, layers, categories, shuffled_control=shuffled, seed=int(cfg.seed))
        arrays = context.predict(module, f"inner {number + 1}/{len(context.sources)}: {source.name}", datamodule)
        results = results_from_arrays(arrays)[0]
        per_model[source.name] = results
        all_rows.extend(
            inner_rows(source.name, results, categories, top_k, threshold, control=source.control)
        )
        if context.is_global_zero:
            model = safe_name(source.name)
            path = save_results(context.tables_dir / files.inner_units_npz(model), results, categories)
            written.append(str(path))
            trunk = trunk.to(module.device).eval()
            means = {layer: results[layer].unit_means for layer in figure_layers}
            with context.forward_precision():
                best = best_unit_panels(trunk, dataset, means, categories, figures.search_images)
            for layer, panels in best.items():
                if panels:
                    figure = unit_panels(panels, f"{source.name} · {layer}: best unit per category")
                    png = save_figure(figure, context.figures_dir / files.inner_units_png(model, layer))
                    written.append(str(png))
                    context.log_image(f"inner/units/{source.name}/{layer}", png)
        del trunk, module

    models = [s.name for s in context.sources]
    controls = [s.name for s in context.sources if s.control]
    finetune = finetune_payload(context.sources, per_model, categories, improvement_layer, top_k, alpha,
                                context.conditions)
    if context.is_global_zero:
        column_names = columns(top_k)
        header = (
            f"top-k = {top_k}, T = {threshold:g}; {len(dataset)} images; {excluded_text(per_model)}; "
            "shuffled-region baseline: each region's fixations replaced by as many random fixations of the "
            "same image."
        )
        written.append(str(write_csv(context.tables_dir / files.INNER_CSV, all_rows, column_names)))
        text = inner_markdown(all_rows, models, layers, categories, top_k, threshold, controls, header)
        written.append(str(write_text(context.tables_dir / files.INNER_MD, text)))
        context.log_table("inner/representation", all_rows, column_names)
        primary = [m for m in models if m not in controls]
        written.append(str(write_json(context.tables_dir / files.STATISTICS_FINETUNE, finetune)))
        if figures.enabled and len(primary) > 1:
            layer = improvement_layer
            before = reference_source(context.sources)
            reference = before.name if before is not None and before.name in primary else primary[0]
            figure = improvement_figure(all_rows, primary, layer, categories, top_k, reference)
            if figure is not None:
                png = save_figure(figure, context.figures_dir / files.inner_improvement_png(layer))
                written.append(str(png))
                context.log_image(f"inner/improvement/{layer}", png)
    lines = summary_lines(all_rows, models, layers[-1], categories, top_k)
    lines.append(f"{len(dataset)} images; {excluded_text(per_model)}")
    lines.extend(finetune_lines(finetune))
    return AnalysisResult(
        summary={
            "layers": layers,
            "top_k": top_k,
            "threshold": threshold,
            "images": len(dataset),
            "csv": str(context.tables_dir / files.INNER_CSV),
            "statistics_finetune": str(context.tables_dir / files.STATISTICS_FINETUNE),
        },
        lines=lines,
        files=written,
        data={"rows": all_rows, "unit_results": per_model, "categories": categories, "statistics_finetune": finetune},
    )
