"""Spectral residual saliency (Hou & Zhang, CVPR 2007) through OpenCV contrib's
``cv2.saliency.StaticSaliencySpectralResidual``: the grey image is resized to a fixed 64 x 64, the log
amplitude spectrum minus its local mean (the "spectral residual") is transformed back with the original
phase, squared, blurred and resized to the image size.  OpenCV does all of it; this class only adapts the
interface (RGB in, grey computed with the correct channel order, float32 map of the image's size out).
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

from .base import SaliencyModel, register


@register("spectral_residual")
@dataclass(frozen=True)
class SpectralResidual(SaliencyModel):
    """Spectral residual saliency (OpenCV contrib).

    Parameters:
        image_width: width of the working image OpenCV resizes the grey image to (64).
        image_height: height of the working image (64).
    """

    image_width: int = 64
    image_height: int = 64

    def __post_init__(self) -> None:
        if self.image_width < 8 or self.image_height < 8:
            raise ValueError(
                f"spectral residual working size must be >= 8x8, got {self.image_width}x{self.image_height}"
            )

    def _saliency(self, image: np.ndarray) -> np.ndarray:
        detector = cv2.saliency.StaticSaliencySpectralResidual_create()
        detector.setImageWidth(int(self.image_width))
        detector.setImageHeight(int(self.image_height))
        grey = cv2.cvtColor(image, cv2.COLOR_RGB2GRAY)
        ok, saliency = detector.computeSaliency(grey)
        if not ok:
            raise RuntimeError(f"OpenCV spectral residual failed on an image of shape {image.shape}")
        height, width = image.shape[:2]
        if saliency.shape != (height, width):
            saliency = cv2.resize(saliency, (width, height), interpolation=cv2.INTER_LINEAR)
        return saliency.astype(np.float32)
