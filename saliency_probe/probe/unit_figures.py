"""Unit maps before and after fine-tuning (the paper's Figs. 5 and 6) and across tasks (Fig. 11).

Every choice is made by a stated rule on the inner analysis's unit means at the head layer (VGG-16: conv5_3) (``(C, K)`` per model), so the
figures are reproducible and not hand-picked:

- Fig. 5, ``fig5_unit_gain_<after>.png``: the (unit, category) whose mean NSS gained the most from the reference
  trunk (before fine-tuning) to a fine-tuned saliency trunk;
- Fig. 6, ``fig6_unit_<category>_<after>.png``: the category whose top-k mean gained the least, and the fine-tuned
  trunk's best unit for it (the paper's *text* unit that still fires on heads);
- Fig. 11, ``fig11_tasks_layers<k>.png``: pretrained (reference), scene-tuned and saliency-tuned trunks with the
  same number ``k`` of fine-tuned layers, for the (unit, category) where saliency and scene tuning differ most.

The example image is, among the first ``figures.search_images`` probe images holding a fixated region of the
category, the one where the unit's region NSS on that category changed the most (after minus before; saliency
minus scene for Fig. 11). The reference trunk is a ``backbone.weights`` model if one is probed, else a checkpoint
with ``finetune_layers`` 0 (its trunk is the untouched initial one).
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np
import torch
from torch import nn

from saliency_probe.data.osie_sr import OsieSrDataset
from saliency_probe.io_utils import safe_name
from saliency_probe.maps import blur
from saliency_probe.metrics import functional as MF
from saliency_probe.metrics.resize import resize_bilinear
from saliency_probe.probe.activations import LayerActivations
from saliency_probe.probe.context import ProbeContext
from saliency_probe.probe.options import FiguresOptions
from saliency_probe.probe.sources import TrunkSource
from saliency_probe.report import files
from saliency_probe.report.figures import save_figure
from saliency_probe.report.units import map_row

if TYPE_CHECKING:
    from matplotlib.figure import Figure

log = logging.getLogger(__name__)

LAYER = "conv5_3"


# ------------------------------------------------------------------------------------------------------------
# which models, units and images (pure functions)
# ------------------------------------------------------------------------------------------------------------


def _layers(source: TrunkSource) -> str:
    return str(source.info.get("finetune_layers"))


def reference_source(sources: Sequence[TrunkSource]) -> TrunkSource | None:
    """The trunk "before fine-tuning": a probed ``backbone.weights`` model, else a checkpoint whose
    ``finetune_layers`` is 0 (saliency first), else None."""
    primary = [s for s in sources if not s.control]
    weights = [s for s in primary if s.kind == "weights"]
    if weights:
        return weights[0]
    untuned = [s for s in primary if s.kind == "checkpoint" and _layers(s) == "0"]
    untuned.sort(key=lambda s: s.info.get("task") != "saliency")
    return untuned[0] if untuned else None


def tuned(sources: Sequence[TrunkSource], task: str) -> list[TrunkSource]:
    """Checkpoints of ``task`` whose trunk was fine-tuned (``finetune_layers`` not 0)."""
    return [s for s in sources if s.kind == "checkpoint" and s.info.get("task") == task and _layers(s) != "0"]


def task_triples(sources: Sequence[TrunkSource]) -> list[tuple[TrunkSource, TrunkSource, TrunkSource]]:
    """``(pretrained, scene-tuned, saliency-tuned)`` for every fine-tuned layer count both tasks share."""
    reference = reference_source(sources)
    if reference is None:
        return []
    scene = {_layers(s): s for s in reversed(tuned(sources, "scene"))}
    return [(reference, scene[_layers(s)], s) for s in tuned(sources, "saliency") if _layers(s) in scene]


def largest_gain(before: np.ndarray, after: np.ndarray) -> tuple[int, int, float]:
    """``(unit, category, gain)`` maximising ``after - before`` over ``(C, K)`` unit means (NaN ignored)."""
    gain = np.asarray(after, dtype=np.float64) - np.asarray(before, dtype=np.float64)
    if not np.isfinite(gain).any():
        raise ValueError("no finite unit mean to compare")
    unit, category = np.unravel_index(int(np.nanargmax(gain)), gain.shape)
    return int(unit), int(category), float(gain[unit, category])


def least_gain_best_unit(before: np.ndarray, after: np.ndarray, top_k: int) -> tuple[int, int]:
    """``(unit, category)``: the category whose top-k mean gained the least, and the ``after`` trunk's best unit
    for it."""
    top_before = MF.top_k_mean(torch.from_numpy(np.asarray(before, dtype=np.float64)), top_k).numpy()
    top_after = MF.top_k_mean(torch.from_numpy(np.asarray(after, dtype=np.float64)), top_k).numpy()
    gain = top_after - top_before
    if not np.isfinite(gain).any():
        raise ValueError("no category with finite top-k means in both models")
    category = int(np.nanargmin(gain))
    return int(np.nanargmax(np.asarray(after)[:, category])), category


def pick_image(reference: np.ndarray, changed: np.ndarray) -> int | None:
    """Position of the largest ``changed - reference`` (per-image region NSS), NaN ignored; None if none."""
    change = np.asarray(changed, dtype=np.float64) - np.asarray(reference, dtype=np.float64)
    return int(np.nanargmax(change)) if np.isfinite(change).any() else None


# ------------------------------------------------------------------------------------------------------------
# maps
# ------------------------------------------------------------------------------------------------------------


@dataclass
class Example:
    """The probe images searched (data-set indices) and their items (image, fixations, regions)."""

    indices: list[int]
    items: list[dict[str, Any]]


def search_set(dataset: OsieSrDataset, count: int, category: str) -> Example:
    """The first ``count`` probe images that hold a fixated region of ``category`` (annotations and fixations
    are scanned in data-set order; only the chosen images are loaded)."""
    indices = []
    for index in range(len(dataset)):
        if len(indices) >= int(count):
            break
        masks, names = dataset.regions(index)
        chosen = [r for r, name in enumerate(names) if name == category]
        if chosen and (masks[chosen].any(axis=0) & (dataset.fixation_map(index) != 0)).any():
            indices.append(index)
    return Example(indices, [dataset[i] for i in indices])


@torch.no_grad()
def unit_maps(trunk: nn.Module, units: Sequence[int], example: Example, batch_size: int = 16,
              layer: str = LAYER) -> torch.Tensor:
    """The small ``layer`` (the head layer; VGG-16: conv5_3) maps ``(N, U, h, w)`` of ``units`` for the ``N``
    searched images (batched passes)."""
    extractor = LayerActivations(trunk, [layer]).eval()
    device = next(trunk.parameters()).device
    chosen = torch.as_tensor(list(units), dtype=torch.long)
    out = []
    for start in range(0, len(example.items), batch_size):
        images = torch.stack([item["image"] for item in example.items[start : start + batch_size]]).to(device)
        out.append(extractor(images)[layer][:, chosen.to(device)].float().cpu())
    return torch.cat(out)


def category_nss(maps: Sequence[torch.Tensor], example: Example, category: str) -> np.ndarray:
    """Per searched image: the mean region NSS of the map over that image's fixated regions of ``category``
    (NaN where it has none)."""
    out = np.full(len(maps), np.nan)
    for position, (small, item) in enumerate(zip(maps, example.items, strict=True)):
        chosen = [r for r, name in enumerate(item["region_categories"]) if name == category]
        if not chosen:
            continue
        masks = item["region_masks"][chosen][None]
        values = MF.region_nss(small[None, None], item["fixations"][None], masks)[0, 0].numpy()
        if np.isfinite(values).any():
            out[position] = float(np.nanmean(values))
    return out


def _full(small: torch.Tensor, size: tuple[int, int]) -> np.ndarray:
    return resize_bilinear(small[None], size)[0].numpy()


def _region_mask(item: dict[str, Any], category: str) -> np.ndarray:
    chosen = [r for r, name in enumerate(item["region_categories"]) if name == category]
    masks = item["region_masks"].numpy()
    return masks[chosen].any(axis=0) if chosen else np.zeros(masks.shape[1:], dtype=bool)


def _unit_means(context: ProbeContext, name: str) -> np.ndarray | None:
    inner = context.results.get("inner")
    per_model = inner.data.get("unit_results", {}) if inner is not None else {}
    layer = per_model.get(name, {}).get(context.head_layer)
    return None if layer is None else np.asarray(layer.unit_means)


# ------------------------------------------------------------------------------------------------------------
# the figures
# ------------------------------------------------------------------------------------------------------------


def _save(context: ProbeContext, figure: Figure, stem: str, caption: str, written: list[str]) -> None:
    png = save_figure(figure, context.figures_dir / f"{stem}.png")
    written.append(str(png))
    context.log_image(f"units/{stem}", png, caption)


def _ready(context: ProbeContext) -> tuple[list[str], Any] | None:
    """The inner analysis's categories and the probe data set, or None (with a log line) when absent."""
    inner = context.results.get("inner")
    if not inner or context.head_layer not in context.layers:
        log.info("unit figures (Figs. 5, 6, 11) need the inner analysis with %s probed; skipped", context.head_layer)
        return None
    return list(inner.data["categories"]), context.dataset()


def fine_tuning_figures(context: ProbeContext) -> list[str]:
    """Figs. 5 and 6 for every fine-tuned saliency checkpoint against the reference trunk; the written paths."""
    ready = _ready(context)
    reference = reference_source(context.sources)
    afters = tuned(context.sources, "saliency")
    if ready is None or reference is None or not afters:
        return []
    categories, dataset = ready
    layer = context.head_layer
    before = _unit_means(context, reference.name)
    if before is None:
        return []
    count = context.options("figures", FiguresOptions).search_images
    examples: dict[int, Example] = {}
    before_trunk = reference.trunk().eval()
    top_k = int(context.cfg.top_k)
    written: list[str] = []
    for after_source in afters:
        after = _unit_means(context, after_source.name)
        if after is None:
            continue
        after_trunk = after_source.trunk().eval()
        unit, k, gain = largest_gain(before, after)
        unit6, k6 = least_gain_best_unit(before, after, top_k)
        choices = [(files.FIG5_UNIT_GAIN, unit, k, f"largest unit gain ({gain:+.2f})"),
                   (files.fig6_unit(safe_name(categories[k6])), unit6, k6,
                    f"best unit for the least-improved category {categories[k6]!r}")]
        for stem, unit, k, why in choices:
            if k not in examples:
                examples[k] = search_set(dataset, count, categories[k])
            example = examples[k]
            maps_before = unit_maps(before_trunk, [unit], example, layer=layer)[:, 0]
            maps_after = unit_maps(after_trunk, [unit], example, layer=layer)[:, 0]
            nss_before = category_nss(maps_before, example, categories[k])
            nss_after = category_nss(maps_after, example, categories[k])
            position = pick_image(nss_before, nss_after)
            if position is None:
                continue
            item, index = example.items[position], example.indices[position]
            fixations = item["fixations"].numpy() != 0
            size = fixations.shape
            panels = [
                (f"image {dataset.stems[index]}: {categories[k]}", None, True),
                (f"before ({reference.name}): {nss_before[position]:.2f}", _full(maps_before[position], size), True),
                (f"after ({after_source.name}): {nss_after[position]:.2f}", _full(maps_after[position], size), True),
                ("after, map alone", _full(maps_after[position], size), False),
            ]
            title = (f"{layer} unit {unit}, {why}: mean NSS on {categories[k]} {before[unit, k]:.2f} -> "
                     f"{after[unit, k]:.2f}")
            figure = map_row(dataset.load_image(index), fixations, _region_mask(item, categories[k]), panels, title)
            _save(context, figure, f"{stem}_{safe_name(after_source.name)}", title, written)
        del after_trunk
    return written


def task_figures(context: ProbeContext, gt_sigma: float) -> list[str]:
    """Fig. 11 for every fine-tuned layer count that both tasks share; the written paths."""
    ready = _ready(context)
    triples = task_triples(context.sources)
    if ready is None or not triples:
        return []
    categories, dataset = ready
    layer = context.head_layer
    count = context.options("figures", FiguresOptions).search_images
    written: list[str] = []
    for reference, scene, saliency in triples:
        means = [_unit_means(context, s.name) for s in (reference, scene, saliency)]
        if any(m is None for m in means):
            continue
        unit, k, difference = largest_gain(means[1], means[2])
        example = search_set(dataset, count, categories[k])
        maps = [unit_maps(source.trunk().eval(), [unit], example, layer=layer)[:, 0] for source in (reference, scene, saliency)]
        scores = [category_nss(m, example, categories[k]) for m in maps]
        position = pick_image(scores[1], scores[2])
        if position is None:
            continue
        item, index = example.items[position], example.indices[position]
        fixations = item["fixations"].numpy() != 0
        size = fixations.shape
        panels = [(f"image {dataset.stems[index]}: {categories[k]}", None, True),
                  ("ground truth", blur(fixations.astype(np.float64), gt_sigma), True)]
        for label, source, maps_of, score in zip(("pt", "sr", "sp"), (reference, scene, saliency), maps, scores,
                                                 strict=True):
            panels.append((f"{label} ({source.name}): {score[position]:.2f}", _full(maps_of[position], size), True))
        title = (f"{layer} unit {unit}, category {categories[k]}: mean NSS pt {means[0][unit, k]:.2f}, "
                 f"sr {means[1][unit, k]:.2f}, sp {means[2][unit, k]:.2f} (largest sp - sr: {difference:+.2f})")
        figure = map_row(dataset.load_image(index), fixations, _region_mask(item, categories[k]), panels, title)
        _save(context, figure, files.fig11_tasks(safe_name(_layers(saliency))), title, written)
    return written
