"""The output-level analysis (the paper's Section 6: Eq. 2, Eq. 3 and Fig. 7) on saliency checkpoints.

For every probed saliency checkpoint and every OSIE-SR region with fixations:

- ``os``  = NSS(model prediction, fixations inside the region)   (the summand of Eq. 2);
- ``gt``  = NSS(ground-truth map, fixations inside the region), the ground truth being the fixation map blurred
  with a Gaussian of ``output.gt_sigma`` pixels (default 24, about one degree for OSIE's 800x600 images);
- ``od``  = ``|os - gt|``                                          (the summand of Eq. 3).

Per category: ``OS_c`` and ``OD_c`` are the means over its regions; the inner saliency is the top-``top_k``
mean NSS of conv5_3 units (the statistic of Table 3), recomputed in the same forward pass (the head reads
conv5_3), so ``analyses=[output]`` works alone and equals the inner analysis's value when both run.
Statistics (per model; the primary model's also at the top level of ``statistics.json``): Spearman r_s between
inner saliency and ``OS_c`` across categories; one-way ANOVA (``scipy.stats.f_oneway``) and Tukey HSD
(``scipy.stats.tukey_hsd``) across categories on the per-region ``od`` values (the paper's test, Fig. 7 right)
and on the per-region ``os`` values.

Outputs: ``tables/output_saliency.csv`` (``model, category, inner_nss, os, od, n_regions``),
``tables/output_regions.csv`` (every region's values), ``tables/output_saliency.md``, ``tables/statistics.json``,
``figures/output_fig7_<model>.png`` and, with the inner analysis, the unit figures of
:mod:`saliency_probe.probe.unit_figures` (Figs. 5 and 6).
"""

from __future__ import annotations

import logging
import math
import warnings
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pytorch_lightning as pl
import torch
from omegaconf import DictConfig, OmegaConf
from scipy import stats
from torch import Tensor, nn

from saliency_probe.io_utils import safe_name, write_json, write_npz
from saliency_probe.maps import blur
from saliency_probe.metrics import RegionNSS
from saliency_probe.metrics import functional as MF
from saliency_probe.metrics._resize import accumulation_dtype, resize_bilinear
from saliency_probe.models.backbone import LAYER_CHANNELS
from saliency_probe.probe.activations import LayerActivations
from saliency_probe.probe.inner import dataset_of
from saliency_probe.probe.regions import pad_regions
from saliency_probe.probe.registry import register_analysis
from saliency_probe.report.tables import format_number, markdown_table, write_csv, write_text

log = logging.getLogger(__name__)

CSV_NAME = "output_saliency.csv"
REGIONS_CSV_NAME = "output_regions.csv"
MARKDOWN_NAME = "output_saliency.md"
STATISTICS_NAME = "statistics.json"
COLUMNS = ["model", "category", "inner_nss", "os", "od", "n_regions"]
REGION_COLUMNS = ["model", "image", "region", "category", "os", "gt_nss", "od"]
INNER_LAYER = "conv5_3"


# ------------------------------------------------------------------------------------------------------------
# options and sources
# ------------------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class OutputOptions:
    """``cfg.output``: ground-truth blur, significance level, the model reported at the top of statistics.json."""

    gt_sigma: float = 24.0
    alpha: float = 0.05
    model: str | None = None


def output_options(cfg: DictConfig | dict) -> OutputOptions:
    """Read ``cfg.output`` (absent keys take the defaults) and check it."""
    section = cfg.get("output") or {}
    section = OmegaConf.to_container(section, resolve=True) if OmegaConf.is_config(section) else dict(section)
    options = OutputOptions(
        gt_sigma=float(section.get("gt_sigma", 24.0)),
        alpha=float(section.get("alpha", 0.05)),
        model=str(section["model"]) if section.get("model") else None,
    )
    if options.gt_sigma < 0 or not 0 < options.alpha < 1:
        raise ValueError(f"output: need gt_sigma >= 0 and 0 < alpha < 1, got {options.gt_sigma}, {options.alpha}")
    return options


def is_saliency_checkpoint(source: Any) -> bool:
    """A probed checkpoint of the saliency task (the only models with an output map)."""
    return source.kind == "checkpoint" and str(source.info.get("task")) == "saliency"


def applies_to(cfg: Any, sources: Sequence[Any]) -> bool:
    """``analyses: auto`` runs the output analysis when a saliency checkpoint is probed."""
    return any(is_saliency_checkpoint(source) for source in sources)


# ------------------------------------------------------------------------------------------------------------
# per-region values (pure functions)
# ------------------------------------------------------------------------------------------------------------


def ground_truth_maps(fixations: Tensor, sigma: float) -> Tensor:
    """``(B, 1, H, W)`` float64 ground-truth maps: each binary fixation map blurred with ``sigma`` pixels
    (separable Gaussian, +-3 sigma, reflected border: the values of :func:`saliency_probe.maps.fixation_density`)."""
    maps = [blur((fixation != 0).cpu().numpy().astype(np.float64), sigma) for fixation in fixations]
    device = fixations.device
    return torch.from_numpy(np.stack(maps)).unsqueeze(1).to(device=device, dtype=accumulation_dtype(device))


def region_values(prediction: Tensor, ground_truth: Tensor, fixations: Tensor, masks: Tensor) -> tuple[Tensor, Tensor]:
    """``(os, gt)``, each ``(B, R)`` float64: NSS of the prediction and of the ground truth over the fixations
    inside each region (Eq. 1 applied to the model output). NaN where a region holds no fixation.

    Args:
        prediction: ``(B, 1, h, w)`` model outputs (resized to the fixation size exactly, as every NSS here).
        ground_truth: ``(B, 1, H, W)`` ground-truth maps.
        fixations: ``(B, H, W)`` binary fixation maps.
        masks: ``(B, R, H, W)`` region masks (all-zero masks may pad a batch).
    """
    os_values = MF.region_nss(prediction, fixations, masks)[:, 0]
    gt_values = MF.region_nss(ground_truth, fixations, masks)[:, 0]
    return os_values.double(), gt_values.double()


@dataclass
class RegionScores:
    """Per-region values of one model: data-set index of the image, region number in it, category index,
    ``os`` and ``gt`` (NaN where the region holds no fixation)."""

    image: np.ndarray
    region: np.ndarray
    category: np.ndarray
    os: np.ndarray
    gt: np.ndarray

    @property
    def od(self) -> np.ndarray:
        """``|os - gt|`` per region (the summand of Eq. 3)."""
        return np.abs(self.os - self.gt)

    @property
    def valid(self) -> np.ndarray:
        """Regions that held fixations (the ones Eqs. 2 and 3 average over)."""
        return np.isfinite(self.os) & np.isfinite(self.gt)

    @classmethod
    def from_array(cls, array: np.ndarray) -> RegionScores:
        """From the ``(N, 5)`` record array ``[image, region, category, os, gt]``, sorted by image and region."""
        array = np.asarray(array, dtype=np.float64).reshape(-1, 5)
        order = np.lexsort((array[:, 1], array[:, 0]))
        array = array[order]
        return cls(array[:, 0].astype(np.int64), array[:, 1].astype(np.int64), array[:, 2].astype(np.int64),
                   array[:, 3], array[:, 4])

    def as_array(self) -> np.ndarray:
        return np.stack([self.image, self.region, self.category, self.os, self.gt], axis=1).astype(np.float64)


def category_scores(scores: RegionScores, n_categories: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Eq. 2 and Eq. 3: ``(OS_c (K,), OD_c (K,), regions (K,))`` over the regions with fixations; NaN where a
    category has none."""
    valid = scores.valid
    category = scores.category[valid]
    counts = np.bincount(category, minlength=n_categories).astype(np.int64)
    with np.errstate(invalid="ignore", divide="ignore"):
        os_c = np.bincount(category, weights=scores.os[valid], minlength=n_categories) / counts
        od_c = np.bincount(category, weights=scores.od[valid], minlength=n_categories) / counts
    return np.where(counts > 0, os_c, np.nan), np.where(counts > 0, od_c, np.nan), counts


# ------------------------------------------------------------------------------------------------------------
# statistics
# ------------------------------------------------------------------------------------------------------------


def _finite(value: float) -> float | None:
    """JSON-friendly float: None for NaN/inf."""
    value = float(value)
    return value if math.isfinite(value) else None


def spearman(inner: Sequence[float], output: Sequence[float]) -> dict[str, Any]:
    """Spearman r_s (and its two-sided p) between inner saliency and ``OS_c`` over the categories where both are
    finite; None values when fewer than 3 categories or a constant input make it undefined."""
    x, y = np.asarray(inner, dtype=np.float64), np.asarray(output, dtype=np.float64)
    keep = np.isfinite(x) & np.isfinite(y)
    x, y = x[keep], y[keep]
    if x.size < 3 or np.ptp(x) == 0 or np.ptp(y) == 0:
        return {"r": None, "p": None, "n_categories": int(x.size)}
    result = stats.spearmanr(x, y)
    return {"r": _finite(result.statistic), "p": _finite(result.pvalue), "n_categories": int(x.size)}


def category_tests(
    values: np.ndarray, category: np.ndarray, categories: Sequence[str], alpha: float, what: str
) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """One-way ANOVA and Tukey HSD of per-region ``values`` across the categories with at least 2 regions.

    Returns ``(anova, differing pairs)``: ``anova`` = ``{F, p, df_between, df_within, values, categories,
    left_out}``; each pair = ``{a, b, mean_difference (a - b), p, ci_low, ci_high}`` with ``p < alpha``.
    """
    groups = {name: values[category == k] for k, name in enumerate(categories)}
    groups = {name: group[np.isfinite(group)] for name, group in groups.items()}
    used = [name for name, group in groups.items() if group.size >= 2]
    left_out = sorted(name for name, group in groups.items() if 0 < group.size < 2)
    anova: dict[str, Any] = {"F": None, "p": None, "df_between": None, "df_within": None, "values": what,
                             "categories": used, "left_out": left_out}
    if len(used) < 2:
        return anova, []
    samples = [groups[name] for name in used]
    n_total = sum(sample.size for sample in samples)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # constant groups: scipy warns and returns NaN, which we report as None
        result = stats.f_oneway(*samples)
        tukey = stats.tukey_hsd(*samples)
        interval = tukey.confidence_interval(confidence_level=1 - alpha)
    anova.update(F=_finite(result.statistic), p=_finite(result.pvalue), df_between=len(used) - 1,
                 df_within=int(n_total - len(used)))
    pairs = []
    for i in range(len(used)):
        for j in range(i + 1, len(used)):
            p = float(tukey.pvalue[i, j])
            if math.isfinite(p) and p < alpha:
                pairs.append({"a": used[i], "b": used[j], "mean_difference": float(tukey.statistic[i, j]), "p": p,
                              "ci_low": float(interval.low[i, j]), "ci_high": float(interval.high[i, j])})
    return anova, pairs


def model_statistics(
    rows: Sequence[dict[str, Any]], scores: RegionScores, categories: Sequence[str], alpha: float
) -> dict[str, Any]:
    """Spearman (inner vs OS_c over the rows' categories), ANOVA + Tukey on per-region OD and OS."""
    valid = scores.valid
    anova, tukey = category_tests(scores.od[valid], scores.category[valid], categories, alpha, "od")
    anova_os, tukey_os = category_tests(scores.os[valid], scores.category[valid], categories, alpha, "os")
    return {
        "spearman": spearman([row["inner_nss"] for row in rows], [row["os"] for row in rows]),
        "anova": anova,
        "tukey": tukey,
        "anova_os": anova_os,
        "tukey_os": tukey_os,
        "n_regions": int(valid.sum()),
        "regions_without_fixations": int((~valid).sum()),
    }


def primary_model(models: Sequence[Any], requested: str | None) -> str:
    """The model whose statistics lead ``statistics.json``: ``output.model`` if given, else the first
    saliency checkpoint with fine-tuned conv layers (``finetune_layers`` not 0), else the first one."""
    names = [source.name for source in models]
    if requested is not None:
        if requested not in names:
            raise ValueError(f"output.model={requested!r} is not a probed saliency checkpoint; choose among {names}")
        return requested
    tuned = [s.name for s in models if str(s.info.get("finetune_layers")) not in ("0", "None")]
    return (tuned or names)[0]


# ------------------------------------------------------------------------------------------------------------
# the predict pass
# ------------------------------------------------------------------------------------------------------------


@dataclass
class OutputResult:
    """One model's pass: per-region values and the conv5_3 ``(C, K)`` unit means (inner saliency)."""

    scores: RegionScores
    unit_means: np.ndarray


def save_output_result(path: str | Path, result: OutputResult) -> Path:
    """Write one model's pass (the ``ddp_spawn`` hand-off) as ``.npz``."""
    return write_npz(path, {"regions": result.scores.as_array(), "unit_means": result.unit_means})


def load_output_result(path: str | Path) -> OutputResult:
    with np.load(path, allow_pickle=False) as data:
        return OutputResult(RegionScores.from_array(data["regions"]), np.asarray(data["unit_means"]))


def _gather(records: Tensor) -> Tensor:
    """All ranks' ``(N_r, 5)`` records on every rank (identity without torch.distributed)."""
    if not (torch.distributed.is_available() and torch.distributed.is_initialized()):
        return records
    parts: list[Any] = [None] * torch.distributed.get_world_size()
    torch.distributed.all_gather_object(parts, records.cpu())
    return torch.cat(parts, dim=0)


class OutputProbeModule(pl.LightningModule):
    """One forward pass per image: conv5_3 (inner saliency, :class:`RegionNSS`) and the head's prediction
    (per-region ``os`` and ``gt``). Batches are :func:`~saliency_probe.data.osie_sr.collate_regions` dicts.

    After ``trainer.predict`` (``return_predictions=False``) ``result`` is an :class:`OutputResult`, the same
    on every rank (regions are gathered, unit sums reduced); rank zero also writes it to ``result_path``
    (``ddp_spawn`` workers' attributes never reach the main process).
    """

    def __init__(self, trunk: nn.Module, head: nn.Module, categories: Sequence[str], gt_sigma: float,
                 result_path: str | Path | None = None) -> None:
        super().__init__()
        self.activations = LayerActivations(trunk, [INNER_LAYER])
        self.head = head
        self.categories = list(categories)
        self.index = {name: k for k, name in enumerate(self.categories)}
        self.gt_sigma = float(gt_sigma)
        self.result_path = Path(result_path) if result_path is not None else None
        self.inner = RegionNSS(LAYER_CHANNELS[INNER_LAYER], self.categories)
        self.records: list[Tensor] = []
        self.result: OutputResult | None = None
        self.eval()

    def on_predict_start(self) -> None:
        self.inner.reset()  # ddp_spawn shares the states' memory until they are re-created
        self.records, self.result = [], None

    def predict_step(self, batch: dict[str, Any], batch_idx: int) -> None:
        features = self.activations(batch["image"])[INNER_LAYER]
        prediction = self.head(features)
        fixations, masks, names = batch["fixations"], batch["region_masks"], batch["region_categories"]
        padded = pad_regions(masks, tuple(fixations.shape[-2:]))
        self.inner.update(features, fixations, padded, names)
        os_values, gt_values = region_values(prediction, ground_truth_maps(fixations, self.gt_sigma), fixations,
                                             padded)
        os_values, gt_values, images = os_values.cpu(), gt_values.cpu(), batch["index"].cpu()
        for b, image_names in enumerate(names):
            if not image_names:
                continue
            count = len(image_names)
            self.records.append(torch.stack([
                torch.full((count,), float(images[b]), dtype=torch.float64),
                torch.arange(count, dtype=torch.float64),
                torch.tensor([float(self.index[name]) for name in image_names], dtype=torch.float64),
                os_values[b, :count].double(),
                gt_values[b, :count].double(),
            ], dim=1))
        return None

    def on_predict_epoch_end(self) -> None:
        local = torch.cat(self.records) if self.records else torch.zeros(0, 5, dtype=torch.float64)
        scores = RegionScores.from_array(_gather(local).numpy())
        self.result = OutputResult(scores, self.inner.compute().cpu().numpy())
        if self.result_path is not None and self.trainer.is_global_zero:
            save_output_result(self.result_path, self.result)


# ------------------------------------------------------------------------------------------------------------
# tables and figures
# ------------------------------------------------------------------------------------------------------------


def output_rows(model: str, result: OutputResult, categories: Sequence[str], top_k: int) -> list[dict[str, Any]]:
    """One ``output_saliency.csv`` row per category that held fixated regions."""
    os_c, od_c, counts = category_scores(result.scores, len(categories))
    inner = MF.top_k_mean(torch.from_numpy(np.asarray(result.unit_means, dtype=np.float64)), top_k).numpy()
    return [
        {"model": model, "category": name, "inner_nss": float(inner[k]), "os": float(os_c[k]),
         "od": float(od_c[k]), "n_regions": int(counts[k])}
        for k, name in enumerate(categories) if counts[k] > 0
    ]


def region_rows(model: str, scores: RegionScores, categories: Sequence[str], stems: Sequence[str]) -> list[dict]:
    """Every region's values (``output_regions.csv``), regions without fixations included (NaN)."""
    return [
        {"model": model, "image": stems[int(i)], "region": int(r), "category": categories[int(c)],
         "os": float(o), "gt_nss": float(g), "od": float(abs(o - g))}
        for i, r, c, o, g in zip(scores.image, scores.region, scores.category, scores.os, scores.gt, strict=True)
    ]


def output_markdown(rows: Sequence[dict[str, Any]], statistics: dict[str, dict[str, Any]], header: str) -> str:
    """Per model: inner saliency, OS_c, OD_c and regions per category, then the tests."""
    lines = ["# Output saliency (Eq. 2) and output difference (Eq. 3)", "", header, ""]
    for model, summary in statistics.items():
        subset = [row for row in rows if row["model"] == model]
        lines += [f"## {model}", ""]
        body = [[row["category"], format_number(row["inner_nss"]), format_number(row["os"]),
                 format_number(row["od"]), str(row["n_regions"])] for row in subset]
        lines += [markdown_table(["category", "inner NSS (conv5_3 top-k)", "OS_c", "OD_c", "regions"], body), ""]
        rs, anova = summary["spearman"], summary["anova"]
        lines.append(f"- Spearman r_s(inner, OS) = {format_number(rs['r'])} (p = {_p(rs['p'])}, "
                     f"{rs['n_categories']} categories)")
        lines.append(f"- ANOVA on per-region OD: F({anova['df_between']}, {anova['df_within']}) = "
                     f"{format_number(anova['F'])}, p = {_p(anova['p'])}; Tukey HSD pairs that differ: "
                     + (", ".join(f"{p['a']}/{p['b']}" for p in summary["tukey"]) or "none"))
        anova_os = summary["anova_os"]
        lines.append(f"- ANOVA on per-region OS: F = {format_number(anova_os['F'])}, p = {_p(anova_os['p'])}; "
                     f"Tukey pairs that differ: {len(summary['tukey_os'])}")
        lines.append("")
    return "\n".join(lines).rstrip() + "\n"


def _p(value: float | None) -> str:
    return "–" if value is None else f"{value:.2g}"


def fig7(rows: Sequence[dict[str, Any]], scores: RegionScores, categories: Sequence[str], summary: dict[str, Any],
         example: dict[str, np.ndarray] | None, title: str) -> Any:
    """Fig. 7: inner vs output saliency per category (names on the points), OD_c per category (95% CI of the
    mean), and an example image with its ground truth and the model's prediction."""
    from saliency_probe.report.figures import plt

    has_example = example is not None
    figure = plt.figure(figsize=(11, 7.6 if has_example else 4.0))
    grid = figure.add_gridspec(2 if has_example else 1, 3)
    scatter = figure.add_subplot(grid[0, :2])
    inner = np.array([row["inner_nss"] for row in rows])
    output = np.array([row["os"] for row in rows])
    scatter.scatter(inner, output, c="tab:blue", s=28)
    for row in rows:
        scatter.annotate(row["category"], (row["inner_nss"], row["os"]), fontsize=7, xytext=(3, 3),
                         textcoords="offset points")
    rs = summary["spearman"]
    scatter.set_xlabel("inner saliency (conv5_3 top-k mean NSS)")
    scatter.set_ylabel("output saliency OS_c")
    scatter.set_title(f"r_s = {format_number(rs['r'])} (p = {_p(rs['p'])})", fontsize=9)
    bars = figure.add_subplot(grid[0, 2])
    order = np.argsort(inner)
    names = [rows[i]["category"] for i in order]
    valid = scores.valid
    errors = []
    for name in names:
        values = scores.od[valid & (scores.category == categories.index(name))]
        errors.append(1.96 * values.std(ddof=1) / math.sqrt(values.size) if values.size > 1 else 0.0)
    bars.bar(range(len(names)), [rows[i]["od"] for i in order], yerr=errors, color="tab:orange", capsize=2)
    bars.set_xticks(range(len(names)), names, rotation=60, ha="right", fontsize=7)
    bars.set_ylabel("OD_c (mean |NSS pred - NSS GT|)")
    anova = summary["anova"]
    bars.set_title(f"ANOVA p = {_p(anova['p'])}", fontsize=9)
    if has_example:
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


@torch.no_grad()
def example_maps(trunk: nn.Module, head: nn.Module, dataset: Any, scores: RegionScores, sigma: float
                 ) -> dict[str, Any] | None:
    """Fig. 7's bottom row for the image whose regions have the largest mean OD."""
    valid = scores.valid
    if not valid.any():
        return None
    images = np.unique(scores.image[valid])
    mean_od = [scores.od[valid & (scores.image == i)].mean() for i in images]
    index = int(images[int(np.argmax(mean_od))])
    item = dataset[index]
    device = next(trunk.parameters()).device
    small = head(trunk(item["image"][None].to(device))).float().cpu()
    fixations = item["fixations"].numpy() != 0
    return {
        "image": dataset.load_image(index),
        "fixations": fixations,
        "gt": blur(fixations.astype(np.float64), sigma),
        "prediction": resize_bilinear(small, fixations.shape)[0, 0].numpy(),
        "stem": dataset.stems[index],
    }


# ------------------------------------------------------------------------------------------------------------
# the analysis
# ------------------------------------------------------------------------------------------------------------


@register_analysis("output")
def run_output(context: Any) -> dict[str, Any]:
    """Eq. 2, Eq. 3, the Fig. 7 statistics and figures for every probed saliency checkpoint."""
    from saliency_probe.probe import unit_figures
    from saliency_probe.report.figures import save_figure

    cfg = context.cfg
    options = output_options(cfg)
    models = [source for source in context.sources if is_saliency_checkpoint(source)]
    if not models:
        raise ValueError(
            "the output analysis needs a saliency checkpoint (ckpt=... or sweep=... of task=saliency); probed: "
            + ", ".join(f"{s.name} ({s.kind}, task {s.info.get('task')})" for s in context.sources)
        )
    top_k = int(cfg.top_k)
    datamodule = context.datamodule()
    dataset = dataset_of(datamodule)
    categories = list(getattr(dataset, "categories", None) or datamodule.categories)
    figures_on = bool((cfg.get("figures") or {}).get("enabled", True))

    rows: list[dict[str, Any]] = []
    regions: list[dict[str, Any]] = []
    statistics: dict[str, dict[str, Any]] = {}
    results: dict[str, OutputResult] = {}
    written: list[str] = []
    for number, source in enumerate(models):
        loaded = source.checkpoint()
        trunk, head = loaded.trunk().eval(), loaded.saliency_head()
        if head is None:
            raise ValueError(f"checkpoint {loaded.path} is a saliency checkpoint without the 1x1 head 'head.weight'")
        scratch = context.scratch_dir / f"output_{number}.npz"
        module = OutputProbeModule(trunk, head, categories, options.gt_sigma, result_path=scratch)
        trainer = context.trainer(description=f"output {number + 1}/{len(models)}: {source.name}")
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", message=".*predict returned None.*")
            trainer.predict(module, datamodule=datamodule, return_predictions=False)
        result = module.result if module.result is not None else load_output_result(scratch)
        results[source.name] = result
        model_rows = output_rows(source.name, result, categories, top_k)
        rows.extend(model_rows)
        regions.extend(region_rows(source.name, result.scores, categories, dataset.stems))
        statistics[source.name] = model_statistics(model_rows, result.scores, categories, options.alpha)
        if context.is_global_zero and figures_on:
            trunk, head = trunk.to(module.device).eval(), head.to(module.device).eval()
            example = example_maps(trunk, head, dataset, result.scores, options.gt_sigma)
            figure = fig7(model_rows, result.scores, categories, statistics[source.name], example,
                          f"{source.name}: inner vs output saliency (Fig. 7)")
            png = save_figure(figure, context.figures_dir / f"output_fig7_{safe_name(source.name)}.png")
            written.append(str(png))
            context.log_image(f"output/fig7/{source.name}", png)
        del trunk, head, module, trainer, loaded

    primary = primary_model(models, options.model)
    payload = {
        "model": primary,
        **{key: statistics[primary][key] for key in ("spearman", "anova", "tukey", "anova_os", "tukey_os")},
        "models": statistics,
        "method": {
            "inner_nss": f"mean of the top {top_k} conv5_3 unit means of Eq. 1 per category (Table 3's statistic)",
            "os": "Eq. 2: mean over the category's regions of NSS(prediction, fixations in the region)",
            "od": "Eq. 3: mean over the category's regions of |NSS(prediction) - NSS(GT)|",
            "gt": f"fixation map blurred with a Gaussian of sigma {options.gt_sigma:g} px (+-3 sigma)",
            "spearman": "scipy.stats.spearmanr(inner_nss, os) across categories",
            "anova": "scipy.stats.f_oneway across categories (>= 2 regions) on per-region od (anova_os: os)",
            "tukey": f"scipy.stats.tukey_hsd on the same groups; pairs with p < {options.alpha:g}",
            "alpha": options.alpha,
            "gt_sigma": options.gt_sigma,
            "top_k": top_k,
            "images": len(dataset),
        },
    }
    if context.is_global_zero:
        written.append(str(write_csv(context.tables_dir / CSV_NAME, rows, COLUMNS)))
        written.append(str(write_csv(context.tables_dir / REGIONS_CSV_NAME, regions, REGION_COLUMNS)))
        written.append(str(write_json(context.tables_dir / STATISTICS_NAME, payload)))
        header = (f"{len(dataset)} images; GT = fixations blurred with sigma {options.gt_sigma:g} px; inner NSS = "
                  f"top-{top_k} mean of conv5_3 units; tests at alpha = {options.alpha:g}.")
        written.append(str(write_text(context.tables_dir / MARKDOWN_NAME, output_markdown(rows, statistics, header))))
        context.log_table("output/saliency", rows, COLUMNS)
        if figures_on:
            written.extend(unit_figures.fine_tuning_figures(context))
    lines = []
    for model, summary in statistics.items():
        rs = summary["spearman"]
        lines.append(f"{model}: r_s(inner, OS) = {format_number(rs['r'])} (p {_p(rs['p'])}); ANOVA OD p = "
                     f"{_p(summary['anova']['p'])}; {len(summary['tukey'])} Tukey pair(s) differ")
    return {
        "rows": rows,
        "statistics": payload,
        "results": results,
        "files": written,
        "lines": lines,
        "summary": {"models": list(statistics), "primary": primary, "spearman": statistics[primary]["spearman"],
                    "csv": str(context.tables_dir / CSV_NAME)},
    }


run_output.applies_to = applies_to  # type: ignore[attr-defined]
