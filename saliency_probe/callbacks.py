"""Lightning callbacks of the framework."""

from __future__ import annotations

import pytorch_lightning as pl
from pytorch_lightning.callbacks import BaseFinetuning
from torch.optim import Optimizer

from saliency_probe.models.backbone import CONV_LAYER_NAMES, VGGTrunk, trainable_conv_layers


class FreezeLayers(BaseFinetuning):
    """Freeze every trunk conv layer except the last ``layers`` (0..6 or 'all'), statically, for the whole run.

    Frozen layers are put in eval mode at the start of every epoch (Lightning calls ``model.train()`` before each
    epoch), so that layers with train/eval differences would behave as at inference. Never unfreezes: under DDP a
    parameter set that changes mid-run breaks gradient bucketing.
    """

    def __init__(self, layers: int | str = 1, trunk_attribute: str = "trunk") -> None:
        super().__init__()
        self.layers = layers
        self.trunk_attribute = trunk_attribute
        self.trainable = trainable_conv_layers(layers)

    def _trunk(self, pl_module: pl.LightningModule) -> VGGTrunk:
        return getattr(pl_module, self.trunk_attribute)

    def frozen_layer_names(self) -> list[str]:
        return [name for name in CONV_LAYER_NAMES if name not in self.trainable]

    def freeze_before_training(self, pl_module: pl.LightningModule) -> None:
        trunk = self._trunk(pl_module)
        trunk.set_trainable(self.layers)
        self.freeze([trunk.conv(name) for name in self.frozen_layer_names()], train_bn=False)

    def finetune_function(self, pl_module: pl.LightningModule, epoch: int, optimizer: Optimizer) -> None:
        trunk = self._trunk(pl_module)
        for name in self.frozen_layer_names():
            trunk.conv(name).eval()
