"""cache.features=true trains the same model as the uncached run: same seed, same data order, same trainable
weights after N steps and the same val/nss (to 1e-6 on CPU), with checkpoints that are full models; a run
resumed from a checkpoint reuses the cache of its first part.

The reference is the uncached run itself (``train.py`` as it is, the frozen layers recomputed every step).
"""

from __future__ import annotations

import math
from pathlib import Path

import pytest
import torch
from test_train import SMALL, run_in_process, small_data

from saliency_probe.models.checkpoint import load_checkpoint

EPOCHS = 2  # 12 training images in batches of 4 (SMALL): 6 optimizer steps, 2 validations
BATCH = 4
NO_CHECKPOINTS = ["~callbacks.model_checkpoint", "~callbacks.last_checkpoint", "+trainer.enable_checkpointing=false"]


def trained(tmp_path: Path, synthetic_root: Path, name: str, extra: list[str], monkeypatch: pytest.MonkeyPatch,
            checkpoints: bool = False) -> tuple[dict, dict[str, torch.Tensor], int]:
    """Run train.py's job; return its summary, the module's weights after the last step and the step count."""
    import saliency_probe.training as training

    seen: dict = {}
    summarise = training._summarise

    def keep(cfg, trainer, module, *args):
        seen.update(state={k: v.detach().clone() for k, v in module.state_dict().items()}, steps=trainer.global_step)
        return summarise(cfg, trainer, module, *args)

    monkeypatch.setattr(training, "_summarise", keep)
    overrides = [*SMALL, *small_data(synthetic_root), f"trainer.max_epochs={EPOCHS}", "seed=3",
                 f"paths.cache_dir={tmp_path / 'cache'}", *([] if checkpoints else NO_CHECKPOINTS), *extra]
    summary = run_in_process(tmp_path / name, overrides)
    return summary, seen["state"], seen["steps"]


def assert_same_training(plain: tuple, cached: tuple, initial: dict) -> None:
    (summary_a, a, steps_a), (summary_b, b, steps_b) = plain, cached
    assert summary_a["feature_cache"] is None
    cache = summary_b["feature_cache"]
    assert cache["used"] and cache["built"] and cache["dtype"] == "float32"
    assert cache["bytes"] > cache["bytes_per_image"] * sum(cache["images"].values())  # arrays + headers + json
    n_train = summary_a["data"].get("num_train", summary_a["data"].get("train_images"))
    assert steps_a == steps_b == EPOCHS * math.ceil(n_train / BATCH)
    assert sorted(a) == sorted(b) == sorted(initial)  # the cached module keeps the whole trunk, the prefix too
    assert any(not torch.equal(a[key], initial[key]) for key in a), "no weight moved: the runs did not train"
    for key in a:
        assert torch.allclose(a[key].double(), b[key].double(), rtol=0, atol=1e-6), key
    assert summary_a["trainable_params"] == summary_b["trainable_params"]
    for metric, value in summary_a["metrics"].items():
        assert summary_b["metrics"][metric] == pytest.approx(value, abs=1e-6), metric


def initial_state(task_module: str, extra: dict) -> dict[str, torch.Tensor]:
    """The module's weights at step 0 under the runs' seed (what training starts from)."""
    import pytorch_lightning as pl
    from hydra.utils import get_class

    pl.seed_everything(3, workers=True, verbose=False)
    return {key: value.clone() for key, value in get_class(task_module)(**extra).state_dict().items()}


@pytest.mark.parametrize(("backbone", "layers"), [("vgg16", 0), ("vgg16", 1), ("vgg16", 3), ("resnet18", 2)])
def test_cached_run_trains_the_same_weights(tmp_path: Path, synthetic_root: Path, monkeypatch: pytest.MonkeyPatch,
                                            backbone: str, layers: int) -> None:
    extra = [f"backbone={backbone}", f"finetune.layers={layers}"]
    checkpoints = (backbone, layers) == ("vgg16", 1)
    plain = trained(tmp_path, synthetic_root, "plain", extra, monkeypatch, checkpoints)
    cached = trained(tmp_path, synthetic_root, "cached", [*extra, "cache.features=true"], monkeypatch, checkpoints)
    initial = initial_state("saliency_probe.models.saliency.SaliencyModule",
                            {"weights": None, "finetune_layers": layers, "backbone": backbone})
    assert_same_training(plain, cached, initial)
    assert cached[0]["feature_cache"]["boundary"] == {
        ("vgg16", 0): "after conv5_3", ("vgg16", 1): "before conv5_3", ("vgg16", 3): "before conv5_1",
        ("resnet18", 2): "before layer4.0"}[(backbone, layers)]
    if checkpoints:  # probe.py's view of the checkpoints: full models from images, equal for both runs
        images = torch.randn(2, 3, 64, 64, generator=torch.Generator().manual_seed(0))
        maps = [load_checkpoint(run[0]["last_checkpoint"]).saliency_network().eval()(images) for run in (plain, cached)]
        assert maps[0].shape == (2, 1, 4, 4)
        assert torch.allclose(maps[0], maps[1], rtol=0, atol=1e-6)
        splits = [load_checkpoint(run[0]["last_checkpoint"]).metadata["data_split"] for run in (plain, cached)]
        assert splits[0] == splits[1] and splits[0]["train"]  # the cached run records the same image split


def test_cached_scene_run_keeps_the_dropout_draws(tmp_path: Path, synthetic_root: Path,
                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    """The scene head's dropout draws from the global RNG: the cache build must leave it untouched."""
    extra = ["task=scene", "finetune.layers=1", "task.hidden_features=64"]
    plain = trained(tmp_path, synthetic_root, "plain", extra, monkeypatch)
    cached = trained(tmp_path, synthetic_root, "cached", [*extra, "cache.features=true"], monkeypatch)
    initial = initial_state("saliency_probe.models.scene.SceneModule", {
        "class_names": cached[0]["class_names"], "class_weights": list(cached[0]["class_weights"].values()),
        "weights": None, "finetune_layers": 1, "hidden_features": 64})
    assert_same_training(plain, cached, initial)


def test_a_resumed_run_reuses_the_cache_of_its_first_part(tmp_path: Path, synthetic_root: Path) -> None:
    """The prefix is frozen, so the checkpoint's prefix is the one the cache was built from."""
    overrides = [*SMALL, *small_data(synthetic_root), "backbone=resnet18", "finetune.layers=2",
                 "cache.features=true", f"paths.cache_dir={tmp_path / 'cache'}"]
    first = run_in_process(tmp_path / "first", overrides)
    resumed = run_in_process(tmp_path / "resumed", [*overrides, f"ckpt_path={first['last_checkpoint']}",
                                                    "trainer.max_epochs=2"])
    assert first["feature_cache"]["built"] and not resumed["feature_cache"]["built"]
    assert resumed["feature_cache"]["key"] == first["feature_cache"]["key"] and resumed["epochs"] == 2
