"""Smoke tests of benchmarks/train_throughput.py at tiny sizes, so that the benchmark keeps working.

Beyond "it runs", they check that the two training loops compared do the same work (same updates from the same
start), that the steady-state clock computes what it says, and that the report holds a row per setting.
"""

from __future__ import annotations

import copy
import math
from pathlib import Path

import pytest
import torch
from conftest import benchmark_script

from saliency_probe.models.backbone import CONV_LAYER_NAMES, trainable_conv_layers


@pytest.fixture(scope="module")
def bench():
    """benchmarks/train_throughput.py as a module."""
    with benchmark_script("train_throughput") as module:
        yield module


@pytest.fixture(autouse=True)
def one_thread():
    """One torch thread: these tests check behaviour, and on a busy 2-core machine 2 threads are far slower."""
    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(previous)


def test_step_clock_is_steady_state_rate(bench) -> None:
    clock = bench.StepClock([10.0, 11.0, 13.0, 16.0])
    assert clock.steps_per_second(1) == pytest.approx(3 / 6)  # steps 2..4, from the end of step 1 to 16
    assert clock.steps_per_second(2) == pytest.approx(2 / 5)
    with pytest.raises(ValueError, match="warmup"):
        clock.steps_per_second(0)
    with pytest.raises(ValueError, match="warmup"):
        clock.steps_per_second(4)


def test_make_batches_shapes_and_binary_fixations(bench) -> None:
    batches = bench.make_batches(2, 3, 32, (24, 40), fixations_per_image=5, seed=1)
    assert len(batches) == 2
    assert batches[0]["image"].shape == (3, 3, 32, 32)
    fixations = batches[1]["fixations"]
    assert fixations.shape == (3, 24, 40)
    assert set(fixations.unique().tolist()) == {0.0, 1.0}
    assert ((fixations.sum((1, 2)) >= 1) & (fixations.sum((1, 2)) <= 5)).all()
    torch.testing.assert_close(bench.make_batches(2, 3, 32, (24, 40), 5, seed=1)[1]["image"], batches[1]["image"])


def test_plain_and_lightning_loops_make_the_same_updates(bench) -> None:
    """Same start, same batches: both loops must end with the same weights, frozen layers untouched."""
    batches = bench.make_batches(2, 2, 32, (24, 32), seed=0)
    template = bench.build_module(seed=0)
    plain, lightning = copy.deepcopy(template), copy.deepcopy(template)
    plain_clock = bench.train_plain(plain, batches, 2)
    lightning_clock = bench.train_lightning(lightning, batches, 2)
    for clock in (plain_clock, lightning_clock):
        assert len(clock.ends) == 2
        assert math.isfinite(clock.steps_per_second(1)) and clock.steps_per_second(1) > 0
    trainable = set(trainable_conv_layers(2))
    assert trainable == {"conv5_2", "conv5_3"}
    for name in CONV_LAYER_NAMES:
        before, after_plain = template.trunk.conv(name).weight, plain.trunk.conv(name).weight
        after_lightning = lightning.trunk.conv(name).weight
        assert torch.equal(before, after_plain) != (name in trainable), name
        torch.testing.assert_close(after_lightning, after_plain, rtol=1e-5, atol=1e-6, msg=name)
    assert not torch.equal(template.head.weight, plain.head.weight)
    torch.testing.assert_close(lightning.head.weight, plain.head.weight, rtol=1e-5, atol=1e-6)


def test_compare_training_report(bench) -> None:
    results = bench.compare_training(["0"], repeats=1, steps=1, warmup=1, batch_size=1, image_size=32,
                                     fixation_hw=(16, 16))
    assert [r.layers for r in results] == ["0"]
    assert len(results[0].plain) == len(results[0].lightning) == 1
    assert results[0].ratio > 0
    lines = bench.format_training(results, 1, 1, 1, 32, (16, 16))
    assert sum(line.startswith("| 0 |") for line in lines) == 1


def test_loader_benchmark_end_to_end(bench, tmp_path: Path) -> None:
    out = tmp_path / "report.md"
    text = bench.main(["--skip-train", "--data-images", "4", "--data-hw", "40", "48", "--data-size", "32",
                       "--data-batch", "2", "--data-repeats", "1", "--workers", "0", "1",
                       "--data-root", str(tmp_path / "set"), "--out", str(out)])
    assert out.read_text(encoding="utf-8") == text
    rows = [line for line in text.splitlines() if line.startswith(("| 0 |", "| 1 |"))]
    assert len(rows) == 2
    for row in rows:
        assert float(row.split("|")[3]) > 0  # samples/s per worker
    assert (tmp_path / "set" / "salicon" / "images" / "train").is_dir()  # --data-root keeps the set
    assert "Training:" not in text


def test_loops_make_the_same_updates_on_resnet18(bench) -> None:
    """--backbone resnet18: both loops train layer4 and the head alike; frozen BatchNorm statistics stay."""
    batches = bench.make_batches(2, 2, 64, (24, 32), seed=0)  # layer4 is 2x2 (a 1x1 map has NSS 0, no gradient)
    template = bench.build_module(seed=0, backbone="resnet18")
    plain, lightning = copy.deepcopy(template), copy.deepcopy(template)
    bench.train_plain(plain, batches, 2)
    bench.train_lightning(lightning, batches, 2)
    before, after_plain, after_lightning = template.state_dict(), plain.state_dict(), lightning.state_dict()
    for key, value in before.items():
        assert torch.equal(value, after_plain[key]) != key.startswith(("trunk.layer4.", "head.")), key
        torch.testing.assert_close(after_lightning[key], after_plain[key], rtol=1e-4, atol=1e-5, msg=key)


def test_probe_speed_reproduce_line_parses_back_to_the_same_run() -> None:
    """The "Reproduce" line of benchmarks/probe_speed.py names every flag that differs from its default, on CPU as
    on CUDA: parsed again it gives the run's arguments (less --out)."""
    with benchmark_script("probe_speed") as module:
        parser = module.build_parser()
        for argv in (["--backbone", "resnet18", "--layers", "layer3", "layer4", "--images", "8", "--threads", "1"],
                     ["--device", "cuda", "--bf16", "--osie-hw", "60", "80", "--memory-sizes", "5,10", "--out", "x.md"],
                     []):
            args = parser.parse_args(argv)
            line = module.reproduce_flags(args)
            again = vars(parser.parse_args(line.split()))
            assert again == {**vars(args), "out": None}, (argv, line)
        assert module.reproduce_flags(parser.parse_args([])) == ""
