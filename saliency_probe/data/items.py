"""Items of a data set without decoding their image: the image file behind an item, and the rest of the item.

The frozen-prefix feature cache (``saliency_probe/feature_cache.py``) pairs stored activations with the other
entries of each item (fixations, stem, index, scene label) and keys the cache by the image files. Data sets
answer through ``image_file(index)`` and ``item_without_image(index)`` (:class:`~saliency_probe.data.fixations.
FixationDataset` and the scene data module's ``LabelledImages`` do); ``ConcatDataset`` and ``Subset`` are
followed to the data set that holds the item.
"""

from __future__ import annotations

import bisect
from pathlib import Path
from typing import Any

from torch.utils.data import ConcatDataset, Dataset, Subset


def _inner(dataset: Dataset, index: int) -> tuple[Dataset, int]:
    """The data set and index that ``dataset[index]`` reads, through ``Subset`` and ``ConcatDataset``."""
    while True:
        if isinstance(dataset, Subset):
            dataset, index = dataset.dataset, int(dataset.indices[index])
        elif isinstance(dataset, ConcatDataset):
            part = bisect.bisect_right(dataset.cumulative_sizes, index)
            offset = dataset.cumulative_sizes[part - 1] if part else 0
            dataset, index = dataset.datasets[part], index - offset
        else:
            return dataset, index


def image_file(dataset: Dataset, index: int) -> Path | None:
    """The image file of item ``index``, or None when the data set does not say."""
    inner, position = _inner(dataset, index)
    reader = getattr(inner, "image_file", None)
    return Path(reader(position)) if callable(reader) else None


def item_without_image(dataset: Dataset, index: int) -> dict[str, Any]:
    """Item ``index`` without its ``image`` entry; data sets without ``item_without_image`` load the whole item."""
    inner, position = _inner(dataset, index)
    reader = getattr(inner, "item_without_image", None)
    if callable(reader):
        return dict(reader(position))
    return {key: value for key, value in inner[position].items() if key != "image"}
