"""Boolean Map Saliency (Zhang & Sclaroff, "Exploiting Surroundedness for Saliency Detection: A Boolean Map
Approach", TPAMI 2016), following the authors' released C++ program (BMS v2) step by step.

Pipeline: resize so the longer side is ``max_dim`` (INTER_AREA, sizes truncated as the C++ does); CIE Lab;
whitening (covariance + ``whitening_reg`` * I, OpenCV SVD, project onto U diag(1/sqrt(w)), no centring);
per-channel min-max to 0..255 (rounded to uint8) and 3x3 median; for every threshold from the channel's min
to its max in steps of ``sample_step`` the Boolean map ``channel > threshold`` and its complement; in each, the
8-connected regions that do not touch the image border ("surrounded" regions); each part is dilated (a
``dilation_width_1`` square), L2-normalised on its own and added; the sum is min-max normalised, dilated
(``dilation_width_2`` square), blurred (Gaussian, ``blur_std``, kernel ``min(4 floor(std) + 1, 51)``) and
resized back (bilinear).

Speed: the C++ flood-fills from every border pixel.  Here a one-pixel frame of "on" pixels is put around each
Boolean map, so one ``cv2.connectedComponents`` call joins every border-touching region to the frame's
component; surrounded pixels are then simply ``label != frame label``.  This is exact and needs no per-label
lookups.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import cv2
import numpy as np

from .base import SaliencyModel, register


def _square(width: int) -> np.ndarray:
    return np.ones((width, width), np.uint8)


def bms_feature_maps(
    image_small: np.ndarray, bgr_channel_order: bool, whitening_reg: float
) -> list[np.ndarray]:
    """The three whitened, 0..255, median-filtered Lab feature maps (uint8) of a resized RGB image.

    ``bgr_channel_order=True`` converts with the channels swapped, as the released program does (it reads BGR
    with ``imread`` and converts with ``CV_RGB2Lab``).
    """
    code = cv2.COLOR_BGR2Lab if bgr_channel_order else cv2.COLOR_RGB2Lab
    lab = cv2.cvtColor(image_small, code)  # 8-bit Lab, as in the C++ (L scaled to 0..255, a/b offset 128)
    lab_float = lab.astype(np.float32)
    flags = cv2.COVAR_NORMAL | cv2.COVAR_ROWS | cv2.COVAR_SCALE
    cov, _ = cv2.calcCovarMatrix(lab_float.reshape(-1, 3), None, flags, cv2.CV_32F)
    cov = cov.astype(np.float32) + np.eye(3, dtype=np.float32) * np.float32(whitening_reg)
    w, u, _ = cv2.SVDecomp(cov)
    projection = (u * (1.0 / np.sqrt(w.ravel()))[None, :]).astype(np.float32)  # U diag(1/sqrt(w))
    whitened = cv2.transform(lab_float, projection.T)  # per pixel: x @ U diag(1/sqrt(w)), no centring
    maps = []
    for channel in range(3):
        scaled = cv2.normalize(whitened[..., channel], None, 255.0, 0.0, cv2.NORM_MINMAX, dtype=cv2.CV_8U)
        maps.append(cv2.medianBlur(scaled, 3))
    return maps


def surrounded_regions(boolean_map: np.ndarray, framed: np.ndarray) -> np.ndarray:
    """Pixels of ``boolean_map`` (uint8 0/1) in 8-connected regions that do not touch the image border.

    ``framed`` is a scratch uint8 buffer of shape (H + 2, W + 2) whose one-pixel frame is 1; the map is written
    inside it so that all border-touching regions join the frame's component.
    """
    framed[1:-1, 1:-1] = boolean_map
    _, labels = cv2.connectedComponents(framed, connectivity=8, ltype=cv2.CV_32S)
    inner = labels[1:-1, 1:-1]
    return ((inner != labels[0, 0]) & (boolean_map != 0)).view(np.uint8)


@register("bms")
@dataclass(frozen=True)
class BMS(SaliencyModel):
    """Boolean Map Saliency, TPAMI version, with the released program's published defaults.

    Parameters:
        sample_step: threshold step delta on the 0..255 feature channels (8).
        dilation_width_1: width of the square dilating each surrounded part before L2 normalisation (7).
        dilation_width_2: width of the square dilating the summed map (9).
        blur_std: standard deviation of the final Gaussian blur in pixels of the resized image (9).
        max_dim: longer side of the working image (400).
        whitening_reg: ridge added to the colour covariance before whitening (50).
        bgr_channel_order: reproduce the C++ program's BGR-as-RGB Lab conversion (False = correct order).
    """

    sample_step: float = 8.0
    dilation_width_1: int = 7
    dilation_width_2: int = 9
    blur_std: float = 9.0
    max_dim: int = 400
    whitening_reg: float = 50.0
    bgr_channel_order: bool = False

    def __post_init__(self) -> None:
        if self.sample_step <= 0:
            raise ValueError(f"BMS sample_step must be > 0, got {self.sample_step}")
        for field in ("dilation_width_1", "dilation_width_2"):
            width = getattr(self, field)
            if width < 0 or (width > 0 and width % 2 == 0):
                raise ValueError(f"BMS {field} must be 0 (off) or an odd width >= 1, got {width}")
        if self.blur_std < 0 or self.max_dim < 8 or self.whitening_reg < 0:
            raise ValueError(
                f"BMS needs blur_std >= 0, max_dim >= 8 and whitening_reg >= 0, got {self.blur_std}, "
                f"{self.max_dim}, {self.whitening_reg}"
            )

    def _saliency(self, image: np.ndarray) -> np.ndarray:
        height, width = image.shape[:2]
        longer = float(max(height, width))
        size = (max(1, int(self.max_dim * width / longer)), max(1, int(self.max_dim * height / longer)))
        small = cv2.resize(image, size, interpolation=cv2.INTER_AREA)
        accumulated = self.boolean_map_sum(small)
        result = cv2.normalize(accumulated, None, 0.0, 1.0, cv2.NORM_MINMAX)
        if self.dilation_width_2 > 0:
            result = cv2.dilate(result, _square(self.dilation_width_2))
        if self.blur_std > 0:
            ksize = int(min(math.floor(self.blur_std) * 4 + 1, 51))
            result = cv2.GaussianBlur(result, (ksize, ksize), self.blur_std, sigmaY=self.blur_std)
        return cv2.resize(result, (width, height), interpolation=cv2.INTER_LINEAR)

    def boolean_map_sum(self, small: np.ndarray) -> np.ndarray:
        """Sum of the L2-normalised, dilated surrounded parts of every Boolean map (float32, small size)."""
        maps = bms_feature_maps(small, self.bgr_channel_order, self.whitening_reg)
        height, width = small.shape[:2]
        total = np.zeros((height, width), np.float32)
        framed = np.ones((height + 2, width + 2), np.uint8)
        kernel = _square(self.dilation_width_1) if self.dilation_width_1 > 0 else None
        for feature in maps:
            low, high = int(feature.min()), int(feature.max())
            for threshold in np.arange(low, high, self.sample_step):
                above = (feature > threshold).view(np.uint8)
                for part in (above, 1 - above):
                    surrounded = surrounded_regions(part, framed)
                    if kernel is not None:
                        surrounded = cv2.dilate(surrounded, kernel)
                    count = cv2.countNonZero(surrounded)
                    if count:
                        cv2.add(total, 1.0 / math.sqrt(count), dst=total, mask=surrounded)
        return total
