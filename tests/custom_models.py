"""A user's own saliency model, as docs/backbones.md shows it: a small encoder-decoder built by ``_target_``."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


class TinySaliencyNet(nn.Module):
    """Three conv stages (strides 1, 2, 4), a 1x1 decoder to one channel, upsampled x2: ``(B, 1, H/2, W/2)``."""

    def __init__(self, width: int = 8) -> None:
        super().__init__()
        self.encoder = nn.Sequential(
            nn.Conv2d(3, width, 3, padding=1), nn.ReLU(),
            nn.MaxPool2d(2),
            nn.Conv2d(width, 2 * width, 3, padding=1), nn.BatchNorm2d(2 * width), nn.ReLU(),
            nn.MaxPool2d(2),
            nn.Conv2d(2 * width, 4 * width, 3, padding=1), nn.ReLU(),
        )
        self.decoder = nn.Conv2d(4 * width, 1, 1)

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return F.interpolate(self.decoder(self.encoder(images)), scale_factor=2, mode="bilinear", align_corners=False)
