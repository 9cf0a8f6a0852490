"""One predict pass of a probe module: the base class of every analysis's LightningModule.

A pass streams the predict data through ``trainer.predict`` and keeps nothing per image in Lightning: its
torchmetrics states (sums and counts with ``dist_reduce_fx="sum"``, per-item records with ``"cat"`` in a
:class:`RecordCollector`) are reduced across DDP ranks when ``compute_result`` reads them, so the result is the
same on every rank and equals the one-process result (Lightning's predict loop shards without padding). The
result is a flat mapping of arrays. :meth:`saliency_probe.probe.context.ProbeContext.predict` runs a pass and
returns it; under ``ddp_spawn`` (whose workers' attributes never reach the main process) rank zero hands it over
through a file the context names.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytorch_lightning as pl
import torch
from torch import Tensor
from torchmetrics import Metric

from saliency_probe.io_utils import write_npz

#: The result of a pass: array name -> array (what ``numpy.savez`` can hold without pickling).
PassResult = dict[str, np.ndarray]


class RecordCollector(Metric):
    """Rows of per-item records (``(N, D)`` float tensors), concatenated over batches and DDP ranks.

    ``compute()`` returns the ``(N_total, D)`` rows in float64, rank 0's first (one process: batch order).
    """

    full_state_update = False

    def __init__(self, width: int) -> None:
        super().__init__()
        self.width = int(width)
        self.add_state("records", default=[], dist_reduce_fx="cat")

    def update(self, rows: Tensor) -> None:
        rows = torch.as_tensor(rows, dtype=torch.float64)
        if rows.ndim != 2 or rows.shape[1] != self.width:
            raise ValueError(f"RecordCollector: expected (N, {self.width}) rows, got shape {tuple(rows.shape)}")
        self.records.append(rows.to(self.device))

    def compute(self) -> Tensor:
        records = self.records
        if isinstance(records, Tensor):  # already concatenated by the DDP sync
            return records.reshape(-1, self.width)
        if not records:
            return torch.zeros((0, self.width), dtype=torch.float64, device=self.device)
        return torch.cat(records, dim=0)


class ProbePass(pl.LightningModule):
    """A LightningModule run by ``trainer.predict`` that ends with :attr:`result` on every rank.

    Subclasses update metrics in ``predict_step`` (returning nothing) and implement :meth:`compute_result`.
    """

    def __init__(self) -> None:
        super().__init__()
        self.result: PassResult | None = None
        #: Set by the context: where rank zero writes the result for the main process of ``ddp_spawn``.
        self.handoff_path: Path | None = None

    def compute_result(self) -> PassResult:
        """The pass's result from its (synchronised) metric states; called once on every rank at the end."""
        raise NotImplementedError

    def on_predict_start(self) -> None:
        # ddp_spawn on CPU shares the states' memory between ranks until they are re-created: reset here
        for module in self.modules():
            if isinstance(module, Metric):
                module.reset()
        self.result = None

    def on_predict_epoch_end(self) -> None:
        self.result = {key: np.asarray(value) for key, value in self.compute_result().items()}
        if self.handoff_path is not None and self.trainer.is_global_zero:
            write_npz(self.handoff_path, self.result)
