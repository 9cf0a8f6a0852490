"""Atomic output writing (a temporary file in the target folder, then ``os.replace``) and file-safe names.

An interrupted run therefore never leaves half a table, figure, array or JSON file behind.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import re
import tempfile
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import numpy as np


def _read_umask() -> int:
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


#: The process's umask, read once: files are created with the mode ``open()`` would give them.
UMASK = _read_umask()


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike[str]) -> Iterator[Path]:
    """Yield a temporary path beside ``path``; on success rename it over ``path``, on error delete it.

    The file gets the mode ``open()`` would give it under the process's umask (``mkstemp`` makes it 0600).
    """
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    handle, temporary = tempfile.mkstemp(prefix=f".{target.name}.", suffix=target.suffix, dir=target.parent)
    os.close(handle)
    temporary_path = Path(temporary)
    try:
        yield temporary_path
        os.chmod(temporary_path, 0o666 & ~UMASK)
        os.replace(temporary_path, target)
    finally:
        if temporary_path.exists():
            temporary_path.unlink()


def write_text(path: str | os.PathLike[str], text: str) -> Path:
    """Write ``text`` to ``path`` atomically."""
    with atomic_path(path) as temporary:
        temporary.write_text(text, encoding="utf-8")
    return Path(path)


def write_json(path: str | os.PathLike[str], payload: Any) -> Path:
    """Write ``payload`` as indented JSON atomically."""
    return write_text(path, json.dumps(payload, indent=2, sort_keys=False, default=str) + "\n")


def write_npz(path: str | os.PathLike[str], arrays: Mapping[str, Any]) -> Path:
    """Save arrays with ``numpy.savez_compressed``, atomically (keys are the array names)."""
    with atomic_path(path) as temporary, open(temporary, "wb") as handle:
        np.savez_compressed(handle, **{key: np.asarray(value) for key, value in arrays.items()})
    return Path(path)


#: Longest file-name part :func:`safe_name` returns (file systems allow 255 bytes per name, with room for suffixes).
MAX_NAME = 120


def safe_name(name: str) -> str:
    """A file-name-safe version of a model name (``finetune.layers=1`` stays readable); names longer than
    ``MAX_NAME`` (a run named by many overrides, e.g. a ``backbone=custom`` job) keep their start and a hash."""
    safe = re.sub(r"[^A-Za-z0-9._=+-]+", "_", name).strip("_") or "model"
    if len(safe) <= MAX_NAME:
        return safe
    digest = hashlib.sha1(name.encode("utf-8")).hexdigest()[:10]
    return f"{safe[: MAX_NAME - 11]}-{digest}"


def file_sha256(path: str | os.PathLike[str], chunk: int = 1 << 20) -> str:
    """SHA-256 (hex) of a file's bytes, read in chunks (weights files are hundreds of MB)."""
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(chunk), b""):
            digest.update(block)
    return digest.hexdigest()
