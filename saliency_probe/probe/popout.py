"""The pop-out analysis (the paper's Section 7): deep and classical models on pop-out search arrays.

- Table 4: every map model (``popout.models``: classical names, ``ckpt:<path>``, ``maps:<folder>``, plus the
  saliency checkpoints among the probed sources) scored per image with
  :func:`~saliency_probe.probe.popout_metrics.score_map` (NMM, distractor NMM, target rank, GSI,
  fixations-to-find) and averaged over the pop-out arrays (target present, contrast level > 0);
- Table 5: per probed layer of every probed trunk, the mean NMM (Eq. 4) of each unit over the arrays and the
  mean of the ``top_k`` best units (one forward pass per image for all layers, :class:`~saliency_probe.metrics.NMM`);
- Table 6: the same statistic at the deepest probed layer for every job of a probed training sweep;
- psychometric curves (each score against the contrast level, per dimension and model) and the paper's
  Fig. 8 grid (arrays and every model's map).

The data are a :class:`PopoutDataModule` (``data=popout data.root=DIR``, or ``popout.root=DIR`` beside another
``data``); docs/popout_analysis.md describes the options and outputs.
"""

from __future__ import annotations

import logging
import math
import warnings
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pytorch_lightning as pl  # noqa: E402
import torch  # noqa: E402
from hydra.utils import get_class  # noqa: E402
from matplotlib.figure import Figure  # noqa: E402
from omegaconf import OmegaConf  # noqa: E402
from torch import nn  # noqa: E402
from torch.utils.data import DataLoader  # noqa: E402
from torchmetrics import SumMetric  # noqa: E402

from saliency_probe.data.popout import PopoutDataset, collate_popout, ensure_popout  # noqa: E402
from saliency_probe.io_utils import write_npz  # noqa: E402
from saliency_probe.metrics import NMM  # noqa: E402
from saliency_probe.metrics import functional as MF  # noqa: E402
from saliency_probe.models.backbone import LAYER_CHANNELS  # noqa: E402
from saliency_probe.probe.activations import LayerActivations, ordered_layers  # noqa: E402
from saliency_probe.probe.model_specs import MapModel, resolve_model  # noqa: E402
from saliency_probe.probe.popout_metrics import SCORE_NAMES, image_rng, score_map  # noqa: E402
from saliency_probe.probe.registry import register_analysis  # noqa: E402
from saliency_probe.report.figures import save_figure  # noqa: E402
from saliency_probe.report.tables import markdown_table, pivot_markdown, write_csv, write_text  # noqa: E402

log = logging.getLogger(__name__)

MODELS_COLUMNS = ["model", *SCORE_NAMES, "found_rate", "images", "kind"]
PER_IMAGE_COLUMNS = ["model", "image", "dimension", "level", *SCORE_NAMES, "found"]
LEVELS_COLUMNS = ["model", "dimension", "level", *SCORE_NAMES, "found_rate", "images"]
SCORE_LABELS = {
    "nmm": "NMM (target)",
    "nmm_distractors": "NMM (distractors)",
    "target_rank": "target rank (1 = best)",
    "gsi": "GSI",
    "fixations_to_find": "fixations to find",
}


# ------------------------------------------------------------------------------------------------------------
# data
# ------------------------------------------------------------------------------------------------------------


def holds_set(root: Path) -> bool:
    """True when ``root`` holds a pop-out set (ours, possibly half-written, or an external one)."""
    return (root / "generator.json").is_file() or (root / "images").is_dir()


class PopoutDataModule(pl.LightningDataModule):
    """Pop-out arrays for the probe: the set in ``root``, generated there first (``generate``: the keyword
    arguments of :func:`~saliency_probe.data.popout.generate_popout`) when ``root`` holds none. An existing
    set is read as it is, whatever ``generate`` says. Batches are :func:`collate_popout` dicts, in set order."""

    def __init__(
        self,
        root: str | Path,
        image_size: int = 224,
        threshold: int = 128,
        batch_size: int = 8,
        num_workers: int = 0,
        generate: dict[str, Any] | None = None,
    ) -> None:
        super().__init__()
        self.root = Path(root).expanduser().absolute()
        self.image_size = int(image_size)
        self.threshold = int(threshold)
        self.batch_size = int(batch_size)
        self.num_workers = int(num_workers)
        generate = OmegaConf.to_container(generate) if OmegaConf.is_config(generate) else generate
        self.generate = {key: value for key, value in dict(generate or {}).items() if value is not None}
        self._dataset: PopoutDataset | None = None

    def prepare_data(self) -> None:
        if not holds_set(self.root):
            log.info("no pop-out set in %s: generating one (%s)", self.root, self.generate)
            ensure_popout(self.root, input_size=self.image_size, threshold=self.threshold, **self.generate)

    @property
    def dataset(self) -> PopoutDataset:
        if self._dataset is None:
            self.prepare_data()
            self._dataset = ensure_popout(self.root, input_size=self.image_size, threshold=self.threshold)
        return self._dataset

    def setup(self, stage: str | None = None) -> None:
        _ = self.dataset

    def predict_dataloader(self) -> DataLoader:
        return DataLoader(self.dataset, batch_size=self.batch_size, shuffle=False, num_workers=self.num_workers,
                          persistent_workers=self.num_workers > 0, collate_fn=collate_popout)


def counts_as_popout(target: np.ndarray, level: int | None) -> bool:
    """An array enters the tables when it has a target and a contrast above 0 (level 0 is the no-difference
    control; external sets have no level and always count)."""
    return bool(np.asarray(target).any()) and (level is None or int(level) > 0)


# ------------------------------------------------------------------------------------------------------------
# options
# ------------------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class PopoutOptions:
    """``cfg.popout``, validated (see conf/popout/default.yaml)."""

    models: tuple[str, ...]
    checkpoint_outputs: bool
    image_size: int
    seed: int
    jitter: float
    inhibition: str | int
    max_fixations: int
    units: bool
    examples: int
    root: str | None
    classical: dict[str, dict[str, Any]]


def popout_options(cfg: Any) -> PopoutOptions:
    """Read and check ``cfg.popout`` (missing keys take the defaults of conf/popout/default.yaml)."""
    section = cfg.get("popout") or {}
    section = OmegaConf.to_container(section, resolve=True) if OmegaConf.is_config(section) else dict(section)
    models = section.get("models", ["bms", "gbvs", "itti", "spectral_residual"]) or []
    models = [models] if isinstance(models, str) else list(models)
    inhibition = section.get("inhibition", "item")
    if not (inhibition == "item" or (isinstance(inhibition, int) and inhibition > 0)):
        raise ValueError(f"popout.inhibition must be 'item' or a positive box side in pixels, got {inhibition!r}")
    options = PopoutOptions(
        models=tuple(str(model) for model in models),
        checkpoint_outputs=bool(section.get("checkpoint_outputs", True)),
        image_size=int(section.get("image_size", 224)),
        seed=int(section.get("seed", cfg.get("seed", 0))),
        jitter=float(section.get("jitter", 1e-6)),
        inhibition=inhibition,
        max_fixations=int(section.get("max_fixations", 100)),
        units=bool(section.get("units", True)),
        examples=int(section.get("examples", 7)),
        root=str(section["root"]) if section.get("root") else None,
        classical={str(k): dict(v or {}) for k, v in (section.get("classical") or {}).items()},
    )
    if options.max_fixations < 1 or options.jitter < 0 or options.image_size < 32:
        raise ValueError(
            f"popout: need max_fixations >= 1, jitter >= 0 and image_size >= 32; got {options.max_fixations}, "
            f"{options.jitter}, {options.image_size}"
        )
    return options


def data_is_popout(cfg: Any) -> bool:
    """True when the ``data`` group builds a :class:`PopoutDataModule` (``data=popout``), without building it."""
    target = str((cfg.get("data") or {}).get("_target_") or "")
    try:
        cls = get_class(target)
    except Exception:  # noqa: BLE001 - any unresolvable target is "not pop-out data"
        return False
    return isinstance(cls, type) and issubclass(cls, PopoutDataModule)


def popout_datamodule(context: Any, options: PopoutOptions) -> PopoutDataModule:
    """``popout.root`` when given, else the ``data`` group, which must then be ``data=popout``."""
    if options.root is not None:
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
    return context.datamodule("data")


# ------------------------------------------------------------------------------------------------------------
# Tables 5 and 6: unit NMM of probed trunks
# ------------------------------------------------------------------------------------------------------------


class PopoutUnitModule(pl.LightningModule):
    """Mean NMM of every unit of ``layers`` over the pop-out arrays of the predict data (DDP-safe sums).

    After ``trainer.predict``, ``results`` maps each layer to its ``(C,)`` unit means and ``images`` is the
    number of arrays counted; rank zero also writes both to ``result_path`` (for ``ddp_spawn``).
    """

    def __init__(self, trunk: nn.Module, layers: Sequence[str], result_path: str | Path | None = None) -> None:
        super().__init__()
        self.activations = LayerActivations(trunk, layers)
        self.layers = self.activations.layers
        self.nmm = nn.ModuleDict({layer: NMM(LAYER_CHANNELS[layer]) for layer in self.layers})
        self.counted = SumMetric()
        self.result_path = Path(result_path) if result_path is not None else None
        self.results: dict[str, np.ndarray] | None = None
        self.images = 0
        self.eval()

    def on_predict_start(self) -> None:
        for metric in [*self.nmm.values(), self.counted]:
            metric.reset()  # ddp_spawn on CPU shares metric memory between ranks until reset
        self.results = None

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

    def on_predict_epoch_end(self) -> None:
        self.results = {layer: self.nmm[layer].compute().cpu().numpy() for layer in self.layers}
        self.images = int(self.counted.compute().item())
        if self.result_path is not None and self.trainer.is_global_zero:
            write_npz(self.result_path, {**self.results, "_images": np.array(self.images)})


def load_unit_results(path: Path) -> tuple[dict[str, np.ndarray], int]:
    """What :class:`PopoutUnitModule` wrote: ``({layer: unit means}, images)``."""
    with np.load(path, allow_pickle=False) as data:
        return {key: data[key] for key in data.files if key != "_images"}, int(data["_images"])


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


def probe_units(context: Any, datamodule: PopoutDataModule, layers: Sequence[str], top_k: int
                ) -> list[dict[str, Any]]:
    """Tables 5 and 6: one predict pass per probed trunk (every rank takes part)."""
    rows: list[dict[str, Any]] = []
    for number, source in enumerate(context.sources):
        scratch = context.scratch_dir / f"popout_units_{number}.npz"
        module = PopoutUnitModule(source.trunk(), layers, result_path=scratch)
        trainer = context.trainer(description=f"popout units {number + 1}/{len(context.sources)}: {source.name}")
        with warnings.catch_warnings():  # predict_step returns None on purpose
            warnings.filterwarnings("ignore", message=".*predict returned None.*")
            trainer.predict(module, datamodule=datamodule, return_predictions=False)
        if module.results is not None:
            results, images = module.results, module.images
        else:
            results, images = load_unit_results(scratch)
        rows.extend(unit_rows(source.name, results, top_k, images, source.control, source.info))
        del module, trainer
    return rows


# ------------------------------------------------------------------------------------------------------------
# Table 4: map models, per image
# ------------------------------------------------------------------------------------------------------------


def map_models(options: PopoutOptions, sources: Iterable[Any]) -> list[MapModel]:
    """The Table 4 models: ``popout.models`` in order, then (``checkpoint_outputs``) every probed saliency
    checkpoint not already named there, under its source name. Weights and random trunks have no output map."""
    models = [resolve_model(spec, options.image_size, options.classical) for spec in options.models]
    named = {str(Path(m.params["path"]).expanduser().resolve()) for m in models if m.kind == "checkpoint"}
    if options.checkpoint_outputs:
        for source in sources:
            if source.kind != "checkpoint" or source.path is None or source.info.get("task") != "saliency":
                continue
            if str(Path(source.path).resolve()) in named:
                continue
            model = resolve_model(f"ckpt:{source.path}", options.image_size)
            model.name = source.name
            models.append(model)
    names = [model.name for model in models]
    repeated = sorted({name for name in names if names.count(name) > 1})
    if repeated:
        raise ValueError(f"popout.models: model names {repeated} repeat; each model must appear once")
    return models


def check_models(options: PopoutOptions) -> None:
    """Fail before any work (on every rank alike) on an unknown model, a bad classical parameter, a missing
    checkpoint or maps folder; checkpoints are loaded later, by rank zero only."""
    for spec in options.models:
        if spec.startswith("ckpt:"):
            if not Path(spec[len("ckpt:"):]).expanduser().is_file():
                raise FileNotFoundError(f"popout.models: {spec}: no checkpoint file {spec[len('ckpt:'):]}")
        else:
            resolve_model(spec, options.image_size, options.classical)


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
# Markdown
# ------------------------------------------------------------------------------------------------------------


def models_markdown(rows: Sequence[dict[str, Any]], levels: Sequence[dict[str, Any]], header: str) -> str:
    """Table 4 (models as rows, every score as a column) and NMM per dimension at the strongest contrast."""
    body = [[row["model"], *(f"{row[name]:.2f}" if math.isfinite(row[name]) else "–" for name in SCORE_NAMES),
             f"{row['found_rate']:.2f}" if math.isfinite(row["found_rate"]) else "–", str(row["images"])]
            for row in rows]
    lines = ["# Pop-out search arrays: models (Table 4)", "", header, "",
             markdown_table(["model", *(SCORE_LABELS[n] for n in SCORE_NAMES), "found rate", "arrays"], body), ""]
    top: dict[str, int] = {}
    for row in levels:
        top[row["dimension"]] = max(top.get(row["dimension"], 0), int(row["level"]))
    strongest = [row for row in levels if int(row["level"]) == top[row["dimension"]]]
    if strongest:
        for name in ("nmm", "target_rank"):
            lines += [f"**{SCORE_LABELS[name]} per dimension at the strongest contrast**", "",
                      pivot_markdown(strongest, "model", "dimension", name, corner="model"), ""]
    return "\n".join(lines).rstrip() + "\n"


def layers_markdown(rows: Sequence[dict[str, Any]], layers: Sequence[str], top_k: int, header: str) -> str:
    """Table 5's layout: trunks as rows, probed layers as columns (deepest first)."""
    stat = f"top{top_k}_nmm"
    table = pivot_markdown(rows, "model", "layer", stat, corner="model", column_order=list(reversed(layers)))
    return "\n".join([f"# Pop-out: mean NMM of the top {top_k} units per layer (Table 5)", "", header, "",
                      table, ""])


def sweep_markdown(rows: Sequence[dict[str, Any]], layer: str, top_k: int, header: str) -> str:
    """Table 6's layout: one row, the sweep's jobs as columns."""
    stat = f"top{top_k}_nmm"
    table = pivot_markdown(rows, lambda _: f"top-{top_k} NMM at {layer}", "model", stat, corner="")
    return "\n".join([f"# Pop-out: top-{top_k} unit NMM at {layer} against layers fine-tuned (Table 6)", "",
                      header, "", table, ""])


# ------------------------------------------------------------------------------------------------------------
# figures
# ------------------------------------------------------------------------------------------------------------


def _normalised(values: np.ndarray) -> np.ndarray:
    low, high = float(np.min(values)), float(np.max(values))
    return np.zeros_like(values, dtype=np.float64) if high <= low else (values - low) / (high - low)


def examples_figure(examples: dict[str, dict[str, Any]], models: Sequence[str]) -> Figure:
    """Fig. 8: one row per array (image with the target outlined), then every model's min-max map."""
    rows = max(1, len(examples))
    columns = 1 + len(models)
    figure, axes = plt.subplots(rows, columns, figsize=(1.9 * columns, 1.9 * rows), squeeze=False)
    for axis in axes.ravel():
        axis.set_xticks([])
        axis.set_yticks([])
    for r, example in enumerate(examples.values()):
        axes[r, 0].imshow(example["image"])
        axes[r, 0].contour(example["target"].astype(float), levels=[0.5], colors="red", linewidths=0.8)
        axes[r, 0].set_ylabel(example["title"], fontsize=7)
        for c, model in enumerate(models, start=1):
            if model in example["maps"]:
                axes[r, c].imshow(_normalised(example["maps"][model]), cmap="gray", vmin=0.0, vmax=1.0)
    for c, title in enumerate(["image", *models]):
        axes[0, c].set_title(title, fontsize=8)
    figure.tight_layout()
    return figure


def psychometric_figure(levels: Sequence[dict[str, Any]], models: Sequence[str], score: str) -> Figure:
    """One score against the contrast level: a panel per dimension, a line per model."""
    dimensions = list(dict.fromkeys(row["dimension"] for row in levels))
    columns = min(4, max(1, len(dimensions)))
    rows = math.ceil(max(1, len(dimensions)) / columns)
    figure, axes = plt.subplots(rows, columns, figsize=(3.0 * columns, 2.5 * rows), squeeze=False)
    colours = plt.get_cmap("tab10")
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


def _write(context: Any, name: str, rows: Sequence[dict[str, Any]], columns: Sequence[str], markdown: str | None,
           written: list[str]) -> None:
    written.append(str(write_csv(context.tables_dir / f"{name}.csv", rows, columns)))
    if markdown is not None:
        written.append(str(write_text(context.tables_dir / f"{name}.md", markdown)))
    context.log_table(f"popout/{name.removeprefix('popout_')}", list(rows), list(columns))


def _figure(context: Any, figure: Figure, name: str, written: list[str]) -> None:
    path = save_figure(figure, context.figures_dir / f"{name}.png")
    written.append(str(path))
    context.log_image(f"popout/{name.removeprefix('popout_')}", path)


@register_analysis("popout")
def run_popout(context: Any) -> dict[str, Any]:
    """Tables 4-6, the psychometric curves and Fig. 8 on the pop-out arrays (see the module docstring)."""
    cfg = context.cfg
    options = popout_options(cfg)
    layers = ordered_layers(list(cfg.layers))
    top_k = int(cfg.top_k)
    check_models(options)
    datamodule = popout_datamodule(context, options)
    dataset = datamodule.dataset
    figures_on = bool((cfg.get("figures") or {}).get("enabled", True))

    units = probe_units(context, datamodule, layers, top_k) if options.units and context.sources else []
    sweep = [dict(row) for row in units if row["layer"] == layers[-1] and
             any(s.name == row["model"] and "job" in s.info for s in context.sources)]

    written: list[str] = []
    models_table: list[dict[str, Any]] = []
    per_image: list[dict[str, Any]] = []
    if context.is_global_zero:
        models = map_models(options, context.sources)
        progress = bool(cfg.get("progress_bar", True))
        per_image, examples = score_models(models, dataset, options, progress) if models else ([], {})
        models_table = model_rows(per_image, models)
        levels = level_rows(per_image, models)
        counted = models_table[0]["images"] if models_table else 0
        header = (f"{len(dataset)} arrays in {dataset.root}; {counted} with a target and contrast level > 0 "
                  f"enter the means. Jitter {options.jitter:g} x map range (seed {options.seed}), inhibition box "
                  f"{options.inhibition}, at most {options.max_fixations} fixations ({options.max_fixations + 1} = "
                  "not found). Maps of deep models from a "
                  f"{options.image_size}x{options.image_size} input.")
        _write(context, "popout_models", models_table, MODELS_COLUMNS, models_markdown(models_table, levels, header),
               written)
        _write(context, "popout_per_image", per_image, PER_IMAGE_COLUMNS, None, written)
        _write(context, "popout_levels", levels, LEVELS_COLUMNS, None, written)
        unit_columns = ["model", "layer", f"top{top_k}_nmm", "best_unit", "best_unit_nmm", "images", "control",
                        "finetune_layers"]
        unit_header = (f"Mean NMM (Eq. 4) of each unit over the arrays with a target and level > 0, then the mean "
                       f"of the top {top_k} units; input {options.image_size}x{options.image_size}.")
        if units:
            _write(context, "popout_layers", units, unit_columns, layers_markdown(units, layers, top_k, unit_header),
                   written)
        if sweep:
            _write(context, "popout_sweep", sweep, unit_columns, sweep_markdown(sweep, layers[-1], top_k, unit_header),
                   written)
        if figures_on and models:
            names = [model.name for model in models]
            if examples:
                _figure(context, examples_figure(examples, names), "popout_examples", written)
            if levels:
                for score in SCORE_NAMES:
                    _figure(context, psychometric_figure(levels, names, score), f"popout_psychometric_{score}", written)
    return {
        "rows": models_table,
        "per_image": per_image,
        "layers": units,
        "sweep": sweep,
        "files": written,
        "lines": summary_lines(models_table, units, layers, top_k),
        "summary": {"models": [row["model"] for row in models_table], "images": len(dataset),
                    "layers": layers if units else [], "top_k": top_k,
                    "csv": str(context.tables_dir / "popout_models.csv")},
    }


def _applies_to(cfg: Any, sources: Sequence[Any]) -> bool:
    """For ``analyses: auto``: the analysis applies when pop-out arrays are configured."""
    return bool((cfg.get("popout") or {}).get("root")) or data_is_popout(cfg)


run_popout.applies_to = _applies_to  # type: ignore[attr-defined]
