"""Activations of several layers of a trunk in one forward pass (torchvision feature extraction).

The layer table (:mod:`saliency_probe.models.layers`) maps each probe name to the graph node of its
post-activation output (VGG-16: the ReLU after each conv; ResNets: the ReLU after each block's addition; any
graph node by name). VGG's ReLUs are in place, so a forward hook on a conv would see post-ReLU values only by
accident and a later in-place op could change a kept tensor. ``create_feature_extractor`` returns the outputs of
the named nodes and prunes everything after the deepest requested layer, so probing conv4_1 alone never runs
conv5.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn
from torchvision.models.feature_extraction import create_feature_extractor

from saliency_probe.errors import ConfigError
from saliency_probe.models.backbone import OUTPUT_KEY, Architecture, Layer, Trunk, architecture


def trunk_architecture(trunk: nn.Module) -> Architecture:
    """The architecture of a trunk (any module with VGG-16's ``features`` counts as VGG-16)."""
    return trunk.architecture if isinstance(trunk, Trunk) else architecture("vgg16")


def ordered_layers(layers: Sequence[str] | None, key: str | None = None, backbone: object = None) -> list[str]:
    """Validated, de-duplicated layer names in network order (conv1_1 first); None: the backbone's default
    layers (the last two stages; VGG-16: conv4_1..conv5_3). Errors name ``key``; ``backbone``: a config, spec or
    name (VGG-16)."""
    if layers is not None and not list(layers):
        arch = architecture(backbone)
        raise ConfigError(f"{key or 'layers'} is empty: give at least one of the {arch.spec.describe()} layers "
                          f"({', '.join(arch.table.names)}), e.g. layers=[{arch.table.head}]; null = the default")
    return architecture(backbone).ordered(None if layers is None else [str(name) for name in layers], key=key)


class LayerActivations(nn.Module):
    """Wrap a trunk to return ``{layer: (B, C, h, w)}`` for its probe layers.

    Args:
        trunk: a :class:`~saliency_probe.models.backbone.Trunk` (or any module whose graph has the nodes
            ``features.<i>`` of torchvision's VGG-16).
        layers: probe names of the trunk's table (``conv4_1``, ``layer4.1`` ...), ``last`` or graph nodes; the
            post-activation output of each is returned.
        output: also return the model's own saliency map under ``OUTPUT_KEY`` (``backbone.output``, when it is a
            graph node), from the same forward pass.
    """

    def __init__(self, trunk: nn.Module, layers: Sequence[str], output: bool = False) -> None:
        super().__init__()
        arch = trunk_architecture(trunk)
        self.layers = arch.ordered([str(name) for name in layers])
        self.info: dict[str, Layer] = {name: arch.layer(name) for name in self.layers}
        return_nodes: dict[str, str] = {}
        for name in self.layers:  # one output per node (a ResNet stage and its last block share one)
            return_nodes.setdefault(self.info[name].node, name)
        self.keys = {name: return_nodes[self.info[name].node] for name in self.layers}
        output_node = arch.output_node() if output else None
        if output and output_node is None:
            raise ValueError(f"{arch.spec.describe()}: backbone.output={arch.spec.output} is not a graph node")
        if output_node is not None:
            return_nodes.setdefault(output_node, OUTPUT_KEY)
            self.keys[OUTPUT_KEY] = return_nodes[output_node]
        root = trunk.graph_root if isinstance(trunk, Trunk) else trunk
        training = trunk.training
        self.extractor = create_feature_extractor(root, return_nodes=return_nodes)
        trunk.train(training)  # feature extraction toggles modes: restore the trunk's (frozen parts stay eval)

    def channels(self, layer: str) -> int:
        return self.info[layer].channels

    def forward(self, images: torch.Tensor) -> dict[str, torch.Tensor]:
        out = self.extractor(images)
        return {name: out[key] for name, key in self.keys.items()}
