"""Shared fixtures: a small synthetic data set in the real formats, paths, W&B disabled."""

from __future__ import annotations

import contextlib
import importlib.util
import os
import sys
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType

import pytest
import torch

os.environ.setdefault("WANDB_MODE", "disabled")
torch.set_num_threads(min(2, torch.get_num_threads()))

REPO_ROOT = Path(__file__).resolve().parents[1]
OSIE_ROOT = REPO_ROOT.parent / "shared" / "data" / "osie"

#: Sizes of the small synthetic set the tests share (the generator's keyword arguments).
SMALL_SYNTHETIC = {
    "seed": 0,
    "num_train": 12,
    "num_val": 6,
    "num_probe": 8,
    "salicon_hw": (96, 128),
    "osie_hw": (120, 160),
    "num_observers": 6,
}


@pytest.fixture(scope="session")
def synthetic_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A small synthetic data set, generated once per test session."""
    from saliency_probe.data.synthetic import ensure_synthetic

    root = tmp_path_factory.mktemp("synthetic")
    ensure_synthetic(root, **SMALL_SYNTHETIC)
    return root


@pytest.fixture(scope="session")
def osie_root() -> Path:
    """The real OSIE data set beside the repository; tests using it skip when it is absent."""
    if not (OSIE_ROOT / "data" / "eye" / "fixations.mat").is_file():
        pytest.skip(f"real OSIE data not found at {OSIE_ROOT}")
    return OSIE_ROOT


@pytest.fixture(scope="session")
def weights_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A local VGG-16 state dict saved from torchvision (its ``features.*`` part: the trunk needs no classifier),
    for tests that start from "pretrained" weights without a download."""
    import torchvision

    torch.manual_seed(7)
    state = torchvision.models.vgg16(weights=None).state_dict()
    path = tmp_path_factory.mktemp("weights") / "vgg16_seed7.pth"
    torch.save({key: value for key, value in state.items() if key.startswith("features.")}, path)
    return path


@contextlib.contextmanager
def benchmark_script(name: str) -> Iterator[ModuleType]:
    """``benchmarks/<name>.py`` imported as a module (benchmarks/ is not a package), registered in
    ``sys.modules`` while in use (dataclasses look their module up there)."""
    spec = importlib.util.spec_from_file_location(f"benchmark_{name}", REPO_ROOT / "benchmarks" / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    try:
        spec.loader.exec_module(module)
        yield module
    finally:
        sys.modules.pop(spec.name, None)
