"""The synthetic generator: determinism, the real formats (read back by the real readers), planted truth."""

from __future__ import annotations

import hashlib
import json
import re
from collections import defaultdict
from pathlib import Path

import numpy as np
import pytest
import scipy.io
from conftest import OSIE_ROOT, SMALL_SYNTHETIC
from PIL import Image
from scipy.stats import spearmanr

from saliency_probe.data.osie import OsieDataset
from saliency_probe.data.osie_sr import CATEGORIES, OsieSrDataset, read_class_names
from saliency_probe.data.salicon import SaliconDataset, read_salicon_mat
from saliency_probe.data.scenes import read_scene_labels
from saliency_probe.data.synthetic import CATEGORY_WEIGHTS, SCENES, ensure_synthetic, generate, main

TINY = {"num_train": 3, "num_val": 2, "num_probe": 3, "salicon_hw": (48, 64), "osie_hw": (60, 80), "num_observers": 3}


def digests(root: Path) -> dict[str, str]:
    return {
        str(path.relative_to(root)): hashlib.sha256(path.read_bytes()).hexdigest()
        for path in sorted(root.rglob("*"))
        if path.is_file()
    }


def test_same_seed_gives_identical_bytes_and_other_seed_differs(tmp_path: Path) -> None:
    first = digests(generate(tmp_path / "a", seed=3, **TINY))
    second = digests(generate(tmp_path / "b", seed=3, **TINY))
    other = digests(generate(tmp_path / "c", seed=4, **TINY))
    assert first == second and len(first) > 20
    shared_images = [name for name in first if name.endswith(".jpg") and name in other]  # the OSIE stimuli
    assert len(shared_images) == TINY["num_probe"] and all(first[n] != other[n] for n in shared_images)
    assert sorted(first) != sorted(other)  # SALICON stems (COCO ids) are drawn from the seed too
    assert first["osie/data/eye/fixations.mat"] != other["osie/data/eye/fixations.mat"]


def test_ensure_synthetic_reuses_and_refuses(tmp_path: Path) -> None:
    root = tmp_path / "data"
    ensure_synthetic(root, seed=0, **TINY)
    stamp = (root / "manifest.json").stat().st_mtime_ns
    assert ensure_synthetic(root, seed=0, **TINY) == root
    assert (root / "manifest.json").stat().st_mtime_ns == stamp  # reused, not regenerated
    with pytest.raises(ValueError, match=r"data.*num_observers: folder has 3, requested 5.*seed: folder has 0"):
        ensure_synthetic(root, **{**TINY, "num_observers": 5, "seed": 1})
    occupied = tmp_path / "occupied"
    occupied.mkdir()
    (occupied / "notes.txt").write_text("mine")
    with pytest.raises(FileExistsError, match="occupied.*manifest"):
        ensure_synthetic(occupied, **TINY)
    assert (occupied / "notes.txt").read_text() == "mine"
    with pytest.raises(FileExistsError, match="data"):
        generate(root, **TINY)
    with pytest.raises(ValueError, match="num_probe"):
        ensure_synthetic(tmp_path / "zero", **{**TINY, "num_probe": 0})


def test_cli(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    root = main(["--out", str(tmp_path / "cli"), "--seed", "2", "--num-train", "2", "--num-val", "1",
                 "--num-probe", "2", "--num-observers", "2", "--salicon-hw", "40", "64", "--osie-hw", "48", "64"])
    manifest = json.loads((root / "manifest.json").read_text())
    assert manifest["params"] == {"seed": 2, "num_train": 2, "num_val": 1, "num_probe": 2, "salicon_hw": [40, 64],
                                  "osie_hw": [48, 64], "num_observers": 2}
    assert "ready" in capsys.readouterr().out
    assert len(list((root / "salicon" / "images" / "train").glob("COCO_train2014_*.jpg"))) == 2


def test_salicon_part_reads_back(synthetic_root: Path) -> None:
    truth = json.loads((synthetic_root / "truth.json").read_text())
    for split, count in (("train", SMALL_SYNTHETIC["num_train"]), ("val", SMALL_SYNTHETIC["num_val"])):
        data = SaliconDataset(synthetic_root / "salicon", split, image_size=32)
        assert len(data) == count and all(re.fullmatch(rf"COCO_{split}2014_\d{{12}}", stem) for stem in data.stems)
        assert data.image_sizes[0] == tuple(SMALL_SYNTHETIC["salicon_hw"]) and data.n_without_fixations == 0
        assert data.n_clipped == truth["n_outside"][f"salicon/{split}"] > 0  # exactly the planted outside points
        record = read_salicon_mat(synthetic_root / "salicon" / "fixations" / split / f"{data.stems[0]}.mat")
        assert record.n_observers == SMALL_SYNTHETIC["num_observers"]
        legacy = SaliconDataset(synthetic_root / "salicon", split, image_size=32, edition="2015")
        for index in range(len(data)):
            np.testing.assert_array_equal(legacy.fixation_map(index), data.fixation_map(index))
        density = np.asarray(Image.open(synthetic_root / "salicon" / "maps" / split / f"{data.stems[0]}.png"))
        assert density.shape == tuple(SMALL_SYNTHETIC["salicon_hw"]) and density.max() == 255


def test_salicon_mat_nesting(synthetic_root: Path) -> None:
    path = next((synthetic_root / "salicon" / "fixations" / "train").glob("*.mat"))
    raw = scipy.io.loadmat(path)
    assert raw["gaze"].shape == (SMALL_SYNTHETIC["num_observers"], 1)
    assert raw["gaze"].dtype.names == ("location", "timestamp", "fixations")
    assert raw["resolution"].tolist() == [list(SMALL_SYNTHETIC["salicon_hw"])] and raw["image"][0] == path.stem


def _nesting(value: object) -> object:
    """A description of a raw (unsqueezed) loadmat value's container structure, ignoring sizes and numbers."""
    if isinstance(value, np.ndarray) and value.dtype.names:
        return ("struct", {name: _nesting(value[name].flat[0]) for name in value.dtype.names})
    if isinstance(value, np.ndarray) and value.dtype == object:
        return ("cell", _nesting(value.flat[0]))
    return "char" if isinstance(value, np.ndarray) and value.dtype.kind == "U" else "numeric"


def test_osie_mat_has_the_original_nesting(synthetic_root: Path) -> None:
    ours = scipy.io.loadmat(synthetic_root / "osie" / "data" / "eye" / "fixations.mat")["fixations"]
    assert ours.shape == (SMALL_SYNTHETIC["num_probe"], 1)
    expected = ("cell", ("struct", {"img": "char", "subjects": ("cell", ("struct", {
        "fix_x": "numeric", "fix_y": "numeric", "fix_duration": "numeric"}))}))
    assert _nesting(ours) == expected
    real_file = OSIE_ROOT / "data" / "eye" / "fixations.mat"
    if real_file.is_file():
        assert _nesting(scipy.io.loadmat(real_file)["fixations"]) == expected
    first = ours[0, 0]["subjects"][0, 0][0, 0]
    assert first["fix_x"][0, 0].shape[0] == 1 and first["fix_duration"][0, 0].dtype == np.uint16


def test_osie_and_regions_read_back(synthetic_root: Path) -> None:
    truth = json.loads((synthetic_root / "truth.json").read_text())
    data = OsieSrDataset(synthetic_root / "osie", synthetic_root / "osie_sr", image_size=32)
    assert data.stems == [str(1001 + i) for i in range(SMALL_SYNTHETIC["num_probe"])]
    assert data.n_clipped == truth["n_outside"]["osie"] > 0
    assert all(len(data.observers(i)) == SMALL_SYNTHETIC["num_observers"] for i in range(len(data)))
    assert read_class_names(synthetic_root / "osie_sr" / "class_names.txt")[37] == "text"
    seen = set()
    for index, stem in enumerate(data.stems):
        masks, categories = data.regions(index)
        planted = truth["objects"][stem]
        assert categories == [entry["category"] for entry in planted]
        for mask, entry in zip(masks, planted, strict=True):
            x0, y0, x1, y1 = entry["bbox"]
            rows, cols = np.nonzero(mask)
            assert mask.any() and rows.min() >= y0 and rows.max() < y1 and cols.min() >= x0 and cols.max() < x1
        seen.update(categories)
    assert seen == set(CATEGORIES)  # every category appears once num_probe >= 6


def test_planted_category_weights_are_recoverable(tmp_path: Path) -> None:
    root = generate(tmp_path / "s", seed=0, num_train=1, num_val=1, num_probe=24, salicon_hw=(48, 64),
                    osie_hw=(120, 160), num_observers=8)
    data = OsieSrDataset(root / "osie", root / "osie_sr", image_size=32)
    hits: dict[str, list[int]] = defaultdict(list)
    for index in range(len(data)):
        masks, categories = data.regions(index)
        points = np.concatenate(data.observers(index))
        for mask, category in zip(masks, categories, strict=True):
            hits[category].append(int(mask[points[:, 1], points[:, 0]].sum()))
    names = sorted(hits)
    correlation = spearmanr([CATEGORY_WEIGHTS[n] for n in names], [np.mean(hits[n]) for n in names]).statistic
    assert len(names) == 12 and correlation > 0.8


def test_scene_csv(synthetic_root: Path) -> None:
    stems = [s for split in ("train", "val") for s in SaliconDataset(synthetic_root / "salicon", split).stems]
    labels = read_scene_labels(synthetic_root / "scenes.csv", known_stems=stems, min_images_per_class=1)
    assert sorted(labels.labels) == sorted(stems) and labels.unknown_images == []
    assert labels.classes == sorted(SCENES)
    counts = [list(labels.labels.values()).count(name) for name in labels.classes]
    assert max(counts) - min(counts) <= 2  # balanced per split
    truth = json.loads((synthetic_root / "truth.json").read_text())
    assert all(truth["scenes"][stem] == scene for stem, scene in labels.labels.items())


def test_osie_reader_is_the_plain_one(synthetic_root: Path) -> None:
    plain = OsieDataset(synthetic_root / "osie", image_size=32, limit=2)
    assert plain.stems == ["1001", "1002"] and plain[0]["fixations"].sum() > 0
