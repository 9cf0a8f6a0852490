"""Speed and exactness of region NSS (Eq. 1) for one image and one layer: the authors' per-map resize loop,
the batched full-resolution computation, and the exact small-map algebra of ``region_nss``.

Defaults follow docs/protocol.md, Exact small-map algebra: 512 units of 14x14 (conv5_3), an 800x600 OSIE image, 5 regions, about
150 unique fixated pixels. Run:

    python benchmarks/metrics_speed.py                       # print the table
    python benchmarks/metrics_speed.py --out docs/benchmarks_metrics.md
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import time
from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch import Tensor

from saliency_probe.io_utils import write_text
from saliency_probe.machine import cpu_name
from saliency_probe.metrics.functional import region_nss


def make_inputs(units: int, small: int, height: int, width: int, regions: int, fixations: int, seed: int = 0):
    """Post-ReLU-like activations (with dead units), binary fixations and rectangular region masks."""
    gen = torch.Generator().manual_seed(seed)
    act = torch.relu(torch.randn(1, units, small, small, generator=gen))
    act[:, ::17] = 0  # dead units
    fix = torch.zeros(1, height, width, dtype=torch.bool)
    ys = torch.randint(0, height, (fixations,), generator=gen)
    xs = torch.randint(0, width, (fixations,), generator=gen)
    fix[0, ys, xs] = True
    masks = torch.zeros(1, regions, height, width, dtype=torch.bool)
    for r in range(regions):
        y0, x0 = (
            int(torch.randint(0, height // 2, (1,), generator=gen)),
            int(torch.randint(0, width // 2, (1,), generator=gen)),
        )
        masks[0, r, y0 : y0 + height // 3, x0 : x0 + width // 3] = True
    return act, fix, masks


def per_map_loop(act: Tensor, fix: Tensor, masks: Tensor) -> Tensor:
    """The authors' procedure: resize each unit's map to the image, z-score it, average over each region."""
    size = fix.shape[-2:]
    selections = [fix[0] & masks[0, r] for r in range(masks.shape[1])]
    out = torch.full((act.shape[1], len(selections)), float("nan"))
    for c in range(act.shape[1]):
        big = F.interpolate(act[:, c : c + 1], size=size, mode="bilinear", align_corners=False)[0, 0]
        std = big.std(unbiased=False)
        z = (big - big.mean()) / std if std > 0 else torch.zeros_like(big)
        for r, sel in enumerate(selections):
            if sel.any():
                out[c, r] = z[sel].mean()
    return out


def batched_full_resolution(act: Tensor, fix: Tensor, masks: Tensor, chunk: int = 128) -> Tensor:
    """All maps resized at once (in chunks of units to bound memory), z-scored, gathered per region."""
    size = fix.shape[-2:]
    selections = (fix[:, None] & masks)[0].flatten(1)  # (R, H*W)
    counts = selections.sum(1)
    weights = selections.float() / counts.clamp(min=1)[:, None]
    parts = []
    for start in range(0, act.shape[1], chunk):
        big = F.interpolate(act[:, start : start + chunk], size=size, mode="bilinear", align_corners=False)[0]
        flat = big.flatten(1)
        mean, std = flat.mean(1, keepdim=True), flat.std(1, unbiased=False, keepdim=True)
        z = torch.where(std > 0, (flat - mean) / std.clamp(min=1e-30), torch.zeros_like(flat))
        parts.append(z @ weights.T)
    out = torch.cat(parts)
    return torch.where(counts > 0, out, torch.full_like(out, float("nan")))


def exact_small_map(act: Tensor, fix: Tensor, masks: Tensor) -> Tensor:
    return region_nss(act, fix, masks)[0]


def timed(fn: Callable[[], Tensor], repeats: int, device: torch.device) -> tuple[float, float, Tensor]:
    """Best and median wall time of ``repeats`` calls (after one warm-up call), and the last result.

    The best time is the figure least disturbed by other work on a shared machine.
    """

    def sync() -> None:
        if device.type == "cuda":
            torch.cuda.synchronize(device)

    result = fn()
    sync()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        result = fn()
        sync()
        times.append(time.perf_counter() - start)
    return min(times), statistics.median(times), result.cpu()




def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--units", type=int, default=512)
    parser.add_argument("--small", type=int, default=14)
    parser.add_argument("--height", type=int, default=600)
    parser.add_argument("--width", type=int, default=800)
    parser.add_argument("--regions", type=int, default=5)
    parser.add_argument("--fixations", type=int, default=150)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--repeats", type=int, default=3, help="timed calls of the loop and batched methods")
    parser.add_argument("--device", default="cpu", help="cpu or cuda")
    parser.add_argument("--out", default=None, help="write the Markdown figures section here")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    inputs = make_inputs(args.units, args.small, args.height, args.width, args.regions, args.fixations)
    act, fix, masks = (x.to(device) for x in inputs)
    exact_repeats = max(30, 10 * args.repeats)
    load = "n/a" if not hasattr(os, "getloadavg") else " / ".join(f"{x:.1f}" for x in os.getloadavg())

    t_loop, m_loop, ref = timed(lambda: per_map_loop(act, fix, masks), args.repeats, device)
    t_batch, m_batch, batched = timed(lambda: batched_full_resolution(act, fix, masks), args.repeats, device)
    t_exact, m_exact, exact = timed(lambda: exact_small_map(act, fix, masks), exact_repeats, device)
    reference64 = per_map_loop(inputs[0].double(), inputs[1], inputs[2])  # float64 loop: the exact values

    def err(x: Tensor) -> str:
        finite = torch.isfinite(reference64)
        diff = (x.double() - reference64)[finite].abs()
        rel = diff / reference64[finite].abs().clamp(min=1e-12)
        return f"{diff.max().item():.1e} / {rel.max().item():.1e}"

    rows = [
        ("per-map resize loop (authors')", t_loop, m_loop, ref),
        ("batched full-resolution resize", t_batch, m_batch, batched),
        ("exact small-map algebra (`region_nss`)", t_exact, m_exact, exact),
    ]
    setup = (
        f"{args.units} units of {args.small}x{args.small}, one {args.width}x{args.height} image, "
        f"{args.regions} regions, {int(inputs[1].sum())} unique fixated pixels"
    )
    machine = f"{cpu_name()} ({os.cpu_count()} logical CPUs), {args.threads} torch threads"
    if device.type == "cuda":
        machine = f"{torch.cuda.get_device_name(device)}; host {machine}"
    lines = [
        "## Metrics: region NSS (Eq. 1) for one image and one layer",
        "",
        f"Machine: {machine}, device `{device}`, torch {torch.__version__}, Python {platform.python_version()}. "
        f"Setup: {setup}. Best and median of {args.repeats} calls ({exact_repeats} for `region_nss`) after one "
        f"warm-up; load average at the start {load}. Speed-ups: best / best and median / median. Errors: max "
        "absolute / max relative difference from the per-map loop run in float64.",
        "",
        "| method | best (s) | median (s) | speed-up vs loop (best / median) | max error abs / rel |",
        "|---|---:|---:|---:|---|",
    ]
    for name, best, median, values in rows:
        speedup = f"{t_loop / best:.0f}x / {m_loop / median:.0f}x"
        lines.append(f"| {name} | {best:.4f} | {median:.4f} | {speedup} | {err(values)} |")
    lines += ["", "Reproduce: `python benchmarks/metrics_speed.py --out docs/benchmarks_metrics.md`.", ""]
    text = "\n".join(lines)
    print(text)
    if args.out:
        write_text(args.out, text)


if __name__ == "__main__":
    main()
