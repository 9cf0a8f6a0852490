"""The benchmark's two reference models, built from the human fixations themselves.

- ``center_bias`` (the lower bar): the data set's fixation density **without the scored image** (leave one image
  out), blurred with ``gt_sigma``. Every other image's unique fixated pixels are summed; images of another size
  are mapped to the scored image's size by scaling their pixel centres.
- ``inter_observer`` (the upper bar, "Human IO"): for each observer, the other observers' fixations of the
  same image blurred with ``gt_sigma``, scored on that observer's fixations; the scores are averaged over the
  observers (the authors' ``computeInterSubjectAUC.m`` does this for AUC with sigma 24 on OSIE).

The Gaussian blur is the ground-truth blur of :func:`saliency_probe.models.gt.fixation_density` (the same
kernel, truncation and reflected border) computed separably: two 1-D passes with OpenCV (about 100x faster
than the 2-D convolution on an 800x600 map), or for a sparse fixation map one product of the 1-D blur matrices
(another 5-10x); the tests check that every path gives the same map.
"""

from __future__ import annotations

import functools
from collections import OrderedDict
from collections.abc import Iterator, Sequence

import cv2
import numpy as np
import torch

from saliency_probe.data.fixations import FixationDataset

Size = tuple[int, int]


def gaussian_kernel_1d(size: int, sigma: float) -> np.ndarray:
    """torchvision's normalised Gaussian kernel of ``size`` taps (``linspace(-r, r, size)``), in float64."""
    half = (size - 1) * 0.5
    x = np.linspace(-half, half, size)
    pdf = np.exp(-0.5 * (x / sigma) ** 2)
    return pdf / pdf.sum()


def _kernel_size(sigma: float, extent: int) -> int:
    """``fixation_density``'s kernel size: +-3 sigma, limited to the map so the reflected border is defined."""
    size = 2 * int(round(3 * sigma)) + 1
    return min(size, 2 * ((extent - 1) // 2) + 1)


@functools.lru_cache(maxsize=8)
def blur_matrix(size: int, sigma: float) -> np.ndarray:
    """The ``(size, size)`` matrix of the 1-D blur (reflected border): column ``j`` is the blurred impulse at ``j``."""
    kernel = gaussian_kernel_1d(_kernel_size(sigma, size), sigma)
    matrix = cv2.sepFilter2D(np.eye(size), cv2.CV_64F, np.ones(1), kernel, borderType=cv2.BORDER_REFLECT_101)
    matrix.flags.writeable = False
    return matrix


def blur(values: np.ndarray, sigma: float) -> np.ndarray:
    """Gaussian blur of an ``(H, W)`` map with ``sigma`` pixels, as ``fixation_density`` does, in float64.

    A map with few nonzero pixels (a fixation map) is blurred as ``K_h[:, rows] diag(v) K_w[:, cols]^T``, a
    sum of separable Gaussians (one matrix product, in torch); a dense one by two 1-D convolutions.
    """
    values = np.asarray(values, dtype=np.float64)
    if values.ndim != 2:
        raise ValueError(f"blur: expected an (H, W) map, got shape {values.shape}")
    if sigma <= 0:
        return values.copy()
    height, width = values.shape
    size_x, size_y = _kernel_size(sigma, width), _kernel_size(sigma, height)
    rows, cols = np.nonzero(values)
    if rows.size < size_x + size_y:
        left = blur_matrix(height, float(sigma))[:, rows] * values[rows, cols]
        right = blur_matrix(width, float(sigma))[:, cols].T
        # torch's product follows torch.set_num_threads (1 in benchmark workers); numpy's BLAS pool would not
        return (torch.from_numpy(left) @ torch.from_numpy(np.ascontiguousarray(right))).numpy()
    kernel_x, kernel_y = gaussian_kernel_1d(size_x, sigma), gaussian_kernel_1d(size_y, sigma)
    return cv2.sepFilter2D(values, cv2.CV_64F, kernel_x, kernel_y, borderType=cv2.BORDER_REFLECT_101)


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
        counts = np.zeros(height * width, dtype=np.float64)
        counts[self.fixated[index]] = 1.0
        return counts.reshape(height, width)

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
    maps = []
    for pixels in observers:
        fixation_map = np.zeros(size, dtype=bool)
        pixels = np.asarray(pixels, dtype=np.int64).reshape(-1, 2)
        fixation_map[pixels[:, 1], pixels[:, 0]] = True
        maps.append(fixation_map)
    return maps


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
