"""The saliency benchmark on human fixations (``analyses=[benchmark]``), as the MIT/Tuebingen benchmarks score.

For every model of ``benchmark.models`` and every image: NSS, AUC-Judd and shuffled AUC on the image's unique
fixated pixels; CC, KLD and SIM against the ground-truth density (the fixation map blurred with
``benchmark.gt_sigma``); the shuffled AUC's negatives are the pixels fixated in the *other* images. A data-set
value is the mean over the images (an image whose metric is undefined is left out of that mean).

Models: ``center_bias`` and ``inter_observer`` (the lower and upper bars, :mod:`saliency_probe.probe.baselines`),
classical names (``bms``, ``gbvs``, ``itti``, ``spectral_residual``), ``ckpt:<path>`` and ``maps:<folder>``
(:func:`~saliency_probe.probe.model_specs.resolve_model`). Computed maps are cached
(:mod:`saliency_probe.probe.map_cache`), so a second pass only reads them. Images are scored in
``benchmark.num_workers`` processes.

Outputs: ``tables/benchmark.csv``, ``tables/benchmark_per_image.csv``, ``tables/benchmark.md``,
``figures/benchmark_examples.png`` and the W&B tables ``benchmark/summary`` and ``benchmark/per_image``.
"""

from __future__ import annotations

import contextlib
import functools
import logging
import math
import multiprocessing
import os
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import torch

from saliency_probe.data.fixations import FixationDataset
from saliency_probe.metrics import functional as MF
from saliency_probe.probe.baselines import FixationTable, blur, inter_observer_maps
from saliency_probe.probe.map_cache import MapCache
from saliency_probe.probe.model_specs import MapModel, resolve_model
from saliency_probe.probe.registry import register_analysis
from saliency_probe.report.figures import save_figure
from saliency_probe.report.tables import format_number, markdown_table, write_csv, write_text

log = logging.getLogger(__name__)

METRICS = ("nss", "cc", "kld", "sim", "auc_judd", "auc_shuffled")
SUMMARY_COLUMNS = ["model", *METRICS, "n_images"]  # the CSV columns with every metric (the default)
PER_IMAGE_COLUMNS = ["model", "image", "n_fixations", *METRICS]
CENTER_BIAS, INTER_OBSERVER = "center_bias", "inter_observer"
BASELINES = (CENTER_BIAS, INTER_OBSERVER)
METRIC_TITLES = {"nss": "NSS", "cc": "CC", "kld": "KLD", "sim": "SIM", "auc_judd": "AUC-Judd",
                 "auc_shuffled": "sAUC"}
CSV_NAME, PER_IMAGE_NAME, MARKDOWN_NAME = "benchmark.csv", "benchmark_per_image.csv", "benchmark.md"
FIGURE_NAME = "benchmark_examples.png"


# ------------------------------------------------------------------------------------------------------------
# metrics of one map
# ------------------------------------------------------------------------------------------------------------


def shuffled_auc(saliency: torch.Tensor, fixations: torch.Tensor, negatives: torch.Tensor) -> float:
    """:func:`MF.auc_shuffled` on the pixels that are fixated or negatives only.

    The statistic compares the map's values at the fixations with its values at the negatives; every other
    pixel is irrelevant, so the call on the ``(1, k)`` row of relevant pixels is the same number, several
    times cheaper on an 800x600 map.
    """
    keep = fixations | negatives
    if not bool(fixations.any()) or not bool(negatives.any()):
        return math.nan
    values = saliency[keep][None]
    return float(MF.auc_shuffled(values, fixations[keep][None], negatives[keep][None]))


DISTRIBUTION_METRICS = ("cc", "kld", "sim")


def blurred_mask(mask: np.ndarray, sigma: float) -> np.ndarray:
    """A boolean fixation map blurred into a ground-truth density (float64)."""
    return blur(mask.astype(np.float64), sigma)


def score_map(
    saliency: np.ndarray,
    fixations: np.ndarray,
    gt: np.ndarray | Callable[[], np.ndarray] | None,
    negatives: np.ndarray | None,
    metrics: Sequence[str] = METRICS,
) -> dict[str, float]:
    """The ``metrics`` of one ``(H, W)`` map: NSS and AUC-Judd on ``fixations`` (bool), CC/KLD/SIM against
    ``gt`` (the blurred fixation map, or a function making it: only called when needed), shuffled AUC
    against ``negatives`` (bool)."""
    s = torch.from_numpy(np.ascontiguousarray(saliency))
    fix = torch.from_numpy(np.ascontiguousarray(fixations, dtype=bool))
    out: dict[str, float] = {}
    g = None
    if any(metric in DISTRIBUTION_METRICS for metric in metrics):
        g = torch.from_numpy(np.ascontiguousarray(gt() if callable(gt) else gt))
    for metric in metrics:
        if metric == "nss":
            out[metric] = float(MF.nss(s, fix))
        elif metric == "auc_judd":
            out[metric] = float(MF.auc_judd(s, fix))
        elif metric == "auc_shuffled":
            neg = torch.from_numpy(np.ascontiguousarray(negatives, dtype=bool))
            out[metric] = shuffled_auc(s, fix, neg)
        elif metric in DISTRIBUTION_METRICS:
            out[metric] = float(getattr(MF, metric)(s, g))
        else:
            raise ValueError(f"unknown metric {metric!r}; choose among {list(METRICS)}")
    return out


def check_metrics(metrics: Sequence[str] | None) -> tuple[str, ...]:
    """The requested metrics in the canonical order; unknown names fail with the valid ones."""
    if metrics is None:
        return METRICS
    requested = [str(metric) for metric in metrics]
    unknown = [metric for metric in requested if metric not in METRICS]
    if unknown or not requested:
        raise ValueError(f"benchmark.metrics {requested}: choose a non-empty subset of {list(METRICS)}")
    return tuple(metric for metric in METRICS if metric in requested)


def mean_scores(scores: Sequence[dict[str, float]], metrics: Sequence[str] = METRICS) -> dict[str, float]:
    """Metric-wise mean over the finite values (NaN when there is none)."""
    out = {}
    for metric in metrics:
        values = np.array([s[metric] for s in scores], dtype=np.float64)
        finite = values[np.isfinite(values)]
        out[metric] = float(finite.mean()) if finite.size else math.nan
    return out


# ------------------------------------------------------------------------------------------------------------
# scoring images
# ------------------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class BenchmarkSettings:
    """What the scorer needs, picklable for worker processes."""

    specs: tuple[str, ...]
    gt_sigma: float = 24.0
    image_size: int = 224
    classical: dict[str, dict[str, Any]] = field(default_factory=dict)
    cache_root: str | None = None
    metrics: tuple[str, ...] = METRICS


@dataclass
class ModelTiming:
    """Process seconds spent on one model: making (or loading) maps and computing metrics."""

    map_seconds: float = 0.0
    metric_seconds: float = 0.0
    computed: int = 0
    cached: int = 0

    def add(self, other: ModelTiming) -> None:
        self.map_seconds += other.map_seconds
        self.metric_seconds += other.metric_seconds
        self.computed += other.computed
        self.cached += other.cached


def display_name(model: MapModel) -> str:
    """The model's name in the tables; BMS says when it runs with the released program's channel order."""
    if model.kind == "classical" and model.name == "bms" and model.params.get("bgr_channel_order"):
        return "bms-bgr"
    return model.name


def model_notes(spec: str, model: MapModel | None) -> str:
    """A short note for the Markdown table (what the reference models are, BMS's colour channel order)."""
    if spec == CENTER_BIAS:
        return "leave-one-image-out fixation density of the data set"
    if spec == INTER_OBSERVER:
        return "each observer scored against the others' blurred fixations, averaged"
    if model is not None and model.kind == "classical" and model.name == "bms":
        if model.params.get("bgr_channel_order"):
            return "colour channels BGR read as RGB (the released program's order)"
        return "colour channels in the correct RGB order (bgr_channel_order=false)"
    if model is not None and model.kind in ("checkpoint", "maps"):
        return ", ".join(f"{key}={value}" for key, value in model.params.items())
    return ""


class ImageScorer:
    """Scores images of one data set with every model; one instance per process."""

    def __init__(self, dataset: FixationDataset, settings: BenchmarkSettings) -> None:
        self.dataset = dataset
        self.settings = settings
        self.table = FixationTable.from_dataset(dataset)
        self.models: dict[str, MapModel] = {}
        self.caches: dict[str, MapCache] = {}
        if INTER_OBSERVER in settings.specs and not hasattr(dataset, "observers"):
            raise ValueError(
                f"inter_observer needs per-observer fixations; {type(dataset).__name__} has none (OSIE has them, "
                "MIT1003's _fixPts maps do not): remove inter_observer from benchmark.models"
            )
        for spec in settings.specs:
            if spec in BASELINES:
                continue
            model = resolve_model(spec, settings.image_size, settings.classical)
            self.models[spec] = model
            root = settings.cache_root if model.kind != "maps" else None  # maps are already files
            self.caches[spec] = MapCache(root, display_name(model), cache_params(model))
        self.names = {spec: (display_name(self.models[spec]) if spec in self.models else spec)
                      for spec in settings.specs}
        duplicates = sorted({n for n in self.names.values() if list(self.names.values()).count(n) > 1})
        if duplicates:
            raise ValueError(f"benchmark.models names {duplicates} more than once")

    def model_map(self, spec: str, index: int, image: Callable[[], np.ndarray], timing: ModelTiming) -> np.ndarray:
        """The map of a resolved model for image ``index`` (from the cache, else computed and cached)."""
        record = self.dataset.records[index]
        cache = self.caches[spec]
        started = time.perf_counter()
        saliency = cache.get(record.stem, (record.height, record.width))
        if saliency is None:
            saliency = self.models[spec].predict(image(), record.stem)
            if saliency.shape != (record.height, record.width):
                raise ValueError(
                    f"model {self.names[spec]} returned a {saliency.shape} map for image {record.stem} of size "
                    f"{(record.height, record.width)}"
                )
            cache.put(record.stem, saliency)
            timing.computed += 1
        else:
            timing.cached += 1
        timing.map_seconds += time.perf_counter() - started
        return saliency

    def observers(self, index: int) -> list[np.ndarray]:
        return self.dataset.observers(index)  # type: ignore[attr-defined]

    def score(self, index: int) -> tuple[list[dict[str, Any]], dict[str, ModelTiming]]:
        """One row per model for image ``index`` and the time each model took on it."""
        record = self.dataset.records[index]
        size = (record.height, record.width)
        sigma = float(self.settings.gt_sigma)
        metrics = self.settings.metrics
        fixations = self.dataset.fixation_map(index) > 0
        needs_gt = any(metric in DISTRIBUTION_METRICS for metric in metrics)
        gt = blurred_mask(fixations, sigma) if needs_gt else None
        others = self.table.others(index)
        negatives = others > 0
        loaded: list[np.ndarray] = []

        def image() -> np.ndarray:
            if not loaded:
                loaded.append(self.dataset.load_image(index))
            return loaded[0]

        rows, timings = [], {}
        for spec in self.settings.specs:
            timing = ModelTiming()
            if spec == INTER_OBSERVER:
                started = time.perf_counter()
                scores = []
                pairs = list(inter_observer_maps(self.observers(index), size, sigma))
                if len(pairs) >= 2:  # with a single observer there is no "other" observer to predict from
                    for _number, prediction, own in pairs:
                        own_gt = functools.partial(blurred_mask, own, sigma)
                        scores.append(score_map(prediction, own, own_gt, negatives, metrics))
                values = mean_scores(scores, metrics) if scores else dict.fromkeys(metrics, math.nan)
                timing.metric_seconds += time.perf_counter() - started
                timing.computed += 1
            else:
                if spec == CENTER_BIAS:
                    started = time.perf_counter()
                    saliency = blur(others, sigma)
                    timing.map_seconds += time.perf_counter() - started
                    timing.computed += 1
                else:
                    saliency = self.model_map(spec, index, image, timing)
                started = time.perf_counter()
                values = score_map(saliency, fixations, gt, negatives, metrics)
                timing.metric_seconds += time.perf_counter() - started
            rows.append({"model": self.names[spec], "image": record.stem, "n_fixations": int(fixations.sum()),
                         **values})
            timings[self.names[spec]] = timing
        return rows, timings

    def example_maps(self, index: int) -> dict[str, np.ndarray]:
        """The maps shown in the example figure: the ground truth, then each model (inter_observer: the map that
        predicts the first observer from the others)."""
        record = self.dataset.records[index]
        size = (record.height, record.width)
        sigma = float(self.settings.gt_sigma)
        maps = {"ground truth": blur(self.dataset.fixation_map(index).astype(np.float64), sigma)}
        loaded: list[np.ndarray] = []

        def image() -> np.ndarray:
            if not loaded:
                loaded.append(self.dataset.load_image(index))
            return loaded[0]

        for spec in self.settings.specs:
            if spec == CENTER_BIAS:
                maps[self.names[spec]] = blur(self.table.others(index), sigma)
            elif spec == INTER_OBSERVER:
                first = next(iter(inter_observer_maps(self.observers(index), size, sigma)), None)
                label = f"{self.names[spec]}\n(observer {first[0] + 1 if first else 1} from the others)"
                maps[label] = first[1] if first is not None else np.zeros(size)
            else:
                maps[self.names[spec]] = self.model_map(spec, index, image, ModelTiming())
        return maps


def cache_params(model: MapModel) -> dict[str, Any]:
    """What identifies a model's maps: its parameters, and for checkpoints the file's size and time."""
    params = dict(model.params)
    path = params.get("path")
    if model.kind == "checkpoint" and path and os.path.isfile(path):
        stat = os.stat(path)
        params.update(file_size=stat.st_size, file_mtime_ns=stat.st_mtime_ns)
    return params


@contextlib.contextmanager
def single_threaded() -> Iterator[None]:
    """Run torch and OpenCV on one thread, then restore their settings.

    The per-map operations are small and memory-bound: extra threads gain little and, on a busy machine, spin
    against each other (measured here: 8 OSIE images took 31 s with 2 torch threads, 5.6 s with 1). Parallelism
    comes from ``num_workers`` processes instead.
    """
    torch_threads, cv2_threads = torch.get_num_threads(), cv2.getNumThreads()
    torch.set_num_threads(1)
    cv2.setNumThreads(1)
    try:
        yield
    finally:
        torch.set_num_threads(torch_threads)
        cv2.setNumThreads(cv2_threads)


_WORKER: ImageScorer | None = None


def _init_worker(dataset: FixationDataset, settings: BenchmarkSettings) -> None:
    global _WORKER
    torch.set_num_threads(1)
    cv2.setNumThreads(1)
    _WORKER = ImageScorer(dataset, settings)


def _score_chunk(indices: list[int]) -> list[tuple[list[dict[str, Any]], dict[str, ModelTiming]]]:
    assert _WORKER is not None
    return [_WORKER.score(index) for index in indices]


def worker_context() -> multiprocessing.context.BaseContext:
    """Worker processes forked from a clean server process that imported this module once ("forkserver"):
    as safe as "spawn" (no threads or locks inherited from a Hydra/W&B parent) without one import per worker;
    "spawn" where there is no fork server (Windows)."""
    if "forkserver" in multiprocessing.get_all_start_methods():
        context = multiprocessing.get_context("forkserver")
        context.set_forkserver_preload([__name__])
        return context
    return multiprocessing.get_context("spawn")


def score_images(
    dataset: FixationDataset,
    settings: BenchmarkSettings,
    indices: Sequence[int],
    num_workers: int = 0,
    chunk_size: int = 4,
    progress: Callable[[int, int], None] | None = None,
    scorer: ImageScorer | None = None,
) -> tuple[list[dict[str, Any]], dict[str, ModelTiming]]:
    """Rows (models in ``settings.specs`` order, then images in ``indices`` order) and per-model timings.

    ``num_workers`` > 1 scores chunks of images in that many worker processes (one thread each,
    :func:`worker_context`); the rows are the same as in one process. ``scorer`` (made here when not given) validates every model before any work.
    """
    scorer = scorer if scorer is not None else ImageScorer(dataset, settings)
    results: list[tuple[list[dict[str, Any]], dict[str, ModelTiming]]] = []
    if num_workers <= 1:
        with single_threaded():
            for done, index in enumerate(indices, start=1):
                results.append(scorer.score(index))
                if progress:
                    progress(done, len(indices))
    else:
        chunks = [list(indices[i : i + chunk_size]) for i in range(0, len(indices), chunk_size)]
        context = worker_context()
        with context.Pool(num_workers, initializer=_init_worker, initargs=(dataset, settings)) as pool:
            for chunk in pool.imap(_score_chunk, chunks):
                results.extend(chunk)
                if progress:
                    progress(len(results), len(indices))
    timings = {name: ModelTiming() for name in scorer.names.values()}
    by_model: dict[str, list[dict[str, Any]]] = {name: [] for name in timings}
    for image_rows, image_timings in results:
        for row in image_rows:
            by_model[row["model"]].append(row)
        for name, timing in image_timings.items():
            timings[name].add(timing)
    return [row for name in by_model for row in by_model[name]], timings


def summarise(rows: Iterable[dict[str, Any]], metrics: Sequence[str] = METRICS) -> list[dict[str, Any]]:
    """One row per model (first-appearance order): metric means over images, ``n_images`` scored (a finite
    value of the first metric) and that metric's standard error of the mean (``sem``, not in the CSV)."""
    grouped: dict[str, list[dict[str, Any]]] = {}
    for row in rows:
        grouped.setdefault(row["model"], []).append(row)
    out = []
    for model, model_rows in grouped.items():
        means = mean_scores(model_rows, metrics)
        first = np.array([r[metrics[0]] for r in model_rows], dtype=np.float64)
        first = first[np.isfinite(first)]
        sem = float(first.std(ddof=1) / math.sqrt(first.size)) if first.size > 1 else math.nan
        out.append({"model": model, **means, "n_images": int(first.size), "sem": sem})
    return out


def summary_columns(metrics: Sequence[str] = METRICS) -> list[str]:
    return ["model", *metrics, "n_images"]


def per_image_columns(metrics: Sequence[str] = METRICS) -> list[str]:
    return ["model", "image", "n_fixations", *metrics]


# ------------------------------------------------------------------------------------------------------------
# report
# ------------------------------------------------------------------------------------------------------------


def benchmark_markdown(
    summary: Sequence[dict[str, Any]],
    timings: dict[str, ModelTiming],
    notes: dict[str, str],
    data_line: str,
    gt_sigma: float,
    metrics: Sequence[str] = METRICS,
) -> str:
    """The summary as a Markdown table with the time per model and the notes that say what each row is."""
    header = ["model", *(METRIC_TITLES[m] for m in metrics), "images", "map s/img", "metric s/img", "notes"]
    body = []
    for row in summary:
        timing = timings.get(row["model"], ModelTiming())
        images = max(1, timing.computed + timing.cached)
        cells = [format_number(row[m], 3) for m in metrics]
        if isinstance(row.get("sem"), float) and math.isfinite(row["sem"]):
            cells[0] += f" ± {row['sem']:.3f}"
        body.append([row["model"], *cells, str(row["n_images"]), f"{timing.map_seconds / images:.3f}",
                     f"{timing.metric_seconds / images:.3f}", notes.get(row["model"], "")])
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


def _normalised(values: np.ndarray) -> np.ndarray:
    low, high = float(np.min(values)), float(np.max(values))
    return np.zeros_like(values, dtype=np.float64) if high <= low else (values - low) / (high - low)


def example_figure(images: Sequence[np.ndarray], fixations: Sequence[np.ndarray],
                   maps: Sequence[dict[str, np.ndarray]], stems: Sequence[str]) -> Any:
    """Rows = example images; columns = the image with its fixations, the ground truth and each model's map
    (min-max normalised, grey)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    names = list(maps[0]) if maps else []
    columns = 1 + len(names)
    figure, axes = plt.subplots(len(images), columns, figsize=(2.2 * columns, 1.8 * max(1, len(images))),
                                squeeze=False)
    for row, (image, fixated, image_maps, stem) in enumerate(zip(images, fixations, maps, stems, strict=True)):
        axes[row, 0].imshow(image)
        ys, xs = np.nonzero(fixated)
        axes[row, 0].scatter(xs, ys, s=3, c="red", edgecolors="white", linewidths=0.2)
        axes[row, 0].set_ylabel(stem, fontsize=7)
        for column, name in enumerate(names, start=1):
            axes[row, column].imshow(_normalised(image_maps[name]), cmap="gray", vmin=0, vmax=1)
        for column, title in enumerate(["image + fixations", *names]):
            axes[row, column].set_xticks([])
            axes[row, column].set_yticks([])
            if row == 0:
                axes[row, column].set_title(title, fontsize=7)
    figure.tight_layout()
    return figure


def settings_from_config(cfg: Any, run_dir: Path) -> tuple[BenchmarkSettings, dict[str, Any]]:
    """``BenchmarkSettings`` and the run options (limit, num_workers, figure_images) from ``cfg.benchmark``."""
    from omegaconf import OmegaConf

    bench = cfg.get("benchmark")
    if bench is None:
        raise ValueError("analyses=[benchmark] needs the `benchmark` config group (conf/benchmark/default.yaml)")
    specs = [str(spec).strip() for spec in (bench.get("models") or [])]
    if not specs:
        raise ValueError("benchmark.models is empty: name at least one model, e.g. [center_bias, bms]")
    sigma = float(bench.get("gt_sigma", 24))
    if not sigma > 0:
        raise ValueError(f"benchmark.gt_sigma must be > 0 pixels, got {sigma}")
    cache = bench.get("cache")
    if cache is False or (isinstance(cache, str) and cache.strip().lower() in ("none", "off", "false")):
        cache_root = None
    else:
        cache_root = str(Path(str(cache)).expanduser().absolute()) if cache else str(run_dir / "map_cache")
    classical = bench.get("classical") or {}
    classical = OmegaConf.to_container(classical, resolve=True) if OmegaConf.is_config(classical) else dict(classical)
    metrics = bench.get("metrics")
    data_cfg = cfg.get("data") or {}
    settings = BenchmarkSettings(
        specs=tuple(specs), gt_sigma=sigma, image_size=int(data_cfg.get("image_size", 224)),
        classical={str(k): dict(v or {}) for k, v in classical.items()}, cache_root=cache_root,
        metrics=check_metrics(list(metrics) if metrics is not None else None),
    )
    limit = bench.get("limit")
    options = {
        "limit": None if limit is None else int(limit),
        "num_workers": int(bench.get("num_workers", 0) or 0),
        "figure_images": int(bench.get("figure_images", 4) or 0),
    }
    if options["limit"] is not None and options["limit"] < 1:
        raise ValueError(f"benchmark.limit must be >= 1 or null, got {limit}")
    return settings, options


def predict_dataset(datamodule: Any) -> FixationDataset:
    """The fixation data set behind a data module (``predict_dataset``, ``dataset`` or the predict loader's)."""
    dataset = getattr(datamodule, "predict_dataset", None)
    if dataset is None:
        dataset = getattr(datamodule, "dataset", None)
    if dataset is None:
        dataset = datamodule.predict_dataloader().dataset
    if not isinstance(dataset, FixationDataset):
        raise TypeError(
            f"the benchmark needs a fixation data set (data=osie, data=mit1003 or an OSIE-SR set); "
            f"{type(datamodule).__name__} gives {type(dataset).__name__}"
        )
    return dataset


def ordering_line(summary: Sequence[dict[str, Any]], metric: str = "nss") -> str:
    """Models ordered by ``metric``, worst first (the first thing a reader checks)."""
    finite = [row for row in summary if math.isfinite(row[metric])]
    ranked = sorted(finite, key=lambda row: row[metric], reverse=metric == "kld")
    return f"{METRIC_TITLES[metric]} order: " + " < ".join(f"{row['model']} {row[metric]:.3f}" for row in ranked)


@register_analysis("benchmark")
def run_benchmark(context: Any) -> dict[str, Any]:
    """Score ``benchmark.models`` on the data set of ``data``; write tables, figure and W&B tables."""
    settings, options = settings_from_config(context.cfg, context.run_dir)
    datamodule = context.datamodule()
    dataset = predict_dataset(datamodule)
    count = len(dataset) if options["limit"] is None else min(options["limit"], len(dataset))
    if count == 0:
        raise ValueError("the benchmark's data set has no image with fixations")
    indices = list(range(count))
    step = max(1, count // 10)

    def progress(done: int, total: int) -> None:
        if done == total or done % step == 0:
            log.info("benchmark: %d/%d images", done, total)

    scorer = ImageScorer(dataset, settings)  # resolves (and so validates) every model before any work
    started = time.perf_counter()
    rows, timings = score_images(dataset, settings, indices, options["num_workers"], progress=progress, scorer=scorer)
    wall = time.perf_counter() - started
    metrics = settings.metrics
    summary = summarise(rows, metrics)
    result: dict[str, Any] = {"lines": [], "summary": {}}
    if not context.is_global_zero:
        return result
    notes = {scorer.names[spec]: model_notes(spec, scorer.models.get(spec)) for spec in settings.specs}
    root = getattr(datamodule, "data_root", None) or getattr(datamodule, "osie_root", None) or ""
    data_line = (f"Data: {type(dataset).__name__} `{root}`, {count} images; wall time {wall:.1f} s with "
                 f"{max(1, options['num_workers'])} process(es).")
    written = [
        write_csv(context.tables_dir / CSV_NAME, summary, summary_columns(metrics)),
        write_csv(context.tables_dir / PER_IMAGE_NAME, rows, per_image_columns(metrics)),
        write_text(context.tables_dir / MARKDOWN_NAME,
                   benchmark_markdown(summary, timings, notes, data_line, settings.gt_sigma, metrics)),
    ]
    context.log_table("benchmark/summary", summary, summary_columns(metrics))
    context.log_table("benchmark/per_image", rows, per_image_columns(metrics))
    if options["figure_images"] > 0:
        shown = indices[: options["figure_images"]]
        figure = example_figure(
            [dataset.load_image(i) for i in shown], [dataset.fixation_map(i) > 0 for i in shown],
            [scorer.example_maps(i) for i in shown], [dataset.records[i].stem for i in shown],
        )
        png = save_figure(figure, context.figures_dir / FIGURE_NAME)
        written.append(png)
        context.log_image("benchmark/examples", png)
    lines = [
        f"{row['model']:<18}" + "  ".join(f"{METRIC_TITLES[m]} {format_number(row[m], 3)}" for m in metrics)
        + f"  ({row['n_images']} images)"
        for row in summary
    ]
    lines.append(ordering_line(summary, "nss" if "nss" in metrics else metrics[0]))
    result["lines"] = lines
    result["summary"] = {
        "images": count,
        "gt_sigma": settings.gt_sigma,
        "metrics": list(metrics),
        "wall_seconds": round(wall, 2),
        "num_workers": options["num_workers"],
        "cache": settings.cache_root,
        "models": {row["model"]: {m: row[m] for m in (*metrics, "n_images")} for row in summary},
        "timing": {name: vars(timing) for name, timing in timings.items()},
        "outputs": [str(path) for path in written],
    }
    summary_of = getattr(datamodule, "summary", None)
    if callable(summary_of):
        result["summary"]["data"] = summary_of()
    return result
