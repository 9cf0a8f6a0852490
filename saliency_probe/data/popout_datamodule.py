"""The pop-out arrays as a Lightning data module (``data=popout``, conf/data/popout.yaml; docs/popout_analysis.md)."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import pytorch_lightning as pl
from omegaconf import DictConfig, OmegaConf
from torch.utils.data import DataLoader

from saliency_probe.data.popout_generator import PARAMS_FILE
from saliency_probe.data.popout_reader import PopoutDataset, collate_popout, ensure_popout
from saliency_probe.validation import target_class

__all__ = ["PopoutDataModule", "data_is_popout", "holds_set"]

log = logging.getLogger(__name__)


def holds_set(root: Path) -> bool:
    """True when ``root`` holds a pop-out set (ours, possibly half-written, or an external one)."""
    return (root / PARAMS_FILE).is_file() or (root / "images").is_dir()


class PopoutDataModule(pl.LightningDataModule):
    """Pop-out arrays for the probe: the set in ``root``, generated there first (``generate``: the keyword
    arguments of :func:`~saliency_probe.data.popout_generator.generate_popout`) when ``root`` holds none. An
    existing set is read as it is, whatever ``generate`` says. Batches are :func:`collate_popout` dicts, in set
    order."""

    def __init__(
        self,
        root: str | Path,
        image_size: int = 224,
        threshold: int = 128,
        batch_size: int = 8,
        num_workers: int = 0,
        generate: dict[str, Any] | None = None,
    ) -> None:
        super().__init__()
        self.root = Path(root).expanduser().absolute()
        self.image_size = int(image_size)
        self.threshold = int(threshold)
        self.batch_size = int(batch_size)
        self.num_workers = int(num_workers)
        generate = OmegaConf.to_container(generate) if OmegaConf.is_config(generate) else generate
        self.generate = {key: value for key, value in dict(generate or {}).items() if value is not None}
        self._dataset: PopoutDataset | None = None

    def prepare_data(self) -> None:
        if not holds_set(self.root):
            log.info("no pop-out set in %s: generating one (%s)", self.root, self.generate)
            ensure_popout(self.root, input_size=self.image_size, threshold=self.threshold, **self.generate)

    @property
    def dataset(self) -> PopoutDataset:
        if self._dataset is None:
            self.prepare_data()
            self._dataset = ensure_popout(self.root, input_size=self.image_size, threshold=self.threshold)
        return self._dataset

    def setup(self, stage: str | None = None) -> None:
        _ = self.dataset

    def predict_dataloader(self) -> DataLoader:
        return DataLoader(self.dataset, batch_size=self.batch_size, shuffle=False, num_workers=self.num_workers,
                          persistent_workers=self.num_workers > 0, collate_fn=collate_popout)


def data_is_popout(cfg: DictConfig | dict[str, Any]) -> bool:
    """True when the ``data`` group builds a :class:`PopoutDataModule` (``data=popout``), without building it."""
    cls = target_class((cfg.get("data") or {}).get("_target_"))  # unresolvable: not pop-out data
    return cls is not None and issubclass(cls, PopoutDataModule)
