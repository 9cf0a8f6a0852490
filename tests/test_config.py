"""Every config group composes, and every ``_target_`` in it builds the object it names.

In the style of lightning-hydra-template's ``tests/test_configs.py`` (compose as Hydra would, set the
``HydraConfig``, instantiate), but per config file: each test is parametrised over the files found in
``conf/<group>/``, so a new file is covered without editing this module. Data modules run at a tiny size
(the small synthetic set of ``conftest.SMALL_SYNTHETIC``, 64 px images); data sets that need real data are
built only and must then fail with an error that names the missing folder.
"""

from __future__ import annotations

import dataclasses
import importlib
import re
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import pytorch_lightning as pl
import torch
from conftest import SMALL_SYNTHETIC
from hydra import compose, initialize_config_dir
from hydra.core.hydra_config import HydraConfig
from hydra.utils import get_class, instantiate
from omegaconf import DictConfig, ListConfig, OmegaConf, open_dict
from omegaconf.errors import InterpolationResolutionError
from test_probe import synthetic_overrides
from torch import nn

CONF = Path(__file__).resolve().parents[1] / "conf"
CONF_DIR = str(CONF)
ENTRIES = ("train", "probe")
IMAGE_SIZE = 64
BATCH_SIZE = 4
#: conv5_3 is four 2x2 poolings below the input.
CONV5_3_SIZE = IMAGE_SIZE // 16
#: The folders of conf/ (config groups written as YAML files), each tested below; a new folder must be added
#: here with a test. Groups that the entry configs compose from Hydra's ConfigStore (structured configs, no
#: folder) are found in the defaults lists and tested by test_structured_section_composes_and_reads.
FILE_GROUPS = {
    "backbone", "cache", "callbacks", "classical", "data", "experiment", "experiment_data", "finetune", "hydra",
    "hydra/launcher", "logger",
    "paths", "probe", "regions", "task", "trainer",
}
#: Models of the benchmark that are baselines computed from the fixations, not map models.
BASELINE_MODELS = ("center_bias", "inter_observer")


# ------------------------------------------------------------------------------------------------------------
# helpers
# ------------------------------------------------------------------------------------------------------------


def configs(group: str) -> list[str]:
    """Names of the config files of ``conf/<group>/`` (what ``group=<name>`` selects)."""
    names = sorted(path.stem for path in (CONF / group).glob("*.yaml"))
    assert names, f"no config files in conf/{group}"
    return names


def raw(group: str, name: str) -> DictConfig:
    """The YAML file as written (no defaults list applied, nothing resolved)."""
    return OmegaConf.load(CONF / group / f"{name}.yaml")


def file_values(group: str, name: str) -> dict[str, Any]:
    """The values a file sets, merged over the files of its own group that its defaults list names (``- cpu``)."""
    node = raw(group, name)
    own = {key: value for key, value in OmegaConf.to_container(node).items() if key != "defaults"}
    defaults = [str(entry) for entry in node.get("defaults", [])]
    if "_self_" not in defaults:
        defaults.append("_self_")
    merged: dict[str, Any] = {}
    for entry in defaults:
        merged.update(own if entry == "_self_" else file_values(group, entry))
    return merged


def missing_keys(node: DictConfig) -> list[str]:
    """Keys set to ``???`` (mandatory values that the command line must give)."""
    return [str(key) for key in node if OmegaConf.is_missing(node, key)]


def entry_defaults(entry: str) -> dict[str, str | None]:
    """Group -> option of an entry config's defaults list (``_self_`` left out)."""
    node = OmegaConf.to_container(OmegaConf.load(CONF / f"{entry}.yaml"), resolve=False)
    found = {}
    for item in node["defaults"]:
        if isinstance(item, str):
            continue
        for group, option in item.items():  # "optional experiment_data@data" -> experiment_data
            found[str(group).removeprefix("optional ").split("@")[0]] = option
    return found


def register_structured_sections() -> None:
    """Register probe.py's typed sections as ConfigStore groups (saliency_probe/probe/options.py, on import)."""
    importlib.import_module("saliency_probe.probe.options")


def compose_cfg(entry: str, *overrides: str, return_hydra_config: bool = False) -> DictConfig:
    if entry == "probe":
        register_structured_sections()
    with initialize_config_dir(config_dir=CONF_DIR, version_base="1.3"):
        return compose(entry, overrides=list(overrides), return_hydra_config=return_hydra_config)


def compose_train(*overrides: str) -> DictConfig:
    return compose_cfg("train", *overrides)


def plain(value: Any) -> Any:
    """Config nodes, tuples and numpy scalars as plain lists / dicts / Python values, for comparisons."""
    if isinstance(value, (DictConfig, ListConfig)):
        value = OmegaConf.to_container(value, resolve=True)
    if isinstance(value, dict):
        return {key: plain(item) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return [plain(item) for item in value]
    return value.item() if isinstance(value, np.generic) else value


def assert_built(obj: Any, node: DictConfig) -> None:
    """``obj`` is an instance of exactly the class ``node._target_`` names."""
    assert type(obj) is get_class(node._target_), f"{node._target_} built a {type(obj)}"


def assert_fields_match(obj: Any, node: DictConfig, skip: tuple[str, ...] = ()) -> set[str]:
    """Every config key the object keeps as an attribute of the same name holds the config's value (paths
    compared resolved, a null path left to the object); returns the keys compared."""
    compared = set()
    for key, value in OmegaConf.to_container(node, resolve=True).items():
        if key.startswith("_") or key in skip or not hasattr(obj, key):
            continue
        have = getattr(obj, key)
        if isinstance(have, Path) and value is None:
            continue  # a null path is the object's default location (labels_file: <root>/scenes.csv)
        if isinstance(have, Path) or (isinstance(value, str) and "/" in value and isinstance(have, str)):
            assert Path(have).resolve() == Path(value).expanduser().resolve(), key
        else:
            assert plain(have) == plain(value), f"{type(obj).__name__}.{key}: {have!r} != config {value!r}"
        compared.add(key)
    return compared


def leaves(values: dict[str, Any], prefix: str = "") -> list[tuple[str, Any]]:
    """(dotted key, value) of every non-dict value of a nested dict."""
    out: list[tuple[str, Any]] = []
    for key, value in values.items():
        if isinstance(value, dict) and value:
            out.extend(leaves(value, f"{prefix}{key}."))
        else:
            out.append((f"{prefix}{key}", value))
    return out


def tiny_synthetic(root: Path) -> list[str]:
    """Overrides of a synthetic data config: the session's small set (``synthetic_root``), 64 px, batch 4."""
    return [*synthetic_overrides(root, IMAGE_SIZE), f"data.batch_size={BATCH_SIZE}"]


def trains(datamodule: pl.LightningDataModule) -> bool:
    """A training data module (its own ``train_dataloader``) rather than a probe / evaluation one."""
    return type(datamodule).train_dataloader is not pl.LightningDataModule.train_dataloader


@pytest.fixture
def run_dir(tmp_path: Path) -> Path:
    return tmp_path / "run"


@pytest.fixture
def compose_job(run_dir: Path) -> Iterator[Callable[..., DictConfig]]:
    """Compose an entry config as ``@hydra.main`` would: the ``HydraConfig`` is set, with ``run_dir`` as the
    job's output folder (``paths.output_dir``), and the ``hydra`` node is removed. The previous ``HydraConfig``
    comes back afterwards, so that later tests still see "outside Hydra"."""
    previous = HydraConfig.instance().cfg

    def compose_job(entry: str, *overrides: str) -> DictConfig:
        cfg = compose_cfg(entry, *overrides, return_hydra_config=True)
        with open_dict(cfg):
            cfg.hydra.runtime.output_dir = str(run_dir)
        HydraConfig.instance().set_config(cfg)
        with open_dict(cfg):
            del cfg["hydra"]
        return cfg

    yield compose_job
    HydraConfig.instance().cfg = previous


def compose_data(compose_job: Callable[..., DictConfig], name: str, *overrides: str) -> DictConfig:
    """``data=<name>`` in the first entry config where it resolves (``data=popout`` reads ``popout.*``)."""
    for entry in ENTRIES:
        cfg = compose_job(entry, f"data={name}", *overrides)
        try:
            OmegaConf.to_container(cfg.data, resolve=True)
        except InterpolationResolutionError:
            continue
        return cfg
    pytest.fail(f"data={name} resolves in none of {ENTRIES}")


# ------------------------------------------------------------------------------------------------------------
# the groups
# ------------------------------------------------------------------------------------------------------------

DATA = {name: raw("data", name) for name in configs("data")}
#: Generated on first use under `root` by the synthetic generator: run at the tiny size.
SYNTHETIC_DATA = [name for name, node in DATA.items() if node.get("synthetic") is True]
#: Real data sets (a mandatory `root`, ...): built only, without data.
REAL_DATA = [name for name, node in DATA.items() if name not in SYNTHETIC_DATA and missing_keys(node)]
#: Generated into `root` when it is empty (the pop-out arrays): generated tiny into an empty folder.
GENERATED_DATA = [
    name for name, node in DATA.items() if name not in SYNTHETIC_DATA + REAL_DATA and "generate" in node
]


STRUCTURED = sorted(
    {(group, str(option)) for entry in ENTRIES for group, option in entry_defaults(entry).items()
     if option is not None and not (CONF / group).is_dir()}
)


def test_every_config_folder_is_tested() -> None:
    found = {str(path.parent.relative_to(CONF)) for path in CONF.rglob("*.yaml") if path.parent != CONF}
    assert found == FILE_GROUPS, f"untested config folders: {sorted(found - FILE_GROUPS)}"
    for entry in ENTRIES:  # every group an entry config composes is a folder here or a structured section
        for group in entry_defaults(entry):
            assert group in FILE_GROUPS or group in {name for name, _ in STRUCTURED}, (entry, group)


def test_every_data_config_has_a_kind() -> None:
    kinds = SYNTHETIC_DATA + REAL_DATA + GENERATED_DATA
    assert sorted(kinds) == sorted(DATA), f"data configs of no known kind: {sorted(set(DATA) - set(kinds))}"
    assert SYNTHETIC_DATA and REAL_DATA and GENERATED_DATA


# ----------------------------------------------------------------------------------------------------- data


@pytest.mark.parametrize("name", SYNTHETIC_DATA)
def test_synthetic_data_module_yields_tiny_batches(
    name: str, synthetic_root: Path, compose_job: Callable[..., DictConfig]
) -> None:
    cfg = compose_data(compose_job, name, *tiny_synthetic(synthetic_root))
    datamodule = instantiate(cfg.data, _recursive_=False)
    assert_built(datamodule, cfg.data)
    assert {"image_size", "batch_size"} <= assert_fields_match(datamodule, cfg.data, skip=("synthetic",))
    assert datamodule.image_size == IMAGE_SIZE and datamodule.batch_size == BATCH_SIZE
    # the generator's arguments are the session set's: prepare_data reuses it (a mismatch is refused)
    assert datamodule.synthetic == SMALL_SYNTHETIC
    datamodule.prepare_data()
    if trains(datamodule):
        datamodule.setup("fit")
        batch = next(iter(datamodule.train_dataloader()))
        val_batch = next(iter(datamodule.val_dataloader()))
        original_hw = SMALL_SYNTHETIC["salicon_hw"]
        assert val_batch["image"].shape[1:] == (3, IMAGE_SIZE, IMAGE_SIZE)
    else:
        datamodule.setup("predict")
        batch = next(iter(datamodule.predict_dataloader()))
        original_hw = SMALL_SYNTHETIC["osie_hw"]
        assert len(batch["region_masks"]) == BATCH_SIZE
    assert batch["image"].shape == (BATCH_SIZE, 3, IMAGE_SIZE, IMAGE_SIZE)
    assert batch["image"].dtype == torch.float32 and torch.isfinite(batch["image"]).all()
    assert batch["fixations"].shape == (BATCH_SIZE, *original_hw)  # fixations stay at the original size
    assert batch["fixations"].sum() > 0
    assert len(batch["stem"]) == BATCH_SIZE
    if "label" in batch:  # scene labels index the classes the module is told about
        classes = datamodule.module_kwargs()["class_names"]
        labels = batch["label"]
        assert len(classes) >= 2 and labels.shape == (BATCH_SIZE,) and labels.dtype == torch.long
        assert 0 <= int(labels.min()) and int(labels.max()) < len(classes)


@pytest.mark.parametrize("name", REAL_DATA)
def test_real_data_module_builds_without_data(
    name: str, tmp_path: Path, compose_job: Callable[..., DictConfig]
) -> None:
    absent = tmp_path / "absent"
    given = {key: absent / key for key in missing_keys(DATA[name])}
    cfg = compose_data(compose_job, name, *(f"data.{key}={path}" for key, path in given.items()))
    assert cfg.data.synthetic is False
    datamodule = instantiate(cfg.data, _recursive_=False)
    assert_built(datamodule, cfg.data)
    assert {"image_size", "batch_size"} <= assert_fields_match(datamodule, cfg.data, skip=("synthetic",))
    for key, path in given.items():
        if hasattr(datamodule, key):
            assert Path(getattr(datamodule, key)) == path
    datamodule.prepare_data()  # real data are never downloaded or generated here
    assert not absent.exists(), "building a real data module wrote to its folder"
    with pytest.raises(FileNotFoundError, match=re.escape(str(absent))):
        datamodule.setup("fit")
    assert not absent.exists()


@pytest.mark.parametrize("name", GENERATED_DATA)
def test_generated_data_module_fills_an_empty_folder(
    name: str, tmp_path: Path, compose_job: Callable[..., DictConfig]
) -> None:
    default = compose_data(compose_job, name)
    for key, value in OmegaConf.to_container(DATA[name]).items():  # data.image_size: ${popout.image_size}
        link = re.fullmatch(r"\$\{([\w.]+)\}", str(value))
        if link:
            assert default.data[key] == OmegaConf.select(default, link.group(1)), key
    root = tmp_path / "generated"
    root.mkdir()
    tiny = ["generate.num=4", "generate.image_size=64", "generate.grid=3"]
    cfg = compose_data(compose_job, name, f"data.root={root}", f"data.image_size={IMAGE_SIZE}",
                       f"data.batch_size={BATCH_SIZE}", *(f"data.{item}" for item in tiny))
    datamodule = instantiate(cfg.data, _recursive_=False)
    assert_built(datamodule, cfg.data)
    assert {"image_size", "batch_size"} <= assert_fields_match(datamodule, cfg.data, skip=("generate",))
    assert datamodule.generate == {key: value for key, value in plain(cfg.data.generate).items() if value is not None}
    assert not any(root.iterdir()), "the constructor wrote to its folder"
    datamodule.prepare_data()
    datamodule.setup("predict")
    assert any(root.iterdir())
    assert len(datamodule.dataset) == cfg.data.generate.num
    batch = next(iter(datamodule.predict_dataloader()))
    size = cfg.data.generate.image_size
    assert batch["image"].shape == (BATCH_SIZE, 3, IMAGE_SIZE, IMAGE_SIZE)
    assert [rgb.shape for rgb in batch["rgb"]] == [(size, size, 3)] * BATCH_SIZE
    assert all(mask.shape == (size, size) and mask.dtype == bool for mask in batch["target_mask"])


# ----------------------------------------------------------------------------------------------- models


@pytest.mark.parametrize("task", configs("task"))
def test_task_module_instantiates_with_random_weights(
    task: str, synthetic_root: Path, compose_job: Callable[..., DictConfig]
) -> None:
    cfg = compose_job("train", f"task={task}", "backbone.weights=null", "++task.hidden_features=64",
                      *tiny_synthetic(synthetic_root))
    datamodule = instantiate(cfg.data, _recursive_=False)
    data_kwargs = datamodule.module_kwargs() if hasattr(datamodule, "module_kwargs") else {}
    module = instantiate(cfg.task.module, **data_kwargs, _recursive_=False, _convert_="all")  # as train() does
    assert_built(module, cfg.task.module)
    expected = plain(cfg.task.module)
    for key, value in expected.items():
        if not key.startswith("_"):
            assert plain(module.hparams[key]) == value, key
    assert module.hparams["weights"] is None
    if "hidden_features" in expected:
        widths = [layer.out_features for layer in module.modules() if isinstance(layer, nn.Linear)]
        assert widths[:-1] == [64, 64] and widths[-1] == len(data_kwargs["class_names"])
    optimizer = module.configure_optimizers()
    optimizer = optimizer["optimizer"] if isinstance(optimizer, dict) else optimizer
    assert type(optimizer) is get_class(cfg.task.optimizer._target_)
    assert optimizer.defaults["lr"] == pytest.approx(cfg.task.optimizer.lr)
    datamodule.setup("fit")
    batch = next(iter(datamodule.train_dataloader()))
    module.eval()
    with torch.no_grad():
        output = module(batch["image"])
    if "label" in batch:
        assert output.shape == (BATCH_SIZE, len(data_kwargs["class_names"]))
    else:
        assert output.shape == (BATCH_SIZE, CONV5_3_SIZE, CONV5_3_SIZE)
    assert torch.isfinite(output).all()


@pytest.mark.parametrize("task", configs("task"))
@pytest.mark.parametrize("backbone", configs("backbone"))
def test_backbone_reaches_the_task_module(backbone: str, task: str) -> None:
    cfg = compose_train(f"backbone={backbone}", f"task={task}")
    assert cfg.task.module.weights == raw("backbone", backbone).weights


@pytest.mark.parametrize("name", configs("finetune"))
def test_finetune_group_is_valid(name: str) -> None:
    from saliency_probe.models.backbone import parse_finetune_layers

    cfg = compose_train(f"finetune={name}")
    assert cfg.finetune.layers == raw("finetune", name).layers
    parse_finetune_layers(cfg.finetune.layers)


def test_default_train_config() -> None:
    cfg = compose_train()
    assert cfg.task.name == "saliency"
    assert cfg.finetune.layers == 1
    assert cfg.backbone.weights is None
    assert cfg.data.image_size == 224
    assert cfg.logger._target_.endswith("WandbLogger")
    assert cfg.data._target_.endswith("SaliconDataModule")
    assert set(cfg.callbacks) == {"freeze", "model_checkpoint", "last_checkpoint", "progress_bar"}


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


def test_optimizer_config_is_plain() -> None:
    cfg = compose_train()
    plain_optimizer = OmegaConf.to_container(cfg.task.module.optimizer, resolve=True)
    assert plain_optimizer == {"_target_": "torch.optim.Adam", "lr": 5e-3, "weight_decay": 0.0}


# -------------------------------------------------------------------------------------------- callbacks

CALLBACKS = [(name, entry) for name in configs("callbacks") for entry in raw("callbacks", name)]


@pytest.mark.parametrize("name,entry", CALLBACKS)
def test_callback_instantiates(name: str, entry: str, run_dir: Path, compose_job: Callable[..., DictConfig]) -> None:
    cfg = compose_job("train", f"callbacks={name}")
    node = cfg.callbacks[entry]
    callback = instantiate(node)
    assert_built(callback, node)
    assert isinstance(callback, pl.Callback)
    assert_fields_match(callback, node)
    if "dirpath" in node:  # under the job's output folder
        assert Path(callback.dirpath).resolve().is_relative_to(run_dir.resolve())
    if hasattr(callback, "freeze_before_training"):  # the fine-tuning callback on the task's module
        from saliency_probe.models.backbone import CONV_LAYER_NAMES

        assert cfg.finetune.layers == 1  # finetune=default: conv5_3 only
        module = instantiate(cfg.task.module, _recursive_=False, _convert_="all")
        callback.freeze_before_training(module)
        trunk = getattr(module, callback.trunk_attribute)
        frozen = set(callback.frozen_layer_names())
        assert frozen | set(callback.trainable) == set(CONV_LAYER_NAMES) and len(callback.trainable) == 1
        for layer in [*callback.trainable, *frozen]:
            grads = {parameter.requires_grad for parameter in trunk.conv(layer).parameters()}
            assert grads == {layer not in frozen}, layer
        in_trunk = {id(parameter) for parameter in trunk.parameters()}
        assert all(parameter.requires_grad for parameter in module.parameters() if id(parameter) not in in_trunk)
    trainer = instantiate(cfg.trainer, callbacks=[callback], logger=False)
    assert callback in trainer.callbacks


@pytest.mark.parametrize("name", configs("callbacks"))
def test_callback_group_builds_every_entry(name: str, compose_job: Callable[..., DictConfig]) -> None:
    from saliency_probe.training import build_callbacks

    cfg = compose_job("train", f"callbacks={name}")
    built = build_callbacks(cfg.callbacks)
    assert [type(callback) for callback in built] == [get_class(node._target_) for node in cfg.callbacks.values()]


# ---------------------------------------------------------------------------------------------- loggers


@pytest.mark.parametrize("name", configs("logger"))
def test_logger_instantiates(
    name: str, run_dir: Path, monkeypatch: pytest.MonkeyPatch, compose_job: Callable[..., DictConfig]
) -> None:
    from saliency_probe.run_context import build_logger

    monkeypatch.setenv("WANDB_MODE", "disabled")
    cfg = compose_job("train", f"logger={name}")
    logger = build_logger(cfg.logger, run_dir, "config-test", None, "saliency")
    if cfg.logger._target_ is None:
        assert logger is None
        return
    assert_built(logger, cfg.logger)
    assert Path(logger.save_dir) == run_dir
    try:
        logger.log_hyperparams({"seed": 0})
        logger.log_metrics({"val/nss": 1.0}, step=0)
        logger.save()
        logger.finalize("success")
    finally:
        if isinstance(logger, pl.loggers.WandbLogger):
            import wandb

            wandb.finish()
    if isinstance(logger, pl.loggers.WandbLogger):  # no account, no network: W&B is disabled
        init = logger._wandb_init
        assert init["mode"] == "disabled" and init["project"] == cfg.logger.project
        assert init["name"] == "config-test" and init["job_type"] == "saliency"
        assert list(init["tags"]) == list(cfg.logger.tags)
    if isinstance(logger, pl.loggers.CSVLogger):
        assert logger.name == cfg.logger.name
        assert "val/nss" in (Path(logger.log_dir) / "metrics.csv").read_text()


def test_wandb_is_offline_unless_wandb_mode_says_otherwise(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("WANDB_MODE", raising=False)
    assert compose_train().logger.mode == "offline"
    monkeypatch.setenv("WANDB_MODE", "disabled")
    assert compose_train().logger.mode == "disabled"


# --------------------------------------------------------------------------------------------- trainers


@pytest.mark.parametrize("name", configs("trainer"))
def test_trainer_instantiates(name: str, run_dir: Path, compose_job: Callable[..., DictConfig]) -> None:
    cfg = compose_job("train", f"trainer={name}")
    node = cfg.trainer
    expected = file_values("trainer", name)
    for key, value in expected.items():
        if not (isinstance(value, str) and "${" in value):
            assert plain(node[key]) == value, key
    assert Path(node.default_root_dir) == run_dir
    target = get_class(node._target_)
    strategy = node.get("strategy")
    if isinstance(strategy, str):
        from pytorch_lightning.strategies import StrategyRegistry

        assert strategy in StrategyRegistry
    elif strategy is not None:
        get_class(strategy._target_)
    if node.accelerator == "gpu" and not torch.cuda.is_available():
        return  # compose only: no GPU here
    trainer = instantiate(node, logger=False, enable_progress_bar=False)
    assert type(trainer) is target
    assert trainer.max_epochs == node.max_epochs
    assert trainer.log_every_n_steps == node.log_every_n_steps
    assert trainer.num_sanity_val_steps == node.num_sanity_val_steps
    assert Path(trainer.default_root_dir) == run_dir
    if isinstance(node.devices, int) and node.devices > 0:
        assert trainer.num_devices == node.devices
    accelerators = {"cpu": pl.accelerators.CPUAccelerator, "gpu": pl.accelerators.CUDAAccelerator}
    assert isinstance(trainer.accelerator, accelerators[node.accelerator])
    assert trainer.precision == node.get("precision", "32-true")
    if isinstance(strategy, DictConfig):
        assert isinstance(trainer.strategy, get_class(strategy._target_))
        assert_fields_match(trainer.strategy, strategy)
    elif strategy == "ddp":
        assert isinstance(trainer.strategy, pl.strategies.DDPStrategy)


# ----------------------------------------------------------------------------------------- experiments


@pytest.mark.parametrize("name", configs("experiment"))
def test_experiment_instantiates(name: str, tmp_path: Path, compose_job: Callable[..., DictConfig]) -> None:
    from saliency_probe.models.backbone import check_weights_available, is_random_weights

    missing = missing_keys(compose_train(f"experiment={name}").data)
    cfg = compose_job("train", f"experiment={name}", *(f"data.{key}={tmp_path / key}" for key in missing))
    values = {key: value for key, value in OmegaConf.to_container(raw("experiment", name)).items()
              if key not in ("defaults", "hydra")}  # hydra: the sweep (experiment=table7's task sweep)
    for key, value in leaves(values):
        assert plain(OmegaConf.select(cfg, key)) == value, key
    datamodule = instantiate(cfg.data, _recursive_=False)
    assert_built(datamodule, cfg.data)
    assert_fields_match(datamodule, cfg.data, skip=("synthetic",))
    weights = cfg.backbone.weights
    try:
        check_weights_available(weights)
    except FileNotFoundError as error:  # the pretrained file is not on this machine: a random trunk instead
        assert not is_random_weights(weights) and "vgg16" in str(error).lower()
        weights = None
    module = instantiate(cfg.task.module, weights=weights, _recursive_=False, _convert_="all")
    assert_built(module, cfg.task.module)
    assert module.hparams["optimizer"] == plain(cfg.task.optimizer)
    assert module.hparams["finetune_layers"] == cfg.finetune.layers
    if cfg.trainer.accelerator == "cpu" or torch.cuda.is_available():
        trainer = instantiate(cfg.trainer, logger=False, enable_progress_bar=False)
        assert trainer.max_epochs == cfg.trainer.max_epochs


@pytest.mark.parametrize("name", configs("experiment_data"))
def test_experiment_data_is_merged_for_its_task(name: str, tmp_path: Path, compose_job: Callable[..., DictConfig]) -> None:
    experiment, task = name.rsplit("_", 1)
    missing = missing_keys(compose_train(f"experiment={experiment}", f"task={task}").data)
    cfg = compose_job("train", f"experiment={experiment}", f"task={task}",
                      *(f"data.{key}={tmp_path / key}" for key in missing))
    for key, value in leaves(OmegaConf.to_container(raw("experiment_data", name))):
        if value != "???":
            assert plain(OmegaConf.select(cfg.data, key)) == value, key
    datamodule = instantiate(cfg.data, _recursive_=False)
    assert_built(datamodule, cfg.data)
    other = "scene" if task == "saliency" else "saliency"
    assert compose_train(f"experiment={experiment}", f"task={other}").data._target_ != cfg.data._target_


def test_paper_experiment() -> None:
    cfg = compose_train("experiment=paper", "data.root=/somewhere")
    assert cfg.backbone.weights == "IMAGENET1K_V1"
    assert cfg.data.batch_size == 5
    assert cfg.trainer.max_epochs == 20
    assert cfg.task.optimizer.lr == pytest.approx(5e-3)
    assert cfg.task.optimizer.weight_decay == 0.0
    assert cfg.data._target_.endswith("SaliconDataModule") and cfg.data.synthetic is False


# ------------------------------------------------------------------------------------- classical models


@pytest.mark.parametrize("name", configs("classical"))
def test_classical_model_instantiates_and_runs(name: str) -> None:
    node = raw("classical", name)
    model = instantiate(node)
    assert_built(model, node)
    assert model.name == name  # the file name is the registry name (benchmark.models, popout.models)
    params = plain(model.params())
    for key, value in OmegaConf.to_container(node).items():
        if key != "_target_":
            assert params[key] == value, key
    shape = (128, 160)  # the smallest images GBVS and Itti-Koch accept
    image = np.random.default_rng(0).integers(0, 256, (*shape, 3), dtype=np.uint8)
    saliency = model(image)
    assert saliency.shape == shape and saliency.dtype == np.float32
    assert np.isfinite(saliency).all()


# ------------------------------------------------------------------------------------------ probe groups


@pytest.mark.parametrize("group,option", STRUCTURED)
def test_structured_section_composes_and_reads(group: str, option: str) -> None:
    from hydra.errors import ConfigCompositionException

    from saliency_probe.probe.model_specs import resolve_model
    from saliency_probe.probe.options import SECTIONS, read_options

    cfg = compose_cfg("probe", f"{group}={option}")
    section = read_options(cfg, group, SECTIONS[group])
    assert type(section) is SECTIONS[group]
    assert plain(dataclasses.asdict(section)) == plain(cfg[group])  # the composed values reach the options
    with pytest.raises(ConfigCompositionException, match="no_such_key"):  # typed: unknown keys are refused
        compose_cfg("probe", f"{group}.no_such_key=1")
    for spec in getattr(section, "models", []):  # map models named by the section (benchmark, popout)
        if spec not in BASELINE_MODELS:
            model = resolve_model(spec, getattr(section, "image_size", 224), section.classical)
            assert model.name == spec
            for key, value in section.classical.get(spec, {}).items():
                assert model.params[key] == value, (spec, key)


@pytest.mark.parametrize(
    "preset,layers,names",
    [("table2", None, None), ("table3", ["conv5_3"], None), ("table7", ["conv5_3"], ["pt", "sp", "sr"])],
)
def test_probe_presets_compose(preset: str, layers: list[str] | None, names: list[str] | None) -> None:
    from saliency_probe.models.backbone import architecture

    base = compose_cfg("probe")
    cfg = compose_cfg("probe", f"probe={preset}")
    vgg16 = architecture("vgg16")  # the presets name layers of any backbone: VGG-16's are the paper's
    resolved = vgg16.ordered(None if cfg.layers is None else list(cfg.layers))
    assert resolved == (layers or vgg16.ordered(base.layers))
    assert base.layers is None and vgg16.ordered(None) == ["conv4_1", "conv4_2", "conv4_3", "conv5_1", "conv5_2",
                                                           "conv5_3"]
    assert architecture("resnet18").ordered(None if cfg.layers is None else list(cfg.layers)) == (
        ["layer4.1"] if layers else ["layer3", "layer4"])
    assert cfg.analyses == "auto" and cfg.top_k == 10 and cfg.threshold == 1.5
    if names is not None:
        assert list(cfg.names) == names


@pytest.mark.parametrize("name", configs("probe"))
def test_every_probe_preset_sets_its_values(name: str) -> None:
    from saliency_probe.models.backbone import architecture

    cfg = compose_cfg("probe", f"probe={name}")
    for key, value in leaves(OmegaConf.to_container(raw("probe", name))):
        assert plain(OmegaConf.select(cfg, key)) == value, key
    assert set(architecture("vgg16").ordered(None if cfg.layers is None else list(cfg.layers))) <= set(
        architecture("vgg16").table.names)


# ----------------------------------------------------------------------------------------- hydra, paths


@pytest.mark.parametrize("entry", ENTRIES)
def test_hydra_run_settings(entry: str) -> None:
    cfg = compose_cfg(entry, return_hydra_config=True)
    job_name = cfg.hydra.job.name
    assert cfg.hydra.run.dir.startswith(f"outputs/{job_name}/")
    assert cfg.hydra.sweep.dir.startswith(f"multirun/{job_name}/")
    assert cfg.hydra.job.chdir is False
    excluded = list(cfg.hydra.job.config.override_dirname.exclude_keys)
    assert excluded == list(raw("hydra", "default").job.config.override_dirname.exclude_keys)
    if entry == "train":  # the excluded keys name real keys or groups of the training config
        for key in excluded:
            assert (CONF / key).is_dir() or OmegaConf.select(cfg, key, default="absent") != "absent", key


@pytest.mark.parametrize("name", configs("hydra/launcher"))
def test_launcher_composes(name: str) -> None:
    cfg = compose_cfg("train", f"hydra/launcher={name}", return_hydra_config=True)
    launcher = cfg.hydra.launcher
    assert launcher._target_ == raw("hydra/launcher", name)._target_
    resolved = OmegaConf.to_container(launcher, resolve=True)  # every interpolation resolves
    if "submitit_folder" in resolved:  # the submitit launchers: job folders inside the sweep folder
        assert resolved["submitit_folder"].startswith(f"{cfg.hydra.sweep.dir}/")
        assert resolved["name"] == cfg.hydra.job.name
    for key, value in OmegaConf.to_container(raw("hydra/launcher", name)).items():
        if not (isinstance(value, str) and "${" in value):
            assert resolved[key] == value, key


@pytest.mark.parametrize("name", configs("hydra/launcher"))
def test_launcher_target_exists(name: str) -> None:
    pytest.importorskip("hydra_plugins.hydra_submitit_launcher", reason="pip install -e '.[slurm]'")
    assert isinstance(get_class(raw("hydra/launcher", name)._target_), type)


@pytest.mark.parametrize("name", configs("paths"))
def test_paths_follow_the_hydra_run(
    name: str, run_dir: Path, monkeypatch: pytest.MonkeyPatch, compose_job: Callable[..., DictConfig]
) -> None:
    monkeypatch.delenv("SALIENCY_PROBE_ROOT", raising=False)
    assert compose_job("train", f"paths={name}").paths.root_dir == "."
    monkeypatch.setenv("SALIENCY_PROBE_ROOT", "/data/project")
    cfg = compose_job("train", f"paths={name}")
    assert Path(cfg.paths.output_dir) == run_dir  # the job's Hydra output folder
    assert cfg.paths.root_dir == "/data/project"
    assert cfg.paths.cache_dir == "/data/project/cache"


@pytest.mark.parametrize("name", configs("cache"))
def test_cache_group_parses(name: str, monkeypatch: pytest.MonkeyPatch, compose_job: Callable[..., DictConfig]) -> None:
    from saliency_probe.feature_cache import CacheOptions
    from saliency_probe.training import validate_train_config

    monkeypatch.setenv("SALIENCY_PROBE_ROOT", "/data/project")
    cfg = compose_job("train", f"cache={name}")
    options = CacheOptions.from_config(cfg)
    assert (options.features, options.dtype) == (raw("cache", name).features, raw("cache", name).dtype)
    assert options.dir == "/data/project/cache/features"  # under paths.cache_dir
    validate_train_config(compose_job("train", f"cache={name}", "cache.features=true"))  # the defaults qualify


@pytest.mark.parametrize("name", sorted(p.stem for p in (CONF / "regions").glob("*.yaml")))
def test_region_category_tables_load_and_map_to_known_categories(name: str) -> None:
    """conf/regions/*.yaml are the class -> category tables of the region builder (docs/regions.md)."""
    from saliency_probe.data.osie_sr import CATEGORIES
    from saliency_probe.data.regions_annotations import load_table

    table = load_table(name)
    assert table.name == name and table.classes
    mapped = {category for category in table.classes.values() if category is not None}
    assert mapped <= set(CATEGORIES) | {"salient region"}, mapped - set(CATEGORIES)
