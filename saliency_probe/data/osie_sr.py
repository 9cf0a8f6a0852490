"""OSIE-SR salient-region annotations (He et al. 2019), labelme exported in the Pascal-VOC layout.

``SegmentationClass/<stem>.png|.npy`` holds a class id per pixel and ``SegmentationObject/<stem>.png|.npy`` an
instance id per pixel (0 = background; 255 = VOC "void", ignored). PNGs are indexed (palette) or greyscale
images whose pixel values are the ids. A region is one instance; its category is the class id under it.
The id -> category table is configuration: an explicit ``class_ids`` mapping wins, then ``class_names.txt``
(labelme's file: line *i* names id *i*; ``_background_``, ``__ignore__`` and ``__unused__`` lines name no
category), then :data:`DEFAULT_CLASS_IDS` (the paper's ids).
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from saliency_probe.data.osie import OsieDataset
from saliency_probe.errors import ConfigError, InputFileError, MissingInputError

DEFAULT_CLASS_IDS: dict[int, str] = {
    1: "person head",
    10: "person part",
    16: "animal head",
    22: "animal part",
    27: "object",
    37: "text",
    46: "symbol",
    51: "vehicle",
    57: "food",
    63: "plant",
    68: "drink",
    73: "other",
}
#: The 12 categories in the paper's table order.
CATEGORIES: list[str] = [
    "person head",
    "person part",
    "animal head",
    "animal part",
    "object",
    "text",
    "symbol",
    "vehicle",
    "food",
    "plant",
    "drink",
    "other",
]
VOID_ID = 255
CLASS_NAMES_FILE = "class_names.txt"
PLACEHOLDER_NAMES = ("_background_", "__ignore__", "__unused__", "")
LAYOUT = (
    "<regions_root>/SegmentationClass/<stem>.png|.npy (class id per pixel) and "
    "<regions_root>/SegmentationObject/<stem>.png|.npy (instance id per pixel, 0 = background)"
)


def voc_colormap(size: int = 256) -> np.ndarray:
    """The Pascal-VOC / labelme palette: ``(size, 3)`` uint8, id 0 black (bit-interleaved colours)."""
    colours = np.zeros((size, 3), dtype=np.uint8)
    for index in range(size):
        value, red, green, blue = index, 0, 0, 0
        for shift in range(7, -1, -1):
            red |= ((value >> 0) & 1) << shift
            green |= ((value >> 1) & 1) << shift
            blue |= ((value >> 2) & 1) << shift
            value >>= 3
        colours[index] = (red, green, blue)
    return colours


def write_label_png(path: str | os.PathLike[str], labels: np.ndarray) -> None:
    """Write an id map (values 0..255) as an indexed PNG with the VOC palette, as labelme does."""
    array = np.asarray(labels)
    if array.min(initial=0) < 0 or array.max(initial=0) > 255:
        raise ValueError(f"{path}: label ids must lie in 0..255 to fit an indexed PNG")
    image = Image.fromarray(array.astype(np.uint8))
    image.putpalette(voc_colormap().ravel().tolist())
    image.save(path, optimize=False)


def read_class_names(path: str | os.PathLike[str]) -> dict[int, str]:
    """Parse labelme's ``class_names.txt`` (line *i* = name of id *i*) into ``{id: category}``."""
    lines = Path(path).read_text(encoding="utf-8").splitlines()
    table = {index: line.strip() for index, line in enumerate(lines) if line.strip() not in PLACEHOLDER_NAMES}
    if not table:
        raise InputFileError(f"{path}: no category names (expected labelme's class_names.txt, one name per id)")
    return table


def resolve_class_ids(regions_root: str | os.PathLike[str], class_ids: dict | None = None) -> dict[int, str]:
    """The id table in force: explicit mapping, else ``class_names.txt`` in ``regions_root``, else the default."""
    if class_ids is not None:
        return {int(key): str(value) for key, value in dict(class_ids).items()}
    names_file = Path(regions_root) / CLASS_NAMES_FILE
    return read_class_names(names_file) if names_file.is_file() else dict(DEFAULT_CLASS_IDS)


def annotation_path(root: str | os.PathLike[str], folder: str, stem: str) -> Path:
    """``<root>/<folder>/<stem>.png`` or ``.npy``; raise ``FileNotFoundError`` naming both when neither exists."""
    base = Path(root) / folder / stem
    for suffix in (".png", ".npy"):
        if base.with_suffix(suffix).is_file():
            return base.with_suffix(suffix)
    raise MissingInputError(f"region annotation not found: {base}.png (or .npy); expected {LAYOUT}")


def read_label_map(path: Path) -> np.ndarray:
    """An integer id map from an indexed/greyscale PNG or a 2-D integer ``.npy``."""
    try:
        if path.suffix == ".npy":
            array = np.load(path, allow_pickle=False)
        else:
            with Image.open(path) as image:
                if image.mode not in ("P", "L", "I", "I;16"):
                    raise ValueError(f"PNG mode {image.mode} holds colours, not ids (expected indexed or greyscale)")
                array = np.array(image)
    except (OSError, ValueError) as error:
        raise InputFileError(f"cannot read region annotation {path}: {error}") from error
    if array.ndim != 2 or not np.issubdtype(array.dtype, np.integer):
        raise InputFileError(f"{path}: expected a 2-D integer id map, got shape {array.shape} and dtype {array.dtype}")
    return array.astype(np.int64)


def read_regions(
    root: str | os.PathLike[str],
    stem: str,
    class_ids: dict[int, str] = DEFAULT_CLASS_IDS,
    expected_hw: tuple[int, int] | None = None,
) -> tuple[np.ndarray, list[str]]:
    """Bool masks ``(R, H, W)``, one per instance (ascending instance id), and the category of each."""
    class_path = annotation_path(root, "SegmentationClass", stem)
    object_path = annotation_path(root, "SegmentationObject", stem)
    classes, objects = read_label_map(class_path), read_label_map(object_path)
    if classes.shape != objects.shape:
        raise InputFileError(
            f"{object_path}: instance map is {objects.shape[0]}x{objects.shape[1]} (HxW) but the class map "
            f"{class_path} is {classes.shape[0]}x{classes.shape[1]}"
        )
    if expected_hw is not None and classes.shape != tuple(expected_hw):
        raise InputFileError(
            f"{class_path}: annotation is {classes.shape[0]}x{classes.shape[1]} (HxW) but the image is "
            f"{expected_hw[0]}x{expected_hw[1]}"
        )
    instance_ids = [int(value) for value in np.unique(objects) if value not in (0, VOID_ID)]
    masks, categories = [], []
    for instance in instance_ids:
        mask = objects == instance
        ids_under = np.unique(classes[mask])
        if ids_under.size != 1:
            raise InputFileError(
                f"{class_path}: instance {instance} of {object_path} covers class ids {ids_under.tolist()}; "
                "a region must have exactly one class id"
            )
        class_id = int(ids_under[0])
        if class_id not in class_ids:
            raise InputFileError(
                f"{class_path}: unknown class id {class_id} (instance {instance}); known ids are "
                f"{sorted(class_ids)} (set the id table in data.class_ids or class_names.txt)"
            )
        masks.append(mask)
        categories.append(class_ids[class_id])
    height, width = classes.shape
    stacked = np.stack(masks) if masks else np.zeros((0, height, width), dtype=bool)
    return stacked, categories


class CategorisedRegions:
    """Mixin of the data sets whose items carry categorised regions read from an OSIE-SR layout folder.

    The class using it sets ``regions_root`` and ``class_ids`` and has ``records`` (one per image); its items
    gain ``region_masks`` (bool tensor (R, H, W)) and ``region_categories`` (list of names).
    """

    regions_root: Path
    class_ids: dict[int, str]

    @property
    def categories(self) -> list[str]:
        """Category names in the paper's order first, then any others of the id table (sorted)."""
        names = set(self.class_ids.values())
        return [name for name in CATEGORIES if name in names] + sorted(names - set(CATEGORIES))

    def regions(self, index: int) -> tuple[np.ndarray, list[str]]:
        """Region masks and categories of item ``index`` (checked against the image size)."""
        record = self.records[index]
        return read_regions(self.regions_root, record.stem, self.class_ids, (record.height, record.width))

    def __getitem__(self, index: int) -> dict:
        item = super().__getitem__(index)
        masks, categories = self.regions(index)
        item["region_masks"] = torch.from_numpy(masks)
        item["region_categories"] = categories
        return item


class OsieSrDataset(CategorisedRegions, OsieDataset):
    """OSIE images with OSIE-SR regions: items add ``region_masks`` (bool tensor (R, H, W)) and
    ``region_categories`` (list of names). An image without an annotation file raises naming the file
    (``on_error="skip"`` skips it and lists it in ``skipped``)."""

    def __init__(
        self,
        osie_root: str | os.PathLike[str],
        regions_root: str | os.PathLike[str],
        image_size: int = 224,
        class_ids: dict[int, str] | None = None,
        on_error: str = "raise",
        limit: int | None = None,
        stems: list[str] | None = None,
    ) -> None:
        self.regions_root = Path(regions_root)
        if not self.regions_root.is_dir():
            raise MissingInputError(f"OSIE-SR region folder not found: {self.regions_root}; expected {LAYOUT}")
        self.class_ids = resolve_class_ids(self.regions_root, class_ids)
        super().__init__(osie_root, image_size=image_size, on_error=on_error, limit=limit, stems=stems)

    def _accept(self, image_path: Path) -> bool:
        annotation_path(self.regions_root, "SegmentationClass", image_path.stem)
        annotation_path(self.regions_root, "SegmentationObject", image_path.stem)
        return True


def collate_regions(batch: list[dict]) -> dict:
    """Stack ``image``, ``fixations`` and ``index``; keep ``stem``, ``region_masks``, ``region_categories`` as
    lists (regions differ in number). Fixation maps must share one size (OSIE's 800x600); use batch size 1
    for data sets of mixed sizes."""
    shapes = {tuple(item["fixations"].shape) for item in batch}
    if len(shapes) > 1:
        raise ConfigError(f"cannot stack fixation maps of sizes {sorted(shapes)} in one batch; use data.batch_size=1")
    out = {
        "image": torch.stack([item["image"] for item in batch]),
        "fixations": torch.stack([item["fixations"] for item in batch]),
        "index": torch.tensor([int(item["index"]) for item in batch]),
        "stem": [item["stem"] for item in batch],
    }
    for key in ("region_masks", "region_categories"):
        if key in batch[0]:
            out[key] = [item[key] for item in batch]
    return out
