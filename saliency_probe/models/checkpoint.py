"""Checkpoint format: Lightning checkpoints of plain containers plus a ``saliency_probe`` metadata block.

``torch.load(path, weights_only=True)`` loads every checkpoint the framework writes; a file that needs
unpickling of arbitrary objects is refused, so a checkpoint from elsewhere cannot run code.
"""

from __future__ import annotations

import pickle
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn

from saliency_probe.data.splits import split_record
from saliency_probe.errors import InputFileError, MissingInputError
from saliency_probe.models.backbone import (
    BackboneSpec,
    Trunk,
    build_trunk,
    load_error_reason,
    torch_file_problem,
)
from saliency_probe.models.trunks import SaliencyNetwork

FORMAT_VERSION = 1
METADATA_KEY = "saliency_probe"
#: What a checkpoint argument must name (the end of every message about a file that is not one).
EXPECTED = "expected a .ckpt file written by `python train.py` (e.g. <run>/checkpoints/last.ckpt)"


class CheckpointMetadataMixin:
    """Adds the framework's metadata block (task, run name, resolved config) to every saved checkpoint."""

    task: str = "unknown"

    def on_save_checkpoint(self, checkpoint: dict[str, Any]) -> None:  # Lightning hook
        hparams = dict(getattr(self, "hparams", {}))
        trunk: Trunk = getattr(self, "trunk")  # noqa: B009 - every task module has one
        table = trunk.layer_table
        checkpoint[METADATA_KEY] = {
            "format_version": FORMAT_VERSION,
            "task": self.task,
            "run_name": hparams.get("run_name"),
            "finetune_layers": str(hparams.get("finetune_layers")),
            "trunk_layers": table.names,
            "backbone": backbone_record(trunk.spec, table),
            "config": hparams.get("run_config") or {},
            "wandb_run_id": _wandb_run_id(self),
            "data_split": data_split(self),
        }

    def setup(self, stage: str) -> None:  # Lightning hook
        """Reset every metric inside the worker: under ``ddp_spawn`` the states would sit in shared memory."""
        from torchmetrics import Metric

        for module in self.modules():  # type: ignore[attr-defined]
            if isinstance(module, Metric):
                module.reset()


def backbone_record(spec: BackboneSpec, table: Any) -> dict[str, Any]:
    """What a checkpoint records of its backbone: name, starting weights, the config, the layer table, the
    head layer (``probe.py ckpt=...`` rebuilds the trunk from ``config``)."""
    return {"name": spec.name, "weights": spec.weights, "config": spec.to_dict(), "layers": table.as_list(),
            "head_layer": table.head}


def data_split(module: object) -> dict[str, Any] | None:
    """The split record (:func:`~saliency_probe.data.splits.split_record`) of the data module the module is
    trained on, or None when it is not attached to a trainer with such a data module."""
    trainer = getattr(module, "_trainer", None)
    split_stems = getattr(getattr(trainer, "datamodule", None), "split_stems", None)
    return split_record(split_stems()) if callable(split_stems) else None


def _wandb_run_id(module: object) -> str | None:
    """The W&B run id of the module's logger (so a resumed run continues it), or None."""
    logger = getattr(module, "logger", None)
    if logger is None or type(logger).__name__ != "WandbLogger":
        return None
    run_id = getattr(logger.experiment, "id", None)
    return run_id if isinstance(run_id, str) else None


@dataclass
class LoadedCheckpoint:
    """What the probe needs from a checkpoint: its metadata and state dict."""

    path: Path
    metadata: dict[str, Any]
    state_dict: dict[str, torch.Tensor]
    hyper_parameters: dict[str, Any]
    #: Lightning's epoch counter at saving (epochs completed - 1 for the end-of-epoch checkpoints), or None.
    epoch: int | None = None

    @property
    def task(self) -> str:
        return str(self.metadata["task"])

    @property
    def run_name(self) -> str:
        return str(self.metadata.get("run_name") or self.path.stem)

    @property
    def backbone(self) -> BackboneSpec:
        """The backbone the checkpoint was trained on (checkpoints from before backbones were recorded: VGG-16)."""
        record = self.metadata.get("backbone") or {}
        return BackboneSpec.from_config(record.get("config") or {"name": record.get("name", "vgg16")})

    def trunk(self) -> Trunk:
        """The trunk with this checkpoint's weights (keys ``trunk.*``), rebuilt from its recorded backbone."""
        spec = self.backbone
        try:
            trunk = build_trunk(None, spec)
        except (ImportError, AttributeError) as error:
            raise InputFileError(
                f"checkpoint {self.path} was trained on {spec.describe()}, which cannot be built here ({error}); "
                "put the module of backbone._target_ on PYTHONPATH"
            ) from error
        prefix = "trunk."
        state = {key[len(prefix) :]: value for key, value in self.state_dict.items() if key.startswith(prefix)}
        missing, unexpected = trunk.load_state_dict(state, strict=False)
        missing = [key for key in missing if not key.endswith("num_batches_tracked")]
        if missing:
            raise InputFileError(
                f"checkpoint {self.path} lacks trunk weights {missing[:4]}... of {spec.describe()}; {EXPECTED}")
        return trunk

    def saliency_head(self) -> nn.Conv2d | None:
        """The 1x1 head of a saliency checkpoint, or None for other tasks."""
        if "head.weight" not in self.state_dict:
            return None
        weight = self.state_dict["head.weight"]
        head = nn.Conv2d(weight.shape[1], weight.shape[0], kernel_size=1, bias=False)
        head.weight.data.copy_(weight)
        return head

    def saliency_network(self) -> SaliencyNetwork | None:
        """Images -> the saliency checkpoint's maps ``(B, 1, h, w)`` (1x1 head, or the model's own output);
        None for other tasks."""
        if self.task != "saliency":
            return None
        trunk = self.trunk()
        head = self.saliency_head()
        if head is None and not trunk.has_output:
            raise InputFileError(f"checkpoint {self.path} is a saliency checkpoint without the 1x1 head 'head.weight'")
        return SaliencyNetwork(trunk, head).eval()


def load_checkpoint(path: str | Path) -> LoadedCheckpoint:
    """Load and validate a framework checkpoint safely; errors name the file and the problem."""
    path = Path(path)
    if path.is_dir():
        raise InputFileError(f"checkpoint {path} is a folder; {EXPECTED}")
    if not path.is_file():
        raise MissingInputError(f"checkpoint {path} does not exist; {EXPECTED}")
    problem = torch_file_problem(path)
    if problem:
        raise InputFileError(f"checkpoint {path} {problem}; {EXPECTED}")
    try:
        payload = torch.load(path, map_location="cpu", weights_only=True)
    except (pickle.UnpicklingError, RuntimeError, AttributeError, TypeError) as error:
        raise InputFileError(
            f"checkpoint {path} cannot be loaded with torch.load(weights_only=True): it is not a saliency_probe "
            f"checkpoint or it holds objects that would run code when unpickled ({load_error_reason(error)})"
        ) from error
    except Exception as error:  # noqa: BLE001 - any other failure: corrupt or foreign file
        raise InputFileError(
            f"checkpoint {path} is not a loadable checkpoint ({type(error).__name__}: {load_error_reason(error)}); {EXPECTED}"
        ) from error
    if not isinstance(payload, dict) or METADATA_KEY not in payload or "state_dict" not in payload:
        raise InputFileError(
            f"checkpoint {path} is not a saliency_probe checkpoint (no '{METADATA_KEY}' block or state_dict); "
            "for plain VGG-16 weights use backbone.weights=<file> instead of ckpt"
        )
    return LoadedCheckpoint(
        path=path,
        metadata=dict(payload[METADATA_KEY]),
        state_dict=payload["state_dict"],
        hyper_parameters=dict(payload.get("hyper_parameters", {})),
        epoch=int(payload["epoch"]) if isinstance(payload.get("epoch"), int) else None,
    )
