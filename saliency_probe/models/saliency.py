"""The saliency model of the paper: a trunk (VGG-16 by default) + 1x1 conv head (no bias), trained with loss -NSS.

With ``backbone=custom`` and ``backbone.output`` the model's own output is the prediction (no 1x1 head).
"""

from __future__ import annotations

from typing import Any

import pytorch_lightning as pl
import torch
from torch import nn

from saliency_probe.maps import fixation_density
from saliency_probe.metrics import CC, NSS
from saliency_probe.metrics.functional import nss
from saliency_probe.models.backbone import BackboneSpec, build_trunk
from saliency_probe.models.checkpoint import CheckpointMetadataMixin
from saliency_probe.models.optim import configure_from_config


class SaliencyModule(CheckpointMetadataMixin, pl.LightningModule):
    """Trunk to its head layer (VGG-16: conv5_3, post-ReLU), then ``Conv2d(C, 1, 1, bias=False)``; output at the
    head layer's resolution.

    ``backbone`` is the ``backbone`` config (a dict; None = VGG-16), ``weights`` its starting weights.
    ``optimizer`` and ``scheduler`` are plain config dicts (``_target_`` + arguments, instantiated here) so that
    checkpoints hold plain containers only and load with ``torch.load(weights_only=True)``.
    """

    task = "saliency"

    def __init__(
        self,
        weights: str | None = None,
        finetune_layers: int | str = 1,
        optimizer: dict[str, Any] | None = None,
        scheduler: dict[str, Any] | None = None,
        gt_sigma: float = 24.0,
        run_config: dict[str, Any] | None = None,
        run_name: str | None = None,
        backbone: dict[str, Any] | str | None = None,
    ) -> None:
        super().__init__()
        self.save_hyperparameters()
        self.trunk = build_trunk(weights, BackboneSpec.from_config(backbone, weights=weights))
        table = self.trunk.layer_table
        self.head = None if self.trunk.has_output else nn.Conv2d(
            self.trunk.layer(table.head).channels, 1, kernel_size=1, bias=False)
        self.val_nss = NSS()
        self.val_cc = CC()

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        """Saliency maps ``(B, h, w)`` at the head layer's resolution (resize happens in the metric)."""
        if self.head is None:
            return self.trunk.saliency(images).squeeze(1)
        return self.head(self.trunk(images)).squeeze(1)

    def loss(self, predictions: torch.Tensor, fixations: torch.Tensor) -> torch.Tensor:
        """-NSS averaged over the images that hold at least one fixation."""
        scores = nss(predictions, fixations)
        valid = ~torch.isnan(scores)
        if not bool(valid.any()):
            return predictions.sum() * 0.0
        return -scores[valid].mean()

    def training_step(self, batch: dict[str, Any], batch_index: int) -> torch.Tensor:
        loss = self.loss(self(batch["image"]), batch["fixations"])
        self.log("train/loss", loss, on_step=True, on_epoch=True, prog_bar=True, batch_size=len(batch["image"]))
        return loss

    def validation_step(self, batch: dict[str, Any], batch_index: int) -> None:
        predictions = self(batch["image"])
        fixations = batch["fixations"]
        self.val_nss.update(predictions, fixations)
        self.val_cc.update(predictions, fixation_density(fixations, self.hparams.gt_sigma))
        self.log("val/loss", self.loss(predictions, fixations), batch_size=len(predictions), sync_dist=True)
        self.log("val/nss", self.val_nss, prog_bar=True, batch_size=len(predictions))
        self.log("val/cc", self.val_cc, batch_size=len(predictions))

    def configure_optimizers(self) -> Any:
        return configure_from_config(self, self.hparams.optimizer, self.hparams.scheduler, default_lr=5e-3)
