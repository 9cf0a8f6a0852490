"""Runs never lose or mix results: run folders are not shared, files honour the umask, a run says what it did.

The entry points run in-process (``train.py`` / ``probe.py`` loaded from the repository root, ``sys.argv``
patched), as a user runs them, through :func:`saliency_probe.cli.run`.
"""

from __future__ import annotations

import hashlib
import json
import os
import runpy
import subprocess
import sys
from pathlib import Path

import pytest
from hydra.core.global_hydra import GlobalHydra
from hydra.core.hydra_config import HydraConfig
from test_probe import synthetic_overrides

from saliency_probe.resolvers import loader_workers
from saliency_probe.run_folder import check_run_folder, mark_run_start, write_manifest

REPO = Path(__file__).resolve().parents[1]
QUIET = ["logger=none", "progress_bar=false"]


def invoke(script: str, overrides: list[str], monkeypatch: pytest.MonkeyPatch) -> int:
    """Run ``script`` with ``overrides`` in this process, as ``python script ...`` would; its exit code."""
    monkeypatch.setattr(sys, "argv", [script, *overrides])
    monkeypatch.delenv("HYDRA_FULL_ERROR", raising=False)
    GlobalHydra.instance().clear()
    try:
        runpy.run_path(str(REPO / script), run_name="__main__")
    except SystemExit as stop:
        return int(stop.code or 0)
    finally:
        GlobalHydra.instance().clear()
        HydraConfig.instance().cfg = None  # later tests run outside Hydra
        os.environ.pop("HYDRA_FULL_ERROR", None)
    return 0


def digest(folder: Path) -> dict[str, str]:
    return {str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(folder.rglob("*")) if p.is_file()}


def probe_args(root: Path, run_dir: Path, *extra: str) -> list[str]:
    return [*synthetic_overrides(root), "analyses=[inner]", "controls.random_trunk=false",
            "figures.search_images=2", *QUIET, f"hydra.run.dir={run_dir}", *extra]


def train_args(root: Path, run_dir: Path, *extra: str) -> list[str]:
    return [*synthetic_overrides(root), "trainer.max_epochs=1", "finetune.layers=0", "~callbacks.progress_bar",
            "logger=none", f"hydra.run.dir={run_dir}", *extra]


def test_a_second_probe_into_the_same_folder_is_refused_and_changes_nothing(
    tmp_path: Path, synthetic_root: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture
) -> None:
    run_dir = tmp_path / "run"
    assert invoke("probe.py", probe_args(synthetic_root, run_dir, "layers=[conv4_3,conv5_3]"), monkeypatch) == 0
    manifest = json.loads((run_dir / "manifest.json").read_text())
    assert manifest["kind"] == "probe"
    assert {"probe_summary.json", "report.md", "tables/inner_representation.csv",
            "figures/inner_units_random-init_conv4_3.png"} <= set(manifest["files"])
    assert set(manifest["files"]) == set(digest(run_dir)) - {"manifest.json"}
    before = digest(run_dir)
    capsys.readouterr()
    code = invoke("probe.py", probe_args(synthetic_root, run_dir, "layers=[conv5_3]"), monkeypatch)
    captured = capsys.readouterr()
    assert code == 2
    message = captured.err.strip().splitlines()
    assert len(message) == 1 and "Traceback" not in captured.err + captured.out
    assert f"hydra.run.dir={run_dir} already holds another run's results" in message[0]
    assert "overwrite=true" in message[0]
    assert digest(run_dir) == before  # byte-identical

    # overwrite=true: the earlier run's files are gone, the report links only this run's files
    assert invoke("probe.py", probe_args(synthetic_root, run_dir, "layers=[conv5_3]", "overwrite=true"),
                  monkeypatch) == 0
    figures = sorted(p.name for p in (run_dir / "figures").iterdir())
    assert figures == ["inner_units_random-init_conv5_3.png"]
    report = (run_dir / "report.md").read_text()
    assert "inner_units_random-init_conv5_3.png" in report and "conv4_3.png" not in report
    assert set(json.loads((run_dir / "manifest.json").read_text())["files"]) == set(digest(run_dir)) - {"manifest.json"}


def test_training_twice_is_refused_and_resuming_in_place_keeps_the_history(
    tmp_path: Path, synthetic_root: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture
) -> None:
    run_dir = tmp_path / "train"
    assert invoke("train.py", train_args(synthetic_root, run_dir), monkeypatch) == 0
    out = capsys.readouterr().out
    summary = json.loads((run_dir / "summary.json").read_text())
    for line in (f"run folder:       {run_dir.resolve()}", f"last checkpoint:  {summary['last_checkpoint']}",
                 f"summary:          {(run_dir / 'summary.json').resolve()}", "final validation: val/loss"):
        assert line in out
    before = digest(run_dir)
    assert invoke("train.py", train_args(synthetic_root, run_dir), monkeypatch) == 2
    assert "already holds another run's results" in capsys.readouterr().err
    assert digest(run_dir) == before

    last = run_dir / "checkpoints" / "last.ckpt"
    resumed = train_args(synthetic_root, run_dir, f"ckpt_path={last}", "trainer.max_epochs=2")
    assert invoke("train.py", resumed, monkeypatch) == 0
    history = run_dir / ".hydra" / "history" / "0"
    assert "trainer.max_epochs=1" in (history / "overrides.yaml").read_text()
    assert "trainer.max_epochs=2" in (run_dir / ".hydra" / "overrides.yaml").read_text()
    assert json.loads((run_dir / "summary.json").read_text())["epochs"] == 2
    files = set(json.loads((run_dir / "manifest.json").read_text())["files"])
    assert {"summary.json", "checkpoints/last.ckpt"} <= files


def test_a_sweep_into_an_earlier_sweep_folder_is_refused(tmp_path: Path) -> None:
    sweep = tmp_path / "sweep"
    (sweep / "0").mkdir(parents=True)
    (sweep / "0" / "summary.json").write_text("{}")
    from saliency_probe.errors import OutputFolderError
    from saliency_probe.run_folder import check_sweep_folder

    with pytest.raises(OutputFolderError, match="already holds another sweep's results"):
        check_sweep_folder(sweep)
    check_sweep_folder(sweep, overwrite=True)
    assert not (sweep / "0" / "summary.json").exists()


def test_overwrite_removes_only_what_runs_write(tmp_path: Path) -> None:
    run_dir = tmp_path / "run"
    run_dir.mkdir()
    (run_dir / "notes_of_the_user.txt").write_text("mine")
    os.utime(run_dir / "notes_of_the_user.txt", (1e9, 1e9))  # there before the run
    mark_run_start()
    (run_dir / "tables").mkdir()
    (run_dir / "tables" / "a.csv").write_text("x")
    write_manifest(run_dir, "probe")
    assert json.loads((run_dir / "manifest.json").read_text())["files"] == ["tables/a.csv"]
    check_run_folder(run_dir, overwrite=True)
    assert sorted(p.name for p in run_dir.iterdir()) == ["notes_of_the_user.txt"]


def test_a_file_where_a_folder_goes_and_a_read_only_folder_are_refused_before_work(tmp_path: Path) -> None:
    from saliency_probe.errors import OutputFolderError

    run_dir = tmp_path / "run"
    run_dir.mkdir()
    (run_dir / "tables").write_text("not a folder")
    with pytest.raises(OutputFolderError, match="is a file where the run writes a folder"):
        check_run_folder(run_dir)
    locked = tmp_path / "locked"
    locked.mkdir()
    locked.chmod(0o500)
    try:
        if os.access(locked, os.W_OK):
            pytest.skip("running as a user that can write anywhere")
        with pytest.raises(OutputFolderError, match="is not writable"):
            check_run_folder(locked / "run")
    finally:
        locked.chmod(0o700)


@pytest.mark.parametrize("umask, mode", [(0o022, 0o644), (0o027, 0o640), (0o002, 0o664)])
def test_written_files_honour_the_umask(tmp_path: Path, umask: int, mode: int) -> None:
    code = (
        "import os, sys; os.umask(int(sys.argv[2], 8));"
        "from saliency_probe.io_utils import write_json, write_npz; from saliency_probe.report.figures import save_figure;"
        "from matplotlib.figure import Figure; import numpy as np; d = sys.argv[1];"
        "write_json(d + '/a.json', {}); write_npz(d + '/b.npz', {'x': np.zeros(2)}); save_figure(Figure(), d + '/c.png')"
    )
    subprocess.run([sys.executable, "-c", code, str(tmp_path), oct(umask)[2:]], check=True, timeout=120)
    for name in ("a.json", "b.npz", "c.png"):
        assert (tmp_path / name).stat().st_mode & 0o777 == mode, name


def test_help_lists_each_entry_points_own_groups_and_keys(monkeypatch: pytest.MonkeyPatch,
                                                          capsys: pytest.CaptureFixture) -> None:
    assert invoke("train.py", ["--help"], monkeypatch) == 0
    text = capsys.readouterr().out
    assert "finetune.layers=0..6|all" in text and "task: saliency (default), scene" in text
    assert "table7" not in text and "popout" not in text  # the probe's groups are not train.py's
    assert invoke("probe.py", ["--help"], monkeypatch) == 0
    text = capsys.readouterr().out
    assert "analyses=auto" in text and "probe: table2, table3, table7" in text


def test_the_config_is_printed_as_overrides_unless_full_is_asked(
    tmp_path: Path, synthetic_root: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture
) -> None:
    args = probe_args(synthetic_root, tmp_path / "a", "layers=[conv5_3]", "figures.enabled=false")
    assert invoke("probe.py", args, monkeypatch) == 0
    out = capsys.readouterr().out
    assert "probe.py: " in out and "layers=[conv5_3]" in out.splitlines()[0] and "backbone:" not in out
    assert "litlogger" not in out
    assert invoke("probe.py", [*args[:-1], f"hydra.run.dir={tmp_path / 'b'}", "print_config=full"],
                  monkeypatch) == 0
    assert "backbone" in capsys.readouterr().out  # the tree


def test_loader_workers_are_bounded_by_the_cores() -> None:
    cores = len(os.sched_getaffinity(0))
    assert loader_workers(4) == min(4, cores) and loader_workers(1) == 1 and loader_workers(0) == 0


def test_clipped_fixations_and_the_input_size_are_said_at_the_end_and_in_the_report(
    tmp_path: Path, synthetic_root: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture
) -> None:
    run_dir = tmp_path / "run"
    assert invoke("probe.py", probe_args(synthetic_root, run_dir, "layers=[conv5_3]", "figures.enabled=false"),
                  monkeypatch) == 0
    out = capsys.readouterr().out
    summary = json.loads((run_dir / "probe_summary.json").read_text())
    clipped = summary["data"]["data"]["clipped_fixations"]
    assert summary["input_size"] == 64
    assert "note: input size: images resized to 64x64" in out
    report = (run_dir / "report.md").read_text()
    assert "images resized to 64x64" in report
    total = summary["data"]["data"]["fixations"]
    assert clipped > 0 and total > clipped  # the synthetic observers' centre-biased fixations leave the image
    line = f"{clipped} fixation(s) outside the image moved to its border ({100.0 * clipped / total:.2g}% of {total})"
    assert line in out and line in report


def test_a_seed_sweep_runs_after_the_quick_start_on_the_default_data_folder(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture
) -> None:
    """The training seed is not the synthetic set's: `-m seed=0,1,2` reuses the set the quick start made, and
    other generation parameters get a folder of their own under data/synthetic/ (never a refusal)."""
    monkeypatch.chdir(tmp_path)
    small = ["trainer.max_epochs=1", "data.image_size=64", "data.num_train=6", "data.num_val=3", "data.num_probe=2",
             "data.salicon_hw=[64,80]", "data.osie_hw=[64,80]", "data.num_observers=3", "logger=none",
             "~callbacks.progress_bar"]
    assert invoke("train.py", small, monkeypatch) == 0  # the quick start's first run
    folders = sorted(p.name for p in (tmp_path / "data" / "synthetic").iterdir())
    assert folders == ["seed0-train6-val3-probe2-obs3-salicon64x80-osie64x80"]
    assert invoke("train.py", ["-m", "seed=0,1,2", *small, f"hydra.sweep.dir={tmp_path / 'sweep'}"],
                  monkeypatch) == 0
    summaries = [json.loads((tmp_path / "sweep" / str(job) / "summary.json").read_text()) for job in range(3)]
    assert [s["seed"] for s in summaries] == [0, 1, 2]
    assert len({s["metrics"]["val/nss"] for s in summaries}) == 3  # the seed still sets initialisation
    assert sorted(p.name for p in (tmp_path / "data" / "synthetic").iterdir()) == folders  # the same data
    assert invoke("train.py", [*small, "data.num_train=7", "hydra.run.dir=other"], monkeypatch) == 0
    assert len(list((tmp_path / "data" / "synthetic").iterdir())) == 2
    assert "error" not in capsys.readouterr().err
