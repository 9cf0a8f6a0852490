"""SALICON readers: the 2017 (LSUN'17) ``.mat`` files and the 2015 COCO-style JSON, plus the dataset.

2017 layout: ``images/<split>/COCO_<split>2014_<12 digits>.jpg`` and ``fixations/<split>/<stem>.mat`` holding
``image`` (name), ``resolution`` = [height, width] and ``gaze``, a struct array with one entry per observer and
fields ``location`` (raw samples), ``timestamp`` and ``fixations`` (M x 2, **[x, y], 1-based**).

2015 layout: ``fixations_<split>2014.json`` with ``images[] {id, file_name, height, width}`` and
``annotations[] {image_id, worker_id, fixations: [[row, col], ...]}`` (**[y, x], 1-based**).

The two editions give very different NSS for the same model: record ``edition`` with every result.
"""

from __future__ import annotations

import json
import logging
import os
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import scipy.io

from saliency_probe.data.fixations import (
    FixationDataset,
    FixationRecord,
    check_on_error,
    flat_indices,
    rasterise_fixations,
)
from saliency_probe.data.images import check_image
from saliency_probe.errors import ConfigError, InputFileError, MissingInputError

log = logging.getLogger(__name__)

EDITIONS = ("2017", "2015")
MAT_LAYOUT = (
    "a SALICON 2017 .mat with `resolution` = [height, width] and `gaze`, a struct array (one entry per observer) "
    "whose field `fixations` is an M x 2 array of 1-based [x, y]"
)
JSON_LAYOUT = (
    "a SALICON 2015 COCO-style JSON with `images` [{id, file_name, height, width}] and `annotations` "
    "[{image_id, worker_id, fixations: [[row, col], ...]}] (1-based)"
)
DATASET_LAYOUT = (
    "<root>/images/<split>/*.jpg with <root>/fixations/<split>/<stem>.mat (edition 2017) or "
    "<root>/fixations_<split>2014.json (edition 2015)"
)


@dataclass
class ImageFixations:
    """All fixations of one image: 1-based ``[x, y]`` float points, the observer of each point, provenance."""

    stem: str
    height: int
    width: int
    points_xy: np.ndarray
    observer: np.ndarray = field(default_factory=lambda: np.zeros(0, dtype=np.int64))
    edition: str = "2017"
    source: str = ""

    @property
    def n_observers(self) -> int:
        return int(self.observer.max()) + 1 if self.observer.size else 0


def _points(value: object, what: str) -> np.ndarray:
    """An (M, 2) float array from a squeezed MATLAB value (empty, one [x, y] row, or M x 2)."""
    array = np.asarray(value, dtype=np.float64)
    if array.size == 0:
        return np.zeros((0, 2))
    if array.ndim == 1 and array.size == 2:
        return array.reshape(1, 2)
    if array.ndim != 2 or array.shape[1] != 2:
        raise ValueError(f"{what} has shape {array.shape}, expected M x 2")
    return array


def read_salicon_mat(path: str | os.PathLike[str]) -> ImageFixations:
    """Read one SALICON 2017 fixation file; malformed content raises ``InputFileError`` naming the file."""
    path = Path(path)
    if not path.is_file():
        raise MissingInputError(f"SALICON fixation file not found: {path} (expected {MAT_LAYOUT})")
    try:
        content = scipy.io.loadmat(path, squeeze_me=True, struct_as_record=False)
    except Exception as error:  # noqa: BLE001 - scipy raises many types for bad files; re-raised with the name
        raise InputFileError(f"{path}: not a readable MATLAB file ({error}); expected {MAT_LAYOUT}") from error
    missing = [key for key in ("resolution", "gaze") if key not in content]
    if missing:
        raise InputFileError(f"{path}: missing variable(s) {missing}; expected {MAT_LAYOUT}")
    resolution = np.asarray(content["resolution"]).ravel()
    if resolution.size != 2 or not np.all(resolution > 0):
        raise InputFileError(f"{path}: `resolution` is {resolution.tolist()}, expected [height, width]; {MAT_LAYOUT}")
    gaze = content["gaze"]
    observers = list(np.atleast_1d(gaze).ravel()) if isinstance(gaze, np.ndarray) else [gaze]
    points, owner = [], []
    for index, observer in enumerate(observers):
        if not hasattr(observer, "fixations"):
            raise InputFileError(f"{path}: gaze entry {index} has no field `fixations`; expected {MAT_LAYOUT}")
        try:
            fixations = _points(observer.fixations, f"gaze({index + 1}).fixations")
        except ValueError as error:
            raise InputFileError(f"{path}: {error}; expected {MAT_LAYOUT}") from error
        points.append(fixations)
        owner.append(np.full(len(fixations), index, dtype=np.int64))
    return ImageFixations(
        stem=path.stem,
        height=int(resolution[0]),
        width=int(resolution[1]),
        points_xy=np.concatenate(points) if points else np.zeros((0, 2)),
        observer=np.concatenate(owner) if owner else np.zeros(0, dtype=np.int64),
        edition="2017",
        source=str(path),
    )


def read_salicon_json(path: str | os.PathLike[str]) -> dict[str, ImageFixations]:
    """Read a SALICON 2015 JSON file into ``{stem: ImageFixations}`` with points converted to ``[x, y]``."""
    path = Path(path)
    if path.is_dir():
        raise InputFileError(f"{path} is a folder; expected {JSON_LAYOUT}")
    if not path.is_file():
        raise MissingInputError(f"SALICON fixation file not found: {path} (expected {JSON_LAYOUT})")
    try:
        content = json.loads(path.read_text(encoding="utf-8"))
        images = {int(entry["id"]): entry for entry in content["images"]}
        annotations = content["annotations"]
    except (ValueError, KeyError, TypeError) as error:
        raise InputFileError(f"{path}: malformed ({error!r}); expected {JSON_LAYOUT}") from error
    per_image: dict[int, tuple[list[np.ndarray], list[int]]] = {key: ([], []) for key in images}
    for number, annotation in enumerate(annotations):
        try:
            image_id = int(annotation["image_id"])
            worker = int(annotation.get("worker_id", number))
            row_col = _points(annotation["fixations"], f"annotations[{number}].fixations")
        except (ValueError, KeyError, TypeError) as error:
            raise InputFileError(f"{path}: annotation {number} is malformed ({error}); expected {JSON_LAYOUT}") from error
        if image_id not in per_image:
            raise InputFileError(f"{path}: annotation {number} refers to image_id {image_id}, absent from `images`")
        per_image[image_id][0].append(row_col[:, ::-1])
        per_image[image_id][1].append(worker)
    result: dict[str, ImageFixations] = {}
    for image_id, entry in images.items():
        arrays, workers = per_image[image_id]
        observer_ids = {worker: rank for rank, worker in enumerate(dict.fromkeys(workers))}
        stem = Path(str(entry["file_name"])).stem
        result[stem] = ImageFixations(
            stem=stem,
            height=int(entry["height"]),
            width=int(entry["width"]),
            points_xy=np.concatenate(arrays) if arrays else np.zeros((0, 2)),
            observer=np.concatenate(
                [np.full(len(array), observer_ids[worker]) for array, worker in zip(arrays, workers, strict=True)]
            ).astype(np.int64)
            if arrays
            else np.zeros(0, dtype=np.int64),
            edition="2015",
            source=str(path),
        )
    return result


class SaliconDataset(FixationDataset):
    """SALICON images with their unique-fixated-pixel maps at the original resolution.

    Fixation files are parsed once here (so ``n_clipped`` and ``n_without_fixations`` are known up front and
    loading an item only decodes its image). Images with no fixation are excluded and listed in
    ``without_fixations``. ``on_error="skip"`` checks every image now and skips (and lists in ``skipped``)
    unreadable ones and images without a fixation file; ``"raise"`` fails with the path.
    """

    def __init__(
        self,
        root: str | os.PathLike[str],
        split: str,
        image_size: int = 224,
        edition: str = "2017",
        json_file: str | os.PathLike[str] | None = None,
        on_error: str = "raise",
        limit: int | None = None,
    ) -> None:
        super().__init__(image_size)
        self.root = Path(root)
        self.split = split
        self.edition = str(edition)
        self.on_error = check_on_error(on_error)
        if self.edition not in EDITIONS:
            raise ConfigError(f"data.edition={edition!r} is not valid; expected one of {list(EDITIONS)}")
        image_dir = self.root / "images" / split
        if not image_dir.is_dir():
            raise MissingInputError(f"SALICON image folder not found: {image_dir}; expected {DATASET_LAYOUT}")
        image_paths = sorted(image_dir.glob("*.jpg"))
        if not image_paths:
            raise MissingInputError(f"no .jpg images in {image_dir}; expected {DATASET_LAYOUT}")
        lookup = self._fixation_lookup(json_file)
        for image_path in image_paths:
            fixations = None
            if limit is not None and len(self.records) >= limit:
                break
            try:
                fixations = lookup(image_path.stem)
                if self.on_error == "skip":
                    check_image(image_path)
            except FileNotFoundError as error:  # no fixation file / entry for this image
                if self.on_error == "raise":
                    raise
                self._skip(image_path, error)
                continue
            except ValueError as error:  # only check_image's errors reach here in skip mode
                if self.on_error == "raise" or fixations is None:
                    raise
                self._skip(image_path, error)
                continue
            self._add(image_path, fixations)
        if self.report.skipped:
            log.warning("SALICON %s: skipped %d unreadable item(s)", split, len(self.report.skipped))

    def _skip(self, image_path: Path, error: Exception) -> None:
        log.warning("skipping %s: %s", image_path, error)
        self.report.skipped.append(str(image_path))

    def _fixation_lookup(self, json_file: str | os.PathLike[str] | None):
        """A function stem -> ImageFixations for the chosen edition."""
        if self.edition == "2017":
            fixation_dir = self.root / "fixations" / self.split
            if not fixation_dir.is_dir():
                raise MissingInputError(f"SALICON fixation folder not found: {fixation_dir}; expected {DATASET_LAYOUT}")
            return lambda stem: read_salicon_mat(fixation_dir / f"{stem}.mat")
        path = Path(json_file) if json_file is not None else Path(f"fixations_{self.split}2014.json")
        path = path if path.is_absolute() else self.root / path
        table = read_salicon_json(path)

        def lookup(stem: str) -> ImageFixations:
            if stem not in table:
                raise MissingInputError(f"{path}: no entry for image {stem}")
            return table[stem]

        return lookup

    def _add(self, image_path: Path, fixations: ImageFixations) -> None:
        try:
            fixation_map, n_clipped = rasterise_fixations(fixations.points_xy, fixations.height, fixations.width)
        except ValueError as error:
            raise InputFileError(f"{fixations.source}: {error}") from error
        self.report.n_clipped += n_clipped
        self.report.n_points += len(fixations.points_xy)
        if not fixation_map.any():
            self.report.without_fixations.append(fixations.stem)
            return
        self.records.append(
            FixationRecord(fixations.stem, image_path, fixations.height, fixations.width, flat_indices(fixation_map))
        )
