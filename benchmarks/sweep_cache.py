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

``--dtypes`` adds cached runs with ``cache.dtype=bfloat16`` and ``float16`` (same seed, same epochs) and reports
their ``val/nss`` against ``float32``'s, with the largest relative rounding error of the stored activations.

Run (about 10 min on 2 busy cores):

    python benchmarks/sweep_cache.py                                  # 0..6, 20 epochs, 16 + 8 images, 64 px
    python benchmarks/sweep_cache.py --out /tmp/sweep_cache.md        # also write the Markdown section
    python benchmarks/sweep_cache.py --layers 0 1 --epochs 5 --report-epochs 5   # a quick look
"""

from __future__ import annotations

import argparse
import contextlib
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
from saliency_probe.feature_cache import disk_table, from_storage, human_bytes  # noqa: E402
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

    def seconds(self, epochs: int) -> float:
        """What a job of ``epochs`` epochs costs: start -> end of that epoch, plus this job's tear-down."""
        if not 1 <= epochs <= len(self.epoch_ends):
            raise ValueError(f"the job ran {len(self.epoch_ends)} epoch(s), not {epochs}")
        return (self.epoch_ends[epochs - 1] - self.start) + (self.end - self.epoch_ends[-1])

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
    from hydra import compose, initialize_config_dir
    from hydra.core.hydra_config import HydraConfig
    from omegaconf import open_dict

    import saliency_probe.training as training

    out = settings.work / (name or f"layers{layers}-{'cached' if cached else 'plain'}-{dtype}")
    cache_dir = out / "cache"  # an empty cache per job: every cached job builds (and pays for) its cache
    overrides = [
        f"data.root={settings.root}", f"data.image_size={settings.image_size}",
        f"data.batch_size={settings.batch_size}", f"trainer.max_epochs={settings.epochs}", f"seed={settings.seed}",
        f"finetune.layers={layers}", "logger=none", "print_config=false", "~callbacks.progress_bar",
        f"cache.features={str(cached).lower()}", f"cache.dtype={dtype}", f"paths.cache_dir={cache_dir}",
        *([] if settings.checkpoints else ["~callbacks.model_checkpoint", "+trainer.enable_checkpointing=false"]),
        "+trainer.enable_progress_bar=false", *settings.extra,
    ]
    clock = EpochClock()
    build_callbacks = training.build_callbacks

    def with_clock(callbacks_cfg: Any) -> list[pl.Callback]:
        return [*build_callbacks(callbacks_cfg), clock]

    with initialize_config_dir(config_dir=str(REPO / "conf"), version_base="1.3"):
        cfg = compose("train", overrides=overrides, return_hydra_config=True)
    with open_dict(cfg):
        cfg.hydra.runtime.output_dir = str(out)
        cfg.hydra.job.override_dirname = ",".join(overrides)
    HydraConfig.instance().set_config(cfg)
    with open_dict(cfg):
        del cfg["hydra"]
    training.build_callbacks = with_clock
    try:
        with contextlib.redirect_stdout(io.StringIO()):  # the job's own end-of-run report
            start = time.perf_counter()
            summary = training.train(cfg)
            end = time.perf_counter()
    finally:
        training.build_callbacks = build_callbacks
    return Job(str(layers), cached, dtype, start, clock.ends, end, summary)


def feature_error(job: Job, exact: Job) -> float:
    """Largest |rounded - exact| / max|exact| over the stored training activations of two cached jobs."""
    arrays = []
    for run in (job, exact):
        cache = run.summary["feature_cache"]
        arrays.append(from_storage(np.load(Path(cache["dir"]) / "train.npy", mmap_mode="r"), cache["dtype"]))
    return float((arrays[0] - arrays[1]).abs().max() / arrays[1].abs().max())


# ----------------------------------------------------------------------------------------------- report


def sweep_table(jobs: dict[tuple[str, bool], Job], layers: Sequence[str], report_epochs: Sequence[int]) -> list[str]:
    header = "| finetune.layers | cache build s (cached job) | " + " | ".join(
        f"{e} epochs: uncached s | cached s | speed-up" for e in report_epochs) + " | disk (64 px) |"
    lines = [header, "|---|---:|" + "---:|---:|---:|" * len(report_epochs) + "---:|"]
    totals = {e: [0.0, 0.0] for e in report_epochs}
    for value in layers:
        plain, cached = jobs[(value, False)], jobs[(value, True)]
        cells = [value, f"{cached.build_seconds:.2f}"]
        for e in report_epochs:
            a, b = plain.seconds(e), cached.seconds(e)
            totals[e][0] += a
            totals[e][1] += b
            cells += [f"{a:.1f}", f"{b:.1f}", f"{a / b:.1f} x"]
        cells.append(human_bytes(cached.summary["feature_cache"]["bytes"]))
        lines.append("| " + " | ".join(cells) + " |")
    cells = [f"sweep {layers[0]}..{layers[-1]}", f"{sum(jobs[(v, True)].build_seconds for v in layers):.2f}"]
    for e in report_epochs:
        a, b = totals[e]
        cells += [f"**{a:.1f}**", f"**{b:.1f}**", f"**{a / b:.2f} x**"]
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
    same = [v for v in layers if jobs[(v, False)].val_nss == jobs[(v, True)].val_nss]
    differ = {v: abs(jobs[(v, False)].val_nss - jobs[(v, True)].val_nss) for v in layers if v not in same}
    lines.append(f"- val/nss cached = uncached (float32): identical for layers {', '.join(same) or 'none'}"
                 + (f"; largest difference {max(differ.values()):.2e}" if differ else ""))
    return lines


def dtype_table(exact: dict[str, Job], rounded: dict[tuple[str, str], Job]) -> list[str]:
    lines = ["| finetune.layers | cache.dtype | val/nss | - float32's | largest activation error (relative) | disk |",
             "|---|---|---:|---:|---:|---:|"]
    for value, job in exact.items():
        lines.append(f"| {value} | float32 | {job.val_nss:.6f} | 0 | 0 | "
                     f"{human_bytes(job.summary['feature_cache']['bytes'])} |")
        for dtype in ("bfloat16", "float16"):
            other = rounded[(value, dtype)]
            lines.append(f"| {value} | {dtype} | {other.val_nss:.6f} | {other.val_nss - job.val_nss:+.2e} | "
                         f"{feature_error(other, job):.2e} | {human_bytes(other.summary['feature_cache']['bytes'])} |")
    return lines


def disk_lines(image_size: int) -> list[str]:
    lines = [f"VGG-16 at {image_size} px (shapes from a dry run of the trunk, `python -m saliency_probe.feature_cache`); "
             f"SALICON = {SALICON_IMAGES:,} images (10,000 train + 5,000 val):", "",
             "| finetune.layers | boundary | C x h x w | per image, float32 | SALICON, float32 | SALICON, bfloat16/float16 |",
             "|---|---|---|---:|---:|---:|"]
    for row in disk_table("vgg16", image_size, SALICON_IMAGES):
        lines.append(f"| {row['finetune.layers']} | {row['boundary']} | {row['shape']} | "
                     f"{human_bytes(row['float32_per_image'])} | {human_bytes(row['float32_total'])} | "
                     f"{human_bytes(row['half_total'])} |")
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
        rounded: dict[tuple[str, str], Job] = {}
        for value in args.dtypes:
            for dtype in ("bfloat16", "float16"):
                job = rounded[(value, dtype)] = run_job(settings, value, True, dtype)
                progress(f"layers={value} cache.dtype={dtype}: val/nss {job.val_nss:.6f}")
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
        if rounded:
            lines += [f"#### cache.dtype and val/nss ({args.epochs} epochs, same seed, cached runs)", "",
                      *dtype_table({v: jobs[(v, True)] for v in args.dtypes}, rounded), ""]
        lines += ["#### Disk per image and boundary", "", *disk_lines(224), "",
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
