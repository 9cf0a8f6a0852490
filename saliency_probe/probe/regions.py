"""Region sets of a batch for the probe: the annotated regions and the shuffled-region control.

The control replaces each region's fixated pixels by as many fixated pixels drawn at random from all fixations
of the same image, seeded by (seed, image stem) so that the draw does not depend on batching or DDP sharding.
"""

from __future__ import annotations

import zlib
from collections.abc import Sequence

import torch
from torch import Tensor

from saliency_probe.metrics.functional import FixatedRegions


def image_generator(seed: int, stem: str) -> torch.Generator:
    """A generator seeded by (seed, image stem): the same draws for an image however the data is sharded."""
    return torch.Generator().manual_seed(int(seed) * 1_000_003 + zlib.crc32(str(stem).encode("utf-8")))


def _shuffled_positions(inside: Tensor, generator: torch.Generator) -> list[Tensor]:
    """For each region (a row of ``inside``, ``(R, n)`` bool over an image's ``n`` fixated pixels), as many
    positions in ``0..n-1`` drawn at random without replacement as the region holds fixated pixels."""
    pool = inside.shape[1]
    return [torch.randperm(pool, generator=generator)[:count] for count in inside.sum(dim=1).tolist()]


def shuffled_region_pixels(
    fixations: Tensor, region_masks: Tensor, generator: torch.Generator
) -> list[Tensor]:
    """The shuffled-region control for one image: each region's fixated pixels replaced by as many fixated
    pixels drawn at random (without replacement) from **all** fixated pixels of the same image.

    Args:
        fixations: ``(H, W)`` binary fixation map.
        region_masks: ``(R, H, W)`` region masks.
        generator: CPU random generator (see :func:`image_generator`).

    Returns:
        For each region, the flat indices (into ``H * W``, on the masks' device) of its drawn pixels. Each keeps
        its region's fixation count, so a region without fixations stays empty (and is excluded, as in the real
        statistic). Region NSS over these sets is the chance level of Eq. 1: how a unit scores at the image's
        fixations regardless of which region they fell in. Only the fixated pixels are read, never the full
        masks.
    """
    pool = (fixations.detach().reshape(-1) != 0).nonzero().squeeze(1)  # flat indices of the fixated pixels
    inside = region_masks.detach().reshape(region_masks.shape[0], -1)[:, pool] != 0  # (R, n_fixated)
    return [pool[order.to(pool.device)] for order in _shuffled_positions(inside, generator)]


def _category_ids(
    masks: Tensor, names: Sequence[str], lookup: dict[str, int], stem: str, size: tuple[int, int]
) -> list[int]:
    """The category index of each of an image's regions; a clear error for bad masks or names."""
    if tuple(masks.shape[-2:]) != tuple(size):
        raise ValueError(
            f"region masks of image {stem} are {tuple(masks.shape[-2:])}, fixations {tuple(size)}"
        )
    if len(names) != masks.shape[0]:
        raise ValueError(f"image {stem}: {len(names)} categories for {masks.shape[0]} region masks")
    unknown = sorted({name for name in names if name not in lookup})
    if unknown:
        raise ValueError(f"image {stem}: unknown region categories {unknown}; known: {list(lookup)}")
    return [lookup[name] for name in names]


def probe_regions(
    fixations: Tensor,
    region_masks: Sequence[Tensor],
    region_categories: Sequence[Sequence[str]],
    categories: Sequence[str],
    stems: Sequence[str],
    seed: int,
    shuffled: bool,
) -> tuple[Tensor, Tensor]:
    """The region sets of a batch for one :class:`RegionNSS` update, and their category indices, as masks.

    Returns ``(sets, index)``: ``sets`` is bool ``(B, S, H, W)``; slots ``0..R_b-1`` of image ``b`` hold its
    region masks, and with ``shuffled`` slots ``R..R+R_b-1`` (``R = max R_b``) hold the control's pixel sets
    (:func:`shuffled_region_pixels`). ``index`` ``(B, S)`` gives each slot's category: ``k`` for a region of
    ``categories[k]``, ``K + k`` for its shuffled copy, -1 for padding. One update then serves both, so the
    units' map statistics are computed once. :func:`probe_region_points` gives the same sets as fixated
    pixels, which is what the probe uses (no full-resolution masks).
    """
    lookup = {name: k for k, name in enumerate(categories)}
    batch, (height, width) = len(region_masks), fixations.shape[-2:]
    width_r = max((int(masks.shape[0]) for masks in region_masks), default=0)
    slots = width_r * (2 if shuffled else 1)
    sets = torch.zeros(batch, slots, height * width, dtype=torch.bool, device=fixations.device)
    index = torch.full((batch, slots), -1, dtype=torch.long)
    for b, (fix, masks, names, stem) in enumerate(
        zip(fixations, region_masks, region_categories, stems, strict=True)
    ):
        ids = _category_ids(masks, names, lookup, stem, (height, width))
        count = masks.shape[0]
        sets[b, :count] = masks.reshape(count, -1) != 0
        index[b, :count] = torch.tensor(ids, dtype=torch.long)
        if shuffled:
            for r, pixels in enumerate(shuffled_region_pixels(fix, masks, image_generator(seed, stem))):
                sets[b, width_r + r, pixels] = True
            index[b, width_r : width_r + count] = index[b, :count] + len(categories)
    return sets.reshape(batch, slots, height, width), index


def probe_region_points(
    fixations: Tensor,
    region_masks: Sequence[Tensor],
    region_categories: Sequence[Sequence[str]],
    categories: Sequence[str],
    stems: Sequence[str],
    seed: int,
    shuffled: bool,
) -> tuple[FixatedRegions, Tensor]:
    """:func:`probe_regions` as :class:`~saliency_probe.metrics.functional.FixatedRegions`: the same slots,
    categories and control draws, but each set given by the fixated pixels it holds.

    The masks are read at the fixated pixels only and the control's draws are positions among them, so no
    full-resolution set is built; :meth:`RegionNSS.update` takes the result in place of masks, and several
    updates (one per group of layers) share it. Returns ``(regions, index)`` with ``index`` as in
    :func:`probe_regions`.
    """
    lookup = {name: k for k, name in enumerate(categories)}
    batch, size = len(region_masks), (int(fixations.shape[-2]), int(fixations.shape[-1]))
    if fixations.dim() != 3 or fixations.shape[0] != batch:
        raise ValueError(
            f"fixations: expected ({batch}, H, W) for {batch} images, got {tuple(fixations.shape)}"
        )
    width_r = max((int(masks.shape[0]) for masks in region_masks), default=0)
    slots = width_r * (2 if shuffled else 1)
    fixated = fixations.detach()
    image, ys, xs = (fixated if fixated.dtype == torch.bool else fixated != 0).nonzero(as_tuple=True)
    membership = torch.zeros(image.numel(), slots, dtype=torch.bool, device=image.device)
    index = torch.full((batch, slots), -1, dtype=torch.long)
    ends = torch.bincount(image, minlength=batch).cumsum(0).tolist()
    for b, (masks, names, stem) in enumerate(zip(region_masks, region_categories, stems, strict=True)):
        ids = _category_ids(masks, names, lookup, stem, size)
        start, count = (ends[b - 1] if b else 0), masks.shape[0]
        part = slice(start, ends[b])
        inside = masks.detach()[:, ys[part].to(masks.device), xs[part].to(masks.device)] != 0  # (R_b, n_b)
        membership[part, :count] = inside.T.to(image.device)
        index[b, :count] = torch.tensor(ids, dtype=torch.long)
        if shuffled:
            for r, order in enumerate(_shuffled_positions(inside, image_generator(seed, stem))):
                membership[start + order.to(image.device), width_r + r] = True
            index[b, width_r : width_r + count] = index[b, :count] + len(categories)
    return FixatedRegions(image, ys, xs, membership, batch, size), index


def pad_regions(region_masks: Sequence[Tensor], size: tuple[int, int]) -> Tensor:
    """Stack per-image ``(R_b, H, W)`` masks into one bool ``(B, max R_b, H, W)`` tensor, zero-padded."""
    count = max((int(masks.shape[0]) for masks in region_masks), default=0)
    device = region_masks[0].device if len(region_masks) else None
    padded = torch.zeros(len(region_masks), count, *size, dtype=torch.bool, device=device)
    for index, masks in enumerate(region_masks):
        if tuple(masks.shape[-2:]) != tuple(size):
            raise ValueError(
                f"region masks of image {index} are {tuple(masks.shape[-2:])}, fixations {tuple(size)}"
            )
        padded[index, : masks.shape[0]] = masks if masks.dtype == torch.bool else masks != 0
    return padded
