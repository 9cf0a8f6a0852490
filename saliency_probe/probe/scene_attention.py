"""Does a scene-recognition network look where people look? (the paper's Section 8, Table 8).

For every probed scene checkpoint: the network's attention is the mean of the 512 conv5_3 maps (post-ReLU), its
NSS against the human fixations of each held-out image is split by whether the scene prediction was correct.

Held-out images: the checkpoint's own validation split, rebuilt from the data config it was trained with
(``metadata['config']['data']``: the same label file, class filter and seeded split), so the images were never
trained on and the labels are in the checkpoint's class order (checked against its ``class_names``).
``scene_attention.root`` points the data elsewhere when the training folder moved; ``scene_attention.split``
picks ``val`` (default), ``train`` or ``all``.

Per group: mean NSS over the images with fixations, a bootstrap confidence interval of that mean
(``scipy.stats.bootstrap``, percentile method, seeded), the image count; plus a two-sided Mann-Whitney U test
between the groups. Outputs: ``tables/scene_attention.csv`` (``model, prediction, nss, ci_low, ci_high,
n_images``; rows ``correct`` and ``wrong``), ``tables/scene_attention_per_image.csv``,
``tables/scene_attention.md`` and (with the inner analysis and a saliency checkpoint tuned as deep) Fig. 11 of
:mod:`saliency_probe.probe.unit_figures`.
"""

from __future__ import annotations

import logging
import math
import warnings
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pytorch_lightning as pl
import torch
from hydra.utils import instantiate
from omegaconf import DictConfig, OmegaConf
from scipy import stats
from torch import Tensor, nn
from torch.utils.data import DataLoader, Dataset

from saliency_probe.io_utils import write_npz
from saliency_probe.metrics import functional as MF
from saliency_probe.models.checkpoint import LoadedCheckpoint
from saliency_probe.models.scene import build_classifier_head
from saliency_probe.probe.registry import register_analysis
from saliency_probe.report.tables import format_number, markdown_table, write_csv, write_text

log = logging.getLogger(__name__)

CSV_NAME = "scene_attention.csv"
PER_IMAGE_CSV_NAME = "scene_attention_per_image.csv"
MARKDOWN_NAME = "scene_attention.md"
COLUMNS = ["model", "prediction", "nss", "ci_low", "ci_high", "n_images"]
PER_IMAGE_COLUMNS = ["model", "image", "label", "predicted", "correct", "nss"]
SPLITS = ("val", "train", "all")


@dataclass(frozen=True)
class SceneAttentionOptions:
    """``cfg.scene_attention``: data location and split, bootstrap settings."""

    root: str | None = None
    split: str = "val"
    confidence: float = 0.95
    n_resamples: int = 9999
    seed: int = 0
    batch_size: int | None = None


def scene_attention_options(cfg: DictConfig | dict) -> SceneAttentionOptions:
    """Read ``cfg.scene_attention`` (absent keys take the defaults) and check it."""
    section = cfg.get("scene_attention") or {}
    section = OmegaConf.to_container(section, resolve=True) if OmegaConf.is_config(section) else dict(section)
    options = SceneAttentionOptions(
        root=str(section["root"]) if section.get("root") else None,
        split=str(section.get("split", "val")),
        confidence=float(section.get("confidence", 0.95)),
        n_resamples=int(section.get("n_resamples", 9999)),
        seed=int(section.get("seed", cfg.get("seed", 0))),
        batch_size=int(section["batch_size"]) if section.get("batch_size") else None,
    )
    if options.split not in SPLITS:
        raise ValueError(f"scene_attention.split must be one of {list(SPLITS)}, got {options.split!r}")
    if not 0 < options.confidence < 1 or options.n_resamples < 1:
        raise ValueError(f"scene_attention: need 0 < confidence < 1 and n_resamples >= 1, got {options}")
    return options


def is_scene_checkpoint(source: Any) -> bool:
    return source.kind == "checkpoint" and str(source.info.get("task")) == "scene"


def applies_to(cfg: Any, sources: Sequence[Any]) -> bool:
    """``analyses: auto`` runs the scene-attention analysis when a scene checkpoint is probed."""
    return any(is_scene_checkpoint(source) for source in sources)


# ------------------------------------------------------------------------------------------------------------
# statistics (pure functions)
# ------------------------------------------------------------------------------------------------------------


def attention_map(features: Tensor) -> Tensor:
    """The network's attention: the mean over units of ``(B, C, h, w)`` maps, ``(B, h, w)``."""
    return features.mean(dim=1)


def bootstrap_interval(values: np.ndarray, confidence: float, n_resamples: int, seed: int) -> tuple[float, float]:
    """Percentile bootstrap interval of the mean; NaN when fewer than 2 values or all equal."""
    values = np.asarray(values, dtype=np.float64)
    if values.size < 2:
        return math.nan, math.nan
    if np.ptp(values) == 0:
        return float(values[0]), float(values[0])
    result = stats.bootstrap((values,), np.mean, confidence_level=confidence, n_resamples=n_resamples,
                             method="percentile", rng=np.random.default_rng(seed))
    return float(result.confidence_interval.low), float(result.confidence_interval.high)


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


def group_test(nss: np.ndarray, correct: np.ndarray) -> dict[str, Any]:
    """Two-sided Mann-Whitney U test between the correct and wrong groups (None when a group is empty)."""
    nss, correct = np.asarray(nss, dtype=np.float64), np.asarray(correct, dtype=bool)
    finite = np.isfinite(nss)
    a, b = nss[correct & finite], nss[~correct & finite]
    if a.size == 0 or b.size == 0:
        return {"U": None, "p": None}
    result = stats.mannwhitneyu(a, b, alternative="two-sided")
    return {"U": float(result.statistic), "p": float(result.pvalue)}


# ------------------------------------------------------------------------------------------------------------
# model and data of a scene checkpoint
# ------------------------------------------------------------------------------------------------------------


def scene_classifier(loaded: LoadedCheckpoint) -> nn.Sequential:
    """The checkpoint's pool5 + FC head (``classifier.*``), rebuilt from its hyper-parameters."""
    params = loaded.hyper_parameters
    names = params.get("class_names")
    if not names:
        raise ValueError(f"checkpoint {loaded.path}: a scene checkpoint must record class_names in hyper_parameters")
    head = build_classifier_head(len(names), float(params.get("dropout", 0.5)), int(params.get("hidden_features", 4096)))
    prefix = "classifier."
    state = {key[len(prefix):]: value for key, value in loaded.state_dict.items() if key.startswith(prefix)}
    try:
        head.load_state_dict(state)
    except RuntimeError as error:
        raise ValueError(f"checkpoint {loaded.path}: classifier weights do not fit the recorded head ({error})") from error
    return head.eval()


def scene_dataset(loaded: LoadedCheckpoint, options: SceneAttentionOptions) -> tuple[Dataset, list[str], Any]:
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
        dataset = torch.utils.data.ConcatDataset([datamodule.train_set, datamodule.val_set])
    return dataset, names, datamodule


class _Indexed(Dataset):
    """Items of ``source`` with their position (``position``) so that gathered results can be ordered."""

    def __init__(self, source: Dataset) -> None:
        self.source = source

    def __len__(self) -> int:
        return len(self.source)  # type: ignore[arg-type]

    def __getitem__(self, index: int) -> dict[str, Any]:
        item = dict(self.source[index])
        item["position"] = index
        return {key: item[key] for key in ("image", "fixations", "label", "position", "stem")}


def _gather(records: Tensor, stems: list[str]) -> tuple[Tensor, list[str]]:
    """All ranks' records and stems on every rank (identity without torch.distributed)."""
    if not (torch.distributed.is_available() and torch.distributed.is_initialized()):
        return records, stems
    parts: list[Any] = [None] * torch.distributed.get_world_size()
    torch.distributed.all_gather_object(parts, (records.cpu(), stems))
    return torch.cat([part[0] for part in parts], dim=0), [stem for part in parts for stem in part[1]]


class SceneAttentionModule(pl.LightningModule):
    """Per image: the attention map's NSS, the true and the predicted class. ``trunk(images)`` must return the
    conv5_3 post-ReLU maps (a :class:`~saliency_probe.models.backbone.VGGTrunk` does) and ``classifier`` the
    logits from them. After ``trainer.predict``, ``records`` is an ``(N, 4)`` float64 array ``[position, label,
    predicted, nss]`` sorted by position and ``stems`` the images' stems in that order (gathered over ranks;
    rank zero writes both to ``result_path``)."""

    def __init__(self, trunk: nn.Module, classifier: nn.Module, result_path: str | Path | None = None) -> None:
        super().__init__()
        self.trunk = trunk
        self.classifier = classifier
        self.result_path = Path(result_path) if result_path is not None else None
        self._rows: list[Tensor] = []
        self._stems: list[str] = []
        self.records: np.ndarray | None = None
        self.stems: list[str] = []
        self.eval()

    def on_predict_start(self) -> None:
        self._rows, self._stems, self.records, self.stems = [], [], None, []

    def predict_step(self, batch: dict[str, Any], batch_idx: int) -> None:
        features = self.trunk(batch["image"])
        predicted = self.classifier(features).argmax(dim=1)
        scores = MF.nss(attention_map(features), batch["fixations"])
        columns = (batch["position"], batch["label"], predicted, scores)
        self._rows.append(torch.stack([column.detach().cpu().double() for column in columns], dim=1))
        self._stems.extend(str(stem) for stem in batch["stem"])
        return None

    def on_predict_epoch_end(self) -> None:
        local = torch.cat(self._rows) if self._rows else torch.zeros(0, 4, dtype=torch.float64)
        records, stems = _gather(local, self._stems)
        order = np.argsort(records[:, 0].numpy(), kind="stable")
        self.records = records.numpy()[order]
        self.stems = [stems[i] for i in order]
        if self.result_path is not None and self.trainer.is_global_zero:
            write_npz(self.result_path, {"records": self.records, "stems": np.array(self.stems, dtype=str)})


# ------------------------------------------------------------------------------------------------------------
# the analysis
# ------------------------------------------------------------------------------------------------------------


def scene_markdown(rows: Sequence[dict[str, Any]], tests: dict[str, dict[str, Any]], header: str) -> str:
    lines = ["# Scene network attention vs human fixations (Table 8)", "", header, ""]
    body = [[row["model"], row["prediction"], format_number(row["nss"], 3),
             f"[{format_number(row['ci_low'], 3)}, {format_number(row['ci_high'], 3)}]", str(row["n_images"])]
            for row in rows]
    lines += [markdown_table(["model", "prediction", "NSS", "CI", "images"], body), ""]
    for model, test in tests.items():
        p = "–" if test["p"] is None else f"{test['p']:.2g}"
        lines.append(f"- {model}: Mann-Whitney U correct vs wrong = {format_number(test['U'], 1)}, p = {p}")
    return "\n".join(lines).rstrip() + "\n"


@register_analysis("scene_attention")
def run_scene_attention(context: Any) -> dict[str, Any]:
    """Table 8 for every probed scene checkpoint (see the module docstring)."""
    from saliency_probe.probe import unit_figures
    from saliency_probe.probe.output import output_options

    cfg = context.cfg
    options = scene_attention_options(cfg)
    models = [source for source in context.sources if is_scene_checkpoint(source)]
    if not models:
        raise ValueError(
            "the scene_attention analysis needs a scene checkpoint (ckpt=... or sweep=... of task=scene); probed: "
            + ", ".join(f"{s.name} ({s.kind}, task {s.info.get('task')})" for s in context.sources)
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
        loader = DataLoader(_Indexed(dataset), batch_size=batch_size, shuffle=False,
                            num_workers=int(getattr(datamodule, "num_workers", 0)))
        scratch = context.scratch_dir / f"scene_attention_{number}.npz"
        module = SceneAttentionModule(loaded.trunk().eval(), scene_classifier(loaded), result_path=scratch)
        trainer = context.trainer(description=f"scene attention {number + 1}/{len(models)}: {source.name}")
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", message=".*predict returned None.*")
            trainer.predict(module, dataloaders=loader, return_predictions=False)
        records, stems = module.records, module.stems
        if records is None:
            with np.load(scratch, allow_pickle=False) as data:
                records, stems = data["records"], [str(stem) for stem in data["stems"]]
        labels, predicted, nss = records[:, 1].astype(int), records[:, 2].astype(int), records[:, 3]
        correct = labels == predicted
        rows.extend(split_rows(source.name, nss, correct, options.confidence, options.n_resamples, options.seed))
        tests[source.name] = group_test(nss, correct)
        sizes[source.name] = len(records)
        per_image.extend({"model": source.name, "image": stem, "label": names[a], "predicted": names[b],
                          "correct": bool(a == b), "nss": float(s)}
                         for stem, a, b, s in zip(stems, labels, predicted, nss, strict=True))
        del module, trainer, loaded
    if context.is_global_zero:
        header = (f"Attention = mean of the conv5_3 maps; NSS against the fixations of the held-out images "
                  f"(split {options.split!r} of each checkpoint's training data); {options.confidence:.0%} percentile "
                  f"bootstrap interval of the mean ({options.n_resamples} resamples, seed {options.seed}).")
        written.append(str(write_csv(context.tables_dir / CSV_NAME, rows, COLUMNS)))
        written.append(str(write_csv(context.tables_dir / PER_IMAGE_CSV_NAME, per_image, PER_IMAGE_COLUMNS)))
        written.append(str(write_text(context.tables_dir / MARKDOWN_NAME, scene_markdown(rows, tests, header))))
        context.log_table("scene_attention/nss", rows, COLUMNS)
        if bool((cfg.get("figures") or {}).get("enabled", True)):
            written.extend(unit_figures.task_figures(context, output_options(cfg).gt_sigma))
    lines = [f"{row['model']}: {row['prediction']:<7} NSS {format_number(row['nss'], 3)} "
             f"[{format_number(row['ci_low'], 3)}, {format_number(row['ci_high'], 3)}] ({row['n_images']} images)"
             for row in rows]
    return {
        "rows": rows,
        "per_image": per_image,
        "tests": tests,
        "files": written,
        "lines": lines,
        "summary": {"models": [s.name for s in models], "images": sizes, "split": options.split,
                    "csv": str(context.tables_dir / CSV_NAME)},
    }


run_scene_attention.applies_to = applies_to  # type: ignore[attr-defined]
