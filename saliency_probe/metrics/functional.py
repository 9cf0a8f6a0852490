"""Saliency metrics as pure torch functions on ``(..., h, w)`` maps (pysaliency / MIT benchmark definitions).

Conventions (see docs/metrics.md): a saliency map whose size differs from the fixation or ground-truth map is
resized bilinearly (``align_corners=False``); fixation maps are binary (any nonzero pixel is fixated, each
pixel counts once); std is the population std; a constant map (up to rounding noise) gives NSS 0 and CC 0;
densities for SIM and KLD shift negative maps to 0 and use a uniform density for an all-zero map.

The z-score metrics (``nss``, ``region_nss``, ``nmm``) use the exact small-map algebra of :mod:`saliency_probe.metrics.resize`:
statistics in float64 from the small map, never a full-resolution map per unit.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import NamedTuple

import torch
from torch import Tensor

from saliency_probe.metrics.resize import (
    MapStats,
    accumulation_dtype,
    project_points,
    project_weights,
    resize_bilinear,
)

__all__ = [
    "nss",
    "region_nss",
    "region_nss_fixated",
    "fixated_regions",
    "FixatedRegions",
    "nmm",
    "cc",
    "kld",
    "sim",
    "auc_judd",
    "auc_shuffled",
    "top_k_mean",
    "count_above",
    "to_density",
    "MIT_EPS",
]

MIT_EPS = 2.2204e-16
"""The regularisation of the MIT benchmark's KL divergence (MATLAB ``eps``, as pysaliency writes it)."""


def _check_maps(name: str, tensor: Tensor, min_dim: int = 2) -> None:
    if not isinstance(tensor, Tensor):
        raise TypeError(f"{name}: expected a torch.Tensor, got {type(tensor).__name__}")
    if tensor.dim() < min_dim:
        raise ValueError(
            f"{name}: expected at least {min_dim} dimensions (..., h, w), got shape {tuple(tensor.shape)}"
        )
    if tensor.shape[-1] == 0 or tensor.shape[-2] == 0:
        raise ValueError(f"{name}: empty spatial size {tuple(tensor.shape[-2:])}")


def _binary(tensor: Tensor) -> Tensor:
    return tensor if tensor.dtype == torch.bool else tensor != 0


def _check_batch(name_a: str, a: Tensor, name_b: str, b: Tensor) -> None:
    try:
        torch.broadcast_shapes(a.shape[:-2], b.shape[:-2])
    except RuntimeError as error:
        raise ValueError(
            f"{name_a} {tuple(a.shape)} and {name_b} {tuple(b.shape)}: batch dimensions do not broadcast"
        ) from error


def _to_size(maps: Tensor, size: tuple[int, int]) -> Tensor:
    """Maps in float (at least float32), bilinearly resized to ``size`` when they differ."""
    if not maps.is_floating_point() or maps.dtype in (torch.float16, torch.bfloat16):
        maps = maps.float()
    return resize_bilinear(maps, size)


# --------------------------------------------------------------------------------------------------------
# z-score metrics: NSS, region NSS, NMM
# --------------------------------------------------------------------------------------------------------


def nss(saliency_map: Tensor, fixation_map: Tensor) -> Tensor:
    """Normalised scanpath saliency: mean z-score of the saliency map at the fixated pixels.

    Args:
        saliency_map: ``(..., h, w)`` maps; resized bilinearly to the fixation map's size when smaller
            (exactly, without building the resized map).
        fixation_map: ``(..., H, W)`` binary maps (any nonzero pixel is fixated, once), float or bool.
            Batch dimensions broadcast against the saliency map's.

    Returns:
        ``(...)`` one NSS per map, in the saliency map's dtype (float32 for integer and half maps). NaN where the
        fixation map has no fixation (exclude and count those); 0 for a constant map. Differentiable, with
        finite gradients everywhere (a constant map gets a zero gradient), so ``-nanmean(nss(pred, fix))``
        is a training loss.
    """
    _check_maps("saliency_map", saliency_map)
    _check_maps("fixation_map", fixation_map)
    _check_batch("saliency_map", saliency_map, "fixation_map", fixation_map)
    fix = _binary(fixation_map)
    H, W = fix.shape[-2:]
    stats = MapStats(saliency_map, (H, W))
    projected = project_weights(fix.reshape(-1, H, W), stats.small_size)
    projected = projected.reshape(*fix.shape[:-2], *stats.small_size)
    counts = fix.sum(dim=(-2, -1)).to(projected.dtype)
    value = stats.zscored_means(stats.weighted_sums(projected), counts)
    out_dtype = (
        torch.promote_types(saliency_map.dtype, torch.float32)
        if saliency_map.is_floating_point()
        else torch.float32
    )
    return value.to(out_dtype)


class FixatedRegions(NamedTuple):
    """Regions given by the fixated pixels they hold: the fast input form of region NSS (docs/protocol.md, Exact small-map algebra).

    A region enters Eq. 1 only through its fixated pixels, so the batch's unique fixated pixels and, for each,
    the region slots that hold it say everything the ``(B, R, H, W)`` masks say, in a few kilobytes. Build one
    with :func:`fixated_regions` (or ``saliency_probe.probe.regions.probe_region_points``) and pass it to
    :func:`region_nss_fixated` or :meth:`~saliency_probe.metrics.RegionNSS.update` in place of the masks.

    Fields:
        image, ys, xs: ``(N,)`` int64 image index and pixel of every unique fixated pixel of the batch (each
            pixel once; images without fixations have none).
        membership: ``(N, R)`` bool: True where slot ``r`` of the pixel's image holds the pixel.
        batch: ``B``, the number of images.
        size: ``(H, W)`` of the fixation maps.
    """

    image: Tensor
    ys: Tensor
    xs: Tensor
    membership: Tensor
    batch: int
    size: tuple[int, int]

    def fixations_per_image(self) -> Tensor:
        """``(B,)`` int64 number of unique fixated pixels of each image."""
        return torch.bincount(self.image, minlength=self.batch)


def fixated_regions(fixation_map: Tensor, region_masks: Tensor | Sequence[Tensor]) -> FixatedRegions:
    """The :class:`FixatedRegions` of a batch: the region masks read at the fixated pixels only.

    Args:
        fixation_map: ``(B, H, W)`` binary fixation maps.
        region_masks: a padded ``(B, R, H, W)`` tensor or a list of ``B`` tensors ``(R_b, H, W)`` (padded with
            empty slots to ``max R_b``); any nonzero pixel belongs to the region.
    """
    _check_maps("fixation_map", fixation_map)
    if fixation_map.dim() != 3:
        raise ValueError(f"fixation_map: expected (B, H, W), got shape {tuple(fixation_map.shape)}")
    batch, size = fixation_map.shape[0], (int(fixation_map.shape[1]), int(fixation_map.shape[2]))
    image, ys, xs = _binary(fixation_map).nonzero(as_tuple=True)
    if isinstance(region_masks, Tensor):
        if (
            region_masks.dim() != 4
            or region_masks.shape[0] != batch
            or tuple(region_masks.shape[-2:]) != size
        ):
            raise ValueError(
                f"region_masks: expected a (B={batch}, R, {size[0]}, {size[1]}) tensor, "
                f"got {tuple(region_masks.shape)}"
            )
        inside = region_masks[
            image.to(region_masks.device), :, ys.to(region_masks.device), xs.to(region_masks.device)
        ]
        return FixatedRegions(image, ys, xs, _binary(inside).to(image.device), batch, size)
    if len(region_masks) != batch:
        raise ValueError(f"region_masks: expected {batch} entries (one per image), got {len(region_masks)}")
    for index, masks in enumerate(region_masks):
        if masks.dim() != 3 or tuple(masks.shape[-2:]) != size:
            raise ValueError(
                f"region_masks[{index}]: expected (R, {size[0]}, {size[1]}), got {tuple(masks.shape)}"
            )
    width = max((int(masks.shape[0]) for masks in region_masks), default=0)
    membership = torch.zeros(image.numel(), width, dtype=torch.bool, device=image.device)
    ends = torch.bincount(image, minlength=batch).cumsum(0).tolist()
    for b, (masks, end) in enumerate(zip(region_masks, ends, strict=True)):
        part = slice(ends[b - 1] if b else 0, end)
        y, x = ys[part].to(masks.device), xs[part].to(masks.device)
        membership[part, : masks.shape[0]] = _binary(masks[:, y, x]).T.to(image.device)
    return FixatedRegions(image, ys, xs, membership, batch, size)


def region_nss_fixated(
    activations: Tensor, regions: FixatedRegions, return_constant: bool = False
) -> Tensor | tuple[Tensor, Tensor]:
    """:func:`region_nss` for regions given as :class:`FixatedRegions`: the same values, without masks.

    Each fixated pixel moves to the small map as its (at most 4) bilinear taps, per region; the projected
    regions are summed against the centred maps in the same cache-sized pass that computes the maps' mean
    and std. Returns ``(B, C, R)`` float64 (float32 on MPS): NaN where a region holds no fixation, 0 for a
    constant map. With ``return_constant``, also the ``(B, C)`` booleans of the maps that were constant (up to
    the rounding noise of their dtype, :class:`~saliency_probe.metrics.resize.MapStats`): the "dead" maps whose
    values are 0.
    """
    _check_maps("activations", activations)
    if activations.dim() != 4 or activations.shape[0] != regions.batch:
        raise ValueError(
            f"region_nss: expected activations (B={regions.batch}, C, h, w), got {tuple(activations.shape)}"
        )
    (h, w), (H, W) = activations.shape[-2:], regions.size
    device, acc = activations.device, accumulation_dtype(activations.device)
    B, R = regions.batch, regions.membership.shape[1]
    if R == 0:
        empty = torch.empty(B, activations.shape[1], 0, dtype=acc, device=device)
        if return_constant:
            return empty, MapStats(activations, (H, W)).constant
        return empty
    small = (H, W) if h > H or w > W else (h, w)  # MapStats resizes larger maps to the fixations' size
    image, membership = regions.image.to(device), regions.membership.to(device)
    counts = torch.zeros(B, R, dtype=acc, device=device).index_add_(0, image, membership.to(acc))
    projected = project_points(
        image, regions.ys.to(device), regions.xs.to(device), membership, B, small, (H, W)
    )
    stats = MapStats(activations, (H, W), projections=projected)
    values = stats.zscored_means(stats.sums, counts[:, None, :], trailing=1)
    return (values, stats.constant) if return_constant else values


def region_nss(activations: Tensor, fixation_map: Tensor, region_masks: Tensor) -> Tensor:
    """Eq. 1 of the paper for every unit and region: NSS of each resized map over the fixations in a region.

    Each map is z-scored over the **whole** resized map (population std), then averaged over the fixated
    pixels inside the region. Exact small-map algebra in float64: no full-resolution map per unit; the masks
    are read at the fixated pixels only (:func:`fixated_regions`, :func:`region_nss_fixated`).

    Args:
        activations: ``(B, C, h, w)`` unit maps (e.g. post-ReLU conv activations).
        fixation_map: ``(B, H, W)`` binary fixation maps.
        region_masks: ``(B, R, H, W)`` binary region masks (all-zero masks may pad a batch).

    Returns:
        ``(B, C, R)`` float64 (float32 on MPS): NaN where a region holds no fixation, 0 for a constant map.
    """
    _check_maps("activations", activations)
    _check_maps("fixation_map", fixation_map)
    _check_maps("region_masks", region_masks)
    if activations.dim() != 4 or fixation_map.dim() != 3 or region_masks.dim() != 4:
        raise ValueError(
            "region_nss: expected activations (B, C, h, w), fixation_map (B, H, W), region_masks (B, R, H, W); "
            f"got {tuple(activations.shape)}, {tuple(fixation_map.shape)}, {tuple(region_masks.shape)}"
        )
    B, R, H, W = region_masks.shape
    if fixation_map.shape != (B, H, W) or activations.shape[0] != B:
        raise ValueError(
            f"region_nss: batch or size mismatch: activations {tuple(activations.shape)}, "
            f"fixation_map {tuple(fixation_map.shape)}, region_masks {tuple(region_masks.shape)}"
        )
    return region_nss_fixated(activations, fixated_regions(fixation_map, region_masks))


def nmm(maps: Tensor, masks: Tensor) -> Tensor:
    """Eq. 4, normalised map mean: mean of each z-scored (resized) map over a binary target mask.

    Args:
        maps: ``(B, C, h, w)`` unit maps or model outputs (``C = 1``).
        masks: ``(B, H, W)`` binary target masks (threshold anti-aliased masks before calling).

    Returns:
        ``(B, C)`` float64 (float32 on MPS): NaN where a mask is empty, 0 for a constant map.
    """
    _check_maps("maps", maps)
    _check_maps("masks", masks)
    if maps.dim() != 4 or masks.dim() != 3 or masks.shape[0] != maps.shape[0]:
        raise ValueError(
            f"nmm: expected maps (B, C, h, w) and masks (B, H, W), got {tuple(maps.shape)}, {tuple(masks.shape)}"
        )
    B, H, W = masks.shape
    whole_image = torch.ones(1, 1, 1, 1, dtype=torch.bool, device=masks.device).expand(B, 1, H, W)
    return region_nss(maps, masks, whole_image)[..., 0]  # the mask's pixels as "fixations" in one region


# --------------------------------------------------------------------------------------------------------
# distribution metrics: CC, KLD, SIM
# --------------------------------------------------------------------------------------------------------


def cc(saliency_map: Tensor, gt_map: Tensor) -> Tensor:
    """Pearson linear correlation coefficient between the saliency map and a ground-truth map.

    The saliency map is resized bilinearly to the ground truth's size. Returns ``(...)`` in float64 (0 where
    either map is constant, up to rounding noise).
    """
    _check_maps("saliency_map", saliency_map)
    _check_maps("gt_map", gt_map)
    _check_batch("saliency_map", saliency_map, "gt_map", gt_map)
    size = tuple(gt_map.shape[-2:])
    acc = accumulation_dtype(saliency_map.device)
    rtol_s = saliency_map.dtype if saliency_map.is_floating_point() else torch.float64
    pred = MapStats(_to_size(saliency_map.to(acc), size), size, rtol_dtype=rtol_s)
    rtol_g = gt_map.dtype if gt_map.is_floating_point() else torch.float64
    gt = MapStats(gt_map.to(acc), size, rtol_dtype=rtol_g)
    value = (pred.centered * gt.centered).mean(dim=(-2, -1)) / (pred.std * gt.std)
    return torch.where(pred.constant | gt.constant, torch.zeros_like(value), value)


def to_density(maps: Tensor) -> Tensor:
    """pysaliency's ``convert_saliency_map_to_density``: shift a map with negative values to minimum 0, then
    normalise to sum 1; an all-zero map becomes the uniform density. ``(..., h, w)`` in float64."""
    _check_maps("maps", maps)
    m = maps.to(accumulation_dtype(maps.device))
    low = m.amin(dim=(-2, -1), keepdim=True)
    m = m - low.clamp(max=0.0)
    total = m.sum(dim=(-2, -1), keepdim=True)
    uniform = torch.full_like(m, 1.0 / (m.shape[-1] * m.shape[-2]))
    return torch.where(total > 0, m / torch.where(total > 0, total, torch.ones_like(total)), uniform)


def kld(saliency_map: Tensor, gt_map: Tensor) -> Tensor:
    """KL divergence of the ground-truth density Q from the predicted density P, MIT/pysaliency style:
    ``sum Q log(eps + Q / (P + eps))`` with ``eps = 2.2204e-16``. Returns ``(...)`` in float64 (lower is
    better)."""
    _check_maps("saliency_map", saliency_map)
    _check_maps("gt_map", gt_map)
    _check_batch("saliency_map", saliency_map, "gt_map", gt_map)
    p = to_density(_to_size(saliency_map, tuple(gt_map.shape[-2:])))
    q = to_density(gt_map)
    return (q * torch.log(MIT_EPS + q / (p + MIT_EPS))).sum(dim=(-2, -1))


def sim(saliency_map: Tensor, gt_map: Tensor) -> Tensor:
    """Similarity (histogram intersection) of the two densities: ``sum min(P, Q)``. ``(...)`` float64."""
    _check_maps("saliency_map", saliency_map)
    _check_maps("gt_map", gt_map)
    _check_batch("saliency_map", saliency_map, "gt_map", gt_map)
    p = to_density(_to_size(saliency_map, tuple(gt_map.shape[-2:])))
    q = to_density(gt_map)
    return torch.minimum(p, q).sum(dim=(-2, -1))


# --------------------------------------------------------------------------------------------------------
# ROC metrics: AUC-Judd, shuffled AUC
# --------------------------------------------------------------------------------------------------------


def _flat_pair(saliency_map: Tensor, fixation_map: Tensor) -> tuple[Tensor, Tensor, tuple[int, ...]]:
    """Saliency values resized to the fixation size and the binary fixations, flattened to ``(M, N)``."""
    _check_maps("saliency_map", saliency_map)
    _check_maps("fixation_map", fixation_map)
    _check_batch("saliency_map", saliency_map, "fixation_map", fixation_map)
    size = tuple(fixation_map.shape[-2:])
    values = _to_size(saliency_map.to(accumulation_dtype(saliency_map.device)), size)
    fix = _binary(fixation_map)
    batch = torch.broadcast_shapes(values.shape[:-2], fix.shape[:-2])
    values = values.expand(*batch, *size).reshape(-1, size[0] * size[1])
    fix = fix.expand(*batch, *size).reshape(-1, size[0] * size[1])
    return values.detach(), fix, tuple(batch)


def auc_judd(saliency_map: Tensor, fixation_map: Tensor) -> Tensor:
    """AUC-Judd: ROC area with thresholds at the fixated pixels' values, negatives = unfixated pixels.

    The MIT benchmark's curve: for each fixated value t, TP(t) = share of fixated pixels >= t and FP(t) =
    share of unfixated pixels >= t; the points, with (0, 0) and (1, 1), are joined by the trapezoid rule.
    Each unfixated pixel x thus earns ``(2 a + 1) / (2 n_pos)``, ``a`` = fixated pixels above it, or 1 when it
    lies below every fixated pixel; the AUC is the mean earning. Ties (quantised maps) are resolved exactly
    as the expectation over the MIT code's random jitter, which orders a tie group at random: a pixel tied
    with ``p`` fixated values earns ``(2 a + p + 1) / (2 n_pos)``, or ``(1 + p (2 a + p) / (2 n_pos)) / (p + 1)``
    in the lowest fixated group. On maps without ties this is the MIT value exactly.

    Returns ``(...)`` float64, NaN where a map has no fixation or no unfixated pixel. Not differentiable.
    """
    values, fix, batch = _flat_pair(saliency_map, fixation_map)
    n = values.shape[-1]
    fixated_ascending = torch.where(fix, values, torch.full_like(values, -torch.inf)).sort(dim=-1).values
    query = values.contiguous()
    at_or_below = torch.searchsorted(fixated_ascending, query, side="right")  # padding (-inf) counts below
    below = torch.searchsorted(fixated_ascending, query, side="left")
    above = (n - at_or_below).to(values.dtype)  # fixated values strictly above each pixel
    tied = (at_or_below - below).to(values.dtype)  # fixated values equal to it
    n_pos = fix.sum(dim=-1, keepdim=True).to(values.dtype)
    n_neg = n - n_pos
    safe_pos = n_pos.clamp(min=1)
    inner = (2 * above + tied + 1) / (2 * safe_pos)
    lowest = (1 + tied * (2 * above + tied) / (2 * safe_pos)) / (tied + 1)
    earning = torch.where(above + tied < n_pos, inner, lowest)
    area = torch.where(fix, torch.zeros_like(earning), earning).sum(-1) / n_neg[:, 0].clamp(min=1)
    valid = (n_pos[:, 0] > 0) & (n_neg[:, 0] > 0)
    return torch.where(valid, area, torch.full_like(area, float("nan"))).reshape(batch)


def auc_shuffled(saliency_map: Tensor, fixation_map: Tensor, other_fixations: Tensor) -> Tensor:
    """Shuffled AUC: ROC area separating the saliency at this image's fixations from the saliency at
    other images' fixation locations (binary map ``other_fixations``, same size as ``fixation_map``).

    Computed exactly over all thresholds (the Mann-Whitney statistic, ties count half), as pysaliency does;
    the MIT code's 100 random splits and 0.1 threshold steps only approximate it. Returns ``(...)`` float64,
    NaN where either set is empty.
    """
    _check_maps("other_fixations", other_fixations)
    values, fix, batch = _flat_pair(saliency_map, fixation_map)
    other = _binary(other_fixations)
    if other.shape[-2:] != fixation_map.shape[-2:]:
        raise ValueError(
            f"auc_shuffled: other_fixations {tuple(other.shape)} must have the fixation map's size "
            f"{tuple(fixation_map.shape[-2:])}"
        )
    other = other.expand(*batch, *other.shape[-2:]).reshape(values.shape)
    negatives = torch.where(other, values, torch.full_like(values, torch.inf)).sort(dim=-1).values
    below = torch.searchsorted(negatives, values.contiguous(), side="left")
    below_or_equal = torch.searchsorted(negatives, values.contiguous(), side="right")
    n_pos = fix.sum(dim=-1).to(values.dtype)
    n_neg = other.sum(dim=-1).to(values.dtype)
    credit = torch.where(fix, (below + below_or_equal).to(values.dtype) / 2, torch.zeros_like(values)).sum(-1)
    area = credit / (n_pos * n_neg).clamp(min=1)
    valid = (n_pos > 0) & (n_neg > 0)
    return torch.where(valid, area, torch.full_like(area, float("nan"))).reshape(batch)


# --------------------------------------------------------------------------------------------------------
# the paper's unit statistics (Section 4.3)
# --------------------------------------------------------------------------------------------------------


def top_k_mean(unit_means: Tensor, k: int = 10) -> Tensor:
    """Mean of the ``k`` largest unit averages per column: ``(C, K) -> (K,)`` (or ``(C,) -> ()``).

    NaN entries (a unit or category without data) are ignored; fewer than ``k`` finite units use those
    there are; a column without any gives NaN.
    """
    if k < 1:
        raise ValueError(f"top_k_mean: k must be >= 1, got {k}")
    if unit_means.dim() not in (1, 2):
        raise ValueError(
            f"top_k_mean: expected (C,) or (C, K) unit means, got shape {tuple(unit_means.shape)}"
        )
    finite = ~torch.isnan(unit_means)
    ordered = torch.where(finite, unit_means, torch.full_like(unit_means, -torch.inf))
    ordered = ordered.sort(dim=0, descending=True).values[: min(k, unit_means.shape[0])]
    taken = torch.isfinite(ordered)
    total = torch.where(taken, ordered, torch.zeros_like(ordered)).sum(dim=0)
    count = taken.sum(dim=0)
    return torch.where(count > 0, total / count.clamp(min=1), torch.full_like(total, float("nan")))


def count_above(unit_means: Tensor, threshold: float = 1.5) -> Tensor:
    """Number of units whose average exceeds ``threshold`` per column: ``(C, K) -> (K,)`` int64 (NaN never
    counts)."""
    if unit_means.dim() not in (1, 2):
        raise ValueError(
            f"count_above: expected (C,) or (C, K) unit means, got shape {tuple(unit_means.shape)}"
        )
    return (unit_means > threshold).sum(dim=0)
