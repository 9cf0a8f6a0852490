"""The package's import direction (docs/architecture.md) holds: import-linter's contracts in pyproject.toml."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]


def lint_imports(*args: str, cwd: Path = REPO) -> subprocess.CompletedProcess:
    executable = shutil.which("lint-imports") or str(Path(sys.executable).parent / "lint-imports")
    return subprocess.run([executable, "--no-cache", *args], cwd=cwd, capture_output=True, text=True, timeout=300)


def test_import_contracts_hold() -> None:
    result = lint_imports()
    assert result.returncode == 0, result.stdout[-4000:] + result.stderr[-2000:]
    assert "broken" in result.stdout and "0 broken" in result.stdout


def test_a_wrong_import_breaks_the_contract(tmp_path: Path) -> None:
    """A copy of the package in which data/ imports models/ fails the check, naming the contract."""
    copy = tmp_path / "repo"
    shutil.copytree(REPO / "saliency_probe", copy / "saliency_probe", ignore=shutil.ignore_patterns("__pycache__"))
    shutil.copy(REPO / "pyproject.toml", copy / "pyproject.toml")
    images = copy / "saliency_probe" / "data" / "images.py"
    images.write_text(images.read_text() + "\nfrom saliency_probe.models.backbone import LAYER_CHANNELS  # noqa\n")
    result = lint_imports(cwd=copy)
    if "Could not find package" in result.stdout + result.stderr:
        pytest.fail("lint-imports did not read the copy: " + result.stdout[-2000:] + result.stderr[-2000:])
    assert result.returncode != 0
    assert "data/ reads files" in result.stdout and "BROKEN" in result.stdout
    assert "saliency_probe.data.images -> saliency_probe.models.backbone" in result.stdout
