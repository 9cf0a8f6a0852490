"""The output-level analysis (the paper's Section 6: Eq. 2, Eq. 3 and Fig. 7) on saliency checkpoints.

For every probed saliency checkpoint and every OSIE-SR region with fixations:

- ``os``  = NSS(model prediction, fixations inside the region)   (the summand of Eq. 2);
- ``gt``  = NSS(ground-truth map, fixations inside the region), the ground truth being the fixation map blurred
  with a Gaussian of ``output.gt_sigma`` pixels (default 24, about one degree for OSIE's 800x600 images);
- ``od``  = ``|os - gt|``                                          (the summand of Eq. 3).

Per category: ``OS_c`` and ``OD_c`` are the means over its regions; the inner saliency is the top-``top_k``
mean NSS of the head layer's units (VGG-16: conv5_3; the statistic of Table 3), recomputed in the same forward
pass (the head reads that layer), so ``analyses=[output]`` works alone and equals the inner analysis's value
when both run. A ``custom`` model with ``backbone.output`` is scored on its own output, beside its last layer.
Statistics (per model; the primary model's also at the top level of ``statistics.json``;
:mod:`saliency_probe.probe.stats`): Spearman r_s between inner saliency and ``OS_c`` across categories; one-way
ANOVA (``scipy.stats.f_oneway``) and Tukey HSD (``scipy.stats.tukey_hsd``) across categories on the per-region
``od`` values (Fig. 7 right) and on the per-region ``os`` values; the two-factor ANOVA the paper describes
(``anova_two_factor``: category x measurement on the per-region ``os`` and ``gt``, statsmodels; its interaction is
the test of the paper's p = 9e-9, docs/protocol.md). The Markdown table and Fig. 7 are drawn by
:mod:`saliency_probe.report.output`.

Outputs: ``tables/output_saliency.csv`` (``model, category, inner_nss, os, od, n_regions``),
``tables/output_regions.csv`` (every region's values), ``tables/output_saliency.md``, ``tables/statistics.json``,
``figures/output_fig7_<model>.png`` and, with the inner analysis, the unit figures of
:mod:`saliency_probe.probe.unit_figures` (Figs. 5 and 6).
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from omegaconf import DictConfig
from torch import Tensor, nn
from torch.utils.data import Dataset

from saliency_probe.io_utils import safe_name, write_json
from saliency_probe.maps import blur
from saliency_probe.metrics import RegionNSS
from saliency_probe.metrics import functional as MF
from saliency_probe.metrics.resize import accumulation_dtype, resize_bilinear
from saliency_probe.models.backbone import OUTPUT_KEY, Trunk
from saliency_probe.probe import unit_figures
from saliency_probe.probe.activations import LayerActivations
from saliency_probe.probe.context import AnalysisResult, ProbeContext
from saliency_probe.probe.options import FiguresOptions, OutputOptions
from saliency_probe.probe.passes import PassResult, ProbePass, RecordCollector
from saliency_probe.probe.regions import pad_regions
from saliency_probe.probe.registry import Analysis, register_analysis
from saliency_probe.probe.sources import TrunkSource
from saliency_probe.probe.stats import model_statistics
from saliency_probe.report import files
from saliency_probe.report.figures import save_figure
from saliency_probe.report.output import fig7, output_lines, output_markdown
from saliency_probe.report.tables import write_csv, write_text

log = logging.getLogger(__name__)

COLUMNS = ["model", "category", "inner_nss", "os", "od", "n_regions"]
REGION_COLUMNS = ["model", "image", "region", "category", "os", "gt_nss", "od"]
INNER_LAYER = "conv5_3"


def is_saliency_checkpoint(source: TrunkSource) -> bool:
    """A probed model with an output map: a checkpoint of the saliency task, or the weights of a ``custom``
    model with ``backbone.output``."""
    if source.kind == "checkpoint":
        return str(source.info.get("task")) == "saliency"
    return bool(getattr(source, "has_output_map", False))


# ------------------------------------------------------------------------------------------------------------
# per-region values (pure functions)
# ------------------------------------------------------------------------------------------------------------


def ground_truth_maps(fixations: Tensor, sigma: float) -> Tensor:
    """``(B, 1, H, W)`` ground-truth maps on the fixations' device (float64; float32 on MPS): each binary
    fixation map blurred with ``sigma`` pixels by :func:`saliency_probe.maps.blur` (separable Gaussian, +-3 sigma,
    reflected border: the values of :func:`saliency_probe.maps.fixation_density`)."""
    maps = [blur((fixation != 0).cpu().numpy().astype(np.float64), sigma) for fixation in fixations]
    device = fixations.device
    return torch.from_numpy(np.stack(maps)).unsqueeze(1).to(device=device, dtype=accumulation_dtype(device))


def region_values(prediction: Tensor, ground_truth: Tensor, fixations: Tensor, masks: Tensor) -> tuple[Tensor, Tensor]:
    """``(os, gt)``, each ``(B, R)`` float64: NSS of the prediction and of the ground truth over the fixations
    inside each region (Eq. 1 applied to the model output). NaN where a region holds no fixation.

    Parameters
    ----------
    prediction : Tensor
        ``(B, 1, h, w)`` model outputs (resized to the fixation size exactly, as every NSS here).
    ground_truth : Tensor
        ``(B, 1, H, W)`` ground-truth maps.
    fixations : Tensor
        ``(B, H, W)`` binary fixation maps.
    masks : Tensor
        ``(B, R, H, W)`` region masks (all-zero masks may pad a batch).
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
        """The ``(N, 5)`` float64 record array ``[image, region, category, os, gt]``."""
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


def od_by_category(scores: RegionScores, categories: Sequence[str]) -> dict[str, np.ndarray]:
    """Category name -> the per-region OD of its regions with fixations (Fig. 7's error bars)."""
    valid = scores.valid
    return {name: scores.od[valid & (scores.category == k)] for k, name in enumerate(categories)}


def primary_model(models: Sequence[TrunkSource], requested: str | None) -> str:
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
    """One model's pass: per-region values and the head layer's ``(C, K)`` unit means (inner saliency)."""

    scores: RegionScores
    unit_means: np.ndarray

    @classmethod
    def from_pass(cls, result: PassResult) -> OutputResult:
        """From :meth:`OutputProbeModule.compute_result`'s arrays (``regions``, ``unit_means``)."""
        return cls(RegionScores.from_array(result["regions"]), np.asarray(result["unit_means"]))


class OutputProbeModule(ProbePass):
    """One forward pass per image: the head layer (VGG-16: conv5_3; inner saliency, :class:`RegionNSS`) and the
    model's prediction (per-region ``os`` and ``gt``). Batches are
    :func:`~saliency_probe.data.osie_sr.collate_regions` dicts.

    ``head`` is the 1x1 head on ``inner_layer`` (default: the trunk's head layer); ``None`` scores the model's
    own output (``backbone.output`` of a ``custom`` trunk).
    The result (the same on every rank) holds ``regions``, the ``(N, 5)`` float64 records ``[image, region,
    category, os, gt]`` of every region (``image`` = data-set index) in batch order, and ``unit_means``, the
    inner layer's ``(C, K)`` unit means; :meth:`OutputResult.from_pass` sorts the records by image and region.
    """

    def __init__(self, trunk: nn.Module, head: nn.Module | None, categories: Sequence[str], gt_sigma: float,
                 inner_layer: str | None = None) -> None:
        super().__init__()
        table = trunk.layer_table if isinstance(trunk, Trunk) else None
        self.inner_layer = inner_layer or (table.head if table is not None else INNER_LAYER)
        own_output = head is None
        by_node = own_output and isinstance(trunk, Trunk) and trunk.architecture.output_node() is not None
        self.activations = LayerActivations(trunk, [self.inner_layer], output=by_node)
        self.trunk = trunk if own_output and not by_node else None  # the output is a method of the model
        self.head = head
        self.categories = list(categories)
        self.index = {name: k for k, name in enumerate(self.categories)}
        self.gt_sigma = float(gt_sigma)
        self.inner = RegionNSS(self.activations.channels(self.inner_layer), self.categories)
        self.regions = RecordCollector(5)
        self.eval()

    def predict_step(self, batch: dict[str, Any], batch_idx: int) -> None:
        outputs = self.activations(batch["image"])
        features = outputs[self.inner_layer]
        if self.head is not None:
            prediction = self.head(features)
        elif self.trunk is None:
            prediction = outputs[OUTPUT_KEY]
            prediction = prediction if prediction.dim() == 4 else prediction.unsqueeze(1)
        else:
            prediction = self.trunk.saliency(batch["image"])
        fixations, masks, names = batch["fixations"], batch["region_masks"], batch["region_categories"]
        padded = pad_regions(masks, tuple(fixations.shape[-2:]))
        self.inner.update(features, fixations, padded, names)
        os_values, gt_values = region_values(prediction, ground_truth_maps(fixations, self.gt_sigma), fixations,
                                             padded)
        os_values, gt_values, images = os_values.cpu(), gt_values.cpu(), batch["index"].cpu()
        records = []
        for b, image_names in enumerate(names):
            if not image_names:
                continue
            count = len(image_names)
            records.append(torch.stack([
                torch.full((count,), float(images[b]), dtype=torch.float64),
                torch.arange(count, dtype=torch.float64),
                torch.tensor([float(self.index[name]) for name in image_names], dtype=torch.float64),
                os_values[b, :count].double(),
                gt_values[b, :count].double(),
            ], dim=1))
        if records:
            self.regions.update(torch.cat(records))
        return None

    def compute_result(self) -> PassResult:
        return {"regions": self.regions.compute().cpu().numpy(), "unit_means": self.inner.compute().cpu().numpy()}


# ------------------------------------------------------------------------------------------------------------
# tables and the Fig. 7 example
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


def region_rows(model: str, scores: RegionScores, categories: Sequence[str], stems: Sequence[str]
                ) -> list[dict[str, Any]]:
    """Every region's values (``output_regions.csv``), regions without fixations included (NaN)."""
    return [
        {"model": model, "image": stems[int(i)], "region": int(r), "category": categories[int(c)],
         "os": float(o), "gt_nss": float(g), "od": float(abs(o - g))}
        for i, r, c, o, g in zip(scores.image, scores.region, scores.category, scores.os, scores.gt, strict=True)
    ]


@torch.no_grad()
def example_maps(trunk: nn.Module, head: nn.Module | None, dataset: Dataset, scores: RegionScores, sigma: float
                 ) -> dict[str, Any] | None:
    """Fig. 7's bottom row for the image whose regions have the largest mean OD (None without fixated regions):
    ``{image, fixations, gt, prediction, stem}``."""
    valid = scores.valid
    if not valid.any():
        return None
    images = np.unique(scores.image[valid])
    mean_od = [scores.od[valid & (scores.image == i)].mean() for i in images]
    index = int(images[int(np.argmax(mean_od))])
    item = dataset[index]
    device = next(trunk.parameters()).device
    images = item["image"][None].to(device)
    small = (head(trunk(images)) if head is not None else trunk.saliency(images)).float().cpu()
    fixations = item["fixations"].numpy() != 0
    return {
        "image": dataset.load_image(index),
        "fixations": fixations,
        "gt": blur(fixations.astype(np.float64), sigma),
        "prediction": resize_bilinear(small, fixations.shape)[0, 0].numpy(),
        "stem": dataset.stems[index],
    }


def statistics_payload(primary: str, statistics: dict[str, dict[str, Any]], options: OutputOptions, top_k: int,
                       images: int, layer: str = INNER_LAYER) -> dict[str, Any]:
    """``statistics.json``: the primary model's tests at the top level, every model's under ``models``, and how
    each number was computed."""
    return {
        "model": primary,
        **{key: statistics[primary][key]
           for key in ("spearman", "anova", "tukey", "anova_os", "tukey_os", "anova_two_factor")},
        "models": statistics,
        "method": {
            "inner_nss": f"mean of the top {top_k} {layer} unit means of Eq. 1 per category (Table 3's statistic)",
            "os": "Eq. 2: mean over the category's regions of NSS(prediction, fixations in the region)",
            "od": "Eq. 3: mean over the category's regions of |NSS(prediction) - NSS(GT)|",
            "gt": f"fixation map blurred with a Gaussian of sigma {options.gt_sigma:g} px (+-3 sigma)",
            "spearman": "scipy.stats.spearmanr(inner_nss, os) across categories",
            "anova": "one-way ANOVA, scipy.stats.f_oneway across categories (>= 2 regions) on per-region od "
                     "(anova_os: os)",
            "tukey": f"scipy.stats.tukey_hsd on the same groups; pairs with p < {options.alpha:g}",
            "anova_two_factor": "two-factor ANOVA, statsmodels ols('nss ~ C(category) * C(measurement)') + "
                                "anova_lm(typ=2) on the per-region NSS of the prediction (measurement 'output') "
                                "and of the ground truth ('ground_truth'), the same regions and categories; the "
                                "category:measurement interaction is the paper's test (Section 6, p = 9e-9)",
            "alpha": options.alpha,
            "gt_sigma": options.gt_sigma,
            "top_k": top_k,
            "images": images,
        },
    }


# ------------------------------------------------------------------------------------------------------------
# the analysis
# ------------------------------------------------------------------------------------------------------------


@register_analysis
class OutputAnalysis(Analysis):
    """Eq. 2, Eq. 3, the Fig. 7 statistics and figures for every probed saliency checkpoint."""

    name = "output"

    def applies_to(self, cfg: DictConfig, sources: Sequence[TrunkSource]) -> bool:
        """``analyses: auto`` runs the output analysis when a saliency checkpoint is probed."""
        return any(is_saliency_checkpoint(source) for source in sources)

    def run(self, context: ProbeContext) -> AnalysisResult:
        options = context.options("output", OutputOptions)
        figures_on = context.options("figures", FiguresOptions).enabled
        models = [source for source in context.sources if is_saliency_checkpoint(source)]
        if not models:
            raise ValueError(
                "the output analysis needs a saliency checkpoint (ckpt=... or sweep=... of task=saliency); probed: "
                + ", ".join(f"{s.name} ({s.kind}, task {s.info.get('task')})" for s in context.sources)
            )
        top_k = int(context.cfg.top_k)
        datamodule = context.datamodule()
        dataset = context.dataset(datamodule)
        categories = list(getattr(dataset, "categories", None) or datamodule.categories)

        rows: list[dict[str, Any]] = []
        regions: list[dict[str, Any]] = []
        statistics: dict[str, dict[str, Any]] = {}
        results: dict[str, OutputResult] = {}
        written: list[str] = []
        layer = context.head_layer
        for number, source in enumerate(models):
            loaded = source.checkpoint()
            trunk = loaded.trunk().eval() if loaded is not None else source.trunk()
            head = loaded.saliency_head() if loaded is not None else None
            if head is None and not trunk.has_output:
                raise ValueError(f"checkpoint {source.path} is a saliency checkpoint without the 1x1 head 'head.weight'")
            module = OutputProbeModule(trunk, head, categories, options.gt_sigma, layer)
            description = f"output {number + 1}/{len(models)}: {source.name}"
            result = OutputResult.from_pass(context.predict(module, description, datamodule=datamodule))
            results[source.name] = result
            scores = result.scores
            model_rows = output_rows(source.name, result, categories, top_k)
            rows.extend(model_rows)
            regions.extend(region_rows(source.name, scores, categories, dataset.stems))
            statistics[source.name] = model_statistics(
                [row["inner_nss"] for row in model_rows], [row["os"] for row in model_rows], scores.os, scores.gt,
                scores.category, categories, options.alpha,
            )
            if context.is_global_zero and figures_on:
                trunk = trunk.to(module.device).eval()
                head = head.to(module.device).eval() if head is not None else None
                with context.forward_precision():
                    example = example_maps(trunk, head, dataset, scores, options.gt_sigma)
                figure = fig7(model_rows, od_by_category(scores, categories), statistics[source.name], example,
                              f"{source.name}: inner vs output saliency (Fig. 7)", layer)
                png = save_figure(figure, context.figures_dir / files.output_fig7_png(safe_name(source.name)))
                written.append(str(png))
                context.log_image(f"output/fig7/{source.name}", png)
            del trunk, head, module, loaded

        primary = primary_model(models, options.model)
        payload = statistics_payload(primary, statistics, options, top_k, len(dataset), layer)
        tables = context.tables_dir
        if context.is_global_zero:
            written.append(str(write_csv(tables / files.OUTPUT_CSV, rows, COLUMNS)))
            written.append(str(write_csv(tables / files.OUTPUT_REGIONS_CSV, regions, REGION_COLUMNS)))
            written.append(str(write_json(tables / files.OUTPUT_STATISTICS, payload)))
            header = (f"{len(dataset)} images; GT = fixations blurred with sigma {options.gt_sigma:g} px; inner NSS "
                      f"= top-{top_k} mean of {layer} units; tests at alpha = {options.alpha:g}.")
            written.append(str(write_text(tables / files.OUTPUT_MD, output_markdown(rows, statistics, header, layer))))
            context.log_table("output/saliency", rows, COLUMNS)
            if figures_on:
                with context.forward_precision():
                    written.extend(unit_figures.fine_tuning_figures(context))
        return AnalysisResult(
            summary={"models": list(statistics), "primary": primary, "spearman": statistics[primary]["spearman"],
                     "csv": str(tables / files.OUTPUT_CSV)},
            lines=output_lines(statistics),
            files=written,
            data={"rows": rows, "statistics": payload, "results": results},
        )
