"""Categorised salient regions built from fixations, for any eye-tracking data set (docs/regions.md).

``python -m saliency_probe.data.regions build --fixations osie:DIR --out OUT`` clusters every image's fixations
and writes a region set in the OSIE-SR layout (``SegmentationClass/``, ``SegmentationObject/``,
``class_names.txt``) plus ``regions.csv`` and ``regions.json``; ``--annotations coco:instances.json`` (or
``voc:DIR``) gives the regions the shapes and categories of the instances under the clusters. The probe reads
the set as it reads OSIE-SR (``data=osie_sr data.regions_root=OUT``, or the ``*_regions`` data configs, which
build it on first use).

Building blocks: :mod:`~saliency_probe.data.regions_fixations` (fixations per image),
:mod:`~saliency_probe.data.regions_cluster` (clusters and blobs), :mod:`~saliency_probe.data.regions_annotations`
(COCO / VOC instances, the class -> category tables of ``conf/regions/``),
:mod:`~saliency_probe.data.regions_build` (the set), :mod:`~saliency_probe.data.regions_dataset` (the probe's
dataset and data module).
"""

from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path

from saliency_probe.data.regions_annotations import ANNOTATION_FORMATS
from saliency_probe.data.regions_build import (
    REGIONS_CSV,
    REGIONS_JSON,
    SALIENT_REGION,
    BuildRequest,
    BuildSettings,
    build_regions,
)
from saliency_probe.data.regions_fixations import FORMATS, fixation_source
from saliency_probe.errors import is_user_error

PROGRAM = "python -m saliency_probe.data.regions"
__all__ = ["REGIONS_CSV", "REGIONS_JSON", "SALIENT_REGION", "BuildRequest", "BuildSettings", "build_regions", "main"]


def _typed(value: str, formats: tuple[str, ...], what: str) -> tuple[str, str]:
    """``format:path`` split and checked (``osie:/data/osie``)."""
    kind, separator, path = value.partition(":")
    if not separator or kind not in formats or not path:
        raise argparse.ArgumentTypeError(f"{what} must be FORMAT:PATH with FORMAT one of {formats}, got {value!r}")
    return kind, path


def parser() -> argparse.ArgumentParser:
    main_parser = argparse.ArgumentParser(prog=PROGRAM,
                                          description=__doc__.split("\n")[0])
    commands = main_parser.add_subparsers(dest="command", required=True)
    build = commands.add_parser("build", help="build a region set from fixations (and annotations)")
    build.add_argument("--fixations", required=True, type=lambda v: _typed(v, FORMATS, "--fixations"),
                       metavar="FORMAT:DIR", help="osie:<OSIE root> or salicon:<SALICON root>")
    build.add_argument("--split", default="val", help="SALICON split (default val)")
    build.add_argument("--edition", default="2017", choices=("2017", "2015"), help="SALICON edition")
    build.add_argument("--json-file", type=Path, help="SALICON 2015 JSON (default <root>/fixations_<split>2014.json)")
    build.add_argument("--annotations", type=lambda v: _typed(v, ANNOTATION_FORMATS, "--annotations"),
                       metavar="FORMAT:PATH", help="coco:<instances JSON> or voc:<folder>; none: clusters only")
    build.add_argument("--keypoints", type=Path, help="COCO person_keypoints JSON (persons split head / part)")
    build.add_argument("--mapping", default=None,
                       help="class -> category table: a name in conf/regions/ or a YAML path (default: coco for "
                            "COCO, voc for VOC masks)")
    build.add_argument("--out", required=True, type=Path, help="output folder (must not exist or be empty)")
    defaults = BuildSettings()
    build.add_argument("--method", default=defaults.method, choices=("meanshift", "dbscan"))
    build.add_argument("--bandwidth", type=float, default=defaults.bandwidth,
                       help="pixels (default 24: about one degree on OSIE)")
    build.add_argument("--min-observers", type=int, default=defaults.min_observers)
    build.add_argument("--min-samples", type=int, default=None, help="DBSCAN min_samples (default min-observers)")
    build.add_argument("--dilation", type=float, default=None, help="blob reach in pixels (default bandwidth/2)")
    build.add_argument("--min-share", type=float, default=defaults.min_share)
    build.add_argument("--background-clusters", default=defaults.background_clusters, choices=("skip", "blob"))
    build.add_argument("--unmapped", default=defaults.unmapped, choices=("list", "raise"))
    build.add_argument("--limit", type=int, default=None, help="only the first N images")
    build.add_argument("--stems", nargs="+", default=None, help="only these images")
    build.add_argument("--on-error", default="raise", choices=("raise", "skip"))
    return main_parser


def request_from_args(args: argparse.Namespace) -> BuildRequest:
    """The :class:`BuildRequest` of parsed ``build`` arguments."""
    kind, root = args.fixations
    source = fixation_source(kind, root, args.split, args.edition, args.json_file)
    annotations, mapping = None, args.mapping or "coco"
    if args.annotations is not None:
        annotation_kind, path = args.annotations
        annotations = {"format": annotation_kind, "path": str(Path(path).expanduser().absolute()),
                       "keypoints": str(args.keypoints.expanduser().absolute()) if args.keypoints else None}
        mapping = args.mapping or annotation_kind
    settings = BuildSettings(args.method, args.bandwidth, args.min_observers, args.min_samples, args.dilation,
                             args.min_share, args.background_clusters, args.unmapped)
    return BuildRequest(source, annotations, mapping, settings, args.limit,
                        tuple(args.stems) if args.stems else None, args.on_error)


def main(argv: list[str] | None = None) -> int:
    """Command-line entry point; a bad input ends with one line naming the file or key (exit code 2)."""
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s: %(message)s")
    args = parser().parse_args(argv)
    try:
        record = build_regions(request_from_args(args), args.out)
    except Exception as error:
        user = is_user_error(error)
        if user is None:  # a bug: keep the traceback
            raise
        print(f"{PROGRAM}: error: {user}", file=sys.stderr)
        return 2
    per_image = record["regions"] / max(record["images"], 1)
    print(f"{record['regions']} regions ({per_image:.1f} per image) in {record['images']} images "
          f"({len(record['images_without_regions'])} without a region) in {record['seconds']:.1f} s: {args.out}")
    if record["unmapped"]:
        print(f"unmapped classes (listed in {args.out / REGIONS_JSON}): {sorted(record['unmapped'])}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
