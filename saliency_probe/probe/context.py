"""What an analysis gets: the config, the run folder, the probed models, data modules, predict passes, logging."""

from __future__ import annotations

import contextlib
import warnings
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

import numpy as np
import pytorch_lightning as pl
from hydra.utils import instantiate
from omegaconf import DictConfig
from pytorch_lightning.loggers import Logger, WandbLogger
from pytorch_lightning.utilities.rank_zero import rank_zero_only
from torch.utils.data import Dataset

from saliency_probe.models.backbone import Architecture, BackboneSpec, architecture
from saliency_probe.probe.conditions import model_conditions
from saliency_probe.probe.options import read_options
from saliency_probe.probe.passes import PassResult, ProbePass
from saliency_probe.probe.precision import forward_precision, probe_precision, trainer_precision
from saliency_probe.probe.progress import ImageProgressBar
from saliency_probe.probe.sources import TrunkSource
from saliency_probe.report import files
from saliency_probe.report.tables import log_wandb_table

Options = TypeVar("Options")


@dataclass
class AnalysisResult:
    """What an analysis returns: its ``probe_summary.json`` entry, console lines, written files, and in-memory
    results that later analyses may read (``context.results[name].data``)."""

    summary: dict[str, Any]
    lines: list[str] = field(default_factory=list)
    files: list[str] = field(default_factory=list)
    data: dict[str, Any] = field(default_factory=dict)


@dataclass
class ProbeContext:
    """The config, run folder, models and shared results of one ``probe.py`` run, and its predict passes.

    ``backbone`` is the run's backbone (the probed checkpoints', else the ``backbone`` config's): its layer
    table names ``layers`` (the probed layers) and ``head_layer`` (VGG-16: conv5_3).
    """

    cfg: DictConfig
    run_dir: Path
    sources: list[TrunkSource]
    logger: Logger | None = None
    results: dict[str, AnalysisResult] = field(default_factory=dict)
    backbone: BackboneSpec = field(default_factory=BackboneSpec)
    _datamodules: dict[str, pl.LightningDataModule] = field(default_factory=dict)
    _conditions: dict[str, dict[str, Any]] = field(default_factory=dict)
    _passes: int = 0

    def conditions(self, source: TrunkSource) -> dict[str, Any]:
        """:func:`~saliency_probe.probe.conditions.model_conditions` of ``source``, read once per run."""
        if source.name not in self._conditions:
            self._conditions[source.name] = model_conditions(source)
        return self._conditions[source.name]

    @property
    def architecture(self) -> Architecture:
        return architecture(self.backbone)

    @property
    def layers(self) -> list[str]:
        """The probed layers (``layers``; null = the backbone's default: its last two stages), network order."""
        value = self.cfg.get("layers")
        if isinstance(value, str):
            value = None if value.strip().lower() in ("", "default") else [value]
        return self.architecture.ordered(None if value is None else [str(v) for v in value])

    @property
    def head_layer(self) -> str:
        """The layer the heads read (VGG-16: conv5_3): the output analysis's inner saliency, the unit figures.
        Named as probed when a probed layer is the same node (ResNets: the stage ``layer4`` for ``layer4.1``)."""
        arch = self.architecture
        node = arch.layer(arch.table.head).node
        return next((name for name in self.layers if arch.layer(name).node == node), arch.table.head)

    @property
    def tables_dir(self) -> Path:
        return self.run_dir / files.TABLES_DIR

    @property
    def figures_dir(self) -> Path:
        return self.run_dir / files.FIGURES_DIR

    @property
    def scratch_dir(self) -> Path:
        """Hand-off files between processes (ddp_spawn); removed at the end of the run."""
        return self.run_dir / ".probe_scratch"

    @property
    def is_global_zero(self) -> bool:
        return rank_zero_only.rank == 0

    def options(self, key: str, cls: type[Options]) -> Options:
        """The config section ``key`` as its typed options (:mod:`saliency_probe.probe.options`)."""
        return read_options(self.cfg, key, cls)

    def datamodule(self, key: str = "data") -> pl.LightningDataModule:
        """The data module of config group ``key`` (built once, set up for prediction)."""
        if key not in self._datamodules:
            datamodule = instantiate(self.cfg[key], _recursive_=False)
            datamodule.prepare_data()
            datamodule.setup("predict")
            self._datamodules[key] = datamodule
        return self._datamodules[key]

    def data_summaries(self) -> dict[str, dict[str, Any]]:
        """What each data module read (``summary()``: images, clipped fixations, left-out and skipped images)."""
        return {key: module.summary() for key, module in self._datamodules.items() if hasattr(module, "summary")}

    def dataset(self, datamodule: pl.LightningDataModule | None = None) -> Dataset:
        """The predict data set of ``datamodule`` (default: the ``data`` group's)."""
        datamodule = datamodule if datamodule is not None else self.datamodule()
        for attribute in ("predict_dataset", "dataset"):
            dataset = getattr(datamodule, attribute, None)
            if dataset is not None:
                return dataset
        return datamodule.predict_dataloader().dataset

    @property
    def precision(self) -> str:
        """``probe_precision``: ``fp32`` (the default, whatever the trainer's precision) or ``bf16``."""
        return probe_precision(self.cfg)

    @contextlib.contextmanager
    def forward_precision(self) -> Iterator[None]:
        """Forwards outside the predict passes (figures' maps) in the run's :attr:`precision`."""
        with forward_precision(self.precision):
            yield

    def trainer(self, description: str = "probe", **overrides: Any) -> pl.Trainer:
        """A Trainer from the ``trainer`` group for one predict pass, with a progress bar over images. Its
        precision is ``probe_precision``'s (float32 by default), not the ``trainer`` group's."""
        callbacks = [ImageProgressBar(description)] if self.cfg.get("progress_bar", True) else []
        options: dict[str, Any] = {
            "precision": trainer_precision(self.precision),
            "logger": False,
            "callbacks": callbacks,
            "enable_progress_bar": False,
            "enable_model_summary": False,
            "enable_checkpointing": False,
            "default_root_dir": str(self.run_dir),
        }
        options.update(overrides)
        return instantiate(self.cfg.trainer, **options)

    def predict(
        self,
        module: ProbePass,
        description: str,
        datamodule: pl.LightningDataModule | None = None,
        dataloaders: Any = None,
    ) -> PassResult:
        """Run one predict pass of ``module`` over ``datamodule`` (default: the ``data`` group's) or
        ``dataloaders``, and return its result, the same on every rank (gathered under DDP)."""
        self._passes += 1
        handoff = self.scratch_dir / f"pass_{self._passes}.npz"
        module.handoff_path = handoff
        trainer = self.trainer(description=description)
        source = {"dataloaders": dataloaders} if dataloaders is not None else {
            "datamodule": datamodule if datamodule is not None else self.datamodule()
        }
        with warnings.catch_warnings():  # predict_step returns None on purpose (nothing is kept per image)
            warnings.filterwarnings("ignore", message=".*predict returned None.*")
            trainer.predict(module, return_predictions=False, **source)
        if module.result is not None:
            return module.result
        with np.load(handoff, allow_pickle=False) as arrays:  # ddp_spawn: the main process reads rank 0's
            return {key: arrays[key] for key in arrays.files}

    def log_table(self, key: str, rows: Sequence[dict[str, Any]], columns: Sequence[str]) -> None:
        """Log a table to W&B (rank zero, W&B logger only)."""
        if self.is_global_zero:
            log_wandb_table(self.logger, key, list(rows), list(columns))

    def log_image(self, key: str, path: Path, caption: str | None = None) -> None:
        """Log a written figure to W&B (rank zero, W&B logger only)."""
        if self.is_global_zero and isinstance(self.logger, WandbLogger):
            extra = {"caption": [caption]} if caption else {}
            self.logger.log_image(key=key, images=[str(path)], **extra)
