"""The output analysis (Eqs. 2-3, Fig. 7 statistics) on hand-built cases, the predict pass against a naive
full-resolution reference, and ``python probe.py sweep=...`` on a trained sweep of both tasks."""

from __future__ import annotations

import csv
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from conftest import SMALL_SYNTHETIC
from scipy import stats

from saliency_probe.data.datamodules import OsieSrDataModule
from saliency_probe.maps import fixation_density
from saliency_probe.models.backbone import VGGTrunk
from saliency_probe.probe.options import OutputOptions, read_options
from saliency_probe.probe.output import (
    OutputAnalysis,
    OutputProbeModule,
    OutputResult,
    RegionScores,
    category_scores,
    ground_truth_maps,
    output_rows,
    primary_model,
    region_values,
)
from saliency_probe.probe.stats import category_tests, spearman

REPO = Path(__file__).resolve().parents[1]
H, W = 30, 40


def naive_region_nss(saliency: np.ndarray, fixations: np.ndarray, mask: np.ndarray) -> float:
    """The definition, at full resolution: z-score over the whole map (population std), mean at the unique
    fixated pixels inside the mask."""
    z = (saliency - saliency.mean()) / saliency.std()
    chosen = (fixations != 0) & mask
    return float(z[chosen].mean()) if chosen.any() else float("nan")


def hand_case() -> tuple[torch.Tensor, torch.Tensor, list[str]]:
    """One image, three regions (text, person head, object), fixations in each."""
    fixations = torch.zeros(1, H, W)
    for r, c in [(3, 4), (5, 8), (6, 6), (20, 25), (22, 30), (12, 15), (13, 18), (27, 2)]:
        fixations[0, r, c] = 1
    masks = torch.zeros(1, 3, H, W, dtype=torch.bool)
    masks[0, 0, 2:8, 2:10] = True  # text
    masks[0, 1, 18:25, 22:34] = True  # person head
    masks[0, 2, 10:16, 12:20] = True  # object
    return fixations, masks, ["text", "person head", "object"]


def test_prediction_equal_to_gt_gives_od_zero() -> None:
    fixations, masks, _ = hand_case()
    gt = ground_truth_maps(fixations, 3.0)
    os_values, gt_values = region_values(gt.clone(), gt, fixations, masks)
    scores = RegionScores(np.zeros(3, int), np.arange(3), np.arange(3), os_values[0].numpy(), gt_values[0].numpy())
    os_c, od_c, counts = category_scores(scores, 3)
    assert np.array_equal(od_c, np.zeros(3)) and counts.tolist() == [1, 1, 1]
    for r in range(3):  # and the values are the definition's
        expected = naive_region_nss(gt[0, 0].numpy(), fixations[0].numpy(), masks[0, r].numpy())
        assert os_c[r] == pytest.approx(expected, rel=1e-9)


def test_a_prediction_lighting_one_category_ranks_it_first_with_the_analytic_values() -> None:
    fixations, masks, names = hand_case()
    # a prediction that is 1 on the text region and 0 elsewhere, at a quarter of the resolution: resized
    # bilinearly it is no longer binary, so compare with the naive full-resolution reference as well
    exact = masks[0, 0].double()[None, None]
    p = float(exact.mean())
    os_values, gt_values = region_values(exact, ground_truth_maps(fixations, 3.0), fixations, masks)
    inside, outside = (1 - p) / np.sqrt(p * (1 - p)), -p / np.sqrt(p * (1 - p))
    assert os_values[0].tolist() == pytest.approx([inside, outside, outside], rel=1e-9)
    small = F.avg_pool2d(exact, 2)  # (15, 20): resized back to (30, 40) by the metric
    os_small, _ = region_values(small, ground_truth_maps(fixations, 3.0), fixations, masks)
    full = F.interpolate(small, size=(H, W), mode="bilinear", align_corners=False)[0, 0].numpy()
    for r in range(3):
        assert float(os_small[0, r]) == pytest.approx(naive_region_nss(full, fixations[0].numpy(),
                                                                       masks[0, r].numpy()), rel=1e-6)
    # two images: the text regions lead OS, and OD is |os - gt| averaged per category
    scores = RegionScores(np.array([0, 0, 0, 1, 1, 1]), np.array([0, 1, 2, 0, 1, 2]), np.array([0, 1, 2, 0, 1, 2]),
                          np.concatenate([os_values[0].numpy(), os_small[0].numpy()]),
                          np.concatenate([gt_values[0].numpy(), gt_values[0].numpy()]))
    os_c, od_c, counts = category_scores(scores, 3)
    assert os_c[0] > max(os_c[1], os_c[2]) and counts.tolist() == [2, 2, 2]
    for k in range(3):
        rows = scores.category == k
        assert od_c[k] == pytest.approx(np.mean(np.abs(scores.os[rows] - scores.gt[rows])), rel=1e-12)
    rows = output_rows("m", OutputResult(scores, np.ones((4, 3))), names, top_k=2)
    assert [row["category"] for row in rows] == names and rows[0]["os"] == pytest.approx(os_c[0])
    assert all(row["inner_nss"] == 1.0 and row["n_regions"] == 2 for row in rows)


def test_regions_without_fixations_are_left_out_and_empty_categories_are_nan() -> None:
    scores = RegionScores(np.array([0, 0, 1]), np.array([0, 1, 0]), np.array([0, 0, 2]),
                          np.array([1.0, np.nan, 3.0]), np.array([0.5, np.nan, 1.0]))
    os_c, od_c, counts = category_scores(scores, 4)
    assert counts.tolist() == [1, 0, 1, 0]
    assert os_c[0] == 1.0 and od_c[0] == 0.5 and os_c[2] == 3.0 and od_c[2] == 2.0
    assert np.isnan(os_c[1]) and np.isnan(od_c[3])


def test_statistics_match_scipy_and_a_hand_anova() -> None:
    # head far above; text and object with equal means (so Tukey must not separate them)
    values = np.concatenate([np.linspace(4.6, 5.4, 8), np.linspace(-0.3, 0.3, 7), np.linspace(-0.4, 0.4, 9), [2.0]])
    category = np.array([0] * 8 + [1] * 7 + [2] * 9 + [3])
    names = ["head", "text", "object", "single"]
    anova, pairs = category_tests(values, category, names, alpha=0.05, what="od")
    groups = [values[category == k] for k in range(3)]
    grand = np.concatenate(groups).mean()
    between = sum(g.size * (g.mean() - grand) ** 2 for g in groups) / 2
    within = sum(((g - g.mean()) ** 2).sum() for g in groups) / (24 - 3)
    assert anova["F"] == pytest.approx(between / within, rel=1e-10)
    assert anova["df_between"] == 2 and anova["df_within"] == 21 and anova["p"] < 1e-10
    assert anova["left_out"] == ["single"] and anova["categories"] == names[:3]
    assert {(p["a"], p["b"]) for p in pairs} == {("head", "text"), ("head", "object")}
    head_text = next(p for p in pairs if p["b"] == "text")
    assert head_text["mean_difference"] == pytest.approx(groups[0].mean() - groups[1].mean())
    assert head_text["ci_low"] < head_text["mean_difference"] < head_text["ci_high"]
    inner, output = [1.0, 2.0, 3.0, 4.0, float("nan")], [0.1, 0.3, 0.2, 0.9, 5.0]
    result = spearman(inner, output)
    assert result["r"] == pytest.approx(stats.spearmanr(inner[:4], output[:4]).statistic)
    assert result["n_categories"] == 4
    assert spearman([1.0, 2.0], [3.0, 4.0])["r"] is None  # undefined below 3 categories


def test_applies_only_to_saliency_checkpoints_and_reads_its_options() -> None:
    source = lambda kind, task: type("S", (), {"kind": kind, "info": {"task": task}})()  # noqa: E731
    analysis = OutputAnalysis()
    assert analysis.name == "output"
    assert analysis.applies_to({}, [source("random", None), source("checkpoint", "saliency")])
    assert not analysis.applies_to({}, [source("checkpoint", "scene"), source("weights", None)])
    options = read_options({"output": {"model": "b"}}, "output", OutputOptions)
    assert (options.gt_sigma, options.alpha, options.model) == (24.0, 0.05, "b")
    with pytest.raises(ValueError, match="gt_sigma >= 0 and 0 < alpha < 1"):
        read_options({"output": {"alpha": 1.0}}, "output", OutputOptions)


def test_primary_model_rule() -> None:
    make = lambda name, layers: type("S", (), {"name": name, "info": {"finetune_layers": layers}})()  # noqa: E731
    models = [make("a", "0"), make("b", "1"), make("c", "2")]
    assert primary_model(models, None) == "b"
    assert primary_model(models, "c") == "c"
    with pytest.raises(ValueError, match="output.model='x'.*'a', 'b', 'c'"):
        primary_model(models, "x")


def test_predict_pass_equals_a_naive_full_resolution_reference(synthetic_root: Path) -> None:
    """OutputProbeModule under trainer.predict (batches of 3, padded regions) against resize + z-score."""
    import pytorch_lightning as pl

    sizes = {k: v for k, v in SMALL_SYNTHETIC.items() if k != "seed"}
    datamodule = OsieSrDataModule(root=synthetic_root, synthetic=True, image_size=32, batch_size=3, limit=4, **sizes)
    datamodule.setup("predict")
    dataset = datamodule.dataset
    torch.manual_seed(0)
    trunk, head = VGGTrunk().eval(), torch.nn.Conv2d(512, 1, 1, bias=False)
    module = OutputProbeModule(trunk, head, dataset.categories, gt_sigma=6.0)
    trainer = pl.Trainer(accelerator="cpu", logger=False, enable_progress_bar=False, enable_model_summary=False)
    trainer.predict(module, datamodule=datamodule, return_predictions=False)
    result = OutputResult.from_pass(module.result)
    scores = result.scores
    expected_os, expected_gt = [], []
    with torch.no_grad():
        for index in range(len(dataset)):
            item = dataset[index]
            fixations = item["fixations"].numpy()
            prediction = head(trunk(item["image"][None]))
            full = F.interpolate(prediction, size=fixations.shape, mode="bilinear", align_corners=False)[0, 0]
            gt = fixation_density(item["fixations"], 6.0).double().numpy()
            for mask in item["region_masks"].numpy():
                expected_os.append(naive_region_nss(full.double().numpy(), fixations, mask))
                expected_gt.append(naive_region_nss(gt, fixations, mask))
    assert scores.image.tolist() == sorted(scores.image.tolist()) and len(scores.os) == len(expected_os)
    np.testing.assert_allclose(scores.os, expected_os, rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(scores.gt, expected_gt, rtol=1e-4, atol=1e-5)
    assert result.unit_means.shape == (512, len(dataset.categories))


# ------------------------------------------------------------------------------------------------------------
# python probe.py sweep=<task=saliency,scene x finetune.layers=0,1>
# ------------------------------------------------------------------------------------------------------------


def _overrides(root: Path) -> list[str]:
    s = SMALL_SYNTHETIC
    return [f"data.root={root}", f"data.num_train={s['num_train']}", f"data.num_val={s['num_val']}",
            f"data.num_probe={s['num_probe']}", f"data.salicon_hw=[{s['salicon_hw'][0]},{s['salicon_hw'][1]}]",
            f"data.osie_hw=[{s['osie_hw'][0]},{s['osie_hw'][1]}]", f"data.num_observers={s['num_observers']}",
            "data.image_size=64", f"seed={s['seed']}", "logger=none", "print_config=false"]


@pytest.fixture(scope="module")
def probed_sweep(synthetic_root: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Train both tasks x finetune.layers=0,1 for one epoch, then probe the sweep with the default analyses."""
    tmp = tmp_path_factory.mktemp("both_tasks")
    env = {**os.environ, "WANDB_MODE": "disabled"}
    train = subprocess.run(
        [sys.executable, "train.py", "-m", "task=saliency,scene", "finetune.layers=0,1", "trainer.max_epochs=1",
         "++task.hidden_features=64", "~callbacks.progress_bar", *_overrides(synthetic_root),
         f"hydra.sweep.dir={tmp / 'sweep'}"],
        cwd=REPO, capture_output=True, text=True, timeout=600, env=env,
    )
    assert train.returncode == 0, train.stderr[-3000:]
    probe = subprocess.run(
        [sys.executable, "probe.py", f"sweep={tmp / 'sweep'}", *_overrides(synthetic_root), "layers=[conv5_3]",
         "controls.random_trunk=false", "figures.search_images=4", "scene_attention.n_resamples=999",
         "progress_bar=false", f"hydra.run.dir={tmp / 'run'}"],
        cwd=REPO, capture_output=True, text=True, timeout=600, env=env,
    )
    assert probe.returncode == 0, probe.stderr[-3000:]
    return tmp / "run"


@pytest.mark.slow
def test_sweep_of_both_tasks_writes_every_table_and_figure(probed_sweep: Path) -> None:
    run = probed_sweep
    with open(run / "tables/output_saliency.csv", newline="") as handle:
        rows = list(csv.DictReader(handle))
    assert list(rows[0]) == ["model", "category", "inner_nss", "os", "od", "n_regions"]
    models = list(dict.fromkeys(row["model"] for row in rows))
    assert models == ["task=saliency,finetune.layers=0", "task=saliency,finetune.layers=1"]  # saliency only
    statistics = json.loads((run / "tables/statistics.json").read_text())
    assert statistics["model"] == "task=saliency,finetune.layers=1"
    for model in models:  # the Spearman value recomputed from the CSV
        subset = [row for row in rows if row["model"] == model]
        expected = stats.spearmanr([float(r["inner_nss"]) for r in subset], [float(r["os"]) for r in subset])
        assert statistics["models"][model]["spearman"]["r"] == pytest.approx(expected.statistic, rel=1e-12)
        assert statistics["models"][model]["spearman"]["p"] == pytest.approx(expected.pvalue, rel=1e-9)
        assert all(float(r["od"]) >= 0 and int(r["n_regions"]) > 0 for r in subset)
    assert statistics["spearman"] == statistics["models"][statistics["model"]]["spearman"]
    assert set(statistics["anova"]) >= {"F", "p"} and isinstance(statistics["tukey"], list)
    # inner saliency of the output table = the inner analysis's conv5_3 top-10 mean
    with open(run / "tables/inner_representation.csv", newline="") as handle:
        inner = {(r["model"], r["category"]): float(r["top10_mean_nss"]) for r in csv.DictReader(handle)}
    for row in rows:
        assert float(row["inner_nss"]) == pytest.approx(inner[(row["model"], row["category"])], rel=1e-9)
    with open(run / "tables/scene_attention.csv", newline="") as handle:
        scene = list(csv.DictReader(handle))
    assert [(r["model"], r["prediction"]) for r in scene] == [
        ("task=scene,finetune.layers=0", "correct"), ("task=scene,finetune.layers=0", "wrong"),
        ("task=scene,finetune.layers=1", "correct"), ("task=scene,finetune.layers=1", "wrong")]
    with open(run / "tables/scene_attention_per_image.csv", newline="") as handle:
        per_image = list(csv.DictReader(handle))
    for row in scene:  # the split recomputed from the per-image table
        members = [float(r["nss"]) for r in per_image
                   if r["model"] == row["model"] and (r["correct"] == "True") == (row["prediction"] == "correct")]
        assert int(row["n_images"]) == len(members)
        if members:
            assert float(row["nss"]) == pytest.approx(np.mean(members), rel=1e-9)
    assert sum(int(r["n_images"]) for r in scene[:2]) >= 2  # the held-out split of the scene job
    figures = {path.name for path in (run / "figures").glob("*.png")}
    for expected_figure in ("output_fig7_task=saliency_finetune.layers=0.png",
                            "output_fig7_task=saliency_finetune.layers=1.png",
                            "fig5_unit_gain_task=saliency_finetune.layers=1.png",
                            "fig11_tasks_layers1.png"):
        assert expected_figure in figures, sorted(figures)
    assert any(name.startswith("fig6_unit_") for name in figures)
    report = (run / "report.md").read_text()
    for name in ("output_saliency.csv", "statistics.json", "scene_attention.csv", "fig11_tasks_layers1.png",
                 "inner_representation.csv"):
        assert name in report
    assert "0.96" in report and "0.12" in report  # the paper's r_s and Table 8 beside ours


# ------------------------------------------------------------------------------------------------------------
# the rules that pick the units and images of Figs. 5, 6 and 11
# ------------------------------------------------------------------------------------------------------------


def test_unit_figure_rules() -> None:
    from saliency_probe.probe.sources import TrunkSource
    from saliency_probe.probe.unit_figures import (
        largest_gain,
        least_gain_best_unit,
        pick_image,
        reference_source,
        task_triples,
    )

    before = np.array([[1.0, 1.0], [0.5, 2.0], [0.0, 0.1]])
    after = np.array([[1.2, 1.1], [3.0, 2.1], [0.1, np.nan]])
    assert largest_gain(before, after) == (1, 0, pytest.approx(2.5))
    # top-2 gains: category 0 from 0.75 to 2.1, category 1 from 1.5 to 1.6 -> category 1, its best unit 1
    assert least_gain_best_unit(before, after, top_k=2) == (1, 1)
    assert pick_image(np.array([0.1, np.nan, 0.3]), np.array([0.2, 5.0, 1.0])) == 2
    assert pick_image(np.array([np.nan]), np.array([1.0])) is None

    def ckpt(name: str, task: str, layers: str) -> TrunkSource:
        return TrunkSource(name=name, kind="checkpoint", info={"task": task, "finetune_layers": layers})

    sources = [ckpt("sc0", "scene", "0"), ckpt("sp0", "saliency", "0"), ckpt("sp1", "saliency", "1"),
               ckpt("sr1", "scene", "1"), ckpt("sp2", "saliency", "2"),
               TrunkSource(name="random-init", kind="random", control=True)]
    assert reference_source(sources).name == "sp0"  # untouched trunk, saliency first
    assert [(a.name, b.name, c.name) for a, b, c in task_triples(sources)] == [("sp0", "sr1", "sp1")]
    weights = TrunkSource(name="IMAGENET1K_V1", kind="weights", weights="IMAGENET1K_V1")
    assert reference_source([*sources, weights]).name == "IMAGENET1K_V1"
    assert reference_source([TrunkSource(name="random-init", kind="random", control=True)]) is None
