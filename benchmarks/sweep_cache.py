"""The fine-tuning sweep with and without the frozen-prefix feature cache, measured side by side in one run.

For each ``finetune.layers`` value (VGG-16: 0..6) two jobs of ``train.py``'s own job function run one after the
other: uncached, then ``cache.features=true`` with an empty cache folder (so every cached job builds its cache
and pays for it). Each job trains ``--epochs`` (20) epochs; an epoch clock stamps the end of every epoch
(after its validation), so one 20-epoch job gives both figures:

- ``job(E)`` = (start of the job -> end of epoch E) + the job's tear-down (end of its last epoch -> return),
  for E = 5 and 20: what an E-epoch job costs, set-up, data, cache build and tear-down included;
- the cache build (``summary.json``'s ``feature_cache.build_seconds``), inside the cached job's time.

Speed-ups are uncached / cached per job and for the whole sweep (sums). Per-epoch checkpoints are off by
default: at 16 images writing a 60-160 MB VGG-16 checkpoint twice per epoch costs more than the epoch itself,
which says nothing about a SALICON epoch of 10,000 images (``--checkpoints`` puts them back).

The time every job spends in the CC metric's ground-truth blur of the validation fixations (``maps.
fixation_density``, recomputed every epoch whether the features are cached or not) is measured too, and the
speed-ups without it are given beside; the blur itself (matrix products) is timed against the two 1-D
convolutions it replaced, side by side, at SALICON's 480x640 and the synthetic 240x320.

``--dtypes`` adds cached runs with ``cache.dtype=bfloat16`` and ``float16`` (same seed, same epochs) and reports
their ``val/nss`` against ``float32``'s, with the largest relative rounding error of the stored activations, and
beside them ``float32``'s ``val/nss`` with ``--seed-control`` other seeds (the scale of run-to-run noise).

Run (about 10 min on 2 busy cores):

    python benchmarks/sweep_cache.py                                  # 0..6, 20 epochs, 16 + 8 images, 64 px
    python benchmarks/sweep_cache.py --out /tmp/sweep_cache.md        # also write the Markdown section
    python benchmarks/sweep_cache.py --layers 0 1 --epochs 5 --report-epochs 5   # a quick look
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import io
import json
import logging
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import time
import warnings
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pytorch_lightning as pl
import torch

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from saliency_probe.data.synthetic import ensure_synthetic  # noqa: E402
from saliency_probe.feature_cache import disk_markdown, from_storage, human_bytes  # noqa: E402
from saliency_probe.io_utils import write_text  # noqa: E402
from saliency_probe.machine import cpu_name, load_average  # noqa: E402

LAYER_TARGET = 10.0  # layers=0: cached job >= 10x faster at 20 epochs
SWEEP_TARGET = 2.5  # the whole 0..6 sweep >= 2.5x faster at 20 epochs
SALICON_IMAGES = 15000  # 10,000 train + 5,000 val


class EpochClock(pl.Callback):
    """``time.perf_counter()`` at the end of every training epoch (after its validation and checkpoints)."""

    def __init__(self) -> None:
        self.ends: list[float] = []

    def on_train_epoch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self.ends.append(time.perf_counter())


@dataclass
class Job:
    """One timed job."""

    layers: str
    cached: bool
    dtype: str
    start: float
    epoch_ends: list[float]
    end: float
    summary: dict[str, Any]
    blur_seconds: float = 0.0  # inside the job: the CC metric's ground-truth blur of the validation fixations

    def seconds(self, epochs: int) -> float:
        """What a job of ``epochs`` epochs costs: start -> end of that epoch, plus this job's tear-down."""
        if not 1 <= epochs <= len(self.epoch_ends):
            raise ValueError(f"the job ran {len(self.epoch_ends)} epoch(s), not {epochs}")
        return (self.epoch_ends[epochs - 1] - self.start) + (self.end - self.epoch_ends[-1])

    def seconds_without_blur(self, epochs: int) -> float:
        """:meth:`seconds` less the validation ground-truth blur of those epochs (spread evenly over epochs)."""
        return self.seconds(epochs) - self.blur_seconds * epochs / len(self.epoch_ends)

    def per_epoch(self, first: int, last: int) -> float:
        """Steady cost of one epoch: (end of epoch ``last`` - end of epoch ``first``) / (last - first)."""
        return (self.epoch_ends[last - 1] - self.epoch_ends[first - 1]) / (last - first)

    @property
    def build_seconds(self) -> float:
        cache = self.summary.get("feature_cache") or {}
        return float(cache.get("build_seconds") or 0.0)

    @property
    def val_nss(self) -> float:
        return float(self.summary["metrics"]["val/nss"])


@dataclass
class Settings:
    root: Path
    work: Path
    image_size: int
    batch_size: int
    epochs: int
    seed: int
    checkpoints: bool
    extra: list[str] = field(default_factory=list)


def run_job(settings: Settings, layers: str, cached: bool, dtype: str = "float32", name: str = "") -> Job:
    """``training.train`` on the composed config, as ``python train.py ...`` would run it."""
    import saliency_probe.training as training
    from saliency_probe.run_context import composed_job

    out = settings.work / (name or f"layers{layers}-{'cached' if cached else 'plain'}-{dtype}")
    cache_dir = out / "cache"  # an empty cache per job: every cached job builds (and pays for) its cache
    overrides = [
        f"data.root={settings.root}", f"data.image_size={settings.image_size}",
        f"data.batch_size={settings.batch_size}", f"trainer.max_epochs={settings.epochs}", f"seed={settings.seed}",
        f"finetune.layers={layers}", "logger=none", "print_config=false", "~callbacks.progress_bar",
        f"cache.features={str(cached).lower()}", f"cache.dtype={dtype}", f"paths.cache_dir={cache_dir}",
        *([] if settings.checkpoints else ["~callbacks.model_checkpoint", "~callbacks.last_checkpoint", "+trainer.enable_checkpointing=false"]),
        "+trainer.enable_progress_bar=false", *settings.extra,
    ]
    import saliency_probe.models.saliency as saliency

    clock = EpochClock()
    build_callbacks = training.build_callbacks
    density = saliency.fixation_density
    blur = [0.0]

    def timed_density(*args: Any, **kwargs: Any) -> torch.Tensor:
        began = time.perf_counter()
        try:
            return density(*args, **kwargs)
        finally:
            blur[0] += time.perf_counter() - began

    def with_clock(callbacks_cfg: Any) -> list[pl.Callback]:
        return [*build_callbacks(callbacks_cfg), clock]

    training.build_callbacks, saliency.fixation_density = with_clock, timed_density
    try:
        with composed_job(REPO / "conf", "train", overrides, out) as cfg, \
                contextlib.redirect_stdout(io.StringIO()):  # the job's own end-of-run report
            start = time.perf_counter()
            summary = training.train(cfg)
            end = time.perf_counter()
    finally:
        training.build_callbacks, saliency.fixation_density = build_callbacks, density
    return Job(str(layers), cached, dtype, start, clock.ends, end, summary, blur[0])


def feature_error(job: Job, exact: Job) -> float:
    """Largest |rounded - exact| / max|exact| over the stored training activations of two cached jobs."""
    arrays = []
    for run in (job, exact):
        cache = run.summary["feature_cache"]
        arrays.append(from_storage(np.load(Path(cache["dir"]) / "train.npy", mmap_mode="r"), cache["dtype"]))
    return float((arrays[0] - arrays[1]).abs().max() / arrays[1].abs().max())


# ----------------------------------------------------------------------------------------------- report


def sweep_table(jobs: dict[tuple[str, bool], Job], layers: Sequence[str], report_epochs: Sequence[int]) -> list[str]:
    first, last = min(report_epochs), max(report_epochs)
    steady = first < last
    header = "| finetune.layers | cache build s | " + " | ".join(
        f"{e} epochs: uncached s | cached s | speed-up" for e in report_epochs) + (
        f" | per epoch ({first + 1}..{last}): uncached s | cached s | speed-up" if steady else "") + " | disk |"
    lines = [header, "|---|---:|" + "---:|---:|---:|" * (len(report_epochs) + steady) + "---:|"]
    totals = {e: [0.0, 0.0] for e in report_epochs}
    epoch_totals = [0.0, 0.0]
    for value in layers:
        plain, cached = jobs[(value, False)], jobs[(value, True)]
        cells = [value, f"{cached.build_seconds:.2f}"]
        for e in report_epochs:
            a, b = plain.seconds(e), cached.seconds(e)
            totals[e][0] += a
            totals[e][1] += b
            cells += [f"{a:.1f}", f"{b:.1f}", f"{a / b:.1f} x"]
        if steady:
            a, b = plain.per_epoch(first, last), cached.per_epoch(first, last)
            epoch_totals[0] += a
            epoch_totals[1] += b
            cells += [f"{a:.3f}", f"{b:.3f}", f"{a / b:.1f} x"]
        cells.append(human_bytes(cached.summary["feature_cache"]["bytes"]))
        lines.append("| " + " | ".join(cells) + " |")
    cells = [f"sweep {layers[0]}..{layers[-1]}", f"{sum(jobs[(v, True)].build_seconds for v in layers):.2f}"]
    for e in report_epochs:
        a, b = totals[e]
        cells += [f"**{a:.1f}**", f"**{b:.1f}**", f"**{a / b:.2f} x**"]
    if steady:
        a, b = epoch_totals
        cells += [f"{a:.3f}", f"{b:.3f}", f"{a / b:.2f} x"]
    cells.append(human_bytes(sum(jobs[(v, True)].summary["feature_cache"]["bytes"] for v in layers)))
    lines.append("| " + " | ".join(cells) + " |")
    return lines


def verdicts(jobs: dict[tuple[str, bool], Job], layers: Sequence[str], epochs: int) -> list[str]:
    lines = []
    if "0" in layers:
        ratio = jobs[("0", False)].seconds(epochs) / jobs[("0", True)].seconds(epochs)
        lines.append(f"- layers=0 at {epochs} epochs: {ratio:.1f} x (target >= {LAYER_TARGET:.0f} x): "
                     f"{'meets' if ratio >= LAYER_TARGET else '**misses**'}")
    if set(map(str, range(7))) <= set(layers):
        seven = [str(v) for v in range(7)]
        ratio = sum(jobs[(v, False)].seconds(epochs) for v in seven) / sum(jobs[(v, True)].seconds(epochs)
                                                                            for v in seven)
        lines.append(f"- the 0..6 sweep at {epochs} epochs: {ratio:.2f} x (target >= {SWEEP_TARGET} x): "
                     f"{'meets' if ratio >= SWEEP_TARGET else '**misses**'}")
    if "0" in layers:
        plain, cached = jobs[("0", False)], jobs[("0", True)]
        lines.append(f"- of the cached layers=0 job's {cached.seconds(epochs):.1f} s, {cached.blur_seconds:.1f} s are the CC "
                     "metric's ground-truth blur of the validation fixations (recomputed every epoch, cached or not); "
                     f"without it layers=0 would be {plain.seconds_without_blur(epochs) / cached.seconds_without_blur(epochs):.1f} x")
    if set(map(str, range(7))) <= set(layers):
        seven = [str(v) for v in range(7)]
        ratio = sum(jobs[(v, False)].seconds_without_blur(epochs) for v in seven) / sum(
            jobs[(v, True)].seconds_without_blur(epochs) for v in seven)
        lines.append(f"- the 0..6 sweep without that blur: {ratio:.2f} x")
    same = [v for v in layers if jobs[(v, False)].val_nss == jobs[(v, True)].val_nss]
    differ = {v: abs(jobs[(v, False)].val_nss - jobs[(v, True)].val_nss) for v in layers if v not in same}
    lines.append(f"- val/nss cached = uncached (float32): identical for layers {', '.join(same) or 'none'}"
                 + (f"; largest difference {max(differ.values()):.2e}" if differ else ""))
    return lines


def dtype_table(exact: dict[str, Job], rounded: dict[tuple[str, str], Job], seeds: dict[str, list[Job]]) -> list[str]:
    """val/nss per cache.dtype beside float32's, and (the scale of the noise) its spread over seeds."""
    lines = ["| finetune.layers | cache.dtype | val/nss | - float32's | largest activation error (relative) | disk |"
             " float32 val/nss over seeds (min..max) |",
             "|---|---|---:|---:|---:|---:|---|"]
    for value, job in exact.items():
        runs = [job, *seeds.get(value, [])]
        spread = (f"{min(r.val_nss for r in runs):.4f}..{max(r.val_nss for r in runs):.4f} "
                  f"(seeds {', '.join(str(r.summary['seed']) for r in runs)})") if len(runs) > 1 else ""
        lines.append(f"| {value} | float32 | {job.val_nss:.6f} | 0 | 0 | "
                     f"{human_bytes(job.summary['feature_cache']['bytes'])} | {spread} |")
        for dtype in ("bfloat16", "float16"):
            other = rounded[(value, dtype)]
            lines.append(f"| {value} | {dtype} | {other.val_nss:.6f} | {other.val_nss - job.val_nss:+.2e} | "
                         f"{feature_error(other, job):.2e} | {human_bytes(other.summary['feature_cache']['bytes'])} | |")
    return lines


def disk_lines(image_size: int) -> list[str]:
    return [f"VGG-16 at {image_size} px (shapes from a dry run of the trunk, `python -m saliency_probe.feature_cache`); "
            f"SALICON = {SALICON_IMAGES:,} images (10,000 train + 5,000 val):", "",
            *disk_markdown("vgg16", image_size, SALICON_IMAGES)]


def blur_by_convolution(fixations: torch.Tensor, sigma: float) -> torch.Tensor:
    """The validation ground-truth blur as it was computed before the matrix form: two single-channel 1-D
    convolutions with the +-3 sigma kernel after reflect padding (the reference the matrix form is timed against)."""
    import torch.nn.functional as F

    from saliency_probe.maps import gaussian_kernel_1d, kernel_size

    height, width = fixations.shape[-2:]
    flat = fixations.float().reshape(-1, 1, height, width)
    size_h, size_w = kernel_size(sigma, height), kernel_size(sigma, width)
    kernel_h = gaussian_kernel_1d(size_h, sigma, flat.dtype).view(1, 1, -1, 1)
    kernel_w = gaussian_kernel_1d(size_w, sigma, flat.dtype).view(1, 1, 1, -1)
    flat = F.conv2d(F.pad(flat, (0, 0, size_h // 2, size_h // 2), mode="reflect"), kernel_h)
    flat = F.conv2d(F.pad(flat, (size_w // 2, size_w // 2, 0, 0), mode="reflect"), kernel_w)
    return flat.reshape(fixations.shape)


def blur_lines(sigma: float = 24.0, maps: int = 8, repeats: int = 5) -> list[str]:
    """``maps.fixation_density`` (matrix products) against :func:`blur_by_convolution`, side by side: seconds per
    batch of ``maps`` fixation maps (about 0.2 % of the pixels fixated) and the largest difference."""
    from saliency_probe.maps import fixation_density

    lines = [f"Validation ground-truth blur, sigma {sigma:g} px, batches of {maps} fixation maps, best of {repeats} "
             f"(torch threads {torch.get_num_threads()}):", "",
             "| maps H x W | two 1-D convolutions s | matrix products s | speed-up | largest difference (relative) |",
             "|---|---:|---:|---:|---:|"]
    generator = torch.Generator().manual_seed(0)
    for height, width in ((240, 320), (480, 640)):
        fixations = (torch.rand(maps, height, width, generator=generator) < 0.002).float()
        timings = {}
        for name, function in (("conv", blur_by_convolution), ("matrix", fixation_density)):
            function(fixations, sigma)
            best = float("inf")
            for _ in range(repeats):
                began = time.perf_counter()
                result = function(fixations, sigma)
                best = min(best, time.perf_counter() - began)
            timings[name] = (best, result)
        (conv, by_conv), (matrix, by_matrix) = timings["conv"], timings["matrix"]
        error = float((by_conv - by_matrix).abs().max() / by_conv.abs().max())
        lines.append(f"| {height} x {width} | {conv:.4f} | {matrix:.4f} | {conv / matrix:.1f} x | {error:.1e} |")
    return lines


def machine_lines() -> list[str]:
    try:
        lscpu = subprocess.run(["lscpu"], capture_output=True, text=True, timeout=10).stdout.splitlines()[:10]
    except (OSError, subprocess.SubprocessError):
        lscpu = [f"Model name: {cpu_name()}"]
    return ["```", *lscpu, "```", "",
            f"torch {torch.__version__}, Lightning {pl.__version__}, Python {platform.python_version()}, "
            f"{os.cpu_count()} logical CPUs, torch threads {torch.get_num_threads()}."]


# ----------------------------------------------------------------------------------------------- main


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--layers", nargs="+", default=[str(v) for v in range(7)], help="finetune.layers values")
    parser.add_argument("--epochs", type=int, default=20, help="epochs of every job")
    parser.add_argument("--report-epochs", type=int, nargs="+", default=[5, 20], help="job lengths reported")
    parser.add_argument("--images", type=int, default=16, help="training images (synthetic SALICON set)")
    parser.add_argument("--val-images", type=int, default=8)
    parser.add_argument("--image-size", type=int, default=64)
    parser.add_argument("--batch-size", type=int, default=4)
    parser.add_argument("--salicon-hw", type=int, nargs=2, default=(240, 320), metavar=("H", "W"))
    parser.add_argument("--threads", type=int, default=1, help="torch threads (1: steadiest on a shared machine)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--checkpoints", action="store_true", help="save checkpoints every epoch, as train.py does")
    parser.add_argument("--dtypes", nargs="*", default=["0", "1", "3"],
                        help="finetune.layers values of the bfloat16/float16 runs (none: skip them)")
    parser.add_argument("--seed-control", type=int, default=2,
                        help="float32 runs with this many other seeds beside the dtype runs (the noise scale)")
    parser.add_argument("--also-size", type=int, default=None,
                        help="also run --also-layers at this input size (the trend with the prefix's cost)")
    parser.add_argument("--also-layers", nargs="+", default=["0", "1"])
    parser.add_argument("--work", default=None, help="folder of the jobs (default: a temporary folder, removed)")
    parser.add_argument("--out", default=None, help="also write the Markdown section here")
    args = parser.parse_args(argv)
    if max(args.report_epochs) > args.epochs:
        parser.error("--report-epochs must not exceed --epochs")
    return args


def quiet() -> None:
    for name in ("pytorch_lightning", "lightning.pytorch", "lightning.fabric"):
        logging.getLogger(name).setLevel(logging.ERROR)
    warnings.filterwarnings("ignore")
    os.environ.setdefault("WANDB_MODE", "disabled")


def main(argv: Sequence[str] | None = None) -> str:
    args = parse_args(argv)
    quiet()
    torch.set_num_threads(args.threads)
    work = Path(args.work) if args.work else Path(tempfile.mkdtemp(prefix="sweep_cache_"))
    started, load_before = time.perf_counter(), load_average()

    def progress(message: str) -> None:
        print(f"  [{time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)

    try:
        root = work / "data"
        synthetic = {"seed": 0, "num_train": args.images, "num_val": args.val_images, "num_probe": 1,
                     "salicon_hw": tuple(args.salicon_hw), "osie_hw": (32, 32), "num_observers": 8}
        ensure_synthetic(root, **synthetic)  # before any timing
        sizes = [f"data.{key}={list(value) if isinstance(value, tuple) else value}".replace(" ", "")
                 for key, value in synthetic.items() if key != "seed"]
        settings = Settings(root, work, args.image_size, args.batch_size, args.epochs, args.seed, args.checkpoints,
                            sizes)
        jobs: dict[tuple[str, bool], Job] = {}
        for value in args.layers:
            for cached in (False, True):
                job = jobs[(value, cached)] = run_job(settings, value, cached)
                progress(f"layers={value} {'cached  ' if cached else 'uncached'}: {job.end - job.start:6.1f} s, "
                         f"val/nss {job.val_nss:.6f}" + (f", build {job.build_seconds:.2f} s" if cached else ""))
        larger: dict[tuple[str, bool], Job] = {}
        if args.also_size:
            bigger = Settings(root, work / f"size{args.also_size}", args.also_size, args.batch_size, args.epochs,
                              args.seed, args.checkpoints, sizes)
            for value in args.also_layers:
                for cached in (False, True):
                    job = larger[(value, cached)] = run_job(bigger, value, cached)
                    progress(f"{args.also_size} px layers={value} {'cached  ' if cached else 'uncached'}: "
                             f"{job.end - job.start:6.1f} s")
        rounded: dict[tuple[str, str], Job] = {}
        seeds: dict[str, list[Job]] = {}
        for value in args.dtypes:
            for dtype in ("bfloat16", "float16"):
                job = rounded[(value, dtype)] = run_job(settings, value, True, dtype)
                progress(f"layers={value} cache.dtype={dtype}: val/nss {job.val_nss:.6f}")
            for seed in range(args.seed + 1, args.seed + 1 + args.seed_control):
                job = run_job(dataclasses.replace(settings, seed=seed), value, True, name=f"layers{value}-seed{seed}")
                seeds.setdefault(value, []).append(job)
                progress(f"layers={value} seed {seed} (float32): val/nss {job.val_nss:.6f}")
        total = time.perf_counter() - started
        lines = [
            "### Measured", "",
            f"VGG-16 (random initialisation), synthetic SALICON set: {args.images} training + {args.val_images} "
            f"validation images ({args.salicon_hw[0]}x{args.salicon_hw[1]} JPEG) at {args.image_size} px, batch "
            f"{args.batch_size}, {args.epochs}-epoch jobs (validation every epoch), "
            f"{'checkpoints every epoch' if args.checkpoints else 'no per-epoch checkpoints'}, seed {args.seed}. "
            "Seconds per job; the cached job includes its cache build.", "",
            *sweep_table(jobs, list(args.layers), list(args.report_epochs)), "",
            *verdicts(jobs, list(args.layers), max(args.report_epochs)), "",
        ]
        if larger:
            lines += [f"#### The same jobs at {args.also_size} px", "",
                      *sweep_table(larger, list(args.also_layers), list(args.report_epochs)), ""]
        if rounded:
            lines += [f"#### cache.dtype and val/nss ({args.epochs} epochs, same seed, cached runs)", "",
                      *dtype_table({v: jobs[(v, True)] for v in args.dtypes}, rounded, seeds), ""]
        lines += ["#### The validation blur", "", *blur_lines(), "",
                  "#### Disk per image and boundary", "", *disk_lines(224), "",
                  "#### Machine", "", *machine_lines(), "",
                  f"Load average (1 / 5 / 15 min) at the start {load_before}, at the end {load_average()}; "
                  f"{total / 60:.1f} min in all.", ""]
    finally:
        if not args.work:
            shutil.rmtree(work, ignore_errors=True)
    text = "\n".join(lines)
    print(text)
    if args.out:
        write_text(args.out, text)
    json_rows = {f"{v}-{'cached' if c else 'plain'}": {"seconds": {e: j.seconds(e) for e in args.report_epochs},
                                                        "build": j.build_seconds, "val/nss": j.val_nss}
                 for (v, c), j in jobs.items()}
    print(json.dumps(json_rows), file=sys.stderr)
    return text


if __name__ == "__main__":
    main()
