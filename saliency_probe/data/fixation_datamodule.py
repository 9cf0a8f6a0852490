"""A Lightning data module over a plain fixation data set (OSIE or MIT1003) for evaluation (``data=osie``).

Unlike :class:`~saliency_probe.data.datamodules.OsieSrDataModule` it needs no region annotation: the benchmark
scores saliency maps on the fixations alone. With ``synthetic`` set, ``root`` is the synthetic folder (made on
first use) and the OSIE-format part in ``root/osie`` is read by the same reader as the real data.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import pytorch_lightning as pl
from torch.utils.data import DataLoader

from saliency_probe.data.datamodules import data_root, synthetic_kwargs
from saliency_probe.data.fixations import FixationDataset
from saliency_probe.data.mit1003 import Mit1003Dataset
from saliency_probe.data.osie import OsieDataset
from saliency_probe.data.synthetic import ensure_synthetic
from saliency_probe.errors import ConfigError

FORMATS = {"osie": OsieDataset, "mit1003": Mit1003Dataset}


class FixationDataModule(pl.LightningDataModule):
    """Images and fixations of one data set in data-set order: ``predict_dataset`` and ``predict_dataloader``.

    Args:
        root: the data set folder (OSIE: holds ``data/stimuli`` and ``data/eye``; MIT1003: holds
            ``ALLSTIMULI`` and ``ALLFIXATIONMAPS``), or the synthetic folder when ``synthetic`` is set.
        format: ``osie`` or ``mit1003``.
        limit / stems: read only the first ``limit`` images, or these stems.
        batch_size: images per batch of the loader (1 for data sets with mixed image sizes).
    """

    def __init__(
        self,
        root: str | os.PathLike[str] | None = None,
        format: str = "osie",
        image_size: int = 224,
        batch_size: int = 1,
        num_workers: int = 0,
        on_error: str = "raise",
        limit: int | None = None,
        stems: list[str] | None = None,
        synthetic: bool | dict | None = None,
        seed: int = 0,
        **synthetic_sizes: Any,
    ) -> None:
        super().__init__()
        if format not in FORMATS:
            raise ConfigError(f"data.format={format!r} is not supported; expected one of {sorted(FORMATS)}")
        self.format = format
        self.synthetic = synthetic_kwargs(synthetic, int(seed), **synthetic_sizes)
        self.root = data_root(root, self.synthetic)
        if self.synthetic is not None and format != "osie":
            raise ConfigError(
                f"data.format={format!r}: the synthetic data set is written in the OSIE format only; use data.format=osie"
            )
        self.image_size = int(image_size)
        self.batch_size = int(batch_size)
        self.num_workers = int(num_workers)
        self.on_error = on_error
        self.limit = limit
        self.stems = list(stems) if stems is not None else None
        self._dataset: FixationDataset | None = None

    @property
    def data_root(self) -> Path:
        """The folder the reader opens (``root``, or ``root/osie`` for the synthetic set)."""
        return self.root / "osie" if self.synthetic is not None else self.root

    def prepare_data(self) -> None:
        if self.synthetic is not None:
            ensure_synthetic(self.root, **self.synthetic)

    @property
    def predict_dataset(self) -> FixationDataset:
        if self._dataset is None:
            self.prepare_data()
            self._dataset = FORMATS[self.format](
                self.data_root, image_size=self.image_size, on_error=self.on_error, limit=self.limit,
                stems=self.stems,
            )
        return self._dataset

    def setup(self, stage: str | None = None) -> None:
        _ = self.predict_dataset

    def predict_dataloader(self) -> DataLoader:
        return DataLoader(self.predict_dataset, batch_size=self.batch_size, shuffle=False,
                          num_workers=self.num_workers, persistent_workers=self.num_workers > 0)

    def summary(self) -> dict[str, Any]:
        data = self.predict_dataset
        return {
            "root": str(self.data_root),
            "format": self.format,
            "synthetic": self.synthetic,
            "images": len(data),
            "clipped_fixations": data.n_clipped,
            "fixations": data.n_fixation_points,
            "without_fixations": data.n_without_fixations,
            "skipped": data.skipped,
        }
