"""Categorised salient regions built from fixations (saliency_probe.data.regions; docs/regions.md).

References are independent of the builder: hand-built points and masks, the synthetic set's planted instance
masks and truth.json, COCO fixtures written here with pycocotools-compatible polygons and RLE, and fixation
counts taken from the raw files.
"""

from __future__ import annotations

import json
import logging
import os
import subprocess
import sys
from pathlib import Path

import cv2
import numpy as np
import pytest
import scipy.io
from conftest import SMALL_SYNTHETIC
from PIL import Image
from pycocotools import mask as mask_utils
from test_probe import run_in, synthetic_overrides

from saliency_probe.data.osie import read_osie_fixations
from saliency_probe.data.osie_sr import (
    CATEGORIES,
    OsieSrDataset,
    read_label_map,
    read_regions,
    resolve_class_ids,
)
from saliency_probe.data.regions import main as regions_main
from saliency_probe.data.regions_annotations import TABLES_DIR, load_table
from saliency_probe.data.regions_build import (
    REGIONS_JSON,
    SALIENT_REGION,
    BuildRequest,
    BuildSettings,
    build_regions,
    ensure_regions,
)
from saliency_probe.data.regions_cluster import cluster_blobs, cluster_fixations
from saliency_probe.data.regions_dataset import RegionSetDataModule, RegionSetDataset
from saliency_probe.data.regions_fixations import FixationSource
from saliency_probe.errors import ConfigError, InputFileError
from saliency_probe.report import report_md
from saliency_probe.report.tables import read_csv

REPO = Path(__file__).resolve().parents[1]
#: The small synthetic set's objects span 24-40 px of its 120x160 images: the bandwidth is of their scale.
SMALL_BANDWIDTH = 16.0


def iou(a: np.ndarray, b: np.ndarray) -> float:
    return float((a & b).sum() / max((a | b).sum(), 1))


def raw_pixels(points_xy: np.ndarray, height: int, width: int) -> np.ndarray:
    """1-based [x, y] to 0-based clipped pixels with MATLAB rounding (half away from zero), written out here."""
    rounded = np.sign(points_xy) * np.floor(np.abs(points_xy) + 0.5)
    return np.clip(rounded.astype(np.int64) - 1, 0, [width - 1, height - 1])


def synthetic_observers(root: Path) -> dict[str, list[np.ndarray]]:
    """Per image stem, each observer's 0-based pixels, read from the synthetic fixations.mat with scipy."""
    content = scipy.io.loadmat(root / "osie/data/eye/fixations.mat", squeeze_me=True, struct_as_record=False)
    height, width = SMALL_SYNTHETIC["osie_hw"]
    out = {}
    for entry in np.atleast_1d(content["fixations"]).ravel():
        observers = []
        for subject in np.atleast_1d(entry.subjects).ravel():
            points = np.stack([np.atleast_1d(subject.fix_x), np.atleast_1d(subject.fix_y)], axis=1).astype(float)
            observers.append(raw_pixels(points, height, width))
        out[Path(entry.img).stem] = observers
    return out


def planted(root: Path, stem: str) -> tuple[np.ndarray, dict[int, str]]:
    """The planted instance map and {instance: category} from truth.json."""
    truth = json.loads((root / "truth.json").read_text())
    objects = np.array(Image.open(root / "osie_sr/SegmentationObject" / f"{stem}.png")).astype(np.int64)
    return objects, {int(o["instance"]): o["category"] for o in truth["objects"][stem]}


def synthetic_request(root: Path, annotated: bool, **settings) -> BuildRequest:
    annotations = {"format": "voc", "path": str(root / "osie_sr"), "keypoints": None} if annotated else None
    settings = {"bandwidth": SMALL_BANDWIDTH, "min_observers": 2, **settings}
    return BuildRequest(FixationSource("osie", root / "osie"), annotations, "osie_sr", BuildSettings(**settings))


@pytest.fixture(scope="module")
def built_annotated(synthetic_root: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("regions") / "annotated"
    build_regions(synthetic_request(synthetic_root, True), out)
    return out


@pytest.fixture(scope="module")
def built_clusters(synthetic_root: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("regions") / "clusters"
    build_regions(synthetic_request(synthetic_root, False), out)
    return out


# ------------------------------------------------------------------------------------------------------------
# clusters and blobs on hand-built points
# ------------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("method", ["meanshift", "dbscan"])
def test_a_cluster_counts_when_enough_observers_fixated_it(method: str) -> None:
    rng = np.random.default_rng(0)
    group_a = np.array([30, 40]) + rng.integers(-3, 4, (8, 2))   # 4 observers, 2 fixations each
    group_b = np.array([120, 80]) + rng.integers(-3, 4, (5, 2))  # one observer, 5 fixations
    points = np.concatenate([group_a, group_b])
    observer = np.array([0, 0, 1, 1, 2, 2, 3, 3] + [4] * 5)
    clusters, dropped = cluster_fixations(points, observer, method, bandwidth=10, min_observers=2)
    assert len(clusters) == 1 and dropped == 1
    assert sorted(clusters[0].members.tolist()) == list(range(8))
    assert clusters[0].n_observers == 4
    np.testing.assert_allclose(clusters[0].centre, group_a.mean(axis=0))
    assert cluster_fixations(points, observer, method, bandwidth=10, min_observers=5)[0] == []


def test_blobs_are_the_dilated_hulls_and_do_not_overlap() -> None:
    points = np.array([[20, 20], [30, 20], [25, 30], [60, 25], [64, 25], [62, 29]])
    observer = np.array([0, 1, 2, 0, 1, 2])
    clusters, _ = cluster_fixations(points, observer, "meanshift", bandwidth=12, min_observers=3)
    assert len(clusters) == 2
    labels = cluster_blobs(clusters, points, 50, 90, dilation=4)
    rows, cols = np.mgrid[:50, :90]
    for number, cluster in enumerate(clusters, start=1):
        hull = np.zeros((50, 90), np.uint8)
        cv2.fillConvexPoly(hull, cv2.convexHull(points[cluster.members].astype(np.int32)), 1)
        near = np.zeros((50, 90), bool)
        for y, x in np.argwhere(hull):  # every pixel within 4 px of a hull pixel (the reference, by brute force)
            near |= (rows - y) ** 2 + (cols - x) ** 2 <= 16
        assert (labels == number)[points[cluster.members, 1], points[cluster.members, 0]].all()
        assert iou(labels == number, near) > 0.97
    assert set(np.unique(labels)) == {0, 1, 2}


# ------------------------------------------------------------------------------------------------------------
# the synthetic set: planted objects, categories and fixations
# ------------------------------------------------------------------------------------------------------------


def test_regions_from_planted_masks_match_the_planted_annotation(synthetic_root: Path, built_annotated: Path) -> None:
    observers = synthetic_observers(synthetic_root)
    class_ids = resolve_class_ids(built_annotated)
    ious, correct, recalled = [], [], []
    for stem, per_observer in observers.items():
        objects, categories = planted(synthetic_root, stem)
        masks, names = read_regions(built_annotated, stem, class_ids, objects.shape)
        for mask, name in zip(masks, names, strict=True):
            best = max(categories, key=lambda k: iou(mask, objects == k))
            ious.append(iou(mask, objects == best))
            correct.append(name == categories[best])
        for instance in categories:  # every object fixated by at least half of the observers has its region
            if sum(bool((objects[p[:, 1], p[:, 0]] == instance).any()) for p in per_observer) >= len(per_observer) / 2:
                recalled.append(any(iou(mask, objects == instance) >= 0.9 for mask in masks))
    assert len(ious) >= 20 and min(ious) >= 0.9
    assert np.mean(correct) >= 0.95
    assert len(recalled) >= 15 and all(recalled)


def coco_from_planted(root: Path, out: Path) -> Path:
    """The planted instances as a COCO instances JSON: odd instances as polygons (traced on the pixel edges,
    simplified by 0.5 px), even ones as compressed RLE; image ids are the OSIE stems."""
    height, width = SMALL_SYNTHETIC["osie_hw"]
    images, annotations = [], []
    names = {name: number for number, name in enumerate(CATEGORIES, start=1)}
    for stem in synthetic_observers(root):
        objects, categories = planted(root, stem)
        images.append({"id": int(stem), "file_name": f"{stem}.jpg", "height": height, "width": width})
        for instance, category in categories.items():
            mask = objects == instance
            if instance % 2:
                doubled = np.kron(mask, np.ones((2, 2))).astype(np.uint8)
                contours, _ = cv2.findContours(doubled, cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_NONE)
                segmentation = [((cv2.approxPolyDP(c, 1.0, True).reshape(-1, 2) + 0.5) / 2).ravel().tolist()
                                for c in contours if len(c) >= 3]
            else:
                rle = mask_utils.encode(np.asfortranarray(mask.astype(np.uint8)))
                segmentation = {"size": rle["size"], "counts": rle["counts"].decode("ascii")}
            annotations.append({"id": len(annotations) + 1, "image_id": int(stem), "category_id": names[category],
                                "segmentation": segmentation, "iscrowd": 0, "area": int(mask.sum()),
                                "bbox": [0, 0, 1, 1]})
    path = out / "instances.json"
    path.write_text(json.dumps({"images": images, "annotations": annotations,
                                "categories": [{"id": k, "name": n} for n, k in names.items()]}))
    return path


def test_planted_masks_as_coco_polygons_and_rle_give_the_planted_regions(synthetic_root: Path, tmp_path: Path) -> None:
    instances = coco_from_planted(synthetic_root, tmp_path)
    request = BuildRequest(FixationSource("osie", synthetic_root / "osie"),
                           {"format": "coco", "path": str(instances), "keypoints": None}, "osie_sr",
                           BuildSettings(bandwidth=SMALL_BANDWIDTH, min_observers=2))
    record = build_regions(request, tmp_path / "set")
    assert record["regions"] >= 20 and not record["unmapped"]
    class_ids = resolve_class_ids(tmp_path / "set")
    ious, correct = [], []
    for stem in record["stems"]:
        objects, categories = planted(synthetic_root, stem)
        for mask, name in zip(*read_regions(tmp_path / "set", stem, class_ids, objects.shape), strict=True):
            best = max(categories, key=lambda k: iou(mask, objects == k))
            ious.append(iou(mask, objects == best))
            correct.append(name == categories[best])
    assert min(ious) >= 0.9 and np.mean(correct) >= 0.95


def test_cluster_only_regions_hold_the_salient_objects_fixations(synthetic_root: Path, built_clusters: Path) -> None:
    class_ids = resolve_class_ids(built_clusters)
    assert set(class_ids.values()) == {SALIENT_REGION}
    held = []
    for stem, per_observer in synthetic_observers(synthetic_root).items():
        objects, categories = planted(synthetic_root, stem)
        regions = read_label_map(built_clusters / "SegmentationObject" / f"{stem}.png")
        points = np.concatenate(per_observer)
        for instance in categories:
            fixated = [p[objects[p[:, 1], p[:, 0]] == instance] for p in per_observer]
            if sum(len(f) > 0 for f in fixated) >= len(per_observer) / 2:  # a salient planted object
                inside = np.concatenate(fixated)
                held.append(float((regions[inside[:, 1], inside[:, 0]] > 0).mean()))
        # regions.csv counts every fixation inside each region (recounted here from the raw file)
        rows = [r for r in read_csv(built_clusters / "regions.csv") if r["image"] == stem]
        for row in rows:
            assert int(row["fixations"]) == int((regions[points[:, 1], points[:, 0]] == int(row["region"])).sum())
    assert len(held) >= 15 and min(held) >= 0.9


def test_probe_on_the_built_set_matches_the_planted_table(synthetic_root: Path, tmp_path: Path) -> None:
    common = [*synthetic_overrides(synthetic_root), "layers=[conv4_3,conv5_3]", "figures.enabled=false",
              "controls.random_trunk=false"]
    run_in(tmp_path / "planted", ["data=synthetic_probe", *common])
    built = tmp_path / "built_set"
    run_in(tmp_path / "built", ["data=synthetic_regions", *common, f"data.regions_root={built}",
                                f"data.build.bandwidth={SMALL_BANDWIDTH}", "data.build.min_observers=1"])
    key = "top10_mean_nss"
    reference = {(r["layer"], r["category"]): r for r in read_csv(tmp_path / "planted/tables/inner_representation.csv")}
    ours = {(r["layer"], r["category"]): r for r in read_csv(tmp_path / "built/tables/inner_representation.csv")}
    assert set(ours) == set(reference)
    compared = [k for k in reference if reference[k][key] not in ("", "nan")]
    assert len(compared) == 24
    assert max(abs(float(ours[k][key]) - float(reference[k][key])) for k in compared) <= 0.05
    summary = json.loads((tmp_path / "built/probe_summary.json").read_text())
    assert summary["data"]["data"]["built_regions"]["kind"] == "annotated"
    report = (tmp_path / "built/report.md").read_text()
    assert "built automatically" in report
    assert "built automatically" not in (tmp_path / "planted/report.md").read_text()


def test_the_osie_sr_reader_reads_a_built_set_unchanged(synthetic_root: Path, built_annotated: Path) -> None:
    theirs = OsieSrDataset(synthetic_root / "osie", built_annotated, image_size=32)
    ours = RegionSetDataset(FixationSource("osie", synthetic_root / "osie"), built_annotated, image_size=32)
    assert theirs.stems == ours.stems and theirs.categories == ours.categories
    for index in range(len(ours)):
        a, b = theirs[index], ours[index]
        assert (a["fixations"] == b["fixations"]).all() and (a["region_masks"] == b["region_masks"]).all()
        assert a["region_categories"] == b["region_categories"]
        assert [p.tolist() for p in theirs.observers(index)] == [p.tolist() for p in ours.observers(index)]


def test_a_built_set_is_reused_and_other_settings_are_refused(synthetic_root: Path, tmp_path: Path) -> None:
    out = tmp_path / "set"
    first = ensure_regions(synthetic_request(synthetic_root, False), out)
    stamp = (out / REGIONS_JSON).stat().st_mtime_ns
    assert ensure_regions(synthetic_request(synthetic_root, False), out)["stems"] == first["stems"]
    assert (out / REGIONS_JSON).stat().st_mtime_ns == stamp
    with pytest.raises(ConfigError, match=r"built from other inputs \(settings"):
        ensure_regions(synthetic_request(synthetic_root, False, bandwidth=20), out)
    (tmp_path / "other").mkdir()
    (tmp_path / "other" / "file.txt").write_text("x")
    with pytest.raises(FileExistsError, match="not a built region set"):
        ensure_regions(synthetic_request(synthetic_root, False), tmp_path / "other")


# ------------------------------------------------------------------------------------------------------------
# COCO instances + SALICON fixations
# ------------------------------------------------------------------------------------------------------------

HEIGHT, WIDTH = 120, 160
HEAD = ((40, 30), 12)                   # centre (x, y), radius
TORSO = (28, 42, 52, 100)               # x0, y0, x1, y1 (exclusive ends)
CAR, CUP, UNICORN = (100, 60, 150, 90), (105, 10, 120, 30), (70, 100, 90, 115)
PERSON_2, DOG = (60, 20, 100, 110), (110, 40, 150, 80)
KEYPOINTS = {"nose": (40, 32), "left_eye": (36, 27), "right_eye": (44, 27), "left_ear": (29, 30),
             "right_ear": (51, 30), "left_shoulder": (30, 46), "right_shoulder": (50, 46)}
COCO_NAMES = ["nose", "left_eye", "right_eye", "left_ear", "right_ear", "left_shoulder", "right_shoulder",
              "left_elbow", "right_elbow", "left_wrist", "right_wrist", "left_hip", "right_hip", "left_knee",
              "right_knee", "left_ankle", "right_ankle"]


def box_mask(box: tuple[int, int, int, int]) -> np.ndarray:
    mask = np.zeros((HEIGHT, WIDTH), bool)
    mask[box[1] : box[3], box[0] : box[2]] = True
    return mask


def head_mask() -> np.ndarray:
    rows, cols = np.mgrid[:HEIGHT, :WIDTH]
    return (cols + 0.5 - HEAD[0][0]) ** 2 + (rows + 0.5 - HEAD[0][1]) ** 2 <= HEAD[1] ** 2


def box_polygon(box: tuple[int, int, int, int]) -> list[float]:
    x0, y0, x1, y1 = box
    return [x0, y0, x1, y0, x1, y1, x0, y1]


def write_coco_fixture(root: Path, edition: str, image_ids: tuple[int, int] = (1, 2)) -> dict[str, Path]:
    """Two SALICON-format images with fixations, a COCO instances file and a person-keypoints file."""
    (root / "images/val").mkdir(parents=True)
    stems = [f"COCO_val2014_{image_id:012d}" for image_id in (1, 2)]
    for stem in stems:
        Image.fromarray(np.full((HEIGHT, WIDTH, 3), 128, np.uint8)).save(root / "images/val" / f"{stem}.jpg")
    rng = np.random.default_rng(0)
    targets = {stems[0]: [HEAD[0], HEAD[0], (40, 70), (40, 75), (125, 75), (125, 72), (112, 20), (80, 108)],
               stems[1]: [(80, 60), (80, 64), (130, 60), (130, 58)]}
    fixations = {stem: [np.array(t, float) + rng.integers(-2, 3, (len(t), 2)) + 1 for _ in range(6)]
                 for stem, t in targets.items()}  # 6 observers, 1-based [x, y]
    if edition == "2017":
        (root / "fixations/val").mkdir(parents=True)
        for stem, observers in fixations.items():
            gaze = np.zeros((len(observers), 1), dtype=[("location", "O"), ("timestamp", "O"), ("fixations", "O")])
            for number, points in enumerate(observers):
                gaze[number, 0] = (points, np.arange(len(points), dtype=float).reshape(-1, 1), points)
            scipy.io.savemat(root / "fixations/val" / f"{stem}.mat",
                             {"image": stem, "resolution": np.array([[HEIGHT, WIDTH]], float), "gaze": gaze})
    else:
        payload = {"images": [{"id": k + 1, "file_name": f"{s}.jpg", "height": HEIGHT, "width": WIDTH}
                              for k, s in enumerate(stems)],
                   "annotations": [{"image_id": k + 1, "worker_id": w, "fixations": p[:, ::-1].tolist()}
                                   for k, s in enumerate(stems) for w, p in enumerate(fixations[s])]}
        (root / "fixations_val2014.json").write_text(json.dumps(payload))
    circle = [v for a in np.linspace(0, 2 * np.pi, 48, endpoint=False)
              for v in (HEAD[0][0] + HEAD[1] * np.cos(a), HEAD[0][1] + HEAD[1] * np.sin(a))]
    car = mask_utils.encode(np.asfortranarray(box_mask(CAR).astype(np.uint8)))
    cup_counts, value, run = [], 0, 0  # uncompressed RLE: run lengths in column-major order, zeros first
    for pixel in box_mask(CUP).ravel(order="F"):
        if pixel == value:
            run += 1
        else:
            cup_counts, value, run = [*cup_counts, run], pixel, 1
    cup_counts.append(run)
    first, second = image_ids
    annotations = [
        {"id": 10, "image_id": first, "category_id": 1, "segmentation": [circle, box_polygon(TORSO)], "iscrowd": 0},
        {"id": 11, "image_id": first, "category_id": 3, "iscrowd": 0,
         "segmentation": {"size": car["size"], "counts": car["counts"].decode("ascii")}},
        {"id": 12, "image_id": first, "category_id": 47, "iscrowd": 1,
         "segmentation": {"size": [HEIGHT, WIDTH], "counts": cup_counts}},
        {"id": 13, "image_id": first, "category_id": 99, "segmentation": [box_polygon(UNICORN)], "iscrowd": 0},
        {"id": 20, "image_id": second, "category_id": 1, "segmentation": [box_polygon(PERSON_2)], "iscrowd": 0},
        {"id": 21, "image_id": second, "category_id": 18, "segmentation": [box_polygon(DOG)], "iscrowd": 0},
    ]
    for annotation in annotations:
        annotation.update(area=1.0, bbox=[0, 0, 1, 1])
    images = [{"id": k, "file_name": f"COCO_val2014_{k:012d}.jpg", "height": HEIGHT, "width": WIDTH}
              for k in image_ids]
    categories = [{"id": 1, "name": "person"}, {"id": 3, "name": "car"}, {"id": 47, "name": "cup"},
                  {"id": 18, "name": "dog"}, {"id": 99, "name": "unicorn"}]
    (root / "instances.json").write_text(json.dumps({"images": images, "annotations": annotations,
                                                      "categories": categories}))
    flat = []
    for name in COCO_NAMES:
        flat += [*KEYPOINTS[name], 2] if name in KEYPOINTS else [0, 0, 0]
    people = {"images": images, "categories": [{"id": 1, "name": "person", "keypoints": COCO_NAMES}],
              "annotations": [{"id": 10, "image_id": first, "category_id": 1, "keypoints": flat,
                               "num_keypoints": len(KEYPOINTS)}]}
    (root / "person_keypoints.json").write_text(json.dumps(people))
    return {"root": root, "instances": root / "instances.json", "keypoints": root / "person_keypoints.json"}


def coco_args(paths: dict[str, Path], edition: str, out: Path, *extra: str) -> list[str]:
    return ["build", "--fixations", f"salicon:{paths['root']}", "--edition", edition, "--annotations",
            f"coco:{paths['instances']}", "--keypoints", str(paths["keypoints"]), "--bandwidth", "8",
            "--min-observers", "3", "--out", str(out), *extra]


@pytest.mark.parametrize("edition", ["2017", "2015"])
def test_coco_instances_and_salicon_fixations_give_the_expected_regions(
    edition: str, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    paths = write_coco_fixture(tmp_path / "salicon", edition)
    out = tmp_path / "set"
    with caplog.at_level(logging.WARNING):
        assert regions_main(coco_args(paths, edition, out)) == 0
    class_ids = resolve_class_ids(out)
    first = dict(zip(*reversed(read_regions(out, "COCO_val2014_000000000001", class_ids, (HEIGHT, WIDTH))),
                     strict=True))
    assert sorted(first) == ["drink", "person head", "person part", "vehicle"]
    assert iou(first["person head"], head_mask()) >= 0.9                      # split at the keypoints' head disc
    assert iou(first["person part"], box_mask(TORSO)) >= 0.95
    assert iou(first["vehicle"], box_mask(CAR)) == 1.0                        # compressed RLE, exact
    assert iou(first["drink"], box_mask(CUP)) == 1.0                          # uncompressed RLE, exact
    second = dict(zip(*reversed(read_regions(out, "COCO_val2014_000000000002", class_ids, (HEIGHT, WIDTH))),
                      strict=True))
    assert sorted(second) == ["animal part", "person part"]                   # no keypoints: one person region
    assert iou(second["person part"], box_mask(PERSON_2)) >= 0.95
    record = json.loads((out / REGIONS_JSON).read_text())
    assert record["unmapped"] == {"unicorn": {"regions": 1, "images": ["COCO_val2014_000000000001"]}}
    assert any("'unicorn' is not mapped" in message and "coco.yaml" in message for message in caplog.messages)
    rows = read_csv(out / "regions.csv")
    assert {r["source"] for r in rows} >= {"coco:10:head", "coco:10:part", "coco:11", "coco:12", "coco:20"}
    assert record["inputs"]["settings"]["bandwidth"] == 8.0 and record["inputs"]["mapping"]["name"] == "coco"


def test_the_salicon_coco_data_module_builds_on_first_use_and_serves_region_batches(tmp_path: Path) -> None:
    paths = write_coco_fixture(tmp_path / "salicon", "2017")
    module = RegionSetDataModule(root=paths["root"], format="salicon", annotations=paths["instances"],
                                 keypoints=paths["keypoints"], regions_root=tmp_path / "set", image_size=32,
                                 batch_size=2, build={"bandwidth": 8, "min_observers": 3})
    assert not (tmp_path / "set").exists()  # nothing is built before setup
    module.setup("predict")
    batch = next(iter(module.predict_dataloader()))
    assert batch["image"].shape == (2, 3, 32, 32) and batch["fixations"].shape == (2, HEIGHT, WIDTH)
    assert [sorted(names) for names in batch["region_categories"]] == [
        ["drink", "person head", "person part", "vehicle"], ["animal part", "person part"]]
    assert module.categories == load_table("coco").categories
    summary = module.summary()
    assert summary["built_regions"]["person_split"] and summary["built_regions"]["unmapped"] == {"unicorn": 1}
    assert summary["fixations"] == 6 * 12  # 6 observers x (8 + 4) fixations
    assert len(module.dataset.observers(0)) == 6


def test_every_category_table_loads_and_coco_maps_its_80_classes() -> None:
    tables = {path.stem: load_table(path.stem) for path in TABLES_DIR.glob("*.yaml")}
    assert {"coco", "voc", "osie_sr"} <= set(tables)
    for table in tables.values():
        assert set(table.categories) <= set(CATEGORIES)
    assert len(tables["coco"].classes) == 80 and all(tables["coco"].classes.values())
    assert tables["coco"].person_split is not None
    assert tables["osie_sr"].classes == {name: name for name in CATEGORIES}


# ------------------------------------------------------------------------------------------------------------
# bad input: one clear line naming the file or key
# ------------------------------------------------------------------------------------------------------------


def one_line_error(argv: list[str], capsys: pytest.CaptureFixture) -> str:
    assert regions_main(argv) == 2
    lines = capsys.readouterr().err.strip().splitlines()
    assert len(lines) == 1, lines
    return lines[0]


def test_fixations_without_images_name_the_fixation_file_and_the_image(tmp_path: Path, capsys) -> None:
    paths = write_coco_fixture(tmp_path / "salicon", "2017")
    (tmp_path / "salicon/images/val/COCO_val2014_000000000002.jpg").unlink()
    line = one_line_error(coco_args(paths, "2017", tmp_path / "set"), capsys)
    assert "fixations without an image" in line and "COCO_val2014_000000000002.mat" in line
    assert "images/val/COCO_val2014_000000000002.jpg" in line
    assert not (tmp_path / "set").exists()


def test_annotations_for_other_images_are_refused(tmp_path: Path, capsys) -> None:
    paths = write_coco_fixture(tmp_path / "salicon", "2017", image_ids=(7, 8))
    line = one_line_error(coco_args(paths, "2017", tmp_path / "set"), capsys)
    assert "annotations for other images" in line and str(paths["instances"]) in line and "none of the 2" in line
    partial = write_coco_fixture(tmp_path / "partial", "2017", image_ids=(1, 8))
    line = one_line_error(coco_args(partial, "2017", tmp_path / "set"), capsys)
    assert "no annotation for 1 of the 2" in line and "COCO_val2014_000000000002" in line


def test_an_unmapped_class_stops_the_build_when_asked(tmp_path: Path, capsys) -> None:
    paths = write_coco_fixture(tmp_path / "salicon", "2017")
    line = one_line_error(coco_args(paths, "2017", tmp_path / "set", "--unmapped", "raise"), capsys)
    assert "unmapped class" in line and "'unicorn'" in line and "coco.yaml" in line and "coco:13" in line


def test_image_size_mismatches_name_both_sizes(tmp_path: Path, capsys) -> None:
    paths = write_coco_fixture(tmp_path / "salicon", "2017")
    content = json.loads(paths["instances"].read_text())
    content["images"][0]["height"] = 100
    paths["instances"].write_text(json.dumps(content))
    line = one_line_error(coco_args(paths, "2017", tmp_path / "set"), capsys)
    assert "image size mismatch" in line and str(paths["instances"]) in line and "100x160" in line
    assert "120x160" in line and "image id 1" in line
    Image.fromarray(np.zeros((90, WIDTH, 3), np.uint8)).save(paths["root"] / "images/val/COCO_val2014_000000000002.jpg")
    line = one_line_error(coco_args(paths, "2017", tmp_path / "set2"), capsys)
    assert "image size mismatch" in line and "COCO_val2014_000000000002.mat" in line and "90x160" in line


def test_voc_masks_of_another_size_or_missing_and_bad_settings_are_refused(synthetic_root: Path, tmp_path: Path) -> None:
    masks = tmp_path / "voc"
    for folder in ("SegmentationClass", "SegmentationObject"):
        (masks / folder).mkdir(parents=True)
        Image.fromarray(np.zeros((10, 10), np.uint8)).save(masks / folder / "1001.png")
    source = FixationSource("osie", synthetic_root / "osie")
    voc = {"format": "voc", "path": str(masks), "keypoints": None}
    request = BuildRequest(source, voc, "voc", BuildSettings(bandwidth=SMALL_BANDWIDTH), stems=("1001",))
    with pytest.raises(InputFileError, match=r"image size mismatch: .*1001.png is 10x10 .* is 120x160"):
        build_regions(request, tmp_path / "set")
    request = BuildRequest(source, voc, "voc", BuildSettings(bandwidth=SMALL_BANDWIDTH), stems=("1001", "1002"))
    with pytest.raises(InputFileError, match=r"voc has no annotation for 1 of the 2 .*\['1002'\]"):
        build_regions(request, tmp_path / "set")
    assert not (tmp_path / "set").exists()
    with pytest.raises(ConfigError, match="build.method='kmeans'"):
        BuildSettings(method="kmeans")
    with pytest.raises(ConfigError, match="build.min_observers must be >= 1"):
        BuildSettings(min_observers=0)


# ------------------------------------------------------------------------------------------------------------
# real OSIE fixations (skipped when ../shared/data/osie is absent)
# ------------------------------------------------------------------------------------------------------------


@pytest.mark.osie
def test_real_osie_cluster_regions_then_probe_py_with_the_shuffled_control(osie_root: Path, tmp_path: Path) -> None:
    regions = tmp_path / "osie_regions"
    overrides = ["data=osie_regions", f"data.root={osie_root}", f"data.regions_root={regions}", "data.limit=4",
                 "data.image_size=64", "data.num_workers=0", "data.batch_size=2", "layers=[conv5_3]",
                 "analyses=[inner]", "controls.shuffled_regions=true", "controls.random_trunk=false",
                 "figures.enabled=false", "logger=none", "print_config=false", "progress_bar=false",
                 f"hydra.run.dir={tmp_path / 'run'}"]
    env = {**os.environ, "WANDB_MODE": "disabled"}
    result = subprocess.run([sys.executable, "probe.py", *overrides], cwd=REPO, capture_output=True, text=True,
                            timeout=300, env=env)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    rows = read_csv(tmp_path / "run/tables/inner_representation.csv")
    assert [r["category"] for r in rows] == [SALIENT_REGION]
    assert np.isfinite([float(rows[0]["top10_mean_nss"]), float(rows[0]["shuffled_top10_mean_nss"])]).all()
    assert "built automatically" in (tmp_path / "run/report.md").read_text()
    # every region's fixation count, recounted from the raw fixations.mat
    table = read_osie_fixations(osie_root / "data/eye/fixations.mat")
    record = json.loads((regions / REGIONS_JSON).read_text())
    assert record["images"] == 4 and record["regions"] == len(read_csv(regions / "regions.csv")) > 4
    for row in read_csv(regions / "regions.csv"):
        objects = read_label_map(regions / "SegmentationObject" / f"{row['image']}.png")
        pixels = np.concatenate([raw_pixels(p, *objects.shape) for p in table[f"{row['image']}.jpg"]])
        assert int(row["fixations"]) == int((objects[pixels[:, 1], pixels[:, 0]] == int(row["region"])).sum())
    assert int(json.loads((tmp_path / "run/probe_summary.json").read_text())["analyses"]["inner"]["images"]) == 4


def test_report_states_how_regions_were_built_from_a_summary_alone(tmp_path: Path, built_clusters: Path) -> None:
    """A built set read through data=osie_sr: the report finds regions.json beside data.regions_root."""
    summary = {"data": {"data": {"regions_root": str(built_clusters)}}}
    text = "\n".join(report_md.regions_section(summary))
    assert "built automatically" in text and "category `salient region`" in text
    assert report_md.regions_section({"data": {"data": {"regions_root": str(tmp_path)}}}) == []
