"""Cost of the inner-representation probe: time for all probed layers against a forward pass of the same trunk
on the same images (target <= 1.15, docs/protocol.md, Targets), and peak memory for 10 vs 100 images (target: flat).

Data: the embedded synthetic set's OSIE + OSIE-SR part at OSIE's size (600x800), generated under ``--root`` on
first use. The timing runs on batches held in memory (both sides see the same tensors, no I/O); the memory runs
stream the data set through ``trainer.predict`` in a fresh process each, as ``probe.py`` does. Run:

    python benchmarks/probe_speed.py                                    # print the tables
    python benchmarks/probe_speed.py --out docs/benchmarks_probe.md      # and write them
    python benchmarks/probe_speed.py --device cuda --batch-size 32       # on a GPU
    python benchmarks/probe_speed.py --backbone resnet50                 # another trunk, its default layers
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import statistics
import subprocess
import sys
import time
import warnings
from collections.abc import Callable
from pathlib import Path

import torch

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from saliency_probe.data.datamodules import OsieSrDataModule  # noqa: E402
from saliency_probe.io_utils import write_text  # noqa: E402
from saliency_probe.models.backbone import architecture, build_trunk  # noqa: E402
from saliency_probe.probe.module import RegionProbeModule  # noqa: E402

LAYERS = ["conv4_1", "conv4_2", "conv4_3", "conv5_1", "conv5_2", "conv5_3"]  # VGG-16's default layers


#: ``--layers`` (None: the backbone's default layers).
CHOSEN_LAYERS: list[str] | None = None


def probe_layers(backbone: str) -> list[str]:
    """``--layers``, else the backbone's default probe layers (its last two stages; VGG-16: ``LAYERS``)."""
    return architecture(backbone).ordered(CHOSEN_LAYERS)


def forward_name(backbone: str) -> str:
    return f"forward only (trunk to {architecture(backbone).table.head})"


def probe_name(backbone: str, control: bool = False) -> str:
    count = len(probe_layers(backbone))
    return f"probe, {count} layers" + (" + shuffled-region control" if control else "")


def datamodule(args: argparse.Namespace, limit: int | None) -> OsieSrDataModule:
    """The synthetic OSIE + OSIE-SR set at OSIE's image size (made once, reused)."""
    module = OsieSrDataModule(
        root=args.root,
        synthetic=True,
        seed=0,
        num_train=2,
        num_val=2,
        num_probe=args.num_probe,
        salicon_hw=(64, 64),
        osie_hw=tuple(args.osie_hw),
        num_observers=15,
        image_size=args.image_size,
        batch_size=args.batch_size,
        num_workers=args.workers,
        limit=limit,
    )
    module.setup("predict")
    return module


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def timed(fn: Callable[[], None], device: torch.device) -> float:
    sync(device)
    start = time.perf_counter()
    fn()
    sync(device)
    return time.perf_counter() - start


def to_device(batch: dict, device: torch.device) -> dict:
    out = dict(batch)
    for key in ("image", "fixations"):
        out[key] = batch[key].to(device, non_blocking=True)
    out["region_masks"] = [m.to(device, non_blocking=True) for m in batch["region_masks"]]
    return out


def timing(args: argparse.Namespace, device: torch.device) -> dict:
    """Best and median seconds of forward-only, probe, and probe with the shuffled control, interleaved."""
    data = datamodule(args, limit=args.images)
    batches = [to_device(batch, device) for batch in data.predict_dataloader()]
    n_images = sum(len(b["image"]) for b in batches)
    trunk = build_trunk(args.weights, args.backbone).to(device).eval()
    layers = probe_layers(args.backbone)
    probe = RegionProbeModule(trunk, layers, data.categories, shuffled_control=False).to(device)
    control = RegionProbeModule(trunk, layers, data.categories, shuffled_control=True).to(device)
    autocast = torch.autocast(device.type, dtype=torch.bfloat16, enabled=args.bf16)

    def forward() -> None:
        with torch.no_grad(), autocast:
            for batch in batches:
                trunk(batch["image"])

    def run(module: RegionProbeModule) -> Callable[[], None]:
        def go() -> None:
            module.on_predict_start()  # resets the metrics
            with torch.no_grad(), autocast:
                for index, batch in enumerate(batches):
                    module.predict_step(batch, index)
            for metric in module.region_nss.values():
                metric.compute()

        return go

    methods = {
        forward_name(args.backbone): forward,
        probe_name(args.backbone): run(probe),
        probe_name(args.backbone, control=True): run(control),
    }
    for fn in methods.values():  # warm-up
        fn()
    times: dict[str, list[float]] = {name: [] for name in methods}
    for _ in range(args.repeats):
        for name, fn in methods.items():
            times[name].append(timed(fn, device))
    return {"images": n_images, "times": times}


def memory_run(args: argparse.Namespace) -> None:
    """One streaming ``trainer.predict`` over ``--memory-run`` images; print peak memory as JSON."""
    import pytorch_lightning as pl

    device = torch.device(args.device)
    data = datamodule(args, limit=args.memory_run)
    module = RegionProbeModule(build_trunk(args.weights, args.backbone), probe_layers(args.backbone), data.categories,
                               shuffled_control=True)
    trainer = pl.Trainer(
        accelerator="gpu" if device.type == "cuda" else "cpu",
        devices=1,
        logger=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        precision="bf16-mixed" if args.bf16 else "32-true",
    )
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats()
    start = time.perf_counter()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        trainer.predict(module, datamodule=data, return_predictions=False)
    seconds = time.perf_counter() - start
    peak_rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KiB -> MiB on Linux
    cuda = torch.cuda.max_memory_allocated() / 2**20 if device.type == "cuda" else None
    print(
        json.dumps(
            {"images": len(data.dataset), "peak_rss_mib": peak_rss, "cuda_peak_mib": cuda, "seconds": seconds}
        )
    )


def memory(args: argparse.Namespace, sizes: list[int]) -> list[dict]:
    out = []
    for size in sizes:
        command = [sys.executable, __file__, "--memory-run", str(size), *passthrough(args)]
        result = subprocess.run(command, capture_output=True, text=True, check=False, cwd=REPO)
        if result.returncode != 0:
            raise RuntimeError(f"memory run with {size} images failed:\n{result.stderr[-3000:]}")
        out.append(json.loads(result.stdout.strip().splitlines()[-1]))
    return out


def passthrough(args: argparse.Namespace) -> list[str]:
    flags = [
        "--root",
        str(args.root),
        "--num-probe",
        str(args.num_probe),
        "--image-size",
        str(args.image_size),
        "--batch-size",
        str(args.batch_size),
        "--workers",
        str(args.workers),
        "--device",
        args.device,
        "--threads",
        str(args.threads),
        "--osie-hw",
        *map(str, args.osie_hw),
        "--backbone",
        args.backbone,
        *(["--layers", *args.layers] if args.layers else []),
    ]
    if args.weights:
        flags += ["--weights", args.weights]
    if args.bf16:
        flags.append("--bf16")
    return flags


def machine(device: torch.device) -> str:
    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    try:
        name = next(
            line.split(":", 1)[1].strip() for line in open("/proc/cpuinfo") if line.startswith("model name")
        )
    except (OSError, StopIteration):
        name = platform.processor() or "unknown CPU"
    return f"{name} ({os.cpu_count()} logical CPUs), {torch.get_num_threads()} torch threads"


def report(args: argparse.Namespace, device: torch.device, speed: dict, mem: list[dict], load: str) -> str:
    times = speed["times"]
    base = forward_name(args.backbone)
    layers = probe_layers(args.backbone)
    trunk = "VGG-16" if args.backbone == "vgg16" else args.backbone
    best0, median0 = min(times[base]), statistics.median(times[base])
    lines = [
        "## Probe: time and memory",
        "",
        f"Machine: {machine(device)}, device `{device}`{' (bf16 autocast)' if args.bf16 else ''}, torch "
        f"{torch.__version__}, Python {platform.python_version()}. Data: {speed['images']} synthetic OSIE-format "
        f"images of {args.osie_hw[0]}x{args.osie_hw[1]} with OSIE-SR regions, input {args.image_size} px, batch "
        f"{args.batch_size}, layers {', '.join(layers)} (one forward pass), random-initialised {trunk} "
        f"(the cost does not depend on the weights). Best and median of {args.repeats} interleaved runs after a "
        f"warm-up, batches held in memory; load average at the start {load}.",
        "",
        "| run | best (s) | median (s) | per image (ms, best) | ratio to forward (best / median) |",
        "|---|---:|---:|---:|---:|",
    ]
    for name, values in times.items():
        best, median = min(values), statistics.median(values)
        lines.append(
            f"| {name} | {best:.3f} | {median:.3f} | {1000 * best / speed['images']:.1f} | "
            f"{best / best0:.3f} / {median / median0:.3f} |"
        )
    probe = statistics.median(times[probe_name(args.backbone)]) / median0
    verdict = "met" if probe <= 1.15 else "**not met**"
    lines += [
        "",
        f"Target: probe <= 1.15 x forward (docs/protocol.md, Targets): {verdict} here (median ratio {probe:.3f}).",
        "",
        f"Peak memory of a streaming `trainer.predict` ({len(layers)} layers + shuffled control), one fresh process "
        "each:",
        "",
        "| images | peak RSS (MiB) | peak CUDA allocated (MiB) | seconds |",
        "|---:|---:|---:|---:|",
    ]
    for entry in mem:
        cuda = "–" if entry["cuda_peak_mib"] is None else f"{entry['cuda_peak_mib']:.0f}"
        lines.append(f"| {entry['images']} | {entry['peak_rss_mib']:.0f} | {cuda} | {entry['seconds']:.1f} |")
    if len(mem) >= 2:
        lines += [
            "",
            f"Peak RSS ratio {mem[-1]['images']} / {mem[0]['images']} images: "
            f"{mem[-1]['peak_rss_mib'] / mem[0]['peak_rss_mib']:.3f} (flat = 1).",
        ]
    flags = reproduce_flags(args)
    lines += [
        "",
        f"Reproduce: `{' '.join(['python benchmarks/probe_speed.py', *([flags] if flags else [])])}`.",
    ]
    return "\n".join(lines) + "\n"


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--root", type=Path, default=REPO / "data" / "bench_probe", help="synthetic data folder"
    )
    parser.add_argument("--num-probe", type=int, default=100, help="images in the synthetic set (>= 100)")
    parser.add_argument("--images", type=int, default=16, help="images in the timing runs")
    parser.add_argument("--osie-hw", type=int, nargs=2, default=(600, 800), metavar=("H", "W"))
    parser.add_argument("--image-size", type=int, default=224)
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--workers", type=int, default=0)
    parser.add_argument("--weights", default=None, help="backbone.weights (default: random initialisation)")
    parser.add_argument("--backbone", default="vgg16", help="backbone name (vgg16, resnet18, resnet50, ...)")
    parser.add_argument("--layers", nargs="+", default=None, help="probed layers (default: the backbone's default)")
    parser.add_argument("--device", default="cpu", help="cpu or cuda")
    parser.add_argument("--bf16", action="store_true", help="bf16 autocast (bf16-mixed on the Trainer)")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--repeats", type=int, default=5, help="interleaved timing runs (report medians)")
    parser.add_argument("--memory-sizes", default="10,100", help="image counts of the memory runs")
    parser.add_argument("--memory-run", type=int, default=None, help=argparse.SUPPRESS)
    parser.add_argument("--out", default=None, help="write the Markdown section here")
    return parser


def reproduce_flags(args: argparse.Namespace) -> str:
    """The command-line flags of this run that differ from their defaults (``--out`` and the internal
    ``--memory-run`` left out), in the parser's order: the "Reproduce" line."""
    defaults = vars(build_parser().parse_args([]))
    flags = []
    for dest, default in defaults.items():
        value = getattr(args, dest)
        if dest in {"out", "memory_run"} or value == default or (
                isinstance(value, (list, tuple)) and isinstance(default, (list, tuple))
                and list(value) == list(default)):
            continue
        option = "--" + dest.replace("_", "-")
        if isinstance(value, bool):
            flags.append(option)
        elif isinstance(value, (list, tuple)):
            flags.append(" ".join([option, *map(str, value)]))
        else:
            flags.append(f"{option} {value}")
    return " ".join(flags)


def main() -> None:
    parser = build_parser()
    args = parser.parse_args()
    global CHOSEN_LAYERS
    CHOSEN_LAYERS = args.layers
    torch.set_num_threads(args.threads)
    if args.memory_run is not None:
        memory_run(args)
        return
    device = torch.device(args.device)
    load = "n/a" if not hasattr(os, "getloadavg") else " / ".join(f"{x:.1f}" for x in os.getloadavg())
    datamodule(args, limit=1)  # generate the data set once, before any timing
    sizes = [int(size) for size in args.memory_sizes.split(",") if size]
    if max(sizes, default=0) > args.num_probe:
        raise SystemExit(f"--memory-sizes {sizes} need --num-probe >= {max(sizes)}")
    speed = timing(args, device)
    mem = memory(args, sizes)
    text = report(args, device, speed, mem, load)
    print(text)
    if args.out:
        write_text(args.out, text)


if __name__ == "__main__":
    main()
