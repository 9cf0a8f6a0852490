"""Cluster-only salient regions for all 700 real OSIE images: counts, sizes, fixations held and time.

Usage: ``python benchmarks/regions_osie.py [--osie ../shared/data/osie] [--bandwidth 24] [--min-observers 3]
[--method meanshift] [--out DIR] [--json FILE]``

Builds the region set with ``saliency_probe.data.regions`` (no annotation: each region is its cluster's blob,
category ``salient region``) into ``--out`` (default: a temporary folder, removed afterwards) and prints a
Markdown table: regions per image, region size (share of the image), the share of each image's fixations that
lie inside its regions, and the build's wall and CPU time. The figures of docs/regions.md come from it.
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from saliency_probe.data.osie_sr import read_label_map  # noqa: E402
from saliency_probe.data.regions_build import BuildRequest, BuildSettings, build_regions  # noqa: E402
from saliency_probe.data.regions_fixations import FixationSource, read_fixation_images  # noqa: E402
from saliency_probe.machine import cpu_name, load_average  # noqa: E402
from saliency_probe.report.tables import read_csv  # noqa: E402

OSIE = REPO.parent / "shared" / "data" / "osie"


def measure(osie: Path, settings: BuildSettings, out: Path) -> dict:
    """Build the set into ``out`` and return its figures."""
    request = BuildRequest(FixationSource("osie", osie), None, "coco", settings)
    wall, cpu = time.perf_counter(), time.process_time()
    record = build_regions(request, out)
    wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
    images, _ = read_fixation_images(request.fixations)
    rows = read_csv(out / "regions.csv")
    per_image = {image.stem: [] for image in images}
    for row in rows:
        per_image[row["image"]].append(row)
    counts = np.array([len(per_image[image.stem]) for image in images])
    sizes = np.array([int(row["area"]) / (image.height * image.width) for image in images
                      for row in per_image[image.stem]])
    held, covered = [], []
    for image in images:
        regions = read_label_map(out / "SegmentationObject" / f"{image.stem}.png")
        points = image.points
        held.append(float((regions[points[:, 1], points[:, 0]] > 0).mean()))
        covered.append(float((regions > 0).mean()))
    held_arr = np.array(held)
    return {
        "settings": settings.record(), "images": len(images), "regions": len(rows),
        "regions_per_image": {"mean": float(counts.mean()), "median": float(np.median(counts)),
                              "min": int(counts.min()), "max": int(counts.max())},
        "images_without_regions": len(record["images_without_regions"]),
        "clusters": record["clusters"], "clusters_below_min_observers": record["clusters_below_min_observers"],
        "region_share_of_image": {"median": float(np.median(sizes)), "p25": float(np.percentile(sizes, 25)),
                                  "p75": float(np.percentile(sizes, 75)), "max": float(sizes.max())},
        "image_covered": {"mean": float(np.mean(covered))},
        "fixations_inside": {"mean": float(held_arr.mean()), "median": float(np.median(held_arr)),
                             "min": float(held_arr.min()),
                             "pooled": float(sum(r * len(i.points) for r, i in zip(held, images, strict=True))
                                             / sum(len(i.points) for i in images))},
        "seconds": {"wall": wall, "cpu": cpu, "wall_per_image": wall / len(images)},
        "machine": f"{cpu_name()}; load average {load_average()}",
    }


def markdown(result: dict) -> str:
    s, r = result["settings"], result
    per, size, inside = r["regions_per_image"], r["region_share_of_image"], r["fixations_inside"]
    lines = [
        f"| {s['method']} | {s['bandwidth']:g} | {s['min_observers']} | {s['dilation_in_force']:g} | "
        f"{per['mean']:.1f} ({per['min']}-{per['max']}) | {r['images_without_regions']} | "
        f"{100 * size['median']:.2f} ({100 * size['p25']:.2f}-{100 * size['p75']:.2f}) | "
        f"{100 * r['image_covered']['mean']:.1f} | {100 * inside['mean']:.1f} (min {100 * inside['min']:.0f}) | "
        f"{r['seconds']['wall']:.0f} ({1000 * r['seconds']['wall_per_image']:.0f} ms) | {r['seconds']['cpu']:.0f} |"
    ]
    return "\n".join(lines)


HEADER = ("| method | bandwidth px | min observers | dilation px | regions / image (range) | images without "
          "| region size, % of image: median (IQR) | image covered % | fixations inside % (mean, min) "
          "| wall s (per image) | CPU s |\n|---|---|---|---|---|---|---|---|---|---|---|")


def main(argv: list[str] | None = None) -> list[dict]:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--osie", type=Path, default=OSIE)
    parser.add_argument("--method", default="meanshift", choices=("meanshift", "dbscan"))
    parser.add_argument("--bandwidth", type=float, nargs="+", default=[24.0])
    parser.add_argument("--min-observers", type=int, nargs="+", default=[3])
    parser.add_argument("--out", type=Path, help="keep the (last) set here (default: a temporary folder)")
    parser.add_argument("--json", type=Path, help="write the figures as JSON")
    args = parser.parse_args(argv)
    if not (args.osie / "data" / "eye" / "fixations.mat").is_file():
        raise SystemExit(f"OSIE not found at {args.osie} (expected data/eye/fixations.mat)")
    results = []
    print(HEADER)
    for bandwidth in args.bandwidth:
        for min_observers in args.min_observers:
            scratch = Path(tempfile.mkdtemp(prefix="regions_osie_"))
            out = args.out if args.out is not None else scratch / "set"
            try:
                result = measure(args.osie, BuildSettings(args.method, bandwidth, min_observers), out)
            finally:
                shutil.rmtree(scratch)
            results.append(result)
            print(markdown(result), flush=True)
    print(f"\n{results[0]['images']} images; {results[0]['machine']}")
    if args.json is not None:
        args.json.write_text(json.dumps(results, indent=2) + "\n", encoding="utf-8")
    return results


if __name__ == "__main__":
    main()
