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


def probe_region_points(
    fixations: Tensor,
    region_masks: Sequence[Tensor],
    region_categories: Sequence[Sequence[str]],
    categories: Sequence[str],
    stems: Sequence[str],
    seed: int,
    shuffled: bool,
) -> tuple[FixatedRegions, Tensor]:
    """The region sets of a batch for one :class:`RegionNSS` update, as
    :class:`~saliency_probe.metrics.functional.FixatedRegions` (each set given by the fixated pixels it holds).

    Slots ``0..R_b-1`` of image ``b`` hold its regions; with ``shuffled``, slots ``R..R+R_b-1`` (``R = max R_b``)
    hold the control's draws: for each region, as many of the image's fixated pixels, drawn at random without
    replacement, as the region holds (a region without fixations stays empty). The returned ``index`` ``(B, S)``
    gives each slot's category: ``k`` for a region of ``categories[k]``, ``K + k`` for its shuffled copy, -1 for
    padding, so one update serves both and the units' map statistics are computed once. The masks are read at
    the fixated pixels only, so no full-resolution set is built; several updates (one per group of layers)
    share the result.
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
