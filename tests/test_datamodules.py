"""Lightning data modules over the synthetic set (real formats): loaders, seeded order, synthetic handling."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import pytorch_lightning as pl
import torch
from conftest import SMALL_SYNTHETIC

from saliency_probe.data.datamodules import OsieSrDataModule, SaliconDataModule
from saliency_probe.data.salicon import SaliconDataset

SIZES = {key: value for key, value in SMALL_SYNTHETIC.items() if key != "seed"}


def salicon_module(root: Path, **overrides) -> SaliconDataModule:
    options = {"image_size": 32, "batch_size": 4, "num_workers": 0, "synthetic": True, "seed": 0, **SIZES}
    return SaliconDataModule(root, **{**options, **overrides})


def epoch_stems(module: SaliconDataModule) -> list[str]:
    return [stem for batch in module.train_dataloader() for stem in batch["stem"]]


def test_salicon_loaders(synthetic_root: Path) -> None:
    module = salicon_module(synthetic_root)
    module.setup("fit")
    batch = next(iter(module.train_dataloader()))
    height, width = SMALL_SYNTHETIC["salicon_hw"]
    assert batch["image"].shape == (4, 3, 32, 32) and batch["fixations"].shape == (4, height, width)
    assert batch["fixations"].dtype == torch.float32 and set(batch["fixations"].unique().tolist()) == {0.0, 1.0}
    val_stems = [stem for batch in module.val_dataloader() for stem in batch["stem"]]
    assert val_stems == SaliconDataset(synthetic_root / "salicon", "val").stems  # not shuffled
    summary = module.summary()
    assert summary["edition"] == "2017" and summary["train_images"] == SMALL_SYNTHETIC["num_train"]
    assert summary["train_clipped_fixations"] > 0


def test_train_order_is_shuffled_and_seeded(synthetic_root: Path) -> None:
    first, again = salicon_module(synthetic_root), salicon_module(synthetic_root)
    other = salicon_module(synthetic_root, synthetic={**SMALL_SYNTHETIC}, seed=5, num_train=None, num_val=None,
                           num_probe=None, salicon_hw=None, osie_hw=None, num_observers=None)
    for module in (first, again, other):
        module.setup("fit")
    order = epoch_stems(first)
    assert order == epoch_stems(again) and sorted(order) == first.dataset("train").stems
    assert order != first.dataset("train").stems  # shuffled
    assert epoch_stems(other) != order  # another loader seed, same data (the dict fixes the data's seed)
    loader = first.train_dataloader()
    epochs = [[stem for batch in loader for stem in batch["stem"]] for _ in range(2)]
    assert epochs[0] == order and epochs[1] != order  # the next epoch of one loader draws a new order


def test_limits_and_2015_edition(synthetic_root: Path) -> None:
    module = salicon_module(synthetic_root, limit_train=5, limit_val=2)
    module.setup("fit")
    assert len(module.dataset("train")) == 5 and len(module.dataset("val")) == 2
    legacy = salicon_module(synthetic_root, edition="2015", json_dir=synthetic_root / "salicon")
    legacy.setup("fit")
    modern = salicon_module(synthetic_root)
    modern.setup("fit")
    assert legacy.dataset("val").edition == "2015"
    for index in range(len(modern.dataset("val"))):
        np.testing.assert_array_equal(legacy.dataset("val").fixation_map(index), modern.dataset("val").fixation_map(index))


def test_synthetic_is_generated_on_first_use_and_checked(tmp_path: Path, synthetic_root: Path) -> None:
    tiny = {"num_train": 2, "num_val": 1, "num_probe": 1, "salicon_hw": (40, 48), "osie_hw": (40, 48),
            "num_observers": 2}
    fresh = SaliconDataModule(tmp_path / "fresh", image_size=32, batch_size=2, synthetic=True, seed=1, **tiny)
    fresh.prepare_data()
    assert (tmp_path / "fresh" / "manifest.json").is_file()
    fresh.setup("fit")
    assert len(fresh.dataset("train")) == 2
    with pytest.raises(ValueError, match=r"num_train: folder has 12, requested 99"):
        salicon_module(synthetic_root, num_train=99).setup("fit")
    with pytest.raises(ValueError, match="synthetic is off"):
        SaliconDataModule(synthetic_root, num_train=3)
    with pytest.raises(FileNotFoundError, match=r"images/train.*expected"):
        SaliconDataModule(tmp_path / "nothing", image_size=32).setup("fit")


class _Stems(pl.LightningModule):
    def predict_step(self, batch: dict, batch_index: int) -> list:
        assert isinstance(batch["region_masks"], list) and batch["region_masks"][0].dtype == torch.bool
        return list(zip(batch["stem"], [len(c) for c in batch["region_categories"]], strict=True))


def test_osie_sr_predict(synthetic_root: Path) -> None:
    module = OsieSrDataModule(root=synthetic_root, image_size=32, batch_size=3, synthetic=True, **SMALL_SYNTHETIC)
    module.setup("predict")
    assert module.categories[:2] == ["person head", "person part"]
    batch = next(iter(module.predict_dataloader()))
    height, width = SMALL_SYNTHETIC["osie_hw"]
    assert batch["image"].shape == (3, 3, 32, 32) and batch["fixations"].shape == (3, height, width)
    assert batch["stem"] == ["1001", "1002", "1003"] and batch["index"].tolist() == [0, 1, 2]
    trainer = pl.Trainer(accelerator="cpu", devices=1, logger=False, enable_progress_bar=False,
                         enable_model_summary=False)
    outputs = [pair for batch_pairs in trainer.predict(_Stems(), datamodule=module) for pair in batch_pairs]
    assert [stem for stem, _ in outputs] == module.dataset.stems  # every image once, in order, no padding
    assert all(count > 0 for _, count in outputs)
    explicit = OsieSrDataModule(synthetic_root / "osie", synthetic_root / "osie_sr", image_size=32, limit=2)
    assert explicit.dataset.stems == ["1001", "1002"] and explicit.summary()["images"] == 2


def test_loaders_work_in_worker_processes(synthetic_root: Path) -> None:
    module = salicon_module(synthetic_root, num_workers=1)
    module.setup("validate")
    assert sum(len(batch["stem"]) for batch in module.val_dataloader()) == SMALL_SYNTHETIC["num_val"]
    probe = OsieSrDataModule(root=synthetic_root, image_size=32, batch_size=4, num_workers=1, synthetic=True,
                             **SMALL_SYNTHETIC)
    assert [s for batch in probe.predict_dataloader() for s in batch["stem"]] == probe.dataset.stems
