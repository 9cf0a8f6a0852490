"""Ground-truth saliency maps: binary fixation maps blurred with a Gaussian (sigma in pixels)."""

from __future__ import annotations

import torch
import torch.nn.functional as F


def _kernel_size(sigma: float, length: int) -> int:
    """+-3 sigma, limited to the map so that the reflected border is defined (odd)."""
    size = 2 * int(round(3 * sigma)) + 1
    return min(size, 2 * ((length - 1) // 2) + 1)


def _gaussian_1d(size: int, sigma: float, dtype: torch.dtype, device: torch.device) -> torch.Tensor:
    half = (size - 1) / 2
    x = torch.linspace(-half, half, size, dtype=dtype, device=device)
    kernel = torch.exp(-0.5 * (x / sigma) ** 2)
    return kernel / kernel.sum()


def fixation_density(fixations: torch.Tensor, sigma: float) -> torch.Tensor:
    """Blur maps ``(..., H, W)`` with a Gaussian of ``sigma`` pixels: separable, kernel +-3 sigma, reflected border.

    Two 1-D convolutions (the same values as torchvision's ``gaussian_blur``, at a fraction of its 2-D cost).
    """
    values = fixations.float() if not fixations.is_floating_point() else fixations
    if sigma <= 0:
        return values
    shape = values.shape
    height, width = shape[-2:]
    flat = values.reshape(-1, 1, height, width)
    size_h, size_w = _kernel_size(sigma, height), _kernel_size(sigma, width)
    kernel_h = _gaussian_1d(size_h, float(sigma), flat.dtype, flat.device).view(1, 1, -1, 1)
    kernel_w = _gaussian_1d(size_w, float(sigma), flat.dtype, flat.device).view(1, 1, 1, -1)
    flat = F.conv2d(F.pad(flat, (0, 0, size_h // 2, size_h // 2), mode="reflect"), kernel_h)
    flat = F.conv2d(F.pad(flat, (size_w // 2, size_w // 2, 0, 0), mode="reflect"), kernel_w)
    return flat.reshape(shape)
