"""Graph-Based Visual Saliency (Harel, Koch & Perona, NIPS 2006), following Harel's MATLAB code (``gbvs.m``
with ``makeGBVSParams`` defaults) step by step; the feature maps it shares with :mod:`.itti` are in
:mod:`.features`, the MATLAB builtins (``imresize``, ``mat2gray``, ``round``) in :mod:`saliency_probe.matlab`.

Pipeline: the image (0..1 doubles) and its channels are decimated with the code's 6-tap [1 5 10 10 5 1] filter
(``mySubsample``; level n = 1/2^n); features at levels 2, 3, 4 (1/4, 1/8, 1/16): DKL colour (3 maps),
intensity = max(R, G, B), Gabor orientation 0/45/90/135 deg on intensity (sum of |even| + |odd| responses,
borders attenuated over 13 px); every map is resized (MATLAB bicubic with antialiasing) to the saliency-map
size (at most ``max_map_size`` cells per side); activation = equilibrium distribution of a Markov chain whose
edge i -> j has weight exp(-d^2 / (2 sigma^2)) * |M(i) - M(j)|, sigma = ``sigma_frac_act`` * mean map side,
found by power iteration until the step changes the vector by <= ``tol``; normalisation A^1.5 (the code's
default "raise to a power" scheme); maps summed within each channel, channels summed with weight 1; borders
tapered over 4 cells; min-max; Gaussian blur with std ``blur_frac`` * map size; bicubic resize back to the image.

The squared-distance matrix between cells depends only on the map size and is cached, so each map costs one
dense 768 x 768 matrix (for 32 x 24 cells) and a few matrix-vector products.  docs/classical.md describes the
model and its parameters.
"""

from __future__ import annotations

import functools
import math
from dataclasses import dataclass

import numpy as np

from saliency_probe.matlab import imresize

from .base import SaliencyModel, register
from .features import (
    GABOR_ANGLES,
    VALID_CHANNELS,
    blur_and_resize,
    check_min_size,
    feature_pyramid,
    saliency_map_size,
)

__all__ = ["GBVS", "distance_weights", "equilibrium", "graph_activation"]

# --- graph activation ------------------------------------------------------------------------------------------


@functools.lru_cache(maxsize=32)
def distance_weights(shape: tuple[int, int], sigma: float) -> np.ndarray:
    """exp(-d^2 / (2 sigma^2)) between every pair of cells of a ``shape`` lattice (row-major order)."""
    rows, cols = np.divmod(np.arange(shape[0] * shape[1]), shape[1])
    squared = (rows[:, None] - rows[None, :]) ** 2 + (cols[:, None] - cols[None, :]) ** 2
    return np.exp(-squared / (2.0 * sigma**2))


def equilibrium(markov: np.ndarray, tol: float) -> np.ndarray:
    """The code's ``principalEigenvectorRaw``: power iteration from the uniform vector while the step moves the
    vector by more than ``tol`` (L2); a non-finite step keeps the previous vector."""
    v = np.full(markov.shape[0], 1.0 / markov.shape[0])
    change = 1.0
    while change > tol:
        previous = v
        v = np.einsum("ij,j->i", markov, previous)  # not BLAS: threaded gemv crawls on a busy machine
        change = float(np.linalg.norm(previous - v))
        total = v.sum()
        if not (0 <= total < math.inf):
            v = previous
            break
    return v / v.sum()


def graph_activation(feature: np.ndarray, sigma_frac: float, tol: float) -> np.ndarray:
    """GBVS activation of a feature map: equilibrium of the chain with weights w(d) * |M(i) - M(j)|."""
    sigma = sigma_frac * float(np.mean(feature.shape))
    weights = distance_weights(feature.shape, sigma)
    values = feature.ravel().astype(np.float64)
    markov = weights * np.abs(values[:, None] - values[None, :])
    column_sums = markov.sum(axis=0)
    if np.any(column_sums <= 0):  # a constant map: the code's NaN chain falls back to the uniform start
        return np.full(feature.shape, 1.0 / feature.size)
    markov /= column_sums[None, :]
    return equilibrium(markov, tol).reshape(feature.shape)


@register("gbvs")
@dataclass(frozen=True)
class GBVS(SaliencyModel):
    """Graph-Based Visual Saliency with the published defaults of ``makeGBVSParams.m``.

    Parameters:
        max_map_size: cells on the longer side of the saliency map (``salmapmaxsize``, 32).
        channels: feature channels, letters of ``CDIO`` (``DIO``: DKL colour, intensity, orientation).
        levels: pyramid levels of the feature maps, level n = 1/2^n of the image ((2, 3, 4)).
        gabor_angles: orientations of the Gabor filters in degrees ((0, 45, 90, 135)).
        sigma_frac_act: sigma of the activation graph as a fraction of the mean map side (0.15).
        tol: stopping tolerance of the power iteration (1e-4).
        norm_power: exponent of the normalisation step (1.5).
        blur_frac: std of the final blur as a fraction of the map's longer side (0.02).
        channel_weights: weight per channel letter (all 1 by default).
    """

    max_map_size: int = 32
    channels: str = "DIO"
    levels: tuple[int, ...] = (2, 3, 4)
    gabor_angles: tuple[float, ...] = GABOR_ANGLES
    sigma_frac_act: float = 0.15
    tol: float = 1e-4
    norm_power: float = 1.5
    blur_frac: float = 0.02
    channel_weights: dict[str, float] | None = None

    def __post_init__(self) -> None:
        object.__setattr__(self, "levels", tuple(int(level) for level in self.levels))
        object.__setattr__(self, "gabor_angles", tuple(float(angle) for angle in self.gabor_angles))
        if not self.channels or any(letter not in VALID_CHANNELS for letter in self.channels):
            raise ValueError(f"GBVS channels must be letters of {VALID_CHANNELS!r}, got {self.channels!r}")
        if self.channel_weights is not None:
            weights = {str(key): float(value) for key, value in dict(self.channel_weights).items()}
            if any(key not in VALID_CHANNELS for key in weights):
                raise ValueError(
                    f"GBVS channel_weights keys must be letters of {VALID_CHANNELS!r}, got {weights}"
                )
            object.__setattr__(self, "channel_weights", weights)
        if not self.levels or min(self.levels) < 2 or max(self.levels) > 9:
            raise ValueError(f"GBVS levels must lie in 2..9 (as in makeGBVSParams), got {self.levels}")
        if self.max_map_size < 4 or self.sigma_frac_act <= 0 or self.tol <= 0:
            raise ValueError("GBVS needs max_map_size >= 4, sigma_frac_act > 0 and tol > 0")

    def _weight(self, channel: str) -> float:
        return float((self.channel_weights or {}).get(channel, 1.0))

    def _saliency(self, image: np.ndarray) -> np.ndarray:
        check_min_size(image, "GBVS")
        height, width = image.shape[:2]
        map_shape = saliency_map_size(height, width, self.max_map_size)
        features = feature_pyramid(image, self.channels, self.levels, self.gabor_angles)
        master = np.zeros(map_shape)
        for channel, per_type in features.items():
            channel_sum = np.zeros(map_shape)
            for per_level in per_type:
                for level in self.levels:
                    resized = imresize(per_level[level], map_shape)
                    activation = graph_activation(resized, self.sigma_frac_act, self.tol)
                    channel_sum += activation**self.norm_power
            master += self._weight(channel) * channel_sum
        return blur_and_resize(master, self.blur_frac, (height, width))
