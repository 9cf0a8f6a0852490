"""The pop-out analysis (the paper's Section 7): deep and classical models on pop-out search arrays.

- Table 4: every map model (``popout.models``: classical names, ``ckpt:<path>``, ``maps:<folder>``, plus the
  saliency checkpoints among the probed sources) scored per image with
  :func:`~saliency_probe.probe.popout_metrics.score_map` (NMM, distractor NMM, target rank, GSI,
  fixations-to-find) and averaged over the pop-out arrays (target present, contrast level > 0);
- Table 5: per probed layer of every probed trunk, the mean NMM (Eq. 4) of each unit over the arrays and the
  mean of the ``top_k`` best units (one predict pass per trunk for all layers, :class:`~saliency_probe.metrics.NMM`);
- Table 6: the same statistic at the deepest probed layer for every job of a probed training sweep;
- psychometric curves (each score against the contrast level, per dimension and model) and the paper's
  Fig. 8 grid (arrays and every model's map), drawn by :mod:`saliency_probe.report.popout`;
- Fig. 9: per probed trunk, a few arrays with their target masks and the unit maps of ``popout.fig9_layer``
  (VGG: conv4_1) that best match each target (the array's NMM, Eq. 4; :func:`fig9_panels`).

The data are a :class:`~saliency_probe.data.popout_datamodule.PopoutDataModule` (``data=popout data.root=DIR``,
or ``popout.root=DIR`` beside another ``data``); the options are
:class:`~saliency_probe.probe.options.PopoutOptions`; docs/popout_analysis.md describes them and the outputs.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any, cast

import numpy as np
import torch
import torch.nn.functional as F
from omegaconf import DictConfig
from torch import nn
from torchmetrics import SumMetric

from saliency_probe.data.popout_datamodule import PopoutDataModule, data_is_popout
from saliency_probe.data.popout_reader import PopoutDataset
from saliency_probe.io_utils import safe_name, write_text
from saliency_probe.metrics import NMM
from saliency_probe.metrics import functional as MF
from saliency_probe.models.backbone import Architecture
from saliency_probe.probe.activations import LayerActivations
from saliency_probe.probe.context import AnalysisResult, ProbeContext
from saliency_probe.probe.model_specs import MapModel, resolve_model
from saliency_probe.probe.options import FiguresOptions, PopoutOptions, read_options
from saliency_probe.probe.passes import PassResult, ProbePass
from saliency_probe.probe.popout_metrics import SCORE_NAMES, image_rng, score_map
from saliency_probe.probe.registry import Analysis, register_analysis
from saliency_probe.probe.sources import TrunkSource
from saliency_probe.report import files
from saliency_probe.report.figures import save_figure
from saliency_probe.report.popout import (
    examples_figure,
    fig9_figure,
    layers_markdown,
    models_markdown,
    psychometric_figure,
    sweep_markdown,
)
from saliency_probe.report.tables import write_csv

__all__ = [
    "LEVELS_COLUMNS", "MODELS_COLUMNS", "PER_IMAGE_COLUMNS", "PopoutAnalysis",
    "PopoutUnitModule", "counts_as_popout", "data_is_popout", "fig9_layer", "fig9_panels", "level_rows",
    "map_models", "mean_scores", "layers_columns", "model_rows", "score_models", "unit_rows",
]

MODELS_COLUMNS = ["model", *SCORE_NAMES, "found_rate", "images", "kind"]
PER_IMAGE_COLUMNS = ["model", "image", "dimension", "level", *SCORE_NAMES, "found"]
LEVELS_COLUMNS = ["model", "dimension", "level", *SCORE_NAMES, "found_rate", "images"]


def layers_columns(top_k: int) -> list[str]:
    """Columns of Tables 5 and 6 (``popout_layers``, ``popout_sweep``)."""
    return ["model", "layer", f"top{top_k}_nmm", "best_unit", "best_unit_nmm", "images", "control",
            "finetune_layers"]


# ------------------------------------------------------------------------------------------------------------
# data
# ------------------------------------------------------------------------------------------------------------


def counts_as_popout(target: np.ndarray, level: int | None) -> bool:
    """An array enters the tables when it has a target and a contrast above 0 (level 0 is the no-difference
    control; external sets have no level and always count)."""
    return bool(np.asarray(target).any()) and (level is None or int(level) > 0)


def popout_datamodule(context: ProbeContext, options: PopoutOptions) -> PopoutDataModule:
    """``popout.root`` when given, else the ``data`` group, which must then be ``data=popout``."""
    if options.root:
        datamodule = PopoutDataModule(options.root, image_size=options.image_size)
        datamodule.prepare_data()
        datamodule.setup("predict")
        return datamodule
    if not data_is_popout(context.cfg):
        target = (context.cfg.get("data") or {}).get("_target_") or "not set"
        raise ValueError(
            f"the popout analysis needs pop-out arrays but data is {target}: use "
            "`data=popout data.root=DIR` (DIR is generated when empty) or `popout.root=DIR` beside another data set"
        )
    return cast(PopoutDataModule, context.datamodule("data"))


# ------------------------------------------------------------------------------------------------------------
# Tables 5 and 6: unit NMM of probed trunks
# ------------------------------------------------------------------------------------------------------------

#: Key of the number of counted arrays in a :class:`PopoutUnitModule` result (beside the layer names).
IMAGES_KEY = "images"


class PopoutUnitModule(ProbePass):
    """Mean NMM of every unit of ``layers`` over the pop-out arrays of the predict data (DDP-safe sums).

    Its result maps each layer to its ``(C,)`` float64 unit means, and ``images`` to the number of arrays
    counted (:func:`counts_as_popout`).
    """

    def __init__(self, trunk: nn.Module, layers: Sequence[str]) -> None:
        super().__init__()
        self.activations = LayerActivations(trunk, layers)
        self.layers = self.activations.layers
        self.nmm = nn.ModuleDict({layer: NMM(self.activations.channels(layer)) for layer in self.layers})
        self.counted = SumMetric()
        self.eval()

    def predict_step(self, batch: dict[str, Any], batch_idx: int) -> None:
        keep = [i for i, (mask, level) in enumerate(zip(batch["target_mask"], batch["level"], strict=True))
                if counts_as_popout(mask, level)]
        self.counted.update(float(len(keep)))
        if not keep:
            return None
        features = self.activations(batch["image"][keep])
        by_size: dict[tuple[int, int], list[int]] = {}
        for position, index in enumerate(keep):
            by_size.setdefault(tuple(batch["target_mask"][index].shape), []).append(position)
        for positions in by_size.values():
            masks = torch.from_numpy(np.stack([batch["target_mask"][keep[p]] for p in positions])).to(self.device)
            for layer in self.layers:
                self.nmm[layer].update(features[layer][positions], masks)
        return None

    def compute_result(self) -> PassResult:
        result = {layer: self.nmm[layer].compute().cpu().numpy() for layer in self.layers}
        result[IMAGES_KEY] = np.array(int(self.counted.compute().item()))
        return result


def unit_rows(model: str, results: dict[str, np.ndarray], top_k: int, images: int, control: bool,
              info: dict[str, Any] | None = None) -> list[dict[str, Any]]:
    """Table 5 rows of one trunk: per layer, the mean of the ``top_k`` best unit means and the best unit."""
    rows = []
    for layer, means in results.items():
        values = torch.from_numpy(np.asarray(means, dtype=np.float64))
        finite = np.isfinite(means)
        rows.append({
            "model": model,
            "layer": layer,
            f"top{top_k}_nmm": float(MF.top_k_mean(values, top_k)),
            "best_unit": int(np.nanargmax(means)) if finite.any() else -1,
            "best_unit_nmm": float(np.nanmax(means)) if finite.any() else math.nan,
            "images": int(images),
            "control": bool(control),
            "finetune_layers": str((info or {}).get("finetune_layers", "")),
        })
    return rows


def probe_units(context: ProbeContext, datamodule: PopoutDataModule, layers: Sequence[str], top_k: int
                ) -> list[dict[str, Any]]:
    """Tables 5 and 6: one predict pass per probed trunk (every rank takes part)."""
    rows: list[dict[str, Any]] = []
    for number, source in enumerate(context.sources):
        module = PopoutUnitModule(source.trunk(), layers)
        description = f"popout units {number + 1}/{len(context.sources)}: {source.name}"
        result = context.predict(module, description, datamodule=datamodule)
        means = {layer: result[layer] for layer in module.layers}
        rows.extend(unit_rows(source.name, means, top_k, int(result[IMAGES_KEY]), source.control, source.info))
        del module
    return rows


# ------------------------------------------------------------------------------------------------------------
# Table 4: map models, per image
# ------------------------------------------------------------------------------------------------------------


def map_models(options: PopoutOptions, sources: Iterable[TrunkSource], backbone: object = None,
               precision: str = "fp32") -> list[MapModel]:
    """The Table 4 models: ``popout.models`` in order, then (``checkpoint_outputs``) every probed saliency
    checkpoint not already named there, under its source name. Weights and random trunks have no output map.
    Deep models run their forward in ``precision`` (``probe_precision``)."""
    models = [resolve_model(spec, options.image_size, options.classical, backbone, precision)
              for spec in options.models]
    named = {str(Path(m.params["path"]).expanduser().resolve()) for m in models if m.kind == "checkpoint"}
    if options.checkpoint_outputs:
        for source in sources:
            if source.kind != "checkpoint" or source.path is None or source.info.get("task") != "saliency":
                continue
            if str(Path(source.path).resolve()) in named:
                continue
            model = resolve_model(f"ckpt:{source.path}", options.image_size, precision=precision)
            model.name = source.name
            models.append(model)
    names = [model.name for model in models]
    repeated = sorted({name for name in names if names.count(name) > 1})
    if repeated:
        raise ValueError(f"popout.models: model names {repeated} repeat; each model must appear once")
    return models


def check_models(options: PopoutOptions, backbone: object = None) -> None:
    """Fail before any work (on every rank alike) on an unknown model, a bad classical parameter, a missing
    checkpoint or maps folder; checkpoints are loaded later, by rank zero only."""
    for spec in options.models:
        if spec.startswith("ckpt:"):
            if not Path(spec[len("ckpt:"):]).expanduser().is_file():
                raise FileNotFoundError(f"popout.models: {spec}: no checkpoint file {spec[len('ckpt:'):]}")
        else:
            resolve_model(spec, options.image_size, options.classical, backbone)


def example_ids(dataset: PopoutDataset, count: int) -> list[str]:
    """Fig. 8's arrays: per dimension, the first array at the strongest contrast (the first ``count`` arrays
    of an external set)."""
    if count <= 0:
        return []
    best: dict[str, tuple[int, str]] = {}
    for record in dataset.records:
        if record.dimension is None or record.level is None:
            continue
        if record.dimension not in best or record.level > best[record.dimension][0]:
            best[record.dimension] = (record.level, record.id)
    chosen = [identifier for _, identifier in best.values()]
    return (chosen or [record.id for record in dataset.records])[:count]


def score_models(
    models: Sequence[MapModel], dataset: PopoutDataset, options: PopoutOptions, progress: bool = False
) -> tuple[list[dict[str, Any]], dict[str, dict[str, Any]]]:
    """Per-image rows for every model and image, and the maps of Fig. 8's arrays (``{id: {image, target,
    title, maps: {model: map}}}``). Each image is read once for all models."""
    wanted = set(example_ids(dataset, options.examples))
    rows: list[dict[str, Any]] = []
    examples: dict[str, dict[str, Any]] = {}
    indices: Iterable[int] = range(len(dataset))
    if progress:
        from tqdm.auto import tqdm

        indices = tqdm(indices, desc=f"popout: {len(models)} model(s)", unit="img", dynamic_ncols=True, leave=False)
    for index in indices:
        item = dataset[index]
        rgb, target, items, identifier = item["rgb"], item["target_mask"], item["item_masks"], item["id"]
        keep_maps = identifier in wanted and target.any()
        if keep_maps:
            examples[identifier] = {"image": rgb, "target": target, "maps": {},
                                    "title": f"{item['dimension'] or identifier}, level {item['level']}"}
        for model in models:
            saliency = np.asarray(model.predict(rgb, identifier), dtype=np.float32)
            scores = score_map(saliency, target, items, image_rng(options.seed, identifier), options.jitter,
                               options.inhibition, options.max_fixations)
            rows.append({"model": model.name, "image": identifier, "dimension": item["dimension"] or "",
                         "level": "" if item["level"] is None else int(item["level"]), **scores.as_dict()})
            if keep_maps:
                examples[identifier]["maps"][model.name] = saliency
    return rows, examples


def _counts(row: dict[str, Any]) -> bool:
    level = row["level"]
    return math.isfinite(float(row["nmm"])) and (level == "" or int(level) > 0)


def mean_scores(rows: Sequence[dict[str, Any]]) -> dict[str, Any]:
    """Means of every score over ``rows`` (NaN scores skipped), the fraction of searches that found the
    target, and the number of arrays with a target."""
    present = [row for row in rows if math.isfinite(float(row["nmm"]))]
    out: dict[str, Any] = {}
    for name in SCORE_NAMES:
        values = np.array([float(row[name]) for row in present], dtype=np.float64)
        out[name] = float(np.nanmean(values)) if np.isfinite(values).any() else math.nan
    out["found_rate"] = float(np.mean([bool(row["found"]) for row in present])) if present else math.nan
    out["images"] = len(present)
    return out


def model_rows(rows: Sequence[dict[str, Any]], models: Sequence[MapModel]) -> list[dict[str, Any]]:
    """Table 4: per model, the means over the pop-out arrays (target present, level > 0)."""
    return [{"model": m.name, **mean_scores([r for r in rows if r["model"] == m.name and _counts(r)]), "kind": m.kind}
            for m in models]


def level_rows(rows: Sequence[dict[str, Any]], models: Sequence[MapModel]) -> list[dict[str, Any]]:
    """The psychometric data: per model, dimension and contrast level (level 0 included), the mean scores."""
    groups: dict[tuple[str, str, int], list[dict[str, Any]]] = {}
    for row in rows:
        if row["dimension"] and row["level"] != "":
            groups.setdefault((row["model"], row["dimension"], int(row["level"])), []).append(row)
    order = {m.name: i for i, m in enumerate(models)}
    out = []
    for (model, dimension, level) in sorted(groups, key=lambda key: (order.get(key[0], 0), key[1], key[2])):
        means = mean_scores(groups[(model, dimension, level)])
        if means["images"]:
            out.append({"model": model, "dimension": dimension, "level": level, **means})
    return out


# ------------------------------------------------------------------------------------------------------------
# Fig. 9: the unit maps that best match the targets
# ------------------------------------------------------------------------------------------------------------


def fig9_layer(arch: Architecture, requested: str | None = None) -> str:
    """Fig. 9's layer: ``requested`` (``popout.fig9_layer``, checked against the backbone), else the paper's
    conv4_1 for VGG and its analogue elsewhere: the first table layer of the second-to-last stage (VGG-16/19:
    conv4_1; ResNets: layer3.0; a one-stage table: its first layer)."""
    if requested:
        return arch.ordered([str(requested)], key="popout.fig9_layer")[0]
    layers = arch.table.layers
    stages = sorted({layer.stage for layer in layers})
    stage = stages[-2] if len(stages) > 1 else stages[-1]
    return next(layer.name for layer in layers if layer.stage == stage)


@torch.no_grad()
def fig9_panels(trunk: nn.Module, dataset: PopoutDataset, ids: Sequence[str], layer: str, units: int = 1
                ) -> list[dict[str, Any]]:
    """Fig. 9's columns: for each array of ``ids`` with a target, the ``units`` units of ``layer`` whose maps
    have the largest NMM (Eq. 4, :func:`saliency_probe.metrics.functional.nmm`) on that array, best first
    (ties: the lower unit index).

    Returns ``[{id, title, image (H, W, 3) uint8, target (H, W) bool, units: [{unit, nmm, map}]}]``, each map the
    unit's post-activation map bilinearly resized to the array (as NMM sees it).
    """
    extractor = LayerActivations(trunk, [layer]).eval()
    device = next(trunk.parameters()).device
    position = {record.id: index for index, record in enumerate(dataset.records)}
    panels = []
    for identifier in ids:
        item = dataset[position[identifier]]
        target = np.asarray(item["target_mask"], dtype=bool)
        if not target.any():
            continue
        maps = extractor(item["image"][None].to(device))[layer].float().cpu()  # (1, C, h, w)
        values = MF.nmm(maps, torch.from_numpy(target)[None])[0]  # (C,) float64
        order = torch.argsort(torch.nan_to_num(values, nan=-math.inf), descending=True, stable=True)[:units]
        full = F.interpolate(maps[:, order], size=target.shape, mode="bilinear", align_corners=False)[0]
        level = item["level"]
        panels.append({
            "id": identifier,
            "title": f"{item['dimension'] or identifier}" + ("" if level is None else f", level {level}"),
            "image": item["rgb"],
            "target": target,
            "units": [{"unit": int(unit), "nmm": float(values[unit]), "map": full[rank].numpy()}
                      for rank, unit in enumerate(order.tolist())],
        })
    return panels


def write_fig9(context: ProbeContext, dataset: PopoutDataset, options: PopoutOptions) -> tuple[list[str], dict]:
    """Fig. 9 for every probed trunk but the controls (rank zero): the PNGs and the summary entry
    ``{layer, arrays, units: {model: {array: [[unit, nmm], ...]}}}``."""
    layer = fig9_layer(context.architecture, options.fig9_layer)
    ids = example_ids(dataset, options.fig9_arrays)
    written: list[str] = []
    chosen: dict[str, dict[str, list[list[float]]]] = {}
    for source in [s for s in context.sources if not s.control]:
        with context.forward_precision():
            panels = fig9_panels(source.trunk(), dataset, ids, layer, options.fig9_units)
        if not panels:
            continue
        chosen[source.name] = {p["id"]: [[u["unit"], u["nmm"]] for u in p["units"]] for p in panels}
        title = f"{source.name}: {layer} units that best match the pop-out targets (Fig. 9; NMM, Eq. 4)"
        path = context.figures_dir / f"{files.popout_fig9(safe_name(source.name))}.png"
        written += log_figure(context, save_figure(fig9_figure(panels, layer, title), path))
    return written, {"layer": layer, "arrays": [i for i in ids if any(i in c for c in chosen.values())],
                     "units": chosen}


# ------------------------------------------------------------------------------------------------------------
# the analysis
# ------------------------------------------------------------------------------------------------------------


def summary_lines(models: Sequence[dict[str, Any]], units: Sequence[dict[str, Any]], layers: Sequence[str],
                  top_k: int) -> list[str]:
    """The screen summary: Table 4, then Table 5 (deepest layer first)."""
    width = max([len(row["model"]) for row in [*models, *units]] + [8])
    lines = []
    if models:
        lines.append(f"{'model':<{width}}    NMM  dNMM   rank    GSI  fixations  found  (arrays with level > 0)")
        for row in models:
            lines.append(f"{row['model']:<{width}} {row['nmm']:6.2f} {row['nmm_distractors']:5.2f} "
                         f"{row['target_rank']:6.2f} {row['gsi']:6.2f} {row['fixations_to_find']:10.2f} "
                         f"{row['found_rate']:6.2f}")
    if units:
        stat = f"top{top_k}_nmm"
        order = list(reversed(layers))
        table = {(row["model"], row["layer"]): row[stat] for row in units}
        lines.append(f"top-{top_k} unit NMM per layer")
        lines.append(f"{'model':<{width}} " + " ".join(f"{layer:>8}" for layer in order))
        for model in dict.fromkeys(row["model"] for row in units):
            values = " ".join(f"{table.get((model, layer), math.nan):8.2f}" for layer in order)
            lines.append(f"{model:<{width}} {values}")
    return lines


def write_table(context: ProbeContext, name: str, rows: Sequence[dict[str, Any]], columns: Sequence[str],
                markdown: str | None = None) -> list[str]:
    """Write ``tables/<name>.csv`` (and ``<name>.md``), log the rows to W&B; return the written paths."""
    written = [str(write_csv(context.tables_dir / f"{name}.csv", rows, columns))]
    if markdown is not None:
        written.append(str(write_text(context.tables_dir / f"{name}.md", markdown)))
    context.log_table(f"popout/{name.removeprefix('popout_')}", list(rows), list(columns))
    return written


def log_figure(context: ProbeContext, path: Path) -> list[str]:
    """Log the saved figure ``path`` to W&B (``popout/<name>``); return it for the list of written files."""
    context.log_image(f"popout/{path.stem.removeprefix('popout_')}", path)
    return [str(path)]


@register_analysis
class PopoutAnalysis(Analysis):
    """Tables 4-6, the psychometric curves and Figs. 8-9 on the pop-out arrays (see the module docstring)."""

    name = "popout"

    def applies_to(self, cfg: DictConfig, sources: Sequence[TrunkSource]) -> bool:
        """For ``analyses: auto``: the analysis applies when pop-out arrays are configured."""
        return bool(read_options(cfg, "popout", PopoutOptions).root) or data_is_popout(cfg)

    def run(self, context: ProbeContext) -> AnalysisResult:
        cfg = context.cfg
        options = context.options("popout", PopoutOptions)
        layers = context.layers
        top_k = int(cfg.top_k)
        check_models(options, context.backbone)
        fig9_layer(context.architecture, options.fig9_layer)  # a bad popout.fig9_layer fails before any pass
        datamodule = popout_datamodule(context, options)
        dataset = datamodule.dataset
        figures_on = context.options("figures", FiguresOptions).enabled

        units = probe_units(context, datamodule, layers, top_k) if options.units and context.sources else []
        sweep = [dict(row) for row in units if row["layer"] == layers[-1] and
                 any(s.name == row["model"] and "job" in s.info for s in context.sources)]

        written: list[str] = []
        models_table: list[dict[str, Any]] = []
        per_image: list[dict[str, Any]] = []
        fig9: dict[str, Any] = {}
        if context.is_global_zero:
            models = map_models(options, context.sources, context.backbone, context.precision)
            progress = bool(cfg.get("progress_bar", True))
            per_image, examples = score_models(models, dataset, options, progress) if models else ([], {})
            models_table = model_rows(per_image, models)
            levels = level_rows(per_image, models)
            counted = models_table[0]["images"] if models_table else 0
            header = (f"{len(dataset)} arrays in {dataset.root}; {counted} with a target and contrast level > 0 "
                      f"enter the means. Jitter {options.jitter:g} x map range (seed {options.seed}), inhibition "
                      f"box {options.inhibition}, at most {options.max_fixations} fixations "
                      f"({options.max_fixations + 1} = not found). Maps of deep models from a "
                      f"{options.image_size}x{options.image_size} input.")
            written += write_table(context, files.POPOUT_MODELS, models_table, MODELS_COLUMNS,
                                   models_markdown(models_table, levels, header, SCORE_NAMES))
            written += write_table(context, files.POPOUT_PER_IMAGE, per_image, PER_IMAGE_COLUMNS)
            written += write_table(context, files.POPOUT_LEVELS, levels, LEVELS_COLUMNS)
            unit_columns = layers_columns(top_k)
            unit_header = (f"Mean NMM (Eq. 4) of each unit over the arrays with a target and level > 0, then the "
                           f"mean of the top {top_k} units; input {options.image_size}x{options.image_size}.")
            if units:
                written += write_table(context, files.POPOUT_LAYERS, units, unit_columns,
                                       layers_markdown(units, layers, top_k, unit_header))
            if sweep:
                written += write_table(context, files.POPOUT_SWEEP, sweep, unit_columns,
                                       sweep_markdown(sweep, layers[-1], top_k, unit_header))
            if figures_on and models:
                names = [model.name for model in models]
                if examples:
                    path = context.figures_dir / f"{files.POPOUT_EXAMPLES}.png"
                    written += log_figure(context, save_figure(examples_figure(examples, names), path))
                if levels:
                    for score in SCORE_NAMES:
                        path = context.figures_dir / f"{files.popout_psychometric(score)}.png"
                        written += log_figure(context, save_figure(psychometric_figure(levels, names, score), path))
            if figures_on and options.fig9_arrays and context.sources:
                fig9_files, fig9 = write_fig9(context, dataset, options)
                written += fig9_files
        summary = {"models": [row["model"] for row in models_table], "images": len(dataset),
                   "layers": layers if units else [], "top_k": top_k,
                   "csv": str(context.tables_dir / f"{files.POPOUT_MODELS}.csv")}
        if fig9:
            summary["fig9"] = fig9
        return AnalysisResult(
            summary=summary,
            lines=summary_lines(models_table, units, layers, top_k),
            files=written,
            data={"rows": models_table, "per_image": per_image, "layers": units, "sweep": sweep, "fig9": fig9},
        )
