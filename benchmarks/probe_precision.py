"""What bfloat16 does to the probe's numbers: bf16 (autocast) against float32, side by side in one run.

The same random-init VGG-16 trunk (seeded) and the same images are probed twice, through the probe's own pass
(:class:`~saliency_probe.probe.module.RegionProbeModule` under ``pl.Trainer(precision=...)``, as ``probe.py``
runs it with ``probe_precision=fp32`` / ``bf16``), and once more per precision for the per-region values. It
reports, per probed layer and over all of them:

- max |delta| of the per-region Eq. 1 values (every unit x every region with fixations; also the median and the
  99th percentile of |delta|);
- max |delta| of the top-10 means per layer and category (Section 4.3);
- the units whose category mean crosses T = 1.5 between the precisions, and the change of the counts above T;
- the wall time of each precision's pass.

Data: the real OSIE images and fixations (``--osie``, default ``../shared/data/osie``) when present, with regions
built from the fixations (fixation clusters, the one category ``salient region``: the OSIE-SR annotation is not
public; docs/regions.md); else the embedded synthetic OSIE + OSIE-SR set (9 categories). Run:

    python benchmarks/probe_precision.py                                   # 32 OSIE images at 224 px
    python benchmarks/probe_precision.py --out docs/benchmarks_precision.md
    python benchmarks/probe_precision.py --synthetic --images 8 --image-size 64   # tiny, no OSIE needed
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import tempfile
import time
import warnings
from pathlib import Path
from typing import Any

import numpy as np
import pytorch_lightning as pl
import torch

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from saliency_probe.data.datamodules import OsieSrDataModule  # noqa: E402
from saliency_probe.data.regions_dataset import RegionSetDataModule  # noqa: E402
from saliency_probe.io_utils import write_text  # noqa: E402
from saliency_probe.machine import cpu_name, load_average  # noqa: E402
from saliency_probe.metrics import functional as MF  # noqa: E402
from saliency_probe.models.backbone import architecture, build_trunk  # noqa: E402
from saliency_probe.probe.activations import LayerActivations  # noqa: E402
from saliency_probe.probe.module import RegionProbeModule  # noqa: E402
from saliency_probe.probe.precision import PRECISIONS, forward_precision  # noqa: E402

OSIE = REPO.parent / "shared" / "data" / "osie"


def datamodule(args: argparse.Namespace, scratch: Path) -> tuple[pl.LightningDataModule, str]:
    """The real OSIE images with fixation-cluster regions (when present and not ``--synthetic``), else the
    synthetic OSIE + OSIE-SR set; the first ``--images`` images at ``--image-size``."""
    osie = Path(args.osie)
    if not args.synthetic and (osie / "data" / "eye" / "fixations.mat").is_file():
        module: pl.LightningDataModule = RegionSetDataModule(
            root=osie, regions_root=Path(args.regions_root) if args.regions_root else scratch / "osie_regions",
            format="osie", annotations=None, image_size=args.image_size, batch_size=args.batch_size,
            limit=args.images)
        shown = os.path.relpath(osie.absolute(), REPO)
        text = (f"real OSIE (`{shown}`: 800x600 images, 15 observers), the first images; regions built from the "
                "fixations (mean-shift clusters, 24 px, >= 3 observers; one category, `salient region`)")
    else:
        module = OsieSrDataModule(root=scratch / "synthetic", synthetic=True, seed=0, num_train=2, num_val=2,
                                  num_probe=args.images, salicon_hw=(64, 64), osie_hw=(300, 400), num_observers=8,
                                  image_size=args.image_size, batch_size=args.batch_size, limit=args.images)
        text = "the synthetic OSIE + OSIE-SR set (300x400 images, 8 observers, planted categorised regions)"
    module.prepare_data()
    module.setup("predict")
    return module, text


def random_trunk(seed: int) -> torch.nn.Module:
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        return build_trunk(None, "vgg16").eval()


def probe_pass(trunk: torch.nn.Module, data: pl.LightningDataModule, layers: list[str], categories: list[str],
               precision: str) -> tuple[dict[str, np.ndarray], float]:
    """The probe's pass in ``precision`` (``pl.Trainer(precision=PRECISIONS[precision])``): per layer the
    ``(C, K)`` unit means, and the wall seconds of ``trainer.predict``."""
    module = RegionProbeModule(trunk, layers, categories, shuffled_control=False)
    trainer = pl.Trainer(accelerator="cpu", devices=1, logger=False, enable_progress_bar=False,
                         enable_model_summary=False, enable_checkpointing=False, precision=PRECISIONS[precision])
    started = time.perf_counter()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        trainer.predict(module, datamodule=data, return_predictions=False)
    seconds = time.perf_counter() - started
    assert module.results is not None
    return {layer: result.unit_means for layer, result in module.results.items()}, seconds


@torch.no_grad()
def region_values(trunk: torch.nn.Module, data: pl.LightningDataModule, layers: list[str], precision: str
                  ) -> tuple[dict[str, np.ndarray], dict[str, np.ndarray]]:
    """Eq. 1 of every unit on every region (``(C, regions)`` per layer, NaN where a region holds no fixation),
    the forward in ``precision`` as the probe's pass runs it (metrics in float64); and, of the same shape, the
    share of zero (post-ReLU) pixels of the unit's map on the region's image."""
    extractor = LayerActivations(trunk, layers).eval()
    out: dict[str, list[np.ndarray]] = {layer: [] for layer in layers}
    zeros: dict[str, list[np.ndarray]] = {layer: [] for layer in layers}
    for batch in data.predict_dataloader():
        with forward_precision(precision, ("cpu",)):
            features = extractor(batch["image"])
        for i, masks in enumerate(batch["region_masks"]):
            if masks.shape[0] == 0:
                continue
            for layer in layers:
                maps = features[layer][i : i + 1]
                values = MF.region_nss(maps, batch["fixations"][i : i + 1], masks[None])[0]
                out[layer].append(values.numpy())
                share = (maps[0] == 0).float().mean(dim=(1, 2)).numpy()
                zeros[layer].append(np.repeat(share[:, None], values.shape[1], axis=1))
    return ({layer: np.concatenate(parts, axis=1) for layer, parts in out.items()},
            {layer: np.concatenate(parts, axis=1) for layer, parts in zeros.items()})


def top_k(means: np.ndarray, k: int) -> np.ndarray:
    """Per category: the mean of the ``k`` largest unit means (``means`` ``(C, K)``; NaN units left out)."""
    return np.array([float(MF.top_k_mean(torch.from_numpy(means[:, c].astype(np.float64)), k))
                     for c in range(means.shape[1])])


#: Maps with at least this share of zero pixels count as nearly dead (their z-scores amplify rounding).
SPARSE = 0.9


def compare(reference: dict[str, np.ndarray], other: dict[str, np.ndarray], regions_ref: dict[str, np.ndarray],
            regions_other: dict[str, np.ndarray], k: int, threshold: float,
            zeros: dict[str, np.ndarray] | None = None) -> list[dict[str, Any]]:
    """One row per layer (and an ``all`` row): the deltas of ``other`` against ``reference``; ``zeros`` (the
    float32 maps' share of zero pixels per unit and region) splits off the nearly dead maps."""
    rows = []
    for layer in reference:
        a, b = regions_ref[layer], regions_other[layer]
        finite = np.isfinite(a) & np.isfinite(b)
        delta = np.abs(a - b)[finite]
        alive = (zeros[layer] < SPARSE)[finite] if zeros is not None else np.ones_like(delta, dtype=bool)
        top_a, top_b = top_k(reference[layer], k), top_k(other[layer], k)
        above_a, above_b = reference[layer] > threshold, other[layer] > threshold
        rows.append({
            "layer": layer,
            "region_values": int(finite.sum()),
            "region_max": float(delta.max()), "region_median": float(np.median(delta)),
            "region_p99": float(np.percentile(delta, 99)),
            "region_max_alive": float(delta[alive].max()) if alive.any() else float("nan"),
            "top_fp32": float(np.nanmax(top_a)),
            "top_max": float(np.nanmax(np.abs(top_a - top_b))),
            "flips": int((above_a != above_b).sum()),
            "count_change": int(np.abs(above_a.sum(axis=0) - above_b.sum(axis=0)).max()),
            "above_fp32": int(above_a.sum()),
        })
    every = {
        "layer": "all",
        "region_values": sum(r["region_values"] for r in rows),
        "region_max": max(r["region_max"] for r in rows),
        "region_max_alive": float(np.nanmax([r["region_max_alive"] for r in rows])),
        "top_fp32": max(r["top_fp32"] for r in rows),
        "region_median": float(np.median(np.concatenate([np.abs(regions_ref[layer] - regions_other[layer])[
            np.isfinite(regions_ref[layer]) & np.isfinite(regions_other[layer])] for layer in reference]))),
        "region_p99": float(np.percentile(np.concatenate([np.abs(regions_ref[layer] - regions_other[layer])[
            np.isfinite(regions_ref[layer]) & np.isfinite(regions_other[layer])] for layer in reference]), 99)),
        "top_max": max(r["top_max"] for r in rows),
        "flips": sum(r["flips"] for r in rows),
        "count_change": max(r["count_change"] for r in rows),
        "above_fp32": sum(r["above_fp32"] for r in rows),
    }
    return [*rows, every]


def measure(args: argparse.Namespace) -> dict[str, Any]:
    """Both precisions on the same trunk and images; the comparison rows and the timings."""
    torch.set_num_threads(args.threads)
    with tempfile.TemporaryDirectory(prefix="probe_precision_") as scratch:
        data, text = datamodule(args, Path(scratch))
        dataset = data.predict_dataloader().dataset
        categories = list(getattr(dataset, "categories", None) or data.categories)
        layers = architecture("vgg16").ordered(args.layers)
        trunk = random_trunk(args.seed)
        means, seconds, regions = {}, {}, {}
        for precision in ("fp32", "bf16", "fp32", "bf16")[: 2 * args.repeats]:  # interleaved
            result, wall = probe_pass(trunk, data, layers, categories, precision)
            means[precision] = result
            seconds.setdefault(precision, []).append(wall)
        zeros = {}
        for precision in ("fp32", "bf16"):
            regions[precision], zeros[precision] = region_values(trunk, data, layers, precision)
        rows = compare(means["fp32"], means["bf16"], regions["fp32"], regions["bf16"], args.top_k, args.threshold,
                       zeros["fp32"])
        images = len(dataset)
    return {
        "data": text, "images": images, "image_size": args.image_size, "layers": layers, "categories": categories,
        "rows": rows, "seconds": {p: min(v) for p, v in seconds.items()}, "repeats": args.repeats,
        "top_k": args.top_k, "threshold": args.threshold,
        "machine": {"cpu": cpu_name(), "threads": args.threads, "load": load_average(),
                    "torch": torch.__version__, "lightning": pl.__version__, "python": platform.python_version()},
    }


def markdown(result: dict[str, Any], command: str) -> str:
    m, k, t = result["machine"], result["top_k"], result["threshold"]
    lines = [
        "# Probe precision: bf16 against float32 (`benchmarks/probe_precision.py`)",
        "",
        "The same random-init VGG-16 trunk (seed 0) and images, probed by the probe's own pass under "
        "`pl.Trainer(precision=\"32-true\")` (`probe_precision=fp32`, the default) and `\"bf16-mixed\"` "
        "(`probe_precision=bf16`: bfloat16 autocast on the CPU, what `trainer=gpu` gave before the probe pinned "
        "float32); the per-region values from a second forward per precision. Deltas are bf16 minus float32. "
        f"\"maps < {SPARSE:.0%} zero\": the largest delta among the unit maps (per image) with fewer than "
        f"{SPARSE:.0%} zero pixels after the ReLU in float32; the rest are nearly dead maps, whose few small "
        "values bfloat16 rounds coarsely and whose z-scores (divided by a tiny std) amplify it.",
        "",
        f"- Data: {result['data']}; {result['images']} images at {result['image_size']} px; layers "
        f"{', '.join(result['layers'])}; {len(result['categories'])} categor{'y' if len(result['categories']) == 1 else 'ies'}.",
        f"- Machine: {m['cpu']} (`lscpu` model name), {m['threads']} torch thread(s), load average {m['load']}; "
        f"torch {m['torch']} (CPU), Lightning {m['lightning']}, Python {m['python']}.",
        f"- Command: `{command}`.",
        "",
        f"| layer | unit x region values | max \\|delta\\| (Eq. 1) | median | 99th pct | max, maps < {SPARSE:.0%} zero "
        f"| largest top-{k} mean (fp32) | max \\|delta\\| top-{k} mean | units crossing T = {t:g} "
        "| max change of a count above T | unit means above T (fp32) |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for row in result["rows"]:
        lines.append(f"| {row['layer']} | {row['region_values']} | {row['region_max']:.4f} | {row['region_median']:.2e} "
                     f"| {row['region_p99']:.2e} | {row['region_max_alive']:.4f} | {row['top_fp32']:.3f} "
                     f"| {row['top_max']:.2e} | {row['flips']} | {row['count_change']} | {row['above_fp32']} |")
    s = result["seconds"]
    lines += [
        "",
        f"Wall time of the probe pass (best of {result['repeats']}): float32 {s['fp32']:.1f} s, bf16 "
        f"{s['bf16']:.1f} s (bf16 / fp32 = {s['bf16'] / s['fp32']:.2f}).",
        "",
    ]
    return "\n".join(lines)


def parse(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--osie", default=str(OSIE), help="OSIE folder (data/stimuli, data/eye/fixations.mat)")
    parser.add_argument("--regions-root", default=None, help="keep the built region set here (default: temporary)")
    parser.add_argument("--synthetic", action="store_true", help="the synthetic set even when OSIE is present")
    parser.add_argument("--images", type=int, default=32)
    parser.add_argument("--image-size", type=int, default=224)
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--layers", nargs="*", default=None, help="default: conv4_1 .. conv5_3")
    parser.add_argument("--top-k", type=int, default=10)
    parser.add_argument("--threshold", type=float, default=1.5)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--repeats", type=int, default=1, choices=[1, 2], help="timed passes per precision")
    parser.add_argument("--out", default=None, help="also write the Markdown report here")
    parser.add_argument("--json", default=None, help="also write the figures as JSON here")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> None:
    args = parse(argv)
    result = measure(args)
    words, kept = list(sys.argv[1:] if argv is None else argv), []
    while words:  # the command without the output flags
        word = words.pop(0)
        if word in ("--out", "--json"):
            words = words[1:]
        elif not word.startswith(("--out=", "--json=")):
            kept.append(word)
    command = " ".join(["python benchmarks/probe_precision.py", *kept])
    text = markdown(result, command)
    print(text)
    if args.out:
        write_text(Path(args.out), text)
    if args.json:
        write_text(Path(args.json), json.dumps(result, indent=1))


if __name__ == "__main__":
    main()
