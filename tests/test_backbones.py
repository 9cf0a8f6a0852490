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
    assert table.default_layers() == ["layer3", "layer4"]  # the last two stages' outputs


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



def fit_two_epochs(backbone: str, layers: int, tmp_path: Path, batches: int, side: int, sanity_steps: int
                   ) -> tuple[SaliencyModule, dict[str, torch.Tensor]]:
    """A saliency module of ``backbone`` with ``finetune.layers=layers`` after two Lightning epochs on random
    batches with a validation inside each epoch (``model.train()`` runs mid-epoch); also its state before."""
    torch.manual_seed(0)
    module = SaliencyModule(weights=None, finetune_layers=layers, backbone=backbone)
    items = []
    for _ in range(batches):
        fixations = torch.zeros(2, 64, 64)
        fixations[:, torch.randint(0, 64, (12,)), torch.randint(0, 64, (12,))] = 1
        items.append({"image": torch.randn(2, 3, side, side), "fixations": fixations})
    loader = DataLoader(items, batch_size=None)
    before = {key: value.detach().clone() for key, value in module.state_dict().items()}
    trainer = pl.Trainer(max_epochs=2, val_check_interval=2, limit_val_batches=1, num_sanity_val_steps=sanity_steps,
                         callbacks=[FreezeLayers(layers)], logger=False, enable_checkpointing=False,
                         enable_progress_bar=False, enable_model_summary=False, accelerator="cpu",
                         default_root_dir=str(tmp_path))
    trainer.fit(module, train_dataloaders=loader, val_dataloaders=loader)
    return module, before

def test_frozen_batchnorm_statistics_and_weights_do_not_move(tmp_path: Path) -> None:
    """resnet18, finetune.layers=2: two epochs of Lightning training with a validation inside each epoch (so
    ``model.train()`` runs mid-epoch); frozen BatchNorm statistics and weights stay, layer4's move."""
    module, before = fit_two_epochs("resnet18", 2, tmp_path, batches=4, side=64, sanity_steps=1)
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
    from saliency_probe.models.checkpoint import load_checkpoint
    from saliency_probe.models.trunks import ResNetTrunk

    summary = train_in(tmp_path, synthetic_root, ["backbone=resnet18", "finetune.layers=1"])
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


# ------------------------------------------------------------------------------------------------------------
# the probe on ResNet-18 against an independent reference
# ------------------------------------------------------------------------------------------------------------


def test_resnet18_probe_equals_an_independent_reference(tmp_path: Path, synthetic_root: Path) -> None:
    """Two ResNet-18 layers probed through probe.py's code equal forward hooks on torchvision's blocks +
    full-resolution bilinear maps + Eq. 1 (tests/test_probe.py's VGG-16 reference) to 1e-5."""
    from test_probe import csv_rows, reference_layer_statistics, run_in, synthetic_overrides

    torch.manual_seed(7)
    net = torchvision.models.resnet18(weights=None).eval()
    weights = tmp_path / "resnet18_random.pth"
    torch.save(net.state_dict(), weights)
    run_in(tmp_path / "run", [
        *synthetic_overrides(synthetic_root, image_size=224), "backbone=resnet18", f"backbone.weights={weights}",
        "layers=[layer4,layer3.1]", "figures.enabled=false", "controls.random_trunk=false",
        "controls.shuffled_regions=false",
    ])
    rows = csv_rows(tmp_path / "run")
    blocks = {"layer3.1": net.layer3[1], "layer4": net.layer4[1]}

    def extract(image: torch.Tensor) -> dict[str, torch.Tensor]:
        seen: dict[str, torch.Tensor] = {}
        hooks = [block.register_forward_hook(lambda m, i, o, name=name: seen.__setitem__(name, o.clone()))
                 for name, block in blocks.items()]
        net(image)
        for hook in hooks:
            hook.remove()
        return seen

    expected = reference_layer_statistics(synthetic_root, extract, list(blocks))
    assert {key[1] for key in rows} == {"layer3.1", "layer4"}
    for layer, categories in expected.items():
        assert {key[2] for key in rows if key[1] == layer} == set(categories) and len(categories) >= 8
        for category, (top10, above, regions) in categories.items():
            row = rows[("resnet18_random", layer, category)]
            assert float(row["top10_mean_nss"]) == pytest.approx(top10, rel=1e-5, abs=1e-6)
            assert int(row["n_above_threshold"]) == above
            assert int(row["n_regions"]) == regions


# ------------------------------------------------------------------------------------------------------------
# bring your own model: backbone=custom end to end
# ------------------------------------------------------------------------------------------------------------


def train_in(tmp_path: Path, synthetic_root: Path, overrides: list[str]) -> dict:
    """test_train's in-process training job on the small synthetic set, then Hydra's run state cleared (so a
    probe run afterwards writes into its own folder)."""
    from hydra.core.hydra_config import HydraConfig
    from test_train import SMALL, run_in_process, small_data

    try:
        return run_in_process(tmp_path, [*SMALL, *small_data(synthetic_root), *overrides])
    finally:
        HydraConfig.instance().cfg = None


#: tests/custom_models.py's encoder-decoder as docs/backbones.md configures it (its own forward is the output).
CUSTOM = ["backbone=custom", "backbone._target_=custom_models.TinySaliencyNet", "+backbone.width=8",
          "backbone.layers={block1:encoder.1,block2:encoder.5,block3:encoder.8}", "backbone.output=forward"]


def test_custom_model_is_trained_probed_and_benchmarked(tmp_path: Path, synthetic_root: Path) -> None:
    import custom_models
    import numpy as np
    import torch.nn.functional as F
    from test_benchmark import run_in as run_benchmark
    from test_probe import run_in as run_probe_in
    from test_probe import synthetic_overrides

    from saliency_probe.data.images import load_rgb, to_model_input
    from saliency_probe.models.checkpoint import load_checkpoint
    from saliency_probe.probe.model_specs import resolve_model
    from saliency_probe.report.tables import read_csv

    # train: the last unit (block3's conv) and the decoder train, the rest is frozen
    summary = train_in(tmp_path / "train", synthetic_root, [*CUSTOM, "finetune.layers=1"])
    reference = custom_models.TinySaliencyNet(8)
    assert summary["backbone"] == "custom"
    assert summary["trainable_params"] == count(reference.encoder[6:].parameters()) + count(reference.decoder.parameters())
    ckpt = summary["best_checkpoint"]
    loaded = load_checkpoint(ckpt)
    assert loaded.saliency_head() is None and loaded.metadata["backbone"]["config"]["width"] == 8
    assert [layer["name"] for layer in loaded.metadata["backbone"]["layers"]] == ["block1", "block2", "block3"]
    network = loaded.saliency_network()
    with torch.no_grad():
        assert network(torch.zeros(1, 3, 64, 64)).shape == (1, 1, 32, 32)

    # probe: the backbone is rebuilt from the checkpoint's record; default layers = the last two
    run_probe_in(tmp_path / "probe", [*synthetic_overrides(synthetic_root), f"ckpt={ckpt}",
                                      "analyses=[inner,output]", "figures.enabled=false"])
    tables = tmp_path / "probe" / "tables"
    inner = read_csv(tables / "inner_representation.csv")
    assert {row["layer"] for row in inner} == {"block2", "block3"}
    output = read_csv(tables / "output_saliency.csv")
    assert output and {row["model"] for row in output} == {loaded.run_name}
    block3 = {row["category"]: float(row["top10_mean_nss"]) for row in inner
              if row["model"] == loaded.run_name and row["layer"] == "block3"}
    for row in output:  # the inner saliency of the output table is the inner analysis's, at the head layer
        assert float(row["inner_nss"]) == pytest.approx(block3[row["category"]], rel=1e-9)
    assert "inner NSS (block3 top-k)" in (tables / "output_saliency.md").read_text()

    # benchmark: the checkpoint (ckpt:) and the configured model with its own weights file (model:)
    weights = tmp_path / "tiny.pth"
    torch.manual_seed(3)
    torch.save(custom_models.TinySaliencyNet(8).state_dict(), weights)
    run_benchmark(tmp_path / "bench", [
        "data=osie", f"data.root={synthetic_root / 'osie'}", "benchmark.limit=3", "benchmark.gt_sigma=4",
        "benchmark.figure_images=0", f"benchmark.models=[ckpt:{ckpt},model:tiny]", *CUSTOM,
        f"backbone.weights={weights}"])
    rows = read_csv(tmp_path / "bench" / "tables" / "benchmark.csv")
    assert [row["model"] for row in rows] == [f"ckpt:{loaded.run_name}", "model:tiny"]
    assert all(row["n_images"] == "3" and np.isfinite(float(row["nss"])) for row in rows)
    backbone = {"name": "custom", "_target_": "custom_models.TinySaliencyNet", "width": 8, "output": "forward",
                "layers": {"block1": "encoder.1", "block2": "encoder.5", "block3": "encoder.8"},
                "weights": str(weights)}
    model = resolve_model("model:tiny", 224, backbone=backbone)
    rgb = load_rgb(next((synthetic_root / "osie" / "data" / "stimuli").iterdir()))
    net = custom_models.TinySaliencyNet(8).eval()
    net.load_state_dict(torch.load(weights, weights_only=True))
    with torch.no_grad():
        direct = F.interpolate(net(to_model_input(rgb, 224)[None]), size=rgb.shape[:2], mode="bilinear",
                               align_corners=False)[0, 0].numpy()
    np.testing.assert_array_equal(model.predict(rgb, "x"), direct)

    # the user's own weights (no training here): the output analysis scores the model's own output
    run_probe_in(tmp_path / "own", [*synthetic_overrides(synthetic_root), *CUSTOM, f"backbone.weights={weights}",
                                    "analyses=[output]", "figures.enabled=false"])
    assert {row["model"] for row in read_csv(tmp_path / "own" / "tables" / "output_saliency.csv")} == {"tiny"}


def test_checkpoint_of_another_backbone_than_an_explicit_one_is_refused(tmp_path: Path, synthetic_root: Path) -> None:
    from test_probe import run_in as run_probe_in
    from test_probe import synthetic_overrides

    summary = train_in(tmp_path / "train", synthetic_root, ["backbone=resnet18", "finetune.layers=0",
                                                            "+trainer.limit_train_batches=1"])
    with pytest.raises(ValueError, match=r"trained on backbone resnet18, but backbone=vgg19 was given"):
        run_probe_in(tmp_path / "probe", [*synthetic_overrides(synthetic_root), f"ckpt={summary['best_checkpoint']}",
                                          "backbone=vgg19"])


# ------------------------------------------------------------------------------------------------------------
# any torchvision model: backbone=torchvision backbone.name=...
# ------------------------------------------------------------------------------------------------------------


def test_torchvision_stages_are_detected_from_the_graph() -> None:
    assert layer_table("efficientnet_b0").names == ["features.1", "features.2", "features.3", "features.5",
                                                    "features.8"]
    assert layer_table("densenet121").names == ["features.relu0", "features.denseblock1", "features.denseblock2",
                                                "features.denseblock3", "relu"]
    table = layer_table("mobilenet_v3_small")
    assert table.names == ["features.0", "features.1", "features.3", "features.8", "features.12"]
    assert [layer.stride for layer in table.layers] == [2, 4, 8, 16, 32]
    assert [layer.channels for layer in table.layers] == [16, 16, 24, 48, 576]
    assert table.default_layers() == ["features.8", "features.12"]
    explicit = layer_table({"name": "mobilenet_v3_small", "layers": {"mid": "features.6", "top": "features.12"}})
    assert explicit.names == ["mid", "top"] and explicit.get("mid").channels == 40


def test_torchvision_model_units_heads_weights_and_probe(tmp_path: Path, synthetic_root: Path) -> None:
    from test_probe import csv_rows, run_in, synthetic_overrides

    reference = torchvision.models.mobilenet_v3_small(weights=None).eval()
    module = SaliencyModule(weights=None, backbone="mobilenet_v3_small")
    assert isinstance(module.trunk.model.classifier, nn.Identity)  # the classifier is not part of the trunk
    # each stage owns the feature blocks after the previous stage's output: features[9:13] is the last
    stages = [(0, 1), (1, 2), (2, 4), (4, 9), (9, 13)]
    for layers in ("0", "1", "2", "5", "all"):
        FreezeLayers(layers).freeze_before_training(module)
        k = 5 if layers == "all" else int(layers)
        blocks = [i for start, end in stages[5 - k:] for i in range(start, end)]
        assert count(p for p in module.parameters() if p.requires_grad) == count(
            p for i in blocks for p in reference.features[i].parameters()) + 576, layers
    path = tmp_path / "mobilenet.pth"
    torch.save(reference.state_dict(), path)
    trunk = build_trunk(str(path), "mobilenet_v3_small").eval()
    images = torch.randn(2, 3, 64, 64)
    with torch.no_grad():
        torch.testing.assert_close(trunk(images), reference.features(images), rtol=0, atol=0)
    run_in(tmp_path / "run", [*synthetic_overrides(synthetic_root), "backbone=torchvision",
                              "backbone.name=mobilenet_v3_small", f"backbone.weights={path}",
                              "layers=[features.8,last]", "figures.enabled=false"])
    rows = csv_rows(tmp_path / "run")
    assert {(model, layer) for model, layer, _ in rows} == {
        (model, layer) for model in ("mobilenet", "random-init") for layer in ("features.8", "features.12")}


# ------------------------------------------------------------------------------------------------------------
# every analysis on ResNet-18 checkpoints
# ------------------------------------------------------------------------------------------------------------


def test_every_analysis_runs_on_resnet18_checkpoints(tmp_path: Path, synthetic_root: Path) -> None:
    """Saliency and scene checkpoints of ResNet-18: inner, output, scene attention and pop-out, with the
    backbone's layer names, no paper values beside them."""
    from test_probe import run_in as run_probe_in
    from test_probe import synthetic_overrides

    from saliency_probe.data.popout_generator import generate_popout
    from saliency_probe.report.tables import read_csv

    common = ["backbone=resnet18", "finetune.layers=1", "++task.hidden_features=16"]
    saliency = train_in(tmp_path / "saliency", synthetic_root, [*common, "task=saliency"])
    scene = train_in(tmp_path / "scene", synthetic_root, [*common, "task=scene"])
    ckpts = f"ckpt=[{saliency['best_checkpoint']},{scene['best_checkpoint']}]"
    summary = run_probe_in(tmp_path / "probe", [*synthetic_overrides(synthetic_root), ckpts, "analyses=auto",
                                                "figures.search_images=2", "scene_attention.n_resamples=99"])
    assert list(summary["analyses"]) == ["inner", "output", "scene_attention"]
    assert summary["backbone"] == "resnet18" and all(m["backbone"] == "resnet18" for m in summary["models"])
    tables = tmp_path / "probe" / "tables"
    assert {row["layer"] for row in read_csv(tables / "inner_representation.csv")} == {"layer3", "layer4"}
    assert "inner NSS (layer4 top-k)" in (tables / "output_saliency.md").read_text()
    assert "mean of the layer4 maps" in (tables / "scene_attention.md").read_text()
    assert {row["prediction"] for row in read_csv(tables / "scene_attention.csv")} == {"correct", "wrong"}
    report = (tmp_path / "probe" / "report.md").read_text()
    assert "beside the paper" not in report  # paper values only beside VGG-16 rows
    arrays = generate_popout(tmp_path / "arrays", num=4, seed=1, image_size=128, grid=3, dimensions="colour,size",
                             levels=2)
    run_probe_in(tmp_path / "popout", [ckpts, "analyses=[popout]", "data=popout", f"data.root={arrays}",
                                       "popout.image_size=64", "popout.models=[spectral_residual]",
                                       "figures.enabled=false"])
    layers = read_csv(tmp_path / "popout" / "tables" / "popout_layers.csv")
    assert {row["layer"] for row in layers} == {"layer3", "layer4"}
    assert "| model | layer4 | layer3 |" in (tmp_path / "popout" / "tables" / "popout_layers.md").read_text()
    models = [row["model"] for row in read_csv(tmp_path / "popout" / "tables" / "popout_models.csv")]
    assert models[0] == "spectral_residual" and len(models) == 2  # + the saliency checkpoint's output


def test_probe_cli_refuses_a_checkpoint_of_another_backbone_than_the_one_given(tmp_path: Path,
                                                                               synthetic_root: Path) -> None:
    """``python probe.py ckpt=<resnet18> backbone=vgg16``: an explicit backbone= (read from Hydra's overrides,
    even the default's name) that the checkpoint was not trained on is one error naming both."""
    from test_probe_cli import probe

    summary = train_in(tmp_path / "train", synthetic_root, ["backbone=resnet18", "finetune.layers=0",
                                                            "+trainer.limit_train_batches=1"])
    result = probe(f"ckpt={summary['best_checkpoint']}", "backbone=vgg16", "logger=none",
                   f"hydra.run.dir={tmp_path / 'run'}", timeout=120)
    assert result.returncode != 0
    assert "was trained on backbone resnet18, but backbone=vgg16 was given" in result.stderr
    assert not (tmp_path / "run" / "tables").exists()


def test_resuming_with_another_backbone_names_both(tmp_path: Path, synthetic_root: Path) -> None:
    summary = train_in(tmp_path / "train", synthetic_root, ["backbone=resnet18", "finetune.layers=0",
                                                            "+trainer.limit_train_batches=1"])
    with pytest.raises(ValueError, match="trained on backbone resnet18, not backbone=vgg16"):
        train_in(tmp_path / "resumed", synthetic_root, [f"ckpt_path={summary['last_checkpoint']}"])


def test_frozen_batchnorm_of_a_traced_torchvision_model_does_not_move(tmp_path: Path) -> None:
    """mobilenet_v3_small (a traced trunk: its forward is a graph module, built here in the first training step),
    last stage trained: every other BatchNorm keeps its statistics through Lightning training with validation."""
    module, before = fit_two_epochs("mobilenet_v3_small", 1, tmp_path, batches=3, side=128, sanity_steps=0)
    trained = tuple(f"trunk.model.features.{i}." for i in range(9, 13)) + ("head.",)  # the last stage: 9..12
    moved = {key for key, value in module.state_dict().items() if not torch.equal(before[key], value)}
    assert moved and all(key.startswith(trained) for key in moved)
    assert any(key.endswith("running_mean") for key in moved)  # the trained stage's statistics do move
