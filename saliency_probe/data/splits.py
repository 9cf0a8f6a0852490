"""The training/validation split of a data module as a record: the image stems and their fingerprints.

The split is a property of the data, not of the task: ``train.py`` stores :func:`split_record` in every
checkpoint (metadata key ``data_split``) and its summary in ``summary.json``, so two runs (e.g. Table 7's
saliency-tuned and scene-tuned trunks) can be shown to have seen the same images.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping, Sequence
from typing import Any


def fingerprint(stems: Sequence[str]) -> str:
    """SHA-256 (hex, first 16 digits) of the sorted image stems: equal for the same set of images.

    Parameters
    ----------
    stems : sequence of str
        Image stems (file names without extension).

    Returns
    -------
    str
        16 hexadecimal digits; the order of ``stems`` does not matter.
    """
    digest = hashlib.sha256("\n".join(sorted(str(stem) for stem in stems)).encode("utf-8"))
    return digest.hexdigest()[:16]


def split_record(split: Mapping[str, Sequence[str]]) -> dict[str, Any]:
    """``{"train": [...], "val": [...], "fingerprints": {split: hex}}`` of a data module's ``split_stems()``."""
    stems = {name: [str(stem) for stem in values] for name, values in split.items()}
    return {**stems, "fingerprints": {name: fingerprint(values) for name, values in stems.items()}}


def split_summary(record: Mapping[str, Any]) -> dict[str, Any]:
    """The part of a split record that ``summary.json`` keeps: image counts and fingerprints per split."""
    prints = dict(record.get("fingerprints") or {})
    return {**{f"{name}_images": len(record.get(name) or []) for name in prints}, "fingerprints": prints}
