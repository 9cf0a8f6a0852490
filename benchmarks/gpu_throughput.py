"""Training throughput (images/s) of the saliency model on a GPU: ``finetune.layers`` settings, bf16-mixed,
one device or DDP over the visible ones, on images and on cached features (``cache.features=true``).

Each setting trains a randomly initialised ``SaliencyModule`` with ``pytorch_lightning.Trainer`` (the
``FreezeLayers`` callback, no logger, no checkpoints, no progress bar) for ``--warmup`` + ``--steps`` steps on
in-memory samples: 224 px images and 480x640 binary fixation maps (SALICON's), cycled from a pool of 64, read
by a ``DataLoader`` with ``--workers`` workers (pinned memory). A callback stamps the end of every optimizer
step; images/s = timed steps x batch x world size / (end of the last step - end of the last warm-up step).
``cached`` settings train the same module with its trunk starting at the freeze boundary (``Trunk.start_at``)
on random activations of the boundary's shape, which is what a cached run computes per step; ``build`` is the
rate of the frozen prefix in inference (what building the cache costs per image). Under ``--strategy ddp``
Lightning starts one process per device by re-running this command, so every rank runs the same settings and
rank 0 prints. Run (``benchmarks/gpu.sh`` runs it):

    python benchmarks/gpu_throughput.py                                   # one GPU, layers 1 and all
    python benchmarks/gpu_throughput.py --strategy ddp --devices -1       # DDP over the visible GPUs
    python benchmarks/gpu_throughput.py --accelerator cpu --precision 32-true --image-size 64 --steps 3  # smoke
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
import time
import warnings
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pytorch_lightning as pl
import torch
from torch.utils.data import DataLoader, Dataset

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from saliency_probe.callbacks import FreezeLayers  # noqa: E402
from saliency_probe.models.saliency import SaliencyModule  # noqa: E402

FIXATION_HW = (480, 640)
POOL = 64


class Samples(Dataset):
    """``length`` samples cycled from a pool of ``POOL``: ``image`` (3 x S x S, or the boundary's C x h x w for
    cached settings) and a binary ``fixations`` map with 20 fixated pixels."""

    def __init__(self, length: int, shape: Sequence[int], seed: int = 0) -> None:
        generator = torch.Generator().manual_seed(seed)
        self.length = length
        self.images = torch.randn(POOL, *shape, generator=generator)
        flat = torch.zeros(POOL, FIXATION_HW[0] * FIXATION_HW[1])
        flat.scatter_(1, torch.randint(0, flat.shape[1], (POOL, 20), generator=generator), 1.0)
        self.fixations = flat.view(POOL, *FIXATION_HW)

    def __len__(self) -> int:
        return self.length

    def __getitem__(self, index: int) -> dict[str, torch.Tensor]:
        return {"image": self.images[index % POOL], "fixations": self.fixations[index % POOL]}


class StepClock(pl.Callback):
    def __init__(self) -> None:
        self.ends: list[float] = []

    def on_train_batch_end(self, trainer: pl.Trainer, *args: Any) -> None:
        if trainer.strategy.root_device.type == "cuda":
            torch.cuda.synchronize(trainer.strategy.root_device)
        self.ends.append(time.perf_counter())


class StartAtBoundary(pl.Callback):
    """Cached settings: the trunk takes the boundary activations (as ``cache.features=true`` sets it)."""

    def __init__(self, layers: str) -> None:
        self.layers = layers

    def on_fit_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        pl_module.trunk.start_at(pl_module.trunk.split(self.layers))


def boundary_shape(layers: str, image_size: int) -> tuple[int, ...]:
    from saliency_probe.feature_cache import boundary_shape as shape_of

    return shape_of("vgg16", layers, image_size)[1]


def train_rate(args: argparse.Namespace, layers: str, batch: int, cached: bool) -> tuple[float, int]:
    """Images/s of the timed steps and the world size."""
    torch.manual_seed(0)
    module = SaliencyModule(weights=None, finetune_layers=layers)
    shape = boundary_shape(layers, args.image_size) if cached else (3, args.image_size, args.image_size)
    world_guess = max(1, torch.cuda.device_count()) if args.devices == "-1" else int(args.devices)
    steps = args.warmup + args.steps
    data = DataLoader(Samples(steps * batch * world_guess, shape), batch_size=batch, shuffle=False,
                      num_workers=args.workers, pin_memory=args.accelerator == "gpu",
                      persistent_workers=args.workers > 0)
    clock = StepClock()
    trainer = pl.Trainer(
        accelerator=args.accelerator, devices=int(args.devices) if args.devices != "-1" else -1,
        strategy=args.strategy, precision=args.precision, max_steps=steps, max_epochs=1, logger=False,
        enable_checkpointing=False, enable_progress_bar=False, enable_model_summary=False, num_sanity_val_steps=0,
        log_every_n_steps=1000, callbacks=[FreezeLayers(layers), clock, *([StartAtBoundary(layers)] if cached else [])],
    )
    trainer.fit(module, train_dataloaders=data)
    timed = clock.ends[args.warmup:]
    seconds = timed[-1] - clock.ends[args.warmup - 1]
    return len(timed) * batch * trainer.world_size / seconds, trainer.world_size


def build_rate(args: argparse.Namespace, layers: str, batch: int) -> float:
    """Images/s of the frozen prefix in inference under the training precision (one device)."""
    device = torch.device("cuda" if args.accelerator == "gpu" else "cpu")
    torch.manual_seed(0)
    trunk = SaliencyModule(weights=None, finetune_layers=layers).trunk.to(device).eval()
    split = trunk.split(layers)
    images = torch.randn(batch, 3, args.image_size, args.image_size, device=device)
    autocast = torch.autocast(device.type, dtype=torch.bfloat16, enabled=args.precision.startswith("bf16"))
    with torch.no_grad(), autocast:
        for _ in range(args.warmup):
            trunk.run_modules(images, split.prefix)
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        start = time.perf_counter()
        for _ in range(args.steps):
            trunk.run_modules(images, split.prefix)
        if device.type == "cuda":
            torch.cuda.synchronize(device)
    return args.steps * batch / (time.perf_counter() - start)


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--accelerator", default="gpu")
    parser.add_argument("--devices", default="1", help="1, N or -1 (all visible)")
    parser.add_argument("--strategy", default="auto", help="auto or ddp")
    parser.add_argument("--precision", default="bf16-mixed")
    parser.add_argument("--layers", nargs="+", default=["1", "all"])
    parser.add_argument("--cached-layers", nargs="*", default=["0", "1"], help="settings also run on cached features")
    parser.add_argument("--batch-sizes", type=int, nargs="+", default=[5, 32], help="5: the paper's batch")
    parser.add_argument("--image-size", type=int, default=224)
    parser.add_argument("--steps", type=int, default=30)
    parser.add_argument("--warmup", type=int, default=5)
    parser.add_argument("--workers", type=int, default=4)
    return parser.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> None:
    args = parse_args(argv)
    for name in ("pytorch_lightning", "lightning.pytorch", "lightning.fabric"):
        logging.getLogger(name).setLevel(logging.ERROR)
    warnings.filterwarnings("ignore")
    torch.backends.cudnn.benchmark = True
    rank_zero = os.environ.get("LOCAL_RANK", "0") == "0" and os.environ.get("NODE_RANK", "0") == "0"
    rows = []
    for batch in args.batch_sizes:
        for layers in args.layers:
            rate, world = train_rate(args, layers, batch, cached=False)
            rows.append((layers, batch, "images", rate, world))
            if layers in args.cached_layers:
                rate, world = train_rate(args, layers, batch, cached=True)
                rows.append((layers, batch, "cached features", rate, world))
                if args.strategy == "auto":
                    rows.append((layers, batch, "cache build (prefix, inference)", build_rate(args, layers, batch), 1))
        for layers in args.cached_layers:
            if layers not in args.layers:
                rate, world = train_rate(args, layers, batch, cached=True)
                rows.append((layers, batch, "cached features", rate, world))
                if args.strategy == "auto":
                    rows.append((layers, batch, "cache build (prefix, inference)", build_rate(args, layers, batch), 1))
    if not rank_zero:
        return
    device = torch.cuda.get_device_name(0) if args.accelerator == "gpu" else "cpu"
    print(f"\n### Training throughput: {device}, {args.precision}, strategy {args.strategy}, {args.image_size} px, "
          f"{args.steps} timed steps after {args.warmup}, torch {torch.__version__}, Lightning {pl.__version__}\n")
    print("| finetune.layers | batch per device | input | devices | images/s |")
    print("|---|---:|---|---:|---:|")
    for layers, batch, what, rate, world in rows:
        print(f"| {layers} | {batch} | {what} | {world} | {rate:,.0f} |")
    sys.stdout.flush()


if __name__ == "__main__":
    main()
