"""MIT1003 in its real layout (ALLSTIMULI/*.jpeg, ALLFIXATIONMAPS/*_fixPts.jpg saved as JPEG): the reader, the
``data=mit1003`` data module and the benchmark on images of different sizes."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from test_benchmark import run_in

from saliency_probe.data.fixation_datamodule import FixationDataModule
from saliency_probe.data.mit1003 import Mit1003Dataset
from saliency_probe.maps import fixation_density
from saliency_probe.metrics import functional as MF
from saliency_probe.probe.scoring import BenchmarkSettings, score_images
from saliency_probe.report.tables import read_csv

# name -> (height, width, planted fixations (row, col)); sizes differ as in MIT1003 (e.g. 768x1024, 1024x768)
IMAGES = {
    "i05june05_static_street_boston_p1010764": (48, 64, [(3, 4), (20, 30), (20, 31), (47, 63)]),
    "i1000378281": (64, 48, [(10, 10), (40, 25)]),
    "istatic_submitted_jmedina_mit_edu_2": (40, 40, [(20, 20), (21, 35)]),
}


def write_mit1003(root: Path, images: dict = IMAGES, quality: int = 75) -> Path:
    """Stimuli as JPEG, ``_fixPts`` as binary 0/255 points saved as JPEG (compression blurs them, as in the
    release), ``_fixMap`` as a grey JPEG."""
    rng = np.random.default_rng(0)
    (root / "ALLSTIMULI").mkdir(parents=True, exist_ok=True)
    (root / "ALLFIXATIONMAPS").mkdir(parents=True, exist_ok=True)
    for name, (height, width, points) in images.items():
        Image.fromarray(rng.integers(0, 256, (height, width, 3), dtype=np.uint8)).save(
            root / "ALLSTIMULI" / f"{name}.jpeg", quality=90)
        fix = np.zeros((height, width), dtype=np.uint8)
        for row, col in points:
            fix[row, col] = 255
        Image.fromarray(fix).save(root / "ALLFIXATIONMAPS" / f"{name}_fixPts.jpg", quality=quality)
        Image.fromarray(np.full((height, width), 100, dtype=np.uint8)).save(
            root / "ALLFIXATIONMAPS" / f"{name}_fixMap.jpg")
    return root


def planted(name: str) -> list[tuple[int, int]]:
    return sorted(IMAGES[name][2])


def test_reader_recovers_the_planted_points_of_every_size(tmp_path: Path) -> None:
    data = Mit1003Dataset(write_mit1003(tmp_path), image_size=32)
    assert data.stems == sorted(IMAGES)  # the folder's images, sorted by name
    for index, stem in enumerate(data.stems):
        assert data.image_sizes[index] == IMAGES[stem][:2]
        assert sorted(map(tuple, np.argwhere(data.fixation_map(index) > 0).tolist())) == planted(stem)
    item = data[1]
    assert item["image"].shape == (3, 32, 32) and item["fixations"].shape == IMAGES[data.stems[1]][:2]
    assert data.density_map(0).shape == IMAGES[data.stems[0]][:2]
    assert Mit1003Dataset(tmp_path, limit=2).stems == sorted(IMAGES)[:2]
    chosen = sorted(IMAGES)[2]
    assert Mit1003Dataset(tmp_path, stems=[chosen]).stems == [chosen]


def test_images_without_fixations_are_excluded_and_counted(tmp_path: Path) -> None:
    write_mit1003(tmp_path, {**IMAGES, "empty": (30, 30, [])})
    data = Mit1003Dataset(tmp_path)
    assert "empty" not in data.stems and data.without_fixations == ["empty"] and len(data) == 3


def test_missing_points_file_is_named_or_skipped(tmp_path: Path) -> None:
    write_mit1003(tmp_path)
    missing = sorted(IMAGES)[1]
    (tmp_path / "ALLFIXATIONMAPS" / f"{missing}_fixPts.jpg").unlink()
    with pytest.raises(FileNotFoundError, match=f"{missing}_fixPts.jpg"):
        Mit1003Dataset(tmp_path)
    skipping = Mit1003Dataset(tmp_path, on_error="skip")
    assert missing not in skipping.stems and skipping.skipped == [str(tmp_path / "ALLSTIMULI" / f"{missing}.jpeg")]
    with pytest.raises(FileNotFoundError, match="ALLSTIMULI"):
        Mit1003Dataset(tmp_path / "nowhere")


def test_data_module_reads_mit1003(tmp_path: Path) -> None:
    module = FixationDataModule(write_mit1003(tmp_path), format="mit1003", image_size=32)
    module.setup("predict")
    batch = next(iter(module.predict_dataloader()))
    assert batch["image"].shape == (1, 3, 32, 32) and module.summary()["images"] == 3
    with pytest.raises(ValueError, match="format"):
        FixationDataModule(tmp_path, format="salicon")


def test_center_bias_across_image_sizes_equals_a_reference(tmp_path: Path) -> None:
    data = Mit1003Dataset(write_mit1003(tmp_path), image_size=32)
    sigma = 3.0
    rows, _ = score_images(data, BenchmarkSettings(specs=("center_bias",), gt_sigma=sigma, metrics=("nss", "cc")),
                           [0, 1, 2])
    # reference for image 0 (48x64): the other images' points placed where their pixel centres land
    height, width = data.image_sizes[0]
    others = np.zeros((height, width), dtype=np.float32)
    for index in (1, 2):
        h, w = data.image_sizes[index]
        for row, col in np.argwhere(data.fixation_map(index) > 0):
            others[int((row + 0.5) * height / h), int((col + 0.5) * width / w)] += 1.0
    reference = fixation_density(torch.from_numpy(others), sigma)
    fixations = torch.from_numpy(data.fixation_map(0))
    assert rows[0]["nss"] == pytest.approx(float(MF.nss(reference, fixations)), rel=1e-4)


def test_benchmark_on_mit1003_through_probe(tmp_path: Path) -> None:
    root = write_mit1003(tmp_path / "mit")
    run_in(tmp_path / "run", ["data=mit1003", f"data.root={root}", "benchmark.models=[center_bias,spectral_residual]",
                              "benchmark.gt_sigma=3", "benchmark.figure_images=1"])
    rows = read_csv(tmp_path / "run" / "tables" / "benchmark.csv")
    assert [row["model"] for row in rows] == ["center_bias", "spectral_residual"]
    assert all(row["n_images"] == "3" for row in rows)
    assert (tmp_path / "run" / "figures" / "benchmark_examples.png").is_file()


def test_inter_observer_needs_observers(tmp_path: Path) -> None:
    data = Mit1003Dataset(write_mit1003(tmp_path), image_size=32)
    with pytest.raises(ValueError, match="inter_observer needs per-observer fixations"):
        score_images(data, BenchmarkSettings(specs=("center_bias", "inter_observer")), [0])
