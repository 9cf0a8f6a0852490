"""Build a categorised region set from fixations (and instance annotations), in the OSIE-SR layout.

Per image: all observers' fixations are clustered (:mod:`saliency_probe.data.regions_cluster`); a cluster counts
when ``min_observers`` observers fixated it. With annotations, each fixation belongs to the smallest instance
(or person head / part) under it and a cluster takes the instance that holds most of its fixations, if that is at
least ``min_share`` of them; clusters that pick the same instance make one region with the instance's mask and
category (:mod:`saliency_probe.data.regions_annotations`). Without annotations a region is the cluster's blob with
the category ``salient region``. Output (docs/regions.md)::

    <out>/SegmentationClass/<stem>.png   class id per pixel (class_names.txt: line i names id i)
    <out>/SegmentationObject/<stem>.png  region id per pixel (0 = none)
    <out>/class_names.txt                the paper's ids for its 12 categories, 74.. for other names
    <out>/regions.csv                    one row per region
    <out>/regions.json                   every choice, the inputs, the counts, what was left out and why

The set is written in a temporary sibling folder and renamed into place, so an interrupted build leaves nothing
that looks finished; :func:`ensure_regions` reuses a set built with the same inputs and refuses another.
"""

from __future__ import annotations

import csv
import io
import json
import logging
import os
import shutil
import tempfile
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from saliency_probe.data.fixations import check_on_error
from saliency_probe.data.osie_sr import DEFAULT_CLASS_IDS, write_label_png
from saliency_probe.data.regions_annotations import (
    Candidate,
    CategoryTable,
    CocoAnnotations,
    VocAnnotations,
    candidates,
    load_table,
    open_annotations,
)
from saliency_probe.data.regions_cluster import METHODS, Cluster, cluster_blobs, cluster_fixations
from saliency_probe.data.regions_fixations import FixationImage, FixationSource, read_fixation_images
from saliency_probe.errors import ConfigError, InputFileError, OutputFolderError
from saliency_probe.io_utils import write_json, write_text

log = logging.getLogger(__name__)

FORMAT_VERSION = 1
#: The category of a region built from fixations alone.
SALIENT_REGION = "salient region"
REGIONS_CSV = "regions.csv"
#: The build record beside the set (``report.md`` reads it to say how the regions were made).
REGIONS_JSON = "regions.json"
CSV_COLUMNS = ["image", "region", "category", "fixations", "observers", "clusters", "cluster_x", "cluster_y",
               "area", "source", "label"]
#: Ids of categories outside the paper's table (``salient region``, names of an edited table) start here.
FIRST_EXTRA_ID = 74
BACKGROUND_CHOICES = ("skip", "blob")
UNMAPPED_CHOICES = ("list", "raise")


@dataclass(frozen=True)
class BuildSettings:
    """Every choice of the builder (recorded in ``regions.json``; docs/regions.md).

    method: ``meanshift`` or ``dbscan`` (scikit-learn). bandwidth: pixels (mean shift's kernel radius,
    DBSCAN's eps); 24 px is about one degree of visual angle on OSIE. min_observers: a cluster counts when at
    least this many observers fixated it. min_samples: DBSCAN's (default ``min_observers``). dilation: a blob's
    reach around its cluster's hull (pixels; default ``bandwidth / 2``). min_share: with annotations, the
    smallest share of a cluster's fixations its instance must hold. background_clusters: a cluster on no
    instance is ``skip`` ped (listed) or kept as a ``blob`` (``salient region``). unmapped: a cluster whose
    instance's class the table does not map is listed (``list``) or stops the build (``raise``).
    """

    method: str = "meanshift"
    bandwidth: float = 24.0
    min_observers: int = 3
    min_samples: int | None = None
    dilation: float | None = None
    min_share: float = 0.25
    background_clusters: str = "skip"
    unmapped: str = "list"

    def __post_init__(self) -> None:
        if self.method not in METHODS:
            raise ConfigError(f"build.method={self.method!r} is not valid; choose one of {METHODS}")
        if not float(self.bandwidth) > 0:
            raise ConfigError(f"build.bandwidth must be > 0 pixels, got {self.bandwidth}")
        if int(self.min_observers) < 1:
            raise ConfigError(f"build.min_observers must be >= 1, got {self.min_observers}")
        if self.dilation is not None and float(self.dilation) < 0:
            raise ConfigError(f"build.dilation must be >= 0 pixels, got {self.dilation}")
        if not 0 <= float(self.min_share) <= 1:
            raise ConfigError(f"build.min_share must lie in [0, 1], got {self.min_share}")
        if self.background_clusters not in BACKGROUND_CHOICES:
            raise ConfigError(f"build.background_clusters={self.background_clusters!r}; choose one of {BACKGROUND_CHOICES}")
        if self.unmapped not in UNMAPPED_CHOICES:
            raise ConfigError(f"build.unmapped={self.unmapped!r} is not valid; choose one of {UNMAPPED_CHOICES}")
        object.__setattr__(self, "bandwidth", float(self.bandwidth))
        object.__setattr__(self, "min_observers", int(self.min_observers))
        object.__setattr__(self, "min_share", float(self.min_share))
        if self.dilation is not None:
            object.__setattr__(self, "dilation", float(self.dilation))

    @property
    def reach(self) -> float:
        """The blob dilation in force (pixels)."""
        return self.dilation if self.dilation is not None else self.bandwidth / 2

    def record(self) -> dict[str, Any]:
        return {**asdict(self), "dilation_in_force": self.reach}


@dataclass
class ImageRegions:
    """One image's regions: the region-id map, each region's category and row, and what was left out."""

    objects: np.ndarray
    categories: list[str]
    rows: list[dict[str, Any]]
    n_clusters: int = 0
    n_small: int = 0
    n_background: int = 0
    unmapped: list[tuple[str, str]] = field(default_factory=list)


#: A region before numbering: mask, category, its clusters, source (``coco:12``, ``cluster:3``), class label.
Picked = tuple[np.ndarray, str, list[Cluster], str, str]


def owners(fixations_xy: np.ndarray, found: Sequence[Candidate]) -> np.ndarray:
    """For each fixation, the index of the smallest candidate whose mask holds it (-1: none)."""
    owner = np.full(len(fixations_xy), -1, dtype=np.int64)
    if not len(found) or not len(fixations_xy):
        return owner
    xs, ys = fixations_xy[:, 0], fixations_xy[:, 1]
    for index in sorted(range(len(found)), key=lambda k: found[k].area, reverse=True):
        owner[found[index].mask[ys, xs]] = index  # smaller masks are written later and win
    return owner


def _row(stem: str, mask: np.ndarray, category: str, clusters: list[Cluster], points: np.ndarray,
         observer: np.ndarray, source: str, label: str) -> dict[str, Any]:
    inside = mask[points[:, 1], points[:, 0]]
    members = np.concatenate([c.members for c in clusters]) if clusters else np.zeros(0, np.int64)
    centre = points[members].mean(axis=0) if members.size else (np.nan, np.nan)
    return {"image": stem, "category": category, "fixations": int(inside.sum()),
            "observers": int(np.unique(observer[inside]).size), "clusters": len(clusters),
            "cluster_x": round(float(centre[0]), 2), "cluster_y": round(float(centre[1]), 2),
            "area": int(mask.sum()), "source": source, "label": label}


def build_image(image: FixationImage, found: Sequence[Candidate] | None, settings: BuildSettings) -> ImageRegions:
    """The regions of one image: cluster blobs (``found`` None) or the instances the clusters pick."""
    points, observer = image.points, image.observer
    clusters, n_small = cluster_fixations(points, observer, settings.method, settings.bandwidth,
                                          settings.min_observers, settings.min_samples)
    shape = (image.height, image.width)
    picked: list[Picked] = []
    background: list[Cluster] = []
    unmapped: list[tuple[str, str]] = []
    if found is None:
        background = list(clusters)
    else:
        owner = owners(points, found)
        chosen: dict[int, list[Cluster]] = {}
        for cluster in clusters:
            votes = owner[cluster.members]
            votes = votes[votes >= 0]
            if votes.size == 0:
                background.append(cluster)
                continue
            counts = np.bincount(votes, minlength=len(found))
            winner = int(np.argmax(counts))  # ties: the lower index (the annotation's order)
            if counts[winner] < settings.min_share * len(cluster.members):
                background.append(cluster)
                continue
            chosen.setdefault(winner, []).append(cluster)
        for index, members in chosen.items():
            candidate = found[index]
            if candidate.category is None:
                unmapped.append((candidate.label, candidate.source))
                continue
            picked.append((candidate.mask, candidate.category, members, candidate.source, candidate.label))
    n_background = len(background) if found is not None else 0
    if found is None or settings.background_clusters == "blob":
        blobs = cluster_blobs(background, points, *shape, settings.reach)
        for number, cluster in enumerate(background):
            mask = blobs == number + 1
            if mask.any():
                picked.append((mask, SALIENT_REGION, [cluster], f"cluster:{number + 1}", ""))
    return paint(image, picked, points, observer, len(clusters), n_small, n_background, unmapped)


def paint(image: FixationImage, picked: list[Picked], points: np.ndarray, observer: np.ndarray, n_clusters: int,
          n_small: int, n_background: int, unmapped: list[tuple[str, str]]) -> ImageRegions:
    """Number the regions (most fixated cluster first) and paint them, larger first, so that where regions
    overlap the smaller one keeps the pixels; a region left with no pixel is dropped (with a warning)."""
    order = sorted(picked, key=lambda p: -sum(len(c.members) for c in p[2]))
    objects = np.zeros((image.height, image.width), dtype=np.int32)
    for number in sorted(range(len(order)), key=lambda k: -int(order[k][0].sum())):
        objects[order[number][0]] = number + 1
    categories, rows = [], []
    for number, (_, category, clusters, source, label) in enumerate(order):
        mask = objects == number + 1
        if not mask.any():
            log.warning("%s: region of %s is hidden by smaller regions; left out", image.stem, source)
            continue
        region = len(categories) + 1
        objects[mask] = -region  # renumber without gaps (negative until done)
        categories.append(category)
        rows.append({"region": region, **_row(image.stem, mask, category, clusters, points, observer, source,
                                               label)})
    objects = np.where(objects < 0, -objects, 0)
    if len(categories) > 254:
        raise ConfigError(f"{image.stem}: {len(categories)} regions do not fit an 8-bit region map (at most 254); "
                          "raise build.min_observers or build.bandwidth")
    rows = [{key: row[key] for key in CSV_COLUMNS} for row in rows]
    return ImageRegions(objects.astype(np.uint8), categories, rows, n_clusters, n_small, n_background, unmapped)


def class_ids_for(categories: Sequence[str]) -> dict[int, str]:
    """Class id of each category: the paper's ids (1 person head ... 73 other), then 74, 75, ... for others."""
    paper = {name: key for key, name in DEFAULT_CLASS_IDS.items()}
    table = {paper[name]: name for name in categories if name in paper}
    extra = [name for name in categories if name not in paper]
    if FIRST_EXTRA_ID + len(extra) > 254:
        raise ConfigError(f"{len(extra)} categories outside the paper's table do not fit 8-bit class ids")
    table.update({FIRST_EXTRA_ID + k: name for k, name in enumerate(extra)})
    return dict(sorted(table.items()))


def class_names_text(class_ids: dict[int, str]) -> str:
    """labelme's ``class_names.txt``: line i names id i (``_background_`` at 0, ``__unused__`` for gaps)."""
    names = ["__unused__"] * (max(class_ids) + 1)
    names[0] = "_background_"
    for key, name in class_ids.items():
        names[key] = name
    return "\n".join(names) + "\n"


def csv_text(rows: Sequence[dict[str, Any]]) -> str:
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=CSV_COLUMNS, lineterminator="\n")
    writer.writeheader()
    writer.writerows(rows)
    return buffer.getvalue()


# ------------------------------------------------------------------------------------------------------------
# the whole set
# ------------------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class BuildRequest:
    """What to build: the fixations, the annotations (None: clusters only), the table, the settings and which
    images (``limit`` / ``stems``; None: all)."""

    fixations: FixationSource
    annotations: dict[str, str | None] | None = None
    mapping: str = "coco"
    settings: BuildSettings = BuildSettings()
    limit: int | None = None
    stems: tuple[str, ...] | None = None
    on_error: str = "raise"

    def inputs(self, table: CategoryTable | None) -> dict[str, Any]:
        """The inputs a reused set must share (``regions.json: inputs``)."""
        annotations = None
        if self.annotations is not None:
            annotations = {key: (str(Path(v).expanduser().absolute()) if key in ("path", "keypoints") and v else v)
                           for key, v in self.annotations.items()}
        return {"fixations": self.fixations.record(), "annotations": annotations,
                "mapping": table.record() if table is not None else None, "settings": self.settings.record(),
                "on_error": self.on_error, "format_version": FORMAT_VERSION}

    def selection(self) -> dict[str, Any]:
        return {"limit": self.limit, "stems": list(self.stems) if self.stems is not None else None}


def _join(images: list[FixationImage], reader: CocoAnnotations | VocAnnotations, on_error: str
          ) -> tuple[list[tuple[FixationImage, Any]], list[str], int]:
    """Pair each image with its annotation key; raise (or list, ``on_error="skip"``) images without one."""
    pairs, missing = [], []
    for image in images:
        key = reader.key(image.stem, image.image_id)
        (missing.append(image.stem) if key is None else pairs.append((image, key)))
    how = "by image id, the number that ends the stem" if isinstance(reader, CocoAnnotations) else "by stem"
    if not pairs:
        raise InputFileError(
            f"annotations for other images: {reader.path} annotates none of the {len(images)} fixation images "
            f"(joined {how}; e.g. {[image.stem for image in images[:3]]})"
        )
    if missing and on_error == "raise":
        raise InputFileError(
            f"annotations for other images: {reader.path} has no annotation for {len(missing)} of the "
            f"{len(images)} fixation images (joined {how}): {missing[:5]}"
            + (" ..." if len(missing) > 5 else "") + "; on_error=skip leaves them out (listed)"
        )
    extra = len(reader.image_keys() - {key for _, key in pairs})
    return pairs, missing, extra


def build_regions(request: BuildRequest, out: str | os.PathLike[str]) -> dict[str, Any]:
    """Build the region set of ``request`` into ``out`` (which must not exist or be empty); return the record
    written to ``regions.json``."""
    started = time.perf_counter()
    check_on_error(request.on_error)
    out = Path(out).expanduser().absolute()
    table = load_table(request.mapping) if request.annotations is not None else None
    images, report = read_fixation_images(request.fixations, request.limit,
                                          list(request.stems) if request.stems is not None else None,
                                          request.on_error)
    if not images:
        raise InputFileError(f"no image with fixations under {request.fixations.root}")
    reader = None
    if request.annotations is not None:
        reader = open_annotations(request.annotations["format"], request.annotations["path"],
                                  request.annotations.get("keypoints"))
        pairs, without_annotations, extra = _join(images, reader, request.on_error)
    else:
        pairs, without_annotations, extra = [(image, None) for image in images], [], 0
    if out.exists() and (not out.is_dir() or any(out.iterdir())):
        raise OutputFolderError(f"{out} exists and is not empty; the region builder never overwrites a folder")
    out.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{out.name}.", dir=out.parent))
    try:
        record = _write_set(staging, request, table, reader, pairs)
        record.update(
            fixations_clipped=report.n_clipped, images_without_fixations=report.without_fixations,
            skipped=report.skipped, images_without_annotations=without_annotations,
            annotated_images_without_fixations=extra, seconds=round(time.perf_counter() - started, 3),
        )
        write_json(staging / REGIONS_JSON, record)
        try:
            if out.exists():
                out.rmdir()
            os.rename(staging, out)
        except OSError as error:  # another process finished first (several ranks at once)
            raise FileExistsError(f"{out} was created while building: {error}") from error
    finally:
        if staging.exists():
            shutil.rmtree(staging)
    for label, entry in record["unmapped"].items():
        log.warning("%s: class %r is not mapped to a category: %d region(s) on it in %d image(s) left out "
                    "(listed in %s: unmapped)", record["inputs"]["mapping"]["path"], label, entry["regions"],
                    len(entry["images"]), out / REGIONS_JSON)
    return record


def _write_set(root: Path, request: BuildRequest, table: CategoryTable | None,
               reader: CocoAnnotations | VocAnnotations | None, pairs: list[tuple[FixationImage, Any]]) -> dict:
    """Write the masks, class_names.txt and regions.csv into ``root``; return the record (without timings)."""
    settings = request.settings
    if table is None:
        categories = [SALIENT_REGION]
    else:
        categories = table.categories + ([SALIENT_REGION] if settings.background_clusters == "blob" else [])
    class_ids = class_ids_for(categories)
    id_of = {name: key for key, name in class_ids.items()}
    for folder in ("SegmentationClass", "SegmentationObject"):
        (root / folder).mkdir()
    rows: list[dict[str, Any]] = []
    unmapped: dict[str, dict[str, Any]] = {}
    counts = {"clusters": 0, "clusters_below_min_observers": 0, "background_clusters": 0}
    without_regions, stems = [], []
    for image, key in pairs:
        found = None
        if reader is not None and table is not None:
            found = candidates(reader.instances(image.stem, key, (image.height, image.width), image.image_path), table)
        result = build_image(image, found, settings)
        for label, source in result.unmapped:
            if settings.unmapped == "raise":
                raise InputFileError(f"unmapped class: {table.path if table else ''} does not map class {label!r} "
                                 f"(image {image.stem}, {source}) to a category; add it to `classes` or set "
                                 "build.unmapped=list to list such clusters")
            entry = unmapped.setdefault(label, {"regions": 0, "images": []})
            entry["regions"] += 1
            if image.stem not in entry["images"]:
                entry["images"].append(image.stem)
        classes = np.zeros_like(result.objects)
        for region, category in enumerate(result.categories, start=1):
            classes[result.objects == region] = id_of[category]
        write_label_png(root / "SegmentationClass" / f"{image.stem}.png", classes)
        write_label_png(root / "SegmentationObject" / f"{image.stem}.png", result.objects)
        rows.extend(result.rows)
        counts["clusters"] += result.n_clusters
        counts["clusters_below_min_observers"] += result.n_small
        counts["background_clusters"] += result.n_background
        stems.append(image.stem)
        if not result.categories:
            without_regions.append(image.stem)
    write_text(root / "class_names.txt", class_names_text(class_ids))
    write_text(root / REGIONS_CSV, csv_text(rows))
    by_category = {name: sum(row["category"] == name for row in rows) for name in categories}
    return {
        "builder": "saliency_probe.data.regions", "format_version": FORMAT_VERSION,
        "kind": "annotated" if table is not None else "clusters",
        "inputs": request.inputs(table), "selection": request.selection(),
        "class_ids": {str(key): name for key, name in class_ids.items()},
        "images": len(stems), "regions": len(rows), "regions_by_category": by_category, **counts,
        "stems": stems, "images_without_regions": without_regions, "unmapped": unmapped,
    }


def read_record(root: str | os.PathLike[str]) -> dict[str, Any] | None:
    """``regions.json`` of a built set, or None when ``root`` holds none."""
    path = Path(root) / REGIONS_JSON
    return json.loads(path.read_text(encoding="utf-8")) if path.is_file() else None


def build_description(record: dict[str, Any]) -> dict[str, Any]:
    """The short account of a build that ``probe_summary.json`` carries and ``report.md`` states: how (method,
    bandwidth, observers, annotations and table) and what (images, regions, left out)."""
    inputs = record.get("inputs", {})
    settings, annotations, mapping = inputs.get("settings", {}), inputs.get("annotations"), inputs.get("mapping")
    return {
        "builder": record.get("builder"), "kind": record.get("kind"),
        "method": settings.get("method"), "bandwidth": settings.get("bandwidth"),
        "min_observers": settings.get("min_observers"), "dilation": settings.get("dilation_in_force"),
        "min_share": settings.get("min_share"), "background_clusters": settings.get("background_clusters"),
        "annotations": annotations, "mapping": mapping.get("path") if mapping else None,
        "person_split": bool(mapping and mapping.get("person_split")),
        "images": record.get("images"), "regions": record.get("regions"),
        "images_without_regions": len(record.get("images_without_regions", [])),
        "unmapped": {label: entry["regions"] for label, entry in record.get("unmapped", {}).items()},
        "background_clusters_left_out": record.get("background_clusters") if settings.get(
            "background_clusters") == "skip" else 0,
    }


def ensure_regions(request: BuildRequest, out: str | os.PathLike[str]) -> dict[str, Any]:
    """Build the set in ``out`` on first use; reuse it when ``regions.json`` records the same inputs (and all
    images, or the same selection); refuse, naming what differs, otherwise. Returns the record."""
    out = Path(out).expanduser().absolute()
    stored = read_record(out)
    if stored is None:
        if out.exists() and (not out.is_dir() or any(out.iterdir())):
            raise OutputFolderError(f"{out} is not empty and has no {REGIONS_JSON}: not a built region set; "
                                  "refusing to write into it")
        try:
            return build_regions(request, out)
        except FileExistsError:
            stored = read_record(out)
            if stored is None:
                raise
    table = load_table(request.mapping) if request.annotations is not None else None
    wanted = json.loads(json.dumps(request.inputs(table)))
    differing = sorted(key for key in set(wanted) | set(stored["inputs"])
                       if wanted.get(key) != stored["inputs"].get(key))
    if differing:
        details = "; ".join(f"{key}: folder has {stored['inputs'].get(key)}, requested {wanted.get(key)}"
                            for key in differing)
        raise ConfigError(f"region set {out} was built from other inputs ({details}); use another folder "
                         "or delete this one")
    built, selection = stored.get("selection", {}), request.selection()
    if built != {"limit": None, "stems": None} and built != selection:
        raise ConfigError(f"region set {out} holds the images of {built}, not {selection}; use another folder "
                         "or delete this one")
    return stored
