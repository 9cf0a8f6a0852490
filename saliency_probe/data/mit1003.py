"""MIT1003 reader (Judd et al. 2009): ``ALLSTIMULI/<name>.jpeg`` and ``ALLFIXATIONMAPS/<name>_fixPts.jpg``.

The ``_fixPts`` files are binary fixation-point maps saved as JPEG, so compression blurs them: a pixel is a
fixation when its grey value is >= 128. ``<name>_fixMap.jpg`` is the authors' blurred map (``density_map``).
There are no coordinates, hence nothing to clip (``n_clipped`` is 0).
"""

from __future__ import annotations

import logging
import os
from pathlib import Path

import numpy as np

from saliency_probe.data.fixations import FixationDataset, FixationRecord, check_on_error, flat_indices
from saliency_probe.data.images import check_image, load_rgb, read_image_size
from saliency_probe.errors import InputFileError, MissingInputError

log = logging.getLogger(__name__)

THRESHOLD = 128
LAYOUT = "<root>/ALLSTIMULI/<name>.jpeg with <root>/ALLFIXATIONMAPS/<name>_fixPts.jpg and <name>_fixMap.jpg"


def read_fixation_points(path: str | os.PathLike[str]) -> np.ndarray:
    """Binary ``(H, W)`` map from a ``_fixPts`` JPEG (grey value >= 128)."""
    return load_rgb(path).max(axis=2) >= THRESHOLD


class Mit1003Dataset(FixationDataset):
    """MIT1003 images; items as :class:`~saliency_probe.data.osie.OsieDataset` (sizes vary: batch size 1)."""

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
        stimuli, maps = self.root / "ALLSTIMULI", self.root / "ALLFIXATIONMAPS"
        for folder in (stimuli, maps):
            if not folder.is_dir():
                raise MissingInputError(f"MIT1003 folder not found: {folder}; expected {LAYOUT}")
        names = stems if stems is not None else sorted(path.stem for path in stimuli.glob("*.jpeg"))
        if not names:
            raise MissingInputError(f"no .jpeg images in {stimuli}; expected {LAYOUT}")
        for name in names:
            if limit is not None and len(self.records) >= limit:
                break
            image_path, points_path = stimuli / f"{name}.jpeg", maps / f"{name}_fixPts.jpg"
            try:
                height, width = read_image_size(image_path)
                if self.on_error == "skip":
                    check_image(image_path)
                points = read_fixation_points(points_path)
            except (FileNotFoundError, ValueError) as error:
                if self.on_error == "raise":
                    raise
                log.warning("skipping %s: %s", image_path, error)
                self.report.skipped.append(str(image_path))
                continue
            if points.shape != (height, width):
                raise InputFileError(
                    f"{points_path}: fixation map is {points.shape[0]}x{points.shape[1]} (HxW) but the image "
                    f"{image_path} is {height}x{width}"
                )
            if not points.any():
                self.report.without_fixations.append(name)
                continue
            self.records.append(FixationRecord(name, image_path, height, width, flat_indices(points)))

    def density_map(self, index: int) -> np.ndarray:
        """The authors' continuous fixation map (``_fixMap.jpg``) of item ``index`` as float32 in [0, 1]."""
        record = self.records[index]
        path = self.root / "ALLFIXATIONMAPS" / f"{record.stem}_fixMap.jpg"
        return load_rgb(path).max(axis=2).astype(np.float32) / 255.0
