"""Graph-Based Visual Saliency (Harel, Koch & Perona, NIPS 2006), following Harel's MATLAB code (``gbvs.m``
with ``makeGBVSParams`` defaults) step by step; the shared feature machinery is also used by :mod:`.itti`.

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
dense 768 x 768 matrix (for 32 x 24 cells) and a few matrix-vector products.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Sequence
from dataclasses import dataclass

import cv2
import numpy as np
from scipy import sparse
from scipy.interpolate import PchipInterpolator

from .base import SaliencyModel, register

#: Smallest image side GBVS (and the Itti-Koch variant of its code) accepts, as in ``gbvs.m``.
MIN_IMAGE_SIDE = 128
GABOR_ANGLES = (0.0, 45.0, 90.0, 135.0)
_VALID_CHANNELS = "CDIO"

# --- MATLAB numerics the reference code relies on --------------------------------------------------------------


def matlab_round(value: float) -> int:
    """MATLAB ``round`` (half away from zero) for non-negative values."""
    return int(math.floor(value + 0.5))


def _cubic(x: np.ndarray) -> np.ndarray:
    ax = np.abs(x)
    ax2, ax3 = ax**2, ax**3
    return (1.5 * ax3 - 2.5 * ax2 + 1) * (ax <= 1) + (-0.5 * ax3 + 2.5 * ax2 - 4 * ax + 2) * (
        (ax > 1) & (ax <= 2)
    )


@functools.lru_cache(maxsize=512)
def imresize_matrix(in_len: int, out_len: int) -> sparse.csr_matrix:
    """The sparse (out_len, in_len) matrix of MATLAB's ``imresize(..., 'bicubic')`` along one axis.

    Bicubic kernel a = -0.5, kernel widened by 1/scale when shrinking (MATLAB's default antialiasing) and
    symmetric border padding.  OpenCV's INTER_CUBIC (a = -0.75, no antialiasing) differs, hence this matrix.
    """
    scale = out_len / in_len
    antialias = scale < 1
    kernel_width = 4.0 / scale if antialias else 4.0
    centres = np.arange(1, out_len + 1) / scale + 0.5 * (1 - 1 / scale)
    left = np.floor(centres - kernel_width / 2)
    taps = int(math.ceil(kernel_width)) + 2
    indices = left[:, None] + np.arange(taps)[None, :]
    distance = centres[:, None] - indices
    weights = scale * _cubic(scale * distance) if antialias else _cubic(distance)
    weights /= weights.sum(axis=1, keepdims=True)
    mirror = np.concatenate([np.arange(in_len), np.arange(in_len)[::-1]])
    source = mirror[np.mod(indices - 1, 2 * in_len).astype(np.int64)]
    rows = np.repeat(np.arange(out_len), taps)
    # duplicate (row, column) pairs from the mirrored border are summed by the COO -> CSR conversion
    return sparse.coo_matrix((weights.ravel(), (rows, source.ravel())), shape=(out_len, in_len)).tocsr()


def imresize(image: np.ndarray, shape: tuple[int, int]) -> np.ndarray:
    """MATLAB ``imresize(image, shape, 'bicubic')`` of a 2-D float array, as two sparse matrix products
    (sparse and single-threaded: no BLAS thread pool, which crawls on a busy machine)."""
    rows = imresize_matrix(image.shape[0], shape[0])
    cols = imresize_matrix(image.shape[1], shape[1])
    return np.asarray((cols @ (rows @ np.asarray(image, np.float64)).T).T)


def mat2gray(values: np.ndarray) -> np.ndarray:
    """MATLAB ``mat2gray``: min-max to 0..1 (a constant array gives zeros)."""
    low, high = float(values.min()), float(values.max())
    if high <= low:
        return np.zeros_like(values, dtype=np.float64)
    return (values - low) / (high - low)


def conv_replicate(image: np.ndarray, kernel: np.ndarray) -> np.ndarray:
    """MATLAB ``conv2(..., 'same')`` with replicated borders (the code's ``myconv2``)."""
    flipped = np.ascontiguousarray(kernel[::-1, ::-1], dtype=np.float64)
    return cv2.filter2D(image.astype(np.float64), cv2.CV_64F, flipped, borderType=cv2.BORDER_REPLICATE)


def gauss_kernel(std: float, n_stds: float = 2.0) -> np.ndarray:
    """The code's ``mygausskernel``: a normalised 1-D Gaussian of half-width round(std * n_stds)."""
    half = matlab_round(std * n_stds)
    taps = np.exp(-0.5 * (np.arange(-half, half + 1) / std) ** 2)
    return taps / taps.sum()


def attenuate_borders(values: np.ndarray, border: int) -> np.ndarray:
    """The code's ``attenuateBordersGBVS``: scale the outer ``border`` rows/columns linearly towards 0."""
    result = values.astype(np.float64, copy=True)
    height, width = result.shape
    if border * 2 > height:
        border = height // 2
    if border * 2 > width:
        border = width // 2
    if border < 1:
        return result
    coeffs = np.arange(1, border + 1) / (border + 1)
    result[:border, :] *= coeffs[:, None]
    result[height - border :, :] *= coeffs[::-1, None]
    result[:, :border] *= coeffs[None, :]
    result[:, width - border :] *= coeffs[None, ::-1]
    return result


def subsample(image: np.ndarray) -> np.ndarray:
    """The code's ``mySubsample``: filter with [1 5 10 10 5 1]/32 and keep every other sample, per axis.

    Output sample j averages inputs 2j-2 .. 2j+3, renormalising the kernel where it leaves the image (the C
    code's special end kernels).  Images with a side <= 10 are returned unchanged, as in the C code.
    """
    if image.shape[0] <= 10 or image.shape[1] <= 10:
        return image
    kernel = np.array([1.0, 5.0, 10.0, 10.0, 5.0, 1.0], np.float32)

    def decimate(values: np.ndarray, axis: int) -> np.ndarray:
        values = np.moveaxis(values, axis, 0)
        n_out = values.shape[0] // 2
        pad = [(2, 3)] + [(0, 0)] * (values.ndim - 1)
        data = np.pad(values, pad)
        ones = np.pad(np.ones(values.shape[0], np.float32), (2, 3))
        total = sum(k * data[t : t + 2 * n_out : 2] for t, k in enumerate(kernel))
        norm = sum(k * ones[t : t + 2 * n_out : 2] for t, k in enumerate(kernel))
        shape = (n_out,) + (1,) * (values.ndim - 1)
        return np.moveaxis(total / norm.reshape(shape), 0, axis)

    return decimate(decimate(image.astype(np.float32), 1), 0)


# --- feature channels ------------------------------------------------------------------------------------------

# Monitor gamma of the code's RGB -> DKL conversion (``rgb2dkl``, from the iLab toolkit): a 256-entry table per
# R, G, B gun.  It is reproduced by a monotone (PCHIP) curve through the table at levels 0, 32, ..., 224, 255,
# which stays within 0.0073 of every table entry (see docs/classical.md).
_GAMMA_KNOTS = (0, 32, 64, 96, 128, 160, 192, 224, 255)
_GAMMA_VALUES = (
    (0.0249, 0.0293, 0.0566, 0.1387, 0.2940, 0.4929, 0.6536, 0.7935, 1.0),
    (0.0077, 0.0124, 0.0444, 0.1350, 0.2998, 0.5010, 0.6653, 0.8024, 1.0),
    (0.0423, 0.0469, 0.0835, 0.1782, 0.3452, 0.5286, 0.6769, 0.8165, 1.0),
)
_LMS0 = np.array([34.918538957799996, 19.314796676499999, 0.585610818500000])
_RGB_TO_LMS = np.array(
    [[18.32535, 44.60077, 7.46216], [4.09544, 28.20135, 6.66066], [0.02114, 0.10325, 1.05258]]
)
_DKL_SCALE = np.array([0.5774, 2.7525, 0.4526])


@functools.lru_cache(maxsize=1)
def _gamma_table() -> np.ndarray:
    levels = np.arange(256)
    return np.stack([PchipInterpolator(_GAMMA_KNOTS, gun)(levels) for gun in _GAMMA_VALUES], axis=-1)


@functools.lru_cache(maxsize=1)
def _lms_to_dkl() -> np.ndarray:
    l0, l1, l2 = _LMS0
    fac = 1.0 / (l0 + l1)
    hyp = math.hypot(l0, l1)
    return np.array(
        [
            [math.sqrt(3.0) * fac, math.sqrt(3.0) * fac, 0.0],
            [hyp / l0 * fac, -hyp / l1 * fac, 0.0],
            [-fac, -fac, (l0 + l1) / l2 * fac],
        ]
    )


def rgb_to_dkl(rgb: np.ndarray) -> np.ndarray:
    """The code's ``rgb2dkl`` for an (..., 3) array of 0..1 values: gamma table, LMS, then scaled DKL."""
    index = np.clip(np.ceil(rgb.astype(np.float64) * 255), 1, 256).astype(np.int64) - 1
    table = _gamma_table()
    linear = np.stack([table[index[..., gun], gun] for gun in range(3)], axis=-1)
    lms = np.einsum("...k,jk->...j", linear, _RGB_TO_LMS) - _LMS0  # einsum: no BLAS threads (see docs)
    return np.einsum("...k,jk->...j", lms, _lms_to_dkl()) * _DKL_SCALE


@functools.lru_cache(maxsize=16)
def gabor_kernel(angle: float, phase: float, stddev: float = 2.0, elongation: float = 2.0) -> np.ndarray:
    """The Saliency Toolbox Gabor filter used by the code (period pi, zero mean, unit L2 norm)."""
    major_std, minor_std = stddev, stddev * elongation
    half = math.ceil(max(major_std, minor_std) * math.sqrt(10))
    theta = math.radians(angle)
    co, si = math.cos(theta), -math.sin(theta)
    grid = np.arange(-half, half + 1, dtype=np.float64)
    row, col = grid[:, None], grid[None, :]
    major = row * co + col * si
    minor = row * si - col * co
    omega = 2 * math.pi / math.pi
    kernel = np.cos(omega * major + math.radians(phase)) * np.exp(
        -(major**2) / (2 * major_std**2) - minor**2 / (2 * minor_std**2)
    )
    kernel = kernel - kernel.mean()
    return kernel / math.sqrt(float((kernel**2).sum()))


def channel_maps(
    channel: str, intensity: np.ndarray, rgb: np.ndarray | None, angles: Sequence[float] = GABOR_ANGLES
) -> list[np.ndarray]:
    """Raw maps of one channel letter at one pyramid level (``C`` 2, ``D`` 3, ``I`` 1, ``O`` len(angles))."""
    if channel == "I":
        return [intensity.astype(np.float64)]
    if channel == "O":
        maps = []
        for angle in angles:
            even = conv_replicate(intensity, gabor_kernel(angle, 0.0))
            odd = conv_replicate(intensity, gabor_kernel(angle, 90.0))
            maps.append(attenuate_borders(np.abs(even) + np.abs(odd), 13))
        return maps
    if rgb is None:
        raise ValueError(f"channel {channel!r} needs a colour image")
    if channel == "D":
        dkl = rgb_to_dkl(rgb)
        return [dkl[..., k] for k in range(3)]
    if channel == "C":
        red, green, blue = (rgb[..., k].astype(np.float64) for k in range(3))
        safe = np.where(intensity == 0, 1.0, intensity)
        by = np.where(intensity == 0, 0.0, np.abs(blue - np.minimum(red, green)) / safe)
        rg = np.where(intensity == 0, 0.0, np.abs(red - green) / safe)
        return [by, rg]
    raise ValueError(f"unknown feature channel {channel!r}; valid channels: {_VALID_CHANNELS}")


def feature_pyramid(
    image: np.ndarray, channels: str, levels: Sequence[int], angles: Sequence[float] = GABOR_ANGLES
) -> dict[str, list[dict[int, np.ndarray]]]:
    """Raw feature maps ``{channel: [ {level: map} per type ]}`` at the requested pyramid levels (>= 1).

    Level 1 is the image decimated once (``mySubsample``), level n is decimated n times; the intensity and the
    R, G, B planes are decimated separately, as in ``getFeatureMaps.m``.
    """
    rgb = image.astype(np.float64) / 255.0
    intensity = rgb.max(axis=2)
    top = max(levels)
    pyramid_i, pyramid_rgb = {}, {}
    level_i, level_rgb = intensity, rgb
    for level in range(1, top + 1):
        level_i = subsample(level_i).astype(np.float64)
        level_rgb = subsample(level_rgb).astype(np.float64)
        pyramid_i[level], pyramid_rgb[level] = level_i, level_rgb
    result: dict[str, list[dict[int, np.ndarray]]] = {}
    for channel in channels:
        per_type: list[dict[int, np.ndarray]] = []
        for level in levels:
            for kind, raw in enumerate(channel_maps(channel, pyramid_i[level], pyramid_rgb[level], angles)):
                if kind == len(per_type):
                    per_type.append({})
                per_type[kind][level] = raw
        result[channel] = per_type
    return result


def saliency_map_size(height: int, width: int, max_size: int) -> tuple[int, int]:
    """Cells of the saliency map: the image's aspect with the longer side ``max_size`` (MATLAB rounding)."""
    scale = max_size / max(height, width)
    return max(1, matlab_round(height * scale)), max(1, matlab_round(width * scale))


def check_min_size(image: np.ndarray, model: str) -> None:
    """Refuse images smaller than 128 px on a side, as ``gbvs.m`` does."""
    height, width = image.shape[:2]
    if height < MIN_IMAGE_SIDE or width < MIN_IMAGE_SIDE:
        raise ValueError(
            f"{model} needs images of at least {MIN_IMAGE_SIDE}x{MIN_IMAGE_SIDE} pixels (its feature pyramid "
            f"goes down to 1/16 or 1/32 of the image); got {height}x{width}. Upscale the image first."
        )


def blur_and_resize(master: np.ndarray, blur_frac: float, out_shape: tuple[int, int]) -> np.ndarray:
    """The code's last steps: taper 4 border cells, min-max, Gaussian blur, min-max, bicubic resize, min-max."""
    master = mat2gray(attenuate_borders(master, 4))
    if blur_frac > 0:
        kernel = gauss_kernel(max(master.shape) * blur_frac, 2.0)
        master = conv_replicate(conv_replicate(master, kernel[None, :]), kernel[:, None])
        master = mat2gray(master)
    return mat2gray(imresize(master, out_shape))


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
        if not self.channels or any(letter not in _VALID_CHANNELS for letter in self.channels):
            raise ValueError(f"GBVS channels must be letters of {_VALID_CHANNELS!r}, got {self.channels!r}")
        if self.channel_weights is not None:
            weights = {str(key): float(value) for key, value in dict(self.channel_weights).items()}
            if any(key not in _VALID_CHANNELS for key in weights):
                raise ValueError(
                    f"GBVS channel_weights keys must be letters of {_VALID_CHANNELS!r}, got {weights}"
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
