"""Reading pop-out sets: ours (written by :mod:`saliency_probe.data.popout_generator`) and external ones.

Our layout is ``images/<id>.png``, ``masks/target/<id>.png``, ``masks/items/<id>.png`` and ``metadata.csv``
(docs/popout.md). An external set is ``images/*`` plus binary target masks with the same stems in
``masks/target/`` or ``masks/``; anti-aliased masks are thresholded at 128.
"""

from __future__ import annotations

import csv
import os
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image
from torch.utils.data import Dataset

from saliency_probe.data.images import load_rgb, to_model_input
from saliency_probe.data.popout_generator import METADATA_COLUMNS, METADATA_FILE, generate_popout, read_params
from saliency_probe.errors import ConfigError, InputFileError, MissingInputError

__all__ = [
    "DEFAULT_NUM",
    "LAYOUT",
    "PopoutDataset",
    "PopoutRecord",
    "collate_popout",
    "ensure_popout",
    "read_item_mask",
    "read_mask",
    "scan_popout",
]

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff", ".webp")
#: Default number of arrays made by ``ensure_popout``: two per cell of the default 7 x 7 grid.
DEFAULT_NUM = 98


def read_mask(path: Path, threshold: int = 128) -> np.ndarray:
    """Boolean mask of a (possibly anti-aliased, RGB or 16-bit) mask image: grey value >= ``threshold``
    on the 0..255 scale (16-bit files are compared at ``threshold * 257``). Palette images (VOC style) are
    label maps: any non-zero index is the target."""
    if not path.is_file():
        raise MissingInputError(f"mask file not found: {path}")
    try:
        with Image.open(path) as image:
            if image.mode in ("I;16", "I;16B", "I;16L", "I"):
                return np.asarray(image).astype(np.int64) >= threshold * 257
            if image.mode == "P":
                return np.asarray(image) > 0
            return np.asarray(image.convert("L")) >= threshold
    except (OSError, SyntaxError, ValueError) as error:
        raise InputFileError(f"cannot read mask {path}: {error}") from error


def read_item_mask(path: Path) -> np.ndarray:
    """Instance map (int32, 0 background) from an 8- or 16-bit PNG."""
    if not path.is_file():
        raise MissingInputError(f"item mask file not found: {path}")
    try:
        with Image.open(path) as image:
            if image.mode not in ("L", "P", "I;16", "I;16B", "I;16L", "I"):
                raise ValueError(f"expected a single-channel 8- or 16-bit PNG, got mode {image.mode}")
            return np.asarray(image).astype(np.int32)
    except (OSError, SyntaxError, ValueError) as error:
        raise InputFileError(f"cannot read item mask {path}: {error}") from error


def _find_by_stem(folder: Path, stem: str) -> Path | None:
    matches = [
        folder / f"{stem}{suffix}" for suffix in IMAGE_SUFFIXES if (folder / f"{stem}{suffix}").is_file()
    ]
    matches += [
        folder / f"{stem}{suffix.upper()}"
        for suffix in IMAGE_SUFFIXES
        if (folder / f"{stem}{suffix.upper()}").is_file()
    ]
    if len(set(matches)) > 1:
        raise InputFileError(f"several files for {stem!r} in {folder}: {sorted(p.name for p in set(matches))}")
    return matches[0] if matches else None


@dataclass(frozen=True)
class PopoutRecord:
    """Files and metadata of one array."""

    id: str
    image: Path
    target_mask: Path
    item_mask: Path | None
    dimension: str | None
    level: int | None


LAYOUT = (
    "<root>/images/<id>.png with <root>/masks/target/<id>.png (+ masks/items/, metadata.csv: ours), "
    "or an external set: <root>/images/* with binary target masks of the same stems in "
    "<root>/masks/target/ or <root>/masks/"
)


def _read_metadata(root: Path) -> list[dict[str, str]]:
    path = root / METADATA_FILE
    with path.open(newline="", encoding="utf-8") as handle:
        reader = csv.DictReader(handle)
        header = tuple(reader.fieldnames or ())
        if header[: len(METADATA_COLUMNS)] != METADATA_COLUMNS:
            raise InputFileError(
                f"{path}: expected columns starting with {', '.join(METADATA_COLUMNS)}, got {header}"
            )
        return list(reader)


def scan_popout(root: str | os.PathLike[str]) -> list[PopoutRecord]:
    """List the arrays of a set in our layout (``metadata.csv`` present) or an external one; every image
    must have its target mask (else ``FileNotFoundError`` naming the image and the expected mask)."""
    root = Path(root)
    images = root / "images"
    if not images.is_dir():
        raise MissingInputError(f"no images/ folder in {root}; expected {LAYOUT}")
    if (root / METADATA_FILE).is_file():
        records = []
        for row in _read_metadata(root):
            record = PopoutRecord(
                row["id"],
                images / f"{row['id']}.png",
                root / "masks" / "target" / f"{row['id']}.png",
                root / "masks" / "items" / f"{row['id']}.png",
                row["dimension"] or None,
                int(row["level"]) if row["level"] != "" else None,
            )
            for path in (record.image, record.target_mask, record.item_mask):
                if not path.is_file():
                    raise MissingInputError(
                        f"{path} is missing (listed as {row['id']!r} in {root / METADATA_FILE})"
                    )
            records.append(record)
        return records
    mask_dir = root / "masks" / "target" if (root / "masks" / "target").is_dir() else root / "masks"
    if not mask_dir.is_dir():
        raise MissingInputError(f"no masks/target/ or masks/ folder in {root}; expected {LAYOUT}")
    item_dir = root / "masks" / "items"
    records = []
    for image in sorted(p for p in images.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES):
        mask = _find_by_stem(mask_dir, image.stem)
        if mask is None:
            raise MissingInputError(
                f"no target mask for image {image}: expected {mask_dir / image.stem}.png "
                f"(or another image suffix: {', '.join(IMAGE_SUFFIXES)})"
            )
        items = _find_by_stem(item_dir, image.stem) if item_dir.is_dir() else None
        records.append(PopoutRecord(image.stem, image, mask, items, None, None))
    if not records:
        raise MissingInputError(f"no images in {images}; expected {LAYOUT}")
    return records


class PopoutDataset(Dataset):
    """Pop-out arrays with their masks. Items are dicts: ``image`` (3 x S x S float, ImageNet-normalised,
    aspect not kept), ``rgb`` (H x W x 3 uint8, original), ``target_mask`` (bool H x W numpy), ``item_masks``
    (int32 H x W numpy or None), ``id``, ``dimension`` and ``level`` (None for external sets)."""

    def __init__(self, root: str | os.PathLike[str], image_size: int = 224, threshold: int = 128) -> None:
        if not 0 < threshold <= 255:
            raise ConfigError(f"data.threshold={threshold}: expected an integer in 1..255")
        self.root = Path(root)
        self.image_size = int(image_size)
        self.threshold = int(threshold)
        self.records = scan_popout(self.root)

    def __len__(self) -> int:
        return len(self.records)

    def __getitem__(self, index: int) -> dict[str, Any]:
        record = self.records[index]
        rgb = load_rgb(record.image)
        target = read_mask(record.target_mask, self.threshold)
        items = read_item_mask(record.item_mask) if record.item_mask is not None else None
        for name, mask, path in (
            ("target mask", target, record.target_mask),
            ("item mask", items, record.item_mask),
        ):
            if mask is not None and mask.shape != rgb.shape[:2]:
                raise InputFileError(
                    f"{name} {path} is {mask.shape[1]}x{mask.shape[0]} but image {record.image} is "
                    f"{rgb.shape[1]}x{rgb.shape[0]} (width x height); they must match"
                )
        return {
            "image": to_model_input(rgb, self.image_size),
            "rgb": rgb,
            "target_mask": target,
            "item_masks": items,
            "id": record.id,
            "dimension": record.dimension,
            "level": record.level,
        }


def collate_popout(batch: list[dict[str, Any]]) -> dict[str, Any]:
    """Stack ``image`` into a B x 3 x S x S tensor; keep every other field as a list (sizes may differ)."""
    if not batch:
        raise ValueError("cannot collate an empty batch")
    collated: dict[str, Any] = {key: [sample[key] for sample in batch] for key in batch[0]}
    collated["image"] = torch.stack(collated["image"])
    return collated


def ensure_popout(
    root: str | os.PathLike[str], *, input_size: int = 224, threshold: int = 128, **generate_kwargs: Any
) -> PopoutDataset:
    """Read the set in ``root``; generate one first (``generate_popout(root, **generate_kwargs)``, ``num``
    defaulting to 98) when ``root`` is missing or empty, or finish one whose generation was interrupted.

    ``input_size`` and ``threshold`` go to :class:`PopoutDataset`. Explicit generator arguments that differ
    from those of the set already in ``root`` raise ``ValueError``; they are ignored (with a warning) for an
    external set.
    """
    root = Path(root)
    stored = read_params(root) if root.is_dir() else None
    if stored is not None:
        generate_popout(root, **{**stored, **generate_kwargs})
    elif root.is_dir() and (root / "images").is_dir():
        if generate_kwargs:
            warnings.warn(
                f"{root} holds an external pop-out set; ignoring {sorted(generate_kwargs)}", stacklevel=2
            )
    elif not root.exists() or (root.is_dir() and not any(root.iterdir())):
        generate_popout(root, **{"num": DEFAULT_NUM, **generate_kwargs})
    elif not root.is_dir():
        raise InputFileError(f"{root} is a file; expected a pop-out set folder ({LAYOUT}) or a new one to generate")
    else:
        raise InputFileError(
            f"{root} is not empty and holds no pop-out set; expected an empty folder (a set is generated there) or {LAYOUT}"
        )
    return PopoutDataset(root, image_size=input_size, threshold=threshold)
