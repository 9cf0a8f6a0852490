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
from saliency_probe.models.backbone import LAYER_CHANNELS
from saliency_probe.probe.activations import LayerActivations
from saliency_probe.report.tables import write_npz


def image_generator(seed: int, stem: str) -> torch.Generator:
    """A generator seeded by (seed, image stem): the same draws for an image however the data is sharded."""
    return torch.Generator().manual_seed(int(seed) * 1_000_003 + zlib.crc32(str(stem).encode("utf-8")))


def shuffled_region_fixations(fixations: Tensor, region_masks: Tensor, generator: torch.Generator) -> Tensor:
    """The shuffled-region control: each region's fixated pixels replaced by as many fixated pixels drawn at
    random (without replacement) from **all** fixated pixels of the same image.

    Args:
        fixations: ``(H, W)`` binary fixation map.
        region_masks: ``(R, H, W)`` region masks.
        generator: CPU random generator (see :func:`image_generator`).

    Returns:
        ``(R, H, W)`` bool pixel sets. Each keeps its region's fixation count, so a region without fixations
        stays empty (and is excluded, as in the real statistic). Region NSS over these sets (with a fixation
        map of ones) is the chance level of Eq. 1: how a unit scores at the image's fixations regardless of
        which region they fell in.
    """
    fixated = fixations.detach().reshape(-1).cpu() != 0
    masks = region_masks.detach().reshape(region_masks.shape[0], -1).cpu() != 0
    pool = fixated.nonzero().squeeze(1)
    counts = (masks & fixated).sum(dim=1).tolist()
    out = torch.zeros_like(masks)
    for region, count in enumerate(counts):
        if count:
            chosen = pool[torch.randperm(pool.numel(), generator=generator)[:count]]
            out[region, chosen] = True
    return out.reshape(region_masks.shape).to(region_masks.device)


def pad_regions(region_masks: Sequence[Tensor], size: tuple[int, int]) -> Tensor:
    """Stack per-image ``(R_b, H, W)`` masks into one bool ``(B, max R_b, H, W)`` tensor, zero-padded."""
    count = max((int(masks.shape[0]) for masks in region_masks), default=0)
    device = region_masks[0].device if len(region_masks) else None
    padded = torch.zeros(len(region_masks), count, *size, dtype=torch.bool, device=device)
    for index, masks in enumerate(region_masks):
        if tuple(masks.shape[-2:]) != tuple(size):
            raise ValueError(f"region masks of image {index} are {tuple(masks.shape[-2:])}, fixations {tuple(size)}")
        padded[index, : masks.shape[0]] = masks != 0
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
        self.categories = list(categories)
        self.seed = int(seed)
        self.result_path = Path(result_path) if result_path is not None else None
        self.region_nss = nn.ModuleDict({n: RegionNSS(LAYER_CHANNELS[n], self.categories) for n in self.layers})
        self.shuffled = (
            nn.ModuleDict({n: RegionNSS(LAYER_CHANNELS[n], self.categories) for n in self.layers})
            if shuffled_control
            else None
        )
        self.results: dict[str, LayerResult] | None = None
        self.eval()

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
        padded = pad_regions(masks, tuple(fixations.shape[-2:]))  # once per batch, shared by every layer
        for layer in self.layers:
            self.region_nss[layer].update(features[layer], fixations, padded, categories)
        if self.shuffled is not None:
            sets = pad_regions(
                [
                    shuffled_region_fixations(fix, regions, image_generator(self.seed, stem))
                    for fix, regions, stem in zip(fixations, masks, batch["stem"], strict=True)
                ],
                tuple(fixations.shape[-2:]),
            )
            everywhere = torch.ones_like(fixations)
            for layer in self.layers:
                self.shuffled[layer].update(features[layer], everywhere, sets, categories)
        return None

    def on_predict_epoch_end(self) -> None:
        results = {}
        for layer in self.layers:
            metric = self.region_nss[layer]
            results[layer] = LayerResult(
                unit_means=metric.compute().cpu().numpy(),
                unit_std=metric.unit_std().cpu().numpy(),
                region_counts=metric.region_counts().cpu().numpy(),
                excluded_regions=metric.excluded_regions,
                excluded_images=metric.excluded_images,
                shuffled_means=self.shuffled[layer].compute().cpu().numpy() if self.shuffled is not None else None,
            )
        self.results = results
        if self.result_path is not None and self.trainer.is_global_zero:
            save_results(self.result_path, results, self.categories)


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
