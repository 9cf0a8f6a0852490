"""Post-ReLU activations of several VGG-16 layers in one forward pass (torchvision feature extraction).

The trunk's ReLUs are in place, so a forward hook on a conv would see post-ReLU values only by accident and a
later in-place op could change a kept tensor. ``create_feature_extractor`` returns the outputs of the named ReLU
nodes and prunes everything after the deepest requested layer, so probing conv4_1 alone never runs conv5.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn
from torchvision.models.feature_extraction import create_feature_extractor

from saliency_probe.errors import ConfigError
from saliency_probe.models.backbone import VGG16_CONV_LAYERS, relu_node_name, validate_layers


def ordered_layers(layers: Sequence[str], key: str | None = None) -> list[str]:
    """Validated, de-duplicated layer names in network order (conv1_1 first); errors name ``key``."""
    names = validate_layers(list(dict.fromkeys(str(name) for name in layers)), key=key)
    if not names:
        raise ConfigError("layers is empty: give at least one of the 13 VGG-16 conv layers, e.g. layers=[conv5_3]")
    return sorted(names, key=VGG16_CONV_LAYERS.__getitem__)


class LayerActivations(nn.Module):
    """Wrap a trunk (anything with ``.features`` = VGG-16 ``features``) to return ``{layer: (B, C, h, w)}``.

    Args:
        trunk: a :class:`~saliency_probe.models.backbone.VGGTrunk` (or any module whose graph has the nodes
            ``features.<i>`` of torchvision's VGG-16).
        layers: conv layer names (``conv4_1`` ...); the post-ReLU output of each is returned.
    """

    def __init__(self, trunk: nn.Module, layers: Sequence[str]) -> None:
        super().__init__()
        self.layers = ordered_layers(layers)
        self.extractor = create_feature_extractor(
            trunk, return_nodes={relu_node_name(n): n for n in self.layers}
        )

    def forward(self, images: torch.Tensor) -> dict[str, torch.Tensor]:
        return self.extractor(images)
