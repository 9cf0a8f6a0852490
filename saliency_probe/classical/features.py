"""Feature maps shared by GBVS (:mod:`.gbvs`) and its Itti-Koch variant (:mod:`.itti`), following the helpers
of Harel's MATLAB GBVS toolbox (``getFeatureMaps.m``, ``mySubsample``, ``rgb2dkl``, ``myconv2``, ...).

The image (0..1 doubles) and its R, G, B planes are decimated with the code's 6-tap [1 5 10 10 5 1] filter
(``mySubsample``; level n = 1/2^n); the channels are ``C`` colour opponency (|B - min(R, G)| / I and
|R - G| / I), ``D`` DKL colour (3 maps), ``I`` intensity = max(R, G, B) and ``O`` Gabor orientation
(sum of |even| + |odd| responses on the intensity, borders attenuated over 13 px).  The models' last steps
(border taper, blur, resize back to the image) are here too.  docs/classical.md describes both models.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Sequence

import cv2
import numpy as np
from scipy.interpolate import PchipInterpolator

from saliency_probe.matlab import imresize, mat2gray, matlab_round

__all__ = [
    "GABOR_ANGLES",
    "MIN_IMAGE_SIDE",
    "VALID_CHANNELS",
    "attenuate_borders",
    "blur_and_resize",
    "channel_maps",
    "check_min_size",
    "conv_replicate",
    "feature_pyramid",
    "gabor_kernel",
    "gauss_kernel",
    "rgb_to_dkl",
    "saliency_map_size",
    "subsample",
]

#: Smallest image side GBVS (and the Itti-Koch variant of its code) accepts, as in ``gbvs.m``.
MIN_IMAGE_SIDE = 128
#: Orientations of the Gabor filters of the ``O`` channel, in degrees.
GABOR_ANGLES = (0.0, 45.0, 90.0, 135.0)
#: Feature channel letters: ``C`` colour opponency, ``D`` DKL colour, ``I`` intensity, ``O`` orientation.
VALID_CHANNELS = "CDIO"

# --- filters and pyramid ---------------------------------------------------------------------------------------


def conv_replicate(image: np.ndarray, kernel: np.ndarray) -> np.ndarray:
    """MATLAB ``conv2(..., 'same')`` with replicated borders (the code's ``myconv2``)."""
    flipped = np.ascontiguousarray(kernel[::-1, ::-1], dtype=np.float64)
    return cv2.filter2D(image.astype(np.float64), cv2.CV_64F, flipped, borderType=cv2.BORDER_REPLICATE)


def gauss_kernel(std: float, n_stds: float = 2.0) -> np.ndarray:
    """The code's ``mygausskernel``: a normalised 1-D Gaussian of half-width round(std * n_stds)."""
    half = int(matlab_round(std * n_stds))
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
    raise ValueError(f"unknown feature channel {channel!r}; valid channels: {VALID_CHANNELS}")


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


# --- map size and the last steps -------------------------------------------------------------------------------


def saliency_map_size(height: int, width: int, max_size: int) -> tuple[int, int]:
    """Cells of the saliency map: the image's aspect with the longer side ``max_size`` (MATLAB rounding)."""
    scale = max_size / max(height, width)
    return max(1, int(matlab_round(height * scale))), max(1, int(matlab_round(width * scale)))


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
