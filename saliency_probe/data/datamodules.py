"""Lightning data modules: SALICON for training saliency models, OSIE + OSIE-SR for probing.

Both can run on the embedded synthetic set: with ``synthetic`` set, ``root`` is the synthetic folder (made on
first use by :func:`~saliency_probe.data.synthetic.ensure_synthetic`, reused afterwards, refused when it was
made with other parameters) and the data are read from its ``salicon/``, ``osie/`` and ``osie_sr/``
sub-folders by the same readers as the real data.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import pytorch_lightning as pl
import torch
from torch.utils.data import DataLoader

from saliency_probe.data.osie_sr import OsieSrDataset, collate_regions
from saliency_probe.data.salicon import SaliconDataset
from saliency_probe.data.synthetic import default_root, ensure_synthetic
from saliency_probe.errors import ConfigError

PathLike = str | os.PathLike[str]


def synthetic_kwargs(synthetic: bool | dict | None, seed: int, **sizes: Any) -> dict | None:
    """The generator's keyword arguments, or None when the data are real.

    ``synthetic`` may be a dict of generator arguments, or True to take ``seed`` and the non-null ``sizes``
    (``num_train``, ``num_val``, ``num_probe``, ``salicon_hw``, ``osie_hw``, ``num_observers``).
    """
    given = {key: tuple(value) if key.endswith("_hw") else value for key, value in sizes.items() if value is not None}
    if not synthetic:
        if given:
            raise ConfigError(
                f"data.{', data.'.join(sorted(given))} size the synthetic data set but synthetic is off "
                "(data.synthetic=false); use data.limit_train / limit_val / limit to read part of a real data set"
            )
        return None
    if isinstance(synthetic, bool):
        return {"seed": seed, **given}
    kwargs = dict(synthetic)
    clash = sorted(key for key in given if key in kwargs and kwargs[key] != given[key])
    if clash:
        raise ConfigError(f"synthetic sizes given twice with different values (data.synthetic and data.*): {clash}")
    return {"seed": seed, **given, **kwargs}


def data_root(root: PathLike | None, synthetic: dict | None, key: str = "data.root") -> Path:
    """The data folder: ``root`` when given; for the synthetic set without one, its default folder
    ``data/synthetic/<parameters>`` (:func:`~saliency_probe.data.synthetic.default_root`)."""
    if root is not None and str(root).strip():
        return Path(root).expanduser().absolute()
    if synthetic is not None:
        return default_root(**synthetic)
    raise ConfigError(f"{key} is required: the data set's folder")


def _loader(dataset: Any, batch_size: int, num_workers: int, shuffle: bool, seed: int, collate_fn=None) -> DataLoader:
    return DataLoader(
        dataset,
        batch_size=batch_size,
        shuffle=shuffle,
        num_workers=num_workers,
        generator=torch.Generator().manual_seed(seed) if shuffle else None,
        persistent_workers=num_workers > 0,
        pin_memory=torch.cuda.is_available(),
        collate_fn=collate_fn,
    )


class SaliconDataModule(pl.LightningDataModule):
    """SALICON train/val loaders of ``{"image", "fixations", "stem", "index"}`` dicts (train shuffled, seeded).

    ``root`` holds ``images/`` and ``fixations/`` (2017) or the 2015 JSON files (in ``json_dir``, default
    ``root``); with ``synthetic`` it is the synthetic folder and the data are in ``root/salicon``.
    """

    #: Augmentation of the training images: none, every epoch sees the same tensors (resize + normalise only).
    #: The frozen-prefix feature cache (``cache.features=true``) relies on it and refuses data modules without it.
    train_augmentation: str | None = None

    def __init__(
        self,
        root: PathLike | None = None,
        image_size: int = 224,
        batch_size: int = 5,
        num_workers: int = 0,
        edition: str = "2017",
        limit_train: int | None = None,
        limit_val: int | None = None,
        on_error: str = "raise",
        synthetic: bool | dict | None = None,
        seed: int = 0,
        json_dir: PathLike | None = None,
        num_train: int | None = None,
        num_val: int | None = None,
        num_probe: int | None = None,
        salicon_hw: tuple[int, int] | None = None,
        osie_hw: tuple[int, int] | None = None,
        num_observers: int | None = None,
        shuffle_seed: int | None = None,
    ) -> None:
        super().__init__()
        self.image_size = int(image_size)
        self.batch_size = int(batch_size)
        self.num_workers = int(num_workers)
        self.edition = str(edition)
        self.limits = {"train": limit_train, "val": limit_val}
        self.on_error = on_error
        self.seed = int(seed)
        self.shuffle_seed = int(shuffle_seed) if shuffle_seed is not None else self.seed
        self.json_dir = Path(json_dir).expanduser().absolute() if json_dir is not None else None
        self.synthetic = synthetic_kwargs(
            synthetic, self.seed, num_train=num_train, num_val=num_val, num_probe=num_probe,
            salicon_hw=salicon_hw, osie_hw=osie_hw, num_observers=num_observers,
        )
        self.root = data_root(root, self.synthetic)
        self.datasets: dict[str, SaliconDataset] = {}

    @property
    def data_root(self) -> Path:
        """The SALICON folder read (``root`` or ``root/salicon`` for the synthetic set)."""
        return self.root / "salicon" if self.synthetic is not None else self.root

    def prepare_data(self) -> None:
        if self.synthetic is not None:
            ensure_synthetic(self.root, **self.synthetic)

    def dataset(self, split: str) -> SaliconDataset:
        """The (cached) dataset of ``split`` ("train" or "val")."""
        if split not in self.datasets:
            json_file = self.json_dir / f"fixations_{split}2014.json" if self.json_dir is not None else None
            self.datasets[split] = SaliconDataset(
                self.data_root, split, image_size=self.image_size, edition=self.edition, json_file=json_file,
                on_error=self.on_error, limit=self.limits.get(split),
            )
        return self.datasets[split]

    def setup(self, stage: str | None = None) -> None:
        self.prepare_data()  # cheap when the synthetic set exists: it only compares manifest.json
        if stage in (None, "fit"):
            self.dataset("train")
        if stage in (None, "fit", "validate"):
            self.dataset("val")

    def train_dataloader(self) -> DataLoader:
        return _loader(self.dataset("train"), self.batch_size, self.num_workers, True, self.shuffle_seed)

    def val_dataloader(self) -> DataLoader:
        return _loader(self.dataset("val"), self.batch_size, self.num_workers, False, self.shuffle_seed)

    def split_stems(self) -> dict[str, list[str]]:
        """The image stems of the training and validation splits, in loader order before shuffling (the split is
        a property of the data: checkpoints and summary.json record it, so two runs can be compared)."""
        self.setup("fit")
        return {split: list(self.dataset(split).stems) for split in ("train", "val")}

    def summary(self) -> dict[str, Any]:
        """What was read: edition, sizes, clipped fixations, excluded and skipped images (for summary.json)."""
        return {
            "root": str(self.data_root),
            "edition": self.edition,
            "synthetic": self.synthetic,
            **{
                f"{split}_{key}": value
                for split, data in self.datasets.items()
                for key, value in (
                    ("images", len(data)),
                    ("clipped_fixations", data.n_clipped),
                    ("fixations", data.n_fixation_points),
                    ("without_fixations", data.n_without_fixations),
                    ("skipped", data.skipped),
                )
            },
        }


class OsieSrDataModule(pl.LightningDataModule):
    """OSIE images with OSIE-SR regions for the probe: ``predict_dataloader`` in data-set order, batches made
    by :func:`~saliency_probe.data.osie_sr.collate_regions` (no shuffling; Lightning's predict loop shards
    without padding under DDP)."""

    def __init__(
        self,
        osie_root: PathLike | None = None,
        regions_root: PathLike | None = None,
        image_size: int = 224,
        batch_size: int = 8,
        num_workers: int = 0,
        class_ids: dict[int, str] | None = None,
        on_error: str = "raise",
        limit: int | None = None,
        stems: list[str] | None = None,
        root: PathLike | None = None,
        synthetic: bool | dict | None = None,
        seed: int = 0,
        num_train: int | None = None,
        num_val: int | None = None,
        num_probe: int | None = None,
        salicon_hw: tuple[int, int] | None = None,
        osie_hw: tuple[int, int] | None = None,
        num_observers: int | None = None,
    ) -> None:
        super().__init__()
        self.synthetic = synthetic_kwargs(
            synthetic, seed, num_train=num_train, num_val=num_val, num_probe=num_probe,
            salicon_hw=salicon_hw, osie_hw=osie_hw, num_observers=num_observers,
        )
        self.root = data_root(root, self.synthetic) if self.synthetic is not None or root is not None else None
        base = self.root if self.synthetic is not None else None
        osie_root = osie_root if osie_root is not None else (base / "osie" if base else None)
        regions_root = regions_root if regions_root is not None else (base / "osie_sr" if base else None)
        if osie_root is None or regions_root is None:
            raise ConfigError(
                "data.osie_root and data.regions_root are required (the OSIE and OSIE-SR folders), "
                "or data.root with data.synthetic=true"
            )
        self.osie_root = Path(osie_root).expanduser().absolute()
        self.regions_root = Path(regions_root).expanduser().absolute()
        self.image_size = int(image_size)
        self.batch_size = int(batch_size)
        self.num_workers = int(num_workers)
        self.class_ids = dict(class_ids) if class_ids is not None else None
        self.on_error = on_error
        self.limit = limit
        self.stems = [str(stem) for stem in stems] if stems is not None else None  # Hydra gives 1001 as int
        self._dataset: OsieSrDataset | None = None

    def prepare_data(self) -> None:
        if self.synthetic is not None:
            ensure_synthetic(self.root, **self.synthetic)

    @property
    def dataset(self) -> OsieSrDataset:
        if self._dataset is None:
            self.prepare_data()
            self._dataset = OsieSrDataset(
                self.osie_root, self.regions_root, image_size=self.image_size, class_ids=self.class_ids,
                on_error=self.on_error, limit=self.limit, stems=self.stems,
            )
        return self._dataset

    @property
    def categories(self) -> list[str]:
        """Category names of the id table, the paper's order first."""
        return self.dataset.categories

    def setup(self, stage: str | None = None) -> None:
        _ = self.dataset

    def predict_dataloader(self) -> DataLoader:
        return _loader(self.dataset, self.batch_size, self.num_workers, False, 0, collate_fn=collate_regions)

    def summary(self) -> dict[str, Any]:
        data = self.dataset
        return {
            "osie_root": str(self.osie_root),
            "regions_root": str(self.regions_root),
            "images": len(data),
            "clipped_fixations": data.n_clipped,
            "fixations": data.n_fixation_points,
            "without_fixations": data.n_without_fixations,
            "skipped": data.skipped,
            "class_ids": {str(key): value for key, value in data.class_ids.items()},
        }
