"""Per-layer probe results (unit x category means) and their ``.npz`` form, read back by later analyses."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from saliency_probe.io_utils import write_npz


@dataclass
class LayerResult:
    """What one layer's probe yields (numpy, on CPU; ``K`` categories, ``C`` units).

    ``dead_maps`` ``(C, K)``: per unit and category, the fixated regions whose image gave the unit a constant
    map (Eq. 1 = 0 there, inside ``unit_means``); None when read from a file written before it was recorded.
    """

    unit_means: np.ndarray
    unit_std: np.ndarray
    region_counts: np.ndarray
    excluded_regions: int
    excluded_images: int
    shuffled_means: np.ndarray | None = None
    dead_maps: np.ndarray | None = None

    def arrays(self, prefix: str) -> dict[str, np.ndarray]:
        out = {
            f"{prefix}unit_means": self.unit_means,
            f"{prefix}unit_std": self.unit_std,
            f"{prefix}region_counts": self.region_counts,
            f"{prefix}excluded": np.array([self.excluded_regions, self.excluded_images]),
        }
        if self.shuffled_means is not None:
            out[f"{prefix}shuffled_unit_means"] = self.shuffled_means
        if self.dead_maps is not None:
            out[f"{prefix}dead_maps"] = self.dead_maps
        return out


def results_to_arrays(results: dict[str, LayerResult], categories: Sequence[str]) -> dict[str, np.ndarray]:
    """Layer results as flat arrays: keys ``<layer>.<array>``, plus ``layers`` and ``categories``."""
    arrays: dict[str, Any] = {"layers": np.array(list(results)), "categories": np.array(list(categories))}
    for layer, result in results.items():
        arrays.update(result.arrays(f"{layer}."))
    return arrays


def results_from_arrays(data: Mapping[str, np.ndarray]) -> tuple[dict[str, LayerResult], list[str]]:
    """Read what :func:`results_to_arrays` made (a dict or an opened ``.npz``)."""
    keys = set(data.keys())
    categories = [str(name) for name in data["categories"]]
    results = {}
    for layer in (str(name) for name in data["layers"]):
        excluded = data[f"{layer}.excluded"]
        shuffled_key, dead_key = f"{layer}.shuffled_unit_means", f"{layer}.dead_maps"
        results[layer] = LayerResult(
            unit_means=np.asarray(data[f"{layer}.unit_means"]),
            unit_std=np.asarray(data[f"{layer}.unit_std"]),
            region_counts=np.asarray(data[f"{layer}.region_counts"]),
            excluded_regions=int(excluded[0]),
            excluded_images=int(excluded[1]),
            shuffled_means=np.asarray(data[shuffled_key]) if shuffled_key in keys else None,
            dead_maps=np.asarray(data[dead_key]) if dead_key in keys else None,
        )
    return results, categories


def save_results(path: str | Path, results: dict[str, LayerResult], categories: Sequence[str]) -> Path:
    """Write layer results to one ``.npz`` (:func:`results_to_arrays`)."""
    return write_npz(path, results_to_arrays(results, categories))


def load_results(path: str | Path) -> tuple[dict[str, LayerResult], list[str]]:
    """Read what :func:`save_results` wrote."""
    with np.load(path, allow_pickle=False) as data:
        return results_from_arrays(data)
