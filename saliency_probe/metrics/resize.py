"""Bilinear resizing as matrices, and the exact small-map algebra built on them (docs/protocol.md, Exact small-map algebra).

Bilinear resizing with ``align_corners=False`` is linear and separable: ``S = U_h A U_w^T`` with
``U_h`` of shape ``(H, h)`` and ``U_w`` of shape ``(W, w)``. Every "mean of the z-scored resized map over a
set of pixels" is then a linear functional of the small map ``A``:

- ``mean(S) = u_h^T A u_w / (H W)`` with ``u = U^T 1``;
- ``E[S^2] = <G_h A G_w, A> / (H W)`` with ``G = U^T U``;
- ``sum of S over the pixels weighted by M = <U_h^T M U_w, A>``; a row of ``U`` has at most two nonzero
  entries (the two source pixels a bilinear sample reads), so a pixel set of ``n`` points moves to the small
  map as ``4 n`` weights.

So the statistics are computed in float64 from ``A`` and the full-resolution map is never built.
"""

from __future__ import annotations

import functools

import torch
import torch.nn.functional as F
from torch import Tensor

# Elements of the (points, regions, taps) temporaries of the sparse projection, per chunk.
_CHUNK_ELEMENTS = 1 << 22
# Small-map elements per pass of MapStats: about 2 MB of float64, so that the float64 copy, the centred map
# and the products stay in a core's cache instead of making one trip through memory each (docs/protocol.md, Targets).
_STATS_CHUNK_ELEMENTS = 1 << 18


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


@functools.lru_cache(maxsize=64)
def _resize_taps_cpu(out_size: int, in_size: int) -> tuple[Tensor, Tensor]:
    matrix = _resize_matrix_cpu(out_size, in_size)
    taps = max(1, int((matrix != 0).sum(dim=1).max()))
    weight, index = matrix.topk(taps, dim=1)  # a row with fewer nonzeros gets taps of weight 0
    return index.contiguous(), weight.contiguous()


@functools.lru_cache(maxsize=128)
def resize_taps(
    out_size: int, in_size: int, device: torch.device, dtype: torch.dtype
) -> tuple[Tensor, Tensor]:
    """The nonzero entries of :func:`resize_matrix` row by row: ``(index, weight)``, each ``(out_size, k)``.

    ``resize_matrix[y] @ a == (weight[y] * a[index[y]]).sum()``; ``k`` is 2 for bilinear resizing (1 for the
    identity). Taken from the matrix itself, so the values are identical. Cached: do not modify them.
    """
    index, weight = _resize_taps_cpu(out_size, in_size)
    return index.to(device), weight.to(device=device, dtype=dtype)


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


class _Moments:
    """One pass of :class:`MapStats` over a chunk of ``(n, h, w)`` small maps (see ``__call__``).

    Without autograd the float64 temporaries live in buffers made once per :class:`MapStats` and reused for
    every chunk: fresh multi-megabyte tensors are handed back to the system when freed, and touching new pages
    costs more than the arithmetic (measured: 60 ms instead of 1.3 ms per chunk of 334 maps of 28x28).
    """

    def __init__(
        self,
        small_size: tuple[int, int],
        full_size: tuple[int, int],
        device: torch.device,
        rows: int,
        buffered: bool,
    ) -> None:
        acc = accumulation_dtype(device)
        (h, w), (H, W) = small_size, full_size
        self.acc, self.small_size, self.pixels, self.buffered = acc, (h, w), H * W, buffered
        self.same_size = (h, w) == (H, W)
        if not self.same_size:
            uh = resize_matrix(H, h, device, acc)
            uw = resize_matrix(W, w, device, acc)
            gram_h = uh.T @ uh  # symmetric and banded (tridiagonal for bilinear upsampling)
            # <G_h A G_w, A> = sum_d c_d sum_y G_h[y, y + d] <A[y], (A G_w)[y + d]>, c_0 = 1, c_d = 2 (symmetry)
            self.bands = [
                (d, gram_h.diagonal(d) * (1.0 if d == 0 else 2.0))
                for d in range(h)
                if bool(gram_h.diagonal(d).any())
            ]
            self.right = torch.cat([uw.T @ uw, uw.sum(0)[:, None]], dim=1)  # (w, w + 1): [G_w | u_w]
            self.sums_h = uh.sum(0)  # u_h
        if buffered:
            self._maps = torch.empty(rows, h, w, dtype=acc, device=device)
            self._product = torch.empty(rows, h, w, dtype=acc, device=device)
            self._right = None if self.same_size else torch.empty(rows * h, w + 1, dtype=acc, device=device)

    def __call__(
        self, maps: Tensor, weights: Tensor | None
    ) -> tuple[Tensor, Tensor, Tensor, Tensor, Tensor | None]:
        """``maps (n, h, w)`` -> offset (mean of A), mean and second moment of the resized centred map,
        max |A|, and the sums ``<A - offset, weights_r>`` ``(n, R)`` (``None`` without weights)."""
        (h, w), n = self.small_size, maps.shape[0]
        a = self._maps[:n].copy_(maps) if self.buffered else maps.to(self.acc)
        flat = a.detach().reshape(n, h * w)
        scale = torch.maximum(flat.amax(dim=1), -flat.amin(dim=1))  # max |A| without a temporary
        offset = a.mean(dim=(-2, -1), keepdim=True)
        centered = a.sub_(offset) if self.buffered else a - offset
        if self.same_size:
            mean = centered.mean(dim=(-2, -1))
            square = (
                torch.mul(centered, centered, out=self._product[:n]) if self.buffered else centered.square()
            )
            second = square.mean(dim=(-2, -1))
        else:
            flat = centered.reshape(n * h, w)
            right = (
                torch.matmul(flat, self.right, out=self._right[: n * h])
                if self.buffered
                else flat @ self.right
            )
            right = right.reshape(n, h, w + 1)  # [A G_w | A u_w]
            mean = (right[..., w] @ self.sums_h) / self.pixels
            second = torch.zeros_like(mean)
            for d, coefficients in self.bands:
                pair = (centered[:, : h - d], right[:, d:, :w])
                product = (
                    torch.mul(*pair, out=self._product[:n, : h - d]) if self.buffered else pair[0] * pair[1]
                )
                second = second + product.sum(dim=-1) @ coefficients
            second = second / self.pixels
        sums = None if weights is None else centered.reshape(n, h * w) @ weights.reshape(-1, h * w).T
        return offset[..., 0, 0], mean, second, scale, sums


class MapStats:
    """Mean and population std of the bilinearly resized maps, computed from the small maps.

    Attributes (batch shape ``(...)`` of the input maps):
        centered: ``A - mean(A)`` in the accumulation dtype, ``(..., h, w)`` (the map that is projected);
            built on first use only.
        offset: ``mean(A)`` in the accumulation dtype, ``(...)``.
        mean: mean of the resized centered map, ``(...)``.
        std: population std of the resized map, 1 where the map is constant (safe denominator).
        constant: True where the map is constant up to rounding noise.
        sums: with ``projections``, ``(B, C, R)`` sums ``<centered[b, c], projections[b, r]>``, else None.
        small_size / full_size: ``(h, w)`` and ``(H, W)``.

    ``rtol_dtype`` is the precision the maps were made in (default: their dtype), which sets the rounding
    noise tolerated in a "constant" map. ``projections`` ``(B, R, h, w)`` (with maps ``(B, C, h, w)``) are
    pixel sets moved to the small map (:func:`project_points`): their sums are taken in the same pass.

    The maps are processed in chunks of about ``_STATS_CHUNK_ELEMENTS`` so that the float64 temporaries stay in
    cache; the float64 copy of all maps is never made unless ``centered`` is read.
    """

    def __init__(
        self,
        maps: Tensor,
        full_size: tuple[int, int],
        rtol_dtype: torch.dtype | None = None,
        projections: Tensor | None = None,
    ) -> None:
        acc = accumulation_dtype(maps.device)
        if rtol_dtype is None:
            rtol_dtype = maps.dtype if maps.is_floating_point() else torch.float64
        rtol = constant_rtol(rtol_dtype)
        h, w = maps.shape[-2:]
        H, W = full_size
        if h > H or w > W:  # downsampling: resize directly, the map is then no larger than the target
            maps = resize_bilinear(maps.to(acc), (H, W))
            h, w = H, W
        self.small_size = (h, w)
        self.full_size = (H, W)
        self._maps = maps
        self._acc = acc
        batch = maps.shape[:-2]
        if projections is not None:
            if maps.dim() != 4 or projections.dim() != 4 or projections.shape[0] != maps.shape[0]:
                raise ValueError(
                    f"MapStats: projections {tuple(projections.shape)} need maps (B, C, h, w) with the same B, "
                    f"got {tuple(maps.shape)}"
                )
            if tuple(projections.shape[-2:]) != (h, w):
                raise ValueError(f"MapStats: projections {tuple(projections.shape)} must be of size {(h, w)}")
            grouped = maps.reshape(maps.shape[0], maps.shape[1], h, w)
        else:
            grouped = maps.reshape(1, -1, h, w)
        rows = max(1, min(_STATS_CHUNK_ELEMENTS // (h * w), grouped.shape[1]))
        buffered = not (torch.is_grad_enabled() and maps.requires_grad)
        moments = _Moments((h, w), (H, W), maps.device, rows, buffered)
        parts = [
            moments(grouped[image, start : start + rows], None if projections is None else projections[image])
            for image in range(grouped.shape[0])
            for start in range(0, grouped.shape[1], rows)
        ] or [moments(grouped.reshape(-1, h, w), None if projections is None else projections[:0].sum(0))]
        offset, mean, second, scale = (
            torch.cat([part[i] for part in parts]).reshape(batch) for i in range(4)
        )
        self.offset = offset
        self.sums = (
            None
            if projections is None
            else torch.cat([part[4] for part in parts]).reshape(*batch, projections.shape[1])
        )
        var = (second - mean.square()).clamp_min(0.0)
        self.constant = var.detach().sqrt() <= rtol * scale
        # A safe denominator: where() alone would still send NaN/inf gradients through sqrt(0).
        self.std = torch.where(self.constant, torch.ones_like(var), var).sqrt()
        self.mean = mean

    @functools.cached_property
    def centered(self) -> Tensor:
        """``A - mean(A)`` in the accumulation dtype, ``(..., h, w)``."""
        return self._maps.to(self._acc) - self.offset[..., None, None]

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

    The sparse form of ``U_h^T M U_w``: a few hundred fixated pixels instead of a full-resolution map, each
    spread over the (at most 4) small-map pixels its bilinear sample reads. ``values`` is ``(N, R)``; returns
    ``(num, R, h, w)`` in the accumulation dtype.
    """
    acc = accumulation_dtype(values.device)
    (h, w), (H, W) = small_size, full_size
    index_h, weight_h = resize_taps(H, h, values.device, acc)
    index_w, weight_w = resize_taps(W, w, values.device, acc)
    regions = values.shape[1]
    taps = index_h.shape[1] * index_w.shape[1]
    out = torch.zeros(num * regions * h * w, dtype=acc, device=values.device)
    slots = torch.arange(regions, device=values.device)[None, :, None] * (h * w)  # (1, R, 1)
    chunk = max(1, _CHUNK_ELEMENTS // max(1, regions * taps))
    for start in range(0, index.numel(), chunk):
        part = slice(start, start + chunk)
        y, x = ys[part], xs[part]
        pixel = (index_h[y][:, :, None] * w + index_w[x][:, None, :]).reshape(-1, 1, taps)  # (n, 1, taps)
        weight = (weight_h[y][:, :, None] * weight_w[x][:, None, :]).reshape(-1, 1, taps)
        target = index[part][:, None, None] * (regions * h * w) + slots + pixel  # (n, R, taps)
        contrib = values[part].to(acc)[:, :, None] * weight  # (n, R, taps)
        out.index_add_(0, target.reshape(-1), contrib.reshape(-1))
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
    """Whether the point projection (a few scattered weights per point) is the cheaper one: dense costs about
    ``maps * H * W * h`` (two matrix products), so points win unless nearly every pixel is set."""
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
