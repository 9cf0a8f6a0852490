"""Training jobs end to end: an in-process run, checkpoints, summary.json and the sweep as a subprocess."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from saliency_probe.models.checkpoint import load_checkpoint
from saliency_probe.run_context import composed_job
from saliency_probe.training import train

REPO = Path(__file__).resolve().parents[1]
SMALL = ["data.image_size=64", "data.batch_size=4", "trainer.max_epochs=1", "logger=none", "print_config=false",
         "~callbacks.progress_bar"]


def small_data(root: Path) -> list[str]:
    from conftest import SMALL_SYNTHETIC

    return [f"data.root={root}", f"data.num_train={SMALL_SYNTHETIC['num_train']}",
            f"data.num_val={SMALL_SYNTHETIC['num_val']}", f"data.num_probe={SMALL_SYNTHETIC['num_probe']}",
            f"data.salicon_hw=[{SMALL_SYNTHETIC['salicon_hw'][0]},{SMALL_SYNTHETIC['salicon_hw'][1]}]",
            f"data.osie_hw=[{SMALL_SYNTHETIC['osie_hw'][0]},{SMALL_SYNTHETIC['osie_hw'][1]}]",
            f"data.num_observers={SMALL_SYNTHETIC['num_observers']}"]


def run_in_process(tmp_path: Path, overrides: list[str]) -> dict:
    """Compose the train config as Hydra would and run the job with ``tmp_path`` as its output folder (the
    ``HydraConfig`` is cleared afterwards)."""
    with composed_job(REPO / "conf", "train", overrides, tmp_path) as cfg:
        return train(cfg)


def test_training_run_writes_summary_and_safe_checkpoints(tmp_path: Path, synthetic_root: Path) -> None:
    summary = run_in_process(tmp_path, [*SMALL, *small_data(synthetic_root), "finetune.layers=1"])
    on_disk = json.loads((tmp_path / "summary.json").read_text())
    assert on_disk == json.loads(json.dumps(summary))
    assert summary["task"] == "saliency"
    assert summary["finetune_layers"] == "1"
    assert summary["trainable_params"] == 2360320
    assert set(summary["metrics"]) >= {"val/nss", "val/cc", "val/loss"}
    assert summary["metrics"]["val/nss"] == pytest.approx(-summary["metrics"]["val/loss"], abs=1e-4)
    best = Path(summary["best_checkpoint"])
    assert best.is_file() and Path(summary["last_checkpoint"]).is_file()
    raw = torch.load(best, map_location="cpu", weights_only=True)
    assert raw["saliency_probe"]["task"] == "saliency"
    assert raw["hyper_parameters"]["run_config"]["finetune"]["layers"] == 1
    loaded = load_checkpoint(best)
    assert loaded.trunk().conv("conv5_3").weight.shape == (512, 512, 3, 3)
    assert loaded.saliency_head().weight.shape == (1, 512, 1, 1)


def fit_fixed_batch(module, optimizer, inputs: torch.Tensor, targets: torch.Tensor, steps: int) -> list[float]:
    """Train ``module`` on one batch for ``steps`` steps; the loss after each step's forward pass."""
    losses = []
    for _ in range(steps):
        optimizer.zero_grad()
        loss = module.loss(module(inputs), targets)
        loss.backward()
        optimizer.step()
        losses.append(float(loss.detach()))
    return losses


def test_training_lowers_the_loss_on_a_fixed_batch() -> None:
    from saliency_probe.callbacks import FreezeLayers
    from saliency_probe.models.saliency import SaliencyModule

    torch.manual_seed(0)
    module = SaliencyModule(weights=None, finetune_layers=1, optimizer={"_target_": "torch.optim.Adam", "lr": 1e-3})
    FreezeLayers(1).freeze_before_training(module)
    optimizer = module.configure_optimizers()
    images = torch.randn(4, 3, 64, 64)
    fixations = torch.zeros(4, 32, 32)
    fixations[:, 4:8, 4:8] = 1  # the same corner in every image: learnable
    losses = fit_fixed_batch(module, optimizer, images, fixations, steps=15)
    assert losses[-1] < losses[0] - 0.5


def test_invalid_finetune_layers_fails_before_training(tmp_path: Path) -> None:
    result = subprocess.run(
        [sys.executable, "train.py", "finetune.layers=7", f"data.root={tmp_path / 'never'}", "logger=none",
         f"hydra.run.dir={tmp_path / 'run'}"],
        cwd=REPO, capture_output=True, text=True, timeout=120, env={**os.environ, "WANDB_MODE": "disabled"},
    )
    assert result.returncode != 0
    assert "finetune.layers=7" in result.stderr and "0, 1, 2, 3, 4, 5, 6, all" in result.stderr
    assert not (tmp_path / "never").exists()  # nothing generated, nothing trained


@pytest.mark.slow
def test_finetune_sweep_as_subprocess(tmp_path: Path, synthetic_root: Path) -> None:
    """The paper's sweep: 8 jobs, exact trainable parameter counts, distinct offline W&B runs."""
    sweep_dir = tmp_path / "sweep"
    overrides = [o for o in SMALL if not o.startswith("logger")] + small_data(synthetic_root)
    result = subprocess.run(
        [sys.executable, "train.py", "-m", "finetune.layers=0,1,2,3,4,5,6,all", *overrides,
         "logger=wandb", f"hydra.sweep.dir={sweep_dir}"],
        cwd=REPO, capture_output=True, text=True, timeout=600,
        env={**os.environ, "WANDB_MODE": "offline", "WANDB_SILENT": "true"},
    )
    assert result.returncode == 0, result.stderr[-3000:]
    summaries = [json.loads(p.read_text()) for p in sorted(sweep_dir.glob("*/summary.json"))]
    counts = {s["finetune_layers"]: s["trainable_params"] for s in summaries}
    assert counts == {"0": 512, "1": 2360320, "2": 4720128, "3": 7079936, "4": 9439744, "5": 11799552,
                      "6": 12979712, "all": 14715200}
    runs = sorted(sweep_dir.glob("*/wandb/offline-run-*"))
    assert len(runs) == 8 and len({run.name.split("-")[-1] for run in runs}) == 8
    groups = {s["group"] for s in summaries}
    assert groups == {f"sweep-{sweep_dir.name}"}
    assert {s["run_name"] for s in summaries} >= {"finetune.layers=all", "finetune.layers=0"}
    for summary in summaries:
        torch.load(summary["best_checkpoint"], map_location="cpu", weights_only=True)


def test_pretrained_weights_offline_fail_within_seconds(tmp_path: Path) -> None:
    """`TORCH_HOME=<empty> python train.py backbone.weights=IMAGENET1K_V1` names the missing file, before any data work."""
    import time

    start = time.monotonic()
    result = subprocess.run(
        [sys.executable, "train.py", "backbone.weights=IMAGENET1K_V1", f"data.root={tmp_path / 'data'}",
         "logger=none", f"hydra.run.dir={tmp_path / 'run'}"],
        cwd=REPO, capture_output=True, text=True, timeout=120,
        env={**os.environ, "WANDB_MODE": "disabled", "TORCH_HOME": str(tmp_path / "torch_home")},
    )
    assert result.returncode != 0
    assert "vgg16-397923af.pth" in result.stderr and str(tmp_path / "torch_home") in result.stderr
    assert not (tmp_path / "data").exists()
    assert time.monotonic() - start < 60


def test_fixation_density_equals_torchvision_gaussian_blur() -> None:
    """The separable ground-truth blur gives torchvision's 2-D Gaussian blur (kernel +-3 sigma, reflected border)."""
    from torchvision.transforms.v2 import functional as TF

    from saliency_probe.maps import fixation_density

    torch.manual_seed(0)
    fixations = (torch.rand(2, 60, 80) > 0.99).float()
    reference = TF.gaussian_blur(fixations[:, None], kernel_size=[37, 37], sigma=[6.0, 6.0])[:, 0]
    assert torch.allclose(fixation_density(fixations, 6.0), reference, atol=1e-7)
    tiny = (torch.rand(1, 12, 20) > 0.8).float()  # kernel limited to the map: 11 x 19
    reference = TF.gaussian_blur(tiny[:, None], kernel_size=[19, 11], sigma=[24.0, 24.0])[:, 0]
    assert torch.allclose(fixation_density(tiny, 24.0), reference, atol=1e-7)


def test_fixation_density_stays_float32_under_autocast_and_keeps_gradients() -> None:
    """Under bf16 autocast (the GPU trainer's validation) the ground truth is still float32, the same values;
    maps of shape (B, H, W) of a non-square size blur each map alone; gradients flow to the input."""
    from torchvision.transforms.v2 import functional as TF

    from saliency_probe.maps import fixation_density

    torch.manual_seed(1)
    fixations = (torch.rand(3, 50, 70) > 0.98).float()
    plain = fixation_density(fixations, 4.0)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        mixed = fixation_density(fixations, 4.0)
    assert mixed.dtype == torch.float32 and torch.equal(mixed, plain)
    reference = TF.gaussian_blur(fixations[1:2, None], kernel_size=[25, 25], sigma=[4.0, 4.0])[0, 0]
    assert torch.allclose(plain[1], reference, atol=1e-7)
    counts = fixations.clone().requires_grad_(True)
    fixation_density(counts, 4.0).sum().backward()
    assert counts.grad is not None and counts.grad.shape == counts.shape


def test_composed_job_sets_the_output_folder_only_while_inside(tmp_path: Path) -> None:
    """In-process jobs (tests, benchmarks/sweep_cache.py) see their own output folder and no hydra node; after the
    block HydraConfig is cleared, so a later job does not write into this one's folder (the leak this guards)."""
    from hydra.core.hydra_config import HydraConfig

    from saliency_probe.run_context import output_dir, run_identity

    with composed_job(REPO / "conf", "train", ["finetune.layers=0", "seed=3"], tmp_path / "job") as cfg:
        assert output_dir() == tmp_path / "job" and "hydra" not in cfg
        assert cfg.seed == 3 and str(cfg.finetune.layers) == "0"
        assert HydraConfig.get().job.override_dirname == "finetune.layers=0,seed=3"
        assert run_identity("x")[0]  # the run name is read from the composed HydraConfig
    assert not HydraConfig.initialized() and output_dir() == Path.cwd()
    with pytest.raises(RuntimeError, match="boom"), composed_job(REPO / "conf", "train", [], tmp_path / "j2"):
        raise RuntimeError("boom")
    assert not HydraConfig.initialized()
