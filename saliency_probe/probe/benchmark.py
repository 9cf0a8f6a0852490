"""The saliency benchmark on human fixations (``analyses=[benchmark]``), as the MIT/Tuebingen benchmarks score.

For every model of ``benchmark.models`` and every image: NSS, AUC-Judd and shuffled AUC on the image's unique
fixated pixels; CC, KLD and SIM against the ground-truth density (the fixation map blurred with
``benchmark.gt_sigma``); the shuffled AUC's negatives are the pixels fixated in the *other* images. A data-set
value is the mean over the images (an image whose metric is undefined is left out of that mean).

Models: ``center_bias`` and ``inter_observer`` (the lower and upper bars, :mod:`saliency_probe.probe.baselines`),
classical names (``bms``, ``gbvs``, ``itti``, ``spectral_residual``), ``ckpt:<path>`` and ``maps:<folder>``
(:func:`~saliency_probe.probe.model_specs.resolve_model`). Computed maps are cached
(:mod:`saliency_probe.probe.map_cache`), so a second pass only reads them. Images are scored in
``benchmark.num_workers`` processes. The scoring is :mod:`saliency_probe.probe.scoring`, the rendering
:mod:`saliency_probe.report.benchmark`; this module reads the options, runs them and writes the outputs.

Outputs: ``tables/benchmark.csv``, ``tables/benchmark_per_image.csv``, ``tables/benchmark.md``,
``figures/benchmark_examples.png`` and the W&B tables ``benchmark/summary`` and ``benchmark/per_image``.
"""

from __future__ import annotations

import dataclasses
import logging
import time
from pathlib import Path
from typing import Any

import pytorch_lightning as pl

from saliency_probe.data.fixations import FixationDataset
from saliency_probe.io_utils import write_text
from saliency_probe.probe.context import AnalysisResult, ProbeContext
from saliency_probe.probe.options import BenchmarkOptions
from saliency_probe.probe.registry import Analysis, register_analysis
from saliency_probe.probe.scoring import (
    BenchmarkSettings,
    ImageScorer,
    check_metrics,
    model_notes,
    per_image_columns,
    score_images,
    summarise,
    summary_columns,
)
from saliency_probe.report import files
from saliency_probe.report.benchmark import benchmark_markdown, example_figure, summary_lines
from saliency_probe.report.figures import save_figure
from saliency_probe.report.tables import write_csv

log = logging.getLogger(__name__)

#: ``benchmark.cache`` values that turn the map cache off.
NO_CACHE = ("none", "off", "false")


def cache_root(cache: Any, run_dir: Path) -> str | None:
    """The map-cache folder of ``benchmark.cache``: null (or empty) -> ``<run_dir>/map_cache``; false, "none",
    "off" -> no cache (None); else that folder, absolute."""
    if cache is False or (isinstance(cache, str) and cache.strip().lower() in NO_CACHE):
        return None
    return str(Path(str(cache)).expanduser().absolute()) if cache else str(run_dir / "map_cache")


def benchmark_settings(options: BenchmarkOptions, run_dir: Path, image_size: int = 224,
                       backbone: dict[str, Any] | None = None, precision: str = "fp32") -> BenchmarkSettings:
    """The scorer's picklable settings from the typed options (``image_size``: of checkpoints' inputs;
    ``backbone``: the plain ``backbone`` config, for ``model:<name>``; ``precision``: ``probe_precision``)."""
    return BenchmarkSettings(
        specs=tuple(options.models),
        gt_sigma=float(options.gt_sigma),
        image_size=int(image_size),
        classical={name: dict(params) for name, params in options.classical.items()},
        cache_root=cache_root(options.cache, run_dir),
        metrics=check_metrics(options.metrics),
        backbone=backbone,
        precision=precision,
    )


def fixation_dataset(context: ProbeContext, datamodule: pl.LightningDataModule) -> FixationDataset:
    """The fixation data set behind ``datamodule``; any other data set fails with what the benchmark needs."""
    dataset = context.dataset(datamodule)
    if not isinstance(dataset, FixationDataset):
        raise TypeError(
            f"the benchmark needs a fixation data set (data=osie, data=mit1003 or an OSIE-SR set); "
            f"{type(datamodule).__name__} gives {type(dataset).__name__}"
        )
    return dataset


def data_line(dataset: FixationDataset, datamodule: pl.LightningDataModule, count: int, wall: float,
              num_workers: int) -> str:
    """The sentence above the Markdown table: data set, folder, images, wall time and processes."""
    root = getattr(datamodule, "data_root", None) or getattr(datamodule, "osie_root", None) or ""
    return (f"Data: {type(dataset).__name__} `{root}`, {count} images; wall time {wall:.1f} s with "
            f"{max(1, num_workers)} process(es).")


@register_analysis
class BenchmarkAnalysis(Analysis):
    """Every model of ``benchmark.models`` scored on the human fixations of ``data`` (docs/benchmark.md)."""

    name = "benchmark"
    uses_trunks = False

    def run(self, context: ProbeContext) -> AnalysisResult:
        return run_benchmark(context)


def run_benchmark(context: ProbeContext) -> AnalysisResult:
    """Score ``benchmark.models`` on the data set of ``data``; write tables, figure and W&B tables."""
    options = context.options("benchmark", BenchmarkOptions)
    image_size = int((context.cfg.get("data") or {}).get("image_size", 224))
    settings = benchmark_settings(options, context.run_dir, image_size, context.backbone.to_dict(), context.precision)
    datamodule = context.datamodule()
    dataset = fixation_dataset(context, datamodule)
    count = len(dataset) if options.limit is None else min(options.limit, len(dataset))
    if count == 0:
        raise ValueError("the benchmark's data set has no image with fixations")
    indices = list(range(count))
    step = max(1, count // 10)

    def progress(done: int, total: int) -> None:
        if done == total or done % step == 0:
            log.info("benchmark: %d/%d images", done, total)

    scorer = ImageScorer(dataset, settings)  # resolves (and so validates) every model before any work
    started = time.perf_counter()
    rows, timings = score_images(dataset, settings, indices, options.num_workers, progress=progress, scorer=scorer)
    wall = time.perf_counter() - started
    metrics = settings.metrics
    summary = summarise(rows, metrics)
    if not context.is_global_zero:
        return AnalysisResult(summary={})
    timing = {name: dataclasses.asdict(value) for name, value in timings.items()}
    written = write_outputs(context, scorer, dataset, datamodule, rows, summary, timing, indices, wall, options)
    result = {
        "images": count,
        "gt_sigma": settings.gt_sigma,
        "metrics": list(metrics),
        "wall_seconds": round(wall, 2),
        "num_workers": options.num_workers,
        "cache": settings.cache_root,
        "models": {row["model"]: {m: row[m] for m in (*metrics, "n_images")} for row in summary},
        "timing": timing,
        "outputs": [str(path) for path in written],
    }
    summary_of = getattr(datamodule, "summary", None)
    if callable(summary_of):
        result["data"] = summary_of()
    return AnalysisResult(summary=result, lines=summary_lines(summary, metrics),
                          files=[str(path) for path in written])


def write_outputs(
    context: ProbeContext,
    scorer: ImageScorer,
    dataset: FixationDataset,
    datamodule: pl.LightningDataModule,
    rows: list[dict[str, Any]],
    summary: list[dict[str, Any]],
    timing: dict[str, dict[str, Any]],
    indices: list[int],
    wall: float,
    options: BenchmarkOptions,
) -> list[Path]:
    """Write the CSV and Markdown tables and the example figure, log the W&B tables; return the files."""
    settings = scorer.settings
    metrics = settings.metrics
    notes = {scorer.names[spec]: model_notes(spec, scorer.models.get(spec)) for spec in settings.specs}
    line = data_line(dataset, datamodule, len(indices), wall, options.num_workers)
    written = [
        write_csv(context.tables_dir / files.BENCHMARK_CSV, summary, summary_columns(metrics)),
        write_csv(context.tables_dir / files.BENCHMARK_PER_IMAGE_CSV, rows, per_image_columns(metrics)),
        write_text(context.tables_dir / files.BENCHMARK_MD,
                   benchmark_markdown(summary, timing, notes, line, settings.gt_sigma, metrics)),
    ]
    context.log_table("benchmark/summary", summary, summary_columns(metrics))
    context.log_table("benchmark/per_image", rows, per_image_columns(metrics))
    if options.figure_images > 0:
        shown = indices[: options.figure_images]
        figure = example_figure(
            [dataset.load_image(i) for i in shown], [dataset.fixation_map(i) > 0 for i in shown],
            [scorer.example_maps(i) for i in shown], [dataset.records[i].stem for i in shown],
        )
        png = save_figure(figure, context.figures_dir / files.BENCHMARK_FIGURE)
        written.append(png)
        context.log_image("benchmark/examples", png)
    return written

