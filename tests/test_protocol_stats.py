"""The paper's tests as the paper describes them, on planted cases with known answers: Section 5.2's ANOVA and
Tukey HSD of the fine-tuning improvements, Section 6's two-factor ANOVA (category x measurement) against a hand
sum-of-squares computation, the dead-map count against a hand count, and the report printing the paper's p only
beside the two-factor test."""

from __future__ import annotations

import itertools
import json
from pathlib import Path

import numpy as np
import pytest
import torch
from scipy import stats

from saliency_probe.metrics import RegionNSS
from saliency_probe.probe.inner import columns, finetune_payload, inner_rows
from saliency_probe.probe.results import LayerResult
from saliency_probe.probe.sources import TrunkSource
from saliency_probe.probe.stats import (
    finetune_statistics,
    model_statistics,
    ranked_improvements,
    two_factor_anova,
)
from saliency_probe.report.output import output_markdown, paper_comparison
from saliency_probe.report.report_md import build_report, paper_values
from saliency_probe.report.statistics import finetune_lines

PAPER = Path(__file__).resolve().parents[2] / "shared/paper/he2019_understanding_deep_saliency.txt"


# ------------------------------------------------------------------------------------------------------------
# Section 6: two-factor ANOVA, category x measurement
# ------------------------------------------------------------------------------------------------------------


def hand_two_factor(os_values: np.ndarray, gt_values: np.ndarray, category: np.ndarray) -> dict[str, tuple]:
    """Balanced two-factor ANOVA from its sums of squares: term -> (df, F, p)."""
    levels = np.unique(category)
    n = int((category == levels[0]).sum())
    cells = np.stack([np.stack([os_values[category == c], gt_values[category == c]]) for c in levels])  # (a, 2, n)
    a, b = cells.shape[0], 2
    grand = cells.mean()
    row, col, cell = cells.mean(axis=(1, 2)), cells.mean(axis=(0, 2)), cells.mean(axis=2)
    ss = {"category": b * n * ((row - grand) ** 2).sum(), "measurement": a * n * ((col - grand) ** 2).sum(),
          "category:measurement": n * ((cell - row[:, None] - col[None] + grand) ** 2).sum()}
    ss_error = ((cells - cell[..., None]) ** 2).sum()
    df = {"category": a - 1, "measurement": b - 1, "category:measurement": (a - 1) * (b - 1)}
    df_error = a * b * (n - 1)
    out = {}
    for term in ss:
        f = (ss[term] / df[term]) / (ss_error / df_error)
        out[term] = (df[term], f, stats.f.sf(f, df[term], df_error))
    out["residual"] = (df_error, None, None)
    return out


def terms(result: dict) -> dict[str, dict]:
    return {row["term"]: row for row in result["terms"]}


def test_two_factor_anova_equals_the_hand_sums_of_squares_on_a_balanced_design() -> None:
    rng = np.random.default_rng(3)
    n = 8
    category = np.repeat([0, 1, 2], n)
    gt = rng.normal(1.0, 0.5, size=3 * n)
    os_values = gt + rng.normal(0.0, 0.5, size=3 * n) + np.where(category == 0, 3.0, 0.0)  # head: output >> human
    result = two_factor_anova(os_values, gt, category, ["person head", "text", "object"])
    expected = hand_two_factor(os_values, gt, category)
    got = terms(result)
    assert list(got) == ["category", "measurement", "category:measurement", "residual"]
    for term, (df, f, p) in expected.items():
        assert got[term]["df"] == df
        if f is not None:
            assert got[term]["F"] == pytest.approx(f, rel=1e-9)
            assert got[term]["p"] == pytest.approx(p, rel=1e-6)
    assert got["category:measurement"]["p"] < 1e-6  # the planted category-dependent difference
    assert result["paper_term"] == "category:measurement" and result["sums_of_squares"] == "type II"
    assert result["n_regions"] == 3 * n and result["n_observations"] == 6 * n
    assert result["levels"] == {"category": ["person head", "text", "object"],
                                "measurement": ["output", "ground_truth"]}


def test_two_factor_interaction_is_null_when_the_output_is_the_human_map_shifted() -> None:
    rng = np.random.default_rng(4)
    category = np.repeat([0, 1, 2], 6)
    gt = 0.5 * rng.normal(size=18) + 3.0 * category  # categories differ; output - human is the same everywhere
    got = terms(two_factor_anova(gt + 3.0, gt, category, ["a", "b", "c"]))
    assert got["category:measurement"]["F"] == pytest.approx(0.0, abs=1e-9)
    assert got["category:measurement"]["p"] == pytest.approx(1.0, abs=1e-9)
    assert got["measurement"]["p"] < 1e-3 and got["category"]["p"] < 1e-3


def test_two_factor_interaction_on_unequal_counts_equals_the_nested_least_squares_fits() -> None:
    """Unbalanced: the interaction's SS is SS_resid(additive) - SS_resid(full), by numpy least squares; a
    category with one region, NaN regions and an empty category are left out as the one-way tests do."""
    rng = np.random.default_rng(5)
    category = np.repeat([0, 1, 2, 3], [5, 9, 7, 1])
    gt = rng.normal(size=category.size)
    os_values = gt + rng.normal(size=category.size) + 0.8 * (category == 1)
    os_values[2], gt[7] = np.nan, np.nan
    names = ["a", "b", "c", "single", "never"]
    result = two_factor_anova(os_values, gt, category, names)
    assert result["left_out"] == ["single"] and result["levels"]["category"] == ["a", "b", "c"]
    keep = np.isfinite(os_values) & np.isfinite(gt) & (category < 3)
    y = np.concatenate([os_values[keep], gt[keep]])
    c = np.concatenate([category[keep], category[keep]])
    m = np.repeat([0.0, 1.0], keep.sum())
    ones, c1, c2 = np.ones_like(y), (c == 1).astype(float), (c == 2).astype(float)
    additive = np.stack([ones, c1, c2, m], axis=1)
    full = np.concatenate([additive, (c1 * m)[:, None], (c2 * m)[:, None]], axis=1)

    def residual(design: np.ndarray) -> float:
        beta = np.linalg.lstsq(design, y, rcond=None)[0]
        return float(((y - design @ beta) ** 2).sum())

    df_error = y.size - full.shape[1]
    f = ((residual(additive) - residual(full)) / 2) / (residual(full) / df_error)
    got = terms(result)
    assert got["residual"]["df"] == df_error and got["category:measurement"]["df"] == 2
    assert got["category:measurement"]["F"] == pytest.approx(f, rel=1e-9)
    assert got["category:measurement"]["p"] == pytest.approx(stats.f.sf(f, 2, df_error), rel=1e-6)
    assert result["n_regions"] == int(keep.sum())
    # the one-way tests stay, the two-factor one is added beside them
    summary = model_statistics([1, 2, 3], [1, 3, 2], os_values, gt, category, names, alpha=0.05)
    assert summary["anova_two_factor"] == result
    assert summary["anova"]["values"] == "od" and summary["anova_os"]["values"] == "os"
    assert two_factor_anova(os_values[:5], gt[:5], category[:5], names)["terms"] == []  # one category: no test


# ------------------------------------------------------------------------------------------------------------
# Section 5.2: ANOVA and Tukey HSD of the fine-tuning improvements across categories
# ------------------------------------------------------------------------------------------------------------

CATEGORIES = ["person head", "animal head", "text", "object", "vehicle", "never seen"]
SHIFT = {"person head": 3.0, "animal head": 6.0}


def planted_means(units: int = 15) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``(reference (C, K), tuned (C, K), e (10,))``: the tuned top-10 improvements are ``SHIFT[c] + e_i``
    exactly (the units keep their ranks); the last category was never seen (NaN)."""
    rng = np.random.default_rng(7)
    ranks = 10.0 - np.arange(units, dtype=np.float64)  # gaps of 1: small changes keep the order
    e = rng.uniform(-0.3, 0.3, size=units)
    reference = np.repeat(ranks[:, None], len(CATEGORIES), axis=1)
    tuned = reference + e[:, None] + np.array([SHIFT.get(c, 0.0) for c in CATEGORIES])[None]
    rows = rng.permutation(units)  # unit order does not matter, only ranks
    reference, tuned = reference[rows], tuned[rows]
    reference[:, -1] = tuned[:, -1] = np.nan
    return reference, tuned, e[:10]


def test_ranked_improvements_are_the_sorted_differences_and_average_to_the_top_k_change() -> None:
    reference, tuned, e = planted_means()
    values = ranked_improvements(tuned, reference, top_k=10)
    assert values.shape == (10, len(CATEGORIES))
    for k, name in enumerate(CATEGORIES[:-1]):
        by_hand = np.sort(tuned[:, k])[::-1][:10] - np.sort(reference[:, k])[::-1][:10]
        np.testing.assert_allclose(values[:, k], by_hand, rtol=0, atol=1e-12)
        np.testing.assert_allclose(values[:, k], SHIFT.get(name, 0.0) + e, atol=1e-12)
        change = np.sort(tuned[:, k])[::-1][:10].mean() - np.sort(reference[:, k])[::-1][:10].mean()
        assert values[:, k].mean() == pytest.approx(change, abs=1e-12)  # Fig. 4's bar
    assert np.isnan(values[:, -1]).all()
    assert ranked_improvements(tuned[:4], reference[:4], top_k=10).shape == (4, len(CATEGORIES))
    with pytest.raises(ValueError, match="one shape"):
        ranked_improvements(tuned, reference[:3], top_k=10)


def test_section_5_2_anova_and_tukey_mark_exactly_the_shifted_categories() -> None:
    reference, tuned, e = planted_means()
    result = finetune_statistics(tuned, reference, CATEGORIES, top_k=10, alpha=0.05)
    groups = [SHIFT.get(name, 0.0) + e for name in CATEGORIES[:-1]]
    direct = stats.f_oneway(*groups)
    anova = result["anova"]
    assert anova["F"] == pytest.approx(direct.statistic, rel=1e-9) and anova["p"] == pytest.approx(direct.pvalue)
    assert anova["df_between"] == 4 and anova["df_within"] == 45 and anova["p"] < 1e-20
    assert anova["categories"] == CATEGORIES[:-1]  # the never-seen category is not tested
    shifted = set(SHIFT)
    expected = {frozenset((a, b)) for a, b in itertools.combinations(CATEGORIES[:-1], 2) if {a, b} & shifted}
    assert {frozenset((p["a"], p["b"])) for p in result["tukey"]} == expected
    tukey = stats.tukey_hsd(*groups)
    for pair in result["tukey"]:
        i, j = CATEGORIES.index(pair["a"]), CATEGORIES.index(pair["b"])
        assert pair["p"] == pytest.approx(tukey.pvalue[i, j], rel=1e-9, abs=1e-15)
        assert pair["mean_difference"] == pytest.approx(SHIFT.get(pair["a"], 0.0) - SHIFT.get(pair["b"], 0.0))
    assert result["differs_from_all"] == ["person head", "animal head"]
    assert result["improvement"]["animal head"] == pytest.approx(6.0 + e.mean())
    assert result["improvement"]["never seen"] is None and result["values_per_category"] == 10


def _result(means: np.ndarray) -> LayerResult:
    k = means.shape[1]
    return LayerResult(unit_means=means, unit_std=np.zeros_like(means), region_counts=np.full(k, 4),
                       excluded_regions=0, excluded_images=0)


def ckpt(name: str, task: str, layers: str | None) -> TrunkSource:
    return TrunkSource(name=name, kind="checkpoint", info={"task": task, "finetune_layers": str(layers)})


def test_finetune_payload_tests_every_tuned_model_against_setup_one_and_says_what_it_skipped() -> None:
    reference, tuned, _ = planted_means()
    weights = TrunkSource(name="pt", kind="weights", weights="IMAGENET1K_V1")
    random = TrunkSource(name="random-init", kind="random", control=True)
    sources = [weights, ckpt("sp0", "saliency", "0"), ckpt("sp3", "saliency", "3"), ckpt("sr1", "scene", "1"),
               ckpt("old", "saliency", None), random]
    per_model = {"pt": {"conv5_3": _result(reference)}, "sp0": {"conv5_3": _result(reference + 0.5)},
                 "sp3": {"conv5_3": _result(tuned)}, "sr1": {"conv4_3": _result(tuned)},
                 "random-init": {"conv5_3": _result(tuned)}}
    payload = finetune_payload(sources, per_model, CATEGORIES, "conv5_3", top_k=10, alpha=0.05)
    json.dumps(payload)  # JSON-ready
    assert payload["skipped"] is None and payload["reference"]["name"] == "pt"  # setup I: the weights model
    assert list(payload["models"]) == ["sp3", "sr1"]  # fine-tuned checkpoints only (not sp0, not the control)
    direct = finetune_statistics(tuned, reference, CATEGORIES, 10, 0.05)
    entry = payload["models"]["sp3"]
    assert entry["skipped"] is None and entry["anova"] == direct["anova"] and entry["tukey"] == direct["tukey"]
    assert entry["task"] == "saliency" and entry["finetune_layers"] == "3"
    assert "conv5_3 was not probed" in payload["models"]["sr1"]["skipped"]
    assert payload["not_tested"] == {"old": "the checkpoint does not record finetune_layers"}
    lines = finetune_lines(payload)
    assert "Section 5.2 sp3 vs pt at conv5_3" in lines[0] and "person head, animal head" in lines[0]
    # without a weights model, the finetune.layers=0 checkpoint is setup I
    without = finetune_payload(sources[1:], per_model, CATEGORIES, "conv5_3", 10, 0.05)
    assert without["reference"]["name"] == "sp0"
    np.testing.assert_allclose(
        without["models"]["sp3"]["anova"]["F"], finetune_statistics(tuned, reference + 0.5, CATEGORIES, 10, 0.05)
        ["anova"]["F"], rtol=1e-12)
    none = finetune_payload([sources[2], random], per_model, CATEGORIES, "conv5_3", 10, 0.05)
    assert none["models"] == {} and "no setup I model" in none["skipped"]
    assert finetune_lines(none) == [f"Section 5.2 test not run: {none['skipped']}"]
    untuned = finetune_payload([weights, random], per_model, CATEGORIES, "conv5_3", 10, 0.05)
    assert "no fine-tuned checkpoint" in untuned["skipped"]
    missing = finetune_payload(sources[:3], per_model, CATEGORIES, "conv4_1", 10, 0.05)
    assert missing["skipped"] == "setup I model pt has no probed layer conv4_1"
    single = finetune_payload(sources[:3], per_model, CATEGORIES, "conv5_3", 1, 0.05)  # 1 value per category
    assert "fewer than 2 categories" in single["models"]["sp3"]["skipped"]


# ------------------------------------------------------------------------------------------------------------
# dead maps: constant unit maps give Eq. 1 = 0 inside the means; their number is a column
# ------------------------------------------------------------------------------------------------------------


def test_dead_maps_are_counted_per_unit_and_category_by_hand() -> None:
    rng = np.random.default_rng(1)
    act = torch.from_numpy(rng.uniform(0.1, 1.0, size=(2, 3, 6, 8)).astype(np.float32))
    act[0, 1] = 0.0  # unit 1 dead on image 0 only
    act[:, 2] = 0.5  # unit 2 constant (not zero) on both images
    fixations = torch.zeros(2, 24, 32)
    fixations[0, 2, 3] = fixations[0, 20, 25] = fixations[1, 10, 10] = 1
    masks0 = torch.zeros(3, 24, 32, dtype=torch.bool)
    masks0[0, :5, :5] = True  # holds (2, 3)
    masks0[1, 15:, 20:] = True  # holds (20, 25)
    masks0[2, 10:12, 0:2] = True  # no fixation: left out, not counted
    masks1 = torch.zeros(1, 24, 32, dtype=torch.bool)
    masks1[0, 5:15, 5:15] = True  # holds (10, 10)
    metric = RegionNSS(num_units=3, categories=["a", "b"])
    metric.update(act, fixations, [masks0, masks1], [["a", "b", "a"], ["a"]])
    # hand count: category a has the fixated regions (image 0, region 0) and (image 1, region 0), b has (0, 1)
    expected = np.array([[0, 0],    # unit 0: never constant
                         [1, 1],    # unit 1: constant on image 0 -> its a region and its b region
                         [2, 1]])   # unit 2: constant everywhere -> every fixated region
    np.testing.assert_array_equal(metric.dead_maps().numpy(), expected)
    means = metric.compute().numpy()
    assert means[2].tolist() == [0.0, 0.0] and means[1, 1] == 0.0  # the zeros are inside the means
    assert means[1, 0] != 0.0 and metric.region_counts().tolist() == [2, 1]


def test_dead_maps_column_equals_a_hand_count_on_a_trunk_with_killed_units() -> None:
    from saliency_probe.models.backbone import build_trunk
    from saliency_probe.probe.module import RegionProbeModule

    torch.manual_seed(0)
    trunk = build_trunk(None).eval()
    conv = trunk.features[28]  # conv5_3; ReLU follows
    with torch.no_grad():
        conv.weight[[5, 77]] = 0.0
        conv.bias[5], conv.bias[77] = -1.0, 0.25  # unit 5: ReLU(-1) = 0; unit 77: 0.25 everywhere
    rng = np.random.default_rng(2)
    images = torch.from_numpy(rng.normal(size=(3, 3, 64, 64)).astype(np.float32))
    fixations = torch.zeros(3, 48, 64)
    for b, (y, x) in enumerate([(5, 5), (30, 40), (40, 10)]):
        fixations[b, y, x] = fixations[b, 10, 50] = 1
    masks, names = [], [["text", "object"], ["text"], ["object", "text"]]
    for b in range(3):
        m = torch.zeros(len(names[b]), 48, 64, dtype=torch.bool)
        ys, xs = fixations[b].nonzero(as_tuple=True)
        for r in range(len(names[b])):
            m[r, ys[r], xs[r]] = True
        masks.append(m)
    categories = ["text", "object"]
    module = RegionProbeModule(trunk, ["conv5_3"], categories, shuffled_control=True, seed=0)
    batch = {"image": images, "fixations": fixations, "region_masks": masks, "region_categories": names,
             "stem": ["i0", "i1", "i2"]}
    with torch.no_grad():
        module.predict_step(batch, 0)
        module.compute_result()
        maps = trunk.features[:30](images)  # (3, 512, 4, 4) post-ReLU conv5_3
    constant = (maps.amax(dim=(-2, -1)) == maps.amin(dim=(-2, -1))).numpy()  # (3, 512)
    assert constant[:, [5, 77]].all()
    hand = {c: sum(int(constant[b].sum()) for b in range(3) for name in names[b] if name == c) for c in categories}
    rows = inner_rows("m", module.results, categories, top_k=10, threshold=1.5)
    assert {row["category"]: row["dead_maps"] for row in rows} == hand
    assert hand["text"] >= 2 * 3 and hand["object"] >= 2 * 2  # the two killed units on every region
    assert columns(10)[-1] == "dead_maps" and list(rows[0]) == columns(10)


# ------------------------------------------------------------------------------------------------------------
# the report: each test named, the paper's p beside the two-factor test only
# ------------------------------------------------------------------------------------------------------------


@pytest.mark.skipif(not PAPER.is_file(), reason=f"paper text not found at {PAPER}")
def test_paper_values_of_sections_5_2_and_6_are_the_paper_text() -> None:
    text = " ".join(PAPER.read_text(encoding="utf-8").split())
    claim = paper_values()["section5_2"]["differs_from_all"]
    assert "an ANOVA test and multiple comparisons indicate *person head*, *animal head*, and *other* are " \
           "significantly different than all other categories and each other" in text
    assert claim == ["person head", "animal head", "other"]
    assert "ANOVA test with measurements and clusters as factors showing significant difference $p = 9e^{-9}" in text
    assert paper_values()["section6"]["anova_p_od"] == 9e-9


def test_report_prints_the_paper_p_only_beside_the_two_factor_test(tmp_path: Path) -> None:
    rng = np.random.default_rng(9)
    category = np.repeat([0, 1, 2], 6)
    gt = rng.normal(size=18)
    os_values = gt + rng.normal(size=18) + 2.0 * (category == 0)
    statistics = model_statistics([1.0, 2.0, 3.0], [1.0, 2.5, 2.0], os_values, gt, category,
                                  ["person head", "text", "object"], alpha=0.05)
    interaction = terms(statistics["anova_two_factor"])["category:measurement"]["p"]
    run = tmp_path / "run"
    (run / "tables").mkdir(parents=True)
    (run / "tables/statistics.json").write_text(json.dumps({"model": "sp1", **statistics}))
    rows = [{"model": "sp1", "category": "text", "inner_nss": 1.0, "os": 0.5, "od": 0.2, "n_regions": 6}]
    (run / "tables/output_saliency.csv").write_text("model,category,inner_nss,os,od,n_regions\n"
                                                    "sp1,text,1.0,0.5,0.2,6\n")
    reference, tuned, _ = planted_means()
    payload = finetune_payload([TrunkSource(name="pt", kind="weights", weights="X"), ckpt("sp1", "saliency", "1")],
                               {"pt": {"conv5_3": _result(reference)}, "sp1": {"conv5_3": _result(tuned)}},
                               CATEGORIES, "conv5_3", 10, 0.05)
    (run / "tables/statistics_finetune.json").write_text(json.dumps(payload))
    report = build_report(run, models=[])
    assert report.count("9e-09") == 1  # once, in the two-factor row
    two_factor = next(line for line in report.splitlines() if "category x measurement interaction" in line)
    assert two_factor.endswith(f"| {interaction:.2g} | 9e-09 |") and "type II" in two_factor
    one_way = next(line for line in report.splitlines() if line.startswith("| one-way ANOVA p"))
    assert one_way.endswith(f"| {statistics['anova']['p']:.2g} | – |")
    assert "| two-factor ANOVA p, category main effect |" in report
    section = report.split("## Fine-tuning improvements across categories (Section 5.2)")[1].split("\n## ")[0]
    assert "| sp1 | 1 | F(4, 45) = " in section and "| person head, animal head |" in section
    assert "| paper (Section 5.2) | – | – | – | – | person head, animal head, other |" in section
    assert "`tables/statistics_finetune.json`" in section
    # the tests are named in output_saliency.md and the comparison rows
    markdown = output_markdown(rows, {"sp1": statistics}, "header")
    assert "- one-way ANOVA (scipy f_oneway) on per-region OD: F(2, 15)" in markdown
    assert "- two-factor ANOVA (category x measurement output/ground_truth, type II sums of squares" in markdown
    comparison = paper_comparison({k: v for k, v in statistics.items() if k != "anova_two_factor"},
                                  paper_values()["section6"])
    assert all(row[2] != "9e-09" for row in comparison)  # no two-factor result: no paper p at all
    skipped = finetune_payload([ckpt("sp1", "saliency", "1")], {}, CATEGORIES, "conv5_3", 10, 0.05)
    (run / "tables/statistics_finetune.json").write_text(json.dumps(skipped))
    assert f"**Not tested:** {skipped['skipped']}." in build_report(run, models=[])


def test_a_model_tuned_from_other_weights_than_setup_one_is_flagged_in_json_console_and_report(
        tmp_path: Path) -> None:
    """start_differs: a file and the torchvision enum whose digest it carries are one start; another file, another
    random seed or another backbone are not, and the line reaches the console and report.md."""
    from saliency_probe.probe.conditions import starting_point, with_start
    from saliency_probe.report.conditions import start_difference

    imagenet_file = with_start({"backbone": "vgg16", "origin": "imagenet", "weights": "/w/vgg16-397923af.pth",
                                "sha256": "397923af" + "0" * 56})
    enum = with_start({"backbone": "vgg16", "origin": "imagenet", "weights": "IMAGENET1K_V1", "sha256": None})
    assert starting_point(enum)[0] == starting_point(imagenet_file)[0] == ("vgg16", "sha256", "397923af")
    assert start_difference(enum, imagenet_file) is None
    other_file = with_start({**imagenet_file, "origin": "file", "weights": "/w/mine.pth", "sha256": "ab" * 32})
    assert "mine.pth (SHA-256 abababab...)" in start_difference(enum, other_file)
    seed0 = with_start({"backbone": "vgg16", "origin": "random", "weights": None, "sha256": None, "seed": 0})
    assert start_difference(seed0, dict(seed0)) is None
    assert "random initialisation (seed 1), setup I from vgg16 random initialisation (seed 0)" in (
        start_difference(seed0, with_start({**seed0, "seed": 1})))
    resnet = with_start({"backbone": "resnet18", "origin": "imagenet", "weights": "IMAGENET1K_V1", "sha256": None})
    assert starting_point(resnet)[0] == ("resnet18", "sha256", "f37072fd") and start_difference(enum, resnet)
    assert start_difference({"origin": "random"}, seed0) is None  # an older summary without start: not judged

    reference, tuned, _ = planted_means()
    sources = [ckpt("sp0", "saliency", "0"), ckpt("sp1", "saliency", "1"), ckpt("sp3", "saliency", "3")]
    starts = {"sp0": seed0, "sp1": dict(seed0), "sp3": with_start({**seed0, "seed": 7})}
    per_model = {name: {"conv5_3": _result(means)} for name, means in
                 (("sp0", reference), ("sp1", tuned), ("sp3", tuned))}
    payload = finetune_payload(sources, per_model, CATEGORIES, "conv5_3", 10, 0.05, lambda s: starts[s.name])
    assert payload["models"]["sp1"]["start_differs"] is None
    assert "seed 7" in payload["models"]["sp3"]["start_differs"]
    assert payload["models"]["sp3"]["anova"] == payload["models"]["sp1"]["anova"]  # still tested, only flagged
    warnings = [line for line in finetune_lines(payload) if "WARNING" in line]
    assert warnings == [f"Section 5.2 sp3: WARNING {payload['models']['sp3']['start_differs']}"]
    unchecked = finetune_payload(sources, per_model, CATEGORIES, "conv5_3", 10, 0.05)
    assert all(entry["start_differs"] is None for entry in unchecked["models"].values())
    run = tmp_path / "run"
    (run / "tables").mkdir(parents=True)
    (run / "tables/statistics_finetune.json").write_text(json.dumps(payload))
    report = build_report(run, models=[])
    assert f"- **sp3** {payload['models']['sp3']['start_differs']}." in report and "- **sp1**" not in report
