"""The full saliency benchmark on the real OSIE data (700 images, 15 observers), timed per model.

Usage: ``python benchmarks/osie_benchmark.py [--root ../shared/data/osie] [--workers 2] [--limit N]
[--output docs/benchmarks_osie.md]``; ``--report-only`` rewrites the report from an earlier run's folder.

Runs ``probe.py analyses=[benchmark] data=osie`` through the real entry point's config (conf/probe.yaml), with
the models center_bias, inter_observer, bms, gbvs, itti and spectral_residual, in ``--workers`` processes. Then
a second metric pass over a few images of one model reads the cached maps, to show what the cache saves. The
Markdown report gives the machine, the table, the time per model, the NSS ordering with paired per-image
comparisons, and links the example figure (copied next to the report).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
os.environ.setdefault("WANDB_MODE", "disabled")

import numpy as np  # noqa: E402
from hydra import compose, initialize_config_dir  # noqa: E402

from saliency_probe.data.osie import OsieDataset  # noqa: E402
from saliency_probe.io_utils import write_json, write_text  # noqa: E402
from saliency_probe.machine import cpu_name  # noqa: E402
from saliency_probe.probe.runner import run_probe  # noqa: E402
from saliency_probe.probe.scoring import METRICS, BenchmarkSettings, score_images  # noqa: E402
from saliency_probe.report import files  # noqa: E402
from saliency_probe.report.benchmark import METRIC_TITLES  # noqa: E402
from saliency_probe.report.tables import markdown_table, read_csv  # noqa: E402

MODELS = ("center_bias", "inter_observer", "bms", "gbvs", "itti", "spectral_residual")
META_NAME = "benchmark_run.json"
EXPECTED = [("center_bias", "bms"), ("center_bias", "gbvs"), ("bms", "inter_observer"), ("gbvs", "inter_observer")]


def load() -> str:
    try:
        return " ".join(f"{value:.1f}" for value in os.getloadavg())
    except OSError:
        return "n/a"


def versions() -> str:
    import cv2
    import scipy
    import torch

    return f"Python {platform.python_version()}, torch {torch.__version__}, numpy {np.__version__}, " \
           f"scipy {scipy.__version__}, OpenCV {cv2.__version__}"


def git_revision() -> str:
    """The short commit, with "+ uncommitted changes" when the working tree differs from it."""
    try:
        head = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=REPO, capture_output=True, text=True,
                              check=False).stdout.strip() or "unknown"
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=REPO,
                               capture_output=True, text=True, check=False).stdout.strip()
    except OSError:
        return "unknown"
    return f"{head} + uncommitted changes" if dirty else head


def clipped_text(count: int) -> str:
    if count == 0:
        return "every fixation lies inside its image after rounding (none clipped)"
    return f"{count} fixations fell outside their image after rounding and were clipped to its border"


def paired(per_image: list[dict[str, str]], low: str, high: str) -> tuple[float, float, float, int]:
    """Mean and standard error of NSS(high) - NSS(low) over the images both scored, and the share where high wins."""
    by_model: dict[str, dict[str, float]] = {}
    for row in per_image:
        value = float(row["nss"])
        if np.isfinite(value):
            by_model.setdefault(row["model"], {})[row["image"]] = value
    common = sorted(set(by_model.get(low, {})) & set(by_model.get(high, {})))
    differences = np.array([by_model[high][image] - by_model[low][image] for image in common])
    if differences.size < 2:
        return float("nan"), float("nan"), float("nan"), int(differences.size)
    sem = differences.std(ddof=1) / np.sqrt(differences.size)
    return float(differences.mean()), float(sem), float((differences > 0).mean()), int(differences.size)


def cache_second_pass(root: Path, cache: Path, model: str, images: int) -> tuple[float, float, int]:
    """Seconds per image of a metric pass that reads ``model``'s cached maps, its map seconds, and cache hits."""
    data = OsieDataset(root)
    settings = BenchmarkSettings(specs=(model,), gt_sigma=24.0, cache_root=str(cache))
    started = time.perf_counter()
    _, timings = score_images(data, settings, list(range(images)))
    elapsed = time.perf_counter() - started
    return elapsed / images, timings[model].map_seconds / images, timings[model].cached


def ranks(rows: list[dict[str, str]]) -> list[list[str]]:
    """Per metric, the models from best to worst (KLD: lowest is best)."""
    table = []
    for metric in METRICS:
        ordered = sorted(rows, key=lambda row: float(row[metric]), reverse=metric != "kld")
        table.append([METRIC_TITLES[metric], " > ".join(f"{row['model']} {float(row[metric]):.3f}" for row in ordered)])
    return table


def report(run_dir: Path, summary: dict, meta: dict, figure: Path | None) -> str:
    """The Markdown report of a finished run (``meta``: command, machine, wall time, second pass)."""
    bench = summary["analyses"]["benchmark"]
    rows = read_csv(run_dir / files.table(files.BENCHMARK_CSV))
    per_image = read_csv(run_dir / files.table(files.BENCHMARK_PER_IMAGE_CSV))
    timing = bench["timing"]
    images = bench["images"]
    header = ["model", *(METRIC_TITLES[m] for m in METRICS), "images", "map s/img", "metric s/img",
              "process-min"]
    body = []
    for row in rows:
        t = timing[row["model"]]
        n = max(1, t["computed"] + t["cached"])
        nss = [float(r["nss"]) for r in per_image if r["model"] == row["model"] and np.isfinite(float(r["nss"]))]
        sem = statistics.stdev(nss) / np.sqrt(len(nss)) if len(nss) > 1 else float("nan")
        body.append([row["model"], f"{float(row['nss']):.3f} ± {sem:.3f}",
                     *(f"{float(row[m]):.3f}" for m in METRICS[1:]), row["n_images"],
                     f"{t['map_seconds'] / n:.3f}", f"{t['metric_seconds'] / n:.3f}",
                     f"{(t['map_seconds'] + t['metric_seconds']) / 60:.1f}"])
    nss = {row["model"]: float(row["nss"]) for row in rows}
    ranked = sorted(nss, key=nss.get)
    comparisons = []
    for low, high in EXPECTED:
        if low in nss and high in nss:
            mean, sem, share, count = paired(per_image, low, high)
            verdict = "holds" if nss[low] < nss[high] else "does NOT hold"
            comparisons.append([f"{low} < {high}", f"{nss[low]:.3f} < {nss[high]:.3f}", verdict,
                                f"{mean:+.3f} ± {sem:.3f}", f"{100 * share:.0f}% of {count}"])
    second = meta["second_pass"]
    lines = [
        "# Saliency benchmark on the real OSIE data",
        "",
        f"Measured by `{meta['command']}` (repository revision {meta['revision']}, {meta['date']}), through "
        "`probe.py analyses=[benchmark] data=osie` with the defaults of `BenchmarkOptions` "
        "(saliency_probe/probe/options.py).",
        "",
        f"- Machine: {meta['cpu']}, {meta['cpus']} logical CPUs shared with other jobs (load averages over 1, 5 "
        f"and 15 min: {meta['load_before']} before, {meta['load_after']} after); {meta['versions']}.",
        f"- Data: OSIE (Xu et al. 2014), `{meta['root']}`: {images} images of 800x600, 15 observers each, "
        "the original `fixations.mat`; coordinates rounded MATLAB-style (half away from zero), 0-based, unique "
        f"fixated pixels per image; {clipped_text(bench['data']['clipped_fixations'])}.",
        f"- Ground truth: unique fixated pixels blurred with sigma = {bench['gt_sigma']:g} px (about one degree, the "
        "authors' `params.eye.radius`).",
        f"- {bench['num_workers']} worker processes, one thread each; wall time {meta['wall_seconds'] / 60:.1f} min "
        f"for all models ({bench['wall_seconds'] / 60:.1f} min of scoring).",
        "",
        markdown_table(header, body),
        "",
        "NSS ± standard error over images. KLD: lower is better. inter_observer: each observer predicted from the "
        "other 14 (their unique fixated pixels blurred with the same sigma), scored on that observer's fixations "
        "(CC/KLD/SIM against that observer's own blurred map, so those three are not comparable with the models' "
        "rows, which use the 15-observer map), averaged over observers, then images. Times are process seconds "
        "(summed over the workers) per image: maps = computing the model's map; metrics = the six metrics (for "
        "inter_observer: 15 leave-one-observer-out maps and their metrics). The process-minutes add up to about "
        "workers x wall time when the machine is not oversubscribed.",
        "",
        "## The ordering a saliency researcher expects (NSS)",
        "",
        "Ranked, lowest first: " + " < ".join(f"{name} {nss[name]:.3f}" for name in ranked) + ".",
        "",
        markdown_table(["expected", "NSS", "verdict", "paired difference (high - low)", "images where high wins"],
                       comparisons),
        "",
        "Where every model falls, per metric (best first):",
        "",
        markdown_table(["metric", "models, best first (KLD: lowest first)"], ranks(rows)),
        "",
        "## Cached maps",
        "",
        f"A second metric pass over {second['images']} images of `{second['model']}` read {second['cached']} maps "
        f"from the cache: {second['seconds_per_image']:.3f} s per image in all, of which "
        f"{second['map_seconds_per_image']:.4f} s reading the map (computing it took "
        f"{timing[second['model']]['map_seconds'] / max(1, timing[second['model']]['computed']):.3f} s per image "
        "in the first pass).",
    ]
    if figure is not None:
        lines += ["", "## Example maps", "", f"![example maps]({figure.name})", "",
                  "First images of the data set: the image with its fixations, the ground truth, then each model "
                  "(min-max normalised); inter_observer shows the map that predicts observer 1 from the others."]
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--root", default=str(REPO.parent / "shared" / "data" / "osie"), help="OSIE folder")
    parser.add_argument("--workers", type=int, default=2, help="worker processes")
    parser.add_argument("--limit", type=int, default=None, help="first N images only (default: all)")
    parser.add_argument("--output", default=str(REPO / "docs" / "benchmarks_osie.md"), help="Markdown report")
    parser.add_argument("--run-dir", default=str(REPO / "outputs" / "benchmarks" / "osie"), help="probe run folder")
    parser.add_argument("--cache", default=None, help="map cache folder (default: a temporary folder, removed)")
    parser.add_argument("--second-images", type=int, default=20, help="images of the cached second pass")
    parser.add_argument("--report-only", action="store_true",
                        help="rewrite the report from the run folder of an earlier run (no benchmarking)")
    args = parser.parse_args()
    run_dir = Path(args.run_dir).absolute()
    output = Path(args.output)
    if args.report_only:
        write_report(run_dir, output)
        return
    root = Path(args.root).expanduser().absolute()
    if not (root / "data" / "eye" / "fixations.mat").is_file():
        raise SystemExit(f"no OSIE data at {root} (get it with python -m saliency_probe.data.download osie --out DIR)")
    run_dir.mkdir(parents=True, exist_ok=True)
    cache = Path(args.cache).absolute() if args.cache else Path(tempfile.mkdtemp(prefix="osie_map_cache_"))
    overrides = [
        "logger=none", "print_config=false", "progress_bar=false", "analyses=[benchmark]", "data=osie",
        f"data.root={root}", f"benchmark.models=[{','.join(MODELS)}]", f"benchmark.num_workers={args.workers}",
        f"benchmark.cache={cache}", "benchmark.gt_sigma=24",
        f"benchmark.limit={args.limit if args.limit else 'null'}",
    ]
    with initialize_config_dir(config_dir=str(REPO / "conf"), version_base="1.3"):
        cfg = compose("probe", overrides=overrides)
    before = load()
    started = time.perf_counter()
    cwd = Path.cwd()
    os.chdir(run_dir)  # outside Hydra's launcher the run folder is the current folder
    try:
        run_probe(cfg)
    finally:
        os.chdir(cwd)
    wall = time.perf_counter() - started
    after = load()
    second_model = "gbvs"
    per_image, map_seconds, cached = cache_second_pass(root, cache, second_model, args.second_images)
    command = "python benchmarks/osie_benchmark.py" + "".join(
        f" --{key.replace('_', '-')} {value}" for key, value in (("workers", args.workers), ("limit", args.limit))
        if value is not None)
    meta = {
        "command": command, "revision": git_revision(), "date": time.strftime("%Y-%m-%d"), "cpu": cpu_name(),
        "cpus": os.cpu_count(), "load_before": before, "load_after": after, "versions": versions(),
        "root": str(root), "wall_seconds": wall,
        "second_pass": {"model": second_model, "images": args.second_images, "seconds_per_image": per_image,
                        "map_seconds_per_image": map_seconds, "cached": cached},
    }
    write_json(run_dir / META_NAME, meta)
    if not args.cache:
        shutil.rmtree(cache, ignore_errors=True)
    write_report(run_dir, output)
    print(output.read_text())


def write_report(run_dir: Path, output: Path) -> None:
    """Write the Markdown report and copy the example figure next to it, from a finished run folder."""
    summary = json.loads((run_dir / files.SUMMARY).read_text(encoding="utf-8"))
    meta = json.loads((run_dir / META_NAME).read_text(encoding="utf-8"))
    figure = None
    source_png = run_dir / files.FIGURES_DIR / files.BENCHMARK_FIGURE
    if source_png.is_file():
        figure = output.parent / "benchmarks_osie_examples.png"
        shutil.copyfile(source_png, figure)
    write_text(output, report(run_dir, summary, meta, figure))


if __name__ == "__main__":
    main()
