"""The probe's numerics: every probe forward runs in float32 unless ``probe_precision=bf16`` is asked for.

The ``trainer`` group's ``precision`` (``trainer=gpu`` sets ``bf16-mixed`` for training) does not reach the
probe: :meth:`~saliency_probe.probe.context.ProbeContext.trainer` sets the predict Trainer's precision from
``probe_precision``, and the forwards outside Lightning (unit figures, Fig. 7's and Fig. 9's maps, Table 4's and
the benchmark's checkpoint maps) run under :func:`forward_precision`. docs/probe.md gives the measured effect
of bf16 on the numbers.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from typing import Any

import torch

from saliency_probe.errors import ConfigError

__all__ = ["DEFAULT", "PRECISIONS", "forward_precision", "probe_precision", "trainer_precision"]

#: ``probe_precision`` values and the Lightning ``Trainer(precision=...)`` each one runs the predict passes with.
PRECISIONS = {"fp32": "32-true", "bf16": "bf16-mixed"}
DEFAULT = "fp32"


def check_precision(value: Any, key: str = "probe_precision") -> str:
    """``value`` as one of :data:`PRECISIONS` (a one-line ConfigError naming ``key`` otherwise)."""
    text = str(value).strip().lower() if isinstance(value, str) else value
    if text not in PRECISIONS:
        raise ConfigError(f"{key}={value!r}: expected one of {list(PRECISIONS)} (fp32: float32, the default; "
                          "bf16: bfloat16 autocast)")
    return str(text)


def probe_precision(cfg: Any) -> str:
    """The run's ``probe_precision`` (``fp32`` when the key is absent)."""
    value = cfg.get("probe_precision", DEFAULT) if cfg is not None else DEFAULT
    return check_precision(DEFAULT if value is None else value)


def trainer_precision(precision: str) -> str:
    """The Lightning precision of the predict Trainer for ``precision`` (``fp32`` -> ``32-true``)."""
    return PRECISIONS[check_precision(precision)]


@contextlib.contextmanager
def forward_precision(precision: str, device_types: tuple[str, ...] | None = None) -> Iterator[None]:
    """Run the forwards inside in ``precision``: nothing changes for ``fp32`` (float32 weights and inputs);
    ``bf16`` enters bfloat16 autocast on ``device_types`` (default: the CPU, and CUDA when available), as
    Lightning's ``bf16-mixed`` does in the predict passes. Outputs of ``bf16`` forwards are bfloat16 tensors."""
    if check_precision(precision) == "fp32":
        yield
        return
    if device_types is None:
        device_types = ("cpu", "cuda") if torch.cuda.is_available() else ("cpu",)
    with contextlib.ExitStack() as stack:
        for device_type in device_types:
            stack.enter_context(torch.autocast(device_type=device_type, dtype=torch.bfloat16))
        yield
