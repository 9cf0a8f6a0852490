"""Mask-form reference of the probe's region sets, for tests.

The probe builds its region sets as fixated pixels (``probe_region_points``); these functions build the same sets
as full-resolution masks, the straightforward way, so tests can compare the two and read the control's draws.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor

from saliency_probe.metrics.functional import FixatedRegions
from saliency_probe.probe.regions import _category_ids, _shuffled_positions, image_generator


def as_masks(regions: FixatedRegions, slots: int) -> Tensor:
    """The sets of ``regions`` as bool masks ``(B, slots, H, W)``."""
    masks = torch.zeros(regions.batch, slots, *regions.size, dtype=torch.bool)
    for slot in range(slots):
        held = regions.membership[:, slot]
        masks[regions.image[held], slot, regions.ys[held], regions.xs[held]] = True
    return masks


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


def mask_region_sets(
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
    units' map statistics are computed once. ``probe_region_points`` gives the same sets as fixated
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


