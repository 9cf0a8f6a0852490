"""Fixation coordinates to pixels, and the map-style dataset every fixation reader shares.

Conventions (docs/protocol.md): source coordinates are 1-based ``[x, y]`` pixels (MATLAB); they are rounded
half away from zero (MATLAB ``round``), made 0-based and clipped to the image, and the clipped points are
counted. A fixation map holds the set of **unique** fixated pixels (the MIT benchmark's binary map), so two
fixations on one pixel count once.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import Dataset

from saliency_probe.data.images import load_rgb, to_model_input
from saliency_probe.errors import ConfigError, InputFileError
from saliency_probe.maps import fixation_map
from saliency_probe.matlab import matlab_round

ON_ERROR_CHOICES = ("raise", "skip")


def fixation_pixels(
    points_xy: np.ndarray, height: int, width: int, *, one_based: bool = True
) -> tuple[np.ndarray, int]:
    """Round, shift to 0-based and clip ``[x, y]`` points; return ``(int64 (N, 2) [x, y], n_clipped)``.

    A point counts as clipped when its rounded pixel lies outside ``[0, width) x [0, height)``; it is moved to
    the nearest border pixel. Non-finite coordinates raise ``ValueError`` (they cannot be placed anywhere).
    """
    points = np.asarray(points_xy, dtype=np.float64)
    if points.size == 0:
        return np.zeros((0, 2), dtype=np.int64), 0
    if points.ndim != 2 or points.shape[1] != 2:
        raise ValueError(f"fixations must be an (N, 2) array of [x, y], got shape {points.shape}")
    if not np.isfinite(points).all():
        raise ValueError(f"{int((~np.isfinite(points)).any(axis=1).sum())} fixation(s) have non-finite coordinates")
    pixels = matlab_round(points).astype(np.int64) - (1 if one_based else 0)
    upper = np.array([width - 1, height - 1])
    clipped = np.clip(pixels, 0, upper)
    n_clipped = int((clipped != pixels).any(axis=1).sum())
    return clipped, n_clipped


def rasterise_fixations(
    points_xy: np.ndarray, height: int, width: int, *, one_based: bool = True
) -> tuple[np.ndarray, int]:
    """Binary ``(height, width)`` map of the unique fixated pixels and the number of clipped points."""
    pixels, n_clipped = fixation_pixels(points_xy, height, width, one_based=one_based)
    return fixation_map(pixels, height, width), n_clipped


def flat_indices(fixation_map: np.ndarray) -> np.ndarray:
    """Sorted flat indices of the fixated pixels: the compact form the datasets keep in memory."""
    return np.flatnonzero(fixation_map).astype(np.int32)


def check_on_error(on_error: str) -> str:
    """Validate the bad-image policy."""
    if on_error not in ON_ERROR_CHOICES:
        raise ConfigError(f"data.on_error={on_error!r} is not valid; expected one of {list(ON_ERROR_CHOICES)}")
    return on_error


@dataclass
class FixationRecord:
    """One image of a fixation data set: where it is, its size and its unique fixated pixels (flat indices)."""

    stem: str
    image_path: Path
    height: int
    width: int
    fixated: np.ndarray


@dataclass
class ReaderReport:
    """What a reader excluded or changed, so that nothing is dropped silently."""

    n_clipped: int = 0
    without_fixations: list[str] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)
    #: Fixations read (the denominator of the clipped share); None where the format has no coordinates.
    n_points: int | None = 0


def observer_pixels(
    observers: list[np.ndarray], height: int, width: int, report: ReaderReport, where: str, who: str = "observer"
) -> list[np.ndarray]:
    """Each observer's 1-based ``[x, y]`` fixations as 0-based pixels (:func:`fixation_pixels`), with the
    clipped points and all points counted in ``report``; a malformed array names ``where`` and the observer."""
    pixels = []
    for number, points in enumerate(observers):
        try:
            observer, n_clipped = fixation_pixels(points, height, width)
        except ValueError as error:
            raise InputFileError(f"{where}, {who} {number + 1}: {error}") from error
        report.n_clipped += n_clipped
        if report.n_points is not None:
            report.n_points += len(observer)
        pixels.append(observer)
    return pixels


class FixationDataset(Dataset):
    """Map-style dataset over :class:`FixationRecord` s; items are model input + full-resolution fixation map.

    Item: ``{"image": 3xSxS float (ImageNet-normalised), "fixations": (H, W) float32 binary at the image's
    original resolution, "stem": str, "index": int}``. Subclasses fill ``self.records`` and ``self.report``.
    """

    def __init__(self, image_size: int = 224) -> None:
        self.image_size = int(image_size)
        self.records: list[FixationRecord] = []
        self.report = ReaderReport()

    def __len__(self) -> int:
        return len(self.records)

    @property
    def stems(self) -> list[str]:
        return [record.stem for record in self.records]

    @property
    def n_clipped(self) -> int:
        """Total number of fixations that fell outside their image and were clipped to its border."""
        return self.report.n_clipped

    @property
    def n_fixation_points(self) -> int | None:
        """Number of fixations read (before rounding and de-duplication); None for formats without coordinates."""
        return self.report.n_points

    @property
    def n_without_fixations(self) -> int:
        """Number of images excluded because they have no fixation (listed in ``without_fixations``)."""
        return len(self.report.without_fixations)

    @property
    def without_fixations(self) -> list[str]:
        return list(self.report.without_fixations)

    @property
    def skipped(self) -> list[str]:
        """Paths skipped under ``on_error="skip"`` (unreadable images, missing annotation files)."""
        return list(self.report.skipped)

    @property
    def image_sizes(self) -> list[tuple[int, int]]:
        """``(height, width)`` of every image, in dataset order."""
        return [(record.height, record.width) for record in self.records]

    def fixation_map(self, index: int) -> np.ndarray:
        """The binary ``(H, W)`` float32 fixation map of item ``index`` at the original resolution."""
        record = self.records[index]
        flat = np.zeros(record.height * record.width, dtype=np.float32)
        flat[record.fixated] = 1.0
        return flat.reshape(record.height, record.width)

    def load_image(self, index: int) -> np.ndarray:
        """The original ``HxWx3`` uint8 image of item ``index``; its size must match the record."""
        record = self.records[index]
        image = load_rgb(record.image_path)
        if image.shape[:2] != (record.height, record.width):
            raise InputFileError(
                f"{record.image_path}: image is {image.shape[0]}x{image.shape[1]} (HxW) but its fixations were "
                f"recorded for {record.height}x{record.width}"
            )
        return image

    def image_file(self, index: int) -> Path:
        """The image file of item ``index``."""
        return self.records[index].image_path

    def item_without_image(self, index: int) -> dict:
        """Item ``index`` without its ``image`` entry (nothing is decoded): what the feature cache pairs with the
        stored activations."""
        return {
            "fixations": torch.from_numpy(self.fixation_map(index)),
            "stem": self.records[index].stem,
            "index": int(index),
        }

    def __getitem__(self, index: int) -> dict:
        return {"image": to_model_input(self.load_image(index), self.image_size), **self.item_without_image(index)}
