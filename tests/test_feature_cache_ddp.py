"""cache.features=true under DDP (trainer=ddp_cpu, two gloo processes started by train.py itself)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from test_train import REPO, SMALL, small_data

LAYERS = 2  # resnet18: the prefix is the stem .. layer3


@pytest.mark.slow
def test_ddp_cpu_cached_run_equals_the_uncached_one(tmp_path: Path, synthetic_root: Path) -> None:
    """Two gloo processes: each computes half of the images into the shared files, rank 0 completes the folder;
    training on it gives the uncached DDP run's weights and val/nss."""
    overrides = [*SMALL, *small_data(synthetic_root), "trainer=ddp_cpu", "trainer.max_epochs=2", "backbone=resnet18",
                 f"finetune.layers={LAYERS}", "callbacks.model_checkpoint.save_top_k=-1",  # last.ckpt = last step
                 f"paths.cache_dir={tmp_path / 'cache'}"]
    runs = {}
    for name, extra in (("plain", []), ("cached", ["cache.features=true"])):
        result = subprocess.run([sys.executable, "train.py", *overrides, *extra, f"hydra.run.dir={tmp_path / name}"],
                                cwd=REPO, capture_output=True, text=True, timeout=400,
                                env={**os.environ, "WANDB_MODE": "disabled"})
        assert result.returncode == 0, result.stderr[-3000:]
        summary = json.loads((tmp_path / name / "summary.json").read_text())
        runs[name] = (summary, torch.load(summary["last_checkpoint"], map_location="cpu", weights_only=True))
    (plain, plain_ckpt), (cached, cached_ckpt) = runs["plain"], runs["cached"]
    assert cached["feature_cache"]["built"] and cached["feature_cache"]["images"] == {"train": 12, "val": 6}
    assert plain_ckpt["global_step"] == cached_ckpt["global_step"] == 2 * 2  # 6 images per rank, batches of 4
    for key, value in plain_ckpt["state_dict"].items():
        assert torch.allclose(value.double(), cached_ckpt["state_dict"][key].double(), rtol=0, atol=1e-6), key
    assert cached["metrics"]["val/nss"] == pytest.approx(plain["metrics"]["val/nss"], abs=1e-6)
