"""benchmarks/sweep_cache.py at toy size, so that the benchmark keeps working, and its job-time arithmetic."""

from __future__ import annotations

from pathlib import Path

import pytest
from conftest import benchmark_script


@pytest.fixture(scope="module")
def bench():
    with benchmark_script("sweep_cache") as module:
        yield module


def test_job_seconds_add_the_tear_down(bench) -> None:
    job = bench.Job("0", True, "float32", start=10.0, epoch_ends=[12.0, 13.0, 14.5], end=15.0, summary={})
    assert job.seconds(1) == pytest.approx(2.0 + 0.5)  # start -> end of epoch 1, plus end of epoch 3 -> return
    assert job.seconds(3) == pytest.approx(5.0)
    assert job.per_epoch(1, 3) == pytest.approx(1.25)
    with pytest.raises(ValueError, match="ran 3 epoch"):
        job.seconds(4)


def test_toy_sweep_reports_both_ways_and_the_dtypes(bench, tmp_path: Path) -> None:
    text = bench.main(["--layers", "0", "--epochs", "2", "--report-epochs", "1", "2", "--images", "4",
                       "--val-images", "2", "--dtypes", "0", "--work", str(tmp_path), "--out", str(tmp_path / "r.md")])
    assert (tmp_path / "r.md").read_text() == text
    assert "\n| 0 | " in text and "| sweep 0..0 |" in text
    assert "identical for layers 0" in text  # float32 cache: the cached job's val/nss is the uncached one's
    rows = [line for line in text.splitlines() if line.startswith("| 0 | bfloat16") or line.startswith("| 0 | float16")]
    assert len(rows) == 2
    assert "| 6 | before conv4_1 | 256x28x28 | 784.0 KiB | 11.2 GiB | 5.6 GiB |" in text  # 15,000 images at 224 px
