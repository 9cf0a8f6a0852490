"""Ground-truth and fixation maps: rasterising fixations, the Gaussian blur, min-max scaling.

One home for these, used by training (the ground truth of CC), the output analysis (GT of Eq. 3), the benchmark
(centre bias, inter-observer maps, the GT of CC/KLD/SIM) and the figures. The blur is torchvision's
``gaussian_blur`` made separable: a normalised kernel of ``linspace(-r, r, size)`` taps, ``size = 2 round(3
sigma) + 1`` (+-3 sigma, limited to the map so the reflected border is defined), reflected border. The torch
entry point (:func:`fixation_density`) and the numpy one (:func:`blur`) share the kernel
(:func:`gaussian_kernel_1d`); docs/protocol.md gives the conventions.
"""

from __future__ import annotations

import contextlib
import functools

import cv2
import numpy as np
import torch

__all__ = ["kernel_size", "gaussian_kernel_1d", "blur_matrix", "blur", "fixation_density", "fixation_map", "minmax"]


def kernel_size(sigma: float, length: int) -> int:
    """Taps of the blur kernel for a map side of ``length``: +-3 sigma, odd, at most the map (reflect needs it)."""
    size = 2 * int(round(3 * sigma)) + 1
    return min(size, 2 * ((length - 1) // 2) + 1)


def gaussian_kernel_1d(
    size: int, sigma: float, dtype: torch.dtype = torch.float64, device: torch.device | str | None = None
) -> torch.Tensor:
    """torchvision's normalised 1-D Gaussian of ``size`` taps (``linspace(-r, r, size)``), in ``dtype``.

    Parameters
    ----------
    size : int
        Number of taps (odd).
    sigma : float
        Standard deviation in pixels.
    dtype, device
        Of the returned kernel (computed in ``dtype``, as torchvision does).

    Returns
    -------
    torch.Tensor
        ``(size,)`` kernel summing to 1.
    """
    half = (size - 1) / 2
    x = torch.linspace(-half, half, size, dtype=dtype, device=device)
    kernel = torch.exp(-0.5 * (x / sigma) ** 2)
    return kernel / kernel.sum()


@functools.lru_cache(maxsize=8)
def blur_matrix(size: int, sigma: float) -> np.ndarray:
    """The ``(size, size)`` float64 matrix of the 1-D blur with reflected border.

    Column ``j`` is the blurred impulse at ``j``, so a sparse map ``v`` blurs to ``K_h[:, rows] diag(v)
    K_w[:, cols]^T``. Read-only (cached).
    """
    kernel = gaussian_kernel_1d(kernel_size(sigma, size), sigma).numpy()
    matrix = cv2.sepFilter2D(np.eye(size), cv2.CV_64F, np.ones(1), kernel, borderType=cv2.BORDER_REFLECT_101)
    matrix.flags.writeable = False
    return matrix


def blur(values: np.ndarray, sigma: float) -> np.ndarray:
    """Gaussian blur of one ``(H, W)`` map with ``sigma`` pixels, in float64 (the values of
    :func:`fixation_density`).

    Parameters
    ----------
    values : ndarray
        ``(H, W)`` map (a binary fixation map or any density).
    sigma : float
        Standard deviation in pixels; ``<= 0`` returns a float64 copy.

    Returns
    -------
    ndarray
        ``(H, W)`` float64. A map with few nonzero pixels (a fixation map) is blurred as one product of the
        1-D blur matrices (in torch, which honours ``torch.set_num_threads``); a dense one by two 1-D passes.
    """
    values = np.asarray(values, dtype=np.float64)
    if values.ndim != 2:
        raise ValueError(f"blur: expected an (H, W) map, got shape {values.shape}")
    if sigma <= 0:
        return values.copy()
    height, width = values.shape
    size_x, size_y = kernel_size(sigma, width), kernel_size(sigma, height)
    rows, cols = np.nonzero(values)
    if rows.size < size_x + size_y:
        left = blur_matrix(height, float(sigma))[:, rows] * values[rows, cols]
        right = blur_matrix(width, float(sigma))[:, cols].T
        return (torch.from_numpy(left) @ torch.from_numpy(np.ascontiguousarray(right))).numpy()
    kernel_x = gaussian_kernel_1d(size_x, sigma).numpy()
    kernel_y = gaussian_kernel_1d(size_y, sigma).numpy()
    return cv2.sepFilter2D(values, cv2.CV_64F, kernel_x, kernel_y, borderType=cv2.BORDER_REFLECT_101)


def fixation_density(fixations: torch.Tensor, sigma: float) -> torch.Tensor:
    """Blur maps ``(..., H, W)`` with a Gaussian of ``sigma`` pixels, in torch (differentiable, any device).

    The separable blur as two matrix products, ``K_h X K_w^T`` with the 1-D blur matrices of :func:`blur_matrix`
    (reflected border included), in the maps' float dtype (integer or boolean maps become float32) and outside
    any autocast region (a ground truth is not computed in bfloat16). The values of torchvision's 2-D
    ``gaussian_blur`` and of :func:`blur` up to float rounding; one GEMM pair costs about a tenth of two
    single-channel convolutions with a +-3 sigma kernel (docs/benchmarks.md, "Feature cache").
    """
    values = fixations.float() if not fixations.is_floating_point() else fixations
    if sigma <= 0:
        return values
    height, width = values.shape[-2:]
    plain = (torch.autocast(values.device.type, enabled=False) if values.device.type in ("cpu", "cuda")
             else contextlib.nullcontext())
    with plain:
        rows = _blur_matrix_tensor(height, float(sigma), values.dtype, values.device)
        cols = _blur_matrix_tensor(width, float(sigma), values.dtype, values.device)
        return rows @ values @ cols.T


@functools.lru_cache(maxsize=16)
def _blur_matrix_tensor(size: int, sigma: float, dtype: torch.dtype, device: torch.device) -> torch.Tensor:
    """:func:`blur_matrix` as a tensor of ``dtype`` on ``device`` (built once per size, sigma, dtype, device)."""
    return torch.tensor(blur_matrix(size, sigma), dtype=dtype, device=device)


def fixation_map(pixels_xy: np.ndarray, height: int, width: int) -> np.ndarray:
    """Binary ``(height, width)`` map of the unique fixated pixels.

    Parameters
    ----------
    pixels_xy : ndarray
        ``(N, 2)`` 0-based integer ``[x, y]`` pixels inside the image (already rounded and clipped, as
        :func:`saliency_probe.data.fixations.fixation_pixels` returns them), or several such arrays stacked.
    height, width : int
        Image size.
    """
    pixels = np.asarray(pixels_xy, dtype=np.int64).reshape(-1, 2)
    fixated = np.zeros((int(height), int(width)), dtype=bool)
    fixated[pixels[:, 1], pixels[:, 0]] = True
    return fixated


def minmax(values: np.ndarray) -> np.ndarray:
    """Scale a map to ``[0, 1]`` (float64); a constant map becomes zeros."""
    low, high = float(np.min(values)), float(np.max(values))
    if high <= low:
        return np.zeros_like(values, dtype=np.float64)
    return (np.asarray(values, dtype=np.float64) - low) / (high - low)
