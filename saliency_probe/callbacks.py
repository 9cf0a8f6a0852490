"""Lightning callbacks of the framework."""

from __future__ import annotations

import pytorch_lightning as pl
from pytorch_lightning.callbacks import BaseFinetuning
from torch.optim import Optimizer

from saliency_probe.models.backbone import CONV_LAYER_NAMES, Trunk, trainable_conv_layers


class FreezeLayers(BaseFinetuning):
    """Freeze every fine-tuning unit of the trunk except the last ``layers`` (VGG-16: conv layers, 0..6 or 'all';
    ResNets: residual blocks; docs/backbones.md), statically, for the whole run.

    Frozen parts are in eval mode whenever the trunk trains: the trunk re-applies it after every ``train()``
    call (Lightning calls ``model.train()`` before each epoch and after each validation), so BatchNorm running
    statistics of frozen blocks do not move. Never unfreezes: under DDP a parameter set that changes mid-run
    breaks gradient bucketing.
    """

    def __init__(self, layers: int | str = 1, trunk_attribute: str = "trunk") -> None:
        super().__init__()
        self.layers = layers
        self.trunk_attribute = trunk_attribute
        self._units: list[str] | None = None  # the trunk's units, known once the callback has seen the model
        try:  # before the model is known: VGG-16's rule (the value is validated against the real trunk later)
            self._trainable = trainable_conv_layers(layers)
        except ValueError:
            self._trainable = []

    @property
    def trainable(self) -> list[str]:
        """The trainable units (network order)."""
        return list(self._trainable)

    def _trunk(self, pl_module: pl.LightningModule) -> Trunk:
        return getattr(pl_module, self.trunk_attribute)

    def frozen_layer_names(self) -> list[str]:
        units = self._units if self._units is not None else CONV_LAYER_NAMES
        return [name for name in units if name not in self._trainable]

    def freeze_before_training(self, pl_module: pl.LightningModule) -> None:
        trunk = self._trunk(pl_module)
        self._trainable = trunk.set_trainable(self.layers)
        self._units = trunk.layer_table.finetune_units()

    def finetune_function(self, pl_module: pl.LightningModule, epoch: int, optimizer: Optimizer) -> None:
        self._trunk(pl_module).apply_frozen_mode()
