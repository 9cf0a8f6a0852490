"""Does a scene-recognition network look where people look? (the paper's Section 8, Table 8).

For every probed scene checkpoint: the network's attention is the mean of its head layer's maps (VGG-16: the
512 conv5_3 maps, post-ReLU), its NSS against the human fixations of each held-out image is split by whether
the scene prediction was correct.

Held-out images: the checkpoint's own validation split, rebuilt from the data config it was trained with
(``metadata['config']['data']``: the same label file, class filter and seeded split), so the images were never
trained on and the labels are in the checkpoint's class order (checked against its ``class_names``).
``scene_attention.root`` points the data elsewhere when the training folder moved; ``scene_attention.split``
picks ``val`` (default), ``train`` or ``all``.

Per group: mean NSS over the images with fixations, a bootstrap confidence interval of that mean
(``scipy.stats.bootstrap``, percentile method, seeded), the image count; plus a two-sided Mann-Whitney U test
between the groups (both in :mod:`saliency_probe.probe.stats`; the Markdown table is drawn by
:mod:`saliency_probe.report.scene_attention`). Outputs: ``tables/scene_attention.csv`` (``model, prediction, nss, ci_low, ci_high,
n_images``; rows ``correct`` and ``wrong``), ``tables/scene_attention_per_image.csv``,
``tables/scene_attention.md`` and (with the inner analysis and a saliency checkpoint tuned as deep) Fig. 11 of
:mod:`saliency_probe.probe.unit_figures`.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Sequence
from typing import Any

import numpy as np
import pytorch_lightning as pl
import torch
from hydra.utils import instantiate
from omegaconf import DictConfig
from torch import Tensor, nn
from torch.utils.data import ConcatDataset, DataLoader, Dataset

from saliency_probe.metrics import functional as MF
from saliency_probe.models.backbone import architecture
from saliency_probe.models.checkpoint import LoadedCheckpoint
from saliency_probe.models.scene import build_classifier_head, scene_pooling
from saliency_probe.probe import unit_figures
from saliency_probe.probe.context import AnalysisResult, ProbeContext
from saliency_probe.probe.options import FiguresOptions, OutputOptions, SceneAttentionOptions
from saliency_probe.probe.passes import PassResult, ProbePass, RecordCollector
from saliency_probe.probe.registry import Analysis, register_analysis
from saliency_probe.probe.sources import TrunkSource
from saliency_probe.probe.stats import bootstrap_interval, group_test
from saliency_probe.report import files
from saliency_probe.report.scene_attention import scene_lines, scene_markdown
from saliency_probe.report.tables import write_csv, write_text

log = logging.getLogger(__name__)

COLUMNS = ["model", "prediction", "nss", "ci_low", "ci_high", "n_images"]
PER_IMAGE_COLUMNS = ["model", "image", "label", "predicted", "correct", "nss"]


def is_scene_checkpoint(source: TrunkSource) -> bool:
    """A probed checkpoint of the scene task (the models with a scene classifier)."""
    return source.kind == "checkpoint" and str(source.info.get("task")) == "scene"


# ------------------------------------------------------------------------------------------------------------
# per-image values and Table 8 rows (pure functions)
# ------------------------------------------------------------------------------------------------------------


def attention_map(features: Tensor) -> Tensor:
    """The network's attention: the mean over units of ``(B, C, h, w)`` maps, ``(B, h, w)``."""
    return features.mean(dim=1)


def split_rows(model: str, nss: np.ndarray, correct: np.ndarray, confidence: float = 0.95,
               n_resamples: int = 9999, seed: int = 0) -> list[dict[str, Any]]:
    """Table 8 rows ``correct`` and ``wrong``: mean NSS, bootstrap interval and count over the images with a
    finite NSS (images without fixations are left out)."""
    nss, correct = np.asarray(nss, dtype=np.float64), np.asarray(correct, dtype=bool)
    rows = []
    for label, members in (("correct", correct), ("wrong", ~correct)):
        values = nss[members & np.isfinite(nss)]
        low, high = bootstrap_interval(values, confidence, n_resamples, seed)
        rows.append({"model": model, "prediction": label, "nss": float(values.mean()) if values.size else math.nan,
                     "ci_low": low, "ci_high": high, "n_images": int(values.size)})
    return rows


# ------------------------------------------------------------------------------------------------------------
# model and data of a scene checkpoint
# ------------------------------------------------------------------------------------------------------------


def scene_classifier(loaded: LoadedCheckpoint) -> nn.Sequential:
    """The checkpoint's pool5 + FC head (``classifier.*``), rebuilt from its hyper-parameters."""
    params = loaded.hyper_parameters
    names = params.get("class_names")
    if not names:
        raise ValueError(f"checkpoint {loaded.path}: a scene checkpoint must record class_names in hyper_parameters")
    spec = loaded.backbone
    table = architecture(spec).table
    channels = table.get(table.head).channels
    head = build_classifier_head(len(names), float(params.get("dropout", 0.5)), int(params.get("hidden_features", 4096)),
                                 channels, scene_pooling(spec))
    prefix = "classifier."
    state = {key[len(prefix):]: value for key, value in loaded.state_dict.items() if key.startswith(prefix)}
    try:
        head.load_state_dict(state)
    except RuntimeError as error:
        raise ValueError(f"checkpoint {loaded.path}: classifier weights do not fit the recorded head ({error})") from error
    return head.eval()


def scene_dataset(
    loaded: LoadedCheckpoint, options: SceneAttentionOptions
) -> tuple[Dataset, list[str], pl.LightningDataModule]:
    """``(held-out items with image, fixations, label; class names; the data module)`` of a scene checkpoint."""
    data_cfg = dict((loaded.metadata.get("config") or {}).get("data") or {})
    if not data_cfg.get("_target_"):
        raise ValueError(
            f"checkpoint {loaded.path} records no data config (metadata['config']['data']); the scene-attention "
            "analysis rebuilds the held-out split from it (checkpoints written by `python train.py task=scene` have it)"
        )
    if options.root is not None:
        data_cfg["root"] = options.root
    datamodule = instantiate(data_cfg, _recursive_=False)
    datamodule.setup("fit")
    names = list(loaded.hyper_parameters.get("class_names") or [])
    if list(datamodule.class_names) != names:
        raise ValueError(
            f"checkpoint {loaded.path} was trained on classes {names} but its data config "
            f"({data_cfg.get('labels_file') or data_cfg.get('root')}) now gives {list(datamodule.class_names)}"
        )
    if options.split == "val":
        dataset = datamodule.val_set
    elif options.split == "train":
        dataset = datamodule.train_set
    else:
        dataset = ConcatDataset([datamodule.train_set, datamodule.val_set])
    return dataset, names, datamodule


def dataset_stems(dataset: Dataset | Sequence[dict[str, Any]]) -> list[str]:
    """The stems of ``dataset``'s items, in item order.

    Read without loading images where the data set lists them: a ``stems`` attribute, the parts of a
    :class:`~torch.utils.data.ConcatDataset`, or the ``indices`` into a ``source`` (or ``dataset``) of a subset
    (:class:`~saliency_probe.data.scene_datamodule.LabelledImages`, :class:`~torch.utils.data.Subset`); else
    each item's ``stem``.
    """
    stems = getattr(dataset, "stems", None)
    if stems is not None:
        return [str(stem) for stem in stems]
    if isinstance(dataset, ConcatDataset):
        return [stem for part in dataset.datasets for stem in dataset_stems(part)]
    indices = getattr(dataset, "indices", None)
    source = getattr(dataset, "source", None)
    source = getattr(dataset, "dataset", None) if source is None else source
    if indices is not None and source is not None:
        source_stems = dataset_stems(source)
        return [source_stems[int(index)] for index in indices]
    return [str(dataset[index]["stem"]) for index in range(len(dataset))]  # type: ignore[arg-type]


class IndexedItems(Dataset):
    """Items of ``source`` with their position (``position``), recorded with each result to order and name it."""

    def __init__(self, source: Dataset | Sequence[dict[str, Any]]) -> None:
        self.source = source

    def __len__(self) -> int:
        return len(self.source)  # type: ignore[arg-type]

    def __getitem__(self, index: int) -> dict[str, Any]:
        item = dict(self.source[index])
        item["position"] = index
        return {key: item[key] for key in ("image", "fixations", "label", "position")}


class SceneAttentionModule(ProbePass):
    """Per image: the attention map's NSS, the true and the predicted class. ``trunk(images)`` must return the
    head layer's maps (a :class:`~saliency_probe.models.backbone.Trunk` does; VGG-16: conv5_3 post-ReLU) and
    ``classifier`` the logits from them. Batches carry each item's ``position`` in the data set (:class:`IndexedItems`).

    The result (the same on every rank) holds ``records``, an ``(N, 4)`` float64 array ``[position, label,
    predicted, nss]`` sorted by position (:func:`dataset_stems` names the positions).
    """

    def __init__(self, trunk: nn.Module, classifier: nn.Module) -> None:
        super().__init__()
        self.trunk = trunk
        self.classifier = classifier
        self.images = RecordCollector(4)
        self.eval()

    def predict_step(self, batch: dict[str, Any], batch_idx: int) -> None:
        features = self.trunk(batch["image"])
        predicted = self.classifier(features).argmax(dim=1)
        scores = MF.nss(attention_map(features), batch["fixations"])
        columns = (batch["position"], batch["label"], predicted, scores)
        self.images.update(torch.stack([column.detach().cpu().double() for column in columns], dim=1))
        return None

    def compute_result(self) -> PassResult:
        records = self.images.compute().cpu().numpy()
        return {"records": records[np.argsort(records[:, 0], kind="stable")]}


# ------------------------------------------------------------------------------------------------------------
# the analysis
# ------------------------------------------------------------------------------------------------------------


def per_image_rows(model: str, records: np.ndarray, stems: Sequence[str], names: Sequence[str]
                   ) -> list[dict[str, Any]]:
    """``scene_attention_per_image.csv`` rows from a pass's ``[position, label, predicted, nss]`` records
    (``stems``: of every data-set position; ``names``: the class names)."""
    positions, labels, predicted = (records[:, column].astype(int) for column in range(3))
    return [{"model": model, "image": stems[position], "label": names[a], "predicted": names[b],
             "correct": bool(a == b), "nss": float(s)}
            for position, a, b, s in zip(positions, labels, predicted, records[:, 3], strict=True)]


@register_analysis
class SceneAttentionAnalysis(Analysis):
    """Table 8 for every probed scene checkpoint (see the module docstring)."""

    name = "scene_attention"

    def applies_to(self, cfg: DictConfig, sources: Sequence[TrunkSource]) -> bool:
        """``analyses: auto`` runs the scene-attention analysis when a scene checkpoint is probed."""
        return any(is_scene_checkpoint(source) for source in sources)

    def run(self, context: ProbeContext) -> AnalysisResult:
        options = context.options("scene_attention", SceneAttentionOptions)
        models = [source for source in context.sources if is_scene_checkpoint(source)]
        if not models:
            raise ValueError(
                "the scene_attention analysis needs a scene checkpoint (ckpt=... or sweep=... of task=scene); "
                "probed: " + ", ".join(f"{s.name} ({s.kind}, task {s.info.get('task')})" for s in context.sources)
            )
        rows: list[dict[str, Any]] = []
        per_image: list[dict[str, Any]] = []
        tests: dict[str, dict[str, Any]] = {}
        written: list[str] = []
        sizes: dict[str, int] = {}
        for number, source in enumerate(models):
            loaded = source.checkpoint()
            dataset, names, datamodule = scene_dataset(loaded, options)
            batch_size = options.batch_size or int(getattr(datamodule, "batch_size", 8))
            loader = DataLoader(IndexedItems(dataset), batch_size=batch_size, shuffle=False,
                                num_workers=int(getattr(datamodule, "num_workers", 0)))
            module = SceneAttentionModule(loaded.trunk().eval(), scene_classifier(loaded))
            description = f"scene attention {number + 1}/{len(models)}: {source.name}"
            records = context.predict(module, description, dataloaders=loader)["records"]
            labels, predicted, nss = records[:, 1].astype(int), records[:, 2].astype(int), records[:, 3]
            correct = labels == predicted
            rows.extend(split_rows(source.name, nss, correct, options.confidence, options.n_resamples, options.seed))
            tests[source.name] = group_test(nss, correct)
            sizes[source.name] = len(records)
            per_image.extend(per_image_rows(source.name, records, dataset_stems(dataset), names))
            del module, loaded
        tables = context.tables_dir
        if context.is_global_zero:
            header = (f"Attention = mean of the {context.head_layer} maps; NSS against the fixations of the held-out images "
                      f"(split {options.split!r} of each checkpoint's training data); {options.confidence:.0%} "
                      f"percentile bootstrap interval of the mean ({options.n_resamples} resamples, seed "
                      f"{options.seed}).")
            written.append(str(write_csv(tables / files.SCENE_CSV, rows, COLUMNS)))
            written.append(str(write_csv(tables / files.SCENE_PER_IMAGE_CSV, per_image, PER_IMAGE_COLUMNS)))
            written.append(str(write_text(tables / files.SCENE_MD, scene_markdown(rows, tests, header))))
            context.log_table("scene_attention/nss", rows, COLUMNS)
            if context.options("figures", FiguresOptions).enabled:
                gt_sigma = context.options("output", OutputOptions).gt_sigma
                with context.forward_precision():
                    written.extend(unit_figures.task_figures(context, gt_sigma))
        return AnalysisResult(
            summary={"models": [s.name for s in models], "images": sizes, "split": options.split,
                     "csv": str(tables / files.SCENE_CSV)},
            lines=scene_lines(rows),
            files=written,
            data={"rows": rows, "per_image": per_image, "tests": tests},
        )
