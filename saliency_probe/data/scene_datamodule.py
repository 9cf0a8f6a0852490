"""SALICON images paired with scene labels (SALICON-SAL-SCE style) for the scene-recognition task."""

from __future__ import annotations

import csv
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch.utils.data import ConcatDataset, DataLoader, Dataset

from saliency_probe.data.datamodules import SaliconDataModule, _loader
from saliency_probe.data.items import image_file, item_without_image
from saliency_probe.data.scenes import SceneLabels, class_weights, read_scene_labels
from saliency_probe.errors import ConfigError, InputFileError


def stratified_split(labels: list[str], val_fraction: float, seed: int) -> tuple[list[int], list[int]]:
    """Indices of a train/val split that keeps every class's share (at least one of each class in train)."""
    rng = np.random.default_rng(seed)
    train: list[int] = []
    val: list[int] = []
    for name in sorted(set(labels)):
        members = [i for i, label in enumerate(labels) if label == name]
        rng.shuffle(members)
        n_val = min(int(round(len(members) * val_fraction)), len(members) - 1)
        val.extend(members[:n_val])
        train.extend(members[n_val:])
    return sorted(train), sorted(val)


def _read_split_column(path: Path) -> dict[str, str] | None:
    """The optional ``split`` column of the label file (train/val per image), or None when absent."""
    with path.open(newline="", encoding="utf-8-sig") as handle:
        reader = csv.DictReader(handle)
        if not reader.fieldnames or "split" not in reader.fieldnames:
            return None
        return {row["image"].removesuffix(".jpg"): row["split"].strip() for row in reader}


class LabelledImages(Dataset):
    """Items of a SALICON dataset with an integer scene ``label`` added."""

    def __init__(self, source: Dataset, indices: list[int], labels: list[int]) -> None:
        self.source = source
        self.indices = indices
        self.labels = labels

    def __len__(self) -> int:
        return len(self.indices)

    def __getitem__(self, index: int) -> dict[str, Any]:
        item = dict(self.source[self.indices[index]])
        item["label"] = torch.tensor(self.labels[index], dtype=torch.long)
        return item

    def image_file(self, index: int) -> Path:
        """The image file of item ``index``."""
        return image_file(self.source, self.indices[index])

    def item_without_image(self, index: int) -> dict[str, Any]:
        """Item ``index`` without its ``image`` entry (nothing is decoded)."""
        item = item_without_image(self.source, self.indices[index])
        item["label"] = torch.tensor(self.labels[index], dtype=torch.long)
        return item


class SaliconScenesDataModule(SaliconDataModule):
    """SALICON images (both splits) with scene labels; classes under ``min_images_per_class`` are dropped.

    Reads the images and fixations exactly as :class:`SaliconDataModule` (same arguments, same synthetic set),
    plus ``labels_file`` (CSV ``image,scene[,split]``, default ``<root>/scenes.csv``). The split comes from the
    file's optional ``split`` column, else a stratified split of the labelled images (``val_fraction``, seeded).
    ``class_names``, ``class_counts`` and ``class_weights`` (``n / (K n_c)`` from the training split) are known
    after ``setup`` and passed to the scene module by :meth:`module_kwargs`.
    """

    def __init__(
        self,
        root: str | None = None,
        labels_file: str | None = None,
        min_images_per_class: int = 50,
        val_fraction: float = 0.2,
        **salicon_kwargs: Any,
    ) -> None:
        super().__init__(root, **salicon_kwargs)
        self.labels_file = Path(labels_file).expanduser().absolute() if labels_file else self.root / "scenes.csv"
        self.min_images_per_class = int(min_images_per_class)
        self.val_fraction = float(val_fraction)
        self.train_set: LabelledImages | None = None
        self.val_set: LabelledImages | None = None
        self.scene_labels: SceneLabels | None = None
        self.source_stems: list[str] = []

    def setup(self, stage: str | None = None) -> None:
        if self.train_set is not None:
            return
        super().setup(None)
        splits = [self.dataset("train"), self.dataset("val")]
        source = ConcatDataset(splits)
        stems = [stem for dataset in splits for stem in dataset.stems]
        self.source_stems = stems
        labels = read_scene_labels(self.labels_file, known_stems=stems, min_images_per_class=self.min_images_per_class)
        self.scene_labels = labels
        self.class_names = list(labels.classes)
        if len(self.class_names) < 2:
            raise ConfigError(
                f"{self.labels_file}: fewer than 2 scene classes keep >= {self.min_images_per_class} images "
                f"(dropped: {labels.dropped_classes}); lower data.min_images_per_class"
            )
        index_of = {name: i for i, name in enumerate(self.class_names)}
        labelled = [(i, labels.labels[stem]) for i, stem in enumerate(stems) if stem in labels.labels]
        given = _read_split_column(self.labels_file)
        if given is not None:
            train_idx = [k for k, (i, _) in enumerate(labelled) if given.get(stems[i]) == "train"]
            val_idx = [k for k, (i, _) in enumerate(labelled) if given.get(stems[i]) == "val"]
        else:
            train_idx, val_idx = stratified_split([name for _, name in labelled], self.val_fraction, self.seed)
        train_names = [labelled[k][1] for k in train_idx]
        self.class_counts = {name: train_names.count(name) for name in self.class_names}
        try:
            weights = class_weights(train_names, self.class_names)
        except ValueError as error:  # e.g. the file's split column puts every image of a class in val
            raise InputFileError(f"{self.labels_file}: training split: {error}") from error
        self.class_weight_values = [float(weights[name]) for name in self.class_names]

        def subset(keys: list[int]) -> LabelledImages:
            return LabelledImages(source, [labelled[k][0] for k in keys], [index_of[labelled[k][1]] for k in keys])

        self.train_set = subset(train_idx)
        self.val_set = subset(val_idx)

    def split_stems(self) -> dict[str, list[str]]:
        """The stems of the labelled training and validation images: the same lists whichever task trains on
        this module (Table 7 compares a saliency and a scene model fine-tuned on the same images)."""
        self.setup("fit")
        assert self.train_set is not None and self.val_set is not None
        return {name: [self.source_stems[i] for i in subset.indices]
                for name, subset in (("train", self.train_set), ("val", self.val_set))}

    def module_kwargs(self) -> dict[str, Any]:
        """What the scene module needs from the data: class names, weights and counts."""
        self.setup("fit")
        return {
            "class_names": self.class_names,
            "class_weights": self.class_weight_values,
            "class_counts": self.class_counts,
        }

    def summary(self) -> dict[str, Any]:
        labels = self.scene_labels
        return {
            **super().summary(),
            "labels_file": str(self.labels_file),
            "num_train": len(self.train_set or []),
            "num_val": len(self.val_set or []),
            "dropped_classes": dict(labels.dropped_classes) if labels else {},
            "unknown_images": len(labels.unknown_images) if labels else 0,
        }

    def train_dataloader(self) -> DataLoader:
        self.setup("fit")
        return _loader(self.train_set, self.batch_size, self.num_workers, True, self.shuffle_seed)

    def val_dataloader(self) -> DataLoader:
        self.setup("fit")
        return _loader(self.val_set, self.batch_size, self.num_workers, False, self.shuffle_seed)
