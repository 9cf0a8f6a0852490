"""``probe_precision``: the probe's forwards run in float32 whatever the trainer's precision (a bf16-mixed trainer
gives the float32 numbers exactly), unless ``probe_precision=bf16`` asks for bfloat16 autocast."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from conftest import SMALL_SYNTHETIC, benchmark_script
from test_probe import run_in, synthetic_overrides

from saliency_probe.errors import ConfigError
from saliency_probe.probe.model_specs import CheckpointMapModel
from saliency_probe.probe.precision import forward_precision, probe_precision, trainer_precision
from saliency_probe.probe.results import load_results

SMALL = ["layers=[conv4_1,conv5_3]", "controls.random_trunk=false", "controls.shuffled_regions=false",
         "figures.enabled=false", f"data.limit={SMALL_SYNTHETIC['num_probe'] // 2}"]


def unit_means(run_dir) -> dict[str, np.ndarray]:
    results, _ = load_results(run_dir / "tables" / "inner_units_random-init.npz")
    return {layer: result.unit_means for layer, result in results.items()}


def test_a_bf16_trainer_probes_in_float32_unless_bf16_is_asked_for(tmp_path, synthetic_root) -> None:
    base = [*synthetic_overrides(synthetic_root), *SMALL]
    fp32 = run_in(tmp_path / "fp32", [*base, "+trainer.precision=32-true"])
    mixed = run_in(tmp_path / "mixed", [*base, "+trainer.precision=bf16-mixed"])
    bf16 = run_in(tmp_path / "bf16", [*base, "+trainer.precision=bf16-mixed", "probe_precision=bf16"])
    assert (fp32["probe_precision"], mixed["probe_precision"], bf16["probe_precision"]) == ("fp32", "fp32", "bf16")

    reference, default, low = (unit_means(tmp_path / name) for name in ("fp32", "mixed", "bf16"))
    for layer in ("conv4_1", "conv5_3"):
        assert np.isfinite(reference[layer]).any()
        np.testing.assert_allclose(default[layer], reference[layer], rtol=0, atol=1e-12, equal_nan=True)
        finite = np.isfinite(reference[layer])
        assert np.abs(low[layer] - reference[layer])[finite].max() > 1e-5  # bfloat16 moves the numbers ...
        assert np.corrcoef(low[layer][finite], reference[layer][finite])[0, 1] > 0.95  # ... but not far


def test_map_models_and_figure_forwards_follow_the_precision() -> None:
    torch.manual_seed(0)
    network = torch.nn.Sequential(torch.nn.Conv2d(3, 8, 3, padding=1), torch.nn.ReLU(), torch.nn.Conv2d(8, 1, 1))
    rgb = np.random.default_rng(0).integers(0, 256, (48, 40, 3), dtype=np.uint8)
    fp32 = CheckpointMapModel("m", "checkpoint", network=network, image_size=32).predict(rgb, "a")
    bf16 = CheckpointMapModel("m", "checkpoint", network=network, image_size=32, precision="bf16").predict(rgb, "a")
    assert fp32.dtype == bf16.dtype == np.float32 and fp32.shape == (48, 40)
    assert 0 < np.abs(bf16 - fp32).max() < 0.05 * np.abs(fp32).max()

    x = torch.randn(1, 3, 16, 16)
    with forward_precision("fp32"):
        assert network(x).dtype == torch.float32
        assert torch.equal(network(x), network.float()(x))
    with forward_precision("bf16"):
        assert network(x).dtype == torch.bfloat16


def test_probe_precision_values() -> None:
    assert probe_precision({}) == "fp32" and probe_precision({"probe_precision": "BF16"}) == "bf16"
    assert (trainer_precision("fp32"), trainer_precision("bf16")) == ("32-true", "bf16-mixed")
    with pytest.raises(ConfigError, match=r"^probe_precision='fp16': expected one of \['fp32', 'bf16'\]"):
        probe_precision({"probe_precision": "fp16"})


def test_precision_benchmark_counts_deltas_and_flips(tmp_path) -> None:
    with benchmark_script("probe_precision") as bench:
        # a planted comparison: one unit crosses T, the other moves below it; region deltas 0.25 and 0
        reference = {"conv5_3": np.array([[1.49, 3.0], [2.0, 0.5]])}
        other = {"conv5_3": np.array([[1.51, 3.0], [2.0, 0.25]])}
        regions_a = {"conv5_3": np.array([[0.5, np.nan, 1.0]])}
        regions_b = {"conv5_3": np.array([[0.75, np.nan, 1.0]])}
        row, every = bench.compare(reference, other, regions_a, regions_b, k=1, threshold=1.5)
        assert (row["region_values"], row["region_max"], row["flips"], row["count_change"]) == (2, 0.25, 1, 1)
        assert row["top_max"] == pytest.approx(0.0) and row["top_fp32"] == 3.0
        assert every["flips"] == 1 and every["above_fp32"] == 2
        assert bench.compare(reference, reference, regions_a, regions_a, 1, 1.5)[0]["region_max"] == 0.0

        args = bench.parse(["--synthetic", "--images", "4", "--image-size", "64", "--threads", "1",
                            "--layers", "conv4_1", "conv5_3"])
        result = bench.measure(args)
        assert [row["layer"] for row in result["rows"]] == ["conv4_1", "conv5_3", "all"]
        assert result["images"] == 4 and set(result["seconds"]) == {"fp32", "bf16"}
        for row in result["rows"]:
            assert 0 < row["region_median"] <= row["region_p99"] <= row["region_max"]
        text = bench.markdown(result, "python benchmarks/probe_precision.py --synthetic")
        assert "| all | " in text and "torch " in text
