"""Trunks other than VGG-16 (docs/backbones.md): layer tables, exact trainable counts from torchvision's module
tree, frozen BatchNorm statistics, weights, checkpoints and bad input."""

from __future__ import annotations

from pathlib import Path

import pytest
import pytorch_lightning as pl
import torch
import torchvision
from torch import nn
from torch.utils.data import DataLoader

from saliency_probe.callbacks import FreezeLayers
from saliency_probe.models.backbone import (
    VGG16_CONV_LAYERS,
    BackboneSpec,
    architecture,
    build_trunk,
    check_weights_available,
    layer_table,
    parse_finetune_layers,
)
from saliency_probe.models.saliency import SaliencyModule
from saliency_probe.models.scene import SceneModule


def resnet_blocks(model: nn.Module) -> list[nn.Module]:
    """Every residual block of a torchvision ResNet, network order (from its module tree)."""
    return [block for stage in (model.layer1, model.layer2, model.layer3, model.layer4) for block in stage]


def count(parameters) -> int:
    return sum(parameter.numel() for parameter in parameters)


# ------------------------------------------------------------------------------------------------------------
# layer tables
# ------------------------------------------------------------------------------------------------------------


def test_vgg16_table_is_the_paper_table() -> None:
    table = layer_table("vgg16")
    assert {layer.name: layer.node for layer in table.layers} == {
        name: f"features.{index + 1}" for name, index in VGG16_CONV_LAYERS.items()}
    assert [layer.channels for layer in table.layers][-3:] == [512, 512, 512]
    assert table.get("conv5_3").stride == 16 and table.get("conv4_1").stride == 8
    assert table.default_layers() == ["conv4_1", "conv4_2", "conv4_3", "conv5_1", "conv5_2", "conv5_3"]
    assert table.head == "conv5_3" and table.valid_finetune() == ("0", "1", "2", "3", "4", "5", "6", "all")


def test_vgg19_table_is_built_from_the_model() -> None:
    table = layer_table("vgg19")
    features = torchvision.models.vgg19(weights=None).features
    convs = [index for index, module in enumerate(features) if isinstance(module, nn.Conv2d)]
    assert [layer.node for layer in table.layers] == [f"features.{index + 1}" for index in convs]
    assert table.names[-4:] == ["conv5_1", "conv5_2", "conv5_3", "conv5_4"] and table.head == "conv5_4"
    assert table.max_finetune == 8  # the conv layers of the last two blocks, as VGG-16's 6


@pytest.mark.parametrize("name,blocks,channels", [("resnet18", [2, 2, 2, 2], 512), ("resnet50", [3, 4, 6, 3], 2048)])
def test_resnet_table_has_every_block_post_relu(name: str, blocks: list[int], channels: int) -> None:
    table = layer_table(name)
    expected = [f"layer{stage + 1}.{index}" for stage, n in enumerate(blocks) for index in range(n)]
    assert table.names == expected and list(table.units) == expected
    last_relu = "relu_1" if name == "resnet18" else "relu_2"  # BasicBlock / Bottleneck: the ReLU after the add
    assert all(layer.node == f"{layer.name}.{last_relu}" for layer in table.layers)
    assert [table.get(f"layer{s}").stride for s in (1, 2, 3, 4)] == [4, 8, 16, 32]
    assert table.get("layer4").node == table.layers[-1].node and table.layers[-1].channels == channels
    assert table.default_layers() == [n for n in expected if n.startswith(("layer3", "layer4"))]


def test_resnet_layers_are_the_block_outputs_after_relu() -> None:
    torch.manual_seed(0)
    trunk = build_trunk(None, "resnet18").eval()
    images = torch.randn(2, 3, 64, 64)
    with torch.no_grad():
        got = trunk.extract(images, [trunk.layer("layer2.1").node, trunk.layer("layer4").node])
    seen: dict[str, torch.Tensor] = {}
    for name in ("layer2.1", "layer4.1"):  # hooks on the blocks of a plain forward
        trunk.get_submodule(name).register_forward_hook(lambda m, i, o, name=name: seen.__setitem__(name, o.clone()))
    with torch.no_grad():
        out = trunk(images)
    torch.testing.assert_close(got["layer2.1.relu_1"], seen["layer2.1"], rtol=0, atol=0)
    torch.testing.assert_close(out, seen["layer4.1"], rtol=0, atol=0)
    assert (out >= 0).all() and out.shape == (2, 512, 2, 2)


def test_any_graph_node_is_accepted_by_name() -> None:
    arch = architecture("resnet18")
    layer = arch.layer("layer3.0.conv1")
    assert (layer.node, layer.channels, layer.stride) == ("layer3.0.conv1", 256, 16)
    assert arch.ordered(["layer4", "layer1.0.relu", "layer3.0.conv1"]) == ["layer1.0.relu", "layer3.0.conv1", "layer4"]
    assert arch.ordered(["last"]) == ["layer4.1"]


# ------------------------------------------------------------------------------------------------------------
# fine-tuning: exact counts from torchvision's module tree
# ------------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("name,blocks", [("resnet18", 8), ("resnet50", 16)])
def test_resnet_trainable_counts_equal_the_module_tree(name: str, blocks: int) -> None:
    reference = getattr(torchvision.models, name)(weights=None)
    tree = resnet_blocks(reference)
    assert len(tree) == blocks
    head = reference.fc.in_features  # the 1x1 head without bias: one weight per channel of the last block
    trunk = count(p for key, p in reference.named_parameters() if not key.startswith("fc."))
    expected = {str(k): count(p for block in tree[blocks - k:] for p in block.parameters()) + head
                for k in range(blocks + 1)}
    expected["0"] = head
    expected["all"] = trunk + head
    module = SaliencyModule(weights=None, backbone=name)
    got = {}
    for layers in expected:
        callback = FreezeLayers(layers)
        callback.freeze_before_training(module)
        got[layers] = count(p for p in module.parameters() if p.requires_grad)
        if layers not in ("0", "all"):
            assert callback.trainable == [f"layer{s}.{i}" for s, stage in enumerate(
                (reference.layer1, reference.layer2, reference.layer3, reference.layer4), 1)
                for i in range(len(stage))][blocks - int(layers):]
    assert got == expected


@pytest.mark.parametrize("name,bad,message", [
    ("resnet18", 9, "resnet18 has 8 blocks: 0..8 or all"),
    ("resnet50", "17", "resnet50 has 16 blocks: 0..16 or all"),
    ("vgg19", 9, "vgg19 has 8 conv layers: 0..8 or all"),
])
def test_invalid_finetune_layers_give_the_backbone_range(name: str, bad: object, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        parse_finetune_layers(bad, name)  # type: ignore[arg-type]


def test_frozen_batchnorm_statistics_and_weights_do_not_move(tmp_path: Path) -> None:
    """resnet18, finetune.layers=2: two epochs of Lightning training with a validation inside each epoch (so
    ``model.train()`` runs mid-epoch); frozen BatchNorm statistics and weights stay, layer4's move."""
    torch.manual_seed(0)
    module = SaliencyModule(weights=None, finetune_layers=2, backbone="resnet18")
    batches = []
    for _ in range(4):
        fixations = torch.zeros(2, 64, 64)
        fixations[:, torch.randint(0, 64, (12,)), torch.randint(0, 64, (12,))] = 1
        batches.append({"image": torch.randn(2, 3, 64, 64), "fixations": fixations})
    loader = DataLoader(batches, batch_size=None)
    before = {key: value.detach().clone() for key, value in module.state_dict().items()}
    trainer = pl.Trainer(max_epochs=2, val_check_interval=2, limit_val_batches=1, num_sanity_val_steps=1,
                         callbacks=[FreezeLayers(2)], logger=False, enable_checkpointing=False,
                         enable_progress_bar=False, enable_model_summary=False, accelerator="cpu",
                         default_root_dir=str(tmp_path))
    trainer.fit(module, train_dataloaders=loader, val_dataloaders=loader)
    after = module.state_dict()
    trainable = ("trunk.layer4.", "head.")
    batchnorms = [name for name, m in module.named_modules() if isinstance(m, nn.BatchNorm2d)]
    assert len(batchnorms) == 20
    for name in batchnorms:
        for stat in ("running_mean", "running_var", "weight", "bias"):
            key = f"{name}.{stat}"
            moved = not torch.equal(before[key], after[key])
            assert moved == name.startswith(trainable), key
    for key, value in module.named_parameters():
        assert (not torch.equal(before[key], value.detach())) == key.startswith(trainable), key
        assert value.requires_grad == key.startswith(trainable), key


# ------------------------------------------------------------------------------------------------------------
# weights
# ------------------------------------------------------------------------------------------------------------


def test_resnet_state_dict_file_loads(tmp_path: Path) -> None:
    source = torchvision.models.resnet18(weights=None)
    path = tmp_path / "resnet18.pth"
    torch.save(source.state_dict(), path)  # torchvision's keys, fc included (dropped)
    trunk = build_trunk(str(path), "resnet18")
    assert torch.equal(trunk.layer4[1].conv2.weight, source.layer4[1].conv2.weight)
    assert torch.equal(trunk.bn1.running_var, source.bn1.running_var)


def test_weights_of_another_architecture_name_both(tmp_path: Path) -> None:
    resnet = tmp_path / "r18.pth"
    torch.save(torchvision.models.resnet18(weights=None).state_dict(), resnet)
    vgg = tmp_path / "v11.pth"
    torch.save(build_trunk(None, "vgg11").state_dict(), vgg)  # VGG-11 features.* keys
    with pytest.raises(ValueError, match=r"holds vgg11 weights.*not resnet18"):
        build_trunk(str(vgg), "resnet18")
    with pytest.raises(ValueError, match=r"holds resnet18 weights.*not resnet50"):
        build_trunk(str(resnet), "resnet50")
    with pytest.raises(ValueError, match=r"expected a torchvision VGG-16 state_dict.*holds resnet18 weights"):
        build_trunk(str(resnet), "vgg16")


def test_offline_torchvision_weights_fail_naming_the_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TORCH_HOME", str(tmp_path))
    monkeypatch.delenv("SALIENCY_PROBE_ALLOW_DOWNLOAD", raising=False)
    file_name = Path(torchvision.models.ResNet50_Weights.IMAGENET1K_V2.url).name
    with pytest.raises(FileNotFoundError, match=file_name) as error:
        check_weights_available("IMAGENET1K_V2", {"name": "resnet50"})
    assert str(tmp_path / "hub" / "checkpoints") in str(error.value)
    with pytest.raises(ValueError, match="IMAGENET1K_V1"):  # a name of another model's enum lists the valid ones
        check_weights_available("IMAGENET1K_SWAG_E2E_V1", "resnet18")


def test_unknown_backbone_or_layer_lists_the_valid_ones() -> None:
    with pytest.raises(ValueError, match=r"unknown backbone 'resnet17'.*resnet18.*densenet161.*custom"):
        BackboneSpec.from_config({"name": "resnet17"})
    with pytest.raises(ValueError, match=r"unknown layer\(s\) \['layer5'\] for resnet18.*layer4\.1"):
        architecture("resnet18").ordered(["layer5"])
    with pytest.raises(ValueError, match=r"unknown VGG-16 layer\(s\) \['conv6_1'\].*conv1_1"):
        architecture("vgg16").ordered(["conv6_1"])
    with pytest.raises(ValueError, match="backbone.head_layer='layer9'.*layer4.1"):
        architecture({"name": "resnet18", "head_layer": "layer9"})


# ------------------------------------------------------------------------------------------------------------
# heads
# ------------------------------------------------------------------------------------------------------------


def test_heads_read_the_head_layer() -> None:
    torch.manual_seed(0)
    images = torch.randn(2, 3, 64, 64)
    saliency = SaliencyModule(weights=None, backbone="resnet18").eval()
    assert saliency.head.weight.shape == (1, 512, 1, 1) and saliency(images).shape == (2, 2, 2)
    earlier = SaliencyModule(weights=None, backbone={"name": "resnet18", "head_layer": "layer3"}).eval()
    assert earlier.head.weight.shape == (1, 256, 1, 1) and earlier(images).shape == (2, 4, 4)
    FreezeLayers(1).freeze_before_training(earlier)  # counted back from the head's layer: layer3.1
    assert {n.split(".")[1] for n, p in earlier.trunk.named_parameters() if p.requires_grad} == {"1"}
    assert all(p.requires_grad for p in earlier.trunk.layer3[1].parameters())
    scene = SceneModule(["a", "b", "c"], [1.0, 1.0, 1.0], backbone="resnet18", hidden_features=16).eval()
    assert isinstance(scene.classifier[1], nn.AdaptiveAvgPool2d) and scene.classifier[3].in_features == 512
    assert scene(images).shape == (2, 3)
    vgg = SceneModule(["a", "b"], [1.0, 1.0], hidden_features=16)
    assert isinstance(vgg.classifier[0], nn.MaxPool2d) and vgg.classifier[3].in_features == 512 * 49


# ------------------------------------------------------------------------------------------------------------
# checkpoints record the backbone
# ------------------------------------------------------------------------------------------------------------


def test_resnet18_training_run_records_and_rebuilds_its_backbone(tmp_path: Path, synthetic_root: Path) -> None:
    from test_train import SMALL, run_in_process, small_data

    from saliency_probe.models.checkpoint import load_checkpoint
    from saliency_probe.models.trunks import ResNetTrunk

    summary = run_in_process(tmp_path, [*SMALL, *small_data(synthetic_root), "backbone=resnet18", "finetune.layers=1"])
    reference = torchvision.models.resnet18(weights=None)
    assert summary["backbone"] == "resnet18"
    assert summary["trainable_params"] == count(reference.layer4[1].parameters()) + 512
    loaded = load_checkpoint(summary["best_checkpoint"])
    record = loaded.metadata["backbone"]
    assert record["name"] == "resnet18" and record["weights"] is None and record["head_layer"] == "layer4.1"
    assert record["layers"] == layer_table("resnet18").as_list()
    assert loaded.metadata["trunk_layers"] == layer_table("resnet18").names
    trunk = loaded.trunk()
    assert isinstance(trunk, ResNetTrunk) and loaded.backbone.name == "resnet18"
    assert torch.equal(trunk.layer4[1].conv2.weight, loaded.state_dict["trunk.layer4.1.conv2.weight"])
    assert torch.equal(trunk.layer1[0].bn1.running_mean, loaded.state_dict["trunk.layer1.0.bn1.running_mean"])
    assert loaded.saliency_head().weight.shape == (1, 512, 1, 1)
