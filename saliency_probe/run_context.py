"""Run naming, config printing and the logger, shared by train.py and probe.py."""

from __future__ import annotations

import contextlib
import logging
import os
import re
import sys
import warnings
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

from hydra.core.hydra_config import HydraConfig
from hydra.types import RunMode
from hydra.utils import instantiate
from omegaconf import DictConfig, OmegaConf
from pytorch_lightning.loggers import Logger
from pytorch_lightning.utilities import rank_zero_only


def output_dir() -> Path:
    """This job's Hydra output folder (the current folder outside Hydra)."""
    if HydraConfig.initialized():
        return Path(HydraConfig.get().runtime.output_dir)
    return Path.cwd()


@contextlib.contextmanager
def composed_job(
    config_dir: str | os.PathLike[str], config_name: str, overrides: Sequence[str], job_dir: str | os.PathLike[str]
) -> Iterator[DictConfig]:
    """The job config of ``config_name`` with ``overrides``, composed as the command line would, while this job's
    ``HydraConfig`` says ``job_dir`` is its output folder; the ``HydraConfig`` is cleared on exit.

    For running ``train.py``'s or ``probe.py``'s task function in-process (tests, benchmarks, notebooks):
    ``with composed_job("conf", "train", ["finetune.layers=0"], "out") as cfg: train(cfg)``. The task function
    sees no ``hydra`` node, as under ``@hydra.main``.
    """
    from hydra import compose, initialize_config_dir
    from omegaconf import open_dict

    overrides = [str(item) for item in overrides]
    with initialize_config_dir(config_dir=str(Path(config_dir).resolve()), version_base="1.3"):
        cfg = compose(config_name, overrides=overrides, return_hydra_config=True)
        with open_dict(cfg):
            cfg.hydra.runtime.output_dir = str(job_dir)
            cfg.hydra.job.override_dirname = ",".join(overrides)
        HydraConfig.instance().set_config(cfg)
        with open_dict(cfg):
            del cfg["hydra"]
        try:
            yield cfg
        finally:
            HydraConfig.instance().cfg = None  # what runs next runs outside Hydra (its output folder is the cwd)


SWEEP_SYNTAX = (",", "range(", "choice(", "glob(", "interval(")


def swept_keys(argv: list[str]) -> set[str]:
    """Keys that a multirun command line sweeps over (``key=a,b``, ``key=range(...)``, ...)."""
    keys = set()
    for argument in argv:
        key, separator, value = argument.partition("=")
        top_level = re.sub(r"\[[^\]]*\]|\{[^}]*\}", "", value)  # commas inside [..] or {..} are values
        if separator and not key.startswith("-") and any(token in top_level for token in SWEEP_SYNTAX):
            keys.add(key.lstrip("+~"))
    return keys


def run_identity(default_name: str) -> tuple[str, str | None]:
    """(run name, sweep group) of this job.

    A multirun job is named by the overrides of the keys the sweep varies (``finetune.layers=3``), falling back to
    all its overrides; its group is the sweep folder's name, shared by every job of the sweep.
    """
    if not HydraConfig.initialized():
        return default_name, None
    hydra_cfg = HydraConfig.get()
    name = hydra_cfg.job.override_dirname or default_name
    group = None
    if hydra_cfg.mode == RunMode.MULTIRUN:
        group = f"sweep-{Path(hydra_cfg.sweep.dir).name}"
        varied = swept_keys(sys.argv[1:])
        chosen = [item for item in hydra_cfg.overrides.task if item.partition("=")[0].lstrip("+~") in varied]
        if chosen:
            name = ",".join(sorted(chosen))
    return name, group


def to_plain(cfg: DictConfig) -> dict[str, Any]:
    """The resolved config as plain containers (safe for checkpoints and W&B)."""
    return OmegaConf.to_container(cfg, resolve=True, throw_on_missing=False)  # type: ignore[return-value]


#: Messages of third-party libraries that say nothing about the run (filtered by :func:`quiet_third_party`).
NOISE = (
    "litlogger",  # Lightning's advertisement for its cloud logger
    "litmodels",
    "LeafSpec",  # a deprecation inside Lightning's own pytree helper
    "anonymous setting has no effect",
)


class _DropNoise(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        return not any(text in message for text in NOISE)


def quiet_third_party() -> None:
    """Filter the known third-party noise (:data:`NOISE`) from warnings and Lightning's log."""
    for text in NOISE:
        warnings.filterwarnings("ignore", message=f".*{re.escape(text)}.*")
    for name in ("pytorch_lightning.utilities.rank_zero", "lightning.pytorch.utilities.rank_zero",
                 "lightning_fabric.utilities.rank_zero"):
        target = logging.getLogger(name)
        if not any(isinstance(f, _DropNoise) for f in target.filters):
            target.addFilter(_DropNoise())


def print_run_config(cfg: DictConfig, title: str) -> None:
    """``print_config``: ``true`` / ``overrides`` (default) prints the command's overrides on one line, ``full``
    the composed config as a tree, ``false`` nothing."""
    mode = cfg.get("print_config")
    if mode is None or mode is False or str(mode).lower() in {"false", "none", "off"}:
        return
    if str(mode).lower() == "full":
        print_config_tree(cfg, title=title)
        return
    overrides = list(HydraConfig.get().overrides.task) if HydraConfig.initialized() else []
    _print(f"{title}: {' '.join(overrides) if overrides else '(defaults)'}  [print_config=full shows the config]")


@rank_zero_only
def _print(text: str) -> None:
    print(text)


@rank_zero_only
def print_config_tree(cfg: DictConfig, title: str = "config") -> None:
    """Print the composed config as a rich tree, one branch per group."""
    from rich import print as rich_print
    from rich.syntax import Syntax
    from rich.tree import Tree

    tree = Tree(title, guide_style="dim")
    for key, value in cfg.items():
        branch = tree.add(str(key), style="bold")
        text = OmegaConf.to_yaml(value, resolve=False) if isinstance(value, DictConfig) else str(value)
        branch.add(Syntax(text, "yaml"))
    rich_print(tree)


def build_logger(
    logger_cfg: DictConfig | None,
    run_dir: Path,
    name: str,
    group: str | None,
    job_type: str,
    resume_run_id: str | None = None,
) -> Logger | None:
    """Instantiate the ``logger`` group; W&B runs are named by the overrides and grouped by sweep.

    ``resume_run_id`` continues an earlier W&B run (resuming from a checkpoint that recorded its id).
    """
    if not logger_cfg or not logger_cfg.get("_target_"):
        return None
    target = str(logger_cfg._target_)
    if target.endswith("WandbLogger"):
        run_dir.mkdir(parents=True, exist_ok=True)
        extra = {"id": resume_run_id, "resume": "allow"} if resume_run_id else {}
        logger = instantiate(logger_cfg, save_dir=str(run_dir), name=name, group=group, job_type=job_type, **extra)
        if getattr(logger, "_wandb_init", {}).get("anonymous", 0) is None:
            del logger._wandb_init["anonymous"]  # Lightning passes None, which W&B warns about on every run
        return logger
    return instantiate(logger_cfg, save_dir=str(run_dir))


def data_notes(data: dict[str, dict[str, Any]], prefix: str = "") -> list[str]:
    """One line per change or omission a reader made (data modules' ``summary()``, keyed by config group):
    fixations moved to the border (count and share), images without fixations, unreadable images skipped."""
    notes = []
    for key, info in data.items():
        for split in sorted({k[: -len("clipped_fixations")] for k in info if k.endswith("clipped_fixations")}):
            where = f"{prefix}{key}{' ' + split.rstrip('_') if split else ''}"
            clipped, points = int(info.get(f"{split}clipped_fixations") or 0), info.get(f"{split}fixations")
            if clipped:
                share = f" ({100.0 * clipped / points:.2g}% of {points})" if points else ""
                notes.append(f"{where}: {clipped} fixation(s) outside the image moved to its border{share}")
            without = info.get(f"{split}without_fixations")
            count = without if isinstance(without, int) else len(without or [])
            if count:
                notes.append(f"{where}: {count} image(s) without fixations left out")
            skipped = list(info.get(f"{split}skipped") or [])
            if skipped:
                shown = ", ".join(Path(str(path)).name for path in skipped[:5]) + (" ..." if len(skipped) > 5 else "")
                notes.append(f"{where}: {len(skipped)} unreadable image(s) skipped (data.on_error=skip): {shown}")
    return notes
