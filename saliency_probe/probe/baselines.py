"""The benchmark's two reference models, built from the human fixations themselves.

- ``center_bias`` (the lower bar): the data set's fixation density **without the scored image** (leave one image
  out), blurred with ``gt_sigma``. Every other image's unique fixated pixels are summed; images of another size
  are mapped to the scored image's size by scaling their pixel centres.
- ``inter_observer`` (the upper bar, "Human IO"): for each observer, the other observers' fixations of the
  same image blurred with ``gt_sigma``, scored on that observer's fixations; the scores are averaged over the
  observers (the authors' ``computeInterSubjectAUC.m`` does this for AUC with sigma 24 on OSIE).

The blur and the fixation maps are those of :mod:`saliency_probe.maps` (:func:`~saliency_probe.maps.blur`, the
ground-truth blur of :func:`~saliency_probe.maps.fixation_density`; docs/protocol.md gives the conventions).
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Iterator, Sequence

import numpy as np

from saliency_probe.data.fixations import FixationDataset
from saliency_probe.maps import blur, fixation_map

Size = tuple[int, int]


def scale_pixels(flat: np.ndarray, source: Size, target: Size) -> tuple[np.ndarray, np.ndarray]:
    """``(rows, cols)`` in a ``target``-sized image of the pixels ``flat`` (flat indices) of a ``source`` image.

    A pixel goes where its centre lands: ``floor((i + 0.5) * target / source)``; equal sizes map to themselves.
    """
    rows, cols = np.divmod(np.asarray(flat, dtype=np.int64), source[1])
    if tuple(source) == tuple(target):
        return rows, cols
    rows = np.minimum(np.floor((rows + 0.5) * target[0] / source[0]).astype(np.int64), target[0] - 1)
    cols = np.minimum(np.floor((cols + 0.5) * target[1] / source[1]).astype(np.int64), target[1] - 1)
    return rows, cols


class FixationTable:
    """Unique fixated pixels of every image of a data set and their sums at any image size (leave-one-out).

    ``others(i)`` counts, per pixel of image ``i``'s size, how many *other* images have a fixation there: the
    numerator of the centre-bias density and the negatives of the shuffled AUC.
    """

    def __init__(self, sizes: Sequence[Size], fixated: Sequence[np.ndarray], max_cached_sizes: int = 8) -> None:
        if len(sizes) != len(fixated):
            raise ValueError(f"FixationTable: {len(sizes)} sizes but {len(fixated)} fixation sets")
        self.sizes = [(int(h), int(w)) for h, w in sizes]
        self.fixated = [np.asarray(f, dtype=np.int64) for f in fixated]
        self._totals: OrderedDict[Size, np.ndarray] = OrderedDict()
        self._max_cached = max(1, int(max_cached_sizes))

    @classmethod
    def from_dataset(cls, dataset: FixationDataset) -> FixationTable:
        return cls([(r.height, r.width) for r in dataset.records], [r.fixated for r in dataset.records])

    def __len__(self) -> int:
        return len(self.sizes)

    def own(self, index: int) -> np.ndarray:
        """Image ``index``'s binary fixation map as float64 counts (0 or 1)."""
        height, width = self.sizes[index]
        rows, cols = np.divmod(self.fixated[index], width)
        return fixation_map(np.stack([cols, rows], axis=1), height, width).astype(np.float64)

    def total(self, size: Size) -> np.ndarray:
        """Sum over all images of their fixated pixels mapped to ``size`` (kept for the last few sizes)."""
        size = (int(size[0]), int(size[1]))
        if size in self._totals:
            self._totals.move_to_end(size)
            return self._totals[size]
        counts = np.zeros(size, dtype=np.float64)
        for source, flat in zip(self.sizes, self.fixated, strict=True):
            rows, cols = scale_pixels(flat, source, size)
            np.add.at(counts, (rows, cols), 1.0)
        self._totals[size] = counts
        if len(self._totals) > self._max_cached:
            self._totals.popitem(last=False)
        return counts

    def others(self, index: int) -> np.ndarray:
        """Fixation counts of every image except ``index``, at image ``index``'s size."""
        return self.total(self.sizes[index]) - self.own(index)


def center_bias_map(table: FixationTable, index: int, sigma: float) -> np.ndarray:
    """The leave-one-image-out fixation density of image ``index``, blurred with ``sigma`` (float64)."""
    return blur(table.others(index), sigma)


def shuffled_negatives(table: FixationTable, index: int) -> np.ndarray:
    """Boolean map of the pixels fixated in other images: the negatives of the shuffled AUC."""
    return table.others(index) > 0


def observer_maps(observers: Sequence[np.ndarray], size: Size) -> list[np.ndarray]:
    """One boolean map of unique fixated pixels per observer (0-based int ``[x, y]`` pixels, inside ``size``)."""
    return [fixation_map(pixels, *size) for pixels in observers]


def inter_observer_maps(
    observers: Sequence[np.ndarray], size: Size, sigma: float
) -> Iterator[tuple[int, np.ndarray, np.ndarray]]:
    """For each observer with a fixation: ``(observer number, prediction, fixations)``.

    The prediction is the union of the *other* observers' fixated pixels blurred with ``sigma`` (float64); the
    fixations are that observer's own boolean map. Observers without fixations are skipped.
    """
    maps = observer_maps(observers, size)
    counts = np.sum(maps, axis=0, dtype=np.int64) if maps else np.zeros(size, dtype=np.int64)
    for number, own in enumerate(maps):
        if not own.any():
            continue
        others = (counts - own) > 0  # pixels fixated by at least one other observer
        yield number, blur(others.astype(np.float64), sigma), own
