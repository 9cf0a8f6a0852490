"""Training and data-loading throughput against the targets in docs/protocol.md ("Targets"), measured side by side in one run.

1. Training: steps/s of ``SaliencyModule`` + ``FreezeLayers`` trained by a ``pytorch_lightning.Trainer`` (CPU,
   no logger, no checkpointing, no progress bar) versus a plain PyTorch loop over a copy of the same model, the
   same in-memory batches and the same optimizer (Adam, lr 5e-3, trainable parameters only). Target: Lightning
   >= 0.95 x the plain loop.
2. Data: samples/s per loader worker of ``SaliconDataModule`` on SALICON-format files (a synthetic set at the
   real 480x640 resolution) at 224 px, with ``num_workers`` = 0 (the main process is the one worker), 1 and 2.
   Target: >= 150 samples/s per worker.

What a training figure means: a clock callback (or the plain loop itself) stamps the time right after each
optimizer step; throughput is (steps after the warm-up) / (time from the last warm-up step's end to the last
step's end). Every cost of the loop between two steps is inside (fetching the batch, hooks, ``self.log``,
forward, loss, backward, optimizer step, zero_grad); the one-off ``fit()`` set-up and tear-down are not. The two
loops alternate (plain, Lightning, plain, Lightning, ...) and the medians are compared, so that load from other
processes hits both alike. Run:

    python benchmarks/train_throughput.py                        # print the tables
    python benchmarks/train_throughput.py --out /tmp/train.md    # also write them as Markdown
    python benchmarks/train_throughput.py --backbone resnet18 --layers 2 all --skip-data   # another trunk
"""

from __future__ import annotations

import argparse
import copy
import logging
import os
import platform
import shutil
import statistics
import tempfile
import time
import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytorch_lightning as pl
import torch
from torch.utils.data import DataLoader

from saliency_probe.callbacks import FreezeLayers
from saliency_probe.data.datamodules import SaliconDataModule
from saliency_probe.data.synthetic import ensure_synthetic
from saliency_probe.io_utils import write_text
from saliency_probe.machine import cpu_name, load_average
from saliency_probe.models.backbone import parse_finetune_layers
from saliency_probe.models.saliency import SaliencyModule

TRAIN_TARGET = 0.95  # Lightning steps/s >= this x plain-loop steps/s
DATA_TARGET = 150.0  # samples/s per loader worker
LEARNING_RATE = 5e-3  # SaliencyModule's default Adam learning rate
SALICON_HW = (480, 640)  # the real SALICON image resolution


# ----------------------------------------------------------------------------------------------- training


@dataclass
class StepClock:
    """Wall-clock times (``time.perf_counter``) at which each optimizer step ended."""

    ends: list[float] = field(default_factory=list)

    def steps_per_second(self, warmup: int) -> float:
        """Steady-state steps/s: the steps after the first ``warmup`` over the time since the warm-up ended."""
        if warmup < 1 or len(self.ends) <= warmup:
            raise ValueError(f"need warmup >= 1 and more than {warmup} timed steps, got {len(self.ends)} steps")
        return (len(self.ends) - warmup) / (self.ends[-1] - self.ends[warmup - 1])


class StepClockCallback(pl.Callback):
    """Stamps the time at the end of every training batch (after the optimizer step) into a :class:`StepClock`."""

    def __init__(self, clock: StepClock) -> None:
        self.clock = clock

    def on_train_batch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule, *args: Any) -> None:
        self.clock.ends.append(time.perf_counter())


def make_batches(
    count: int, batch_size: int, image_size: int, fixation_hw: tuple[int, int], fixations_per_image: int = 20,
    seed: int = 0,
) -> list[dict[str, torch.Tensor]]:
    """``count`` pre-built batches ``{"image": (B, 3, S, S), "fixations": (B, H, W) binary float}`` in memory."""
    generator = torch.Generator().manual_seed(seed)
    height, width = fixation_hw
    batches = []
    for _ in range(count):
        images = torch.randn(batch_size, 3, image_size, image_size, generator=generator)
        fixations = torch.zeros(batch_size, height * width)
        fixations.scatter_(1, torch.randint(0, height * width, (batch_size, fixations_per_image), generator=generator), 1.0)
        batches.append({"image": images, "fixations": fixations.view(batch_size, height, width)})
    return batches


def batch_loader(batches: Sequence[dict[str, torch.Tensor]]) -> DataLoader:
    """A loader that yields the pre-built batches as they are (no collation, no copies, no workers)."""
    return DataLoader(list(batches), batch_size=None, shuffle=False, num_workers=0)


def build_module(seed: int = 0, backbone: str = "vgg16") -> SaliencyModule:
    """A randomly initialised saliency model on ``backbone`` (weights do not change the speed; no file is needed)."""
    torch.manual_seed(seed)
    return SaliencyModule(weights=None) if backbone == "vgg16" else SaliencyModule(weights=None, backbone=backbone)


def train_plain(module: SaliencyModule, batches: Sequence[dict[str, torch.Tensor]], finetune_layers: int | str) -> StepClock:
    """Train ``module`` in place with a hand-written loop; the same freezing, optimizer and loss as the module."""
    module.trunk.set_trainable(finetune_layers)
    module.train()
    optimizer = torch.optim.Adam([p for p in module.parameters() if p.requires_grad], lr=LEARNING_RATE)
    clock = StepClock()
    for batch in batch_loader(batches):
        loss = module.loss(module(batch["image"]), batch["fixations"])
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        clock.ends.append(time.perf_counter())
    return clock


def quiet_lightning() -> None:
    """Silence Lightning's start-up messages and the warnings that do not apply here (batches in memory, no
    validation loader, a torch deprecation inside Lightning)."""
    for name in ("pytorch_lightning", "lightning.pytorch", "lightning.fabric"):
        logging.getLogger(name).setLevel(logging.WARNING)
    for message in (".*does not have many workers.*", ".*no `val_dataloader`.*", r".*isinstance\(treespec, LeafSpec\).*"):
        warnings.filterwarnings("ignore", message=message)


def train_lightning(
    module: SaliencyModule, batches: Sequence[dict[str, torch.Tensor]], finetune_layers: int | str
) -> StepClock:
    """Train ``module`` in place with ``Trainer.fit`` and the ``FreezeLayers`` callback; one epoch over ``batches``."""
    quiet_lightning()
    clock = StepClock()
    trainer = pl.Trainer(
        accelerator="cpu", devices=1, max_epochs=1, logger=False, enable_checkpointing=False,
        enable_progress_bar=False, enable_model_summary=False, num_sanity_val_steps=0, log_every_n_steps=1,
        callbacks=[FreezeLayers(finetune_layers), StepClockCallback(clock)],
    )
    trainer.fit(module, train_dataloaders=batch_loader(batches))
    return clock


@dataclass
class TrainResult:
    """Steps/s of each repeat of the two loops for one ``finetune.layers`` setting."""

    layers: str
    plain: list[float]
    lightning: list[float]

    @property
    def ratio(self) -> float:
        """Median Lightning steps/s over median plain-loop steps/s."""
        return statistics.median(self.lightning) / statistics.median(self.plain)


def compare_training(
    layers: Sequence[int | str], repeats: int, steps: int, warmup: int, batch_size: int, image_size: int,
    fixation_hw: tuple[int, int], seed: int = 0, progress: Callable[[str], None] | None = None,
    backbone: str = "vgg16",
) -> list[TrainResult]:
    """Alternate plain and Lightning runs ``repeats`` times per setting, each on a fresh copy of one model."""
    batches = make_batches(warmup + steps, batch_size, image_size, fixation_hw, seed=seed)
    template = build_module(seed, backbone)
    results = []
    for value in layers:
        parse_finetune_layers(value, backbone)
        result = TrainResult(str(value), [], [])
        for repeat in range(repeats):
            for name, run, into in (("plain", train_plain, result.plain), ("lightning", train_lightning, result.lightning)):
                into.append(run(copy.deepcopy(template), batches, value).steps_per_second(warmup))
                if progress:
                    progress(f"layers={value} repeat {repeat + 1}/{repeats} {name}: {into[-1]:.3f} steps/s")
        results.append(result)
    return results


# ----------------------------------------------------------------------------------------------- data


def make_salicon_set(root: str | os.PathLike[str], num_train: int, salicon_hw: tuple[int, int] = SALICON_HW) -> dict:
    """Generate (or reuse) a synthetic SALICON-format set in ``root``; return the generator arguments used."""
    synthetic = {"seed": 0, "num_train": num_train, "num_val": 1, "num_probe": 1, "salicon_hw": tuple(salicon_hw)}
    ensure_synthetic(root, **synthetic)
    return synthetic


@dataclass
class LoaderResult:
    """Samples/s of each timed epoch for one ``num_workers`` setting."""

    num_workers: int
    samples_per_second: list[float]

    @property
    def per_worker(self) -> float:
        """Median samples/s divided by the number of processes that load (the main process when 0)."""
        return statistics.median(self.samples_per_second) / max(1, self.num_workers)


def _epoch_rate(loader: DataLoader) -> float:
    start = time.perf_counter()
    samples = sum(len(batch["image"]) for batch in loader)
    return samples / (time.perf_counter() - start)


def compare_loaders(
    root: str | os.PathLike[str], synthetic: dict, workers: Sequence[int], repeats: int, batch_size: int,
    image_size: int = 224, threads: int = 1, progress: Callable[[str], None] | None = None,
) -> list[LoaderResult]:
    """Time whole epochs of ``SaliconDataModule.train_dataloader()`` for each ``num_workers``, interleaved.

    Each loader runs one untimed epoch first (which starts its persistent workers). The main process uses
    ``threads`` torch threads while it loads (DataLoader workers always use 1), so that ``num_workers=0``
    measures one worker like the others.
    """
    previous_threads = torch.get_num_threads()
    torch.set_num_threads(threads)
    loaders = {}
    try:
        for count in workers:
            module = SaliconDataModule(root, image_size=image_size, batch_size=batch_size, num_workers=count,
                                       synthetic=synthetic, seed=0)
            module.setup("fit")
            loaders[count] = module.train_dataloader()
            _epoch_rate(loaders[count])  # warm-up: worker start, file cache
        results = {count: LoaderResult(count, []) for count in workers}
        for repeat in range(repeats):
            for count in workers:
                results[count].samples_per_second.append(_epoch_rate(loaders[count]))
                if progress:
                    progress(f"num_workers={count} repeat {repeat + 1}/{repeats}: "
                             f"{results[count].samples_per_second[-1]:.1f} samples/s")
        return [results[count] for count in workers]
    finally:
        loaders.clear()  # shuts the persistent workers down
        torch.set_num_threads(previous_threads)


# ----------------------------------------------------------------------------------------------- report






def _verdict(value: float, target: float) -> str:
    return "meets" if value >= target else "**misses**"


def format_training(results: Sequence[TrainResult], steps: int, warmup: int, batch_size: int, image_size: int,
                    fixation_hw: tuple[int, int], backbone: str = "vgg16") -> list[str]:
    """Markdown lines: one row per ``finetune.layers`` with median (min-max) steps/s and the ratio."""

    def cell(values: list[float]) -> str:
        return f"{statistics.median(values):.3f} ({min(values):.3f}-{max(values):.3f})"

    lines = [
        f"### Training: Lightning vs plain PyTorch loop (target >= {TRAIN_TARGET:.2f} x)",
        "",
        *([f"Backbone: {backbone}.", ""] if backbone != "vgg16" else []),
        f"Batch {batch_size} at {image_size} px, fixation maps {fixation_hw[0]}x{fixation_hw[1]}; {steps} timed "
        f"steps after {warmup} warm-up step(s) per run; {len(results[0].plain) if results else 0} alternating runs of "
        "each loop per setting. Steps/s: median (min-max) over the runs.",
        "",
        "| finetune.layers | plain loop steps/s | Lightning steps/s | Lightning / plain | target |",
        "|---|---:|---:|---:|---|",
    ]
    for result in results:
        lines.append(
            f"| {result.layers} | {cell(result.plain)} | {cell(result.lightning)} | {result.ratio:.3f} | "
            f"{_verdict(result.ratio, TRAIN_TARGET)} |"
        )
    return lines


def format_loaders(results: Sequence[LoaderResult], batch_size: int, image_size: int, num_train: int,
                   salicon_hw: tuple[int, int]) -> list[str]:
    """Markdown lines: one row per ``num_workers`` with samples/s, per worker, and the ratio to the target."""
    lines = [
        f"### Data: SaliconDataModule samples/s per worker (target >= {DATA_TARGET:.0f})",
        "",
        f"{num_train} SALICON-format training images of {salicon_hw[0]}x{salicon_hw[1]} (JPEG + 2017 .mat), "
        f"resized to {image_size} px, batch {batch_size}; whole epochs timed after one warm-up epoch, "
        "interleaved across settings; median over the epochs. Workers: 0 = the main process loads.",
        "",
        "| num_workers | samples/s (min-max) | per worker | per worker / target | target |",
        "|---:|---:|---:|---:|---|",
    ]
    for result in results:
        rates = result.samples_per_second
        ratio = result.per_worker / DATA_TARGET
        lines.append(
            f"| {result.num_workers} | {statistics.median(rates):.1f} ({min(rates):.1f}-{max(rates):.1f}) | "
            f"{result.per_worker:.1f} | {ratio:.2f} | {_verdict(ratio, 1.0)} |"
        )
    return lines


# ----------------------------------------------------------------------------------------------- command line


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, default=1,
                        help="torch threads for training (1: steadiest on a shared machine, see the docs)")
    parser.add_argument("--layers", nargs="+", default=["1", "all"], help="finetune.layers settings")
    parser.add_argument("--backbone", default="vgg16", help="backbone name (vgg16, resnet18, resnet50, ...)")
    parser.add_argument("--image-size", type=int, default=112, help="training input size (px)")
    parser.add_argument("--batch-size", type=int, default=4)
    parser.add_argument("--steps", type=int, default=10, help="timed training steps per run")
    parser.add_argument("--warmup", type=int, default=2, help="untimed training steps per run (>= 1)")
    parser.add_argument("--repeats", type=int, default=3, help="runs of each training loop per setting")
    parser.add_argument("--fixation-hw", type=int, nargs=2, default=SALICON_HW, metavar=("H", "W"))
    parser.add_argument("--workers", type=int, nargs="+", default=[0, 1, 2], help="num_workers settings")
    parser.add_argument("--data-images", type=int, default=96, help="synthetic SALICON training images")
    parser.add_argument("--data-hw", type=int, nargs=2, default=SALICON_HW, metavar=("H", "W"))
    parser.add_argument("--data-size", type=int, default=224, help="loader output size (px)")
    parser.add_argument("--data-batch", type=int, default=8)
    parser.add_argument("--data-repeats", type=int, default=3, help="timed epochs per num_workers setting")
    parser.add_argument("--data-threads", type=int, default=1, help="torch threads of the main process when it loads")
    parser.add_argument("--data-root", default=None, help="keep the synthetic set here (default: a temp folder)")
    parser.add_argument("--skip-train", action="store_true")
    parser.add_argument("--skip-data", action="store_true")
    parser.add_argument("--out", default=None, help="also write the Markdown tables to this file")
    args = parser.parse_args(argv)
    if args.warmup < 1:
        parser.error("--warmup must be >= 1 (the clock starts at the end of the last warm-up step)")
    return args


def main(argv: Sequence[str] | None = None) -> str:
    args = parse_args(argv)
    torch.set_num_threads(args.threads)

    def progress(message: str) -> None:
        print(f"  [{time.strftime('%H:%M:%S')}] {message}", flush=True)

    load_before = load_average()
    started = time.perf_counter()
    lines = [
        "## Training and data-loading throughput",
        "",
        f"Machine: {cpu_name()} ({os.cpu_count()} logical CPUs); torch threads: {args.threads} for training, "
        f"{args.data_threads} for loading in the main process; "
        f"torch {torch.__version__}, Lightning {pl.__version__}, Python {platform.python_version()}.",
        "",
    ]
    if not args.skip_train:
        fixation_hw = tuple(args.fixation_hw)
        results = compare_training(args.layers, args.repeats, args.steps, args.warmup, args.batch_size,
                                   args.image_size, fixation_hw, progress=progress, backbone=args.backbone)
        lines += format_training(results, args.steps, args.warmup, args.batch_size, args.image_size, fixation_hw,
                                 args.backbone)
        lines.append("")
    if not args.skip_data:
        root = Path(args.data_root) if args.data_root else Path(tempfile.mkdtemp(prefix="salicon_bench_")) / "set"
        try:
            progress(f"synthetic SALICON set in {root}")
            synthetic = make_salicon_set(root, args.data_images, tuple(args.data_hw))
            loaders = compare_loaders(root, synthetic, args.workers, args.data_repeats, args.data_batch,
                                      args.data_size, args.data_threads, progress=progress)
        finally:
            if not args.data_root:
                shutil.rmtree(root.parent, ignore_errors=True)
        lines += format_loaders(loaders, args.data_batch, args.data_size, args.data_images, tuple(args.data_hw))
        lines.append("")
    lines += [
        f"Load average (1 / 5 / 15 min) at the start {load_before}, at the end {load_average()}; "
        f"total {time.perf_counter() - started:.0f} s.",
        "",
    ]
    text = "\n".join(lines)
    print(text)
    if args.out:
        write_text(args.out, text)
    return text


if __name__ == "__main__":
    main()
