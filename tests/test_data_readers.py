"""Readers of the real on-disk formats, on fixture files written in those formats (scipy.io.savemat, PIL, json)."""

from __future__ import annotations

import json
import warnings
from pathlib import Path

import numpy as np
import pytest
import scipy.io
import torch
from PIL import Image

from saliency_probe.data.fixations import fixation_pixels, rasterise_fixations
from saliency_probe.data.images import load_rgb, to_model_input
from saliency_probe.data.mit1003 import Mit1003Dataset
from saliency_probe.data.osie import OsieDataset, read_osie_fixations
from saliency_probe.data.osie_sr import (
    CATEGORIES,
    DEFAULT_CLASS_IDS,
    OsieSrDataset,
    collate_regions,
    read_class_names,
    read_regions,
    write_label_png,
)
from saliency_probe.data.salicon import SaliconDataset, read_salicon_json, read_salicon_mat
from saliency_probe.data.scenes import class_weights, read_scene_labels
from saliency_probe.matlab import matlab_round

# --------------------------------------------------------------------------- fixture writers (real formats)


def write_jpeg(path: Path, height: int, width: int, seed: int = 0) -> np.ndarray:
    path.parent.mkdir(parents=True, exist_ok=True)
    pixels = np.random.default_rng(seed).integers(0, 256, (height, width, 3), dtype=np.uint8)
    Image.fromarray(pixels).save(path, quality=95)
    return pixels


def write_salicon_mat(path: Path, height: int, width: int, observers: list[np.ndarray]) -> None:
    """SALICON 2017: ``gaze`` is an (observers x 1) struct array; fixations are M x 2 [x, y], 1-based."""
    path.parent.mkdir(parents=True, exist_ok=True)
    gaze = np.zeros((len(observers), 1), dtype=[("location", "O"), ("timestamp", "O"), ("fixations", "O")])
    for index, points in enumerate(observers):
        points = np.asarray(points, dtype=np.float64).reshape(-1, 2)
        gaze[index, 0] = (np.repeat(points, 3, axis=0), np.arange(3 * len(points), dtype=np.float64)[:, None], points)
    scipy.io.savemat(path, {"image": path.stem, "resolution": np.array([[height, width]], dtype=np.float64), "gaze": gaze})


def write_osie_mat(path: Path, table: dict[str, list[np.ndarray]], nesting: str = "cell") -> None:
    """OSIE: ``fixations`` is a cell array of 1x1 structs (the original file) or a struct array (also valid)."""
    path.parent.mkdir(parents=True, exist_ok=True)

    def subject(points: np.ndarray) -> dict:
        points = np.asarray(points, dtype=np.float64).reshape(-1, 2)
        return {"fix_x": points[None, :, 0], "fix_y": points[None, :, 1],
                "fix_duration": np.full((1, len(points)), 200, dtype=np.uint16)}

    if nesting == "cell":
        entries = np.empty((len(table), 1), dtype=object)
        for row, (name, observers) in enumerate(table.items()):
            subjects = np.empty((len(observers), 1), dtype=object)
            for index, points in enumerate(observers):
                subjects[index, 0] = subject(points)
            entries[row, 0] = {"img": name, "subjects": subjects}
    else:
        entries = np.zeros((len(table), 1), dtype=[("img", "O"), ("subjects", "O")])
        for row, (name, observers) in enumerate(table.items()):
            subjects = np.zeros((len(observers), 1), dtype=[("fix_x", "O"), ("fix_y", "O"), ("fix_duration", "O")])
            for index, points in enumerate(observers):
                values = subject(points)
                subjects[index, 0] = (values["fix_x"], values["fix_y"], values["fix_duration"])
            entries[row, 0] = (name, subjects)
    scipy.io.savemat(path, {"fixations": entries})


# --------------------------------------------------------------------------- coordinates


def test_matlab_round_goes_half_away_from_zero() -> None:
    values = np.array([0.5, 1.5, 2.5, -0.5, -2.5, 2.4999, 3.5001, 0.0])
    assert matlab_round(values).tolist() == [1, 2, 3, -1, -3, 2, 4, 0]
    assert np.round(values).tolist() != matlab_round(values).tolist()  # numpy rounds half to even


def test_rasterise_hand_computed_pixel_and_duplicates() -> None:
    # 1-based (x=3.5, y=2.0) -> MATLAB round (4, 2) -> 0-based column 3, row 1.
    fixation_map, n_clipped = rasterise_fixations(np.array([[3.5, 2.0], [3.6, 1.9], [1.0, 1.0]]), 4, 5)
    expected = np.zeros((4, 5), dtype=bool)
    expected[1, 3] = expected[0, 0] = True
    assert n_clipped == 0 and fixation_map.dtype == bool
    np.testing.assert_array_equal(fixation_map, expected)  # the two fixations on (1, 3) count once


def test_out_of_image_points_are_clipped_and_counted() -> None:
    points = np.array([[0.4, 2.0], [6.0, 9.0], [5.4, 4.4], [5.5, 1.0], [-3.0, -3.0]])
    pixels, n_clipped = fixation_pixels(points, 4, 5)
    # 0.4 -> 0 (outside, 1-based); (6, 9) -> both outside; (5.4, 4.4) -> (5, 4) inside; 5.5 -> 6 outside.
    assert n_clipped == 4
    assert pixels.tolist() == [[0, 1], [4, 3], [4, 3], [4, 0], [0, 0]]
    zero_based, n_zero = fixation_pixels(np.array([[0.0, 0.0], [4.0, 3.0], [4.5, 0.0]]), 4, 5, one_based=False)
    assert zero_based.tolist() == [[0, 0], [4, 3], [4, 0]] and n_zero == 1


def test_non_finite_points_are_rejected() -> None:
    with pytest.raises(ValueError, match="non-finite"):
        rasterise_fixations(np.array([[np.nan, 1.0]]), 4, 5)


# --------------------------------------------------------------------------- images


def test_load_rgb_and_model_input(tmp_path: Path) -> None:
    grey = tmp_path / "grey.png"
    Image.fromarray(np.full((10, 20), 7, dtype=np.uint8)).save(grey)
    image = load_rgb(grey)
    assert image.shape == (10, 20, 3) and image.dtype == np.uint8 and int(image[0, 0, 0]) == 7
    tensor = to_model_input(np.full((10, 20, 3), 255, dtype=np.uint8), 16)
    assert tensor.shape == (3, 16, 16)
    expected = (1.0 - torch.tensor([0.485, 0.456, 0.406])) / torch.tensor([0.229, 0.224, 0.225])
    torch.testing.assert_close(tensor[:, 5, 5], expected)


def test_corrupt_and_missing_images_name_the_path(tmp_path: Path) -> None:
    broken = tmp_path / "broken.jpg"
    broken.write_bytes(b"\xff\xd8\xff\xe0 this is not a jpeg")
    with pytest.raises(ValueError, match="broken.jpg"):
        load_rgb(broken)
    with pytest.raises(FileNotFoundError, match="absent.jpg"):
        load_rgb(tmp_path / "absent.jpg")


# --------------------------------------------------------------------------- SALICON


def make_salicon(root: Path) -> dict[str, list[np.ndarray]]:
    """Three 2017-format images (12x16): one normal, one with clipped points, one without fixations."""
    observers = {
        "COCO_train2014_000000000001": [np.array([[1.0, 1.0], [16.0, 12.0]]), np.array([[8.5, 4.5]])],
        "COCO_train2014_000000000002": [np.array([[0.2, 5.0], [17.0, 13.0], [2.0, 2.0]]), np.zeros((0, 2))],
        "COCO_train2014_000000000003": [np.zeros((0, 2))],
    }
    for number, (stem, points) in enumerate(observers.items()):
        write_jpeg(root / "images" / "train" / f"{stem}.jpg", 12, 16, seed=number)
        write_salicon_mat(root / "fixations" / "train" / f"{stem}.mat", 12, 16, points)
    return observers


def test_read_salicon_mat_layout(tmp_path: Path) -> None:
    make_salicon(tmp_path)
    record = read_salicon_mat(tmp_path / "fixations" / "train" / "COCO_train2014_000000000001.mat")
    assert (record.height, record.width, record.edition) == (12, 16, "2017")
    np.testing.assert_array_equal(record.points_xy, [[1.0, 1.0], [16.0, 12.0], [8.5, 4.5]])
    assert record.observer.tolist() == [0, 0, 1] and record.n_observers == 2


def test_salicon_dataset_2017(tmp_path: Path) -> None:
    make_salicon(tmp_path)
    data = SaliconDataset(tmp_path, "train", image_size=32)
    assert data.stems == ["COCO_train2014_000000000001", "COCO_train2014_000000000002"]
    assert data.n_without_fixations == 1 and data.without_fixations == ["COCO_train2014_000000000003"]
    assert data.n_clipped == 2 and data.edition == "2017"
    item = data[0]
    assert item["image"].shape == (3, 32, 32) and item["fixations"].shape == (12, 16)
    assert item["fixations"].dtype == torch.float32 and item["stem"] == "COCO_train2014_000000000001"
    expected = np.zeros((12, 16), dtype=np.float32)
    expected[0, 0] = expected[11, 15] = 1.0
    expected[4, 8] = 1.0  # (8.5, 4.5) -> MATLAB round (9, 5) -> 0-based (x 8, y 4)
    np.testing.assert_array_equal(item["fixations"].numpy(), expected)
    clipped = data[1]["fixations"].numpy()
    assert clipped[4, 0] == 1 and clipped[11, 15] == 1 and clipped[1, 1] == 1 and clipped.sum() == 3


def test_salicon_2015_json_matches_2017(tmp_path: Path) -> None:
    observers = make_salicon(tmp_path)
    images, annotations = [], []
    for number, (stem, points) in enumerate(observers.items(), start=1):
        images.append({"id": number, "file_name": f"{stem}.jpg", "height": 12, "width": 16})
        for worker, array in enumerate(points):
            annotations.append({"image_id": number, "worker_id": worker, "fixations": array[:, ::-1].tolist()})
    (tmp_path / "fixations_train2014.json").write_text(json.dumps({"images": images, "annotations": annotations}))
    table = read_salicon_json(tmp_path / "fixations_train2014.json")
    np.testing.assert_array_equal(table["COCO_train2014_000000000001"].points_xy, [[1, 1], [16, 12], [8.5, 4.5]])
    old = SaliconDataset(tmp_path, "train", image_size=32, edition="2015")
    new = SaliconDataset(tmp_path, "train", image_size=32)
    assert old.edition == "2015" and old.stems == new.stems and old.n_clipped == new.n_clipped == 2
    for index in range(len(new)):
        np.testing.assert_array_equal(old.fixation_map(index), new.fixation_map(index))


def test_salicon_bad_input(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match=r"images/train.*expected"):
        SaliconDataset(tmp_path, "train")
    make_salicon(tmp_path)
    with pytest.raises(FileNotFoundError, match=r"fixations/val"):
        (tmp_path / "images" / "val").mkdir()
        write_jpeg(tmp_path / "images" / "val" / "COCO_val2014_000000000001.jpg", 12, 16)
        SaliconDataset(tmp_path, "val")
    bad = tmp_path / "fixations" / "train" / "COCO_train2014_000000000002.mat"
    scipy.io.savemat(bad, {"image": "x", "resolution": np.array([[12, 16]])})
    with pytest.raises(ValueError, match=r"COCO_train2014_000000000002\.mat.*gaze.*expected"):
        SaliconDataset(tmp_path, "train")
    bad.write_bytes(b"not a mat file at all")
    with pytest.raises(ValueError, match=r"COCO_train2014_000000000002\.mat"):
        read_salicon_mat(bad)
    gaze = np.zeros((1, 1), dtype=[("location", "O"), ("timestamp", "O"), ("fixations", "O")])
    gaze[0, 0] = (np.ones((3, 2)), np.ones((3, 1)), np.ones((2, 3)))  # fixations with three columns
    scipy.io.savemat(bad, {"image": "x", "resolution": np.array([[12, 16]]), "gaze": gaze})
    with pytest.raises(ValueError, match=r"COCO_train2014_000000000002\.mat.*M x 2"):
        read_salicon_mat(bad)
    with pytest.raises(ValueError, match="edition"):
        SaliconDataset(tmp_path, "train", edition="2016")


def test_salicon_corrupt_image_raises_or_is_skipped(tmp_path: Path) -> None:
    make_salicon(tmp_path)
    corrupt = tmp_path / "images" / "train" / "COCO_train2014_000000000001.jpg"
    corrupt.write_bytes(corrupt.read_bytes()[:200])  # truncated JPEG
    data = SaliconDataset(tmp_path, "train", image_size=32)
    with pytest.raises(ValueError, match="COCO_train2014_000000000001.jpg"):
        data[0]
    skipping = SaliconDataset(tmp_path, "train", image_size=32, on_error="skip")
    assert skipping.stems == ["COCO_train2014_000000000002"] and skipping.skipped == [str(corrupt)]
    with pytest.raises(ValueError, match="on_error"):
        SaliconDataset(tmp_path, "train", on_error="ignore")


# --------------------------------------------------------------------------- OSIE


def make_osie(root: Path, nesting: str = "cell") -> dict[str, list[np.ndarray]]:
    table = {
        "1001.jpg": [np.array([[1.0, 1.0], [20.5, 15.5]]), np.array([[10.0, 7.0]]), np.array([[25.0, -1.0]])],
        "1002.jpg": [np.array([[5.0, 5.0], [5.2, 5.3]]), np.zeros((0, 2))],
    }
    for number, name in enumerate(table):
        write_jpeg(root / "data" / "stimuli" / name, 15, 20, seed=number)
    write_osie_mat(root / "data" / "eye" / "fixations.mat", table, nesting)
    return table


@pytest.mark.parametrize("nesting", ["cell", "struct"])
def test_read_osie_fixations_both_nestings(tmp_path: Path, nesting: str) -> None:
    table = make_osie(tmp_path, nesting)
    read = read_osie_fixations(tmp_path / "data" / "eye" / "fixations.mat")
    assert list(read) == ["1001.jpg", "1002.jpg"]
    for name, observers in table.items():
        assert len(read[name]) == len(observers)
        for got, want in zip(read[name], observers, strict=True):
            np.testing.assert_array_equal(got, want.reshape(-1, 2))  # incl. one-fixation and empty subjects


def test_osie_dataset(tmp_path: Path) -> None:
    make_osie(tmp_path)
    data = OsieDataset(tmp_path, image_size=32)
    assert data.stems == ["1001", "1002"] and data.image_sizes == [(15, 20), (15, 20)]
    assert data.n_clipped == 2  # (20.5 -> 21 > 20 wide) and (y = -1)
    observers = data.observers(0)
    assert [o.tolist() for o in observers] == [[[0, 0], [19, 14]], [[9, 6]], [[19, 0]]]
    item = data[1]
    assert item["index"] == 1 and item["stem"] == "1002" and item["fixations"].sum() == 1  # two points, one pixel
    assert OsieDataset(tmp_path, image_size=32, stems=["1002"]).stems == ["1002"]
    assert len(OsieDataset(tmp_path, image_size=32, limit=1)) == 1


def test_osie_bad_input(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match=r"data/stimuli.*expected"):
        OsieDataset(tmp_path)
    make_osie(tmp_path)
    (tmp_path / "data" / "stimuli" / "1002.jpg").unlink()
    with pytest.raises(FileNotFoundError, match="1002.jpg"):
        OsieDataset(tmp_path)
    assert OsieDataset(tmp_path, on_error="skip").skipped == [str(tmp_path / "data" / "stimuli" / "1002.jpg")]
    with pytest.raises(ValueError, match="9999"):
        OsieDataset(tmp_path, stems=["9999"])
    scipy.io.savemat(tmp_path / "data" / "eye" / "fixations.mat", {"fix": np.zeros(3)})
    with pytest.raises(ValueError, match=r"fixations\.mat.*no variable `fixations`"):
        OsieDataset(tmp_path)


# --------------------------------------------------------------------------- OSIE-SR


def make_regions(root: Path, stem: str = "1001", shape: tuple[int, int] = (15, 20)) -> None:
    classes, objects = np.zeros(shape, dtype=np.uint8), np.zeros(shape, dtype=np.uint8)
    classes[2:6, 3:8], objects[2:6, 3:8] = 1, 1  # a person head
    classes[8:12, 10:18], objects[8:12, 10:18] = 37, 2  # text
    classes[0:3, 15:20], objects[0:3, 15:20] = 37, 3  # more text: a second region of the category
    for folder, array in (("SegmentationClass", classes), ("SegmentationObject", objects)):
        (root / folder).mkdir(parents=True, exist_ok=True)
        write_label_png(root / folder / f"{stem}.png", array)


def test_read_regions_png_and_npy(tmp_path: Path) -> None:
    make_regions(tmp_path)
    masks, categories = read_regions(tmp_path, "1001", expected_hw=(15, 20))
    assert categories == ["person head", "text", "text"] and masks.shape == (3, 15, 20) and masks.dtype == bool
    assert masks[0].sum() == 20 and masks[0, 2, 3] and not masks[0, 6, 3]
    assert masks[1].sum() == 32 and masks[2].sum() == 15
    for folder in ("SegmentationClass", "SegmentationObject"):
        array = np.array(Image.open(tmp_path / folder / "1001.png"))
        np.save(tmp_path / folder / "1002.npy", array.astype(np.int32))
    npy_masks, npy_categories = read_regions(tmp_path, "1002")
    assert npy_categories == categories
    np.testing.assert_array_equal(npy_masks, masks)


def test_read_regions_bad_input(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match=r"SegmentationClass/1001\.png"):
        read_regions(tmp_path, "1001")
    make_regions(tmp_path, shape=(15, 20))
    with pytest.raises(ValueError, match=r"SegmentationClass/1001\.png.*15x20.*30x40"):
        read_regions(tmp_path, "1001", expected_hw=(30, 40))
    with pytest.raises(ValueError, match=r"unknown class id 37.*SegmentationClass/1001\.png|SegmentationClass/1001\.png.*unknown class id 37"):
        read_regions(tmp_path, "1001", class_ids={1: "person head"})
    classes = np.array(Image.open(tmp_path / "SegmentationClass" / "1001.png"))
    classes[2, 3] = 27  # instance 1 now covers two class ids
    write_label_png(tmp_path / "SegmentationClass" / "1001.png", classes)
    with pytest.raises(ValueError, match=r"instance 1.*\[1, 27\]"):
        read_regions(tmp_path, "1001")
    Image.fromarray(np.zeros((15, 20, 3), dtype=np.uint8)).save(tmp_path / "SegmentationClass" / "1001.png")
    with pytest.raises(ValueError, match="RGB"):
        read_regions(tmp_path, "1001")


def test_class_names_file(tmp_path: Path) -> None:
    names = ["_background_", "person head", "__unused__", "text"]
    (tmp_path / "class_names.txt").write_text("\n".join(names) + "\n")
    assert read_class_names(tmp_path / "class_names.txt") == {1: "person head", 3: "text"}
    assert list(DEFAULT_CLASS_IDS.values()) == CATEGORIES


def test_osie_sr_dataset_and_collate(tmp_path: Path) -> None:
    osie, regions = tmp_path / "osie", tmp_path / "osie_sr"
    make_osie(osie)
    make_regions(regions, "1001")
    with pytest.raises(FileNotFoundError, match=r"SegmentationClass/1002\.png"):
        OsieSrDataset(osie, regions, image_size=32)
    skipping = OsieSrDataset(osie, regions, image_size=32, on_error="skip")
    assert skipping.stems == ["1001"] and skipping.skipped == [str(osie / "data" / "stimuli" / "1002.jpg")]
    make_regions(regions, "1002")
    data = OsieSrDataset(osie, regions, image_size=32)
    item = data[0]
    assert item["region_masks"].shape == (3, 15, 20) and item["region_masks"].dtype == torch.bool
    assert item["region_categories"] == ["person head", "text", "text"]
    batch = collate_regions([data[0], data[1]])
    assert batch["image"].shape == (2, 3, 32, 32) and batch["fixations"].shape == (2, 15, 20)
    assert batch["stem"] == ["1001", "1002"] and batch["index"].tolist() == [0, 1]
    assert isinstance(batch["region_masks"], list) and len(batch["region_categories"]) == 2
    make_regions(regions, "1002", shape=(10, 10))
    with pytest.raises(ValueError, match=r"1002\.png.*10x10.*15x20"):
        data[1]


# --------------------------------------------------------------------------- scenes


def test_scene_labels(tmp_path: Path) -> None:
    path = tmp_path / "scenes.csv"
    rows = [f"img{i},{'street' if i < 6 else 'park' if i < 9 else 'beach'}" for i in range(10)]
    path.write_text("image,scene\n" + "\n".join(rows + ["ghost1,street", "ghost2,park"]) + "\n")
    with pytest.warns(UserWarning, match="2 labelled image"):
        labels = read_scene_labels(path, known_stems=[f"img{i}" for i in range(10)], min_images_per_class=2)
    assert labels.unknown_images == ["ghost1", "ghost2"]
    assert labels.classes == ["park", "street"] and labels.dropped_classes == {"beach": 1}
    assert len(labels.labels) == 9 and labels.indices()["img0"] == 1
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert read_scene_labels(path, min_images_per_class=0).unknown_images == []
    weights = class_weights(["a", "a", "a", "b"], ["a", "b"])
    assert weights == pytest.approx({"a": 4 / (2 * 3), "b": 4 / (2 * 1)})
    with pytest.raises(ValueError, match="'c'"):
        class_weights(["a"], ["a", "c"])


def test_scene_labels_bad_input(tmp_path: Path) -> None:
    path = tmp_path / "scenes.csv"
    path.write_text("file,label\na,b\n")
    with pytest.raises(ValueError, match=r"scenes\.csv.*header"):
        read_scene_labels(path)
    path.write_text("image,scene\na,street\na,park\n")
    with pytest.raises(ValueError, match=r"scenes\.csv:3.*both"):
        read_scene_labels(path)
    path.write_text("image,scene\na,\n")
    with pytest.raises(ValueError, match=r"scenes\.csv:2"):
        read_scene_labels(path)


# --------------------------------------------------------------------------- MIT1003


def test_mit1003(tmp_path: Path) -> None:
    write_jpeg(tmp_path / "ALLSTIMULI" / "i05june05_static_street_boston_p1010764.jpeg", 30, 40)
    points = np.zeros((30, 40), dtype=np.uint8)
    planted = [(3, 4), (10, 20), (10, 21), (29, 39)]
    for row, col in planted:
        points[row, col] = 255
    maps = tmp_path / "ALLFIXATIONMAPS"
    maps.mkdir()
    Image.fromarray(points).save(maps / "i05june05_static_street_boston_p1010764_fixPts.jpg", quality=75)
    Image.fromarray(np.full((30, 40), 128, dtype=np.uint8)).save(maps / "i05june05_static_street_boston_p1010764_fixMap.jpg")
    data = Mit1003Dataset(tmp_path, image_size=32)
    item = data[0]
    assert item["fixations"].shape == (30, 40) and data.n_clipped == 0
    assert sorted(map(tuple, np.argwhere(item["fixations"].numpy() > 0).tolist())) == planted
    assert data.density_map(0).shape == (30, 40)
    Image.fromarray(points[:20]).save(maps / "i05june05_static_street_boston_p1010764_fixPts.jpg")
    with pytest.raises(ValueError, match=r"_fixPts\.jpg.*20x40.*30x40"):
        Mit1003Dataset(tmp_path)


# --------------------------------------------------------------------------- the real OSIE data


@pytest.mark.osie
def test_real_osie(osie_root: Path) -> None:
    mat_path = osie_root / "data" / "eye" / "fixations.mat"
    data = OsieDataset(osie_root, image_size=32)
    assert len(data) == 700 and data.stems[0] == "1001" and data.stems[-1] == "1700"
    assert set(data.image_sizes) == {(600, 800)} and data.n_without_fixations == 0
    # Independent reference: the raw (unsqueezed) structure, counted by hand; all values are positive, so
    # MATLAB rounding is floor(v + 0.5).
    raw = scipy.io.loadmat(mat_path)["fixations"]
    outside = total = 0
    for row in range(raw.shape[0]):
        subjects = raw[row, 0]["subjects"][0, 0]
        assert subjects.shape[0] == 15
        for number in range(subjects.shape[0]):
            x = subjects[number, 0]["fix_x"][0, 0].ravel()
            y = subjects[number, 0]["fix_y"][0, 0].ravel()
            column, line = np.floor(x + 0.5), np.floor(y + 0.5)
            outside += int(((column < 1) | (column > 800) | (line < 1) | (line > 600)).sum())
            total += x.size
    assert data.n_clipped == outside
    assert all(len(data.observers(index)) == 15 for index in range(len(data)))
    pixels = np.concatenate([points for index in range(len(data)) for points in data.observers(index)])
    assert len(pixels) == total
    assert pixels.min() >= 0 and pixels[:, 0].max() <= 799 and pixels[:, 1].max() <= 599
    # 1001.jpg, subject 1, first fixation (395.5, 265.7) -> MATLAB round (396, 266) -> 0-based (395, 265).
    assert data.observers(0)[0][0].tolist() == [395, 265]
    assert data.fixation_map(0)[265, 395] == 1.0
    print(f"real OSIE: {total} fixations, {data.n_clipped} clipped after rounding")
