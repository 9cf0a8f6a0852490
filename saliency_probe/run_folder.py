"""Run folders are never shared by two runs: a check before Hydra writes anything, and a manifest at the end.

``python train.py`` / ``python probe.py`` refuse to start in a run folder (``hydra.run.dir``, or a sweep's
``hydra.sweep.dir``) that already holds another run's results, naming the folder and the ways out: another
``hydra.run.dir``, or ``overwrite=true``, which first removes what the earlier run wrote (the files of its
``manifest.json``, or the known result names when it has none; files it did not write are left alone). The one
legitimate reuse is resuming a training run from its own checkpoint (``ckpt_path=<run>/checkpoints/last.ckpt``
into ``<run>``): it continues in place, and the earlier ``.hydra`` config is kept under ``.hydra/history/<n>``.
Every run ends by writing ``manifest.json``: the files it produced (a resumed run adds to its manifest).

The check runs as a Hydra callback (``conf/hydra/default.yaml``), before Hydra saves the job's ``.hydra`` config,
so a refused run changes nothing. Processes that Lightning starts for DDP ranks (``LOCAL_RANK`` > 0) share their
rank zero's folder and skip it.
"""

from __future__ import annotations

import json
import os
import shutil
import time
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from hydra.experimental.callback import Callback
from hydra.utils import get_method
from omegaconf import DictConfig, OmegaConf

from saliency_probe.errors import AbortRun, OutputFolderError, UserError
from saliency_probe.io_utils import write_json
from saliency_probe.report import files
from saliency_probe.report.files import MANIFEST

__all__ = ["MANIFEST", "RunFolderGuard", "check_run_folder", "check_sweep_folder", "earlier_results", "write_manifest", "manifest_files"]

#: What train.py writes at the top of its run folder.
TRAIN_SUMMARY = "summary.json"
CHECKPOINTS_DIR = "checkpoints"
#: Results of our runs: a folder holding any of them is another run's (a run that stopped before writing one,
#: leaving only Hydra's ``.hydra`` and log, produced nothing and its folder may be reused).
RESULT_NAMES = (
    MANIFEST, TRAIN_SUMMARY, files.SUMMARY, files.REPORT, files.TABLES_DIR, files.FIGURES_DIR, CHECKPOINTS_DIR,
    "wandb", "csv", "lightning_logs", "map_cache",
)
#: What ``overwrite=true`` removes besides the results and the manifest's files.
RUN_NAMES = (*RESULT_NAMES, ".probe_scratch", "train.log", "probe.log", ".hydra")
#: Folders that must be folders (not files) before a probe writes into them.
OUTPUT_SUBFOLDERS = (files.TABLES_DIR, files.FIGURES_DIR, CHECKPOINTS_DIR)


def manifest_files(run_dir: Path) -> list[str]:
    """The files an earlier run recorded in ``run_dir/manifest.json`` (relative paths; empty without one)."""
    path = run_dir / MANIFEST
    if not path.is_file():
        return []
    try:
        return [str(name) for name in json.loads(path.read_text(encoding="utf-8")).get("files", [])]
    except (json.JSONDecodeError, AttributeError):
        return []


def earlier_results(run_dir: Path) -> list[str]:
    """The names of another run's results in ``run_dir`` (empty when the folder is free)."""
    if not run_dir.is_dir():
        return []
    return [name for name in RESULT_NAMES if (run_dir / name).is_dir()
            or ((run_dir / name).exists() and name not in OUTPUT_SUBFOLDERS)]


def _is_inside(path: str | None, folder: Path) -> bool:
    if not path:
        return False
    try:
        Path(path).resolve().relative_to(folder.resolve())
    except ValueError:
        return False
    return True


def _remove_earlier(run_dir: Path) -> None:
    listed = manifest_files(run_dir)
    for relative in listed:
        target = run_dir / relative
        if target.is_file() or target.is_symlink():
            target.unlink()
    for name in RUN_NAMES:
        target = run_dir / name
        if target.is_dir() and not target.is_symlink():
            shutil.rmtree(target)
        elif target.exists() or target.is_symlink():
            target.unlink()


def _keep_history(run_dir: Path) -> None:
    hydra_dir = run_dir / ".hydra"
    if not hydra_dir.is_dir():
        return
    history = hydra_dir / "history"
    number = len(list(history.iterdir())) if history.is_dir() else 0
    keep = history / str(number)
    keep.mkdir(parents=True)
    for item in hydra_dir.glob("*.yaml"):
        shutil.copy2(item, keep / item.name)


def _check_writable(run_dir: Path) -> None:
    existing = run_dir
    while not existing.exists() and existing != existing.parent:
        existing = existing.parent
    if not existing.is_dir():
        raise OutputFolderError(f"run folder {run_dir}: {existing} is a file, not a folder; choose another hydra.run.dir")
    if not os.access(existing, os.W_OK | os.X_OK):
        raise OutputFolderError(f"run folder {run_dir}: {existing} is not writable; choose another hydra.run.dir")
    for name in OUTPUT_SUBFOLDERS:
        target = run_dir / name
        if target.exists() and not target.is_dir():
            raise OutputFolderError(f"run folder {run_dir}: {target} is a file where the run writes a folder; "
                                    "move it or choose another hydra.run.dir")


def check_run_folder(run_dir: str | os.PathLike[str], *, overwrite: bool = False, resume: str | None = None,
                     key: str = "hydra.run.dir") -> None:
    """Refuse ``run_dir`` when it holds another run's results (unless ``overwrite`` or a resume into it);
    with ``overwrite`` remove them first. Also refuse an unwritable folder or a file where a folder goes."""
    run_dir = Path(run_dir)
    found = earlier_results(run_dir)
    if found and _is_inside(resume, run_dir):
        _keep_history(run_dir)
    elif found and overwrite:
        _remove_earlier(run_dir)
    elif found:
        raise OutputFolderError(
            f"{key}={run_dir} already holds another run's results ({', '.join(found[:4])}); use a new {key}, "
            "or overwrite=true to replace them"
        )
    _check_writable(run_dir)


#: When this process's run started (set by the guard before Hydra writes; else at the first manifest).
_started: float | None = None


def mark_run_start() -> None:
    """Remember now as the start of this process's run (files older than it are not the run's)."""
    global _started
    _started = time.time()


def write_manifest(run_dir: str | os.PathLike[str], kind: str, extra: dict[str, Any] | None = None) -> Path:
    """Write ``run_dir/manifest.json``: the files under the run folder written since the run started (the folder
    held no results then), added to the files of an earlier manifest when the run was resumed."""
    run_dir = Path(run_dir)
    since = (_started - 1.0) if _started is not None else 0.0
    produced = {
        path.relative_to(run_dir).as_posix()
        for path in run_dir.rglob("*")
        if path.is_file() and path.name != MANIFEST and not path.name.startswith(f".{MANIFEST}.")
        and path.stat().st_mtime >= since
    }
    files = sorted(set(manifest_files(run_dir)) | produced)
    return write_json(run_dir / MANIFEST, {"kind": kind, "files": files, **(extra or {})})


def _is_rank_zero_launcher() -> bool:
    return int(os.environ.get("LOCAL_RANK", "0") or 0) == 0 and int(os.environ.get("NODE_RANK", "0") or 0) == 0


def _flag(config: DictConfig, key: str) -> Any:
    return OmegaConf.select(config, key, default=None)


class RunFolderGuard(Callback):
    """Hydra callback: check the config (``validate``: the dotted name of the entry point's check) and the run
    (or sweep) folder before Hydra writes into it, so a refused run creates nothing."""

    def __init__(self, validate: str | None = None) -> None:
        self.validate = validate

    def on_run_start(self, config: DictConfig, **kwargs: Any) -> None:
        if _is_rank_zero_launcher():
            mark_run_start()
            try:
                if self.validate:
                    get_method(self.validate)(config)
                check_run_folder(str(config.hydra.run.dir), overwrite=bool(_flag(config, "overwrite")),
                                 resume=_flag(config, "ckpt_path"))
            except UserError as error:  # Hydra turns callback exceptions into warnings: stop the run
                raise AbortRun(error) from error

    def on_multirun_start(self, config: DictConfig, **kwargs: Any) -> None:
        if _is_rank_zero_launcher():
            mark_run_start()
            try:
                check_sweep_folder(Path(str(config.hydra.sweep.dir)), overwrite=bool(_flag(config, "overwrite")))
            except UserError as error:
                raise AbortRun(error) from error


def check_sweep_folder(sweep_dir: Path, *, overwrite: bool = False) -> None:
    """Refuse a sweep folder that holds an earlier sweep's jobs (``overwrite`` removes their results)."""
    jobs: Iterable[Path] = sorted(p for p in sweep_dir.iterdir() if p.is_dir()) if sweep_dir.is_dir() else []
    occupied = [job for job in jobs if earlier_results(job)]
    if (sweep_dir / "multirun.yaml").is_file() or occupied:
        if not overwrite:
            raise OutputFolderError(
                f"hydra.sweep.dir={sweep_dir} already holds another sweep's results "
                f"({len(occupied)} job folder(s)); use a new hydra.sweep.dir, or overwrite=true to replace them"
            )
        for job in occupied:
            _remove_earlier(job)
        (sweep_dir / "multirun.yaml").unlink(missing_ok=True)
    _check_writable(sweep_dir)
