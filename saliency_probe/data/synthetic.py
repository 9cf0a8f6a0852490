"""The embedded synthetic data set: small, deterministic, written in the **real** on-disk formats.

Layout under ``DIR`` (every reader of :mod:`saliency_probe.data` reads it as it reads the real data)::

    salicon/images/{train,val}/COCO_{train,val}2014_<12 digits>.jpg
    salicon/fixations/{train,val}/<stem>.mat      SALICON 2017: image, resolution=[h, w], gaze struct array
    salicon/fixations_{train,val}2014.json        the same fixations in the SALICON 2015 JSON format
    salicon/maps/{train,val}/<stem>.png           blurred fixation density
    osie/data/stimuli/<1001..>.jpg, osie/data/eye/fixations.mat   OSIE (cell array of structs, as the original)
    osie_sr/SegmentationClass/<stem>.png, SegmentationObject/<stem>.png, class_names.txt   OSIE-SR ids
    scenes.csv                                    image,scene for the SALICON train + val stems
    truth.json                                    planted category weights, scenes and objects per image
    manifest.json                                 the generator's parameters

Images show objects of the paper's 12 categories on scene-typed backgrounds; simulated observers fixate objects
with probability proportional to planted category weights, else the centre (a Gaussian centre bias); a few
fixations land just outside the image (counted in ``truth.json`` as ``n_outside``; the readers must clip
exactly these). Fixation values are 1-based with one decimal, like OSIE's.

CLI: ``python -m saliency_probe.data.synthetic --out DIR --seed 0 --num-train 64 --num-val 16 --num-probe 24``
"""

from __future__ import annotations

import argparse
import io
import json
import os
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import scipy.io
from PIL import Image

from saliency_probe.data.osie_sr import CATEGORIES, DEFAULT_CLASS_IDS, VOID_ID, write_label_png
from saliency_probe.data.synthetic_drawing import ASPECT, background, render_object
from saliency_probe.errors import ConfigError, InputFileError, OutputFolderError
from saliency_probe.io_utils import write_json, write_text

FORMAT_VERSION = 1
MANIFEST = "manifest.json"
#: Planted attention weight of each category: the chance that an object-directed fixation picks an object is
#: proportional to its category's weight.
CATEGORY_WEIGHTS: dict[str, float] = {
    "person head": 5.0,
    "person part": 1.2,
    "animal head": 3.5,
    "animal part": 1.0,
    "object": 0.8,
    "text": 4.0,
    "symbol": 3.0,
    "vehicle": 2.0,
    "food": 1.5,
    "plant": 0.4,
    "drink": 2.0,
    "other": 0.6,
}
#: Scene types: background gradient (top, bottom) and the relative frequency of each category.
SCENES: dict[str, dict] = {
    "street": {"colours": ((150, 180, 215), (95, 95, 100)),
               "mix": {"vehicle": 3, "symbol": 2.5, "text": 2, "person head": 1.5, "person part": 1.5}},
    "living_room": {"colours": ((225, 205, 170), (140, 100, 70)),
                    "mix": {"object": 3, "person head": 1.5, "person part": 1.5, "animal head": 1.5,
                            "animal part": 1.5, "plant": 1.5, "drink": 1}},
    "park": {"colours": ((140, 200, 240), (70, 150, 60)),
             "mix": {"plant": 3, "animal head": 2, "animal part": 2, "person head": 1, "other": 1.5}},
    "restaurant": {"colours": ((200, 170, 130), (110, 70, 50)),
                   "mix": {"food": 3, "drink": 3, "text": 1.5, "object": 1, "person head": 1}},
}
#: Every category can appear in every scene with at least this relative frequency.
BASE_MIX = 0.3
P_OBJECT = 0.75
CENTRE_SIGMA = 0.22
P_OUTSIDE = 0.02
MARGIN = 3


@dataclass(frozen=True)
class Params:
    """The generator's parameters (what ``manifest.json`` records and ``ensure_synthetic`` compares)."""

    seed: int = 0
    num_train: int = 64
    num_val: int = 16
    num_probe: int = 24
    salicon_hw: tuple[int, int] = (240, 320)
    osie_hw: tuple[int, int] = (300, 400)
    num_observers: int = 8

    def folder_name(self) -> str:
        """The name of this set's default folder under ``data/synthetic/`` (one folder per parameter set)."""
        (sh, sw), (oh, ow) = self.salicon_hw, self.osie_hw
        return (f"seed{self.seed}-train{self.num_train}-val{self.num_val}-probe{self.num_probe}-"
                f"obs{self.num_observers}-salicon{sh}x{sw}-osie{oh}x{ow}")

    def __post_init__(self) -> None:
        for name in ("seed", "num_train", "num_val", "num_probe", "num_observers"):
            value = getattr(self, name)
            try:
                number = int(value)
            except (TypeError, ValueError):
                number = None
            if number is None or isinstance(value, bool) or (isinstance(value, float) and not value.is_integer()):
                raise ConfigError(f"synthetic {name}={value!r}: expected an integer (data.{name})")
            if number < (0 if name == "seed" else 1):
                raise ConfigError(f"synthetic {name} must be >= {0 if name == 'seed' else 1} (data.{name}), got {value}")
        for name in ("salicon_hw", "osie_hw"):
            try:
                value = tuple(int(v) for v in getattr(self, name))
            except (TypeError, ValueError):
                value = ()
            if len(value) != 2 or min(value) < 32:
                raise ConfigError(
                    f"synthetic {name} must be [height, width] with both >= 32 (data.{name}), got {getattr(self, name)}"
                )
            object.__setattr__(self, name, value)

    def as_json(self) -> dict:
        return {key: list(value) if isinstance(value, tuple) else int(value) for key, value in self.__dict__.items()}


@dataclass
class Scene:
    """One rendered image: pixels, instance map (0 = background), categories of instances 1..R, scene type."""

    image: np.ndarray
    instances: np.ndarray
    categories: list[str]
    boxes: list[tuple[int, int, int, int]]
    scene: str


def _place(rng: np.random.Generator, boxes: list, height: int, width: int, box_h: int, box_w: int):
    """A free top-left corner for a box (no overlap, off the border), or None after 60 tries."""
    for _ in range(60):
        y = int(rng.integers(MARGIN, height - MARGIN - box_h + 1))
        x = int(rng.integers(MARGIN, width - MARGIN - box_w + 1))
        if all(x + box_w + 2 <= bx0 or bx1 + 2 <= x or y + box_h + 2 <= by0 or by1 + 2 <= y
               for bx0, by0, bx1, by1 in boxes):
            return x, y
    return None


def render_scene(rng: np.random.Generator, height: int, width: int, scene: str, forced: list[str]) -> Scene:
    """Draw 3-6 objects (``forced`` categories first, the rest from the scene's mix) on the scene background."""
    spec = SCENES[scene]
    mix = np.array([spec["mix"].get(name, 0.0) + BASE_MIX for name in CATEGORIES])
    count = max(int(rng.integers(3, 7)), len(forced))
    wanted = list(forced) + [CATEGORIES[i] for i in rng.choice(len(CATEGORIES), count - len(forced), p=mix / mix.sum())]
    canvas = background(height, width, *spec["colours"], rng)
    instances = np.zeros((height, width), dtype=np.uint8)
    categories, boxes = [], []
    for category in wanted:
        scale = rng.uniform(0.2, 0.34) * min(height, width) * (0.6 if category == "text" else 1.0)
        box_h = max(8, int(scale))
        box_w = max(8, min(int(scale * ASPECT[category]), width - 2 * MARGIN - 1))
        corner = _place(rng, boxes, height, width, box_h, box_w)
        if corner is None:
            continue
        x, y = corner
        layer = render_object(category, box_w, box_h, rng)
        canvas.alpha_composite(layer, dest=(x, y))
        mask = np.array(layer)[:, :, 3] > 0
        categories.append(category)
        instances[y : y + box_h, x : x + box_w][mask] = len(categories)
        boxes.append((x, y, x + box_w, y + box_h))
    return Scene(np.array(canvas.convert("RGB")), instances, categories, boxes, scene)


def simulate_observers(rng: np.random.Generator, scene: Scene, num_observers: int, force_outside: bool):
    """Per observer: 1-based ``[x, y]`` fixations (one decimal) and durations; plus the number placed outside.

    Object-directed fixations pick an object with probability proportional to its category weight and land on
    a uniformly drawn pixel of it; the others follow a Gaussian centre bias. Offsets within a pixel lie in
    [-0.4, 0.5]: MATLAB rounding returns the drawn pixel, or its right/lower neighbour for an exact .5, which
    stays inside because objects and centre-bias pixels keep off the border. So the only points that round to
    outside the image are the deliberate ones, counted in ``n_outside``.
    """
    height, width = scene.instances.shape
    weights = np.array([CATEGORY_WEIGHTS[name] for name in scene.categories])
    pixels_of = [np.argwhere(scene.instances == k + 1) for k in range(len(scene.categories))]
    observers, n_outside = [], 0
    for observer in range(num_observers):
        n_fix = 4 + int(rng.poisson(3))
        points = np.zeros((n_fix, 2))
        for index in range(n_fix):
            if weights.size and rng.random() < P_OBJECT:
                choice = int(rng.choice(len(weights), p=weights / weights.sum()))
                row, col = pixels_of[choice][int(rng.integers(len(pixels_of[choice])))]
            else:
                row = int(np.clip(round(rng.normal(height / 2, CENTRE_SIGMA * height)), 1, height - 2))
                col = int(np.clip(round(rng.normal(width / 2, CENTRE_SIGMA * width)), 1, width - 2))
            points[index] = (col + 1 + rng.integers(-4, 6) / 10, row + 1 + rng.integers(-4, 6) / 10)
        outside = rng.random(n_fix) < P_OUTSIDE
        if force_outside and observer == 0:
            outside[-1] = True
        for index in np.flatnonzero(outside):
            axis = int(rng.integers(2))
            size = width if axis == 0 else height
            low_side = rng.random() < 0.5
            points[index, axis] = -rng.integers(0, 25) / 10 if low_side else size + rng.integers(6, 31) / 10
        n_outside += int(outside.sum())
        durations = np.clip(rng.gamma(4.0, 60.0, n_fix), 60, 1500).astype(np.uint16)
        observers.append((np.round(points, 1), durations))
    return observers, n_outside


def _mat_bytes(variables: dict) -> bytes:
    """``savemat`` output with a fixed header (scipy writes the creation time there), so bytes are seeded."""
    buffer = io.BytesIO()
    scipy.io.savemat(buffer, variables, oned_as="row")
    data = bytearray(buffer.getvalue())
    header = b"MATLAB 5.0 MAT-file, Platform: saliency_probe synthetic, Created on: (deterministic)"
    data[:116] = header.ljust(116, b" ")
    return bytes(data)


def _salicon_mat(stem: str, height: int, width: int, observers: list, rng: np.random.Generator) -> bytes:
    """The SALICON 2017 ``.mat``: ``gaze`` is an (observers x 1) struct array with raw samples and fixations."""
    gaze = np.zeros((len(observers), 1), dtype=[("location", "O"), ("timestamp", "O"), ("fixations", "O")])
    for number, (points, durations) in enumerate(observers):
        samples = np.repeat(points, 4, axis=0) + rng.normal(0.0, 1.5, (4 * len(points), 2))
        times = np.cumsum(np.repeat(durations.astype(np.float64) / 4, 4))
        gaze[number, 0] = (np.round(samples, 1), times.reshape(-1, 1), points)
    return _mat_bytes({"image": stem, "resolution": np.array([[height, width]], dtype=np.float64), "gaze": gaze})


def _density_png(observers: list, height: int, width: int) -> Image.Image:
    """Blurred fixation density (sigma 3 % of the width), scaled to 0..255: the SALICON ``maps`` PNG."""
    counts = np.zeros((height, width), dtype=np.float64)
    for points, _ in observers:
        pixels = np.sign(points) * np.floor(np.abs(points) + 0.5) - 1
        x = np.clip(pixels[:, 0], 0, width - 1).astype(int)
        y = np.clip(pixels[:, 1], 0, height - 1).astype(int)
        np.add.at(counts, (y, x), 1.0)
    blurred = cv2.GaussianBlur(counts, (0, 0), sigmaX=0.03 * width, borderType=cv2.BORDER_CONSTANT)
    return Image.fromarray(np.round(255 * blurred / max(blurred.max(), 1e-12)).astype(np.uint8))


def _scene_order(rng: np.random.Generator, count: int) -> list[str]:
    """Balanced scene types in a seeded order."""
    names = list(SCENES)
    return [names[i] for i in rng.permutation(np.arange(count) % len(names))]


def _write_salicon(root: Path, params: Params, rng: np.random.Generator, truth: dict) -> list[tuple[str, str]]:
    height, width = params.salicon_hw
    labels = []
    ids = rng.choice(600_000, params.num_train + params.num_val, replace=False) + 1
    splits = {"train": ids[: params.num_train], "val": ids[params.num_train :]}
    for split, split_ids in splits.items():
        json_images, json_annotations = [], []
        scenes = _scene_order(rng, len(split_ids))
        for number, (image_id, scene_name) in enumerate(zip(sorted(split_ids), scenes, strict=True)):
            stem = f"COCO_{split}2014_{int(image_id):012d}"
            scene = render_scene(rng, height, width, scene_name, [])
            observers, n_outside = simulate_observers(rng, scene, params.num_observers, number == 0)
            truth["n_outside"][f"salicon/{split}"] += n_outside
            Image.fromarray(scene.image).save(root / "images" / split / f"{stem}.jpg", quality=90)
            (root / "fixations" / split / f"{stem}.mat").write_bytes(
                _salicon_mat(stem, height, width, observers, rng)
            )
            _density_png(observers, height, width).save(root / "maps" / split / f"{stem}.png")
            json_images.append({"id": int(image_id), "file_name": f"{stem}.jpg", "height": height, "width": width})
            for worker, (points, _) in enumerate(observers):
                json_annotations.append({"id": len(json_annotations) + 1, "image_id": int(image_id),
                                         "worker_id": worker, "fixations": points[:, ::-1].tolist()})
            truth["scenes"][stem] = scene_name
            truth["objects"][stem] = [{"category": c, "bbox": list(b)} for c, b in zip(scene.categories, scene.boxes,
                                                                                     strict=True)]
            labels.append((stem, scene_name))
        payload = {"info": {"description": "saliency_probe synthetic SALICON (2015 JSON layout)"},
                   "images": json_images, "annotations": json_annotations}
        (root / f"fixations_{split}2014.json").write_text(json.dumps(payload) + "\n", encoding="utf-8")
    return labels


def _write_osie(osie: Path, regions: Path, params: Params, rng: np.random.Generator, truth: dict) -> None:
    height, width = params.osie_hw
    class_id = {name: key for key, name in DEFAULT_CLASS_IDS.items()}
    entries = np.empty((params.num_probe, 1), dtype=object)
    for number, scene_name in enumerate(_scene_order(rng, params.num_probe)):
        stem = str(1001 + number)
        forced = [CATEGORIES[(2 * number) % 12], CATEGORIES[(2 * number + 1) % 12]]
        scene = render_scene(rng, height, width, scene_name, forced)
        observers, n_outside = simulate_observers(rng, scene, params.num_observers, number == 0)
        truth["n_outside"]["osie"] += n_outside
        Image.fromarray(scene.image).save(osie / "data" / "stimuli" / f"{stem}.jpg", quality=90)
        subjects = np.empty((len(observers), 1), dtype=object)
        for index, (points, durations) in enumerate(observers):
            subjects[index, 0] = {"fix_x": points[None, :, 0], "fix_y": points[None, :, 1],
                                  "fix_duration": durations[None, :]}
        entries[number, 0] = {"img": f"{stem}.jpg", "subjects": subjects}
        classes = np.zeros_like(scene.instances)
        for instance, category in enumerate(scene.categories, start=1):
            classes[scene.instances == instance] = class_id[category]
        write_label_png(regions / "SegmentationClass" / f"{stem}.png", classes)
        write_label_png(regions / "SegmentationObject" / f"{stem}.png", scene.instances)
        truth["scenes"][stem] = scene_name
        truth["objects"][stem] = [{"category": c, "bbox": list(b), "instance": i + 1}
                                  for i, (c, b) in enumerate(zip(scene.categories, scene.boxes, strict=True))]
    (osie / "data" / "eye" / "fixations.mat").write_bytes(_mat_bytes({"fixations": entries}))
    names = ["__unused__"] * (max(DEFAULT_CLASS_IDS) + 1)
    names[0] = "_background_"
    for key, name in DEFAULT_CLASS_IDS.items():
        names[key] = name
    assert VOID_ID > len(names)
    (regions / "class_names.txt").write_text("\n".join(names) + "\n", encoding="utf-8")


def generate(
    out: str | os.PathLike[str],
    *,
    seed: int = 0,
    num_train: int = 64,
    num_val: int = 16,
    num_probe: int = 24,
    salicon_hw: tuple[int, int] = (240, 320),
    osie_hw: tuple[int, int] = (300, 400),
    num_observers: int = 8,
) -> Path:
    """Write the synthetic data set to ``out`` (which must not exist or be empty); return ``out``.

    Everything is written in a temporary sibling folder and renamed into place at the end, so an interrupted
    run leaves nothing that looks like a finished data set.
    """
    params = Params(seed, num_train, num_val, num_probe, tuple(salicon_hw), tuple(osie_hw), num_observers)
    out = Path(out)
    if out.exists() and (not out.is_dir() or any(out.iterdir())):
        raise OutputFolderError(f"{out} exists and is not empty; the synthetic generator never overwrites data")
    out.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{out.name}.", dir=out.parent))
    try:
        _write_all(staging, params)
        try:
            if out.exists():
                out.rmdir()
            os.rename(staging, out)
        except OSError as error:  # another process finished first (e.g. several ranks at once)
            raise OutputFolderError(f"{out} was created while generating: {error}") from error
    finally:
        if staging.exists():
            shutil.rmtree(staging)
    return out


def _write_all(root: Path, params: Params) -> None:
    for split in ("train", "val"):
        for folder in ("images", "fixations", "maps"):
            (root / "salicon" / folder / split).mkdir(parents=True)
    for folder in ("data/stimuli", "data/eye"):
        (root / "osie" / folder).mkdir(parents=True)
    for folder in ("SegmentationClass", "SegmentationObject"):
        (root / "osie_sr" / folder).mkdir(parents=True)
    rng = np.random.default_rng(params.seed)
    truth: dict = {"category_weights": CATEGORY_WEIGHTS, "p_object": P_OBJECT, "centre_sigma": CENTRE_SIGMA,
                   "p_outside": P_OUTSIDE, "scene_types": {name: spec["mix"] for name, spec in SCENES.items()},
                   "base_mix": BASE_MIX, "n_outside": {"salicon/train": 0, "salicon/val": 0, "osie": 0},
                   "scenes": {}, "objects": {}}
    labels = _write_salicon(root / "salicon", params, rng, truth)
    _write_osie(root / "osie", root / "osie_sr", params, rng, truth)
    write_text(root / "scenes.csv", "image,scene\n" + "".join(f"{stem},{scene}\n" for stem, scene in labels))
    write_json(root / "truth.json", truth)
    write_json(root / MANIFEST, {"generator": "saliency_probe.data.synthetic", "format_version": FORMAT_VERSION,
                                 "params": params.as_json()})


#: Parent of the default synthetic folders, relative to the folder the command runs in.
DEFAULT_PARENT = Path("data") / "synthetic"


def default_root(**params: Any) -> Path:
    """The default folder of the synthetic set made with ``params``: ``data/synthetic/<parameters>``, so that
    sets of other sizes or another ``data.seed`` never share a folder (an explicit ``data.root`` is compared)."""
    return (DEFAULT_PARENT / Params(**params).folder_name()).absolute()


def ensure_synthetic(root: str | os.PathLike[str], **params) -> Path:
    """Generate the synthetic set in ``root`` on first use; reuse it when ``manifest.json`` has the same
    parameters; refuse (naming the folder and the differing keys) when it was made with others."""
    root = Path(root)
    wanted = Params(**params).as_json()
    manifest = root / MANIFEST
    if root.exists() and not root.is_dir():
        raise OutputFolderError(f"{root} is a file; the synthetic data set needs a folder (data.root)")
    if not manifest.is_file():
        if root.exists() and any(root.iterdir()):
            raise OutputFolderError(
                f"{root} is not empty and has no {MANIFEST}: not a synthetic data set; refusing to write into it "
                "(data.root: give an empty or new folder)"
            )
        try:
            return generate(root, **Params(**params).__dict__)
        except FileExistsError:
            if not manifest.is_file():  # another process won the race and is not done: nothing we can reuse
                raise
    try:
        stored = json.loads(manifest.read_text(encoding="utf-8")).get("params", {})
    except (ValueError, AttributeError) as error:
        raise InputFileError(f"{manifest}: not a synthetic data set manifest ({error}); use another data.root") from error
    differing = sorted(key for key in set(wanted) | set(stored) if wanted.get(key) != stored.get(key))
    if differing:
        details = ", ".join(f"{key}: folder has {stored.get(key)}, requested {wanted.get(key)}" for key in differing)
        raise InputFileError(
            f"synthetic data set {root} was generated with different parameters ({details}); "
            "use another data.root or delete this folder"
        )
    return root


def main(argv: list[str] | None = None) -> Path:
    """Command-line entry point: generate (or reuse) a synthetic data set."""
    parser = argparse.ArgumentParser(prog="python -m saliency_probe.data.synthetic", description=__doc__.split("\n")[0])
    parser.add_argument("--out", required=True, help="output folder (created; reused if made with the same options)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--num-train", type=int, default=64, help="SALICON-format training images")
    parser.add_argument("--num-val", type=int, default=16, help="SALICON-format validation images")
    parser.add_argument("--num-probe", type=int, default=24, help="OSIE + OSIE-SR format probe images")
    parser.add_argument("--num-observers", type=int, default=8)
    parser.add_argument("--salicon-hw", type=int, nargs=2, default=(240, 320), metavar=("H", "W"))
    parser.add_argument("--osie-hw", type=int, nargs=2, default=(300, 400), metavar=("H", "W"))
    args = parser.parse_args(argv)
    root = ensure_synthetic(
        args.out, seed=args.seed, num_train=args.num_train, num_val=args.num_val, num_probe=args.num_probe,
        salicon_hw=tuple(args.salicon_hw), osie_hw=tuple(args.osie_hw), num_observers=args.num_observers,
    )
    print(f"synthetic data set ready at {root}")
    return root


if __name__ == "__main__":
    main()
