"""The probe as a LightningModule: ``trainer.predict`` streams the images, ``predict_step`` updates one
:class:`~saliency_probe.metrics.RegionNSS` per group of equally sized layers (the shuffled-region control rides
in the same update as extra category columns), and nothing is kept per image.

Prediction (not validation/test) because Lightning's predict loop shards the data across DDP ranks without
padding, so no image is counted twice; the metric states are sums, reduced by sum at the end (docs/protocol.md,
"DDP"). Run it with :meth:`saliency_probe.probe.context.ProbeContext.predict`.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import torch
from torch import nn

from saliency_probe.metrics import RegionNSS
from saliency_probe.models.backbone import architecture
from saliency_probe.probe.activations import LayerActivations
from saliency_probe.probe.passes import ProbePass
from saliency_probe.probe.regions import probe_region_points
from saliency_probe.probe.results import LayerResult, results_to_arrays

__all__ = ["RegionProbeModule", "resolution_groups"]


def resolution_groups(layers: Sequence[str], backbone: object = None) -> dict[str, list[str]]:
    """Layers with the same stride (so the same map size): ``{"stride8": [conv4_1, conv4_2, conv4_3], ...}``.

    One metric per group sees the group's units concatenated, so the fixations of each region are projected
    to the small map once per batch and size instead of once per layer. ``backbone``: a config, spec or name
    (VGG-16).
    """
    arch = architecture(backbone)
    groups: dict[str, list[str]] = {}
    for layer in layers:
        groups.setdefault(f"stride{arch.layer(layer).stride}", []).append(layer)
    return groups


class RegionProbeModule(ProbePass):
    """Eq. 1 for every unit of ``layers`` of ``trunk``, accumulated per category over the predict data.

    Batches are :func:`saliency_probe.data.osie_sr.collate_regions` dicts: ``image``, ``fixations`` (B, H, W),
    ``region_masks`` (list of (R_b, H, W)), ``region_categories`` (list of lists of names), ``stem``.
    The pass's result is :func:`~saliency_probe.probe.results.results_to_arrays` of a :class:`LayerResult`
    per layer (identical on every rank); ``results`` holds the :class:`LayerResult` objects.
    """

    def __init__(
        self,
        trunk: nn.Module,
        layers: Sequence[str],
        categories: Sequence[str],
        shuffled_control: bool = True,
        seed: int = 0,
    ) -> None:
        super().__init__()
        self.activations = LayerActivations(trunk, layers)
        self.layers = self.activations.layers
        self.groups: dict[str, list[str]] = {}
        for layer in self.layers:
            self.groups.setdefault(f"stride{self.activations.info[layer].stride}", []).append(layer)
        self.categories = list(categories)
        self.shuffled_control = bool(shuffled_control)
        self.seed = int(seed)
        # the control's regions are counted under "shuffled: <category>" columns of the same metric
        columns = self.categories + (
            [f"shuffled: {name}" for name in self.categories] if shuffled_control else []
        )
        self.region_nss = nn.ModuleDict(
            {
                group: RegionNSS(sum(self.activations.channels(layer) for layer in members), columns)
                for group, members in self.groups.items()
            }
        )
        self.results: dict[str, LayerResult] | None = None
        self.eval()

    def predict_step(self, batch: dict[str, Any], batch_idx: int) -> None:
        features = self.activations(batch["image"])
        fixations = batch["fixations"]
        regions, index = probe_region_points(  # the fixated pixels of every set, shared by the groups
            fixations,
            batch["region_masks"],
            batch["region_categories"],
            self.categories,
            batch["stem"],
            self.seed,
            self.shuffled_control,
        )
        for group, members in self.groups.items():
            if len(members) > 1:
                sizes = {tuple(features[layer].shape[-2:]) for layer in members}
                if len(sizes) > 1:
                    raise ValueError(f"layers {members} have the same stride but maps of sizes {sorted(sizes)} at "
                                     "this input size; probe them in separate runs")
                maps = torch.cat([features[layer] for layer in members], dim=1)
            else:
                maps = features[members[0]]
            self.region_nss[group].update(maps, fixations, regions, index)
        return None

    def compute_result(self) -> dict[str, np.ndarray]:
        k = len(self.categories)
        results = {}
        for group, members in self.groups.items():
            metric = self.region_nss[group]
            means, std = metric.compute().cpu().numpy(), metric.unit_std().cpu().numpy()
            counts = metric.region_counts().cpu().numpy()[:k]
            dead = metric.dead_maps().cpu().numpy()
            excluded_regions = metric.excluded_regions
            if self.shuffled_control:  # each region without fixations was counted twice (and its copy)
                excluded_regions //= 2
            offset = 0
            for layer in members:
                units = slice(offset, offset + self.activations.channels(layer))
                offset = units.stop
                results[layer] = LayerResult(
                    unit_means=means[units, :k],
                    unit_std=std[units, :k],
                    region_counts=counts,
                    excluded_regions=excluded_regions,
                    excluded_images=metric.excluded_images,
                    shuffled_means=means[units, k:] if self.shuffled_control else None,
                    dead_maps=dead[units, :k],
                )
        self.results = {layer: results[layer] for layer in self.layers}
        return results_to_arrays(self.results, self.categories)
