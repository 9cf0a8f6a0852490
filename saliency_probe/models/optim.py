"""Optimizer and scheduler from plain config dicts (``_target_`` + arguments), for every task module."""

from __future__ import annotations

from typing import Any

from hydra.utils import instantiate
from torch import nn


def configure_from_config(
    module: nn.Module, optimizer: dict[str, Any] | None, scheduler: dict[str, Any] | None, default_lr: float
) -> Any:
    """Build the optimizer over the trainable parameters only, plus an optional scheduler (``interval`` key)."""
    parameters = [parameter for parameter in module.parameters() if parameter.requires_grad]
    optimizer_cfg = dict(optimizer or {"_target_": "torch.optim.Adam", "lr": default_lr})
    built = instantiate(optimizer_cfg, params=parameters)
    if not scheduler:
        return built
    scheduler_cfg = dict(scheduler)
    interval = scheduler_cfg.pop("interval", "epoch")
    return {
        "optimizer": built,
        "lr_scheduler": {"scheduler": instantiate(scheduler_cfg, optimizer=built), "interval": interval},
    }
