"""The benchmark's scorer: every model's map of an image against its fixations, in one or several processes.

:func:`score_map` gives the metrics of one map (NSS, AUC-Judd and shuffled AUC on the unique fixated pixels;
CC, KLD and SIM against the blurred fixation map); :class:`ImageScorer` makes every model's map of an image
(``center_bias`` and ``inter_observer`` from :mod:`saliency_probe.probe.baselines`, other models through
:func:`~saliency_probe.probe.model_specs.resolve_model` and the :mod:`~saliency_probe.probe.map_cache`) and
scores it; :func:`score_images` runs it over images in this process or a pool of worker processes, and
:func:`summarise` averages the rows per model. docs/benchmark.md gives the conventions.
"""

from __future__ import annotations

import contextlib
import functools
import math
import multiprocessing
import os
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any

import cv2
import numpy as np
import torch

from saliency_probe.data.fixations import FixationDataset
from saliency_probe.maps import blur
from saliency_probe.metrics import functional as MF
from saliency_probe.probe.baselines import FixationTable, inter_observer_maps
from saliency_probe.probe.map_cache import MapCache
from saliency_probe.probe.model_specs import MapModel, resolve_model

METRICS = ("nss", "cc", "kld", "sim", "auc_judd", "auc_shuffled")
#: Metrics scored against the ground-truth density (the others against the fixated pixels).
DISTRIBUTION_METRICS = ("cc", "kld", "sim")
SUMMARY_COLUMNS = ["model", *METRICS, "n_images"]  # the CSV columns with every metric (the default)
PER_IMAGE_COLUMNS = ["model", "image", "n_fixations", *METRICS]
CENTER_BIAS, INTER_OBSERVER = "center_bias", "inter_observer"
BASELINES = (CENTER_BIAS, INTER_OBSERVER)
#: One row of the per-image table: model, image, n_fixations and a value per metric.
Row = dict[str, Any]


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
    #: The ``backbone`` config (plain), for ``model:<name>`` specs.
    backbone: dict[str, Any] | None = None
    #: ``probe_precision`` of the deep models' forwards (``ckpt:``, ``model:``): fp32 | bf16.
    precision: str = "fp32"


@dataclass
class ModelTiming:
    """Process seconds spent on one model: making (or loading) maps and computing metrics."""

    map_seconds: float = 0.0
    metric_seconds: float = 0.0
    computed: int = 0
    cached: int = 0

    def add(self, other: ModelTiming) -> None:
        """Add ``other``'s seconds and counts to these."""
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
    if model is not None and model.kind in ("checkpoint", "maps", "model"):
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
            model = resolve_model(spec, settings.image_size, settings.classical, settings.backbone,
                                  settings.precision)
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
        """Per-observer ``[x, y]`` fixated pixels of image ``index`` (data sets with observers only)."""
        return self.dataset.observers(index)  # type: ignore[attr-defined]

    def score(self, index: int) -> tuple[list[Row], dict[str, ModelTiming]]:
        """One row per model for image ``index`` and the time each model took on it."""
        record = self.dataset.records[index]
        size = (record.height, record.width)
        sigma = float(self.settings.gt_sigma)
        metrics = self.settings.metrics
        fixations = self.dataset.fixation_map(index) > 0
        needs_gt = any(metric in DISTRIBUTION_METRICS for metric in metrics)
        gt = blur(fixations, sigma) if needs_gt else None
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
                        own_gt = functools.partial(blur, own, sigma)
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
        maps = {"ground truth": blur(self.dataset.fixation_map(index), sigma)}
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
    if model.kind in ("checkpoint", "model") and path and os.path.isfile(path):
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
    """Pool initializer: one thread, one :class:`ImageScorer` per worker process."""
    global _WORKER
    torch.set_num_threads(1)
    cv2.setNumThreads(1)
    _WORKER = ImageScorer(dataset, settings)


def _score_chunk(indices: list[int]) -> list[tuple[list[Row], dict[str, ModelTiming]]]:
    """Score a chunk of images in a worker process."""
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
) -> tuple[list[Row], dict[str, ModelTiming]]:
    """Rows (models in ``settings.specs`` order, then images in ``indices`` order) and per-model timings.

    ``num_workers`` > 1 scores chunks of images in that many worker processes (one thread each,
    :func:`worker_context`); the rows are the same as in one process. ``scorer`` (made here when not given)
    validates every model before any work.
    """
    scorer = scorer if scorer is not None else ImageScorer(dataset, settings)
    results: list[tuple[list[Row], dict[str, ModelTiming]]] = []
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
    by_model: dict[str, list[Row]] = {name: [] for name in timings}
    for image_rows, image_timings in results:
        for row in image_rows:
            by_model[row["model"]].append(row)
        for name, timing in image_timings.items():
            timings[name].add(timing)
    return [row for name in by_model for row in by_model[name]], timings


def summarise(rows: Iterable[Row], metrics: Sequence[str] = METRICS) -> list[Row]:
    """One row per model (first-appearance order): metric means over images, ``n_images`` scored (a finite
    value of the first metric) and that metric's standard error of the mean (``sem``, not in the CSV)."""
    grouped: dict[str, list[Row]] = {}
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
    """Columns of ``benchmark.csv`` for ``metrics``."""
    return ["model", *metrics, "n_images"]


def per_image_columns(metrics: Sequence[str] = METRICS) -> list[str]:
    """Columns of ``benchmark_per_image.csv`` for ``metrics``."""
    return ["model", "image", "n_fixations", *metrics]
