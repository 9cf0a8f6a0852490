"""The trunk's layer table, weight loading and the freezing rule."""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from torchvision.models import vgg16

from saliency_probe.callbacks import FreezeLayers
from saliency_probe.models.backbone import (
    CONV_LAYER_NAMES,
    TORCHVISION_VGG16_FILE,
    VGG16_CONV_LAYERS,
    build_trunk,
    parse_finetune_layers,
    trainable_conv_layers,
)
from saliency_probe.models.saliency import SaliencyModule

#: The issue's expected trainable parameter counts (conv layers + the 512-weight head).
EXPECTED_TRAINABLE = {
    "0": 512,
    "1": 2360320,
    "2": 4720128,
    "3": 7079936,
    "4": 9439744,
    "5": 11799552,
    "6": 12979712,
    "all": 14715200,
}


def test_layer_table_matches_torchvision() -> None:
    features = vgg16(weights=None).features
    for name, index in VGG16_CONV_LAYERS.items():
        assert isinstance(features[index], torch.nn.Conv2d), name
        assert isinstance(features[index + 1], torch.nn.ReLU), name
    assert len(CONV_LAYER_NAMES) == 13


def test_trunk_output_is_conv5_3_post_relu() -> None:
    trunk = build_trunk(None)
    reference = vgg16(weights=None).features
    reference.load_state_dict(trunk.features.state_dict(), strict=False)
    images = torch.randn(2, 3, 64, 64)
    out = trunk(images)
    assert out.shape == (2, 512, 4, 4)
    expected = reference[:30](images)
    assert torch.allclose(out, expected)
    assert (out >= 0).all()


@pytest.mark.parametrize("value,expected", [(0, []), (1, ["conv5_3"]), ("2", ["conv5_2", "conv5_3"]),
                                            (6, CONV_LAYER_NAMES[7:]), ("all", CONV_LAYER_NAMES)])
def test_trainable_layers_rule(value: int | str, expected: list[str]) -> None:
    assert trainable_conv_layers(value) == expected


@pytest.mark.parametrize("bad", [7, -1, "none", "ALLL", 3.5])
def test_invalid_finetune_layers_lists_valid_values(bad: object) -> None:
    with pytest.raises(ValueError, match="0, 1, 2, 3, 4, 5, 6, all"):
        parse_finetune_layers(bad)  # type: ignore[arg-type]


@pytest.mark.parametrize("layers", list(EXPECTED_TRAINABLE))
def test_freeze_callback_counts(layers: str) -> None:
    module = SaliencyModule(weights=None, finetune_layers=layers)
    FreezeLayers(layers).freeze_before_training(module)
    trainable = sum(p.numel() for p in module.parameters() if p.requires_grad)
    assert trainable == EXPECTED_TRAINABLE[layers]


def test_frozen_layers_do_not_change_after_a_step() -> None:
    torch.manual_seed(0)
    module = SaliencyModule(weights=None, finetune_layers=2)
    FreezeLayers(2).freeze_before_training(module)
    before = {name: p.detach().clone() for name, p in module.named_parameters()}
    optimizer = module.configure_optimizers()
    images = torch.randn(2, 3, 64, 64)
    fixations = torch.zeros(2, 48, 64)
    fixations[:, 10, 20] = 1
    fixations[:, 30, 40] = 1
    loss = module.loss(module(images), fixations)
    loss.backward()
    optimizer.step()
    changed = {name for name, p in module.named_parameters() if not torch.equal(before[name], p)}
    assert changed == {"trunk.features.26.weight", "trunk.features.26.bias", "trunk.features.28.weight",
                       "trunk.features.28.bias", "head.weight"}


def test_local_state_dict_file_loads(tmp_path: Path) -> None:
    source = vgg16(weights=None)
    path = tmp_path / "vgg16.pth"
    torch.save(source.state_dict(), path)
    trunk = build_trunk(str(path))
    assert torch.equal(trunk.features[28].weight, source.features[28].weight)


def test_bad_weights_file_names_the_file(tmp_path: Path) -> None:
    path = tmp_path / "broken.pth"
    path.write_bytes(b"not a checkpoint")
    with pytest.raises(ValueError, match="broken.pth"):
        build_trunk(str(path))
    with pytest.raises(FileNotFoundError, match="missing.pth"):
        build_trunk(str(tmp_path / "missing.pth"))
    with pytest.raises(ValueError, match="IMAGENET1K_V1"):
        build_trunk("IMAGENET_V9")


def test_offline_pretrained_weights_fail_fast_naming_the_file(tmp_path: Path) -> None:
    env = {"TORCH_HOME": str(tmp_path), "PATH": "/usr/bin:/bin", "WANDB_MODE": "disabled"}
    start = time.monotonic()
    result = subprocess.run(
        [sys.executable, "-c", "from saliency_probe.models.backbone import build_trunk; build_trunk('IMAGENET1K_V1')"],
        capture_output=True, text=True, env=env, timeout=120,
    )
    assert result.returncode != 0
    assert TORCHVISION_VGG16_FILE in result.stderr
    assert str(tmp_path / "hub" / "checkpoints") in result.stderr
    assert time.monotonic() - start < 60
