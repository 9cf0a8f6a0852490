"""Seconds per 400-px image of each classical saliency model on ONE core vs. the targets in docs/classical.md.

Usage: ``python benchmarks/classical_speed.py [--images 20] [--repeats 3] [--output docs/benchmarks_classical.md]``

The process is pinned to one CPU, BLAS/OpenMP pools are limited to one thread (set before numpy is imported)
and OpenCV runs single-threaded.  Images are the real OSIE stimuli (``../shared/data/osie/data/stimuli``) when
present, else seeded synthetic scenes, resized so the longer side is 400 px (BMS's working size).  Each image
is timed ``repeats`` times after a warm-up call (the fastest repeat is kept).  Both the process's CPU time
(``time.process_time``: the cost on one core, insensitive to other processes sharing the machine) and wall time
are reported; the ratio to the target uses the median CPU time.
"""

from __future__ import annotations

import os

for _var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS", "NUMEXPR_NUM_THREADS"):
    os.environ[_var] = "1"

import argparse  # noqa: E402
import platform  # noqa: E402
import statistics  # noqa: E402
import subprocess  # noqa: E402
import sys  # noqa: E402
import time  # noqa: E402
from pathlib import Path  # noqa: E402

import cv2  # noqa: E402
import numpy as np  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from saliency_probe.classical import build_classical  # noqa: E402
from saliency_probe.io_utils import write_text  # noqa: E402

OSIE_STIMULI = REPO.parent / "shared" / "data" / "osie" / "data" / "stimuli"
TARGETS_S = {"bms": 0.15, "gbvs": 1.0}  # the speed targets of docs/classical.md
MODELS = ("bms", "gbvs", "itti", "spectral_residual")
MAX_SIDE = 400


def pin_to_one_core() -> str:
    """Restrict this process to one CPU and OpenCV to one thread; return a description."""
    cv2.setNumThreads(1)
    if hasattr(os, "sched_setaffinity"):
        cpu = min(os.sched_getaffinity(0))
        os.sched_setaffinity(0, {cpu})
        return f"pinned to CPU {cpu}"
    return "not pinned (no sched_setaffinity)"


def cpu_model() -> str:
    try:
        out = subprocess.run(["lscpu"], capture_output=True, text=True, check=True).stdout
        for line in out.splitlines():
            if line.startswith("Model name:"):
                return line.split(":", 1)[1].strip()
    except (OSError, subprocess.CalledProcessError):
        pass
    return platform.processor() or "unknown CPU"


def resize_max_side(image: np.ndarray, side: int = MAX_SIDE) -> np.ndarray:
    height, width = image.shape[:2]
    scale = side / max(height, width)
    size = (max(1, round(width * scale)), max(1, round(height * scale)))
    return cv2.resize(image, size, interpolation=cv2.INTER_AREA)


def synthetic_image(seed: int) -> np.ndarray:
    """A seeded 400 x 300 scene: smooth coloured background with a few discs and bars."""
    rng = np.random.default_rng(seed)
    image = cv2.resize(
        rng.integers(0, 256, (6, 8, 3), dtype=np.uint8), (400, 300), interpolation=cv2.INTER_CUBIC
    )
    for _ in range(8):
        colour = tuple(int(c) for c in rng.integers(0, 256, 3))
        centre = (int(rng.integers(30, 370)), int(rng.integers(30, 270)))
        cv2.circle(image, centre, int(rng.integers(8, 30)), colour, -1)
    return image


def load_images(count: int) -> tuple[list[np.ndarray], str]:
    files = sorted(OSIE_STIMULI.glob("*.jpg"))[:count] if OSIE_STIMULI.is_dir() else []
    images = []
    for path in files:
        bgr = cv2.imread(str(path), cv2.IMREAD_COLOR)
        if bgr is None:
            raise ValueError(f"{path}: not a readable image (expected an OSIE JPEG stimulus)")
        images.append(resize_max_side(cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)))
    if images:
        where = os.path.relpath(OSIE_STIMULI, REPO)
        return images, f"OSIE stimuli ({len(images)} images from {where}, resized to {MAX_SIDE} px)"
    return [synthetic_image(seed) for seed in range(count)], f"synthetic scenes ({count}, 400x300)"


def time_model(name: str, images: list[np.ndarray], repeats: int) -> tuple[list[float], list[float]]:
    """Per image, the fastest repeat's (CPU seconds, wall seconds)."""
    model = build_classical(name)
    model(images[0])  # warm-up: caches (distance matrices, resize matrices, gamma table)
    cpu_times, wall_times = [], []
    for image in images:
        best_cpu = best_wall = float("inf")
        for _ in range(repeats):
            cpu_start, wall_start = time.process_time(), time.perf_counter()
            model(image)
            best_cpu = min(best_cpu, time.process_time() - cpu_start)
            best_wall = min(best_wall, time.perf_counter() - wall_start)
        cpu_times.append(best_cpu)
        wall_times.append(best_wall)
    return cpu_times, wall_times


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=20)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--output", type=Path, default=REPO / "docs" / "benchmarks_classical.md")
    args = parser.parse_args()

    pinning = pin_to_one_core()
    images, source = load_images(args.images)
    cpu = cpu_model()
    print(f"CPU: {cpu}; {pinning}; images: {source}")
    rows = []
    load_before = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    for name in MODELS:
        cpu_times, wall_times = time_model(name, images, args.repeats)
        median = statistics.median(cpu_times)
        wall = statistics.median(wall_times)
        target = TARGETS_S.get(name)
        ratio = f"{median / target:.2f}" if target else "-"
        verdict = ("meets" if median <= target else "MISSES") if target else "no target"
        print(
            f"{name:18s} CPU median {median:.4f} s/img  worst {max(cpu_times):.4f}  wall median {wall:.4f}  "
            f"target {target or '-'}  ratio {ratio}"
        )
        rows.append(
            f"| {name} | {median:.4f} | {max(cpu_times):.4f} | {wall:.4f} | {target if target else '-'} "
            f"| {ratio} | {verdict} |"
        )
    load_after = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    table = "\n".join(
        [
            "| model | median CPU s/img | worst CPU s/img | median wall s/img | target s | CPU median / target "
            "| verdict |",
            "|---|---|---|---|---|---|---|",
            *rows,
        ]
    )
    text = (
        "# Classical saliency models: speed on one core\n\n"
        f"Measured by `python benchmarks/classical_speed.py --images {args.images} --repeats {args.repeats}` on "
        f"**{cpu}**, {pinning}, OpenCV and BLAS/OpenMP limited to one thread. Images: {source}. "
        "Per image the fastest of the repeats after a warm-up call; targets from docs/classical.md "
        "(BMS <= 0.15 s, GBVS <= 1 s per 400-px image on one core). CPU time is the process's own time on its "
        f"core; wall time also counts waiting for other processes (1-minute load average {load_before:.1f} before, "
        f"{load_after:.1f} after the run).\n\n"
        f"{table}\n"
    )
    write_text(args.output, text)
    print(f"wrote {args.output}")


if __name__ == "__main__":
    main()
