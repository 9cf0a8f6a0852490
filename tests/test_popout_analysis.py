"""The pop-out analysis: per-image scores on hand-built arrays, BMS on colour singletons, the data module, and
`probe.py analyses=[popout]` end to end (tables against independent recomputations, a sweep for Table 6), and
Fig. 9 (the best-matching conv4_1 units against a naive per-array NMM)."""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F
import torchvision
from hydra import compose, initialize_config_dir
from omegaconf import OmegaConf
from PIL import Image

from saliency_probe.data.popout_datamodule import PopoutDataModule
from saliency_probe.data.popout_generator import generate_popout
from saliency_probe.data.popout_reader import PopoutDataset
from saliency_probe.models.backbone import TRUNK_END, build_trunk
from saliency_probe.probe.model_specs import resolve_model
from saliency_probe.probe.options import PopoutOptions, read_options
from saliency_probe.probe.popout import example_ids, fig9_panels, map_models, model_rows, score_models
from saliency_probe.probe.popout_metrics import (
    fixations_to_find,
    image_rng,
    inhibition_box,
    item_nmms,
    score_map,
    target_nmm,
)
from saliency_probe.probe.runner import run_probe
from saliency_probe.report.popout import fig9_figure
from saliency_probe.report.tables import read_csv

REPO = Path(__file__).resolve().parents[1]
QUIET = ["logger=none", "print_config=false", "progress_bar=false"]
SET = {"num": 12, "seed": 0, "image_size": 128, "grid": 4, "dimensions": "colour,orientation,size,luminance",
       "levels": 3}


# ------------------------------------------------------------------------------------------------------------
# hand-built arrays: a 3 x 3 grid of 6 x 6 squares on a 40 x 40 image, target = item 5 (the centre)
# ------------------------------------------------------------------------------------------------------------


def hand_array() -> tuple[np.ndarray, np.ndarray]:
    """``(items, target)``: instance ids 1..9 row-major, each a 6 x 6 square centred in a 13 px cell."""
    items = np.zeros((40, 40), dtype=np.int32)
    for k in range(9):
        row, col = divmod(k, 3)
        y, x = 1 + 13 * row + 3, 1 + 13 * col + 3
        items[y : y + 6, x : x + 6] = k + 1
    return items, items == 5


def naive_nmm(saliency: np.ndarray, mask: np.ndarray) -> float:
    """Eq. 4 straight from the definition (population std)."""
    z = (saliency - saliency.mean()) / saliency.std()
    return float(z[mask].mean())


def test_map_equal_to_the_target_mask_scores_perfectly() -> None:
    items, target = hand_array()
    scores = score_map(target.astype(float), target, items, image_rng(0, "a"))
    p = target.mean()  # 36 / 1600
    assert scores.nmm == pytest.approx(math.sqrt((1 - p) / p), rel=1e-9)
    assert scores.nmm_distractors == pytest.approx(-math.sqrt(p / (1 - p)), rel=1e-9)
    assert (scores.target_rank, scores.gsi, scores.fixations_to_find, scores.found) == (1, 1.0, 1, True)
    assert scores.items == 9


def test_map_lighting_every_item_equally_ties_are_broken_by_the_seeded_jitter() -> None:
    items, target = hand_array()
    lit = (items > 0).astype(float)
    q = lit.mean()
    scores = score_map(lit, target, items, image_rng(0, "a"))
    assert scores.nmm == pytest.approx(math.sqrt((1 - q) / q), rel=1e-9) and scores.nmm > 0
    assert scores.nmm_distractors == pytest.approx(scores.nmm, rel=1e-9)
    assert scores.gsi == 0.0
    ranks = [score_map(lit, target, items, image_rng(seed, "a")).target_rank for seed in range(90)]
    assert ranks[:5] == [score_map(lit, target, items, image_rng(s, "a")).target_rank for s in range(5)]  # seeded
    assert set(ranks) == set(range(1, 10))  # a uniformly random place among the 9 tied items
    assert 4.0 < np.mean(ranks) < 6.0
    # without jitter the tie counts in the target's favour: that is the bias the jitter removes
    assert score_map(lit, target, items, image_rng(0, "a"), jitter=0.0).target_rank == 1


def test_map_preferring_distractors_has_negative_gsi_and_a_low_rank_despite_positive_nmm() -> None:
    items, target = hand_array()
    saliency = np.where(items > 0, 1.0, 0.0) - 0.7 * target  # target 0.3, distractors 1, background 0
    scores = score_map(saliency, target, items, image_rng(0, "a"))
    assert scores.nmm > 0  # NMM alone would call this a hit (docs/popout_analysis.md)
    assert scores.nmm == pytest.approx(naive_nmm(saliency, target), rel=1e-9)
    assert scores.gsi == pytest.approx((0.3 - 1.0) / (0.3 + 1.0), rel=1e-12)
    assert scores.target_rank == 9
    assert scores.nmm_distractors > scores.nmm


def test_item_nmms_equal_eq4_on_each_item_mask() -> None:
    items, _ = hand_array()
    saliency = np.random.default_rng(1).random(items.shape)
    ids = np.arange(1, 10)
    expected = [naive_nmm(saliency, items == k) for k in ids]
    np.testing.assert_allclose(item_nmms(saliency, items, ids), expected, rtol=1e-10)
    np.testing.assert_allclose(target_nmm(saliency, items == 3), expected[2], rtol=1e-10)
    assert np.all(item_nmms(np.full(items.shape, 0.4), items, ids) == 0.0)  # constant map: 0, not NaN


def peaked(items: np.ndarray, values: dict[int, float]) -> np.ndarray:
    """Each item ``k`` at ``values[k]``, highest at its centre (so the argmax is the item's centre)."""
    yy, xx = np.mgrid[: items.shape[0], : items.shape[1]]
    out = np.zeros(items.shape)
    for k, value in values.items():
        ys, xs = np.nonzero(items == k)
        cy, cx = ys.mean(), xs.mean()
        bump = value - 0.01 * np.hypot(yy - cy, xx - cx)
        out = np.where(items == k, bump, out)
    return out


def test_fixations_to_find_counts_inhibition_steps() -> None:
    items, target = hand_array()
    order = {1: 9.0, 7: 8.0, 3: 7.0, 5: 6.0, 2: 5.0, 4: 4.0, 6: 3.0, 8: 2.0, 9: 1.0}  # target (5) is 4th
    scores = score_map(peaked(items, order), target, items, image_rng(0, "a"))
    assert (scores.fixations_to_find, scores.found, scores.target_rank) == (4, True, 4)
    assert inhibition_box(items, target) == (7, 7)  # 6 x 6 items, rounded up to odd sides
    assert inhibition_box(items, target, 4) == (4, 4)
    # the budget: 3 fixations are not enough, which reads max_fixations + 1
    capped = score_map(peaked(items, order), target, items, image_rng(0, "a"), max_fixations=3)
    assert (capped.fixations_to_find, capped.found) == (4, False)
    # a box smaller than the item leaves the rest of a plateau to be fixated again: one step per inhibition
    plateau = np.zeros((5, 8))
    plateau[1:3, 1:4] = 5.0  # 2 x 3 distractor plateau above the target
    plateau[2, 6] = 4.0
    hit = np.zeros_like(plateau, dtype=bool)
    hit[2, 6] = True
    assert fixations_to_find(plateau, hit, (1, 1)) == (7, True)  # 6 plateau pixels, one at a time
    # 3 x 3 box: the first argmax (1, 1) clears columns 0-2, the second (1, 3) the rest, the third is the target
    assert fixations_to_find(plateau, hit, (3, 3)) == (3, True)
    assert fixations_to_find(plateau, hit, (3, 7)) == (2, True)  # wide enough to clear the plateau at once
    assert fixations_to_find(plateau, hit, (1, 1), max_fixations=6) == (7, False)


def test_target_absent_and_external_arrays() -> None:
    items, target = hand_array()
    absent = score_map(target.astype(float), np.zeros_like(target), items, image_rng(0, "a"))
    assert math.isnan(absent.nmm) and math.isnan(absent.target_rank) and not absent.found
    external = score_map(target.astype(float), target, None, image_rng(0, "a"))  # no item masks
    assert external.nmm > 0 and external.fixations_to_find == 1
    assert math.isnan(external.target_rank) and math.isnan(external.gsi) and math.isnan(external.nmm_distractors)
    with pytest.raises(ValueError, match="saliency map is"):
        score_map(np.zeros((3, 3)), target, items, image_rng(0, "a"))
    with pytest.raises(ValueError, match="inhibition"):
        inhibition_box(items, target, "huge")


# ------------------------------------------------------------------------------------------------------------
# classical models on generated arrays, the data module
# ------------------------------------------------------------------------------------------------------------


def test_bms_ranks_strong_colour_singletons_first(tmp_path: Path) -> None:
    root = generate_popout(tmp_path / "colour", num=10, seed=3, image_size=128, grid=4, dimensions="colour",
                           levels=2)
    dataset = PopoutDataset(root, image_size=64)
    bms = resolve_model("bms")
    ranks = []
    for index in range(len(dataset)):
        item = dataset[index]
        if item["level"] == 1:  # the strongest contrast: opposite hues
            scores = score_map(bms.predict(item["rgb"], item["id"]), item["target_mask"], item["item_masks"],
                               image_rng(0, item["id"]))
            ranks.append(scores.target_rank)
    assert len(ranks) == 5
    assert np.median(ranks) <= 2


def test_datamodule_generates_into_an_empty_folder_and_reads_an_existing_set(tmp_path: Path) -> None:
    spec = {"num": 2, "seed": 1, "image_size": 128, "grid": 3, "dimensions": ["colour"], "levels": 2}
    module = PopoutDataModule(tmp_path / "new", image_size=32, generate=spec)
    module.setup("predict")
    assert len(module.dataset) == 2 and (tmp_path / "new/metadata.csv").is_file()
    other = PopoutDataModule(tmp_path / "new", image_size=32, generate={**spec, "num": 50})  # set exists: read it
    other.setup("predict")
    assert len(other.dataset) == 2
    batch = next(iter(other.predict_dataloader()))
    assert batch["image"].shape == (2, 3, 32, 32) and batch["target_mask"][0].shape == (128, 128)


def test_precomputed_png_maps_are_scored_like_any_model(tmp_path: Path) -> None:
    """``maps:<folder>`` with quantised 8-bit maps (the target drawn at 255): perfect scores on every array."""
    root = generate_popout(tmp_path / "set", num=4, seed=2, image_size=128, grid=3, dimensions="size", levels=2)
    dataset = PopoutDataset(root, image_size=32)
    for index in range(len(dataset)):
        item = dataset[index]
        Image.fromarray(item["target_mask"].astype(np.uint8) * 255).save(tmp_path / f"{item['id']}.png")
    options = read_options(OmegaConf.create({"seed": 0, "popout": {"models": [f"maps:{tmp_path}"]}}), "popout",
                           PopoutOptions)
    models = map_models(options, [])
    rows, examples = score_models(models, dataset, options)
    assert [m.name for m in models] == [f"maps:{tmp_path.name}"] and len(rows) == 4
    for row, index in zip(rows, range(len(dataset)), strict=True):
        p = dataset[index]["target_mask"].mean()
        assert row["nmm"] == pytest.approx(math.sqrt((1 - p) / p), rel=1e-6)
        assert (row["target_rank"], row["gsi"], row["fixations_to_find"]) == (1, 1.0, 1)
    assert set(examples) == {"00001"}  # the one dimension's strongest contrast
    table = model_rows(rows, models)
    assert table[0]["images"] == 2 and table[0]["found_rate"] == 1.0  # level-0 arrays are left out of the means


# ------------------------------------------------------------------------------------------------------------
# probe.py analyses=[popout]
# ------------------------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def popout_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return generate_popout(tmp_path_factory.mktemp("popout") / "set", **SET)


def naive_top10_conv5_3(weights: Path, root: Path, image_size: int) -> float:
    """Table 5 at conv5_3 from the definitions: torchvision VGG-16 to the ReLU after conv5_3, every unit map
    resized bilinearly to the array, z-scored, averaged over the target; mean per unit over the arrays with
    level > 0; mean of the 10 best units."""
    vgg = torchvision.models.vgg16(weights=None)
    vgg.load_state_dict(torch.load(weights, weights_only=True), strict=False)
    trunk = vgg.features[:30].eval()
    dataset = PopoutDataset(root, image_size=image_size)
    per_image = []
    with torch.no_grad():
        for index in range(len(dataset)):
            item = dataset[index]
            if item["level"] == 0:
                continue
            maps = trunk(item["image"][None]).double()
            full = F.interpolate(maps, size=item["target_mask"].shape, mode="bilinear", align_corners=False)[0]
            mean = full.mean(dim=(1, 2), keepdim=True)
            std = full.std(dim=(1, 2), unbiased=False, keepdim=True)
            z = torch.where(std > 0, (full - mean) / std.clamp_min(1e-300), torch.zeros_like(full))
            per_image.append(z[:, torch.from_numpy(item["target_mask"])].mean(dim=1))
    unit_means = torch.stack(per_image).mean(dim=0)
    return float(unit_means.sort(descending=True).values[:10].mean())


@pytest.mark.slow
def test_probe_cli_writes_the_popout_tables_and_figures(tmp_path: Path, popout_root: Path, weights_file: Path) -> None:
    run_dir = tmp_path / "run"
    command = [sys.executable, str(REPO / "probe.py"), "analyses=[popout]", "data=popout", f"data.root={popout_root}",
               f"backbone.weights={weights_file}", "popout.models=[bms,gbvs,itti,spectral_residual]",
               "popout.image_size=64", f"hydra.run.dir={run_dir}", *QUIET]
    env = {**os.environ, "WANDB_MODE": "disabled", "OMP_NUM_THREADS": "2"}
    result = subprocess.run(command, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    tables, figures = run_dir / "tables", run_dir / "figures"
    for name in ["popout_models.csv", "popout_models.md", "popout_per_image.csv", "popout_levels.csv",
                 "popout_layers.csv", "popout_layers.md"]:
        assert (tables / name).is_file(), name
    for name in ["popout_examples", *(f"popout_psychometric_{s}" for s in
                                      ["nmm", "nmm_distractors", "target_rank", "gsi", "fixations_to_find"])]:
        assert (figures / f"{name}.png").stat().st_size > 1000, name
    assert not (tables / "popout_sweep.csv").exists()  # no sweep probed

    models = read_csv(tables / "popout_models.csv")
    per_image = read_csv(tables / "popout_per_image.csv")
    layers = read_csv(tables / "popout_layers.csv")
    assert list(models[0])[:6] == ["model", "nmm", "nmm_distractors", "target_rank", "gsi", "fixations_to_find"]
    assert list(per_image[0])[:9] == ["model", "image", "dimension", "level", "nmm", "nmm_distractors",
                                      "target_rank", "gsi", "fixations_to_find"]
    assert list(layers[0])[:3] == ["model", "layer", "top10_nmm"]
    assert [row["model"] for row in models] == ["bms", "gbvs", "itti", "spectral_residual"]
    assert len(per_image) == 4 * SET["num"]

    # Table 4 means are the means of the per-image rows of the arrays with a contrast (level > 0)
    for row in models:
        mine = [r for r in per_image if r["model"] == row["model"] and int(r["level"]) > 0]
        assert int(row["images"]) == len(mine) == 8
        for score in ["nmm", "target_rank", "gsi", "fixations_to_find"]:
            assert float(row[score]) == pytest.approx(np.mean([float(r[score]) for r in mine]), rel=1e-12)
    # a per-image NMM against Eq. 4 computed here from BMS's map
    dataset = PopoutDataset(popout_root, image_size=64)
    item = dataset[8]
    bms_row = next(r for r in per_image if r["model"] == "bms" and r["image"] == item["id"])
    saliency = resolve_model("bms").predict(item["rgb"], item["id"]).astype(np.float64)
    assert float(bms_row["nmm"]) == pytest.approx(naive_nmm(saliency, item["target_mask"]), rel=1e-6)

    # Table 5: every probed trunk (the weights file and the random-init control) at every probed layer
    assert {(r["model"], r["layer"]) for r in layers} == {
        (m, layer) for m in ["vgg16_seed7", "random-init"]
        for layer in ["conv4_1", "conv4_2", "conv4_3", "conv5_1", "conv5_2", "conv5_3"]}
    conv5_3 = next(r for r in layers if r["model"] == "vgg16_seed7" and r["layer"] == "conv5_3")
    assert float(conv5_3["top10_nmm"]) == pytest.approx(naive_top10_conv5_3(weights_file, popout_root, 64), rel=1e-5)
    assert "| model | conv5_3 | conv5_2 |" in (tables / "popout_layers.md").read_text()
    summary = json.loads((run_dir / "probe_summary.json").read_text())
    assert summary["analyses"]["popout"]["models"] == ["bms", "gbvs", "itti", "spectral_residual"]


def fake_sweep(root: Path, values: list[str]) -> Path:
    """A training multirun folder in train.py's layout: per job a saliency checkpoint (seeded trunk and head),
    .hydra/overrides.yaml and summary.json."""
    for number, value in enumerate(values):
        job = root / str(number)
        torch.manual_seed(number)
        features = torchvision.models.vgg.make_layers(torchvision.models.vgg.cfgs["D"])[:TRUNK_END]  # no classifier
        state = {f"trunk.features.{key}": tensor for key, tensor in features.state_dict().items()}
        state["head.weight"] = torch.randn(1, 512, 1, 1)
        run_name = f"finetune.layers={value}"
        best = job / "checkpoints" / "last.ckpt"  # the end of training: what sweep_checkpoint=last probes
        best.parent.mkdir(parents=True)
        torch.save({"state_dict": state, "hyper_parameters": {"run_name": run_name},
                    "saliency_probe": {"format_version": 1, "task": "saliency", "run_name": run_name,
                                       "finetune_layers": value, "config": {}}}, best)
        (job / ".hydra").mkdir()
        (job / ".hydra/overrides.yaml").write_text(f"- finetune.layers={value}\n- task=saliency\n")
        (job / "summary.json").write_text(json.dumps({"task": "saliency", "finetune_layers": value,
                                                      "last_checkpoint": str(best), "run_name": run_name}))
    return root


def test_sweep_gives_table_6_and_its_checkpoints_enter_table_4(tmp_path: Path) -> None:
    root = generate_popout(tmp_path / "set", num=4, seed=1, image_size=128, grid=3, dimensions="colour,size", levels=2)
    sweep = fake_sweep(tmp_path / "sweep", ["0", "1"])
    overrides = [*QUIET, "analyses=[popout]", "data=popout", f"data.root={root}", f"sweep={sweep}",
                 "layers=[conv4_3,conv5_3]", "controls.random_trunk=false", "popout.image_size=64",
                 "popout.models=[spectral_residual]", "figures.enabled=false"]
    with initialize_config_dir(config_dir=str(REPO / "conf"), version_base="1.3"):
        cfg = compose("probe", overrides=overrides)
    cwd = Path.cwd()
    (tmp_path / "run").mkdir()
    os.chdir(tmp_path / "run")  # outside Hydra the run folder is the current folder
    try:
        run_probe(cfg)
    finally:
        os.chdir(cwd)
    tables = tmp_path / "run" / "tables"
    models = read_csv(tables / "popout_models.csv")
    assert [(r["model"], r["kind"]) for r in models] == [
        ("spectral_residual", "classical"), ("finetune.layers=0", "checkpoint"), ("finetune.layers=1", "checkpoint")]
    sweep_rows = read_csv(tables / "popout_sweep.csv")
    layer_rows = {(r["model"], r["layer"]): r for r in read_csv(tables / "popout_layers.csv")}
    assert [(r["model"], r["layer"]) for r in sweep_rows] == [("finetune.layers=0", "conv5_3"),
                                                              ("finetune.layers=1", "conv5_3")]
    for row in sweep_rows:
        assert row["top10_nmm"] == layer_rows[(row["model"], "conv5_3")]["top10_nmm"]
    assert sweep_rows[0]["top10_nmm"] != sweep_rows[1]["top10_nmm"]
    assert "| finetune.layers=0 | finetune.layers=1 |" in (tables / "popout_sweep.md").read_text()
    assert not (tmp_path / "run" / "figures").exists()


@pytest.mark.parametrize(
    ("overrides", "error", "message"),
    [
        ([], ValueError, "data=popout data.root=DIR"),  # data: the default synthetic OSIE set
        (["data=popout", "popout.models=[bms,nonsense]"], ValueError, "unknown model 'nonsense'"),
        (["data=popout", "popout.models=[ckpt:/nowhere/best.ckpt]"], FileNotFoundError, "/nowhere/best.ckpt"),
        (["data=popout", "popout.inhibition=huge"], ValueError, "popout.inhibition"),
    ],
)
def test_bad_popout_settings_fail_before_any_work(tmp_path: Path, overrides: list[str], error: type,
                                                  message: str) -> None:
    with initialize_config_dir(config_dir=str(REPO / "conf"), version_base="1.3"):
        cfg = compose("probe", overrides=[*QUIET, "analyses=[popout]", "layers=[conv5_3]",
                                          f"data.root={tmp_path / 'never_made'}", *overrides])
    cwd = Path.cwd()
    os.chdir(tmp_path)
    try:
        with pytest.raises(error, match=message):
            run_probe(cfg)
    finally:
        os.chdir(cwd)
    assert not (tmp_path / "never_made").exists()  # nothing generated


def test_auto_analyses_run_popout_only_with_popout_data() -> None:
    from saliency_probe.probe.registry import get_analysis

    applies = get_analysis("popout").applies_to
    with initialize_config_dir(config_dir=str(REPO / "conf"), version_base="1.3"):
        assert applies(compose("probe", overrides=["data=popout"]), [])
        assert not applies(compose("probe"), [])  # the default OSIE-SR data
        assert applies(compose("probe", overrides=["popout.root=/some/arrays"]), [])


# ------------------------------------------------------------------------------------------------------------
# Fig. 9: arrays, target masks and the best-matching conv4_1 unit maps
# ------------------------------------------------------------------------------------------------------------


def naive_unit_nmms(weights: Path, item: dict, end: int = 19) -> np.ndarray:
    """Eq. 4 of every conv4_1 unit on one array from the definitions: torchvision VGG-16 to the ReLU after
    conv4_1 (``features[:19]``), each map resized bilinearly to the array, z-scored (population std), averaged
    over the target mask."""
    vgg = torchvision.models.vgg16(weights=None)
    vgg.load_state_dict(torch.load(weights, weights_only=True), strict=False)
    with torch.no_grad():
        maps = vgg.features[:end].eval()(item["image"][None]).double()
    full = F.interpolate(maps, size=item["target_mask"].shape, mode="bilinear", align_corners=False)[0].numpy()
    return np.array([naive_nmm(unit, item["target_mask"]) if unit.std() > 0 else 0.0 for unit in full])


def test_fig9_shows_each_array_its_mask_and_the_best_matching_conv4_1_units(
    tmp_path: Path, popout_root: Path, weights_file: Path
) -> None:
    overrides = [*QUIET, "analyses=[popout]", "data=popout", f"data.root={popout_root}",
                 f"backbone.weights={weights_file}", "popout.models=[spectral_residual]", "popout.image_size=64",
                 "layers=[conv5_3]", "popout.units=false", "popout.fig9_arrays=3", "popout.fig9_units=2"]
    with initialize_config_dir(config_dir=str(REPO / "conf"), version_base="1.3"):
        cfg = compose("probe", overrides=overrides)
    cwd = Path.cwd()
    (tmp_path / "run").mkdir()
    os.chdir(tmp_path / "run")
    try:
        summary = run_probe(cfg)
    finally:
        os.chdir(cwd)
    figures = tmp_path / "run" / "figures"
    fig9 = summary["analyses"]["popout"]["fig9"]
    dataset = PopoutDataset(popout_root, image_size=64)
    ids = example_ids(dataset, 3)
    assert fig9["layer"] == "conv4_1" and fig9["arrays"] == ids and len(ids) == 3
    assert list(fig9["units"]) == ["vgg16_seed7"]  # the random-init control gets no Fig. 9
    assert sorted(p.name for p in figures.glob("popout_fig9_*")) == ["popout_fig9_vgg16_seed7.png"]

    # the units shown are the two largest of a naive per-array NMM over all 512 conv4_1 units
    position = {record.id: index for index, record in enumerate(dataset.records)}
    for identifier in ids:
        naive = naive_unit_nmms(weights_file, dataset[position[identifier]])
        shown = fig9["units"]["vgg16_seed7"][identifier]
        assert [unit for unit, _ in shown] == list(np.argsort(-naive, kind="stable")[:2])
        assert shown[0][0] == int(np.argmax(naive))
        np.testing.assert_allclose([value for _, value in shown], np.sort(naive)[::-1][:2], rtol=1e-5)

    # the figure: one column per array; rows: array, mask, two unit maps, titled with unit and NMM
    panels = fig9_panels(build_trunk(str(weights_file)), dataset, ids, "conv4_1", units=2)
    figure = fig9_figure(panels, "conv4_1")
    assert len(figure.axes) == 3 * 4
    assert len({round(axis.get_position().x0, 3) for axis in figure.axes}) == 3
    best = fig9["units"]["vgg16_seed7"][ids[0]][0]
    assert figure.axes[2 * 3].get_title() == f"conv4_1 unit {best[0]}, NMM {best[1]:.2f}"
    with Image.open(figures / "popout_fig9_vgg16_seed7.png") as png:
        width, height = png.size
    assert width / height == pytest.approx((3 * 2.0) / (4 * 2.0 + 0.4), rel=0.2)
