"""The inner-representation probe: activations, Eq. 1 statistics against an independent reference, a planted
unit, the controls, model sources (checkpoints, sweeps) and bad input."""

from __future__ import annotations

import json
import os
import pickle
from pathlib import Path

import numpy as np
import pytest
import scipy.io
import torch
import torch.nn.functional as F
from conftest import SMALL_SYNTHETIC
from hydra import compose, initialize_config_dir
from PIL import Image
from region_sets_reference import as_masks, shuffled_region_pixels

from saliency_probe.models.backbone import VGGTrunk
from saliency_probe.probe.activations import LayerActivations, ordered_layers
from saliency_probe.probe.regions import image_generator, probe_region_points
from saliency_probe.probe.results import load_results
from saliency_probe.probe.runner import run_probe
from saliency_probe.probe.sources import RANDOM_NAME, resolve_sources, sweep_sources, varying_overrides
from saliency_probe.report.tables import read_csv

REPO = Path(__file__).resolve().parents[1]
IMAGENET_MEAN = [0.485, 0.456, 0.406]
IMAGENET_STD = [0.229, 0.224, 0.225]
QUIET = ["logger=none", "print_config=false", "progress_bar=false", "analyses=[inner]"]


def synthetic_overrides(root: Path, image_size: int = 64) -> list[str]:
    s = SMALL_SYNTHETIC
    return [
        f"data.root={root}",
        f"data.num_train={s['num_train']}",
        f"data.num_val={s['num_val']}",
        f"data.num_probe={s['num_probe']}",
        f"data.salicon_hw=[{s['salicon_hw'][0]},{s['salicon_hw'][1]}]",
        f"data.osie_hw=[{s['osie_hw'][0]},{s['osie_hw'][1]}]",
        f"data.num_observers={s['num_observers']}",
        f"data.image_size={image_size}",
        f"seed={s['seed']}",
    ]


def run_in(tmp_path: Path, overrides: list[str]) -> dict:
    """Compose conf/probe.yaml with ``overrides`` and run it with ``tmp_path`` as the run folder."""
    with initialize_config_dir(config_dir=str(REPO / "conf"), version_base="1.3"):
        cfg = compose("probe", overrides=[*QUIET, *overrides])
    cwd = Path.cwd()
    tmp_path.mkdir(parents=True, exist_ok=True)
    os.chdir(tmp_path)  # outside Hydra the run folder is the current folder
    try:
        return run_probe(cfg)
    finally:
        os.chdir(cwd)


def csv_rows(run_dir: Path) -> dict[tuple[str, str, str], dict[str, str]]:
    rows = read_csv(run_dir / "tables" / "inner_representation.csv")
    return {(row["model"], row["layer"], row["category"]): row for row in rows}


# ------------------------------------------------------------------------------------------------------------
# activations
# ------------------------------------------------------------------------------------------------------------


def test_activations_are_the_post_relu_maps_of_a_plain_forward() -> None:
    torch.manual_seed(0)
    trunk = VGGTrunk().eval()
    images = torch.randn(2, 3, 32, 32)
    extractor = LayerActivations(trunk, ["conv5_3", "conv1_1", "conv3_2", "conv1_1"])
    assert extractor.layers == ["conv1_1", "conv3_2", "conv5_3"]
    with torch.no_grad():
        got = extractor(images)
        expected, x = {}, images
        for index, module in enumerate(trunk.features):
            x = module(x)
            if index in (1, 13, 29):  # the ReLUs after conv1_1, conv3_2, conv5_3
                expected[index] = x.clone()
    assert set(got) == {"conv1_1", "conv3_2", "conv5_3"}
    torch.testing.assert_close(got["conv1_1"], expected[1], rtol=0, atol=0)
    torch.testing.assert_close(got["conv3_2"], expected[13], rtol=0, atol=0)
    torch.testing.assert_close(got["conv5_3"], expected[29], rtol=0, atol=0)
    assert (got["conv1_1"] >= 0).all() and (got["conv1_1"] == 0).any()  # post-ReLU, not the conv output


def test_unknown_layer_lists_the_valid_ones() -> None:
    with pytest.raises(ValueError, match="conv6_1.*conv1_1"):
        ordered_layers(["conv6_1"])


# ------------------------------------------------------------------------------------------------------------
# conv5_3 against an independent computation from the files alone
# ------------------------------------------------------------------------------------------------------------


def reference_layer_statistics(root: Path, extract, layers: list[str], top_k: int = 10, threshold: float = 1.5):
    """``{layer: {category: (top-k mean, units above threshold, regions)}}`` from the OSIE / OSIE-SR files only:
    ``extract(image) -> {layer: (1, C, h, w)}`` (a plain torchvision model), full-resolution bilinear maps and
    Eq. 1."""
    from torchvision.transforms.v2 import functional as TF  # its uint8 antialiased resize, as documented

    content = scipy.io.loadmat(root / "osie/data/eye/fixations.mat", squeeze_me=True, struct_as_record=False)
    names = [line.strip() for line in (root / "osie_sr/class_names.txt").read_text().splitlines()]
    sums: dict[tuple[str, str], np.ndarray] = {}
    counts: dict[str, int] = {}
    for entry in np.atleast_1d(content["fixations"]).ravel():
        stem = Path(entry.img).stem
        rgb = np.asarray(Image.open(root / "osie/data/stimuli" / entry.img).convert("RGB"))
        height, width = rgb.shape[:2]
        fixated = np.zeros((height, width), dtype=bool)
        for subject in np.atleast_1d(entry.subjects).ravel():
            xs, ys = np.atleast_1d(subject.fix_x).astype(float), np.atleast_1d(subject.fix_y).astype(float)
            cols = np.clip(
                np.floor(xs + 0.5).astype(int) - 1, 0, width - 1
            )  # MATLAB round, 1-based -> 0-based
            rows = np.clip(np.floor(ys + 0.5).astype(int) - 1, 0, height - 1)
            fixated[rows, cols] = True
        uint8 = torch.from_numpy(rgb.copy()).permute(2, 0, 1)
        image = TF.resize(uint8, [224, 224], antialias=True).float() / 255
        image = TF.normalize(image, IMAGENET_MEAN, IMAGENET_STD)
        with torch.no_grad():
            maps = {layer: value.double() for layer, value in extract(image[None]).items()}
        classes = np.array(Image.open(root / "osie_sr/SegmentationClass" / f"{stem}.png"))
        objects = np.array(Image.open(root / "osie_sr/SegmentationObject" / f"{stem}.png"))
        for layer in layers:
            full = F.interpolate(maps[layer], size=(height, width), mode="bilinear", align_corners=False)[0]
            flat = full.reshape(full.shape[0], -1)
            std = flat.std(dim=1, unbiased=False)
            z = (flat - flat.mean(dim=1, keepdim=True)) / torch.where(std > 0, std, torch.ones_like(std))[:, None]
            z[std == 0] = 0
            for instance in np.unique(objects):
                if instance == 0:
                    continue
                region = objects == instance
                category = names[int(np.unique(classes[region])[0])]
                pixels = np.flatnonzero(region & fixated)
                if pixels.size == 0:
                    continue
                assoc = z[:, torch.from_numpy(pixels)].mean(dim=1).numpy()
                sums[(layer, category)] = sums.get((layer, category), 0.0) + assoc
                if layer == layers[0]:
                    counts[category] = counts.get(category, 0) + 1
    out: dict[str, dict[str, tuple[float, int, int]]] = {layer: {} for layer in layers}
    for (layer, category), total in sums.items():
        means = np.sort(total / counts[category])[::-1]
        out[layer][category] = (means[:top_k].mean(), int((means > threshold).sum()), counts[category])
    return out


def reference_statistics(root: Path, weights: Path, top_k: int = 10, threshold: float = 1.5):
    """torchvision VGG-16 + full-resolution bilinear maps + Eq. 1, from the OSIE / OSIE-SR files only."""
    from torchvision.models import vgg16

    net = vgg16(weights=None)
    net.load_state_dict(torch.load(weights, weights_only=True), strict=False)
    features = net.features[:30].eval()
    return reference_layer_statistics(root, lambda image: {"conv5_3": features(image)}, ["conv5_3"], top_k,
                                      threshold)["conv5_3"]


def test_conv5_3_statistics_equal_an_independent_reference(tmp_path: Path, synthetic_root: Path) -> None:
    torch.manual_seed(123)
    weights = tmp_path / "vgg16_random.pth"
    from torchvision.models import vgg16

    torch.save(vgg16(weights=None).state_dict(), weights)
    run_in(
        tmp_path / "run",
        [
            *synthetic_overrides(synthetic_root, image_size=224),
            f"backbone.weights={weights}",
            "layers=[conv5_3]",
            "figures.enabled=false",
            "controls.random_trunk=false",
            "controls.shuffled_regions=false",
        ],
    )
    rows = csv_rows(tmp_path / "run")
    expected = reference_statistics(synthetic_root, weights)
    assert {key[2] for key in rows} == set(expected)
    assert len(expected) >= 8  # the synthetic probe set covers most categories
    for category, (top10, above, regions) in expected.items():
        row = rows[("vgg16_random", "conv5_3", category)]
        assert float(row["top10_mean_nss"]) == pytest.approx(top10, rel=1e-5, abs=1e-6)
        assert int(row["n_above_threshold"]) == above
        assert int(row["n_regions"]) == regions


# ------------------------------------------------------------------------------------------------------------
# a planted unit
# ------------------------------------------------------------------------------------------------------------

SIDE = 40
PLANTED_UNIT = 7
#: class id -> category (written as class_names.txt): 1 text, 2 object, 3 person head.
PLANTED_NAMES = ["_background_", "text", "object", "person head"]
#: per image: list of (category id, (row0, row1, col0, col1)) boxes; fixations: (row, col) pixels 0-based.
PLANTED_IMAGES = {
    "1": (
        [(1, (4, 14, 4, 16)), (2, (24, 34, 20, 34))],
        [(6, 6), (10, 12), (13, 15), (28, 25), (30, 30), (2, 38)],
    ),
    "2": (
        [(1, (2, 8, 2, 12)), (1, (30, 38, 25, 37)), (2, (15, 25, 5, 15))],
        [(4, 4), (33, 30), (35, 36), (20, 10), (18, 6), (39, 0)],
    ),
    "3": ([(2, (5, 15, 5, 25)), (3, (20, 30, 20, 30))], [(8, 8), (25, 25), (26, 27), (0, 39)]),
}


def write_planted(
    root: Path, size_mismatch: str | None = None, unknown_id: str | None = None, missing: str | None = None
) -> tuple[Path, Path]:
    """OSIE + OSIE-SR files where every "text" region is pure red and everything else has no red."""
    osie, regions = root / "osie", root / "osie_sr"
    for folder in (
        osie / "data/stimuli",
        osie / "data/eye",
        regions / "SegmentationClass",
        regions / "SegmentationObject",
    ):
        folder.mkdir(parents=True, exist_ok=True)
    entries = np.empty((len(PLANTED_IMAGES), 1), dtype=object)
    for number, (stem, (boxes, fixations)) in enumerate(PLANTED_IMAGES.items()):
        rgb = np.zeros((SIDE, SIDE, 3), dtype=np.uint8)
        classes = np.zeros((SIDE, SIDE), dtype=np.uint8)
        objects = np.zeros((SIDE, SIDE), dtype=np.uint8)
        for instance, (class_id, (r0, r1, c0, c1)) in enumerate(boxes, start=1):
            rgb[r0:r1, c0:c1] = (255, 0, 0) if class_id == 1 else (0, 200, 90)
            classes[r0:r1, c0:c1] = 99 if stem == unknown_id and instance == 1 else class_id
            objects[r0:r1, c0:c1] = instance
        Image.fromarray(rgb).save(osie / "data/stimuli" / f"{stem}.png")
        label_size = (SIDE - 2, SIDE) if stem == size_mismatch else (SIDE, SIDE)
        if stem != missing:
            Image.fromarray(classes[: label_size[0]]).save(regions / "SegmentationClass" / f"{stem}.png")
            Image.fromarray(objects[: label_size[0]]).save(regions / "SegmentationObject" / f"{stem}.png")
        rows = np.array([r for r, _ in fixations], dtype=float) + 1  # 1-based, as OSIE stores them
        cols = np.array([c for _, c in fixations], dtype=float) + 1
        subject = {"fix_x": cols[None], "fix_y": rows[None], "fix_duration": np.full((1, len(rows)), 200.0)}
        subjects = np.empty((1, 1), dtype=object)
        subjects[0, 0] = subject
        entries[number, 0] = {"img": f"{stem}.png", "subjects": subjects}
    scipy.io.savemat(osie / "data/eye/fixations.mat", {"fixations": entries})
    (regions / "class_names.txt").write_text("\n".join(PLANTED_NAMES) + "\n")
    return osie, regions


def planted_weights(path: Path) -> Path:
    """A trunk whose conv1_1 unit PLANTED_UNIT outputs the red channel in [0, 1] (undoing the ImageNet
    normalisation) and whose other conv1_1 units are constant zero."""
    trunk = VGGTrunk()
    conv = trunk.conv("conv1_1")
    with torch.no_grad():
        conv.weight.zero_()
        conv.bias.zero_()
        conv.weight[PLANTED_UNIT, 0, 1, 1] = IMAGENET_STD[0]
        conv.bias[PLANTED_UNIT] = IMAGENET_MEAN[0]
    torch.save(trunk.state_dict(), path)
    return path


def expected_planted() -> dict[str, list[float]]:
    """Region NSS of the planted unit, by hand: the map is the image's text mask M (area fraction p), so a
    fixation inside M scores (1 - p) / sqrt(p (1 - p)) and one outside -p / sqrt(p (1 - p))."""
    out: dict[str, list[float]] = {"text": [], "object": [], "person head": []}
    for boxes, fixations in PLANTED_IMAGES.values():
        text = np.zeros((SIDE, SIDE), dtype=bool)
        for class_id, (r0, r1, c0, c1) in boxes:
            if class_id == 1:
                text[r0:r1, c0:c1] = True
        p = text.mean()
        for class_id, (r0, r1, c0, c1) in boxes:
            inside = [(r, c) for r, c in fixations if r0 <= r < r1 and c0 <= c < c1]
            if not inside:
                continue
            scores = [
                0.0 if p == 0 else ((1 - p) if text[r, c] else -p) / np.sqrt(p * (1 - p)) for r, c in inside
            ]
            out[PLANTED_NAMES[class_id]].append(float(np.mean(scores)))
    return out


def planted_overrides(tmp_path: Path, **writer) -> list[str]:
    osie, regions = write_planted(tmp_path / "data", **writer)
    weights = planted_weights(tmp_path / "planted.pth")
    return [
        "data=osie_sr",
        f"data.root={osie}",
        f"data.regions_root={regions}",
        f"data.image_size={SIDE}",
        "data.num_workers=0",
        "data.batch_size=2",
        f"backbone.weights={weights}",
        "layers=[conv1_1]",
        "top_k=3",
        "threshold=1.5",
        "controls.random_trunk=false",
        "figures.enabled=false",
    ]


def test_planted_unit_ranks_first_with_the_analytic_nss(tmp_path: Path) -> None:
    run_in(tmp_path / "run", planted_overrides(tmp_path))
    expected = expected_planted()
    results, categories = load_results(tmp_path / "run/tables/inner_units_planted.npz")
    means = results["conv1_1"].unit_means  # (64, K)
    text = categories.index("text")
    assert int(np.argmax(means[:, text])) == PLANTED_UNIT
    assert means[PLANTED_UNIT, text] == pytest.approx(np.mean(expected["text"]), rel=1e-6)
    assert np.delete(means[:, text], PLANTED_UNIT) == pytest.approx(0.0, abs=1e-9)  # constant maps give 0
    obj = categories.index("object")
    assert means[PLANTED_UNIT, obj] == pytest.approx(np.mean(expected["object"]), rel=1e-6)
    assert means[PLANTED_UNIT, obj] < 0
    rows = csv_rows(tmp_path / "run")
    text_row = rows[("planted", "conv1_1", "text")]
    assert float(text_row["top3_mean_nss"]) == pytest.approx(np.mean(expected["text"]) / 3, rel=1e-6)
    assert int(text_row["n_above_threshold"]) == 1
    assert int(text_row["n_regions"]) == len(expected["text"]) == 3
    assert int(rows[("planted", "conv1_1", "object")]["n_regions"]) == 3
    assert float(rows[("planted", "conv1_1", "object")]["top3_mean_nss"]) == pytest.approx(0.0, abs=1e-9)
    markdown = (tmp_path / "run/tables/inner_representation.md").read_text()
    assert "| layer | person head | object | text |" in markdown  # the id table's categories, paper order


@pytest.mark.parametrize(
    "writer,message",
    [
        ({"missing": "2"}, "SegmentationClass/2.png"),
        ({"size_mismatch": "3"}, "SegmentationClass/3.png.*38x40"),
        ({"unknown_id": "1"}, "SegmentationClass/1.png: unknown class id 99"),
    ],
)
def test_bad_region_files_name_the_file(tmp_path: Path, writer: dict, message: str) -> None:
    with pytest.raises((ValueError, FileNotFoundError), match=message):
        run_in(tmp_path / "run", planted_overrides(tmp_path, **writer))
    assert not (tmp_path / "run/tables/inner_representation.csv").exists()


# ------------------------------------------------------------------------------------------------------------
# the shuffled-region control
# ------------------------------------------------------------------------------------------------------------


def test_shuffled_regions_keep_counts_and_draw_from_the_image_fixations() -> None:
    rng = np.random.default_rng(0)
    fixations = torch.from_numpy(rng.random((30, 40)) > 0.9)
    masks = torch.zeros(3, 30, 40, dtype=torch.bool)
    masks[0, :10, :10] = True
    masks[1, 15:, 20:] = True
    masks[2, 12:14, 0:2] = True
    masks[2, 12:14, 0:2] &= ~fixations[12:14, 0:2]  # a region without fixations
    names, categories = ["a", "b", "a"], ["a", "b"]

    def draw(stem: str, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
        points, index = probe_region_points(fixations[None], [masks], [names], categories, [stem], seed, True)
        return as_masks(points, index.shape[1]), index

    regions, index = draw("1001")
    assert regions.shape == (1, 6, 30, 40) and index.tolist() == [[0, 1, 0, 2, 3, 2]]
    assert torch.equal(regions[0, :3], masks & fixations)  # the real regions' fixations, then shuffled copies
    sets = regions[0, 3:]
    assert (sets.sum(dim=(1, 2)) == (masks & fixations).sum(dim=(1, 2))).all()
    assert not (sets & ~fixations).any()  # only fixated pixels of the same image
    assert not sets[2].any()
    assert torch.equal(regions, draw("1001")[0]) and not torch.equal(regions, draw("1002")[0])
    assert not torch.equal(regions, draw("1001", seed=1)[0])
    assert not torch.equal(sets[0], masks[0] & fixations)  # actually shuffled
    pixels = shuffled_region_pixels(fixations, masks, image_generator(0, "1001"))
    assert [p.numel() for p in pixels] == (masks & fixations).sum(dim=(1, 2)).tolist()
    # two images with different region counts: padding slots are empty and marked -1
    both_points, both_index = probe_region_points(
        torch.stack([fixations, fixations]),
        [masks, masks[:1]],
        [names, names[:1]],
        categories,
        ["1001", "9"],
        0,
        shuffled=True,
    )
    both = as_masks(both_points, both_index.shape[1])
    assert both.shape == (2, 6, 30, 40) and both_index[1].tolist() == [0, -1, -1, 2, -1, -1]
    assert not both[1, [1, 2, 4, 5]].any()
    assert torch.equal(both[0], regions[0])  # an image's draw does not depend on its batch
    with pytest.raises(ValueError, match="image 1001: unknown region categories \\['c'\\]"):
        probe_region_points(fixations[None], [masks], [["a", "b", "c"]], categories, ["1001"], 0, shuffled=False)


def test_shuffled_baseline_removes_the_planted_selectivity(tmp_path: Path) -> None:
    run_in(tmp_path / "run", planted_overrides(tmp_path))
    results, categories = load_results(tmp_path / "run/tables/inner_units_planted.npz")
    text = categories.index("text")
    real = results["conv1_1"].unit_means[PLANTED_UNIT, text]
    shuffled = results["conv1_1"].shuffled_means[PLANTED_UNIT, text]
    assert shuffled < real - 0.5  # the unit fires on text, not on fixations as such
    row = csv_rows(tmp_path / "run")[("planted", "conv1_1", "text")]
    assert float(row["shuffled_top3_mean_nss"]) == pytest.approx(max(shuffled, 0.0) / 3, rel=1e-6, abs=1e-9)


# ------------------------------------------------------------------------------------------------------------
# model sources: checkpoints, sweeps, bad checkpoints
# ------------------------------------------------------------------------------------------------------------


def fake_checkpoint(path: Path, run_name: str, seed: int | None = None, task: str = "saliency") -> Path:
    """A checkpoint in the framework's format (what train.py writes): plain containers, trunk.* keys."""
    if seed is None:
        state = {"trunk.features.0.weight": torch.zeros(1)}
    else:
        torch.manual_seed(seed)
        state = {f"trunk.{key}": value for key, value in VGGTrunk().state_dict().items()}
        state["head.weight"] = torch.zeros(1, 512, 1, 1)
    payload = {
        "state_dict": state,
        "hyper_parameters": {"run_name": run_name},
        "saliency_probe": {
            "format_version": 1,
            "task": task,
            "run_name": run_name,
            "finetune_layers": "1",
            "config": {},
        },
    }
    path.parent.mkdir(parents=True, exist_ok=True)
    torch.save(payload, path)
    return path


def fake_sweep(root: Path, values: list[str], seeded: bool = False) -> Path:
    for number, value in enumerate(values):
        job = root / str(number)
        best = fake_checkpoint(
            job / "checkpoints/best-epoch00.ckpt",
            f"finetune.layers={value},data.image_size=64",
            seed=number if seeded else None,
        )
        last = job / "checkpoints/last.ckpt"
        last.write_bytes(best.read_bytes())
        (job / ".hydra").mkdir(parents=True)
        (job / ".hydra/overrides.yaml").write_text(f"- finetune.layers={value}\n- data.image_size=64\n")
        (job / "summary.json").write_text(
            json.dumps(
                {
                    "task": "saliency",
                    "finetune_layers": value,
                    "best_checkpoint": str(best),
                    "last_checkpoint": str(last),
                    "run_name": f"data.image_size=64,finetune.layers={value}",
                    "metrics": {},
                }
            )
        )
    return root


def test_sweep_jobs_are_ordered_by_number_and_named_by_what_varies(tmp_path: Path) -> None:
    sweep = fake_sweep(tmp_path / "sweep", [str(v) for v in range(11)])  # 10 sorts after 9, not after 1
    sources = sweep_sources(sweep)
    assert [s.name for s in sources] == [f"finetune.layers={v}" for v in range(11)]
    assert all(s.kind == "checkpoint" and s.path.is_file() for s in sources)
    assert varying_overrides([["a=1", "b=2"], ["a=1", "b=3"], None]) == ["b=2", "b=3", None]


def test_moved_sweep_folder_still_finds_its_checkpoints(tmp_path: Path) -> None:
    fake_sweep(tmp_path / "old", ["0", "1"])
    (tmp_path / "old").rename(tmp_path / "new")
    assert [s.path.parent.parent.name for s in sweep_sources(tmp_path / "new")] == ["0", "1"]


def test_sweep_checkpoint_chooses_last_by_default_or_best(tmp_path: Path) -> None:
    sweep = fake_sweep(tmp_path / "sweep", ["0", "1"])
    assert [(s.path.name, s.info["checkpoint_choice"]) for s in sweep_sources(sweep)] == [("last.ckpt", "last")] * 2
    assert [s.path.name for s in sweep_sources(sweep, "best")] == ["best-epoch00.ckpt"] * 2
    assert [s.path.name for s in resolve_sources(sweep=str(sweep), sweep_checkpoint="best", random_control=False)
            if s.kind == "checkpoint"] == ["best-epoch00.ckpt"] * 2
    (sweep / "1/checkpoints/last.ckpt").unlink()
    with pytest.raises(FileNotFoundError, match=r"last_checkpoint .* does not exist \(sweep_checkpoint=last\); "
                       r"sweep_checkpoint=best probes"):
        sweep_sources(sweep)
    with pytest.raises(ValueError, match="sweep_checkpoint='newest'; expected one of"):
        sweep_sources(sweep, "newest")


def test_sources_order_controls_and_duplicates(tmp_path: Path) -> None:
    a = fake_checkpoint(tmp_path / "a.ckpt", "task=saliency")
    b = fake_checkpoint(tmp_path / "b.ckpt", "task=saliency")
    sources = resolve_sources(ckpt=[str(a), str(b)], weights=None)
    assert [s.name for s in sources] == ["task=saliency", "task=saliency#2", RANDOM_NAME]
    assert sources[-1].control and sources[-1].kind == "random"
    named = resolve_sources(ckpt=[str(a), str(b)], weights="IMAGENET1K_V1", names=["pt", "sp", "sr"])
    assert [(s.name, s.kind) for s in named] == [
        ("pt", "weights"),
        ("sp", "checkpoint"),
        ("sr", "checkpoint"),
        (RANDOM_NAME, "random"),
    ]
    with pytest.raises(ValueError, match="2 name.*3 model"):
        resolve_sources(ckpt=[str(a), str(b)], weights="IMAGENET1K_V1", names=["pt", "sp"])
    only_weights = resolve_sources(weights=None)
    assert [(s.name, s.control) for s in only_weights] == [(RANDOM_NAME, False)]


class NotAllowed:
    """Unpickling this would need arbitrary code: weights_only must refuse the file."""


@pytest.mark.parametrize("kind", ["foreign", "unsafe", "missing", "empty_sweep"])
def test_bad_models_fail_with_a_clear_message(tmp_path: Path, kind: str) -> None:
    if kind == "foreign":
        path = tmp_path / "foreign.pth"
        torch.save({"features.0.weight": torch.zeros(1)}, path)
        with pytest.raises(ValueError, match=f"{path}.*not a saliency_probe checkpoint.*backbone.weights"):
            resolve_sources(ckpt=str(path))
    elif kind == "unsafe":
        path = tmp_path / "unsafe.ckpt"
        with open(path, "wb") as handle:
            pickle.dump({"state_dict": NotAllowed()}, handle)
        with pytest.raises(ValueError, match=f"{path}.*weights_only=True"):
            resolve_sources(ckpt=str(path))
    elif kind == "missing":
        with pytest.raises(FileNotFoundError, match="nowhere.ckpt"):
            resolve_sources(ckpt=str(tmp_path / "nowhere.ckpt"))
    else:
        (tmp_path / "sweep/0").mkdir(parents=True)
        with pytest.raises(FileNotFoundError, match="no summary.json under .*sweep"):
            resolve_sources(sweep=str(tmp_path / "sweep"))


def test_sweep_probe_compares_every_job_in_one_table(tmp_path: Path, synthetic_root: Path) -> None:
    sweep = fake_sweep(tmp_path / "sweep", ["0", "1"], seeded=True)
    summary = run_in(
        tmp_path / "run",
        [
            *synthetic_overrides(synthetic_root),
            f"sweep={sweep}",
            "layers=[conv5_3]",
            "figures.search_images=2",
            "data.limit=4",
            "controls.random_trunk=false",
        ],
    )
    rows = csv_rows(tmp_path / "run")
    models = [m["name"] for m in summary["models"]]
    assert models == ["finetune.layers=0", "finetune.layers=1"]
    assert {key[0] for key in rows} == set(models)
    first = [float(v["top10_mean_nss"]) for k, v in rows.items() if k[0] == models[0]]
    second = [float(v["top10_mean_nss"]) for k, v in rows.items() if k[0] == models[1]]
    assert first != second  # different trunks, different statistics
    markdown = (tmp_path / "run/tables/inner_representation.md").read_text()
    assert "## conv5_3" in markdown and "| model | person head |" in markdown
    assert markdown.index("| finetune.layers=0 |") < markdown.index("| finetune.layers=1 |")
    assert (tmp_path / "run/figures/inner_improvement_conv5_3.png").is_file()


# ------------------------------------------------------------------------------------------------------------
# real OSIE images and fixations (skipped when ../shared/data/osie is absent)
# ------------------------------------------------------------------------------------------------------------


@pytest.mark.osie
def test_probe_reads_real_osie_with_region_files_in_the_osie_sr_layout(
    tmp_path: Path, osie_root: Path
) -> None:
    """Two real OSIE images with hand-made OSIE-SR annotations (default class ids: 1 person head, 37 text)."""
    regions = tmp_path / "osie_sr"
    boxes = {
        "1001": [(1, (150, 450, 250, 550)), (37, (0, 100, 0, 200))],
        "1002": [(1, (200, 400, 300, 500)), (37, (450, 600, 600, 800))],
    }
    for folder in ("SegmentationClass", "SegmentationObject"):
        (regions / folder).mkdir(parents=True)
    for stem, items in boxes.items():
        classes, objects = np.zeros((600, 800), np.uint8), np.zeros((600, 800), np.uint8)
        for instance, (class_id, (r0, r1, c0, c1)) in enumerate(items, start=1):
            classes[r0:r1, c0:c1], objects[r0:r1, c0:c1] = class_id, instance
        Image.fromarray(classes).save(regions / "SegmentationClass" / f"{stem}.png")
        Image.fromarray(objects).save(regions / "SegmentationObject" / f"{stem}.png")
    run_in(
        tmp_path / "run",
        [
            "data=osie_sr",
            f"data.root={osie_root}",
            f"data.regions_root={regions}",
            "data.stems=['1001','1002']",
            "data.image_size=64",
            "data.num_workers=0",
            "layers=[conv5_3]",
            "figures.enabled=false",
            "controls.random_trunk=false",
        ],
    )
    # regions that hold fixations, counted from fixations.mat directly
    content = scipy.io.loadmat(osie_root / "data/eye/fixations.mat", squeeze_me=True, struct_as_record=False)
    expected: dict[str, int] = {}
    for entry in np.atleast_1d(content["fixations"]).ravel():
        stem = Path(entry.img).stem
        if stem not in boxes:
            continue
        fixated = np.zeros((600, 800), dtype=bool)
        for subject in np.atleast_1d(entry.subjects).ravel():
            cols = np.clip(np.floor(np.atleast_1d(subject.fix_x) + 0.5).astype(int) - 1, 0, 799)
            rows = np.clip(np.floor(np.atleast_1d(subject.fix_y) + 0.5).astype(int) - 1, 0, 599)
            fixated[rows, cols] = True
        for class_id, (r0, r1, c0, c1) in boxes[stem]:
            if fixated[r0:r1, c0:c1].any():
                name = {1: "person head", 37: "text"}[class_id]
                expected[name] = expected.get(name, 0) + 1
    rows = csv_rows(tmp_path / "run")
    assert {key[2]: int(row["n_regions"]) for key, row in rows.items()} == expected
    assert expected.get("person head") == 2  # the centre boxes hold fixations on these images
