"""The scene task: class weights, label reports, a learning step, trunk compatibility with the saliency model."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from test_train import SMALL, fit_fixed_batch, run_in_process, small_data

from saliency_probe.callbacks import FreezeLayers
from saliency_probe.data.scene_datamodule import SaliconScenesDataModule, stratified_split
from saliency_probe.data.scenes import class_weights, read_scene_labels
from saliency_probe.models.checkpoint import load_checkpoint
from saliency_probe.models.saliency import SaliencyModule
from saliency_probe.models.scene import SceneModule


def test_class_weights_from_a_known_label_list() -> None:
    labels = ["beach"] * 6 + ["street"] * 3 + ["kitchen"] * 1
    weights = class_weights(labels, ["beach", "kitchen", "street"])
    # n / (K * n_c) with n = 10, K = 3
    assert weights == pytest.approx({"beach": 10 / 18, "kitchen": 10 / 3, "street": 10 / 9})


def test_label_file_reports_unknown_images_and_small_classes(tmp_path: Path) -> None:
    path = tmp_path / "scenes.csv"
    rows = ["image,scene"] + [f"img{i},beach" for i in range(5)] + ["img5,street", "ghost1,beach", "ghost2,beach"]
    path.write_text("\n".join(rows) + "\n")
    with pytest.warns(UserWarning) as record:
        labels = read_scene_labels(path, known_stems=[f"img{i}" for i in range(6)], min_images_per_class=3)
    messages = " ".join(str(w.message) for w in record)
    assert "ghost1" in messages and str(path) in messages
    assert "street" in messages and "fewer than 3" in messages
    assert labels.unknown_images == ["ghost1", "ghost2"]
    assert labels.dropped_classes == {"street": 1}
    assert labels.classes == ["beach"] and len(labels.labels) == 5


def test_label_file_with_a_bad_header_names_the_file(tmp_path: Path) -> None:
    path = tmp_path / "labels.csv"
    path.write_text("file,label\na,b\n")
    with pytest.raises(ValueError, match="labels.csv"):
        read_scene_labels(path)


def test_stratified_split_keeps_class_shares() -> None:
    labels = ["a"] * 8 + ["b"] * 4
    train, val = stratified_split(labels, 0.25, seed=0)
    assert sorted(train + val) == list(range(12))
    assert [labels[i] for i in val].count("a") == 2 and [labels[i] for i in val].count("b") == 1


def test_scene_datamodule_uses_a_given_split_column(synthetic_root: Path, tmp_path: Path) -> None:
    from conftest import SMALL_SYNTHETIC

    source = (synthetic_root / "scenes.csv").read_text().splitlines()
    rows = ["image,scene,split"] + [f"{line},{'val' if i % 3 == 0 else 'train'}" for i, line in enumerate(source[1:])]
    labels_file = tmp_path / "scenes_split.csv"
    labels_file.write_text("\n".join(rows) + "\n")
    datamodule = SaliconScenesDataModule(root=str(synthetic_root), labels_file=str(labels_file), image_size=32,
                                         min_images_per_class=1, synthetic=True, **SMALL_SYNTHETIC)
    kwargs = datamodule.module_kwargs()
    n_val = sum(1 for i in range(len(source) - 1) if i % 3 == 0)
    assert len(datamodule.val_set) == n_val and len(datamodule.train_set) == len(source) - 1 - n_val
    counts = kwargs["class_counts"]
    n, k = sum(counts.values()), len(counts)
    assert kwargs["class_weights"] == pytest.approx([n / (k * counts[name]) for name in kwargs["class_names"]])
    item = datamodule.train_set[0]
    assert item["label"].dtype == torch.long and item["image"].shape == (3, 32, 32)


def test_scene_training_step_lowers_the_loss() -> None:
    torch.manual_seed(0)
    module = SceneModule(class_names=["a", "b", "c"], class_weights=[1.0, 2.0, 0.5], finetune_layers=0,
                         dropout=0.0, hidden_features=256,
                         optimizer={"_target_": "torch.optim.Adam", "lr": 1e-4})
    FreezeLayers(0).freeze_before_training(module)
    optimizer = module.configure_optimizers()
    images = torch.randn(6, 3, 64, 64)
    labels = torch.tensor([0, 1, 2, 0, 1, 2])
    losses = fit_fixed_batch(module, optimizer, images, labels, steps=8)
    assert losses[-1] < 0.9 * losses[0]


def test_weighted_loss_matches_cross_entropy_by_hand() -> None:
    module = SceneModule(class_names=["a", "b"], class_weights=[0.75, 1.5], finetune_layers=0, hidden_features=16)
    logits = torch.tensor([[2.0, 0.0], [0.0, 1.0], [1.0, 1.0]])
    labels = torch.tensor([0, 1, 0])
    log_p = torch.log_softmax(logits, dim=1)
    weights = torch.tensor([0.75, 1.5, 0.75])
    expected = -(weights * log_p[torch.arange(3), labels]).sum() / weights.sum()
    assert module.loss(logits, labels) == pytest.approx(float(expected))


def test_scene_checkpoint_trunk_loads_into_the_saliency_model(tmp_path: Path, synthetic_root: Path) -> None:
    summary = run_in_process(tmp_path, [*SMALL, *small_data(synthetic_root), "task=scene", "finetune.layers=1",
                                           "task.hidden_features=64"])
    assert summary["task"] == "scene"
    saved = json.loads((tmp_path / "summary.json").read_text())
    counts, weights = saved["class_counts"], saved["class_weights"]
    n, k = sum(counts.values()), len(counts)
    assert weights == pytest.approx({name: n / (k * c) for name, c in counts.items()})
    assert "val/acc" in saved["metrics"]
    checkpoint = load_checkpoint(summary["best_checkpoint"])
    assert checkpoint.task == "scene" and checkpoint.saliency_head() is None
    trunk_state = {k: v for k, v in checkpoint.state_dict.items() if k.startswith("trunk.")}
    saliency = SaliencyModule(weights=None)
    assert set(trunk_state) == {k for k in saliency.state_dict() if k.startswith("trunk.")}
    missing, unexpected = saliency.load_state_dict(trunk_state, strict=False)
    assert missing == ["head.weight"] and unexpected == []
    assert torch.equal(saliency.trunk.conv("conv5_3").weight, trunk_state["trunk.features.28.weight"])
