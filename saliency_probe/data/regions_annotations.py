"""Instance annotations for the region builder, and the editable class -> category tables (``conf/regions/``).

Readers give each image's instances as boolean masks with their class name:

- COCO instances JSON (polygons, uncompressed and compressed RLE decoded by pycocotools), joined to the
  fixation images by image id (the number that ends a SALICON stem); person keypoints from the annotation or
  from a ``person_keypoints`` file (matched by annotation id);
- VOC / labelme masks (``SegmentationObject`` + ``SegmentationClass``, class names from ``class_names.txt`` or
  the 20 Pascal VOC classes), joined by stem; the synthetic set's own annotation is of this kind.

A :class:`CategoryTable` maps class names to categories and splits persons into head and part by keypoints.
docs/regions.md describes the tables and every check.
"""

from __future__ import annotations

import contextlib
import io
import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from omegaconf import OmegaConf
from pycocotools.coco import COCO

from saliency_probe.data.osie_sr import (
    CATEGORIES,
    CLASS_NAMES_FILE,
    VOID_ID,
    annotation_path,
    read_class_names,
    read_label_map,
    read_regions,
)
from saliency_probe.errors import ConfigError, InputFileError, MissingInputError

#: ``conf/regions/`` of this checkout: where a table given by name (``coco``) is found.
TABLES_DIR = Path(__file__).resolve().parents[2] / "conf" / "regions"
ANNOTATION_FORMATS = ("coco", "voc")
#: The 17 COCO person keypoints in COCO's order (used when the file's person category does not name them).
COCO_KEYPOINTS = [
    "nose", "left_eye", "right_eye", "left_ear", "right_ear", "left_shoulder", "right_shoulder", "left_elbow",
    "right_elbow", "left_wrist", "right_wrist", "left_hip", "right_hip", "left_knee", "right_knee", "left_ankle",
    "right_ankle",
]
#: Pascal VOC's class ids (SegmentationClass values) when a VOC folder has no class_names.txt.
VOC_CLASSES = {
    1: "aeroplane", 2: "bicycle", 3: "bird", 4: "boat", 5: "bottle", 6: "bus", 7: "car", 8: "cat", 9: "chair",
    10: "cow", 11: "diningtable", 12: "dog", 13: "horse", 14: "motorbike", 15: "person", 16: "pottedplant",
    17: "sheep", 18: "sofa", 19: "train", 20: "tvmonitor",
}


# ------------------------------------------------------------------------------------------------------------
# the class -> category table
# ------------------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class PersonSplit:
    """How a person instance is split into head and part (``conf/regions/coco.yaml: person_split``)."""

    label: str = "person"
    head: str = "person head"
    part: str = "person part"
    head_keypoints: tuple[str, ...] = ("nose", "left_eye", "right_eye", "left_ear", "right_ear")
    head_scale: float = 0.6
    shoulder_scale: float = 0.3
    min_radius: float = 4.0


@dataclass(frozen=True)
class CategoryTable:
    """Class name -> category (None: unmapped), the optional person split, and where the table came from."""

    name: str
    path: str
    classes: dict[str, str | None]
    person_split: PersonSplit | None = None

    @property
    def categories(self) -> list[str]:
        """Every category the table can give, the paper's order first, then others sorted."""
        names = {value for value in self.classes.values() if value}
        if self.person_split is not None:
            names |= {self.person_split.head, self.person_split.part}
        return [c for c in CATEGORIES if c in names] + sorted(names - set(CATEGORIES))

    def category(self, label: str) -> str | None:
        """The category of class ``label``, or None when the table does not map it."""
        return self.classes.get(label)

    def record(self) -> dict[str, Any]:
        """The table as plain values (recorded in ``regions.json``)."""
        split = None
        if self.person_split is not None:
            split = {**self.person_split.__dict__, "head_keypoints": list(self.person_split.head_keypoints)}
        return {"name": self.name, "path": self.path, "classes": dict(self.classes), "person_split": split}


def table_path(spec: str | os.PathLike[str]) -> Path:
    """A table's file: a name (``coco``) is ``conf/regions/<name>.yaml``, anything else a path."""
    text = str(spec)
    if "/" not in text and not text.endswith((".yaml", ".yml")):
        path = TABLES_DIR / f"{text}.yaml"
        if not path.is_file():
            known = sorted(p.stem for p in TABLES_DIR.glob("*.yaml"))
            raise MissingInputError(f"category table {text!r} not found: {path} (known tables: {known})")
        return path
    path = Path(text).expanduser()
    if not path.is_file():
        raise MissingInputError(f"category table not found: {path}")
    return path


def load_table(spec: str | os.PathLike[str]) -> CategoryTable:
    """Read a class -> category table (``classes``, optional ``person_split``); errors name the file and key."""
    path = table_path(spec)
    content = OmegaConf.to_container(OmegaConf.load(path), resolve=True)
    if not isinstance(content, dict) or not isinstance(content.get("classes"), dict):
        raise InputFileError(f"{path}: expected a mapping with `classes` (class name -> category)")
    classes = {str(key): (str(value) if value is not None else None) for key, value in content["classes"].items()}
    split_node = content.get("person_split")
    split = None
    if split_node is not None:
        known = {"class", "head", "part", "head_keypoints", "head_scale", "shoulder_scale", "min_radius"}
        unknown = sorted(set(split_node) - known)
        if unknown:
            raise InputFileError(f"{path}: person_split has unknown key(s) {unknown}; known: {sorted(known)}")
        values = {("label" if key == "class" else key): value for key, value in split_node.items()}
        if "head_keypoints" in values:
            values["head_keypoints"] = tuple(str(name) for name in values["head_keypoints"])
        split = PersonSplit(**values)
    return CategoryTable(str(content.get("name") or path.stem), str(path.resolve()), classes, split)


# ------------------------------------------------------------------------------------------------------------
# instances
# ------------------------------------------------------------------------------------------------------------


@dataclass
class Instance:
    """One annotated instance: bool mask, class name, where it came from, visible keypoints (name -> x, y)."""

    mask: np.ndarray
    label: str
    source: str
    keypoints: dict[str, tuple[float, float]] = field(default_factory=dict)


@dataclass
class Candidate:
    """A mask a cluster may pick: an instance, or a person's head or part; ``category`` None = unmapped."""

    mask: np.ndarray
    category: str | None
    label: str
    source: str

    @property
    def area(self) -> int:
        return int(self.mask.sum())


def head_disc(keypoints: dict[str, tuple[float, float]], split: PersonSplit, shape: tuple[int, int]) -> np.ndarray | None:
    """The head disc of a person (bool ``(H, W)``), or None when no head keypoint is visible."""
    head = np.array([keypoints[name] for name in split.head_keypoints if name in keypoints], dtype=np.float64)
    if head.size == 0:
        return None
    centre = head.mean(axis=0)
    radius = float(split.min_radius)
    if len(head) > 1:
        span = np.sqrt(((head[:, None, :] - head[None, :, :]) ** 2).sum(-1)).max()
        radius = max(radius, split.head_scale * float(span))
    if "left_shoulder" in keypoints and "right_shoulder" in keypoints:
        shoulders = np.subtract(keypoints["left_shoulder"], keypoints["right_shoulder"])
        radius = max(radius, split.shoulder_scale * float(np.hypot(*shoulders)))
    rows, cols = np.ogrid[: shape[0], : shape[1]]
    return (cols + 0.5 - centre[0]) ** 2 + (rows + 0.5 - centre[1]) ** 2 <= radius**2


def candidates(instances: list[Instance], table: CategoryTable) -> list[Candidate]:
    """The masks clusters choose from: each instance with its category; a person with visible head keypoints
    (and a person split in the table) becomes its head (mask inside the head disc) and its part (the rest)."""
    out: list[Candidate] = []
    split = table.person_split
    for instance in instances:
        if not instance.mask.any():
            continue
        if split is not None and instance.label == split.label:
            disc = head_disc(instance.keypoints, split, instance.mask.shape)
            if disc is not None:
                head, part = instance.mask & disc, instance.mask & ~disc
                if head.any():
                    out.append(Candidate(head, split.head, instance.label, f"{instance.source}:head"))
                    if part.any():
                        out.append(Candidate(part, split.part, instance.label, f"{instance.source}:part"))
                    continue
        out.append(Candidate(instance.mask, table.category(instance.label), instance.label, instance.source))
    return out


class CocoAnnotations:
    """COCO instances (pycocotools), looked up by the image id that ends a fixation image's stem."""

    def __init__(self, instances: str | os.PathLike[str], keypoints: str | os.PathLike[str] | None = None) -> None:
        self.path = Path(instances).expanduser().absolute()
        self.coco = _load_coco(self.path)
        self.keypoints_path = Path(keypoints).expanduser().absolute() if keypoints is not None else None
        self.keypoint_names = _keypoint_names(self.coco)
        self.extra_keypoints: dict[int, list[float]] = {}
        if self.keypoints_path is not None:
            people = _load_coco(self.keypoints_path)
            self.keypoint_names = _keypoint_names(people) or self.keypoint_names
            self.extra_keypoints = {int(a["id"]): list(a["keypoints"]) for a in people.anns.values() if "keypoints" in a}

    def key(self, stem: str, image_id: int | None) -> int | None:
        """The join key: the COCO image id of a fixation image (its stem's number), or None when absent from the file."""
        return image_id if image_id is not None and image_id in self.coco.imgs else None

    def image_keys(self) -> set[int]:
        """Every annotated image id."""
        return set(self.coco.imgs)

    def instances(self, stem: str, key: int, shape: tuple[int, int], image_path: Path) -> list[Instance]:
        """The instances of COCO image ``key`` (masks at ``shape``, which must be the annotated size)."""
        image_id = key
        entry = self.coco.imgs[image_id]
        annotated = (int(entry["height"]), int(entry["width"]))
        if annotated != tuple(shape):
            raise InputFileError(
                f"image size mismatch: {self.path} annotates image id {image_id} ({stem}) as "
                f"{annotated[0]}x{annotated[1]} (HxW) but the image {image_path} is {shape[0]}x{shape[1]}"
            )
        out = []
        for annotation in self.coco.loadAnns(self.coco.getAnnIds(imgIds=[image_id], iscrowd=None)):
            label = str(self.coco.cats[annotation["category_id"]]["name"])
            try:
                mask = self.coco.annToMask(annotation).astype(bool)
            except Exception as error:  # noqa: BLE001 - pycocotools raises several types on bad segmentations
                raise InputFileError(f"{self.path}: annotation {annotation.get('id')} (image id {image_id}): "
                                 f"cannot decode its segmentation ({error})") from error
            if mask.shape != tuple(shape):
                raise InputFileError(f"image size mismatch: {self.path}: annotation {annotation.get('id')} decodes to "
                                 f"{mask.shape[0]}x{mask.shape[1]} but the image {image_path} is {shape[0]}x{shape[1]}")
            raw = annotation.get("keypoints") or self.extra_keypoints.get(int(annotation["id"])) or []
            out.append(Instance(mask, label, f"coco:{annotation['id']}", _visible(raw, self.keypoint_names)))
        return out


def _load_coco(path: Path) -> COCO:
    """pycocotools' index of a COCO JSON file (its progress prints silenced); errors name the file."""
    if not path.is_file():
        raise MissingInputError(f"COCO annotation file not found: {path}")
    try:
        with contextlib.redirect_stdout(io.StringIO()):
            return COCO(str(path))
    except (ValueError, KeyError, TypeError, json.JSONDecodeError) as error:
        raise InputFileError(f"{path}: not a COCO instances file ({error!r}); expected images, annotations, "
                         "categories") from error


def _keypoint_names(coco: COCO) -> list[str]:
    for category in coco.cats.values():
        if category.get("keypoints"):
            return [str(name) for name in category["keypoints"]]
    return list(COCO_KEYPOINTS)


def _visible(raw: list[float], names: list[str]) -> dict[str, tuple[float, float]]:
    """COCO's flat ``[x, y, v] * K`` as ``{name: (x, y)}`` for the keypoints with visibility ``v > 0``."""
    values = np.asarray(raw, dtype=np.float64).reshape(-1, 3) if len(raw) else np.zeros((0, 3))
    return {names[k]: (float(x), float(y)) for k, (x, y, v) in enumerate(values) if v > 0 and k < len(names)}


class VocAnnotations:
    """VOC / labelme masks: ``<root>/SegmentationObject/<stem>.png|.npy`` and ``SegmentationClass``, class names
    from ``class_names.txt`` (else the 20 VOC classes), joined to the fixation images by stem."""

    def __init__(self, root: str | os.PathLike[str]) -> None:
        self.path = Path(root).expanduser().absolute()
        if not (self.path / "SegmentationObject").is_dir():
            raise MissingInputError(
                f"VOC-layout annotation folder not found: {self.path / 'SegmentationObject'} (expected "
                "SegmentationObject/ and SegmentationClass/ with <stem>.png)"
            )
        names = self.path / CLASS_NAMES_FILE
        self.class_ids = read_class_names(names) if names.is_file() else dict(VOC_CLASSES)

    def key(self, stem: str, image_id: int | None) -> str | None:
        """The join key: the stem, when both mask files exist (else None)."""
        try:
            annotation_path(self.path, "SegmentationObject", stem)
            annotation_path(self.path, "SegmentationClass", stem)
        except FileNotFoundError:
            return None
        return stem

    def image_keys(self) -> set[str]:
        """Every stem with an instance mask."""
        return {p.stem for p in (self.path / "SegmentationObject").iterdir() if p.suffix in (".png", ".npy")}

    def instances(self, stem: str, key: str, shape: tuple[int, int], image_path: Path) -> list[Instance]:
        """The instances of ``stem`` (``key``, as :meth:`key` gives it), ascending instance id; the masks must
        have the image's size."""
        objects = read_label_map(annotation_path(self.path, "SegmentationObject", stem))
        if objects.shape != tuple(shape):
            raise InputFileError(
                f"image size mismatch: {annotation_path(self.path, 'SegmentationObject', stem)} is "
                f"{objects.shape[0]}x{objects.shape[1]} (HxW) but the image {image_path} is {shape[0]}x{shape[1]}"
            )
        masks, labels = read_regions(self.path, stem, self.class_ids, tuple(shape))
        ids = [int(value) for value in np.unique(objects) if value not in (0, VOID_ID)]
        return [Instance(mask, label, f"voc:{number}") for mask, label, number in zip(masks, labels, ids, strict=True)]


def open_annotations(
    format: str, path: str | os.PathLike[str], keypoints: str | os.PathLike[str] | None = None
) -> CocoAnnotations | VocAnnotations:
    """The reader of ``format`` (coco | voc) over ``path``."""
    if format == "coco":
        return CocoAnnotations(path, keypoints)
    if format == "voc":
        if keypoints is not None:
            raise ConfigError("keypoints are read from COCO files only; VOC masks have none (drop `keypoints`)")
        return VocAnnotations(path)
    raise ConfigError(f"annotation format {format!r} is not supported; choose one of {ANNOTATION_FORMATS}")
