"""Itti-Koch saliency as implemented in Harel's GBVS code (``ittikochmap.m`` -> ``gbvs.m`` with
``useIttiKochInsteadOfGBVS = 1``), not the classic 1998 iNVT program.

Pipeline (feature maps shared with :mod:`.gbvs`, in :mod:`.features`): channels ``CIO`` (colour:
|B - min(R, G)| / I and |R - G| / I, intensity I = max(R, G, B), Gabor orientation 0/45/90/135 deg) on the
``mySubsample`` pyramid; centre levels c = 2, 3 and surround s = c + 2 (the code's defaults; the 1998 paper
uses c = 2, 3, 4 and s = c + 3, c + 4 on a Gaussian pyramid);
each centre-surround map is the squared difference (centre - bicubically upsampled surround)^2, resized to the
saliency-map size (longer side = image side / 8, as ``ittikochmap.m`` sets it), min-max scaled and normalised
by Itti's local-maxima rule (``maxNormalizeStdGBVS``: scale to 0..10, multiply by (10 - mean of the 4-neighbour
local maxima >= 1)^2); the maps of a channel are summed and the sum normalised again by the same rule; the
channels are summed; borders tapered over 4 cells, blur with std 0.03 * map size, bicubic resize back.
docs/classical.md describes the model and its parameters.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from saliency_probe.matlab import imresize, mat2gray, matlab_round

from .base import SaliencyModel, register
from .features import (
    GABOR_ANGLES,
    VALID_CHANNELS,
    blur_and_resize,
    check_min_size,
    feature_pyramid,
    saliency_map_size,
)

__all__ = ["IttiKoch", "max_normalize_std"]


def max_normalize_std(data: np.ndarray, top: float = 10.0) -> np.ndarray:
    """Itti's normalisation as in ``maxNormalizeStdGBVS``: scale to 0..top, then multiply by
    (top - mean of the interior local maxima >= top/10)^2, where a local maximum is >= its 4 neighbours."""
    data = mat2gray(data) * top
    inner = data[1:-1, 1:-1]
    is_max = (
        (inner >= top / 10)
        & (inner >= data[:-2, 1:-1])
        & (inner >= data[2:, 1:-1])
        & (inner >= data[1:-1, :-2])
        & (inner >= data[1:-1, 2:])
    )
    count = int(is_max.sum())
    total = float(inner[is_max].sum())
    mean_max = total / count if total > 0 else 0.0
    if count > 1:
        return data * (top - mean_max) ** 2
    if count == 1:
        return data * top**2
    return data


@register("itti")
@dataclass(frozen=True)
class IttiKoch(SaliencyModel):
    """Itti-Koch saliency, GBVS-code variant, with the defaults of ``ittikochmap.m``.

    Parameters:
        channels: feature channels, letters of ``CDIO`` (``CIO``: colour opponency, intensity, orientation).
        center_levels: centre pyramid levels c ((2, 3)).
        delta_levels: surround offsets, s = c + delta ((2,); the code suggests (2, 3) for images >= 640 px).
        map_size_divisor: the saliency map's longer side is round(image side / divisor) (8).
        gabor_angles: orientations of the Gabor filters in degrees ((0, 45, 90, 135)).
        blur_frac: std of the final blur as a fraction of the map's longer side (0.03).
    """

    channels: str = "CIO"
    center_levels: tuple[int, ...] = (2, 3)
    delta_levels: tuple[int, ...] = (2,)
    map_size_divisor: float = 8.0
    gabor_angles: tuple[float, ...] = GABOR_ANGLES
    blur_frac: float = 0.03

    def __post_init__(self) -> None:
        for field in ("center_levels", "delta_levels"):
            object.__setattr__(self, field, tuple(int(level) for level in getattr(self, field)))
        object.__setattr__(self, "gabor_angles", tuple(float(angle) for angle in self.gabor_angles))
        if not self.channels or any(letter not in VALID_CHANNELS for letter in self.channels):
            raise ValueError(
                f"Itti-Koch channels must be letters of {VALID_CHANNELS!r}, got {self.channels!r}"
            )
        if not self.center_levels or min(self.center_levels) < 1 or not self.delta_levels:
            raise ValueError(f"Itti-Koch needs centre levels >= 1 and deltas, got {self.center_levels}")
        if min(self.delta_levels) < 1 or max(self.center_levels) + max(self.delta_levels) > 9:
            raise ValueError(f"Itti-Koch deltas must be >= 1 with c + delta <= 9, got {self.delta_levels}")
        if self.map_size_divisor <= 0:
            raise ValueError(f"Itti-Koch map_size_divisor must be > 0, got {self.map_size_divisor}")

    def _saliency(self, image: np.ndarray) -> np.ndarray:
        check_min_size(image, "Itti-Koch")
        height, width = image.shape[:2]
        map_shape = saliency_map_size(
            height, width, int(matlab_round(max(height, width) / self.map_size_divisor))
        )
        levels = sorted(
            {c for c in self.center_levels} | {c + d for c in self.center_levels for d in self.delta_levels}
        )
        features = feature_pyramid(image, self.channels, levels, self.gabor_angles)
        master = np.zeros(map_shape)
        for per_type in features.values():
            channel_sum = np.zeros(map_shape)
            for per_level in per_type:
                for center in self.center_levels:
                    for delta in self.delta_levels:
                        centre_map = per_level[center]
                        surround = imresize(per_level[center + delta], centre_map.shape)
                        contrast = (centre_map - surround) ** 2
                        channel_sum += max_normalize_std(mat2gray(imresize(contrast, map_shape)))
            master += max_normalize_std(channel_sum)
        return blur_and_resize(master, self.blur_frac, (height, width))
