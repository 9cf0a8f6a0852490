"""The scene classifier of the paper's Section 8: the saliency model's trunk + pool5 + 3 FC layers.

On trunks other than VGG the head is ours: global average pooling of the head layer, then the same three FC
layers (docs/backbones.md).
"""

from __future__ import annotations

from typing import Any

import pytorch_lightning as pl
import torch
from torch import nn
from torchmetrics import MetricCollection
from torchmetrics.classification import MulticlassAccuracy, MulticlassConfusionMatrix, MulticlassF1Score

from saliency_probe.models.backbone import BackboneSpec, build_trunk, load_state_dict
from saliency_probe.models.checkpoint import CheckpointMetadataMixin
from saliency_probe.models.optim import configure_from_config


def build_classifier_head(
    num_classes: int, dropout: float = 0.5, hidden_features: int = 4096, in_channels: int = 512,
    pooling: str = "pool5",
) -> nn.Sequential:
    """pool5, adaptive pooling to 7x7, flatten, FC 4096, FC 4096, FC K (ReLU + dropout between): the paper's
    VGG head. ``pooling="gap"`` (other trunks): global average pooling, flatten, FC ``in_channels`` -> 4096,
    then the same (the FC layers keep their indices 3, 6, 9).

    ``hidden_features`` other than VGG's 4096 is for quick experiments and tests (the paper uses 4096).
    """
    if pooling == "pool5":
        pool: list[nn.Module] = [nn.MaxPool2d(kernel_size=2, stride=2), nn.AdaptiveAvgPool2d((7, 7)), nn.Flatten()]
        features = in_channels * 7 * 7
    elif pooling == "gap":
        pool = [nn.Identity(), nn.AdaptiveAvgPool2d(1), nn.Flatten()]
        features = in_channels
    else:
        raise ValueError(f"pooling={pooling!r}: use 'pool5' (VGG) or 'gap'")
    return nn.Sequential(
        *pool,
        nn.Linear(features, hidden_features),
        nn.ReLU(inplace=True),
        nn.Dropout(dropout),
        nn.Linear(hidden_features, hidden_features),
        nn.ReLU(inplace=True),
        nn.Dropout(dropout),
        nn.Linear(hidden_features, num_classes),
    )


def scene_pooling(spec: BackboneSpec) -> str:
    """The scene head's pooling for a backbone: the paper's pool5 on VGG, global average pooling elsewhere."""
    return "pool5" if spec.family == "vgg" else "gap"


class SceneModule(CheckpointMetadataMixin, pl.LightningModule):
    """Scene recognition on the saliency model's trunk, trained with class-weighted cross-entropy.

    ``class_names`` and ``class_weights`` (``n / (K * n_c)`` from the training split) come from the data module;
    the trunk's parameter names equal the saliency model's (``trunk.features.*``) so the probe compares them.
    """

    task = "scene"

    def __init__(
        self,
        class_names: list[str],
        class_weights: list[float],
        weights: str | None = None,
        finetune_layers: int | str = 1,
        dropout: float = 0.5,
        hidden_features: int = 4096,
        init_fc_from_weights: bool = True,
        optimizer: dict[str, Any] | None = None,
        scheduler: dict[str, Any] | None = None,
        class_counts: dict[str, int] | None = None,
        run_config: dict[str, Any] | None = None,
        run_name: str | None = None,
        backbone: dict[str, Any] | str | None = None,
    ) -> None:
        super().__init__()
        if len(class_names) != len(class_weights) or len(class_names) < 2:
            raise ValueError(
                f"scene task needs at least 2 classes with one weight each; got {len(class_names)} classes "
                f"and {len(class_weights)} weights"
            )
        self.save_hyperparameters()
        spec = BackboneSpec.from_config(backbone, weights=weights)
        self.trunk = build_trunk(weights, spec)
        channels = self.trunk.layer(self.trunk.layer_table.head).channels
        self.classifier = build_classifier_head(len(class_names), dropout, hidden_features, channels,
                                                scene_pooling(spec))
        if spec.weights and init_fc_from_weights and hidden_features == 4096 and spec.family == "vgg":
            self._init_fc_from_vgg(spec)
        self.register_buffer("class_weight_tensor", torch.tensor(class_weights, dtype=torch.float32))
        num_classes = len(class_names)
        self.val_metrics = MetricCollection(
            {
                "acc": MulticlassAccuracy(num_classes, average="micro"),
                "balanced_acc": MulticlassAccuracy(num_classes, average="macro"),
                "macro_f1": MulticlassF1Score(num_classes, average="macro"),
            },
            prefix="val/",
        )
        self.val_confusion = MulticlassConfusionMatrix(num_classes)

    def _init_fc_from_vgg(self, spec: BackboneSpec) -> None:
        """Start FC 4096 x 2 from VGG's classifier (ImageNet) when the weights provide it."""
        state = load_state_dict(str(spec.weights), spec)
        for ours, theirs in ((3, 0), (6, 3)):
            key = f"classifier.{theirs}.weight"
            if key in state and state[key].shape == self.classifier[ours].weight.shape:
                self.classifier[ours].weight.data.copy_(state[key])
                self.classifier[ours].bias.data.copy_(state[f"classifier.{theirs}.bias"])

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        """Class logits ``(B, K)``."""
        return self.classifier(self.trunk(images))

    def loss(self, logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        return nn.functional.cross_entropy(logits, labels, weight=self.class_weight_tensor)

    def training_step(self, batch: dict[str, Any], batch_index: int) -> torch.Tensor:
        loss = self.loss(self(batch["image"]), batch["label"])
        self.log("train/loss", loss, on_step=True, on_epoch=True, prog_bar=True, batch_size=len(batch["label"]))
        return loss

    def validation_step(self, batch: dict[str, Any], batch_index: int) -> None:
        logits = self(batch["image"])
        labels = batch["label"]
        self.log("val/loss", self.loss(logits, labels), batch_size=len(labels), sync_dist=True)
        self.val_metrics.update(logits, labels)
        self.val_confusion.update(logits, labels)

    def on_validation_epoch_end(self) -> None:
        self.log_dict(self.val_metrics.compute(), prog_bar=True)
        self.val_metrics.reset()
        confusion = self.val_confusion.compute()
        self.val_confusion.reset()
        self.last_confusion = confusion.cpu().tolist()
        self._log_confusion_table(self.last_confusion)

    def _log_confusion_table(self, confusion: list[list[int]]) -> None:
        logger = self.logger
        if logger is None or not hasattr(logger, "log_table") or self.trainer.sanity_checking:
            return
        names = list(self.hparams.class_names)
        rows = [[names[i], names[j], int(confusion[i][j])] for i in range(len(names)) for j in range(len(names))]
        logger.log_table(key="val/confusion_matrix", columns=["true", "predicted", "count"], data=rows)

    def summary_extra(self) -> dict[str, Any]:
        """Scene jobs add class counts and weights (dicts keyed by class name) to summary.json."""
        names = list(self.hparams.class_names)
        return {
            "class_counts": dict(self.hparams.class_counts or {}),
            "class_weights": {name: float(w) for name, w in zip(names, self.hparams.class_weights, strict=True)},
            "confusion_matrix": getattr(self, "last_confusion", None),
            "class_names": names,
        }

    def configure_optimizers(self) -> Any:
        return configure_from_config(self, self.hparams.optimizer, self.hparams.scheduler, default_lr=1e-4)
