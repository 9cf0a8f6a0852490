"""A progress bar over images (not batches) for the probe's predict passes."""

from __future__ import annotations

import math
from typing import Any

import pytorch_lightning as pl
from pytorch_lightning.callbacks import Callback


class ImageProgressBar(Callback):
    """A progress bar over images (not batches) for ``trainer.predict``, on rank zero only."""

    def __init__(self, description: str = "probe") -> None:
        self.description = description
        self._bar: Any = None

    def on_predict_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if not trainer.is_global_zero:
            return
        from tqdm.auto import tqdm

        loaders = trainer.predict_dataloaders
        loaders = loaders if isinstance(loaders, (list, tuple)) else [loaders]
        total = sum(len(getattr(loader, "dataset", ())) for loader in loaders) or None
        self._bar = tqdm(total=total, desc=self.description, unit="img", dynamic_ncols=True, leave=False)

    def on_predict_batch_end(
        self,
        trainer: pl.Trainer,
        pl_module: pl.LightningModule,
        outputs: Any,
        batch: Any,
        batch_idx: int,
        dataloader_idx: int = 0,
    ) -> None:
        if self._bar is not None:
            seen = len(batch["image"]) * trainer.world_size
            self._bar.update(min(seen, (self._bar.total or math.inf) - self._bar.n))

    def on_predict_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if self._bar is not None:
            self._bar.close()
            self._bar = None
