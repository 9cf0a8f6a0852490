"""Bilinear resizing as matrices, and the exact small-map algebra built on them (DESIGN section 4).

Bilinear resizing with ``align_corners=False`` is linear and separable: ``S = U_h A U_w^T`` with
``U_h`` of shape ``(H, h)`` and ``U_w`` of shape ``(W, w)``. Every "mean of the z-scored resized map over a
set of pixels" is then a linear functional of the small map ``A``:

- ``mean(S) = u_h^T A u_w / (H W)`` with ``u = U^T 1``;
- ``E[S^2] = <G_h A G_w, A> / (H W)`` with ``G = U^T U``;
- ``sum of S over the pixels weighted by M = <U_h^T M U_w, A>``.

So the statistics are computed in float64 from ``A`` and the full-resolution map is never built.
"""

from __future__ import annotations

import functools

import torch
import torch.nn.functional as F
from torch import Tensor

# Elements of the (points, regions, h * w) temporary of the sparse projection, per chunk (32 MB in float64).
_CHUNK_ELEMENTS = 1 << 22


def accumulation_dtype(device: torch.device) -> torch.dtype:
    """float64 for the statistics; float32 only where the device has no float64 (Apple MPS)."""
    return torch.float32 if device.type == "mps" else torch.float64


@functools.lru_cache(maxsize=64)
def _resize_matrix_cpu(out_size: int, in_size: int) -> Tensor:
    eye = torch.eye(in_size, dtype=torch.float64).unsqueeze(0)  # (1, in, in): channel j holds e_j
    rows = F.interpolate(eye, size=out_size, mode="linear", align_corners=False)  # (1, in, out)
    return rows[0].T.contiguous()  # (out, in)


@functools.lru_cache(maxsize=128)
def resize_matrix(out_size: int, in_size: int, device: torch.device, dtype: torch.dtype) -> Tensor:
    """The ``(out_size, in_size)`` matrix of 1-D linear resizing, ``align_corners=False``, as torch does it.

    Built by resizing the identity with ``F.interpolate`` itself, so it follows torch's convention exactly
    (including downsampling without antialiasing). Cached per size, device and dtype: do not modify it.
    """
    return _resize_matrix_cpu(out_size, in_size).to(device=device, dtype=dtype)


def resize_bilinear(maps: Tensor, size: tuple[int, int]) -> Tensor:
    """Resize ``(..., h, w)`` maps to ``size`` bilinearly (``align_corners=False``); any batch shape."""
    if tuple(maps.shape[-2:]) == tuple(size):
        return maps
    batch = maps.shape[:-2]
    flat = maps.reshape(-1, 1, *maps.shape[-2:])
    if not flat.is_floating_point():
        flat = flat.float()
    out = F.interpolate(flat, size=size, mode="bilinear", align_corners=False)
    return out.reshape(*batch, *size)


def constant_rtol(dtype: torch.dtype) -> float:
    """Relative std below which a map counts as constant: a few units of rounding of its own precision.

    A float64 map filled with 0.7 has a computed std of about 1e-16, not 0; a float32 map computed by a
    network has rounding noise of about 1e-7 of its magnitude. Half-precision maps use float32's epsilon so
    that coarse but real structure is not called constant.
    """
    eps = torch.finfo(torch.float64).eps if dtype == torch.float64 else torch.finfo(torch.float32).eps
    return 8.0 * eps


class MapStats:
    """Mean and population std of the bilinearly resized maps, computed from the small maps.

    Attributes (batch shape ``(...)`` of the input maps):
        centered: ``A - mean(A)`` in the accumulation dtype, ``(..., h, w)`` (the map that is projected).
        mean: mean of the resized centered map, ``(...)``.
        std: population std of the resized map, 1 where the map is constant (safe denominator).
        constant: True where the map is constant up to rounding noise.
        small_size / full_size: ``(h, w)`` and ``(H, W)``.

    ``rtol_dtype`` is the precision the maps were made in (default: their dtype), which sets the rounding
    noise tolerated in a "constant" map.
    """

    def __init__(
        self, maps: Tensor, full_size: tuple[int, int], rtol_dtype: torch.dtype | None = None
    ) -> None:
        acc = accumulation_dtype(maps.device)
        if rtol_dtype is None:
            rtol_dtype = maps.dtype if maps.is_floating_point() else torch.float64
        rtol = constant_rtol(rtol_dtype)
        a = maps.to(acc)
        h, w = a.shape[-2:]
        H, W = full_size
        if h > H or w > W:  # downsampling: resize directly, the map is then no larger than the target
            a = resize_bilinear(a, (H, W))
            h, w = H, W
        self.small_size = (h, w)
        self.full_size = (H, W)
        self.centered = a - a.mean(dim=(-2, -1), keepdim=True)
        if (h, w) == (H, W):
            mean = self.centered.mean(dim=(-2, -1))
            second = self.centered.square().mean(dim=(-2, -1))
        else:
            uh = resize_matrix(H, h, a.device, acc)
            uw = resize_matrix(W, w, a.device, acc)
            mean = torch.einsum("...hw,h,w->...", self.centered, uh.sum(0), uw.sum(0)) / (H * W)
            mixed = (uh.T @ uh) @ self.centered @ (uw.T @ uw)
            second = (mixed * self.centered).sum(dim=(-2, -1)) / (H * W)
        var = (second - mean.square()).clamp_min(0.0)
        scale = a.detach().abs().amax(dim=(-2, -1))
        self.constant = var.detach().sqrt() <= rtol * scale
        # A safe denominator: where() alone would still send NaN/inf gradients through sqrt(0).
        self.std = torch.where(self.constant, torch.ones_like(var), var).sqrt()
        self.mean = mean

    def weighted_sums(self, projected: Tensor) -> Tensor:
        """``sum_p weight_p * S'_p`` for projected weights ``(..., h, w)`` (broadcast against the maps)."""
        return (self.centered * projected).sum(dim=(-2, -1))

    def zscored_means(self, sums: Tensor, counts: Tensor, trailing: int = 0) -> Tensor:
        """Mean z-score over weighted pixel sets from their weighted sums and weight totals.

        ``trailing`` extra dimensions of ``sums`` (e.g. regions) follow the maps' batch dimensions.
        NaN where ``counts`` is 0; exactly 0 where the map is constant. Gradients are finite everywhere.
        """
        shape = (*self.mean.shape, *([1] * trailing))
        mean, std, constant = self.mean.reshape(shape), self.std.reshape(shape), self.constant.reshape(shape)
        safe_counts = torch.where(counts > 0, counts, torch.ones_like(counts))
        value = (sums / safe_counts - mean) / std
        value = torch.where(constant, torch.zeros_like(value), value)
        return torch.where(counts > 0, value, torch.full_like(value, float("nan")))


def project_points(
    index: Tensor,
    ys: Tensor,
    xs: Tensor,
    values: Tensor,
    num: int,
    small_size: tuple[int, int],
    full_size: tuple[int, int],
) -> Tensor:
    """``out[i, r] = sum over points n with index[n] = i of values[n, r] * U_h[y_n]^T U_w[x_n]``.

    The sparse form of ``U_h^T M U_w``: a few hundred fixated pixels instead of a full-resolution map.
    ``values`` is ``(N, R)``; returns ``(num, R, h, w)`` in the accumulation dtype.
    """
    acc = accumulation_dtype(values.device)
    (h, w), (H, W) = small_size, full_size
    uh = resize_matrix(H, h, values.device, acc)
    uw = resize_matrix(W, w, values.device, acc)
    regions = values.shape[1]
    out = torch.zeros(num, regions * h * w, dtype=acc, device=values.device)
    chunk = max(1, _CHUNK_ELEMENTS // max(1, regions * h * w))
    for start in range(0, index.numel(), chunk):
        part = slice(start, start + chunk)
        outer = (uh[ys[part], :, None] * uw[xs[part], None, :]).reshape(-1, 1, h * w)
        contrib = values[part].to(acc)[:, :, None] * outer  # (n, R, h*w)
        out.index_add_(0, index[part], contrib.reshape(-1, regions * h * w))
    return out.reshape(num, regions, h, w)


def project_dense(weights: Tensor, small_size: tuple[int, int]) -> Tensor:
    """``U_h^T M U_w`` for weight maps ``(..., H, W)`` by two matrix products; ``(..., h, w)``."""
    acc = accumulation_dtype(weights.device)
    H, W = weights.shape[-2:]
    h, w = small_size
    if (h, w) == (H, W):
        return weights.to(acc)
    uh = resize_matrix(H, h, weights.device, acc)
    uw = resize_matrix(W, w, weights.device, acc)
    return uh.T @ weights.to(acc) @ uw


def sparse_is_cheaper(
    points: int, small_size: tuple[int, int], maps: int, full_size: tuple[int, int]
) -> bool:
    """Point projection costs about ``points * h * w`` per region, dense ``maps * H * W * w``."""
    if tuple(small_size) == tuple(full_size):
        return False
    return points * small_size[0] <= maps * full_size[0] * full_size[1]


def project_weights(weights: Tensor, small_size: tuple[int, int]) -> Tensor:
    """``U_h^T M U_w`` for weight maps ``M`` of shape ``(N, H, W)``: the pixel set moved to the small map.

    Uses the nonzero pixels when the maps are sparse (fixations: a few hundred pixels) and two matrix
    products otherwise. Returns ``(N, h, w)`` in the accumulation dtype.
    """
    n, H, W = weights.shape
    nonzero = weights.nonzero(as_tuple=True)
    if not sparse_is_cheaper(nonzero[0].numel(), small_size, n, (H, W)):
        return project_dense(weights, small_size)
    idx, ys, xs = nonzero
    return project_points(idx, ys, xs, weights[nonzero][:, None], n, small_size, (H, W))[:, 0]
