"""MATLAB-compatible numerics that decide numbers: the authors' code and the reference models are MATLAB.

Kept in one place so the data readers (1-based MATLAB fixation coordinates) and the classical models (ports of
the MATLAB GBVS / Itti-Koch code) round and resize the same way. docs/protocol.md says where each one matters;
docs/classical.md says how the classical models use them.
"""

from __future__ import annotations

import functools
import math

import numpy as np
from scipy import sparse

__all__ = ["imresize", "imresize_matrix", "mat2gray", "matlab_round"]


def matlab_round(values: np.ndarray | float) -> np.ndarray:
    """Round half away from zero, as MATLAB's ``round`` (numpy's ``round`` goes half to even).

    Parameters
    ----------
    values : array_like or float
        Values to round.

    Returns
    -------
    ndarray
        float64 array of the rounded values (0-d for a scalar input; ``int(...)`` it for an index).
    """
    values = np.asarray(values, dtype=np.float64)
    return np.sign(values) * np.floor(np.abs(values) + 0.5)


def _cubic(x: np.ndarray) -> np.ndarray:
    """MATLAB's bicubic interpolation kernel (Keys, a = -0.5), zero beyond a distance of 2.

    Parameters
    ----------
    x : ndarray
        Distances from the kernel's centre, in samples.

    Returns
    -------
    ndarray
        Kernel weights, of the shape of `x`.
    """
    ax = np.abs(x)
    ax2, ax3 = ax**2, ax**3
    return (1.5 * ax3 - 2.5 * ax2 + 1) * (ax <= 1) + (-0.5 * ax3 + 2.5 * ax2 - 4 * ax + 2) * (
        (ax > 1) & (ax <= 2)
    )


@functools.lru_cache(maxsize=512)
def imresize_matrix(in_len: int, out_len: int) -> sparse.csr_matrix:
    """The matrix of MATLAB's ``imresize(..., 'bicubic')`` along one axis.

    Bicubic kernel a = -0.5, kernel widened by 1/scale when shrinking (MATLAB's default antialiasing) and
    symmetric border padding.  OpenCV's INTER_CUBIC (a = -0.75, no antialiasing) differs, hence this matrix.

    Parameters
    ----------
    in_len : int
        Number of input samples.
    out_len : int
        Number of output samples.

    Returns
    -------
    scipy.sparse.csr_matrix
        The (out_len, in_len) resampling matrix (cached: do not modify it).
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
    """MATLAB ``imresize(image, shape, 'bicubic')`` of a 2-D array.

    Computed as two sparse matrix products (sparse and single-threaded: no BLAS thread pool, which crawls on a
    busy machine).

    Parameters
    ----------
    image : ndarray
        2-D array to resize.
    shape : tuple of int
        Output ``(rows, columns)``.

    Returns
    -------
    ndarray
        float64 array of shape `shape`.
    """
    rows = imresize_matrix(image.shape[0], shape[0])
    cols = imresize_matrix(image.shape[1], shape[1])
    return np.asarray((cols @ (rows @ np.asarray(image, np.float64)).T).T)


def mat2gray(values: np.ndarray) -> np.ndarray:
    """MATLAB ``mat2gray``: scale min..max to 0..1.

    Parameters
    ----------
    values : ndarray
        Array to scale.

    Returns
    -------
    ndarray
        `values` scaled to 0..1 (float64 zeros for a constant array).
    """
    low, high = float(values.min()), float(values.max())
    if high <= low:
        return np.zeros_like(values, dtype=np.float64)
    return (values - low) / (high - low)
