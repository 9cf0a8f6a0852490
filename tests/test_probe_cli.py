"""``python probe.py`` as a user runs it: a subprocess on the small synthetic set (random trunk, 64 px)."""

from __future__ import annotations

import csv
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from test_probe import synthetic_overrides

REPO = Path(__file__).resolve().parents[1]
REQUIRED = ["model", "layer", "category", "top10_mean_nss", "n_above_threshold", "n_regions"]
LAYERS = ["conv4_1", "conv4_2", "conv4_3", "conv5_1", "conv5_2", "conv5_3"]


def probe(*overrides: str, wandb: str = "disabled", timeout: int = 300) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "probe.py", "print_config=false", "analyses=[inner]", *overrides],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=timeout,
        env={**os.environ, "WANDB_MODE": wandb, "WANDB_SILENT": "true"},
    )


def read_rows(run_dir: Path) -> list[dict[str, str]]:
    with open(run_dir / "tables/inner_representation.csv", newline="") as handle:
        return list(csv.DictReader(handle))


def test_probe_cli_writes_tables_arrays_figures_and_wandb(tmp_path: Path, synthetic_root: Path) -> None:
    run_dir = tmp_path / "run"
    result = probe(
        *synthetic_overrides(synthetic_root),
        "figures.search_images=3",
        "logger=wandb",
        f"hydra.run.dir={run_dir}",
        wandb="offline",
    )
    assert result.returncode == 0, result.stderr[-3000:]
    assert "probe: 1 model(s): random-init" in result.stdout and f"outputs: {run_dir}" in result.stdout
    assert "img" in result.stderr  # the progress bar counts images
    rows = read_rows(run_dir)
    assert list(rows[0])[: len(REQUIRED)] == REQUIRED
    truth = json.loads((synthetic_root / "truth.json").read_text())
    planted = {obj["category"] for objects in truth["objects"].values() for obj in objects}
    categories = {row["category"] for row in rows}
    assert categories <= planted and len(categories) >= 8
    assert {row["layer"] for row in rows} == set(LAYERS)
    assert len(rows) == len(LAYERS) * len(categories)
    for row in rows:
        assert int(row["n_regions"]) > 0 and 0 <= int(row["n_above_threshold"]) <= 512
        assert (
            float(row["top10_mean_nss"]) > float(row["shuffled_top10_mean_nss"]) - 1.0
        )  # finite, comparable
    markdown = (run_dir / "tables/inner_representation.md").read_text()
    for block in (
        "mean NSS for top 10 activation maps",
        "# activation maps above threshold (T = 1.5)",
        "shuffled-region baseline",
    ):
        assert block in markdown
    assert markdown.index("| conv5_3 |") < markdown.index("| conv4_1 |")  # deepest first, as Table 2
    with np.load(run_dir / "tables/inner_units_random-init.npz") as arrays:
        assert arrays["conv5_3.unit_means"].shape == (512, 12)
        assert arrays["conv4_1.shuffled_unit_means"].shape == (512, 12)
        row = next(r for r in rows if r["layer"] == "conv5_3" and r["category"] == "person head")
        column = list(arrays["categories"]).index("person head")
        top = np.sort(arrays["conv5_3.unit_means"][:, column])[::-1][:10].mean()
        assert float(row["top10_mean_nss"]) == pytest.approx(top, rel=1e-12)
    assert sorted(p.name for p in (run_dir / "figures").iterdir()) == sorted(
        f"inner_units_random-init_{layer}.png" for layer in LAYERS
    )
    tables = list(run_dir.glob("wandb/offline-run-*/files/media/table/inner/representation_*.table.json"))
    assert len(tables) == 1 and len(json.loads(tables[0].read_text())["data"]) == len(rows)
    leftovers = [
        p.name
        for p in run_dir.rglob(".*")
        if p.is_file() and ".hydra" not in p.parts and "wandb" not in p.parts
    ]
    assert leftovers == [] and not (run_dir / ".probe_scratch").exists()


def test_probe_cli_refuses_a_foreign_checkpoint(tmp_path: Path) -> None:
    foreign = tmp_path / "foreign.ckpt"
    torch.save({"model": {"conv.weight": torch.zeros(1)}}, foreign)
    result = probe(
        f"ckpt={foreign}",
        f"data.root={tmp_path / 'never'}",
        "logger=none",
        f"hydra.run.dir={tmp_path / 'run'}",
        timeout=120,
    )
    assert result.returncode != 0
    assert str(foreign) in result.stderr and "not a saliency_probe checkpoint" in result.stderr
    assert not (tmp_path / "never").exists()  # failed before generating or reading any data


def test_probe_cli_rejects_unknown_layers_and_analyses(tmp_path: Path) -> None:
    result = probe(
        "layers=[conv4_1,fc6]",
        "analyses=[inner,nonsense]",
        "logger=none",
        f"hydra.run.dir={tmp_path / 'run'}",
        timeout=120,
    )
    assert result.returncode != 0 and "fc6" in result.stderr and "conv5_3" in result.stderr


@pytest.mark.slow
def test_two_ddp_processes_give_the_one_process_result(tmp_path: Path, synthetic_root: Path) -> None:
    common = [
        *synthetic_overrides(synthetic_root),
        "layers=[conv4_3,conv5_3]",
        "figures.enabled=false",
        "controls.random_trunk=false",
        "logger=none",
        "data.batch_size=3",
    ]
    single = probe(*common, f"hydra.run.dir={tmp_path / 'one'}")
    assert single.returncode == 0, single.stderr[-3000:]
    double = probe(*common, "trainer=ddp_cpu", f"hydra.run.dir={tmp_path / 'two'}")
    assert double.returncode == 0, double.stderr[-3000:]
    one, two = read_rows(tmp_path / "one"), read_rows(tmp_path / "two")
    assert len(one) == len(two) > 0
    for a, b in zip(one, two, strict=True):
        assert (a["model"], a["layer"], a["category"], a["n_regions"], a["n_above_threshold"]) == (
            b["model"],
            b["layer"],
            b["category"],
            b["n_regions"],
            b["n_above_threshold"],
        )
        for key in (
            "top10_mean_nss",
            "shuffled_top10_mean_nss",
        ):  # float32 convs differ by batch make-up only
            assert float(a[key]) == pytest.approx(float(b[key]), rel=1e-5)


@pytest.mark.slow
def test_probe_a_training_sweep(tmp_path: Path, synthetic_root: Path) -> None:
    sweep = tmp_path / "sweep"
    train = subprocess.run(
        [
            sys.executable,
            "train.py",
            "-m",
            "finetune.layers=0,1",
            "trainer.max_epochs=1",
            "data.batch_size=4",
            *synthetic_overrides(synthetic_root),
            "logger=none",
            "print_config=false",
            "~callbacks.progress_bar",
            f"hydra.sweep.dir={sweep}",
        ],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=600,
        env={**os.environ, "WANDB_MODE": "disabled"},
    )
    assert train.returncode == 0, train.stderr[-3000:]
    result = probe(
        *synthetic_overrides(synthetic_root),
        f"sweep={sweep}",
        "layers=[conv5_3]",
        "logger=none",
        "figures.search_images=2",
        f"hydra.run.dir={tmp_path / 'run'}",
    )
    assert result.returncode == 0, result.stderr[-3000:]
    rows = read_rows(tmp_path / "run")
    assert list(dict.fromkeys(r["model"] for r in rows)) == [
        "finetune.layers=0",
        "finetune.layers=1",
        "random-init",
    ]
    by_model = {(r["model"], r["category"]): float(r["top10_mean_nss"]) for r in rows}
    categories = {r["category"] for r in rows}
    # conv5_3 was trained in job 1 only, so its statistics moved
    assert any(by_model[("finetune.layers=0", c)] != by_model[("finetune.layers=1", c)] for c in categories)
    markdown = (tmp_path / "run/tables/inner_representation.md").read_text()
    assert "| finetune.layers=0 |" in markdown and "| finetune.layers=1 |" in markdown
    assert (tmp_path / "run/figures/inner_improvement_conv5_3.png").is_file()
