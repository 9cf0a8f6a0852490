"""Scene attention (Table 8): the split by prediction on a planted case, the bootstrap rows, the scene head
rebuilt from a checkpoint, and the held-out data rebuilt from the checkpoint's training config."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest
import pytorch_lightning as pl
import torch
import torch.nn.functional as F
from conftest import SMALL_SYNTHETIC
from torch import nn
from torch.utils.data import DataLoader

from saliency_probe.models.checkpoint import LoadedCheckpoint
from saliency_probe.models.scene import build_classifier_head
from saliency_probe.probe.options import SceneAttentionOptions, read_options
from saliency_probe.probe.scene_attention import (
    IndexedItems,
    SceneAttentionAnalysis,
    SceneAttentionModule,
    dataset_stems,
    scene_classifier,
    scene_dataset,
    split_rows,
)

FIX = 16  # fixation maps 16x16, attention maps 8x8


class ChannelMean(nn.Module):
    """A planted classifier: class 1 when the mean of channel 0 exceeds 0.5, else class 0."""

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        score = features[:, 0].mean(dim=(-2, -1)) - 0.5
        return torch.stack([-score, score], dim=1)


def planted_items() -> list[dict]:
    """Six images. Attention (mean over 3 channels) peaks where people look on the 'aligned' images and
    elsewhere on the others; channel 0 decides the prediction (class 1 when bright)."""
    rng = np.random.default_rng(3)
    items = []
    plan = [(True, 1, 1.0), (True, 0, 0.0), (True, 1, 1.0), (False, 0, 1.0), (False, 1, 0.0), (False, 0, 1.0)]
    for index, (aligned, label, channel0) in enumerate(plan):
        features = torch.full((3, 8, 8), 0.1)
        features[0] = channel0
        fixations = torch.zeros(FIX, FIX)
        rows, cols = rng.integers(0, 8, 4), rng.integers(0, 8, 4)
        fixations[rows, cols] = 1  # top-left quadrant
        peak = (slice(0, 4), slice(0, 4)) if aligned else (slice(4, 8), slice(4, 8))
        features[1][peak] = 3.0 + index
        items.append({"image": features, "fixations": fixations, "label": torch.tensor(label),
                      "stem": f"img{index}"})
    return items


def naive_nss(attention: torch.Tensor, fixations: torch.Tensor) -> float:
    full = F.interpolate(attention[None, None].double(), size=fixations.shape, mode="bilinear",
                         align_corners=False)[0, 0]
    z = (full - full.mean()) / full.std(unbiased=False)
    return float(z[fixations != 0].mean())


def test_split_by_prediction_on_a_planted_case() -> None:
    items = planted_items()
    module = SceneAttentionModule(nn.Identity(), ChannelMean())
    trainer = pl.Trainer(accelerator="cpu", logger=False, enable_progress_bar=False, enable_model_summary=False)
    trainer.predict(module, dataloaders=DataLoader(IndexedItems(items), batch_size=4), return_predictions=False)
    records = module.result["records"]
    stems = dataset_stems(items)
    assert records[:, 0].tolist() == list(range(6))
    assert [stems[int(position)] for position in records[:, 0]] == [f"img{i}" for i in range(6)]
    expected = [naive_nss(item["image"].mean(0), item["fixations"]) for item in items]
    np.testing.assert_allclose(records[:, 3], expected, rtol=1e-5)
    predicted = records[:, 2].astype(int)
    assert predicted.tolist() == [1, 0, 1, 1, 0, 1]  # channel 0 bright -> class 1
    correct = records[:, 1].astype(int) == predicted
    assert correct.tolist() == [True, True, True, False, False, False]  # aligned images are the correct ones
    rows = split_rows("planted", records[:, 3], correct, n_resamples=999, seed=0)
    assert [row["prediction"] for row in rows] == ["correct", "wrong"]
    assert rows[0]["nss"] == pytest.approx(np.mean(expected[:3])) and rows[0]["nss"] > 1
    assert rows[1]["nss"] == pytest.approx(np.mean(expected[3:])) and rows[1]["nss"] < 0
    assert rows[0]["n_images"] == rows[1]["n_images"] == 3
    for row in rows:
        assert row["ci_low"] <= row["nss"] <= row["ci_high"]


def test_split_rows_counts_bootstrap_and_edge_cases() -> None:
    nss = np.array([1.0, 2.0, 3.0, np.nan, -1.0])
    correct = np.array([True, True, True, True, False])
    rows = split_rows("m", nss, correct, confidence=0.9, n_resamples=2000, seed=1)
    assert rows[0]["n_images"] == 3 and rows[0]["nss"] == 2.0  # the image without fixations is left out
    # the percentile interval of a 3-value mean lies inside [min, max] and is reproducible with the seed
    assert 1.0 <= rows[0]["ci_low"] < 2.0 < rows[0]["ci_high"] <= 3.0
    assert split_rows("m", nss, correct, confidence=0.9, n_resamples=2000, seed=1) == rows
    assert rows[1]["n_images"] == 1 and rows[1]["nss"] == -1.0 and math.isnan(rows[1]["ci_low"])
    empty = split_rows("m", np.array([0.5]), np.array([True]))
    assert empty[1]["n_images"] == 0 and math.isnan(empty[1]["nss"])


def _checkpoint(tmp_path: Path, config: dict, class_names: list[str], hidden: int = 8) -> LoadedCheckpoint:
    torch.manual_seed(0)
    head = build_classifier_head(len(class_names), 0.5, hidden)
    state = {f"classifier.{key}": value for key, value in head.state_dict().items()}
    return LoadedCheckpoint(path=tmp_path / "scene.ckpt", metadata={"task": "scene", "config": config},
                            state_dict=state,
                            hyper_parameters={"class_names": class_names, "hidden_features": hidden, "dropout": 0.5})


def test_scene_classifier_is_rebuilt_from_the_checkpoint(tmp_path: Path) -> None:
    loaded = _checkpoint(tmp_path, {}, ["a", "b", "c"])
    rebuilt = scene_classifier(loaded)
    torch.manual_seed(0)
    reference = build_classifier_head(3, 0.5, 8).eval()
    features = torch.rand(2, 512, 4, 4)
    assert torch.equal(rebuilt(features), reference(features))
    with pytest.raises(ValueError, match="scene.ckpt.*no data config"):
        scene_dataset(loaded, read_options({}, "scene_attention", SceneAttentionOptions))
    loaded.hyper_parameters["hidden_features"] = 16
    with pytest.raises(ValueError, match="scene.ckpt: classifier weights do not fit"):
        scene_classifier(loaded)


def test_held_out_images_come_from_the_checkpoint_training_config(synthetic_root: Path, tmp_path: Path) -> None:
    s = SMALL_SYNTHETIC
    config = {"data": {"_target_": "saliency_probe.data.scene_datamodule.SaliconScenesDataModule",
                       "root": str(tmp_path / "moved"), "image_size": 32, "batch_size": 4, "num_workers": 0,
                       "min_images_per_class": 2, "val_fraction": 0.25, "seed": 0, "synthetic": True,
                       "num_train": s["num_train"], "num_val": s["num_val"], "num_probe": s["num_probe"],
                       "salicon_hw": list(s["salicon_hw"]), "osie_hw": list(s["osie_hw"]),
                       "num_observers": s["num_observers"]}}
    names = ["living_room", "park", "restaurant", "street"]
    loaded = _checkpoint(tmp_path, config, names)
    # the recorded root moved: point at the data
    options = read_options({"scene_attention": {"root": str(synthetic_root)}}, "scene_attention", SceneAttentionOptions)
    held_out, classes, datamodule = scene_dataset(loaded, options)
    assert classes == names and len(held_out) == len(datamodule.val_set) > 0
    train_stems = {datamodule.train_set[i]["stem"] for i in range(len(datamodule.train_set))}
    held_stems = [held_out[i]["stem"] for i in range(len(held_out))]
    assert not train_stems & set(held_stems)  # never trained on
    assert dataset_stems(held_out) == held_stems  # read from the data sets' stems, without loading images
    truth = json.loads((synthetic_root / "truth.json").read_text())
    for i, stem in enumerate(held_stems):  # labels in the checkpoint's class order
        assert names[int(held_out[i]["label"])] == truth["scenes"][stem]
        assert held_out[i]["fixations"].sum() > 0
    assert not (tmp_path / "moved").exists()
    loaded.hyper_parameters["class_names"] = ["park", "street"]
    with pytest.raises(ValueError, match=r"trained on classes \['park', 'street'\]"):
        scene_dataset(loaded, options)


def test_applies_only_to_scene_checkpoints() -> None:
    source = lambda kind, task: type("S", (), {"kind": kind, "info": {"task": task}})()  # noqa: E731
    analysis = SceneAttentionAnalysis()
    assert analysis.name == "scene_attention"
    assert analysis.applies_to({}, [source("weights", None), source("checkpoint", "scene")])
    assert not analysis.applies_to({}, [source("checkpoint", "saliency"), source("random", None)])


def test_options_defaults_seed_and_checks() -> None:
    options = read_options({"seed": 7}, "scene_attention", SceneAttentionOptions)
    assert (options.root, options.split, options.confidence, options.n_resamples, options.seed,
            options.batch_size) == (None, "val", 0.95, 9999, 7, None)
    with pytest.raises(ValueError, match="scene_attention.split must be one of"):
        read_options({"scene_attention": {"split": "test"}}, "scene_attention", SceneAttentionOptions)
    with pytest.raises(ValueError, match="0 < confidence < 1"):
        read_options({"scene_attention": {"confidence": 1.5}}, "scene_attention", SceneAttentionOptions)
