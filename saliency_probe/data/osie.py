"""OSIE reader (Xu et al. 2014): ``data/stimuli/<1001..1700>.jpg`` and ``data/eye/fixations.mat``.

The original ``fixations.mat`` holds ``fixations``, a 700 x 1 cell array whose cells are 1 x 1 structs with
``img`` (file name) and ``subjects``, a 15 x 1 cell array of 1 x 1 structs with ``fix_x``, ``fix_y`` (1 x N
double, 1-based pixels) and ``fix_duration`` (1 x N integer, ms). Struct arrays in place of the cell arrays are
accepted too; ``scipy.io.loadmat(squeeze_me=True, struct_as_record=False)`` reads both the same way.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path

import numpy as np
import scipy.io

from saliency_probe.data.fixations import (
    FixationDataset,
    FixationRecord,
    check_on_error,
    flat_indices,
    observer_pixels,
)
from saliency_probe.data.images import check_image, read_image_size
from saliency_probe.errors import ConfigError, InputFileError, MissingInputError
from saliency_probe.maps import fixation_map

log = logging.getLogger(__name__)

MAT_LAYOUT = (
    "variable `fixations`: one entry per image (cell or struct array) with `img` (file name) and `subjects`, "
    "one entry per observer with `fix_x`, `fix_y` (1-based pixels) and `fix_duration`"
)
DATASET_LAYOUT = "<root>/data/stimuli/<name>.jpg and <root>/data/eye/fixations.mat"


def _entries(value: object) -> list:
    """Flatten a squeezed cell or struct array (or a single struct) into a list of structs."""
    if isinstance(value, np.ndarray):
        out: list = []
        for element in value.ravel():
            out.extend(_entries(element))
        return out
    return [value]


def _coordinates(value: object) -> np.ndarray:
    """A 1-D float array from a squeezed MATLAB vector (empty, scalar or 1 x N)."""
    return np.atleast_1d(np.asarray(value, dtype=np.float64)).ravel()


def read_osie_fixations(mat_path: str | os.PathLike[str]) -> dict[str, list[np.ndarray]]:
    """``{image file name: [per-observer (N, 2) 1-based [x, y] float arrays]}``, in the file's order."""
    path = Path(mat_path)
    if path.is_dir():
        raise InputFileError(f"{path} is a folder; expected the OSIE fixation file (.mat) with {MAT_LAYOUT}")
    if not path.is_file():
        raise MissingInputError(f"OSIE fixation file not found: {path} (expected {MAT_LAYOUT})")
    try:
        content = scipy.io.loadmat(path, squeeze_me=True, struct_as_record=False)
    except Exception as error:  # noqa: BLE001 - scipy raises many types for bad files; re-raised with the name
        raise InputFileError(f"{path}: not a readable MATLAB file ({error}); expected {MAT_LAYOUT}") from error
    if "fixations" not in content:
        found = sorted(key for key in content if not key.startswith("__"))
        raise InputFileError(f"{path}: no variable `fixations` (found {found}); expected {MAT_LAYOUT}")
    result: dict[str, list[np.ndarray]] = {}
    for number, entry in enumerate(_entries(content["fixations"])):
        if not (hasattr(entry, "img") and hasattr(entry, "subjects")):
            raise InputFileError(f"{path}: entry {number + 1} lacks `img` or `subjects`; expected {MAT_LAYOUT}")
        name = str(entry.img).strip()
        if name in result:
            raise InputFileError(f"{path}: image {name} appears twice (entries of `fixations` must be unique)")
        observers = []
        for subject_number, subject in enumerate(_entries(entry.subjects)):
            where = f"{path}: image {name}, subject {subject_number + 1}"
            if not (hasattr(subject, "fix_x") and hasattr(subject, "fix_y")):
                raise InputFileError(f"{where} lacks `fix_x` or `fix_y`; expected {MAT_LAYOUT}")
            x, y = _coordinates(subject.fix_x), _coordinates(subject.fix_y)
            if x.shape != y.shape:
                raise InputFileError(f"{where}: fix_x has {x.size} values but fix_y {y.size}")
            observers.append(np.stack([x, y], axis=1))
        result[name] = observers
    return result


class OsieDataset(FixationDataset):
    """OSIE images (items as :class:`FixationDataset`), with per-observer fixations for inter-observer scores.

    ``stems`` restricts (and orders) the images, e.g. ``["1001", "1002"]``. Images listed in the ``.mat`` file
    must exist; ``on_error="skip"`` checks every image now and skips unreadable ones (listed in ``skipped``).
    Images without any fixation are excluded and listed in ``without_fixations``.
    """

    def __init__(
        self,
        root: str | os.PathLike[str],
        image_size: int = 224,
        on_error: str = "raise",
        limit: int | None = None,
        stems: list[str] | None = None,
    ) -> None:
        super().__init__(image_size)
        self.root = Path(root)
        self.on_error = check_on_error(on_error)
        self._observers: list[list[np.ndarray]] = []
        stimuli = self.root / "data" / "stimuli"
        mat_path = self.root / "data" / "eye" / "fixations.mat"
        if not self.root.is_dir():
            raise MissingInputError(f"OSIE folder not found: {self.root}; expected {DATASET_LAYOUT}")
        if not stimuli.is_dir():
            raise MissingInputError(f"OSIE stimuli folder not found: {stimuli}; expected {DATASET_LAYOUT}")
        if not mat_path.exists():
            raise MissingInputError(f"OSIE fixation file not found: {mat_path}; expected {DATASET_LAYOUT}")
        table = read_osie_fixations(mat_path)
        by_stem = {Path(name).stem: name for name in table}
        if stems is not None:
            unknown = [stem for stem in stems if stem not in by_stem]
            if unknown:
                raise ConfigError(f"data.stems: {mat_path} has no fixations for requested image(s) {unknown[:10]}")
            names = [by_stem[stem] for stem in stems]
        else:
            names = list(table)
        for name in names:
            if limit is not None and len(self.records) >= limit:
                break
            image_path = stimuli / name
            try:
                if not self._accept(image_path):
                    continue
                height, width = read_image_size(image_path)
                if self.on_error == "skip":
                    check_image(image_path)
            except (FileNotFoundError, ValueError) as error:
                if self.on_error == "raise":
                    raise
                log.warning("skipping %s: %s", image_path, error)
                self.report.skipped.append(str(image_path))
                continue
            self._add(image_path, height, width, table[name], mat_path)

    def _accept(self, image_path: Path) -> bool:
        """Hook for subclasses: raise FileNotFoundError/ValueError to reject (or skip) an image."""
        return True

    def _add(self, image_path: Path, height: int, width: int, observers: list[np.ndarray], source: Path) -> None:
        pixels = observer_pixels(observers, height, width, self.report, f"{source}: image {image_path.name}", "subject")
        fixated = fixation_map(np.concatenate([np.zeros((0, 2), np.int64), *pixels]), height, width)
        if not fixated.any():
            self.report.without_fixations.append(image_path.stem)
            return
        self.records.append(FixationRecord(image_path.stem, image_path, height, width, flat_indices(fixated)))
        self._observers.append(pixels)

    def observers(self, index: int) -> list[np.ndarray]:
        """Per-observer 0-based int64 ``(N, 2)`` ``[x, y]`` pixels of item ``index`` (rounded and clipped)."""
        return [pixels.copy() for pixels in self._observers[index]]
