"""A folder of saliency maps computed once per model and image, so later metric passes only read them.

Layout: ``<root>/<model name>-<8 hex of the model's parameters>/<image stem>.npy`` (float32, exactly the map the
model returned) and a ``manifest.json`` naming the model and its parameters. A model whose parameters change
gets another folder, so a stale map is never scored. Each folder is also a valid ``maps:<folder>`` model.
Files are written atomically, so an interrupted run leaves only whole maps and concurrent workers never read a
half-written one.
"""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path
from typing import Any

import numpy as np

from saliency_probe.errors import InputFileError
from saliency_probe.io_utils import atomic_path, safe_name, write_json

MANIFEST = "manifest.json"


def params_digest(name: str, params: dict[str, Any]) -> str:
    """Eight hex digits identifying a model's name and parameters (key order does not matter)."""
    text = json.dumps({"name": name, "params": params}, sort_keys=True, default=str)
    return hashlib.sha256(text.encode("utf-8")).hexdigest()[:8]


def folder_name(name: str, params: dict[str, Any]) -> str:
    """A file-system-safe folder name for the model: readable name plus parameter digest."""
    return f"{safe_name(name)}-{params_digest(name, params)}"


class MapCache:
    """Saliency maps of one model, keyed by image stem; ``root=None`` disables caching (every lookup misses)."""

    def __init__(self, root: str | os.PathLike[str] | None, name: str, params: dict[str, Any]) -> None:
        self.name = name
        self.params = dict(params)
        self.folder = Path(root) / folder_name(name, self.params) if root is not None else None
        self._manifest_written = False

    @property
    def enabled(self) -> bool:
        return self.folder is not None

    def path(self, stem: str) -> Path:
        if self.folder is None:
            raise RuntimeError("MapCache: caching is disabled (root=None)")
        return self.folder / f"{stem}.npy"

    def get(self, stem: str, shape: tuple[int, int]) -> np.ndarray | None:
        """The cached map of image ``stem`` or None; a cached map of another shape is an error (stale cache)."""
        if self.folder is None:
            return None
        path = self.path(stem)
        if not path.is_file():
            return None
        try:
            saliency = np.load(path, allow_pickle=False)
        except (OSError, ValueError) as error:
            raise InputFileError(
                f"{path}: not a readable cached map ({error}); delete {self.folder} or set benchmark.cache to "
                "another folder"
            ) from error
        if saliency.shape != tuple(shape):
            raise InputFileError(
                f"{path}: cached map is {saliency.shape} but image {stem} is {tuple(shape)}; the cache belongs to "
                f"other data: delete {self.folder} or set benchmark.cache to another folder"
            )
        return saliency

    def put(self, stem: str, saliency: np.ndarray) -> None:
        """Store a map (float32) atomically; no-op when caching is disabled."""
        if self.folder is None:
            return
        if not self._manifest_written:
            manifest = self.folder / MANIFEST
            if not manifest.is_file():
                write_json(manifest, {"name": self.name, "params": self.params, "dtype": "float32"})
            self._manifest_written = True
        with atomic_path(self.path(stem)) as temporary, open(temporary, "wb") as handle:
            np.save(handle, np.asarray(saliency, dtype=np.float32), allow_pickle=False)
