"""The saliency benchmark: each metric on hand-built cases against naive references, the leave-one-out reference
models on planted data, the map cache, worker processes, the probe.py outputs, and the real OSIE data."""

from __future__ import annotations

import math
import os
import pickle
from pathlib import Path

import numpy as np
import pytest
import scipy.io
import torch
from conftest import SMALL_SYNTHETIC
from hydra import compose, initialize_config_dir
from PIL import Image

from saliency_probe.data.fixation_datamodule import FixationDataModule
from saliency_probe.data.osie import OsieDataset
from saliency_probe.maps import blur, fixation_density
from saliency_probe.metrics import functional as MF
from saliency_probe.probe.baselines import (
    FixationTable,
    center_bias_map,
    inter_observer_maps,
    scale_pixels,
    shuffled_negatives,
)
from saliency_probe.probe.benchmark import benchmark_settings, cache_root
from saliency_probe.probe.map_cache import MapCache
from saliency_probe.probe.options import BenchmarkOptions, read_options
from saliency_probe.probe.runner import run_probe
from saliency_probe.probe.scoring import (
    METRICS,
    SUMMARY_COLUMNS,
    BenchmarkSettings,
    ImageScorer,
    check_metrics,
    score_images,
    score_map,
    shuffled_auc,
    summarise,
)
from saliency_probe.report.tables import read_csv

REPO = Path(__file__).resolve().parents[1]
QUIET = ["logger=none", "print_config=false", "progress_bar=false", "analyses=[benchmark]"]
MIT_EPS = 2.2204e-16


# ------------------------------------------------------------------------------------------------------------
# fixtures in the real OSIE format
# ------------------------------------------------------------------------------------------------------------


def write_osie_folder(root: Path, table: dict[str, list[np.ndarray]], height: int, width: int, seed: int = 0) -> Path:
    """``root/data/stimuli/<name>`` (random JPEGs) and ``root/data/eye/fixations.mat`` in the original nesting:
    a cell array of 1x1 structs ``img``, ``subjects`` (a cell array of structs ``fix_x``, ``fix_y``,
    ``fix_duration``), coordinates 1-based."""
    rng = np.random.default_rng(seed)
    (root / "data" / "stimuli").mkdir(parents=True, exist_ok=True)
    (root / "data" / "eye").mkdir(parents=True, exist_ok=True)
    entries = np.empty((len(table), 1), dtype=object)
    for row, (name, observers) in enumerate(table.items()):
        pixels = rng.integers(0, 256, (height, width, 3), dtype=np.uint8)
        Image.fromarray(pixels).save(root / "data" / "stimuli" / name, quality=95)
        subjects = np.empty((len(observers), 1), dtype=object)
        for index, points in enumerate(observers):
            points = np.asarray(points, dtype=np.float64).reshape(-1, 2)
            subjects[index, 0] = {"fix_x": points[None, :, 0], "fix_y": points[None, :, 1],
                                  "fix_duration": np.full((1, len(points)), 250, dtype=np.uint16)}
        entries[row, 0] = {"img": name, "subjects": subjects}
    scipy.io.savemat(root / "data" / "eye" / "fixations.mat", {"fixations": entries})
    return root


def run_in(tmp_path: Path, overrides: list[str]) -> dict:
    """Compose conf/probe.yaml with ``overrides`` and run it with ``tmp_path`` as the run folder."""
    with initialize_config_dir(config_dir=str(REPO / "conf"), version_base="1.3"):
        cfg = compose("probe", overrides=[*QUIET, *overrides])
    cwd = Path.cwd()
    tmp_path.mkdir(parents=True, exist_ok=True)
    os.chdir(tmp_path)
    try:
        return run_probe(cfg)
    finally:
        os.chdir(cwd)


# ------------------------------------------------------------------------------------------------------------
# metrics of one map against naive references
# ------------------------------------------------------------------------------------------------------------


def naive_auc_judd(saliency: np.ndarray, fixations: np.ndarray) -> float:
    """The MIT benchmark's AUC_Judd.m: thresholds at the fixated values, trapezoid over (fp, tp)."""
    values, fixated = saliency.ravel(), saliency[fixations]
    n_fix, n_pix = fixated.size, values.size
    thresholds = np.sort(fixated)[::-1]
    tp, fp = [0.0], [0.0]
    for i, threshold in enumerate(thresholds, start=1):
        above = int((values >= threshold).sum())
        tp.append(i / n_fix)
        fp.append((above - i) / (n_pix - n_fix))
    tp.append(1.0)
    fp.append(1.0)
    return float(np.trapezoid(tp, fp))


def naive_pairs_auc(positives: np.ndarray, negatives: np.ndarray) -> float:
    """Mann-Whitney over every (positive, negative) pair, ties counting half."""
    pairs = positives[:, None] - negatives[None, :]
    return float(((pairs > 0) + 0.5 * (pairs == 0)).mean())


def test_metrics_of_a_hand_built_map() -> None:
    # 2x2 map [[0, 0], [0, 4]]: mean 1, population std sqrt(3); the fixation on the 4 has z = 3 / sqrt(3).
    saliency = np.array([[0.0, 0.0], [0.0, 4.0]])
    fixations = np.array([[False, False], [False, True]])
    gt = np.array([[1.0, 1.0], [1.0, 1.0]])
    negatives = np.array([[True, False], [False, False]])
    scores = score_map(saliency, fixations, gt, negatives)
    assert scores["nss"] == pytest.approx(math.sqrt(3))
    assert scores["cc"] == 0.0  # a constant ground truth correlates with nothing
    # P = [0, 0, 0, 1], Q uniform: SIM = sum min = 0.25; KLD = 3 * 0.25 log(eps + 0.25 / eps) + 0.25 log(0.25).
    assert scores["sim"] == pytest.approx(0.25)
    expected_kld = 3 * 0.25 * math.log(MIT_EPS + 0.25 / MIT_EPS) + 0.25 * math.log(MIT_EPS + 0.25 / (1 + MIT_EPS))
    assert scores["kld"] == pytest.approx(expected_kld)
    assert scores["auc_judd"] == pytest.approx(1.0)  # the fixated pixel is above every other
    assert scores["auc_shuffled"] == pytest.approx(1.0)


def test_metrics_equal_naive_references_on_a_random_map() -> None:
    rng = np.random.default_rng(3)
    saliency = rng.random((9, 11))
    fixations = np.zeros((9, 11), dtype=bool)
    fixations.flat[rng.choice(99, 7, replace=False)] = True
    gt = blur(fixations.astype(float), 1.5) + 1e-3
    negatives = np.zeros_like(fixations)
    negatives.flat[rng.choice(99, 20, replace=False)] = True  # may overlap fixations, as in real data
    scores = score_map(saliency, fixations, gt, negatives)
    z = (saliency - saliency.mean()) / saliency.std()
    p, q = saliency / saliency.sum(), gt / gt.sum()
    assert scores["nss"] == pytest.approx(z[fixations].mean(), rel=1e-6)
    assert scores["cc"] == pytest.approx(np.corrcoef(saliency.ravel(), gt.ravel())[0, 1], rel=1e-9)
    assert scores["kld"] == pytest.approx(float((q * np.log(MIT_EPS + q / (p + MIT_EPS))).sum()), rel=1e-9)
    assert scores["sim"] == pytest.approx(float(np.minimum(p, q).sum()), rel=1e-9)
    assert scores["auc_judd"] == pytest.approx(naive_auc_judd(saliency, fixations), rel=1e-9)
    assert scores["auc_shuffled"] == pytest.approx(naive_pairs_auc(saliency[fixations], saliency[negatives]))


def test_restricted_shuffled_auc_equals_the_full_map_call_with_ties() -> None:
    rng = np.random.default_rng(0)
    for _ in range(5):
        saliency = torch.from_numpy(np.round(rng.random((30, 40)) * 6) / 6)  # quantised: many ties
        fixations = torch.from_numpy(rng.random((30, 40)) < 0.05)
        negatives = torch.from_numpy(rng.random((30, 40)) < 0.2)
        full = float(MF.auc_shuffled(saliency, fixations, negatives))
        assert shuffled_auc(saliency, fixations, negatives) == pytest.approx(full, rel=1e-12)
    assert math.isnan(shuffled_auc(saliency, fixations, torch.zeros_like(negatives)))


def test_metric_selection() -> None:
    assert check_metrics(["auc_judd", "nss"]) == ("nss", "auc_judd")
    assert check_metrics(None) == METRICS
    with pytest.raises(ValueError, match="auc_borji"):
        check_metrics(["nss", "auc_borji"])
    scores = score_map(np.eye(3), np.eye(3, dtype=bool), None, None, ("nss",))
    assert list(scores) == ["nss"]


def test_settings_from_the_typed_options(tmp_path: Path) -> None:
    run = tmp_path / "run"
    section = {"models": ["center_bias", "bms"], "metrics": ["auc_judd", "nss"], "gt_sigma": 4}
    settings = benchmark_settings(read_options({"benchmark": section}, "benchmark", BenchmarkOptions), run, 64)
    assert settings == BenchmarkSettings(
        specs=("center_bias", "bms"), gt_sigma=4.0, image_size=64, classical={"bms": {"bgr_channel_order": False}},
        cache_root=str(run / "map_cache"), metrics=("nss", "auc_judd"),
    )
    assert pickle.loads(pickle.dumps(settings)) == settings  # what the worker processes receive
    assert all(cache_root(off, run) is None for off in (False, "none", "off", "False"))
    assert cache_root("~/maps", run) == str(Path("~/maps").expanduser().absolute())
    with pytest.raises(ValueError, match="auc_borji"):
        benchmark_settings(read_options({"benchmark": {"metrics": ["auc_borji"]}}, "benchmark", BenchmarkOptions), run)


# ------------------------------------------------------------------------------------------------------------
# reference models
# ------------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("shape, sigma, density", [
    ((60, 80), 24.0, 0.1), ((60, 80), 24.0, 0.002), ((7, 30), 3.3, 0.1), ((40, 41), 5.0, 0.3), ((3, 3), 2.0, 0.3),
])
def test_blur_equals_the_ground_truth_blur(shape: tuple[int, int], sigma: float, density: float) -> None:
    # dense maps take the 1-D convolutions, sparse ones the blur-matrix product: both must equal models.gt
    counts = (np.random.default_rng(1).random(shape) < density) * 2.0
    counts[0, -1] = 1.0  # at least one point, on the border
    expected = fixation_density(torch.from_numpy(counts), sigma).double().numpy()
    np.testing.assert_allclose(blur(counts, sigma), expected, rtol=1e-5, atol=1e-6 * expected.max())


def test_scale_pixels_maps_pixel_centres() -> None:
    flat = np.array([0, 3, 4 * 4 + 3])  # (0, 0), (0, 3), (4, 3) in a 5x4 image
    rows, cols = scale_pixels(flat, (5, 4), (5, 4))
    assert rows.tolist() == [0, 0, 4] and cols.tolist() == [0, 3, 3]
    rows, cols = scale_pixels(flat, (5, 4), (10, 8))  # twice the size: centre (i + 0.5) * 2 -> 2i + 1
    assert rows.tolist() == [1, 1, 9] and cols.tolist() == [1, 7, 7]


def test_center_bias_leaves_the_scored_image_out(tmp_path: Path) -> None:
    # Image 1001 is fixated only in its top-left corner; the two others only near the centre. Leaving 1001 out,
    # its centre-bias map is low at the corner (negative NSS); including it would make the corner the peak.
    corner = [np.array([[3.0, 3.0], [4.0, 5.0]]), np.array([[5.0, 4.0]])]
    centre = [np.array([[30.0, 22.0], [31.0, 20.0]]), np.array([[29.0, 21.0]])]
    table = {"1001.jpg": corner, "1002.jpg": centre, "1003.jpg": [np.array([[33.0, 25.0]])] * 2}
    data = OsieDataset(write_osie_folder(tmp_path, table, 40, 60), image_size=32)
    sigma = 4.0
    settings = BenchmarkSettings(specs=("center_bias",), gt_sigma=sigma, metrics=("nss", "auc_shuffled"))
    rows, _ = score_images(data, settings, [0, 1, 2])
    # independent reference: the other images' fixation maps summed and blurred by models.gt
    others = data.fixation_map(1) + data.fixation_map(2)
    reference = fixation_density(torch.from_numpy(others), sigma)
    fixations = torch.from_numpy(data.fixation_map(0))
    assert rows[0]["nss"] == pytest.approx(float(MF.nss(reference, fixations)), rel=1e-4)
    assert rows[0]["nss"] < 0
    inclusive = fixation_density(torch.from_numpy(others + data.fixation_map(0)), sigma)
    assert float(MF.nss(inclusive, fixations)) > 1.0  # what a leak of the scored image would give
    # the shuffled AUC's negatives come from the other images only: none of them fixated the corner
    table_ = FixationTable.from_dataset(data)
    assert not shuffled_negatives(table_, 0)[data.fixation_map(0) > 0].any()
    np.testing.assert_allclose(center_bias_map(table_, 0, sigma), reference.double().numpy(), atol=1e-6)


def test_inter_observer_leaves_the_scored_observer_out(tmp_path: Path) -> None:
    # Observer 1 looks only at the left edge, observers 2 and 3 only at the right: predicted from the others,
    # observer 1 scores a negative NSS; with its own fixations in the map it would score high.
    left = np.array([[2.0, 10.0], [3.0, 20.0]])
    right = [np.array([[55.0, 12.0], [56.0, 22.0]]), np.array([[54.0, 15.0]])]
    table = {"1001.jpg": [left, *right], "1002.jpg": [np.array([[30.0, 20.0]])] * 2}
    data = OsieDataset(write_osie_folder(tmp_path, table, 40, 60), image_size=32)
    sigma = 4.0
    settings = BenchmarkSettings(specs=("inter_observer",), gt_sigma=sigma, metrics=("nss",))
    rows, timings = score_images(data, settings, [0])
    maps = [np.zeros((40, 60), dtype=np.float32) for _ in range(3)]
    for observer, pixels in zip(maps, data.observers(0), strict=True):
        observer[pixels[:, 1], pixels[:, 0]] = 1.0
    expected = []
    for s in range(3):
        others = np.maximum.reduce([maps[j] for j in range(3) if j != s])
        prediction = fixation_density(torch.from_numpy(others), sigma)
        expected.append(float(MF.nss(prediction, torch.from_numpy(maps[s]))))
    assert expected[0] < 0
    assert rows[0]["nss"] == pytest.approx(np.mean(expected), rel=1e-4)
    leaked = fixation_density(torch.from_numpy(np.maximum.reduce(maps)), sigma)
    assert float(MF.nss(leaked, torch.from_numpy(maps[0]))) > 1.0
    assert [number for number, _, _ in inter_observer_maps(data.observers(0), (40, 60), sigma)] == [0, 1, 2]
    assert timings["inter_observer"].computed == 1


def test_single_observer_images_give_no_inter_observer_score(tmp_path: Path) -> None:
    table = {"1001.jpg": [np.array([[5.0, 5.0]]), np.zeros((0, 2))], "1002.jpg": [np.array([[9.0, 9.0]])]}
    data = OsieDataset(write_osie_folder(tmp_path, table, 20, 20), image_size=32)
    rows, _ = score_images(data, BenchmarkSettings(specs=("inter_observer",), gt_sigma=2.0), [0, 1])
    assert all(math.isnan(row["nss"]) for row in rows)
    assert summarise(rows)[0]["n_images"] == 0


# ------------------------------------------------------------------------------------------------------------
# cache, worker processes, probe.py
# ------------------------------------------------------------------------------------------------------------


def test_cached_maps_are_reused_exactly(tmp_path: Path, synthetic_root: Path) -> None:
    data = OsieDataset(synthetic_root / "osie", image_size=32, limit=3)
    settings = BenchmarkSettings(specs=("spectral_residual", "bms"), gt_sigma=4.0, cache_root=str(tmp_path / "c"),
                                 classical={"bms": {"max_dim": 64}})
    first, timings = score_images(data, settings, [0, 1, 2])
    assert timings["bms"].computed == 3 and timings["bms"].cached == 0
    second, timings = score_images(data, settings, [0, 1, 2])
    assert timings["bms"].computed == 0 and timings["bms"].cached == 3
    assert first == second
    scorer = ImageScorer(data, settings)
    cache = scorer.caches["bms"]
    expected = scorer.models["bms"].predict(data.load_image(1), data.stems[1])
    np.testing.assert_array_equal(cache.get(data.stems[1], expected.shape), expected)
    # other parameters: another folder, so nothing stale is read
    other = MapCache(tmp_path / "c", "bms", {**scorer.models["bms"].params, "max_dim": 32})
    assert other.folder != cache.folder and other.get(data.stems[1], expected.shape) is None
    with pytest.raises(ValueError, match="cached map is"):
        cache.get(data.stems[1], (5, 5))


def test_two_worker_processes_give_the_one_process_rows(synthetic_root: Path) -> None:
    data = OsieDataset(synthetic_root / "osie", image_size=32, limit=4)
    settings = BenchmarkSettings(specs=("center_bias", "spectral_residual"), gt_sigma=4.0)
    serial, _ = score_images(data, settings, [0, 1, 2, 3])
    parallel, timings = score_images(data, settings, [0, 1, 2, 3], num_workers=2, chunk_size=1)
    assert parallel == serial
    assert timings["spectral_residual"].computed == 4


def test_probe_writes_the_benchmark_tables_and_figure(tmp_path: Path, synthetic_root: Path) -> None:
    summary = run_in(tmp_path / "run", [
        "data=osie", f"data.root={synthetic_root / 'osie'}", "benchmark.limit=5", "benchmark.gt_sigma=4",
        "benchmark.models=[center_bias,inter_observer,bms,spectral_residual]", "benchmark.figure_images=2",
        "+benchmark.classical.bms.max_dim=96",
    ])
    tables = tmp_path / "run" / "tables"
    rows = read_csv(tables / "benchmark.csv")
    assert list(rows[0]) == SUMMARY_COLUMNS
    assert [row["model"] for row in rows] == ["center_bias", "inter_observer", "bms", "spectral_residual"]
    assert all(row["n_images"] == "5" for row in rows)
    per_image = read_csv(tables / "benchmark_per_image.csv")
    assert len(per_image) == 4 * 5
    # the summary is the mean of the per-image rows
    bms_nss = [float(row["nss"]) for row in per_image if row["model"] == "bms"]
    assert float(rows[2]["nss"]) == pytest.approx(np.mean(bms_nss))
    markdown = (tables / "benchmark.md").read_text()
    assert "correct RGB order" in markdown and "| inter_observer |" in markdown
    assert (tmp_path / "run" / "figures" / "benchmark_examples.png").stat().st_size > 10_000
    assert len(list((tmp_path / "run" / "map_cache").glob("bms-*/*.npy"))) == 5
    result = summary["analyses"]["benchmark"]
    assert result["images"] == 5 and set(result["timing"]) == {r["model"] for r in rows}


def test_bms_channel_order_is_named_in_the_table(tmp_path: Path, synthetic_root: Path) -> None:
    run_in(tmp_path / "run", [
        "data=osie", f"data.root={synthetic_root / 'osie'}", "benchmark.limit=2", "benchmark.models=[bms]",
        "benchmark.classical.bms.bgr_channel_order=true", "+benchmark.classical.bms.max_dim=64",
        "benchmark.figure_images=0", "benchmark.cache=false", "benchmark.metrics=[nss]",
    ])
    tables = tmp_path / "run" / "tables"
    assert [row["model"] for row in read_csv(tables / "benchmark.csv")] == ["bms-bgr"]
    assert list(read_csv(tables / "benchmark.csv")[0]) == ["model", "nss", "n_images"]
    assert "released program" in (tables / "benchmark.md").read_text()
    assert not (tmp_path / "run" / "map_cache").exists()


@pytest.mark.parametrize("override, message", [
    ("benchmark.models=[center_bias,deepgaze]", "unknown model 'deepgaze'"),
    ("benchmark.gt_sigma=0", "gt_sigma"),
    ("benchmark.models=[maps:/nonexistent/folder]", "no folder"),
])
def test_bad_benchmark_settings_fail_before_work(tmp_path: Path, synthetic_root: Path, override: str,
                                                 message: str) -> None:
    with pytest.raises((ValueError, FileNotFoundError), match=message):
        run_in(tmp_path / "run", ["data=osie", f"data.root={synthetic_root / 'osie'}", override])
    assert not (tmp_path / "run" / "tables" / "benchmark.csv").exists()


def test_folder_maps_are_scored(tmp_path: Path, synthetic_root: Path) -> None:
    data = OsieDataset(synthetic_root / "osie", image_size=32, limit=2)
    folder = tmp_path / "maps"
    folder.mkdir()
    for index, stem in enumerate(data.stems):
        np.save(folder / f"{stem}.npy", data.fixation_map(index))  # a perfect map: the fixations themselves
    settings = BenchmarkSettings(specs=(f"maps:{folder}",), gt_sigma=4.0, metrics=("auc_judd",))
    rows, _ = score_images(data, settings, [0, 1])
    assert [row["model"] for row in rows] == ["maps:maps"] * 2
    assert all(row["auc_judd"] == pytest.approx(1.0) for row in rows)


def test_data_osie_reads_the_synthetic_set_by_the_same_reader(synthetic_root: Path) -> None:
    module = FixationDataModule(synthetic_root, synthetic=True, **SMALL_SYNTHETIC)
    module.setup("predict")
    assert module.data_root == synthetic_root / "osie"
    assert module.predict_dataset.stems == OsieDataset(synthetic_root / "osie").stems
    assert module.summary()["images"] == SMALL_SYNTHETIC["num_probe"]
    with pytest.raises(ValueError, match="OSIE format only"):
        FixationDataModule(synthetic_root, format="mit1003", synthetic=True)


# ------------------------------------------------------------------------------------------------------------
# the real OSIE data (skipped when ../shared/data/osie is absent)
# ------------------------------------------------------------------------------------------------------------


@pytest.mark.osie
def test_real_osie_reader_through_data_osie(osie_root: Path) -> None:
    module = FixationDataModule(osie_root, format="osie")
    module.setup("predict")
    data = module.predict_dataset
    assert len(data) == 700 and data.n_without_fixations == 0
    for index in range(len(data)):
        observers = data.observers(index)
        assert len(observers) == 15
        height, width = data.image_sizes[index]
        for pixels in observers:
            assert ((pixels >= 0) & (pixels < [width, height])).all()


@pytest.mark.osie
def test_real_osie_nss_ordering_on_a_subset(osie_root: Path) -> None:
    data = OsieDataset(osie_root, image_size=224)
    settings = BenchmarkSettings(specs=("center_bias", "inter_observer", "bms"), gt_sigma=24.0, metrics=("nss",))
    rows, _ = score_images(data, settings, list(range(20)))
    nss = {row["model"]: row["nss"] for row in summarise(rows, ("nss",))}
    print(f"real OSIE, 20 images, NSS: {nss}")
    assert nss["center_bias"] < nss["bms"] < nss["inter_observer"]
