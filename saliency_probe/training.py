"""The training job behind ``train.py``: compose from config, fit, write ``summary.json``."""

from __future__ import annotations

import logging
import math
import warnings
from pathlib import Path
from typing import Any

import pytorch_lightning as pl
import torch
from hydra.utils import instantiate
from omegaconf import DictConfig
from pytorch_lightning.callbacks import Callback, ModelCheckpoint
from pytorch_lightning.loggers import Logger, WandbLogger

from saliency_probe.data.splits import split_record, split_summary
from saliency_probe.errors import ConfigError
from saliency_probe.feature_cache import FeatureCacheRun, check_cache_config
from saliency_probe.io_utils import write_json
from saliency_probe.models.backbone import BackboneSpec, architecture, check_weights_available
from saliency_probe.models.checkpoint import load_checkpoint
from saliency_probe.run_context import (
    build_logger,
    data_notes,
    output_dir,
    print_run_config,
    quiet_third_party,
    run_identity,
    to_plain,
)
from saliency_probe.run_folder import TRAIN_SUMMARY, write_manifest
from saliency_probe.validation import check_common, require_int, target_class, value_of

log = logging.getLogger(__name__)


def build_callbacks(callbacks_cfg: DictConfig | None) -> list[Callback]:
    """Instantiate every callback of the ``callbacks`` group (entries set to null are skipped)."""
    if not callbacks_cfg:
        return []
    return [instantiate(entry) for entry in callbacks_cfg.values() if entry and entry.get("_target_")]


def count_trainable_parameters(module: torch.nn.Module) -> int:
    """Exact number of parameters that the optimizer updates."""
    return sum(parameter.numel() for parameter in module.parameters() if parameter.requires_grad)


def _plain_metrics(metrics: dict[str, Any]) -> dict[str, float]:
    plain = {}
    for key, value in metrics.items():
        number = float(value.detach().cpu()) if isinstance(value, torch.Tensor) else float(value)
        plain[key] = number if math.isfinite(number) else float("nan")
    return plain


def validate_train_config(cfg: DictConfig) -> None:
    """Every key a user types, checked before any data or model work (one-line ConfigError)."""
    check_common(cfg)
    backbone = BackboneSpec.from_config(cfg.backbone)  # an unknown backbone fails here, listing the valid ones
    architecture(backbone).parse_finetune(cfg.finetune.layers)  # the valid range of this backbone
    check_cache_config(cfg)  # cache.features=true where the frozen part's output is fixed
    epochs = require_int(cfg, "trainer.max_epochs", 1, optional=True)
    if epochs is None and value_of(cfg, "trainer.max_steps") in (None, -1):
        raise ConfigError("trainer.max_epochs is null and trainer.max_steps is not set: the run would never end")
    if cfg.task.get("needs_labels"):
        target = str(value_of(cfg, "data._target_") or "")
        if not hasattr(target_class(target), "module_kwargs"):
            raise ConfigError(f"task={cfg.task.name} needs scene labels, but data={target.rsplit('.', 1)[-1]} has "
                              "none; use data=synthetic_scenes or data=salicon_scenes (data.labels_file=CSV)")
    if cfg.get("ckpt_path"):
        path = Path(str(cfg.ckpt_path))
        if path.is_dir():
            raise ConfigError(f"ckpt_path={path} is a folder; expected a checkpoint file (<run>/checkpoints/last.ckpt)")
        if not path.is_file():
            raise ConfigError(f"ckpt_path={path} does not exist; expected a checkpoint file written by train.py")


def train(cfg: DictConfig) -> dict[str, Any]:
    """Run one training job and return its summary (also written to ``<output dir>/summary.json``)."""
    finetune_layers = cfg.finetune.layers
    validate_train_config(cfg)  # fail before any work, naming the key
    backbone = BackboneSpec.from_config(cfg.backbone)
    check_weights_available(backbone.weights, backbone)  # offline without the file: fail now, naming it
    quiet_third_party()
    print_run_config(cfg, title=f"train.py ({cfg.task.name})")
    pl.seed_everything(int(cfg.seed), workers=True, verbose=False)
    run_dir = output_dir()
    name, group = run_identity(default_name=f"{cfg.task.name}-layers{finetune_layers}")

    datamodule = instantiate(cfg.data, _recursive_=False)
    # the scene task takes class names and weights from the data; a saliency model trained on the same labelled
    # images (Table 7's sp beside sr) ignores the labels and uses the same split
    data_kwargs = datamodule.module_kwargs() if cfg.task.get("needs_labels") else {}
    module = instantiate(
        cfg.task.module, run_config=to_plain(cfg), run_name=name, **data_kwargs, _recursive_=False, _convert_="all"
    )
    callbacks = build_callbacks(cfg.get("callbacks"))
    feature_cache = FeatureCacheRun.from_config(cfg, datamodule)  # cache.features=true: fit on stored activations
    callbacks += [feature_cache.callback] if feature_cache.callback else []
    resume_run_id = None
    if cfg.get("ckpt_path"):
        resumed = load_checkpoint(cfg.ckpt_path)  # refuses foreign or unsafe files before Lightning loads them
        if resumed.task != str(cfg.task.name):
            raise ConfigError(f"ckpt_path={cfg.ckpt_path} is a {resumed.task} checkpoint, not task={cfg.task.name}; "
                              f"resume with task={resumed.task}")
        if resumed.backbone.architecture_key() != backbone.architecture_key():
            raise ConfigError(f"ckpt_path={cfg.ckpt_path} was trained on backbone {resumed.backbone.describe()}, "
                              f"not backbone={backbone.describe()}: resume it with backbone={resumed.backbone.name}")
        resume_run_id = resumed.metadata.get("wandb_run_id")
    logger = build_logger(cfg.get("logger"), run_dir, name, group, str(cfg.task.name), resume_run_id)
    trainer: pl.Trainer = instantiate(cfg.trainer, callbacks=callbacks, logger=logger if logger else False)

    try:
        with warnings.catch_warnings():  # the frozen part of the trunk is in eval mode on purpose (FreezeLayers)
            warnings.filterwarnings("ignore", message=r".*module\(s\) in eval mode at the start of training.*")
            trainer.fit(module, datamodule=feature_cache.datamodule, ckpt_path=cfg.get("ckpt_path"))
        summary = _summarise(cfg, trainer, module, datamodule, run_dir, name, group)
        summary["feature_cache"] = feature_cache.summary()
        if trainer.is_global_zero:
            write_json(run_dir / TRAIN_SUMMARY, summary)
            if isinstance(logger, WandbLogger):
                logger.experiment.summary.update(
                    {"trainable_params": summary["trainable_params"], **summary["metrics"]}
                )
            print_train_summary(summary, run_dir, wandb_run_folder(logger))
        return summary
    finally:
        if isinstance(logger, WandbLogger):
            import wandb

            wandb.finish()
        if trainer.is_global_zero and (run_dir / TRAIN_SUMMARY).is_file():
            write_manifest(run_dir, "train")


def wandb_run_folder(logger: Logger | None) -> Path | None:
    """The local folder of this job's W&B run (offline or online), or None without one."""
    if not isinstance(logger, WandbLogger):
        return None
    try:
        folder = Path(logger.experiment.dir).parent
    except (AttributeError, TypeError):  # disabled mode has no folder
        return None
    return folder if folder.is_dir() else None


def print_train_summary(summary: dict[str, Any], run_dir: Path, wandb_folder: Path | None) -> None:
    """The end of ``train.py``: where the results are and the final validation metrics."""
    bar = "=" * 100
    metrics = "  ".join(f"{key} {value:.4g}" for key, value in summary["metrics"].items()) or "(none)"
    lines = [
        bar,
        f"train: task {summary['task']}, finetune.layers={summary['finetune_layers']}, "
        f"{summary['trainable_params']:,} trainable parameters, {summary['epochs']} epoch(s)",
        f"final validation: {metrics}",
        f"run folder:       {run_dir.resolve()}",
        f"best checkpoint:  {summary['best_checkpoint']}",
        f"last checkpoint:  {summary['last_checkpoint']}",
        f"summary:          {(run_dir / TRAIN_SUMMARY).resolve()}",
    ]
    cache = summary.get("feature_cache") or {}
    if cache.get("used"):
        lines.append(f"feature cache:    {cache['dir']} ({cache['bytes']:,} bytes, {cache['dtype']}, "
                     f"{'built in ' + str(cache['build_seconds']) + ' s' if cache['built'] else 'reused'})")
    lines += [f"note: {note}" for note in data_notes({"data": summary.get("data") or {}})]
    if wandb_folder is not None:
        lines.append(f"W&B run:          {wandb_folder}")
        if wandb_folder.name.startswith("offline-"):
            lines.append(f"upload with:      wandb sync {wandb_folder}")
    print("\n".join([*lines, bar]))


def _summarise(
    cfg: DictConfig,
    trainer: pl.Trainer,
    module: pl.LightningModule,
    datamodule: Any,
    run_dir: Path,
    name: str,
    group: str | None,
) -> dict[str, Any]:
    checkpoints = [cb for cb in trainer.callbacks if isinstance(cb, ModelCheckpoint)]
    best = next((cb for cb in checkpoints if cb.monitor), None)  # callbacks.model_checkpoint: best by the monitor
    last = next((cb for cb in checkpoints if not cb.monitor), None)  # callbacks.last_checkpoint: every epoch
    best_path = best.best_model_path if best else None
    last_path = (last.best_model_path if last else None) or (best.last_model_path if best else None)
    metrics = _plain_metrics({k: v for k, v in trainer.callback_metrics.items() if k.startswith("val/")})
    summary: dict[str, Any] = {
        "task": str(cfg.task.name),
        "backbone": BackboneSpec.from_config(cfg.backbone).name,
        "finetune_layers": str(cfg.finetune.layers),
        "trainable_params": count_trainable_parameters(module),
        "metrics": metrics,
        "best_checkpoint": str(Path(best_path).resolve()) if best_path else None,
        "last_checkpoint": str(Path(last_path).resolve()) if last_path else None,
        "run_name": name,
        "group": group,
        "seed": int(cfg.seed),
        "epochs": int(trainer.current_epoch),
        "output_dir": str(run_dir.resolve()),
    }
    extra = getattr(datamodule, "summary", None)
    if callable(extra):
        summary["data"] = extra()
    split_stems = getattr(datamodule, "split_stems", None)
    if callable(split_stems):
        summary["data_split"] = split_summary(split_record(split_stems()))
    task_extra = getattr(module, "summary_extra", None)
    if callable(task_extra):
        summary.update(task_extra())
    return summary
