"""Image loading and the model input transform (resize without keeping the aspect, ImageNet normalisation)."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import torch
from PIL import Image, UnidentifiedImageError
from torchvision.transforms.v2 import functional as TF

from saliency_probe.errors import InputFileError, MissingInputError

#: ImageNet channel statistics of torchvision's pretrained weights (the model input normalisation).
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)

#: Errors PIL raises for unreadable, truncated or corrupt image files.
_IMAGE_ERRORS = (UnidentifiedImageError, OSError, SyntaxError, ValueError, Image.DecompressionBombError)


def _existing_image(path: str | os.PathLike[str]) -> Path:
    """``path`` as a Path; a missing file raises ``MissingInputError``, a folder ``InputFileError``."""
    path = Path(path)
    if path.is_dir():
        raise InputFileError(f"{path} is a folder; expected an image file")
    if not path.is_file():
        raise MissingInputError(f"image file not found: {path}")
    return path


def load_rgb(path: str | os.PathLike[str]) -> np.ndarray:
    """Decode an image file to ``HxWx3`` uint8 RGB (greyscale, palette and RGBA are converted).

    A missing file raises ``MissingInputError`` (a ``FileNotFoundError``); an unreadable or corrupt one
    ``InputFileError`` (a ``ValueError``); both name the path.
    """
    path = _existing_image(path)
    try:
        with Image.open(path) as image:
            return np.array(image.convert("RGB"))
    except _IMAGE_ERRORS as error:
        raise InputFileError(f"cannot read image {path}: {error}") from error


def read_image_size(path: str | os.PathLike[str]) -> tuple[int, int]:
    """``(height, width)`` read from the file header only (no decoding)."""
    path = _existing_image(path)
    try:
        with Image.open(path) as image:
            width, height = image.size
    except _IMAGE_ERRORS as error:
        raise InputFileError(f"cannot read image {path}: {error}") from error
    return height, width


def check_image(path: str | os.PathLike[str]) -> None:
    """Decode the whole file (at reduced JPEG scale, which still reads every byte) to detect corruption."""
    path = _existing_image(path)
    try:
        with Image.open(path) as image:
            image.draft("RGB", (64, 64))
            image.load()
    except _IMAGE_ERRORS as error:
        raise InputFileError(f"cannot read image {path}: {error}") from error


def to_model_input(image_uint8_hwc: np.ndarray, image_size: int) -> torch.Tensor:
    """``3 x image_size x image_size`` float tensor: bilinear antialiased resize (aspect not kept, as in the
    paper), scaled to [0, 1], then normalised with the ImageNet mean and std."""
    image = np.asarray(image_uint8_hwc)
    if image.ndim != 3 or image.shape[2] != 3 or image.dtype != np.uint8:
        raise ValueError(f"expected an HxWx3 uint8 image, got shape {image.shape} and dtype {image.dtype}")
    tensor = torch.from_numpy(np.ascontiguousarray(image)).permute(2, 0, 1)
    tensor = TF.resize(tensor, [image_size, image_size], interpolation=TF.InterpolationMode.BILINEAR, antialias=True)
    tensor = TF.to_dtype(tensor, torch.float32, scale=True)
    return TF.normalize(tensor, mean=list(IMAGENET_MEAN), std=list(IMAGENET_STD))
