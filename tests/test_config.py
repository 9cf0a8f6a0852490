"""Every config group composes, and its choices reach the right objects."""

from __future__ import annotations

from pathlib import Path

import pytest
from hydra import compose, initialize_config_dir
from hydra.utils import instantiate
from omegaconf import DictConfig, OmegaConf

CONF_DIR = str(Path(__file__).resolve().parents[1] / "conf")


def compose_train(*overrides: str) -> DictConfig:
    with initialize_config_dir(config_dir=CONF_DIR, version_base="1.3"):
        return compose("train", overrides=list(overrides), return_hydra_config=False)


def test_default_train_config() -> None:
    cfg = compose_train()
    assert cfg.task.name == "saliency"
    assert cfg.finetune.layers == 1
    assert cfg.backbone.weights is None
    assert cfg.data.image_size == 224
    assert cfg.logger._target_.endswith("WandbLogger")
    assert cfg.data._target_.endswith("SaliconDataModule")
    assert set(cfg.callbacks) == {"freeze", "model_checkpoint", "progress_bar"}


def test_wandb_is_offline_unless_wandb_mode_says_otherwise(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("WANDB_MODE", raising=False)
    assert compose_train().logger.mode == "offline"
    monkeypatch.setenv("WANDB_MODE", "disabled")
    assert compose_train().logger.mode == "disabled"


@pytest.mark.parametrize("layers", [0, 1, 2, 3, 4, 5, 6, "all"])
def test_finetune_layers_interpolate_into_module_and_callback(layers: int | str) -> None:
    cfg = compose_train(f"finetune.layers={layers}")
    assert cfg.task.module.finetune_layers == layers
    assert cfg.callbacks.freeze.layers == layers


def test_scene_task_switches_data_module() -> None:
    cfg = compose_train("task=scene")
    assert cfg.task.name == "scene"
    assert cfg.task.module._target_.endswith("SceneModule")
    assert cfg.data._target_.endswith("SaliconScenesDataModule")
    assert cfg.task.monitor == "val/acc"


def test_paper_experiment() -> None:
    cfg = compose_train("experiment=paper", "data.root=/somewhere")
    assert cfg.backbone.weights == "IMAGENET1K_V1"
    assert cfg.data.batch_size == 5
    assert cfg.trainer.max_epochs == 20
    assert cfg.task.optimizer.lr == pytest.approx(5e-3)
    assert cfg.task.optimizer.weight_decay == 0.0
    assert cfg.data._target_.endswith("SaliconDataModule") and cfg.data.synthetic is False


@pytest.mark.parametrize("logger,target", [("wandb", "WandbLogger"), ("csv", "CSVLogger"), ("none", None)])
def test_logger_group(logger: str, target: str | None) -> None:
    cfg = compose_train(f"logger={logger}")
    if target is None:
        assert cfg.logger._target_ is None
    else:
        assert cfg.logger._target_.endswith(target)


@pytest.mark.parametrize("trainer", ["cpu", "gpu"])
def test_trainer_group(trainer: str) -> None:
    cfg = compose_train(f"trainer={trainer}")
    assert cfg.trainer.accelerator == trainer
    if trainer == "cpu":
        built = instantiate(cfg.trainer, default_root_dir="/tmp", logger=False, enable_progress_bar=False)
        assert built.max_epochs == 2


def test_optimizer_config_is_plain() -> None:
    cfg = compose_train()
    plain = OmegaConf.to_container(cfg.task.module.optimizer, resolve=True)
    assert plain == {"_target_": "torch.optim.Adam", "lr": 5e-3, "weight_decay": 0.0}


@pytest.mark.parametrize(
    "preset,layers,names",
    [("table2", None, None), ("table3", ["conv5_3"], None), ("table7", ["conv5_3"], ["pt", "sp", "sr"])],
)
def test_probe_presets_compose(preset: str, layers: list[str] | None, names: list[str] | None) -> None:
    with initialize_config_dir(config_dir=CONF_DIR, version_base="1.3"):
        base = compose("probe")
        cfg = compose("probe", overrides=[f"probe={preset}"])
    assert list(cfg.layers) == (layers or list(base.layers))
    assert cfg.analyses == "auto" and cfg.top_k == 10 and cfg.threshold == 1.5
    if names is not None:
        assert list(cfg.names) == names
