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


def test_a_plugin_analysis_runs_through_probe_py(tmp_path: Path, synthetic_root: Path) -> None:
    """The docs/probe.md example: an `Analysis` with a `ProbePass`, registered and run by `analyses=[...]`; its
    result equals the mean activation computed directly."""
    import numpy as np
    import torch
    from test_probe import run_in, synthetic_overrides
    from torchmetrics import SumMetric

    from saliency_probe.probe.activations import LayerActivations
    from saliency_probe.probe.context import AnalysisResult, ProbeContext
    from saliency_probe.probe.passes import ProbePass
    from saliency_probe.probe.registry import Analysis, register_analysis

    class MeanActivation(ProbePass):
        def __init__(self, trunk: torch.nn.Module) -> None:
            super().__init__()
            self.activations = LayerActivations(trunk, ["conv5_3"])
            self.total, self.count = SumMetric(), SumMetric()

        def predict_step(self, batch: dict, batch_idx: int) -> None:
            maps = self.activations(batch["image"])["conv5_3"]
            self.total.update(maps.double().sum())
            self.count.update(torch.tensor(float(maps.numel())))

        def compute_result(self) -> dict[str, np.ndarray]:
            return {"mean": (self.total.compute() / self.count.compute()).cpu().numpy()}

    @register_analysis
    class MeanActivationAnalysis(Analysis):
        name = "test_mean_activation"

        def run(self, context: ProbeContext) -> AnalysisResult:
            means = {s.name: float(context.predict(MeanActivation(s.trunk()), s.name)["mean"])
                     for s in context.sources}
            direct = {}
            for source in context.sources:  # the same mean, image by image, without Lightning
                extractor = LayerActivations(source.trunk(), ["conv5_3"]).eval()
                with torch.no_grad():
                    maps = [extractor(item["image"][None])["conv5_3"].double() for item in context.dataset()]
                direct[source.name] = float(torch.cat([m.flatten() for m in maps]).mean())
            return AnalysisResult(summary={"means": means, "direct": direct})

    summary = run_in(tmp_path, [*synthetic_overrides(synthetic_root), "analyses=[test_mean_activation]",
                                "controls.random_trunk=false"])
    result = summary["analyses"]["test_mean_activation"]
    assert set(result["means"]) == {"random-init"}
    assert result["means"]["random-init"] == pytest.approx(result["direct"]["random-init"], rel=1e-6)  # float32 convs: batch vs single
    assert result["means"]["random-init"] > 0
