"""Ground-truth saliency maps: binary fixation maps blurred with a Gaussian (sigma in pixels)."""

from __future__ import annotations

import torch
from torchvision.transforms.v2 import functional as TF


def fixation_density(fixations: torch.Tensor, sigma: float) -> torch.Tensor:
    """Blur binary fixation maps ``(..., H, W)`` with a Gaussian of ``sigma`` pixels (kernel +-3 sigma)."""
    if sigma <= 0:
        return fixations.float()
    shape = fixations.shape
    flat = fixations.reshape(-1, 1, *shape[-2:]).float()
    radius = int(round(3 * sigma))
    size = 2 * radius + 1
    # torchvision reflects at the border; limit the kernel to the map so reflection is defined.
    size_h = min(size, 2 * ((shape[-2] - 1) // 2) + 1)
    size_w = min(size, 2 * ((shape[-1] - 1) // 2) + 1)
    blurred = TF.gaussian_blur(flat, kernel_size=[size_w, size_h], sigma=[float(sigma), float(sigma)])
    return blurred.reshape(shape)
