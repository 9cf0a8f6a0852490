"""report.md: the paper's values file against the paper's text, the model -> paper-row rule, and a report built
from a run folder written in the real formats."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from saliency_probe.report.conditions import experiment_row
from saliency_probe.report.files import REPORT
from saliency_probe.report.report_md import build_report, main, paper_values
from saliency_probe.report.tables import write_csv

PAPER = Path(__file__).resolve().parents[2] / "shared/paper/he2019_understanding_deep_saliency.txt"


def paper_block(text: str, start: str, end: str) -> dict[str, dict[str, list[float]]]:
    """Rows of a table block of the paper's text: {statistic: {row key: 12 values}}."""
    block = text[text.index(start):]
    block = block[: block.index(end)]
    out: dict[str, dict[str, list[float]]] = {"top10_mean_nss": {}, "n_above_threshold": {}}
    mode = None
    for line in block.splitlines():
        if "mean NSS" in line:
            mode = "top10_mean_nss"
            continue
        if "# activation maps" in line:
            mode = "n_above_threshold"
            continue
        cells = line.split("\t")
        if mode and len(cells) == 13:
            out[mode][cells[0].replace("-", "_")] = [float(cell) for cell in cells[1:]]
    return out


@pytest.mark.skipif(not PAPER.is_file(), reason=f"paper text not found at {PAPER}")
def test_paper_values_equal_the_paper_text() -> None:
    text = PAPER.read_text(encoding="utf-8")
    values = paper_values()
    categories = values["categories"]
    blocks = {"table2": ("Table 2:", "• **Setup II"), "table3": ("Table 3:", "D). From Table 2"),
              "table7": ("Table 7:", "respect to saliency categories")}
    for table, (start, end) in blocks.items():
        parsed = paper_block(text, start, end)
        for statistic, rows in parsed.items():
            assert rows, (table, statistic)
            ours = {key: [row[c] for c in categories] for key, row in values[table][statistic].items()}
            assert ours == rows, (table, statistic)
    assert "\t".join(f"{v:g}" for v in values["table4"]["nmm"].values()) in text
    assert "\t".join(f"{v:g}" for v in values["table5"]["top10_nmm"].values()) in text
    assert "\t".join(f"{v:g}" for v in values["table6"]["top10_nmm"].values()) in text
    assert "0.12\t0.11" in text and values["table8"]["nss"] == {"correct": 0.12, "wrong": 0.11}
    assert "r_s = 0.96" in text and values["section6"]["spearman_r"] == 0.96
    assert "p = 9e^{-9}" in text and values["section6"]["anova_p_od"] == 9e-9
    assert "CVPR" in values["citation"] and "He" in values["citation"]


def model(name: str, kind: str, task: str | None = None, layers: str | None = None, control: bool = False) -> dict:
    """A model entry as probe_summary.json writes it (the source's info flattened into it)."""
    return {"name": name, "kind": kind, "control": control, "task": task, "finetune_layers": layers}


def test_models_are_matched_to_the_paper_rows() -> None:
    paper_row = experiment_row
    assert paper_row(model("IMAGENET1K_V1", "weights")) == ("table3", "0")
    assert paper_row(model("pt", "weights")) == ("table7", "pt")  # probe=table7's name
    assert paper_row(model("s0", "checkpoint", "scene", "0")) == ("table3", "0")  # trunk untouched
    assert paper_row(model("sp3", "checkpoint", "saliency", "3")) == ("table3", "3")
    assert paper_row(model("spall", "checkpoint", "saliency", "all")) == ("table3", "all")
    assert paper_row(model("sr1", "checkpoint", "scene", "1")) == ("table7", "sr")
    assert paper_row(model("sr2", "checkpoint", "scene", "2")) is None  # the paper tuned 1 layer only
    assert paper_row(model("random-init", "random", control=True)) is None
    nested = {"name": "sp2", "kind": "checkpoint", "info": {"task": "saliency", "finetune_layers": "2"}}
    assert paper_row(nested) == ("table3", "2")  # a TrunkSource-like entry keeps them in info


def fake_run(run: Path) -> None:
    """A probe run folder with the files the analyses write (their real columns)."""
    models = [model("sp1", "checkpoint", "saliency", "1"), model("sr1", "checkpoint", "scene", "1"),
              model("random-init", "random", control=True)]
    (run / "tables").mkdir(parents=True)
    (run / "probe_summary.json").write_text(json.dumps({"models": models, "seconds": 12.5}))
    columns = ["model", "layer", "category", "top10_mean_nss", "n_above_threshold", "n_regions",
               "shuffled_top10_mean_nss", "shuffled_n_above_threshold", "control"]
    inner = [{"model": m, "layer": "conv5_3", "category": c, "top10_mean_nss": v, "n_above_threshold": n,
              "n_regions": 4, "shuffled_top10_mean_nss": 0.1, "shuffled_n_above_threshold": 0, "control": False}
             for m, c, v, n in [("sp1", "person head", 1.234, 7), ("sp1", "text", 0.5, 1),
                                ("sr1", "person head", 0.25, 0), ("sr1", "text", 0.75, 2)]]
    write_csv(run / "tables/inner_representation.csv", inner, columns)
    output = [{"model": "sp1", "category": "person head", "inner_nss": 1.234, "os": 0.9, "od": 0.4, "n_regions": 4},
              {"model": "sp1", "category": "text", "inner_nss": 0.5, "os": 0.2, "od": 0.1, "n_regions": 4}]
    write_csv(run / "tables/output_saliency.csv", output, list(output[0]))
    statistics = {"model": "sp1", "spearman": {"r": 0.5, "p": 0.2, "n_categories": 2},
                  "anova": {"F": 3.0, "p": 0.0123}, "tukey": [{"a": "person head", "b": "text", "p": 0.01}]}
    (run / "tables/statistics.json").write_text(json.dumps(statistics))
    scene = [{"model": "sr1", "prediction": "correct", "nss": 0.3456, "ci_low": 0.2, "ci_high": 0.5, "n_images": 9},
             {"model": "sr1", "prediction": "wrong", "nss": 0.1, "ci_low": 0.0, "ci_high": 0.2, "n_images": 3}]
    write_csv(run / "tables/scene_attention.csv", scene, list(scene[0]))
    (run / "figures").mkdir()
    for name in ("output_fig7_sp1.png", "mystery.png"):
        Image.fromarray(np.zeros((4, 4, 3), dtype=np.uint8)).save(run / "figures" / name)
    (run / "tables/extra.csv").write_text("a\n1\n")


def test_report_gathers_every_file_with_the_paper_beside_ours(tmp_path: Path) -> None:
    run = tmp_path / "run"
    fake_run(run)
    report = build_report(run)
    assert report.startswith("# Probe report") and "12.5 s" in report
    assert "| sp1 ↔ Table 3 1 | 1.23 (2.61) | 0.50 (1.17) |" in report  # Table 3 row 1: head 2.61, text 1.17
    assert "| sr1 ↔ Table 7 sr | 0.25 (0.47) | 0.75 (0.83) |" in report  # Table 7 sr
    assert "| sp1 ↔ Table 3 1 | 7 (30) | 1 (0) |" in report  # units above T
    assert "| Spearman r_s(inner, OS_c) | 0.50 | 0.96 |" in report
    assert "| one-way ANOVA p (scipy f_oneway), per-region OD across categories | 0.012 | – |" in report
    assert "| sr1 | correct | 0.346 | [0.200, 0.500] | 9 | 0.12 |" in report
    assert "| sr1 | wrong | 0.100 | [0.000, 0.200] | 3 | 0.11 |" in report
    assert "| sp1 | checkpoint | saliency | 1 |  | Table 3 1 |" in report
    assert "| random-init | random |" in report and "random-init" not in report.split("## Inner")[1].split("###")[1]
    for relative in ("tables/inner_representation.csv", "tables/output_saliency.csv", "tables/statistics.json",
                     "tables/scene_attention.csv", "tables/extra.csv"):
        assert f"[`{relative}`]({relative}):" in report
    assert "Spearman r_s(inner NSS, OS_c)" in report  # statistics.json's line
    assert "`tables/extra.csv`](tables/extra.csv): written by an analysis of this run (no description" in report
    assert "![output_fig7_sp1](figures/output_fig7_sp1.png)" in report and "![mystery](figures/mystery.png)" in report
    assert "Fig. 7: inner vs output saliency" in report
    assert paper_values()["citation"] in report
    path = main([str(run)])
    assert path == run / REPORT and path.read_text() == report
    with pytest.raises(SystemExit, match="not a folder"):
        main([str(tmp_path / "missing")])


def test_report_of_an_empty_run_lists_nothing_but_stays_valid(tmp_path: Path) -> None:
    (tmp_path / "run").mkdir()
    report = build_report(tmp_path / "run", models=[])
    assert "## All files of this run" in report and "## Inner" not in report and "## Output" not in report


def test_fig4_bars_are_each_model_minus_the_setup_one_model_by_hand() -> None:
    """Fig. 4's heights are against the model before fine-tuning wherever it stands in the model list (here
    last, as a sweep folder lists the layers=0 job after others), not against the first model."""
    from saliency_probe.report.inner import improvement_figure, improvements_against

    values = {("L1", "face"): 2.0, ("L1", "text"): 1.5, ("L3", "face"): 2.5, ("L0", "face"): 1.25,
              ("L0", "text"): 1.0, ("L0", "car"): 0.5, ("L1", "face", "conv4_3"): 9.0}
    rows = [{"model": k[0], "category": k[1], "layer": k[2] if len(k) > 2 else "conv5_3", "top10_mean_nss": v}
            for k, v in values.items()]
    present, bars = improvements_against(rows, ["L1", "L3", "L0"], "L0", "conv5_3", ["face", "text", "car"], 10)
    assert present == ["face", "text", "car"]
    assert bars["L1"][:2] == [0.75, 0.5] and np.isnan(bars["L1"][2])
    assert bars["L3"][0] == 1.25 and np.isnan(bars["L3"][1]) and set(bars) == {"L1", "L3"}
    figure = improvement_figure(rows, ["L1", "L3", "L0"], "conv5_3", ["face", "text", "car"], 10, "L0")
    heights = [patch.get_height() for patch in figure.axes[0].patches]
    assert heights == [0.75, 0.5, 0.0, 1.25, 0.0, 0.0]  # NaN drawn as an empty bar
    assert "against L0" in figure.axes[0].get_title()
    assert improvement_figure(rows, ["L0"], "conv5_3", ["face"], 10, "L0") is None
