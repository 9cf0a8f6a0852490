"""The run behind ``probe.py``: resolve the models, run each requested analysis, write the summary.

Analyses are looked up in :mod:`saliency_probe.probe.registry` and receive a :class:`ProbeContext` that gives
them the config, the run folder, the models (:class:`~saliency_probe.probe.sources.TrunkSource`), the data module
and Trainers built from the ``trainer`` group. Outputs are written by global rank zero only; under DDP every rank
runs the same code (Lightning relaunches the script) and takes part in the predict loops.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytorch_lightning as pl
from hydra.utils import instantiate
from omegaconf import DictConfig, OmegaConf
from pytorch_lightning.loggers import Logger, WandbLogger
from pytorch_lightning.utilities.rank_zero import rank_zero_only

from saliency_probe.io_utils import write_json
from saliency_probe.probe.activations import ordered_layers
from saliency_probe.probe.module import ImageProgressBar
from saliency_probe.probe.registry import get_analysis
from saliency_probe.probe.sources import TrunkSource, resolve_sources
from saliency_probe.report.report_md import write_report
from saliency_probe.report.tables import log_wandb_table
from saliency_probe.run_context import build_logger, output_dir, print_config_tree, run_identity

log = logging.getLogger(__name__)


@dataclass
class ProbeContext:
    """What an analysis gets: config, run folder, models, data and Trainer factories, shared results."""

    cfg: DictConfig
    run_dir: Path
    sources: list[TrunkSource]
    logger: Logger | None = None
    results: dict[str, dict[str, Any]] = field(default_factory=dict)
    _datamodules: dict[str, Any] = field(default_factory=dict)

    @property
    def tables_dir(self) -> Path:
        return self.run_dir / "tables"

    @property
    def figures_dir(self) -> Path:
        return self.run_dir / "figures"

    @property
    def scratch_dir(self) -> Path:
        """Hand-off files between processes (ddp_spawn); removed at the end of the run."""
        return self.run_dir / ".probe_scratch"

    @property
    def is_global_zero(self) -> bool:
        return rank_zero_only.rank == 0

    def datamodule(self, key: str = "data") -> pl.LightningDataModule:
        """The data module of config group ``key`` (built once, set up for prediction)."""
        if key not in self._datamodules:
            datamodule = instantiate(self.cfg[key], _recursive_=False)
            datamodule.prepare_data()
            datamodule.setup("predict")
            self._datamodules[key] = datamodule
        return self._datamodules[key]

    def trainer(self, description: str = "probe", **overrides: Any) -> pl.Trainer:
        """A Trainer from the ``trainer`` group for one predict pass, with a progress bar over images."""
        callbacks = [ImageProgressBar(description)] if self.cfg.get("progress_bar", True) else []
        options: dict[str, Any] = {
            "logger": False,
            "callbacks": callbacks,
            "enable_progress_bar": False,
            "enable_model_summary": False,
            "enable_checkpointing": False,
            "default_root_dir": str(self.run_dir),
        }
        options.update(overrides)
        return instantiate(self.cfg.trainer, **options)

    def log_table(self, key: str, rows: list[dict[str, Any]], columns: list[str]) -> None:
        """Log a table to W&B (rank zero, W&B logger only)."""
        if self.is_global_zero:
            log_wandb_table(self.logger, key, rows, columns)

    def log_image(self, key: str, path: Path, caption: str | None = None) -> None:
        """Log a written figure to W&B (rank zero, W&B logger only)."""
        if self.is_global_zero and isinstance(self.logger, WandbLogger):
            extra = {"caption": [caption]} if caption else {}
            self.logger.log_image(key=key, images=[str(path)], **extra)


def validate_config(cfg: DictConfig) -> list[str]:
    """Fail before any work on bad layer names, statistics or analysis names; return the analyses."""
    layers = ordered_layers(list(cfg.layers))
    figure_layers = list((cfg.get("figures") or {}).get("layers") or [])
    outside = [layer for layer in ordered_layers(figure_layers or layers) if layer not in layers]
    if outside:
        raise ValueError(f"figures.layers {outside} are not probed; choose among layers={layers}")
    if int(cfg.top_k) < 1:
        raise ValueError(f"top_k must be >= 1, got {cfg.top_k}")
    analyses = list(AUTO_ANALYSES) if is_auto(cfg.analyses) else [str(name) for name in (cfg.analyses or [])]
    if not analyses:
        raise ValueError("analyses is empty: name at least one (e.g. analyses=[inner]) or use analyses=auto")
    for name in analyses:
        get_analysis(name)
    return analyses


#: ``analyses: auto`` (or null) runs these, in this order, where they apply to the probed models.
AUTO_ANALYSES = ("inner", "output", "scene_attention", "popout")


def is_auto(analyses: Any) -> bool:
    """True for ``analyses: auto`` or ``analyses: null``."""
    return analyses is None or (isinstance(analyses, str) and analyses.strip().lower() == "auto")


def applicable_analyses(cfg: DictConfig, names: list[str], sources: list[TrunkSource]) -> list[str]:
    """The ``names`` whose analysis applies: its ``applies_to(cfg, sources)`` attribute holds (none: always)."""
    chosen = []
    for name in names:
        applies = getattr(get_analysis(name), "applies_to", None)
        if applies is None or applies(cfg, sources):
            chosen.append(name)
    return chosen


def run_probe(cfg: DictConfig) -> dict[str, Any]:
    """Run every analysis of ``cfg.analyses`` on the configured models; return (and write) the summary."""
    analyses = validate_config(cfg)
    if cfg.get("print_config"):
        print_config_tree(cfg, title="probe.py")
    pl.seed_everything(int(cfg.seed), workers=True, verbose=False)
    run_dir = output_dir()
    sources = resolve_sources(
        ckpt=OmegaConf.to_container(cfg.ckpt) if OmegaConf.is_config(cfg.ckpt) else cfg.ckpt,
        sweep=cfg.get("sweep"),
        weights=cfg.backbone.weights,
        random_control=bool(cfg.controls.random_trunk),
        seed=int(cfg.seed),
        names=list(cfg.get("names") or []),
    )
    if is_auto(cfg.analyses):
        analyses = applicable_analyses(cfg, analyses, sources)
    name, group = run_identity(default_name="probe")
    logger = build_logger(cfg.get("logger"), run_dir, name, group, job_type="probe")
    context = ProbeContext(cfg=cfg, run_dir=run_dir, sources=sources, logger=logger)
    started = time.perf_counter()
    try:
        for analysis in analyses:
            context.results[analysis] = get_analysis(analysis)(context)
        summary = {
            "run_name": name,
            "models": [{"name": s.name, "kind": s.kind, "control": s.control, **s.info} for s in sources],
            "analyses": {key: value.get("summary", {}) for key, value in context.results.items()},
            "seconds": round(time.perf_counter() - started, 2),
            "output_dir": str(run_dir.resolve()),
        }
        if context.is_global_zero:
            write_json(run_dir / "probe_summary.json", summary)
            write_report(run_dir, summary["models"])
            print_summary(context)
        return summary
    finally:
        if context.is_global_zero and context.scratch_dir.is_dir():
            for leftover in context.scratch_dir.iterdir():
                leftover.unlink(missing_ok=True)
            context.scratch_dir.rmdir()
        if isinstance(logger, WandbLogger):
            import wandb

            wandb.finish()


#: Analyses that score their own models (``benchmark.models``), not the probed trunks.
TRUNKLESS_ANALYSES = {"benchmark"}


def print_summary(context: ProbeContext) -> None:
    """The one-screen summary: each analysis's ``lines``, then where the outputs are."""
    bar = "=" * 100
    print(bar)
    if set(context.results) - TRUNKLESS_ANALYSES:  # the probed trunks matter only to trunk analyses
        print(f"probe: {len(context.sources)} model(s): {', '.join(s.name for s in context.sources)}")
    else:
        print(f"probe: {', '.join(context.results)}")
    for name, result in context.results.items():
        lines = result.get("lines", [])
        if lines:
            print(f"-- {name} " + "-" * max(0, 96 - len(name)))
            for line in lines:
                print(line)
    print(f"outputs: {context.run_dir.resolve()}  (tables/, figures/, probe_summary.json)")
    print(bar)
