"""Protocol fidelity: the paper's experiments as presets, paper rows matched by experiment, conditions lines.

Table 7's premise is that the saliency-tuned (sp) and scene-tuned (sr) trunks were fine-tuned on the same images;
``train.py -m experiment=table7`` trains both from one data module, and each checkpoint records its split. The
entry points run in-process (``tests/test_run_folders.py::invoke``) on the small synthetic set.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from hydra import compose, initialize_config_dir
from test_probe import synthetic_overrides
from test_run_folders import invoke

from saliency_probe.models.checkpoint import load_checkpoint
from saliency_probe.report.conditions import (
    conditions_line,
    experiment_row,
    same_images_differences,
    same_start_differences,
)
from saliency_probe.report.report_md import paper_values

REPO = Path(__file__).resolve().parents[1]
TINY_TRAIN = ["data.image_size=64", "data.batch_size=4", "data.num_workers=0", "trainer.max_epochs=1",
              "logger=none", "print_config=false", "~callbacks.progress_bar", "++task.hidden_features=16"]


@pytest.fixture(scope="module")
def table7_sweep(tmp_path_factory: pytest.TempPathFactory, synthetic_root: Path, weights_file: Path) -> Path:
    sweep = tmp_path_factory.mktemp("table7") / "sweep"
    monkeypatch = pytest.MonkeyPatch()
    try:
        code = invoke("train.py", ["-m", "experiment=table7", "data=synthetic_scenes",
                                   *synthetic_overrides(synthetic_root), *TINY_TRAIN,
                                   f"backbone.weights={weights_file}", f"hydra.sweep.dir={sweep}"], monkeypatch)
    finally:
        monkeypatch.undo()
    assert code == 0
    return sweep


def test_table7_sweep_trains_sp_and_sr_on_identical_image_lists(table7_sweep: Path, synthetic_root: Path,
                                                                weights_file: Path) -> None:
    sp, sr = (load_checkpoint(table7_sweep / job / "checkpoints/last.ckpt") for job in ("0", "1"))
    assert (sp.task, sr.task) == ("saliency", "scene")
    assert sp.metadata["finetune_layers"] == sr.metadata["finetune_layers"] == "1"  # conv5_3 tuned
    assert sp.backbone.weights == sr.backbone.weights == str(weights_file)
    split_sp, split_sr = sp.metadata["data_split"], sr.metadata["data_split"]
    assert split_sp["train"] == split_sr["train"] and split_sp["val"] == split_sr["val"]
    assert split_sp["train"] and split_sp["val"] and not set(split_sp["train"]) & set(split_sp["val"])
    # the split is the scene-labelled images of the synthetic SALICON train + val, as the scene task reads them
    labelled = [line.split(",")[0] for line in (synthetic_root / "scenes.csv").read_text().splitlines()[1:]]
    assert set(split_sp["train"]) | set(split_sp["val"]) <= set(labelled)
    summaries = [json.loads((table7_sweep / job / "summary.json").read_text()) for job in ("0", "1")]
    assert summaries[0]["data_split"] == summaries[1]["data_split"]
    assert summaries[0]["data_split"]["train_images"] == len(split_sp["train"])
    # each task keeps its own optimizer settings (the paper's saliency lr; the scene lr is ours, docs/protocol.md)
    assert sp.metadata["config"]["task"]["optimizer"]["lr"] == pytest.approx(5e-3)
    assert sr.metadata["config"]["task"]["optimizer"]["lr"] == pytest.approx(1e-4)


def test_probe_table7_shows_table7_rows_with_the_conditions_line(
    table7_sweep: Path, synthetic_root: Path, weights_file: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    run = tmp_path / "probe"
    ckpts = ",".join(str(table7_sweep / job / "checkpoints/last.ckpt") for job in ("0", "1"))
    code = invoke("probe.py", ["probe=table7", f"backbone.weights={weights_file}", f"ckpt=[{ckpts}]",
                               *synthetic_overrides(synthetic_root), "analyses=[inner]", "layers=[conv5_3]",
                               "controls.random_trunk=false", "controls.shuffled_regions=false",
                               "figures.enabled=false", "logger=none", "progress_bar=false",
                               f"hydra.run.dir={run}"], monkeypatch)
    assert code == 0
    summary = json.loads((run / "probe_summary.json").read_text())
    rows = {m["name"]: m["paper_row"] for m in summary["models"]}
    assert rows == {"pt": ["table7", "pt"], "sp": ["table7", "sp"], "sr": ["table7", "sr"]}
    sp = next(m for m in summary["models"] if m["name"] == "sp")
    assert sp["conditions"]["trained_on"]["data_set"] == "synthetic SALICON-SAL-SCE"
    assert sp["conditions"]["checkpoint"] == "last" and sp["conditions"]["epochs"] == 1
    assert summary["probe_conditions"]["precision"] == "fp32"
    report = (run / "report.md").read_text()
    table7 = report.split("### conv5_3 beside the paper's Table 7")[1].split("### ")[0]
    text = paper_values()["table7"]["top10_mean_nss"]["sp"]["text"]
    assert text == 1.44 and f"({text:.2f})" in table7.split("| sp ↔ Table 7 sp |")[1].split("\n")[0]
    assert "Table 3" not in table7
    for phrase in ("sp ↔ Table 7 sp: conditions differ from the paper's", "are not torchvision's ImageNet VGG-16",
                   "fine-tuned on synthetic SALICON-SAL-SCE (paper: SALICON-SAL-SCE)", "1 epoch(s) (paper: 20)",
                   "every row: the probe's conditions differ from the paper's: probed on synthetic OSIE-SR "
                   "(paper: OSIE-SR); probed at 64 px (paper: 224)."):
        assert phrase in table7, phrase
    assert "fine-tuned on different images" not in report  # same split: no such line
    assert "- sp: " in report and "fine-tuned on synthetic SALICON-SAL-SCE" in report.split("## Models")[1]
    # sp and sr started from pt's weights file: Section 5.2's test flags neither
    finetune = json.loads((run / "tables/statistics_finetune.json").read_text())
    assert finetune["reference"]["name"] == "pt" and set(finetune["models"]) == {"sp", "sr"}
    assert all(entry["start_differs"] is None for entry in finetune["models"].values())
    starts = {m["name"]: m["conditions"]["start"]["key"] for m in summary["models"]}
    assert starts["pt"] == starts["sp"] == starts["sr"] and "did not all start from the same weights" not in report


def test_sp_is_table7_not_table3() -> None:
    scene_data = {"trained_on": {"data_set": "SALICON-SAL-SCE", "scene_labels": True}}
    sp = {"name": "saliency-layers1", "kind": "checkpoint", "task": "saliency", "finetune_layers": "1",
          "conditions": scene_data}
    assert experiment_row(sp) == ("table7", "sp")
    salicon = {**sp, "conditions": {"trained_on": {"data_set": "SALICON", "scene_labels": False}}}
    assert experiment_row(salicon) == ("table3", "1")  # fine-tuned on all of SALICON: Table 3's experiment
    assert experiment_row({**salicon, "name": "sp"}) == ("table7", "sp")  # probe=table7's role
    assert experiment_row({**sp, "backbone": "resnet18"}) is None


PAPER_MODEL = {"name": "sp", "kind": "checkpoint", "task": "saliency", "finetune_layers": "1",
               "conditions": {"origin": "imagenet", "weights": "IMAGENET1K_V1", "epochs": 20, "checkpoint": "last",
                              "trained_on": {"data_set": "SALICON-SAL-SCE", "scene_labels": True, "image_size": 224,
                                             "fingerprints": {"train": "ab"}}}}
PAPER_PROBE = {"data_set": "OSIE-SR", "input_size": 224, "precision": "fp32", "top_k": 10, "threshold": 1.5}


def test_the_paper_conditions_give_no_line_and_each_difference_is_named() -> None:
    assert conditions_line(PAPER_MODEL, ("table7", "sp"), PAPER_PROBE) is None
    random = {**PAPER_MODEL, "conditions": {**PAPER_MODEL["conditions"], "origin": "random", "weights": None,
                                           "checkpoint": "best"}}
    line = conditions_line(random, ("table7", "sp"), {**PAPER_PROBE, "precision": "bf16"})
    assert line is not None
    assert "random initialisation (paper: ImageNet weights)" in line and "checkpoint best" in line
    assert "bf16 forward (paper: float32)" in line
    sr = {**PAPER_MODEL, "name": "sr", "task": "scene",
          "conditions": {**PAPER_MODEL["conditions"],
                         "trained_on": {**PAPER_MODEL["conditions"]["trained_on"], "fingerprints": {"train": "cd"}}}}
    assert same_images_differences([PAPER_MODEL, sr]) and "different images" in same_images_differences(
        [PAPER_MODEL, sr])[0]
    assert same_images_differences([PAPER_MODEL, {**sr, "conditions": PAPER_MODEL["conditions"]}]) == []


def test_table7_models_from_other_starting_weights_get_a_line() -> None:
    """Table 7 compares the tasks from one start: sp and sr whose recorded starts differ get one line naming both."""
    from saliency_probe.probe.conditions import with_start

    imagenet = with_start({"backbone": "vgg16", "origin": "imagenet", "weights": "IMAGENET1K_V1"})["start"]
    assert imagenet["text"] == "vgg16 weights IMAGENET1K_V1 (SHA-256 397923af...)"
    mine = {"key": ["vgg16", "sha256", "abababab"], "text": "vgg16 weights mine.pth (SHA-256 abababab...)"}
    sp = {**PAPER_MODEL, "conditions": {**PAPER_MODEL["conditions"], "start": imagenet}}
    sr = {**sp, "name": "sr", "task": "scene"}
    assert same_start_differences([sp, sr]) == []
    other = {**sr, "conditions": {**sr["conditions"], "start": mine}}
    lines = same_start_differences([sp, other])
    assert lines == ["sp, sr did not all start from the same weights (sp from vgg16 weights IMAGENET1K_V1 (SHA-256 "
                     "397923af...); sr from vgg16 weights mine.pth (SHA-256 abababab...)); Table 7 compares the "
                     "tasks from one start"]
    table3 = {**sp, "name": "sp_salicon", "conditions": {**sp["conditions"], "start": mine,
                                                          "trained_on": {"data_set": "SALICON"}}}
    assert experiment_row(table3) == ("table3", "1")
    assert same_start_differences([sp, table3]) == []  # a Table 3 model is not part of Table 7's premise


def test_random_init_sweep_probe_shows_the_conditions_line(
    synthetic_root: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    run_dir = tmp_path / "train"
    assert invoke("train.py", [*synthetic_overrides(synthetic_root), *TINY_TRAIN, "finetune.layers=0",
                               f"hydra.run.dir={run_dir}"], monkeypatch) == 0
    other = tmp_path / "train_seed1"  # another random initialisation, then fine-tuned: not setup I's start
    assert invoke("train.py", [*synthetic_overrides(synthetic_root), *TINY_TRAIN, "finetune.layers=1", "seed=1",
                               f"hydra.run.dir={other}"], monkeypatch) == 0
    probe = tmp_path / "probe"
    ckpts = f"[{run_dir}/checkpoints/last.ckpt,{other}/checkpoints/last.ckpt]"
    assert invoke("probe.py", [f"ckpt={ckpts}", *synthetic_overrides(synthetic_root),
                               "analyses=[inner]", "layers=[conv5_3]", "controls.shuffled_regions=false",
                               "figures.enabled=false", "logger=none", "progress_bar=false",
                               f"hydra.run.dir={probe}"], monkeypatch) == 0
    report = (probe / "report.md").read_text()
    block = report.split("### conv5_3 beside the paper's Table 3")[1].split("### ")[0]
    assert "conditions differ from the paper's: random initialisation (paper: ImageNet weights)" in block
    assert "fine-tuned on synthetic SALICON (paper: SALICON)" in block
    summary = json.loads((probe / "probe_summary.json").read_text())
    model = summary["models"][0]
    assert model["paper_row"] == ["table3", "0"] and model["conditions"]["origin"] == "random"
    assert any("random initialisation" in item for item in model["paper_differences"])
    control = next(m for m in summary["models"] if m.get("control"))
    assert control["paper_row"] is None and control["paper_differences"] == []
    # Section 5.2 against the layers=0 checkpoint (seed 0): the seed-1 model is tested and flagged
    finetune = json.loads((probe / "tables/statistics_finetune.json").read_text())
    tuned = summary["models"][1]["name"]
    assert finetune["reference"]["name"] == model["name"] and list(finetune["models"]) == [tuned]
    assert "random initialisation (seed 1), setup I from vgg16 random initialisation (seed 0)" in (
        finetune["models"][tuned]["start_differs"])
    assert f"- **{tuned}** started from vgg16 random initialisation (seed 1)" in report


def test_experiment_paper_composes_per_task() -> None:
    with initialize_config_dir(config_dir=str(REPO / "conf"), version_base="1.3"):
        saliency = compose("train", overrides=["experiment=paper"])
        scene = compose("train", overrides=["experiment=paper", "task=scene"])
    assert saliency.data._target_.endswith(".SaliconDataModule") and saliency.task.optimizer.lr == 5e-3
    assert scene.data._target_.endswith(".SaliconScenesDataModule") and scene.task.optimizer.lr == 1e-4
    for cfg in (saliency, scene):
        assert cfg.backbone.weights == "IMAGENET1K_V1" and cfg.trainer.max_epochs == 20
        assert cfg.data.batch_size == 5 and cfg.data.image_size == 224
    assert scene.data.min_images_per_class == 50 and scene.task.module.dropout == 0.5


def test_experiment_paper_task_scene_starts_on_a_sal_sce_layout(
    synthetic_root: Path, weights_file: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The real-data preset on files in the real layout: SALICON folders + a scene-label CSV."""
    run_dir = tmp_path / "paper_scene"
    code = invoke("train.py", ["experiment=paper", "task=scene", f"data.root={synthetic_root / 'salicon'}",
                               f"data.labels_file={synthetic_root / 'scenes.csv'}", "data.min_images_per_class=2",
                               f"backbone.weights={weights_file}", *TINY_TRAIN, f"hydra.run.dir={run_dir}"],
                  monkeypatch)
    assert code == 0
    summary = json.loads((run_dir / "summary.json").read_text())
    assert summary["task"] == "scene" and summary["data_split"]["train_images"] > 0
    assert summary["data"]["labels_file"] == str(synthetic_root / "scenes.csv")


def test_scene_task_on_data_without_labels_is_one_line(
    synthetic_root: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture
) -> None:
    code = invoke("train.py", ["task=scene", "data=synthetic", *synthetic_overrides(synthetic_root), *TINY_TRAIN,
                               f"hydra.run.dir={tmp_path / 'run'}"], monkeypatch)
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and len(err) == 1
    assert "task=scene needs scene labels, but data=SaliconDataModule has none" in err[0]
    assert not (tmp_path / "run").exists()


def test_table8_and_popout_comparisons_carry_the_conditions_line(tmp_path: Path) -> None:
    from saliency_probe.report.report_md import build_report
    from saliency_probe.report.tables import write_csv

    run = tmp_path / "run"
    (run / "tables").mkdir(parents=True)
    random_sr = {**PAPER_MODEL, "name": "sr1", "task": "scene",
                 "conditions": {**PAPER_MODEL["conditions"], "origin": "random", "weights": None}}
    paper_sp = {**PAPER_MODEL, "name": "sp1",
                "conditions": {**PAPER_MODEL["conditions"],
                               "trained_on": {"data_set": "SALICON", "image_size": 224}}}
    summary = {"models": [random_sr, paper_sp], "probe_conditions": {**PAPER_PROBE, "input_size": 112}}
    (run / "probe_summary.json").write_text(json.dumps(summary))
    write_csv(run / "tables/scene_attention.csv",
              [{"model": "sr1", "prediction": "correct", "nss": 0.3, "ci_low": 0.2, "ci_high": 0.4, "n_images": 3}],
              ["model", "prediction", "nss", "ci_low", "ci_high", "n_images"])
    write_csv(run / "tables/popout_models.csv", [{"model": "sp1", "nmm": 0.5}], ["model", "nmm"])
    random_sp = {**random_sr, "name": "sp0", "task": "saliency"}
    summary["models"].append(random_sp)
    (run / "probe_summary.json").write_text(json.dumps(summary))
    write_csv(run / "tables/output_saliency.csv", [{"model": "sp0", "category": "text", "os": 0.2}],
              ["model", "category", "os"])
    (run / "tables/statistics.json").write_text(json.dumps({"model": "sp0", "spearman": {"r": 0.5}}))
    report = build_report(run)
    section6 = report.split("## Output saliency")[1].split("\n## ")[0]
    assert "sp0 ↔ Section 6: conditions differ from the paper's: random initialisation" in section6
    assert "probed at 112 px (paper: 224)" in section6
    scene = report.split("## Scene network attention")[1].split("## ")[0]
    assert "sr1 ↔ Table 8 sr: conditions differ from the paper's: random initialisation" in scene
    assert "every row: the probe's conditions differ from the paper's: probed at 112 px (paper: 224)." in scene
    popout = report.split("## Pop-out search arrays")[1].split("## ")[0]
    assert "sp1 ↔" not in popout  # fine-tuned as the paper's sweep: no line of its own
    assert "probed at 112 px (paper: 224)" in popout and "OSIE-SR" not in popout  # no regions in Table 4


def test_a_pretrained_paper_condition_probe_has_no_conditions_line(tmp_path: Path) -> None:
    """The report of a run made under the paper's conditions (ImageNet weights, OSIE-SR, 224 px, fp32; sp and sr
    fine-tuned 20 epochs on the same SALICON-SAL-SCE images) shows the paper rows without any conditions line."""
    from saliency_probe.report.report_md import build_report
    from saliency_probe.report.tables import write_csv

    run = tmp_path / "run"
    (run / "tables").mkdir(parents=True)
    pt = {"name": "pt", "kind": "weights", "conditions": {"origin": "imagenet", "weights": "IMAGENET1K_V1",
                                                          "trained_on": None}}
    sr = {**PAPER_MODEL, "name": "sr", "task": "scene"}
    (run / "probe_summary.json").write_text(json.dumps({"models": [pt, PAPER_MODEL, sr],
                                                        "probe_conditions": PAPER_PROBE}))
    rows = [{"model": m, "layer": "conv5_3", "category": "text", "top10_mean_nss": 1.0, "n_above_threshold": 1,
             "n_regions": 3} for m in ("pt", "sp", "sr")]
    write_csv(run / "tables/inner_representation.csv", rows, list(rows[0]))
    report = build_report(run)
    assert "| sp ↔ Table 7 sp | 1.00 (1.44) |" in report and "| pt ↔ Table 7 pt | 1.00 (1.10) |" in report
    assert "conditions differ" not in report and "different images" not in report
    assert "- pt: ImageNet weights, probed on OSIE-SR" in report


def test_last_checkpoint_is_the_end_of_training_when_the_metric_stops_improving(
    synthetic_root: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Lightning's save_last re-saves last.ckpt only in epochs that save a best one; with lr 0 val/nss never
    improves after epoch 1, and last.ckpt must still be the model after the final epoch (sweep_checkpoint=last)."""
    run_dir = tmp_path / "run"
    overrides = [*synthetic_overrides(synthetic_root), *TINY_TRAIN, "trainer.max_epochs=3", "task.optimizer.lr=0",
                 "finetune.layers=0", f"hydra.run.dir={run_dir}"]
    assert invoke("train.py", overrides, monkeypatch) == 0
    summary = json.loads((run_dir / "summary.json").read_text())
    last, best = load_checkpoint(summary["last_checkpoint"]), load_checkpoint(summary["best_checkpoint"])
    assert Path(summary["last_checkpoint"]).name == "last.ckpt" and last.epoch == 2  # 0-based: the third epoch
    assert best.epoch == 0 and Path(summary["best_checkpoint"]).name == "best-epoch00.ckpt"
    assert sorted(p.name for p in (run_dir / "checkpoints").iterdir()) == ["best-epoch00.ckpt", "last.ckpt"]
