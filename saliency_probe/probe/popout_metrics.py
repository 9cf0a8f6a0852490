"""Per-image scores of a saliency map on a pop-out search array (the paper's Eq. 4; docs/popout_analysis.md).

NMM alone misleads: a map that lights every item scores positive even when it prefers the distractors. So each
map gets, beside the target's NMM:

- ``nmm``: Eq. 4, the mean over the target mask of the z-scored map (population std; 0 for a constant map);
- ``nmm_distractors``: the mean over distractor items of each item's NMM (its own mask);
- ``target_rank``: the target's rank among all items by mean map value inside each item's mask (1 = best),
  after a seeded jitter of ``jitter x`` the map's range that breaks exact ties (quantised maps) at random;
- ``gsi``: ``(T - D) / (T + D)`` on the min-max normalised map, T its mean inside the target, D its mean over
  the union of the distractor masks (0 when both are 0);
- ``fixations_to_find``: winner-take-all search on the (jittered) map: take the argmax, inhibit an item-sized
  box centred on it, repeat until the argmax falls inside the target (its bounding box), at most
  ``max_fixations`` times; ``max_fixations + 1`` means "not found".

Everything here is pure numpy/torch on one image; NMMs come from :mod:`saliency_probe.metrics.functional`.
"""

from __future__ import annotations

import math
import zlib
from dataclasses import asdict, dataclass

import numpy as np
import torch
from scipy import ndimage

from saliency_probe.metrics import functional as MF

#: Per-image score names, in table order.
SCORE_NAMES = ("nmm", "nmm_distractors", "target_rank", "gsi", "fixations_to_find")
#: Relative std below which a map counts as constant (rounding noise of float32, as in metrics.functional).
CONSTANT_RTOL = 8.0 * float(np.finfo(np.float32).eps)


@dataclass(frozen=True)
class PopoutScores:
    """The scores of one map on one array (NaN where undefined: no target, or no item masks)."""

    nmm: float
    nmm_distractors: float
    target_rank: float
    gsi: float
    fixations_to_find: float
    found: bool
    items: int

    def as_dict(self) -> dict[str, float | bool | int]:
        return asdict(self)


def image_rng(seed: int, image_id: str) -> np.random.Generator:
    """The jitter generator of one image: seeded by ``(seed, image id)``, so it does not depend on the order
    in which images or models are scored."""
    return np.random.default_rng([int(seed) & 0xFFFFFFFF, zlib.crc32(str(image_id).encode("utf-8"))])


def _as_map(saliency: np.ndarray, shape: tuple[int, int]) -> np.ndarray:
    saliency = np.asarray(saliency, dtype=np.float64)
    if saliency.shape != shape:
        raise ValueError(f"saliency map is {saliency.shape}, the masks are {shape}: they must match")
    if not np.isfinite(saliency).all():
        raise ValueError("saliency map holds NaN or infinite values")
    return saliency


def target_nmm(saliency: np.ndarray, target: np.ndarray) -> float:
    """Eq. 4: mean of the z-scored map over the target mask (NaN for an empty mask)."""
    maps = torch.from_numpy(np.asarray(saliency, dtype=np.float64))[None, None]
    return float(MF.nmm(maps, torch.from_numpy(np.asarray(target, dtype=bool))[None])[0, 0])


def item_ids(items: np.ndarray) -> np.ndarray:
    """The item instance ids present in an instance map (0 = background excluded), sorted."""
    ids = np.unique(items)
    return ids[ids != 0]


def item_means(saliency: np.ndarray, items: np.ndarray, ids: np.ndarray) -> np.ndarray:
    """Mean map value inside each item ``ids[i]`` (scipy ``ndimage.mean``)."""
    return np.asarray(ndimage.mean(np.asarray(saliency, dtype=np.float64), labels=items, index=ids), dtype=np.float64)


def item_nmms(saliency: np.ndarray, items: np.ndarray, ids: np.ndarray) -> np.ndarray:
    """NMM of every item ``ids[i]``: its mean map value z-scored by the whole map's mean and population std,
    the convention of :func:`~saliency_probe.metrics.functional.nmm` (0 for a constant map). From the item
    means, so 49 items cost one pass over the image rather than 49 masked means."""
    saliency = np.asarray(saliency, dtype=np.float64)
    std = float(saliency.std())
    if std <= CONSTANT_RTOL * float(np.abs(saliency).max()):
        return np.zeros(len(ids), dtype=np.float64)
    return (item_means(saliency, items, ids) - float(saliency.mean())) / std


def target_item(target: np.ndarray, items: np.ndarray) -> int | None:
    """The id of the item that covers most of the target mask (None without target or items under it)."""
    labels = np.asarray(items)[np.asarray(target, dtype=bool)]
    labels = labels[labels != 0]
    if labels.size == 0:
        return None
    values, counts = np.unique(labels, return_counts=True)
    return int(values[np.argmax(counts)])


def target_rank(
    scores: np.ndarray, target_index: int, rng: np.random.Generator, jitter: float = 1e-6, scale: float = 1.0
) -> int:
    """Rank (1 = best) of ``scores[target_index]`` among ``scores`` after adding ``U(0, jitter x scale)`` noise
    to each; ``scale`` is the map's range (max - min; use 1 for a constant map), so ties of quantised maps
    (and rounding noise far below the map's resolution) are broken at random."""
    scores = np.asarray(scores, dtype=np.float64)
    noisy = scores + rng.uniform(0.0, jitter * scale, size=scores.shape)
    return int(1 + np.count_nonzero(noisy > noisy[target_index]))


def gsi(saliency: np.ndarray, target: np.ndarray, distractors: np.ndarray) -> float:
    """``(T - D) / (T + D)`` on the min-max normalised map; NaN when a mask is empty, 0 when T + D = 0."""
    target, distractors = np.asarray(target, dtype=bool), np.asarray(distractors, dtype=bool)
    if not target.any() or not distractors.any():
        return math.nan
    low, high = float(saliency.min()), float(saliency.max())
    normalised = (saliency - low) / (high - low) if high > low else np.zeros_like(saliency)
    t, d = float(normalised[target].mean()), float(normalised[distractors].mean())
    return 0.0 if t + d == 0.0 else (t - d) / (t + d)


def item_boxes(items: np.ndarray) -> list[tuple[int, int]]:
    """``(height, width)`` of each item's bounding box (scipy ``find_objects``; ids without pixels skipped)."""
    return [(s[0].stop - s[0].start, s[1].stop - s[1].start) for s in ndimage.find_objects(items) if s is not None]


def inhibition_box(items: np.ndarray | None, target: np.ndarray, size: str | int = "item") -> tuple[int, int]:
    """``(height, width)`` of the inhibition box: ``"item"`` = the median item bounding box rounded up to odd
    sides (the target's own box when there are no item masks), or an int side in pixels."""
    if not isinstance(size, str):
        side = int(size)
        if side < 1:
            raise ValueError(f"popout.inhibition must be 'item' or a positive side in pixels, got {size!r}")
        return side, side
    if size != "item":
        raise ValueError(f"popout.inhibition must be 'item' or a positive side in pixels, got {size!r}")
    boxes = item_boxes(items) if items is not None else []
    if not boxes:
        boxes = item_boxes(np.asarray(target, dtype=np.int32))
    if not boxes:
        raise ValueError("cannot size an item-sized inhibition box: no item masks and an empty target mask")
    heights, widths = zip(*boxes, strict=True)
    return _odd(float(np.median(heights))), _odd(float(np.median(widths)))


def _odd(side: float) -> int:
    """The smallest odd integer >= ``side``: centred on any of an even-sized item's central pixels, the box
    still covers the whole item (an even box would leave a one-pixel sliver to be fixated again)."""
    whole = max(1, math.ceil(side - 1e-9))
    return whole if whole % 2 else whole + 1


def target_region(target: np.ndarray) -> np.ndarray:
    """Where a fixation finds the target: the bounding box of each connected part of the target mask (a
    blurred map's peak on a thin bar or arc can sit a pixel off its stroke)."""
    labels, _ = ndimage.label(np.asarray(target, dtype=bool))
    region = np.zeros(labels.shape, dtype=bool)
    for box in ndimage.find_objects(labels):
        if box is not None:
            region[box] = True
    return region


def fixations_to_find(
    saliency: np.ndarray, hit: np.ndarray, box: tuple[int, int], max_fixations: int = 100
) -> tuple[int, bool]:
    """Winner-take-all search with inhibition of return: ``(fixations made, found)``.

    Each fixation is the argmax of the map; if it lies in ``hit`` the search ends, else a ``box``-sized
    rectangle centred on it is set to -inf. Not found within ``max_fixations`` (or the map exhausted):
    ``(max_fixations + 1, False)``.
    """
    if max_fixations < 1:
        raise ValueError(f"max_fixations must be >= 1, got {max_fixations}")
    work = np.array(saliency, dtype=np.float64, copy=True)
    height, width = work.shape
    box_h, box_w = box
    for count in range(1, max_fixations + 1):
        flat = int(np.argmax(work))
        if work.flat[flat] == -np.inf:
            break
        y, x = divmod(flat, width)
        if hit[y, x]:
            return count, True
        y0, x0 = max(0, y - box_h // 2), max(0, x - box_w // 2)
        work[y0 : min(height, y - box_h // 2 + box_h), x0 : min(width, x - box_w // 2 + box_w)] = -np.inf
    return max_fixations + 1, False


def score_map(
    saliency: np.ndarray,
    target: np.ndarray,
    items: np.ndarray | None,
    rng: np.random.Generator,
    jitter: float = 1e-6,
    inhibition: str | int = "item",
    max_fixations: int = 100,
) -> PopoutScores:
    """All scores of one map on one array.

    Args:
        saliency: ``(H, W)`` map of the image's size.
        target: ``(H, W)`` bool target mask (empty: target-absent array, every score NaN).
        items: ``(H, W)`` int instance map (0 background, target included) or None (external sets without
            item masks: distractor NMM, rank and GSI are NaN).
        rng: jitter generator (:func:`image_rng`): the rank tie-break is drawn first (when items are known),
            then the map jitter of the search.
        jitter: noise amplitude as a fraction of the map's range (1 for a constant map); 0 disables it.
        inhibition: inhibition box, see :func:`inhibition_box`.
        max_fixations: search budget of ``fixations_to_find``.
    """
    target = np.asarray(target, dtype=bool)
    saliency = _as_map(saliency, target.shape)
    if items is not None and np.asarray(items).shape != target.shape:
        raise ValueError(f"item mask is {np.asarray(items).shape}, the target mask {target.shape}: they must match")
    nan = math.nan
    if not target.any():
        return PopoutScores(nan, nan, nan, nan, nan, False, 0)
    spread = float(saliency.max() - saliency.min())
    scale = spread if spread > 0 else 1.0
    distractor_nmm, rank, gsi_value, count = nan, nan, nan, 0
    target_id = target_item(target, items) if items is not None else None
    if target_id is not None:
        ids = item_ids(items)
        count = int(ids.size)
        others = ids != target_id
        if others.any():
            distractor_nmm = float(item_nmms(saliency, items, ids[others]).mean())
            gsi_value = gsi(saliency, target, (items != 0) & (items != target_id))
        means = item_means(saliency, items, ids)
        rank = float(target_rank(means, int(np.flatnonzero(ids == target_id)[0]), rng, jitter, scale))
    jittered = saliency + rng.uniform(0.0, jitter * scale, size=saliency.shape)
    box = inhibition_box(items, target, inhibition)
    fixations, found = fixations_to_find(jittered, target_region(target), box, max_fixations)
    return PopoutScores(target_nmm(saliency, target), distractor_nmm, rank, gsi_value, float(fixations), found, count)


__all__ = [
    "SCORE_NAMES",
    "PopoutScores",
    "fixations_to_find",
    "gsi",
    "image_rng",
    "inhibition_box",
    "item_boxes",
    "item_ids",
    "item_means",
    "item_nmms",
    "score_map",
    "target_item",
    "target_nmm",
    "target_rank",
    "target_region",
]
