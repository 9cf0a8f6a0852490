"""The probe as a LightningModule: ``trainer.predict`` streams the images, ``predict_step`` updates one
:class:`~saliency_probe.metrics.classes.RegionNSS` per layer, and nothing is kept per image.

Prediction (not validation/test) because Lightning's predict loop shards the data across DDP ranks without
padding, so no image is counted twice; the metric states are sums, reduced by sum at the end (DESIGN section 8).
Under ``ddp_spawn`` the workers' results do not reach the main process, so rank zero also writes them to
``result_path``.
"""

from __future__ import annotations

import math
import zlib
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pytorch_lightning as pl
import torch
from pytorch_lightning.callbacks import Callback
from torch import Tensor, nn

from saliency_probe.metrics import RegionNSS
from saliency_probe.models.backbone import LAYER_CHANNELS, LAYER_STRIDE
from saliency_probe.probe.activations import LayerActivations
from saliency_probe.report.tables import write_npz


def image_generator(seed: int, stem: str) -> torch.Generator:
    """A generator seeded by (seed, image stem): the same draws for an image however the data is sharded."""
    return torch.Generator().manual_seed(int(seed) * 1_000_003 + zlib.crc32(str(stem).encode("utf-8")))


def shuffled_region_pixels(fixations: Tensor, region_masks: Tensor, generator: torch.Generator) -> list[Tensor]:
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
    counts = inside.sum(dim=1).tolist()
    drawn = []
    for count in counts:
        order = torch.randperm(pool.numel(), generator=generator)[:count]
        drawn.append(pool[order.to(pool.device)])
    return drawn


def shuffled_region_batch(
    fixations: Tensor, region_masks: Sequence[Tensor], stems: Sequence[str], seed: int
) -> Tensor:
    """The control's pixel sets of a batch as one padded bool ``(B, max R_b, H, W)`` tensor."""
    count = max((int(masks.shape[0]) for masks in region_masks), default=0)
    height, width = fixations.shape[-2:]
    out = torch.zeros(len(region_masks), count, height * width, dtype=torch.bool, device=fixations.device)
    for index, (fix, masks, stem) in enumerate(zip(fixations, region_masks, stems, strict=True)):
        for region, pixels in enumerate(shuffled_region_pixels(fix, masks, image_generator(seed, stem))):
            out[index, region, pixels] = True
    return out.reshape(len(region_masks), count, height, width)


def pad_regions(region_masks: Sequence[Tensor], size: tuple[int, int]) -> Tensor:
    """Stack per-image ``(R_b, H, W)`` masks into one bool ``(B, max R_b, H, W)`` tensor, zero-padded."""
    count = max((int(masks.shape[0]) for masks in region_masks), default=0)
    device = region_masks[0].device if len(region_masks) else None
    padded = torch.zeros(len(region_masks), count, *size, dtype=torch.bool, device=device)
    for index, masks in enumerate(region_masks):
        if tuple(masks.shape[-2:]) != tuple(size):
            raise ValueError(f"region masks of image {index} are {tuple(masks.shape[-2:])}, fixations {tuple(size)}")
        padded[index, : masks.shape[0]] = masks if masks.dtype == torch.bool else masks != 0
    return padded


@dataclass
class LayerResult:
    """What one layer's probe yields (numpy, on CPU; ``K`` categories, ``C`` units)."""

    unit_means: np.ndarray
    unit_std: np.ndarray
    region_counts: np.ndarray
    excluded_regions: int
    excluded_images: int
    shuffled_means: np.ndarray | None = None

    def arrays(self, prefix: str) -> dict[str, np.ndarray]:
        out = {
            f"{prefix}unit_means": self.unit_means,
            f"{prefix}unit_std": self.unit_std,
            f"{prefix}region_counts": self.region_counts,
            f"{prefix}excluded": np.array([self.excluded_regions, self.excluded_images]),
        }
        if self.shuffled_means is not None:
            out[f"{prefix}shuffled_unit_means"] = self.shuffled_means
        return out


def save_results(path: str | Path, results: dict[str, LayerResult], categories: Sequence[str]) -> Path:
    """Write layer results to one ``.npz`` (keys ``<layer>.<array>``, plus ``layers`` and ``categories``)."""
    arrays: dict[str, Any] = {"layers": np.array(list(results)), "categories": np.array(list(categories))}
    for layer, result in results.items():
        arrays.update(result.arrays(f"{layer}."))
    return write_npz(path, arrays)


def load_results(path: str | Path) -> tuple[dict[str, LayerResult], list[str]]:
    """Read what :func:`save_results` wrote."""
    with np.load(path, allow_pickle=False) as data:
        categories = [str(name) for name in data["categories"]]
        results = {}
        for layer in (str(name) for name in data["layers"]):
            excluded = data[f"{layer}.excluded"]
            shuffled_key = f"{layer}.shuffled_unit_means"
            results[layer] = LayerResult(
                unit_means=data[f"{layer}.unit_means"],
                unit_std=data[f"{layer}.unit_std"],
                region_counts=data[f"{layer}.region_counts"],
                excluded_regions=int(excluded[0]),
                excluded_images=int(excluded[1]),
                shuffled_means=data[shuffled_key] if shuffled_key in data.files else None,
            )
    return results, categories


def resolution_groups(layers: Sequence[str]) -> dict[str, list[str]]:
    """Layers with the same stride (so the same map size): ``{"stride8": [conv4_1, conv4_2, conv4_3], ...}``.

    One metric per group sees the group's units concatenated, so the fixations of each region are projected
    to the small map once per batch and size instead of once per layer.
    """
    groups: dict[str, list[str]] = {}
    for layer in layers:
        groups.setdefault(f"stride{LAYER_STRIDE[layer]}", []).append(layer)
    return groups


class RegionProbeModule(pl.LightningModule):
    """Eq. 1 for every unit of ``layers`` of ``trunk``, accumulated per category over the predict data.

    Batches are :func:`saliency_probe.data.osie_sr.collate_regions` dicts: ``image``, ``fixations`` (B, H, W),
    ``region_masks`` (list of (R_b, H, W)), ``region_categories`` (list of lists of names), ``stem``.
    After ``trainer.predict`` (``return_predictions=False``), ``results`` holds a :class:`LayerResult` per
    layer (identical on every rank).
    """

    def __init__(
        self,
        trunk: nn.Module,
        layers: Sequence[str],
        categories: Sequence[str],
        shuffled_control: bool = True,
        seed: int = 0,
        result_path: str | Path | None = None,
    ) -> None:
        super().__init__()
        self.activations = LayerActivations(trunk, layers)
        self.layers = self.activations.layers
        self.groups = resolution_groups(self.layers)
        self.categories = list(categories)
        self.seed = int(seed)
        self.result_path = Path(result_path) if result_path is not None else None
        self.region_nss = self._group_metrics()
        self.shuffled = self._group_metrics() if shuffled_control else None
        self.results: dict[str, LayerResult] | None = None
        self.eval()

    def _group_metrics(self) -> nn.ModuleDict:
        return nn.ModuleDict({
            group: RegionNSS(sum(LAYER_CHANNELS[layer] for layer in members), self.categories)
            for group, members in self.groups.items()
        })

    def _metrics(self) -> list[RegionNSS]:
        metrics = list(self.region_nss.values())
        if self.shuffled is not None:
            metrics.extend(self.shuffled.values())
        return metrics

    def on_predict_start(self) -> None:
        # ddp_spawn on CPU shares the states' memory between ranks until they are re-created: reset here.
        for metric in self._metrics():
            metric.reset()
        self.results = None

    def predict_step(self, batch: dict[str, Any], batch_idx: int) -> None:
        features = self.activations(batch["image"])
        fixations, masks, categories = batch["fixations"], batch["region_masks"], batch["region_categories"]
        size = tuple(fixations.shape[-2:])
        padded = pad_regions(masks, size)  # once per batch, shared by every group
        grouped = {
            group: torch.cat([features[layer] for layer in members], dim=1) if len(members) > 1 else features[members[0]]
            for group, members in self.groups.items()
        }
        for group, maps in grouped.items():
            self.region_nss[group].update(maps, fixations, padded, categories)
        if self.shuffled is not None:
            sets = shuffled_region_batch(fixations, masks, batch["stem"], self.seed)
            # the sets are fixated pixels, so "fixations inside a set" is the set itself
            for group, maps in grouped.items():
                self.shuffled[group].update(maps, fixations, sets, categories)
        return None

    def on_predict_epoch_end(self) -> None:
        results = {}
        for group, members in self.groups.items():
            metric = self.region_nss[group]
            means, std = metric.compute().cpu().numpy(), metric.unit_std().cpu().numpy()
            counts = metric.region_counts().cpu().numpy()
            excluded = (metric.excluded_regions, metric.excluded_images)
            shuffled = self.shuffled[group].compute().cpu().numpy() if self.shuffled is not None else None
            offset = 0
            for layer in members:
                units = slice(offset, offset + LAYER_CHANNELS[layer])
                offset = units.stop
                results[layer] = LayerResult(
                    unit_means=means[units], unit_std=std[units], region_counts=counts,
                    excluded_regions=excluded[0], excluded_images=excluded[1],
                    shuffled_means=shuffled[units] if shuffled is not None else None,
                )
        self.results = {layer: results[layer] for layer in self.layers}
        if self.result_path is not None and self.trainer.is_global_zero:
            save_results(self.result_path, self.results, self.categories)


class ImageProgressBar(Callback):
    """A progress bar over images (not batches) for ``trainer.predict``, on rank zero only."""

    def __init__(self, description: str = "probe") -> None:
        self.description = description
        self._bar: Any = None

    def on_predict_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if not trainer.is_global_zero:
            return
        from tqdm.auto import tqdm

        loaders = trainer.predict_dataloaders
        loaders = loaders if isinstance(loaders, (list, tuple)) else [loaders]
        total = sum(len(getattr(loader, "dataset", ())) for loader in loaders) or None
        self._bar = tqdm(total=total, desc=self.description, unit="img", dynamic_ncols=True, leave=False)

    def on_predict_batch_end(
        self, trainer: pl.Trainer, pl_module: pl.LightningModule, outputs: Any, batch: Any, batch_idx: int,
        dataloader_idx: int = 0,
    ) -> None:
        if self._bar is not None:
            seen = len(batch["image"]) * trainer.world_size
            self._bar.update(min(seen, (self._bar.total or math.inf) - self._bar.n))

    def on_predict_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if self._bar is not None:
            self._bar.close()
            self._bar = None
