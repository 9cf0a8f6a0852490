"""Scene labels for SALICON images (SALICON-SAL-SCE; no public file exists, so the format is ours).

CSV with the header ``image,scene``; ``image`` is a SALICON file stem (``COCO_train2014_000000000009``).
Classes with fewer than ``min_images_per_class`` images are dropped (the paper: 50), and reported.
"""

from __future__ import annotations

import csv
import logging
import os
import warnings
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

from saliency_probe.errors import InputFileError, MissingInputError

log = logging.getLogger(__name__)

HEADER = ["image", "scene"]


@dataclass
class SceneLabels:
    """Kept labels ``{stem: class}``, the kept classes (sorted), dropped classes with their image counts, and
    the CSV's images that are not in the data set (reported, not used)."""

    labels: dict[str, str]
    classes: list[str]
    dropped_classes: dict[str, int] = field(default_factory=dict)
    unknown_images: list[str] = field(default_factory=list)

    def indices(self) -> dict[str, int]:
        """``{stem: class index}`` in the order of ``classes``."""
        position = {name: index for index, name in enumerate(self.classes)}
        return {stem: position[name] for stem, name in self.labels.items()}


def read_scene_labels(
    path: str | os.PathLike[str],
    known_stems: Iterable[str] | None = None,
    min_images_per_class: int = 50,
) -> SceneLabels:
    """Read and filter a scene CSV; a malformed header, empty field or conflicting duplicate names the file."""
    path = Path(path)
    if path.is_dir():
        raise InputFileError(f"{path} is a folder; expected a scene label CSV file with header image,scene")
    if not path.is_file():
        raise MissingInputError(f"scene label file not found: {path} (expected a CSV with header image,scene)")
    try:
        with path.open(newline="", encoding="utf-8-sig") as handle:
            rows = list(csv.reader(handle))
    except (UnicodeDecodeError, csv.Error) as error:
        raise InputFileError(f"{path}: not a readable CSV file ({error}); expected header image,scene") from error
    header = [cell.strip() for cell in rows[0]] if rows else []
    if header[:2] != HEADER or header[2:] not in ([], ["split"]):
        raise InputFileError(
            f"{path}: header is {header}, expected {HEADER} or {HEADER + ['split']} (image = SALICON stem)"
        )
    width = len(header)
    labels: dict[str, str] = {}
    for line, row in enumerate(rows[1:], start=2):
        if not row or all(not cell.strip() for cell in row):
            continue
        cells = [cell.strip() for cell in row]
        if len(cells) != width or not all(cells):
            raise InputFileError(f"{path}:{line}: expected {width} non-empty fields {','.join(header)}, got {row}")
        stem, scene = cells[0].removesuffix(".jpg"), cells[1]
        if labels.get(stem, scene) != scene:
            raise InputFileError(f"{path}:{line}: image {stem} is labelled both {labels[stem]!r} and {scene!r}")
        labels[stem] = scene
    unknown: list[str] = []
    if known_stems is not None:
        known = set(known_stems)
        unknown = sorted(stem for stem in labels if stem not in known)
        if unknown:
            warnings.warn(
                f"{path}: {len(unknown)} labelled image(s) are not in the data set and are not used, "
                f"e.g. {unknown[:5]}",
                stacklevel=2,
            )
            labels = {stem: scene for stem, scene in labels.items() if stem in known}
    counts = Counter(labels.values())
    dropped = {name: count for name, count in sorted(counts.items()) if count < min_images_per_class}
    if dropped:
        warnings.warn(
            f"{path}: dropped {len(dropped)} scene class(es) with fewer than {min_images_per_class} images: {dropped}",
            stacklevel=2,
        )
    kept = {stem: scene for stem, scene in labels.items() if scene not in dropped}
    return SceneLabels(kept, sorted(set(kept.values())), dropped, unknown)


def class_weights(labels: list[str], classes: list[str]) -> dict[str, float]:
    """Cross-entropy weights ``n_total / (K * n_c)`` (balanced classes weigh 1); an empty class is an error."""
    counts = Counter(labels)
    empty = [name for name in classes if counts[name] == 0]
    if empty:
        raise ValueError(f"class(es) {empty} have no image; drop them before weighting")
    outside = sorted(set(counts) - set(classes))
    if outside:
        raise ValueError(f"label(s) {outside} are not among the classes {classes}")
    total = len(labels)
    return {name: total / (len(classes) * counts[name]) for name in classes}
