"""Fixations per image for the region builder: OSIE and SALICON (2017 ``.mat``, 2015 JSON) read into one form.

Every image becomes a :class:`FixationImage`: its image file, size and the fixations of each observer as 0-based
``[x, y]`` pixels, rounded and clipped as every reader of :mod:`saliency_probe.data` does (docs/protocol.md).
The builder iterates over the **fixation** entries, so an entry whose image file is missing is caught here (one
line naming the fixation file and the image), as is a SALICON resolution that differs from the image file's.
"""

from __future__ import annotations

import logging
import os
import re
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from saliency_probe.data.fixations import ReaderReport, check_on_error, observer_pixels
from saliency_probe.data.images import read_image_size
from saliency_probe.data.osie import read_osie_fixations
from saliency_probe.data.salicon import EDITIONS, read_salicon_json, read_salicon_mat
from saliency_probe.errors import ConfigError, InputFileError, MissingInputError

log = logging.getLogger(__name__)

#: Fixation formats the builder reads.
FORMATS = ("osie", "salicon")
LAYOUTS = {
    "osie": "<root>/data/stimuli/<name>.jpg and <root>/data/eye/fixations.mat",
    "salicon": "<root>/images/<split>/<stem>.jpg with <root>/fixations/<split>/<stem>.mat (edition 2017) or "
    "<root>/fixations_<split>2014.json (edition 2015)",
}


@dataclass(frozen=True)
class FixationSource:
    """Where the fixations are: ``format`` (osie | salicon), ``root``, and for SALICON ``split``, ``edition`` and
    the 2015 ``json_file`` (default ``<root>/fixations_<split>2014.json``)."""

    format: str
    root: Path
    split: str = "val"
    edition: str = "2017"
    json_file: Path | None = None

    def __post_init__(self) -> None:
        if self.format not in FORMATS:
            raise ConfigError(f"fixation format {self.format!r} is not supported; choose one of {FORMATS}")
        if self.format == "salicon" and str(self.edition) not in EDITIONS:
            raise ConfigError(f"SALICON edition {self.edition!r} is not valid; choose one of {EDITIONS}")
        object.__setattr__(self, "root", Path(self.root).expanduser().absolute())
        object.__setattr__(self, "edition", str(self.edition))
        if self.json_file is not None:
            object.__setattr__(self, "json_file", Path(self.json_file).expanduser().absolute())

    def record(self) -> dict[str, str | None]:
        """The source as plain values (what ``regions.json`` records)."""
        out: dict[str, str | None] = {"format": self.format, "root": str(self.root)}
        if self.format == "salicon":
            out.update(split=self.split, edition=self.edition,
                       json_file=str(self.json_file) if self.json_file is not None else None)
        return out


@dataclass
class FixationImage:
    """One image: file, size, per-observer 0-based int64 ``(N, 2)`` ``[x, y]`` pixels, and the fixation file."""

    stem: str
    image_path: Path
    height: int
    width: int
    observers: list[np.ndarray]
    source: str

    @property
    def points(self) -> np.ndarray:
        """All observers' pixels, ``(N, 2)`` int64 ``[x, y]``."""
        return np.concatenate([np.zeros((0, 2), np.int64), *self.observers])

    @property
    def observer(self) -> np.ndarray:
        """The observer (0-based) of each row of :attr:`points`."""
        return np.concatenate([np.zeros(0, np.int64)] + [np.full(len(p), i) for i, p in enumerate(self.observers)])

    @property
    def image_id(self) -> int | None:
        """The number that ends the stem (COCO's image id in ``COCO_val2014_000000000042``), or None."""
        match = re.search(r"(\d+)$", self.stem)
        return int(match.group(1)) if match else None


Entry = tuple[str, Path, list[np.ndarray], tuple[int, int] | None, str]


def _raw_entries(source: FixationSource, stems: list[str] | None) -> Iterator[Entry]:
    """``(stem, image path, per-observer 1-based [x, y] points, recorded (H, W) or None, fixation file)`` in the
    source's order (or the order of ``stems``), read lazily where the format allows (SALICON 2017: one file per
    image, so ``limit`` reads only what it needs)."""
    if source.format == "osie":
        mat = source.root / "data" / "eye" / "fixations.mat"
        if not mat.is_file():
            raise MissingInputError(f"OSIE fixation file not found: {mat}; expected {LAYOUTS['osie']}")
        table = {Path(name).stem: (name, observers) for name, observers in read_osie_fixations(mat).items()}
        for stem in _chosen(stems, list(table), str(mat)):
            yield stem, source.root / "data" / "stimuli" / table[stem][0], table[stem][1], None, str(mat)
        return
    if source.edition == "2017":
        folder = source.root / "fixations" / source.split
        if not folder.is_dir():
            raise MissingInputError(f"SALICON fixation folder not found: {folder}; expected {LAYOUTS['salicon']}")
        files = {path.stem: path for path in sorted(folder.glob("*.mat"))}
        entries = (read_salicon_mat(files[stem]) for stem in _chosen(stems, list(files), str(folder)))
    else:
        json_file = source.json_file or source.root / f"fixations_{source.split}2014.json"
        table = read_salicon_json(json_file)
        entries = (table[stem] for stem in _chosen(stems, list(table), str(json_file)))
    for entry in entries:
        observers = [entry.points_xy[entry.observer == k] for k in range(entry.n_observers)]
        image_path = source.root / "images" / source.split / f"{entry.stem}.jpg"
        yield entry.stem, image_path, observers, (entry.height, entry.width), entry.source


def _chosen(stems: list[str] | None, available: list[str], where: str) -> list[str]:
    """``stems`` (checked against ``available``) or all of ``available``; none at all is an error."""
    if not available:
        raise MissingInputError(f"no fixations found in {where}")
    if stems is None:
        return available
    known = set(available)
    unknown = [str(stem) for stem in stems if str(stem) not in known]
    if unknown:
        raise ConfigError(f"{where}: no fixations for requested image(s) {unknown[:10]}")
    return [str(stem) for stem in stems]


def read_fixation_images(
    source: FixationSource,
    limit: int | None = None,
    stems: list[str] | None = None,
    on_error: str = "raise",
) -> tuple[list[FixationImage], ReaderReport]:
    """The images of ``source`` that have fixations, in the source's order (or the order of ``stems``).

    Raises (one line naming the files) for fixations without an image file and for a SALICON resolution that
    differs from the image's; ``on_error="skip"`` skips such entries and lists them in the report instead.
    Images without any fixation are left out and listed; clipped points are counted.
    """
    check_on_error(on_error)
    entries = _raw_entries(source, [str(stem) for stem in stems] if stems is not None else None)
    images: list[FixationImage] = []
    report = ReaderReport()
    for stem, image_path, observers, recorded, fixation_file in entries:
        if limit is not None and len(images) >= int(limit):
            break
        try:
            if not image_path.is_file():
                raise MissingInputError(
                    f"fixations without an image: {fixation_file} has fixations for {stem} but the image "
                    f"{image_path} does not exist"
                )
            height, width = read_image_size(image_path)
            if recorded is not None and tuple(recorded) != (height, width):
                raise InputFileError(
                    f"image size mismatch: {fixation_file} records {stem} as {recorded[0]}x{recorded[1]} (HxW) "
                    f"but the image {image_path} is {height}x{width}"
                )
        except (FileNotFoundError, ValueError) as error:
            if on_error == "raise":
                raise
            log.warning("skipping %s: %s", stem, error)
            report.skipped.append(str(error))
            continue
        pixels = observer_pixels(observers, height, width, report, f"{fixation_file}: image {stem}")
        if not any(len(p) for p in pixels):
            report.without_fixations.append(stem)
            continue
        images.append(FixationImage(stem, image_path, height, width, pixels, fixation_file))
    return images, report


def fixation_source(
    format: str,
    root: str | os.PathLike[str],
    split: str = "val",
    edition: str = "2017",
    json_file: str | os.PathLike[str] | None = None,
) -> FixationSource:
    """A :class:`FixationSource` from plain values (config or command line)."""
    return FixationSource(format, Path(root), split, str(edition), Path(json_file) if json_file else None)
