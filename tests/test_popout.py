"""Pop-out generator and reader: exact masks, margin, balance, determinism, contrast ladders, colour
confounds, the external-set reader and bad input. References are independent: a hand-written sRGB -> CIE Lab
conversion, image moments, scipy connected components and PIL resizing."""

from __future__ import annotations

import csv
import math
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from scipy import ndimage
from torch.utils.data import DataLoader

from saliency_probe.data.popout_generator import (
    DIMENSIONS,
    METADATA_COLUMNS,
    generate_popout,
    main,
    target_cells,
)
from saliency_probe.data.popout_reader import PopoutDataset, collate_popout, ensure_popout

MEAN = np.array([0.485, 0.456, 0.406])
STD = np.array([0.229, 0.224, 0.225])
BACKGROUND_L = 35.0


def srgb_to_lab(rgb: np.ndarray) -> np.ndarray:
    """Reference sRGB (0..255) -> CIE L*a*b* (D65), written from the standard formulas."""
    c = np.asarray(rgb, dtype=np.float64) / 255.0
    linear = np.where(c <= 0.04045, c / 12.92, ((c + 0.055) / 1.055) ** 2.4)
    matrix = np.array(
        [
            [0.4124564, 0.3575761, 0.1804375],
            [0.2126729, 0.7151522, 0.0721750],
            [0.0193339, 0.1191920, 0.9503041],
        ]
    )
    xyz = linear @ matrix.T / np.array([0.95047, 1.0, 1.08883])
    f = np.where(xyz > (6 / 29) ** 3, np.cbrt(xyz), xyz / (3 * (6 / 29) ** 2) + 4 / 29)
    return np.stack([116 * f[..., 1] - 16, 500 * (f[..., 0] - f[..., 1]), 200 * (f[..., 1] - f[..., 2])], -1)


def read_png(path: Path) -> np.ndarray:
    with Image.open(path) as image:
        return np.asarray(image)


def read_metadata(root: Path) -> list[dict[str, str]]:
    with (root / "metadata.csv").open(newline="") as handle:
        return list(csv.DictReader(handle))


def core_colour(rgb: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """Median colour of the pixels fully inside ``mask`` (eroded twice, away from anti-aliased edges)."""
    core = ndimage.binary_erosion(mask, iterations=2)
    assert core.sum() >= 4
    return np.median(rgb[core].astype(np.float64), axis=0)


def orientation_deg(mask: np.ndarray) -> float:
    """Orientation (deg counter-clockwise on screen, mod 180) of a mask's principal axis from its moments."""
    y, x = np.nonzero(mask)
    x, y = x - x.mean(), -(y - y.mean())
    cov = np.cov(np.stack([x, y]))
    return math.degrees(0.5 * math.atan2(2 * cov[0, 1], cov[0, 0] - cov[1, 1])) % 180.0


def corner_fraction(mask: np.ndarray) -> float:
    """Fraction of a mask's area outside the disc of equal area centred on its centroid (0 for a disc)."""
    y, x = np.nonzero(mask)
    return float((np.hypot(y - y.mean(), x - x.mean()) > np.sqrt(mask.sum() / np.pi)).mean())


def minor_axis_std(mask: np.ndarray) -> float:
    """Standard deviation of a mask's pixels along its minor principal axis."""
    return float(np.sqrt(np.linalg.eigvalsh(np.cov(np.stack(np.nonzero(mask)).astype(float)))[0]))


@pytest.fixture(scope="module")
def small_set(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Default 7x7 grid, all dimensions, at 128 px: one full cycle of target positions (49 arrays)."""
    root = tmp_path_factory.mktemp("popout") / "small"
    return generate_popout(root, num=49, seed=3, image_size=128)


@pytest.fixture(scope="module")
def ladder_set(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Large items (3x3 grid at 256 px), 6 measurable dimensions x 5 levels x both polarities."""
    root = tmp_path_factory.mktemp("popout") / "ladder"
    dims = ["colour", "orientation", "size", "shape", "curvature", "luminance"]
    return generate_popout(root, num=60, seed=5, image_size=256, grid=3, dimensions=dims, levels=5)


def test_target_cells_balanced_for_any_prefix() -> None:
    for grid in (1, 3, 7):
        for count in (grid * grid, grid * grid * 3, grid * grid * 2 + 5, 7):
            counts = np.bincount(target_cells(count, grid, seed=11), minlength=grid * grid)
            assert counts.max() - counts.min() <= 1, (grid, count, counts)
            assert counts.sum() == count
    assert not np.array_equal(target_cells(49, 7, seed=0), target_cells(49, 7, seed=1))


def test_one_target_equal_to_its_item_instance(small_set: Path) -> None:
    rows = read_metadata(small_set)
    assert len(rows) == 49
    for row in rows:
        target = read_png(small_set / "masks" / "target" / f"{row['id']}.png")
        items = read_png(small_set / "masks" / "items" / f"{row['id']}.png")
        assert set(np.unique(target)) == {0, 255}
        assert set(np.unique(items)) == set(range(50))  # 49 items + background, none vanished
        cell = int(row["target_cell"])
        assert np.array_equal(target == 255, items == cell + 1)
        assert np.unique(items[target == 255]).tolist() == [cell + 1]
        assert ndimage.label(target == 255)[1] == 1 if row["dimension"] != "density" else True
        # The target lies in its cell: centroid row/col from the 7x7 tiling of the image minus its margin.
        cy, cx = ndimage.center_of_mass(target == 255)
        border, width = round(0.06 * 128), (128 - 2 * round(0.06 * 128)) / 7
        assert (int((cy - border) // width), int((cx - border) // width)) == divmod(cell, 7)


def test_no_item_touches_the_border(small_set: Path) -> None:
    border = round(0.06 * 128)
    background = read_png(small_set / "images" / "00000.png")[0, 0]
    assert abs(srgb_to_lab(background)[0] - BACKGROUND_L) < 0.5
    for path in sorted((small_set / "masks" / "items").glob("*.png")):
        items = read_png(path)
        rgb = read_png(small_set / "images" / path.name)
        ring = np.ones(items.shape, dtype=bool)
        ring[border:-border, border:-border] = False
        assert not items[ring].any(), path
        assert (rgb[ring] == background).all(), path


def test_positions_balanced_and_metadata_exact(small_set: Path) -> None:
    with (small_set / "metadata.csv").open() as handle:
        header = handle.readline().strip().split(",")
    assert tuple(header[: len(METADATA_COLUMNS)]) == METADATA_COLUMNS
    rows = read_metadata(small_set)
    cells = np.bincount([int(r["target_cell"]) for r in rows], minlength=49)
    assert cells.tolist() == [1] * 49  # 49 arrays: every cell exactly once
    assert {r["dimension"] for r in rows} == set(DIMENSIONS)
    assert {r["grid"] for r in rows} == {"7"} and {r["seed"] for r in rows} == {"3"}
    assert {int(r["level"]) for r in rows} == set(range(5))


def test_mask_is_the_half_coverage_threshold_of_the_antialiased_image(small_set: Path) -> None:
    # Luminance and size arrays: grey items, so the rendered grey value gives each pixel's coverage.
    for row in read_metadata(small_set):
        if row["dimension"] not in ("size", "luminance"):
            continue
        rgb = read_png(small_set / "images" / f"{row['id']}.png")[..., 1].astype(np.float64)
        items = read_png(small_set / "masks" / "items" / f"{row['id']}.png")
        background = rgb[0, 0]
        for item in range(1, 50):
            inside = items == item
            peak = (
                np.median(rgb[ndimage.binary_erosion(inside)])
                if item != int(row["target_cell"]) + 1
                else None
            )
            if peak is None or peak - background < 20:
                continue
            box = ndimage.binary_dilation(inside, iterations=2)
            coverage = (rgb[box] - background) / (peak - background)
            assert (coverage[inside[box]] >= 0.5 - 0.02).all()
            assert (coverage[~inside[box]] <= 0.5 + 0.02).all()


def test_determinism(tmp_path: Path) -> None:
    kwargs = {"num": 8, "image_size": 96, "grid": 4, "seed": 7}
    first = generate_popout(tmp_path / "a", **kwargs)
    second = generate_popout(tmp_path / "b", **kwargs)
    other = generate_popout(tmp_path / "c", **{**kwargs, "seed": 8})
    files = sorted(p.relative_to(first) for p in first.rglob("*") if p.is_file())
    assert len(files) == 8 * 3 + 2
    for name in files:
        assert (first / name).read_bytes() == (second / name).read_bytes(), name
    assert any(
        (first / "images" / n).read_bytes() != (other / "images" / n).read_bytes()
        for n in [f"{i:05d}.png" for i in range(8)]
    )


def _measured_differences(root: Path) -> dict[str, list[tuple[int, int, float, float]]]:
    """Per dimension: (polarity, level, measured contrast, metadata difference) from the rendered files."""
    out: dict[str, list[tuple[int, int, float, float]]] = {}
    for row in read_metadata(root):
        rgb = read_png(root / "images" / f"{row['id']}.png")
        items = read_png(root / "masks" / "items" / f"{row['id']}.png")
        target_id = int(row["target_cell"]) + 1
        other = 1 if target_id != 1 else 2
        tmask, dmask = items == target_id, items == other
        dim = row["dimension"]
        if dim == "colour":
            t_lab, d_lab = srgb_to_lab(core_colour(rgb, tmask)), srgb_to_lab(core_colour(rgb, dmask))
            diff = abs(
                (math.degrees(math.atan2(t_lab[2], t_lab[1]) - math.atan2(d_lab[2], d_lab[1])) + 180) % 360
                - 180
            )
        elif dim == "orientation":
            diff = abs((orientation_deg(tmask) - orientation_deg(dmask) + 90) % 180 - 90)
        elif dim == "size":
            diff = abs(math.log2(tmask.sum() / dmask.sum())) / 2  # area ratio -> |log2 size ratio|
        elif dim == "shape":
            corners = [corner_fraction(m) for m in (tmask, dmask)]
            diff = abs(corners[0] - corners[1])  # a square's corners stick out of its equal-area disc
        elif dim == "curvature":
            bulge = [minor_axis_std(m) for m in (tmask, dmask)]
            diff = abs(bulge[0] - bulge[1])  # bending an equally long stroke widens it across its chord
        else:
            diff = abs(srgb_to_lab(core_colour(rgb, tmask))[0] - srgb_to_lab(core_colour(rgb, dmask))[0])
        out.setdefault(dim, []).append(
            (int(row["polarity"]), int(row["level"]), diff, float(row["difference"]))
        )
    return out


def test_levels_order_measured_contrast(ladder_set: Path) -> None:
    measured = _measured_differences(ladder_set)
    assert set(measured) == {"colour", "orientation", "size", "shape", "curvature", "luminance"}
    tolerance = {"colour": 2.0, "orientation": 4.0, "size": 0.05, "luminance": 0.7}
    for dim, values in measured.items():
        for polarity in (1, -1):
            series = sorted((level, diff, meta) for pol, level, diff, meta in values if pol == polarity)
            assert [level for level, _, _ in series] == list(range(5)), dim
            diffs = [diff for _, diff, _ in series]
            assert diffs[0] < 0.3 * diffs[1] + 1e-6 or diffs[0] < 1.5, (dim, diffs)  # level 0: no difference
            assert all(b > a for a, b in zip(diffs, diffs[1:], strict=False)), (dim, polarity, diffs)
            metas = [meta for _, _, meta in series]
            assert metas[0] == 0 and all(b > a for a, b in zip(metas, metas[1:], strict=False))
            if dim in tolerance:
                assert np.allclose(diffs, metas, atol=tolerance[dim]), (dim, diffs, metas)
    # The orientation ladder is asin(t): 0, 14.48, 30, 48.59, 90 degrees for 5 levels.
    metas = sorted({(lv, m) for _, lv, _, m in measured["orientation"]})
    assert np.allclose([m for _, m in metas], [0, 14.4775, 30, 48.5904, 90], atol=1e-3)


def test_colour_target_and_distractors_equally_far_from_background(ladder_set: Path) -> None:
    background = srgb_to_lab(np.array([read_png(ladder_set / "images" / "00000.png")[0, 0]], float))[0]
    assert abs(background[0] - BACKGROUND_L) < 0.5 and np.hypot(background[1], background[2]) < 0.5
    checked = 0
    for row in read_metadata(ladder_set):
        if row["dimension"] != "colour":
            continue
        rgb = read_png(ladder_set / "images" / f"{row['id']}.png")
        items = read_png(ladder_set / "masks" / "items" / f"{row['id']}.png")
        for item in range(1, 10):
            lab = srgb_to_lab(core_colour(rgb, items == item))
            assert abs(np.linalg.norm(lab - background) - math.hypot(35.0, 35.0)) < 0.8
            assert abs(lab[0] - 70.0) < 0.6 and abs(np.hypot(lab[1], lab[2]) - 35.0) < 0.8
            checked += 1
    assert checked == 10 * 9


def test_target_absent_arrays(tmp_path: Path) -> None:
    root = generate_popout(tmp_path / "absent", num=18, seed=2, image_size=64, grid=3, absent_fraction=0.5)
    rows = read_metadata(root)
    absent = [r for r in rows if r["target_present"] == "0"]
    assert len(absent) == 9
    for row in absent:
        assert row["target_cell"] == "-1" and row["target_value"] == ""
        assert not read_png(root / "masks" / "target" / f"{row['id']}.png").any()
        assert read_png(root / "masks" / "items" / f"{row['id']}.png").max() == 9
    present = [int(r["target_cell"]) for r in rows if r["target_present"] == "1"]
    assert sorted(present) == list(range(9))


def test_sixteen_bit_item_masks_above_255_items(tmp_path: Path) -> None:
    root = generate_popout(tmp_path / "big", num=1, image_size=192, grid=16, dimensions=["luminance"])
    with Image.open(root / "masks" / "items" / "00000.png") as image:
        assert image.mode.startswith("I")
        items = np.asarray(image)
    assert set(np.unique(items).tolist()) == set(range(257))
    sample = PopoutDataset(root, image_size=32)[0]
    assert np.array_equal(sample["item_masks"], items) and sample["target_mask"].sum() > 0


def test_reader_on_our_layout_and_collate(small_set: Path) -> None:
    dataset = PopoutDataset(small_set, image_size=48)
    rows = read_metadata(small_set)
    assert len(dataset) == len(rows)
    sample = dataset[5]
    rgb = read_png(small_set / "images" / f"{rows[5]['id']}.png")
    assert sample["id"] == rows[5]["id"] and sample["dimension"] == rows[5]["dimension"]
    assert sample["level"] == int(rows[5]["level"])
    assert np.array_equal(sample["rgb"], rgb) and sample["rgb"].dtype == np.uint8
    assert sample["target_mask"].dtype == bool
    assert np.array_equal(sample["target_mask"], sample["item_masks"] == int(rows[5]["target_cell"]) + 1)
    reference = np.asarray(Image.fromarray(rgb).resize((48, 48), Image.BILINEAR), dtype=np.float64) / 255.0
    reference = torch.from_numpy(((reference - MEAN) / STD).transpose(2, 0, 1)).float()
    assert sample["image"].shape == (3, 48, 48)
    assert torch.allclose(sample["image"], reference, atol=0.05)
    batch = next(iter(DataLoader(dataset, batch_size=3, collate_fn=collate_popout)))
    assert batch["image"].shape == (3, 3, 48, 48)
    assert batch["id"] == [r["id"] for r in rows[:3]] and len(batch["target_mask"]) == 3


def _external_set(root: Path, mask_dir: str, mask_suffix: str) -> np.ndarray:
    rng = np.random.default_rng(0)
    (root / "images").mkdir(parents=True)
    (root / mask_dir).mkdir(parents=True)
    Image.fromarray(rng.integers(0, 256, (20, 30, 3), dtype=np.uint8)).save(root / "images" / "a.jpg")
    mask = np.tile(np.arange(0, 256, 256 / 30).astype(np.uint8), (20, 1))
    mask[:, 10], mask[:, 11] = 127, 128
    Image.fromarray(mask).convert("RGB" if mask_suffix == ".png" else "L").save(
        root / mask_dir / f"a{mask_suffix}"
    )
    return mask


@pytest.mark.parametrize(("mask_dir", "suffix"), [("masks", ".png"), ("masks/target", ".bmp")])
def test_external_set_thresholds_at_128(tmp_path: Path, mask_dir: str, suffix: str) -> None:
    mask = _external_set(tmp_path, mask_dir, suffix)
    sample = PopoutDataset(tmp_path, image_size=16)[0]
    assert sample["id"] == "a" and sample["dimension"] is None and sample["level"] is None
    assert sample["item_masks"] is None and sample["rgb"].shape == (20, 30, 3)
    assert np.array_equal(sample["target_mask"], mask >= 128)
    assert not sample["target_mask"][:, 10].any() and sample["target_mask"][:, 11].all()
    assert np.array_equal(PopoutDataset(tmp_path, threshold=200)[0]["target_mask"], mask >= 200)


def test_palette_masks_are_label_maps(tmp_path: Path) -> None:
    _external_set(tmp_path, "masks", ".png")
    labels = np.zeros((20, 30), np.uint8)
    labels[5:9, 3:7] = 1
    palette = Image.frombytes("P", (30, 20), labels.tobytes())
    palette.putpalette([0, 0, 0, 128, 0, 0] + [0] * 762)  # VOC: index 1 is dark red (grey value 38)
    palette.save(tmp_path / "masks" / "a.png")
    assert np.array_equal(PopoutDataset(tmp_path)[0]["target_mask"], labels == 1)


def test_reader_errors_name_the_file(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match="images/"):
        PopoutDataset(tmp_path)
    _external_set(tmp_path, "masks", ".png")
    Image.fromarray(np.zeros((20, 30, 3), np.uint8)).save(tmp_path / "images" / "b.png")
    with pytest.raises(FileNotFoundError, match=r"b\.png"):
        PopoutDataset(tmp_path)
    Image.fromarray(np.zeros((10, 10), np.uint8)).save(tmp_path / "masks" / "b.png")
    with pytest.raises(ValueError, match=r"masks/b\.png.*images/b\.png"):
        PopoutDataset(tmp_path)[1]
    ours = generate_popout(tmp_path / "ours", num=2, image_size=64, grid=3)
    (ours / "masks" / "target" / "00001.png").unlink()
    with pytest.raises(FileNotFoundError, match=r"masks/target/00001\.png"):
        PopoutDataset(ours)
    (ours / "metadata.csv").write_text("name,dimension\n00000,colour\n")
    with pytest.raises(ValueError, match="metadata.csv.*expected columns"):
        PopoutDataset(ours)


def test_generator_refuses_bad_input_and_foreign_or_different_sets(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="unknown pop-out dimension.*colour"):
        generate_popout(tmp_path / "x", num=2, dimensions=["texture"])
    with pytest.raises(ValueError, match="levels must be >= 2"):
        generate_popout(tmp_path / "x", num=2, levels=1)
    for size in (24, 40):  # cells under 4 px; then a 2x size target (level 4) that does not fit its cell
        with pytest.raises(ValueError, match="too small"):
            generate_popout(tmp_path / "x", num=1, image_size=size, grid=7)
    assert not (tmp_path / "x").exists()
    root = generate_popout(tmp_path / "set", num=3, image_size=64, grid=3, dimensions="color,size")
    stamp = (root / "images" / "00000.png").stat().st_mtime_ns
    assert generate_popout(root, num=3, image_size=64, grid=3, dimensions=["colour", "size"]) == root
    assert (root / "images" / "00000.png").stat().st_mtime_ns == stamp  # same parameters: left as is
    with pytest.raises(ValueError, match="seed: 0 -> 1"):
        generate_popout(root, num=3, seed=1, image_size=64, grid=3, dimensions=["colour", "size"])
    (tmp_path / "foreign").mkdir()
    (tmp_path / "foreign" / "notes.txt").write_text("mine")
    with pytest.raises(ValueError, match="not empty"):
        generate_popout(tmp_path / "foreign", num=1, image_size=64, grid=3)
    # An interrupted run (no metadata.csv yet) is finished, with the same bytes.
    before = (root / "masks" / "items" / "00002.png").read_bytes()
    (root / "metadata.csv").unlink()
    (root / "masks" / "items" / "00002.png").unlink()
    generate_popout(root, num=3, image_size=64, grid=3, dimensions=["colour", "size"])
    assert (root / "masks" / "items" / "00002.png").read_bytes() == before


def test_ensure_popout_and_cli(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    dataset = ensure_popout(tmp_path / "e", input_size=32, num=4, image_size=64, grid=3)
    assert len(dataset) == 4 and dataset[0]["image"].shape == (3, 32, 32)
    assert len(ensure_popout(tmp_path / "e")) == 4  # read back without arguments
    with pytest.raises(ValueError, match="num: 4 -> 5"):
        ensure_popout(tmp_path / "e", num=5)
    root = main(
        [
            "--out",
            str(tmp_path / "cli"),
            "--num",
            "3",
            "--seed",
            "4",
            "--image-size",
            "64",
            "--grid",
            "3",
            "--dimensions",
            "orientation",
            "shape",
        ]
    )
    assert "3 arrays" in capsys.readouterr().out
    rows = read_metadata(root)
    assert [r["dimension"] for r in rows] == ["orientation", "shape", "orientation"]
    assert len(list((root / "images").glob("*.png"))) == 3
