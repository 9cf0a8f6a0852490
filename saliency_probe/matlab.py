"""MATLAB-compatible numerics that decide numbers: the authors' code and the reference models are MATLAB.

Kept in one place so the data readers (1-based MATLAB fixation coordinates) and the classical models (ports of
the MATLAB GBVS / Itti-Koch code) round and resize the same way. docs/protocol.md says where each one matters.
"""

from __future__ import annotations

import numpy as np

__all__ = ["matlab_round"]


def matlab_round(values: np.ndarray | float) -> np.ndarray:
    """Round half away from zero, as MATLAB's ``round`` (numpy's ``round`` goes half to even).

    Parameters
    ----------
    values : array_like or float
        Values to round.

    Returns
    -------
    ndarray
        float64 array of the rounded values (0-d for a scalar input; ``int(...)`` it for an index).
    """
    values = np.asarray(values, dtype=np.float64)
    return np.sign(values) * np.floor(np.abs(values) + 0.5)
