"""torchmetrics classes over ``functional``: states are sums and counts reduced by sum, so that one process
and several DDP processes give the same number (docs/protocol.md, DDP: a per-rank mean is wrong under DDP).

Images without fixations and regions without fixations are excluded from every mean and counted
(``excluded_images`` / ``excluded_regions``); they never turn a result into NaN. Under DDP the helpers
(``top_k_mean``, ``excluded_images``, ...) gather states like ``compute()``: call them on every rank.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator, Sequence

import torch
from torch import Tensor
from torchmetrics import Metric

from saliency_probe.metrics import functional as MF

__all__ = ["NSS", "CC", "KLDiv", "SIM", "AUCJudd", "RegionNSS", "NMM"]

_F64 = torch.float64


class _SyncedStates(Metric):
    """A Metric whose helper methods read states synchronised across processes (as ``compute`` does)."""

    @contextlib.contextmanager
    def _synced(self) -> Iterator[None]:
        if self._is_synced:
            yield
            return
        with self.sync_context(dist_sync_fn=self.dist_sync_fn, should_sync=self._to_sync, should_unsync=True):
            yield


class _ImageMean(_SyncedStates):
    """Mean of a per-image metric over the images where it is defined; undefined (NaN) images are counted."""

    is_differentiable = False
    full_state_update = False
    _fn: Callable[[Tensor, Tensor], Tensor]

    def __init__(self, **kwargs: object) -> None:
        super().__init__(**kwargs)
        self.add_state("total", default=torch.zeros((), dtype=_F64), dist_reduce_fx="sum")
        self.add_state("count", default=torch.zeros((), dtype=torch.long), dist_reduce_fx="sum")
        self.add_state("excluded", default=torch.zeros((), dtype=torch.long), dist_reduce_fx="sum")

    def update(self, saliency_map: Tensor, target: Tensor) -> None:
        """Add a batch: ``saliency_map (..., h, w)`` against ``target (..., H, W)``; one value per map."""
        values = type(self)._fn(saliency_map.detach(), target).to(_F64).reshape(-1)
        valid = ~torch.isnan(values)
        self.total += values[valid].sum()
        self.count += valid.sum()
        self.excluded += (~valid).sum()

    def compute(self) -> Tensor:
        """Mean over the images where the metric is defined (NaN only if there were none)."""
        return self.total / self.count if self.count > 0 else torch.full_like(self.total, float("nan"))

    @property
    def excluded_images(self) -> int:
        """Images left out because the metric is undefined there (no fixation)."""
        with self._synced():
            return int(self.excluded)


class NSS(_ImageMean):
    """Data-set NSS: mean per-image NSS over images with at least one fixation (``update(pred, fixations)``)."""

    higher_is_better = True
    _fn = staticmethod(MF.nss)


class CC(_ImageMean):
    """Mean linear correlation coefficient with the ground-truth map (``update(pred, gt_map)``)."""

    higher_is_better = True
    _fn = staticmethod(MF.cc)


class KLDiv(_ImageMean):
    """Mean MIT-style KL divergence of the ground-truth density from the prediction (lower is better)."""

    higher_is_better = False
    _fn = staticmethod(MF.kld)


class SIM(_ImageMean):
    """Mean similarity (histogram intersection) with the ground-truth density."""

    higher_is_better = True
    _fn = staticmethod(MF.sim)


class AUCJudd(_ImageMean):
    """Mean AUC-Judd over images with at least one fixation (``update(pred, fixations)``)."""

    higher_is_better = True
    _fn = staticmethod(MF.auc_judd)


def _fixated_regions(
    region_masks: Tensor | Sequence[Tensor] | MF.FixatedRegions, fixation_map: Tensor
) -> tuple[MF.FixatedRegions, list[int], bool]:
    """The batch's regions as :class:`~saliency_probe.metrics.functional.FixatedRegions`, the number of
    regions given for each image, and whether the input was padded (a tensor or ``FixatedRegions``).

    Masks are read at the fixated pixels only: no full-resolution copy of them is made.
    """
    batch, size = fixation_map.shape[0], (int(fixation_map.shape[1]), int(fixation_map.shape[2]))
    if isinstance(region_masks, MF.FixatedRegions):
        if region_masks.batch != batch or tuple(region_masks.size) != size:
            raise ValueError(
                f"region_masks: FixatedRegions of {region_masks.batch} images of {tuple(region_masks.size)} "
                f"for fixation maps {tuple(fixation_map.shape)}"
            )
        return region_masks, [region_masks.membership.shape[1]] * batch, True
    regions = MF.fixated_regions(fixation_map, region_masks)
    if isinstance(region_masks, Tensor):
        return regions, [region_masks.shape[1]] * batch, True
    return regions, [int(masks.shape[0]) for masks in region_masks], False


class RegionNSS(_SyncedStates):
    """The paper's inner-saliency probe (Eq. 1 and Section 4.3) for one layer.

    Accumulates, per unit and region category, the sum and the sum of squares of region NSS values and, per
    category, the number of regions that held fixations. ``compute()`` gives the ``(C, K)`` unit means over
    all regions of each category in the data set (NaN only for a category never seen with fixations).
    A unit whose map is constant on an image (a "dead" map) gives 0 on every region of that image; these zeros
    enter the means, and :meth:`dead_maps` counts them per unit and category.

    Args:
        num_units: ``C``, channels of the probed layer.
        categories: the ``K`` category names, in the order of the result's columns.
    """

    is_differentiable = False
    higher_is_better = True
    full_state_update = False

    def __init__(self, num_units: int, categories: Sequence[str], **kwargs: object) -> None:
        super().__init__(**kwargs)
        if num_units < 1:
            raise ValueError(f"RegionNSS: num_units must be >= 1, got {num_units}")
        if len(categories) == 0 or len(set(categories)) != len(categories):
            raise ValueError(f"RegionNSS: categories must be non-empty and unique, got {list(categories)}")
        self.num_units = int(num_units)
        self.categories = [str(name) for name in categories]
        self._index = {name: i for i, name in enumerate(self.categories)}
        k = len(self.categories)
        self.add_state("sum", default=torch.zeros(num_units, k, dtype=_F64), dist_reduce_fx="sum")
        self.add_state("sum_sq", default=torch.zeros(num_units, k, dtype=_F64), dist_reduce_fx="sum")
        self.add_state("count", default=torch.zeros(k, dtype=torch.long), dist_reduce_fx="sum")
        self.add_state("dead", default=torch.zeros(num_units, k, dtype=torch.long), dist_reduce_fx="sum")
        self.add_state("no_fixation_regions", default=torch.zeros((), dtype=torch.long), dist_reduce_fx="sum")
        self.add_state("no_fixation_images", default=torch.zeros((), dtype=torch.long), dist_reduce_fx="sum")

    def _category_indices(
        self, region_categories: Sequence[Sequence[str | int]] | Tensor, given: list[int], padded: bool
    ) -> Tensor:
        """``(B, R)`` category indices, -1 for padding; validates names and indices.

        With a padded mask tensor a list may be shorter than ``R`` (the rest is padding); with a list of
        masks each image needs exactly one category per mask.
        """
        batch, width = len(given), max(given, default=0)
        if isinstance(region_categories, Tensor):
            if region_categories.shape != (batch, width):
                raise ValueError(
                    f"region_categories: expected a ({batch}, {width}) tensor, got {tuple(region_categories.shape)}"
                )
            out = region_categories.to(torch.long).cpu().clone()
        else:
            if len(region_categories) != batch:
                raise ValueError(
                    f"region_categories: expected {batch} lists (one per image), got {len(region_categories)}"
                )
            out = torch.full((batch, width), -1, dtype=torch.long)
            for b, names in enumerate(region_categories):
                if len(names) > width or (not padded and len(names) != given[b]):
                    raise ValueError(
                        f"region_categories[{b}]: {len(names)} categories for {given[b]} region masks"
                    )
                for r, name in enumerate(names):
                    out[b, r] = self._resolve(name, b)
        bad = (out < -1) | (out >= len(self.categories))
        if bad.any():
            raise ValueError(
                f"region_categories: indices must lie in [0, {len(self.categories)}) or be -1 (padding); "
                f"got {out[bad].unique().tolist()}"
            )
        for b, count in enumerate(given):  # regions beyond an image's list are padding
            out[b, count:] = -1
        return out

    def _resolve(self, name: str | int, image: int) -> int:
        if isinstance(name, str):
            if name not in self._index:
                raise ValueError(
                    f"region_categories[{image}]: unknown category {name!r}; known: {self.categories}"
                )
            return self._index[name]
        return int(name)

    def update(
        self,
        activations: Tensor,
        fixation_map: Tensor,
        region_masks: Tensor | Sequence[Tensor] | MF.FixatedRegions,
        region_categories: Sequence[Sequence[str | int]] | Tensor,
    ) -> None:
        """Add a batch of images.

        Args:
            activations: ``(B, C, h, w)`` unit maps of the layer.
            fixation_map: ``(B, H, W)`` binary fixation maps at image resolution.
            region_masks: a list of ``B`` tensors ``(R_b, H, W)`` (a variable number of regions per image), a
                padded ``(B, R, H, W)`` tensor, or the faster
                :class:`~saliency_probe.metrics.functional.FixatedRegions` of this fixation map (padded ``R``
                slots; the masks read at the fixated pixels only, e.g. shared by several metrics).
            region_categories: for each image, the category (name or index) of each of its regions, or a
                ``(B, R)`` integer tensor; index -1 (or a shorter list with a padded tensor) marks padding.
        """
        if activations.dim() != 4 or activations.shape[1] != self.num_units:
            raise ValueError(
                f"RegionNSS: expected activations (B, {self.num_units}, h, w), got {tuple(activations.shape)}"
            )
        if fixation_map.dim() != 3 or fixation_map.shape[0] != activations.shape[0]:
            raise ValueError(
                f"RegionNSS: expected fixation_map (B={activations.shape[0]}, H, W), got {tuple(fixation_map.shape)}"
            )
        regions, given, padded = _fixated_regions(region_masks, fixation_map)
        categories = self._category_indices(region_categories, given, padded).to(self.count.device)
        has_fixation = (regions.fixations_per_image() > 0).to(self.count.device)
        self.no_fixation_images += (~has_fixation).sum()
        if regions.membership.shape[1] == 0:
            return
        values, constant = MF.region_nss_fixated(activations.detach(), regions, return_constant=True)  # (B, C, R)
        values = values.to(device=self.sum.device, dtype=_F64)
        real = categories >= 0
        held = ~torch.isnan(values[:, 0, :])
        self.no_fixation_regions += (real & ~held).sum()
        keep = real & held
        rows = values.permute(0, 2, 1)[keep]  # (n, C)
        index = categories[keep]
        self.sum.index_add_(1, index, rows.T)
        self.sum_sq.index_add_(1, index, rows.T.square())
        self.count.index_add_(0, index, torch.ones_like(index))
        image = torch.arange(keep.shape[0], device=keep.device)[:, None].expand_as(keep)[keep]  # (n,)
        dead = constant.to(self.dead.device)[image].to(torch.long)  # (n, C): the region's image's dead maps
        self.dead.index_add_(1, index, dead.T)

    def compute(self) -> Tensor:
        """``(C, K)`` mean region NSS per unit and category; NaN columns for categories never seen."""
        return self._means()

    def _means(self) -> Tensor:
        count = self.count.to(_F64)
        return torch.where(count > 0, self.sum / count.clamp(min=1), torch.full_like(self.sum, float("nan")))

    def top_k_mean(self, k: int = 10) -> Tensor:
        """``(K,)`` the paper's "top-10 mean NSS": mean of the ``k`` largest unit means per category."""
        with self._synced():
            return MF.top_k_mean(self._means(), k)

    def count_above(self, threshold: float = 1.5) -> Tensor:
        """``(K,)`` number of units whose mean exceeds ``threshold`` (the paper's T = 1.5)."""
        with self._synced():
            return MF.count_above(self._means(), threshold)

    def unit_std(self, ddof: int = 1) -> Tensor:
        """``(C, K)`` std of region NSS per unit and category (``ddof=1``: sample std, for t-tests); NaN where
        a category has no more than ``ddof`` regions."""
        with self._synced():
            count = self.count.to(_F64)
            mean = self.sum / count.clamp(min=1)
            var = ((self.sum_sq - count * mean.square()) / (count - ddof)).clamp(min=0)
            return torch.where(count > ddof, var.sqrt(), torch.full_like(var, float("nan")))

    def dead_maps(self) -> Tensor:
        """``(C, K)`` number of the category's fixated regions on whose image the unit's map was constant (up to
        rounding noise): the region NSS values that are 0 because the map is dead, all inside the means."""
        with self._synced():
            return self.dead.clone()

    def region_counts(self) -> Tensor:
        """``(K,)`` number of regions of each category that held fixations (the means' denominators)."""
        with self._synced():
            return self.count.clone()

    @property
    def excluded_regions(self) -> int:
        """Regions that held no fixation (including those of images without fixations)."""
        with self._synced():
            return int(self.no_fixation_regions)

    @property
    def excluded_images(self) -> int:
        """Images without any fixation."""
        with self._synced():
            return int(self.no_fixation_images)


class NMM(_SyncedStates):
    """Normalised map mean (Eq. 4) per unit, accumulated over pop-out arrays.

    ``update(maps (B, C, h, w), masks (B, H, W))``; ``compute()`` gives the ``(C,)`` mean NMM per unit over
    images whose mask is not empty (empty masks are excluded and counted). Use ``num_units=1`` for model
    outputs (Table 4).
    """

    is_differentiable = False
    higher_is_better = True
    full_state_update = False

    def __init__(self, num_units: int = 1, **kwargs: object) -> None:
        super().__init__(**kwargs)
        if num_units < 1:
            raise ValueError(f"NMM: num_units must be >= 1, got {num_units}")
        self.num_units = int(num_units)
        self.add_state("sum", default=torch.zeros(num_units, dtype=_F64), dist_reduce_fx="sum")
        self.add_state("sum_sq", default=torch.zeros(num_units, dtype=_F64), dist_reduce_fx="sum")
        self.add_state("count", default=torch.zeros((), dtype=torch.long), dist_reduce_fx="sum")
        self.add_state("empty_masks", default=torch.zeros((), dtype=torch.long), dist_reduce_fx="sum")

    def update(self, maps: Tensor, masks: Tensor) -> None:
        """Add a batch: ``maps (B, C, h, w)`` (a ``(B, h, w)`` batch means ``C = 1``), ``masks (B, H, W)``."""
        if maps.dim() == 3:
            maps = maps[:, None]
        if maps.dim() != 4 or maps.shape[1] != self.num_units:
            raise ValueError(f"NMM: expected maps (B, {self.num_units}, h, w), got {tuple(maps.shape)}")
        values = MF.nmm(maps.detach(), masks).to(device=self.sum.device, dtype=_F64)  # (B, C)
        valid = ~torch.isnan(values[:, 0])
        self.sum += values[valid].sum(dim=0)
        self.sum_sq += values[valid].square().sum(dim=0)
        self.count += valid.sum()
        self.empty_masks += (~valid).sum()

    def compute(self) -> Tensor:
        """``(C,)`` mean NMM per unit (NaN only if no image had a non-empty mask)."""
        return self._means()

    def _means(self) -> Tensor:
        if self.count == 0:
            return torch.full_like(self.sum, float("nan"))
        return self.sum / self.count

    def top_k_mean(self, k: int = 10) -> Tensor:
        """Mean NMM of the ``k`` units with the largest mean NMM (Tables 5 and 6)."""
        with self._synced():
            return MF.top_k_mean(self._means(), k)

    def count_above(self, threshold: float) -> Tensor:
        """Number of units whose mean NMM exceeds ``threshold``."""
        with self._synced():
            return MF.count_above(self._means(), threshold)

    def unit_std(self, ddof: int = 1) -> Tensor:
        """``(C,)`` std of NMM per unit over images (``ddof=1`` for t-tests); NaN with too few images."""
        with self._synced():
            count = self.count.to(_F64)
            mean = self.sum / count.clamp(min=1)
            var = ((self.sum_sq - count * mean.square()) / (count - ddof)).clamp(min=0)
            return var.sqrt() if self.count > ddof else torch.full_like(var, float("nan"))

    @property
    def excluded_images(self) -> int:
        """Images whose target mask was empty."""
        with self._synced():
            return int(self.empty_masks)
