"""Procedural pop-out search arrays: the plan of each array, its rendering, the set on disk, and the CLI.

Layout of a set::

    images/<id>.png        RGB search array
    masks/target/<id>.png  0/255 target mask (all 0 in a target-absent array)
    masks/items/<id>.png   instance id per item (row-major cell index + 1; 16-bit PNG above 255 items)
    metadata.csv           id, dimension, level, target_value, distractor_value, grid, target_cell, seed,
                           then target_present, polarity, difference, image_size
    generator.json         the generator's parameters (a set is never overwritten with other ones)

:mod:`saliency_probe.data.popout_reader` reads such a set (and external ones); ``python -m
saliency_probe.data.popout`` runs :func:`main`. docs/popout.md describes the contrast ladders.
"""

from __future__ import annotations

import argparse
import csv
import io
import json
import math
import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from saliency_probe.data.popout_draw import (
    BACKGROUND_LIGHTNESS,
    ITEM_CHROMA,
    ITEM_LIGHTNESS,
    Item,
    circumradius,
    dot_slots_per_side,
    grey,
    lch_to_rgb,
    render_items,
)
from saliency_probe.errors import ConfigError, InputFileError
from saliency_probe.io_utils import atomic_path, write_json, write_text

__all__ = [
    "DIMENSIONS",
    "METADATA_COLUMNS",
    "METADATA_FILE",
    "PARAMS_FILE",
    "ArrayPlan",
    "feature_values",
    "generate_popout",
    "ladder_fraction",
    "main",
    "normalise_dimensions",
    "plan_arrays",
    "read_params",
    "render_array",
    "target_cells",
]

DIMENSIONS = ("colour", "orientation", "size", "shape", "curvature", "luminance", "density")
_ALIASES = {"color": "colour", "luminosity": "luminance", "curve": "curvature"}
METADATA_COLUMNS = (
    "id",
    "dimension",
    "level",
    "target_value",
    "distractor_value",
    "grid",
    "target_cell",
    "seed",
)
EXTRA_COLUMNS = ("target_present", "polarity", "difference", "image_size")
FORMAT_NAME = "saliency_probe.popout"
FORMAT_VERSION = 1
PARAMS_FILE = "generator.json"
METADATA_FILE = "metadata.csv"

#: Strongest contrast of each ladder (level = levels - 1); level 0 is always no difference.
# colour: hue step 2 asin(t) (0..180 deg): the target-distractor Lab distance 2 C* t is linear in t
MAX_LOG2_SIZE = 1.0  # target/distractor size ratio 2**(+-t): 0.5 .. 2
MAX_BEND = 180.0  # deg of arc turning (semicircle) against a straight line of the same length
# luminance: distractors at L* 70, targets at 70 +- 25 t (always lighter than the L* 35 background)
MAX_LIGHTNESS_STEP = 25.0
MAX_LOG2_DENSITY = 2.0  # dot count ratio 2**(+-2t): 8 dots against 2 .. 32
DENSITY_DOTS = 8
ARC_LENGTH = 1.1  # arc length / base extent
DOTS_PATCH = 1.1  # dots patch side / base extent
SHAPE_SIDE = 0.85  # side of the equal-area square / base extent


@dataclass(frozen=True)
class ArrayPlan:
    """What array ``index`` shows: feature values, contrast level, polarity, target cell (-1: absent)."""

    index: int
    id: str
    dimension: str
    level: int
    polarity: int
    target_cell: int
    target_value: float
    distractor_value: float
    difference: float


def normalise_dimensions(dimensions: Sequence[str] | str | None) -> list[str]:
    """Validate dimension names (comma-separated string or list; ``None`` = all; 'color' is accepted)."""
    if dimensions is None:
        return list(DIMENSIONS)
    if isinstance(dimensions, str):
        dimensions = [part for part in dimensions.split(",") if part.strip()]
    names = [_ALIASES.get(str(name).strip().lower(), str(name).strip().lower()) for name in dimensions]
    unknown = [name for name in names if name not in DIMENSIONS]
    if unknown or not names:
        raise ConfigError(
            f"unknown pop-out dimension(s) {unknown or names} (data.generate.dimensions); "
            f"choose from {', '.join(DIMENSIONS)}"
        )
    if len(set(names)) != len(names):
        raise ConfigError(f"pop-out dimensions repeat (data.generate.dimensions): {names}")
    return names


def ladder_fraction(level: int, levels: int) -> float:
    """Contrast fraction t in [0, 1] of ``level`` (0 = no difference, levels - 1 = strongest)."""
    if levels < 2:
        raise ConfigError(
            f"levels must be >= 2 (level 0 is the no-difference control; data.generate.levels), got {levels}"
        )
    if not 0 <= level < levels:
        raise ValueError(f"level {level} outside 0..{levels - 1}")
    return level / (levels - 1)


def feature_values(dimension: str, t: float, polarity: int, base: float) -> tuple[float, float, float]:
    """``(target_value, distractor_value, difference)`` of ``dimension`` at contrast fraction ``t``.

    Units: colour hue (deg), orientation bar angle (deg, mod 180), size scale (distractor 1), shape roundness
    (0 square .. 1 circle), curvature bend (deg), luminance L*, density dot count. ``difference`` is the
    unsigned contrast in the dimension's own unit (hue/angle/bend deg, |log2 ratio| for size and density,
    roundness, L*). ``base`` is the array's random distractor hue or orientation.
    """
    if dimension == "colour":
        step = 2.0 * math.degrees(math.asin(t))
        return (base + polarity * step) % 360.0, base, step
    if dimension == "orientation":
        step = math.degrees(math.asin(t))
        return (base + polarity * step) % 180.0, base, step
    if dimension == "size":
        return 2.0 ** (polarity * MAX_LOG2_SIZE * t), 1.0, MAX_LOG2_SIZE * t
    if dimension == "shape":
        return (t, 0.0, t) if polarity > 0 else (1.0 - t, 1.0, t)
    if dimension == "curvature":
        return (MAX_BEND * t, 0.0, MAX_BEND * t) if polarity > 0 else (0.0, MAX_BEND * t, MAX_BEND * t)
    if dimension == "luminance":
        step = MAX_LIGHTNESS_STEP * t
        return ITEM_LIGHTNESS + polarity * step, ITEM_LIGHTNESS, step
    if dimension == "density":
        count = round(DENSITY_DOTS * 2.0 ** (polarity * MAX_LOG2_DENSITY * t))
        return float(count), float(DENSITY_DOTS), abs(math.log2(count / DENSITY_DOTS))
    raise ValueError(f"unknown pop-out dimension {dimension!r}; choose from {', '.join(DIMENSIONS)}")


def target_cells(count: int, grid: int, seed: int) -> np.ndarray:
    """Target cells of ``count`` target-present arrays: consecutive seeded permutations of all grid cells, so
    any prefix visits every cell a number of times differing by at most one."""
    cells = grid * grid
    rng = np.random.default_rng([seed, 0x706F70])
    cycles = [rng.permutation(cells) for _ in range(-(-count // cells))]
    return np.concatenate(cycles)[:count].astype(np.int64) if cycles else np.zeros(0, dtype=np.int64)


def plan_arrays(
    num: int, seed: int, grid: int, dimensions: list[str], levels: int, absent_fraction: float
) -> list[ArrayPlan]:
    """Assign to each array a dimension (cycling), a level (cycling within each dimension), a polarity
    (flipping after every full ladder), target presence (a seeded subset) and a target cell (balanced over
    the target-present arrays)."""
    if not 0.0 <= absent_fraction < 1.0:
        raise ConfigError(f"absent_fraction must be in [0, 1) (data.generate.absent_fraction), got {absent_fraction}")
    absent = set(
        np.random.default_rng([seed, 0x616273]).permutation(num)[: round(num * absent_fraction)].tolist()
    )
    cells = iter(target_cells(num - len(absent), grid, seed).tolist())
    width = max(5, len(str(num - 1)))
    plans = []
    for index in range(num):
        dimension = dimensions[index % len(dimensions)]
        within = index // len(dimensions)
        level = within % levels
        polarity = 1 if (within // levels) % 2 == 0 else -1
        base = float(np.random.default_rng([seed, 1, index]).uniform(0.0, 360.0))
        base = base % 180.0 if dimension == "orientation" else base
        target, distractor, difference = feature_values(
            dimension, ladder_fraction(level, levels), polarity, base
        )
        cell = -1 if index in absent else next(cells)
        plans.append(
            ArrayPlan(
                index, f"{index:0{width}d}", dimension, level, polarity, cell, target, distractor, difference
            )
        )
    return plans


def grid_cells(image_size: int, grid: int, margin: float) -> list[tuple[int, int, int, int]]:
    """Integer cell boxes ``(y0, y1, x0, x1)`` in row-major order, tiling the image minus a border margin."""
    border = int(round(margin * image_size))
    edges = [border + int(round(k * (image_size - 2 * border) / grid)) for k in range(grid + 1)]
    if min(b - a for a, b in zip(edges[:-1], edges[1:], strict=True)) < 4:
        raise ConfigError(
            f"image_size {image_size} is too small for a {grid}x{grid} grid with margin {margin} "
            "(data.generate.image_size, grid)"
        )
    return [(edges[r], edges[r + 1], edges[c], edges[c + 1]) for r in range(grid) for c in range(grid)]


def make_item(
    dimension: str, value: float, extent: float, common_angle: float, rng: np.random.Generator
) -> Item:
    """The item showing feature ``value`` of ``dimension``; ``extent`` is the base size in pixels."""
    neutral = grey(ITEM_LIGHTNESS)
    if dimension == "colour":
        return Item("disc", extent, lch_to_rgb(ITEM_LIGHTNESS, ITEM_CHROMA, value))
    if dimension == "orientation":
        return Item("bar", extent, neutral, angle=value)
    if dimension == "size":
        return Item("disc", extent * value, neutral)
    if dimension == "shape":
        return Item("roundrect", extent * SHAPE_SIDE, neutral, param=value)
    if dimension == "curvature":
        return Item("arc", extent * ARC_LENGTH, neutral, angle=common_angle, param=value)
    if dimension == "luminance":
        return Item("disc", extent, grey(value))
    if dimension == "density":
        slots = dot_slots_per_side()
        chosen = rng.choice(slots * slots, size=int(value), replace=False)
        dots = tuple(
            ((c % slots + 0.5) / slots - 0.5, (c // slots + 0.5) / slots - 0.5) for c in sorted(chosen)
        )
        return Item("dots", extent * DOTS_PATCH, neutral, dots=dots)
    raise ValueError(f"unknown pop-out dimension {dimension!r}; choose from {', '.join(DIMENSIONS)}")


def render_array(
    plan: ArrayPlan,
    seed: int,
    image_size: int,
    grid: int,
    margin: float,
    jitter: float,
    item_scale: float,
    supersample: int,
) -> tuple[np.ndarray, np.ndarray]:
    """Render one planned array: ``(rgb uint8 HxWx3, item instance map int32 HxW)``."""
    rng = np.random.default_rng([seed, 2, plan.index])
    cells = grid_cells(image_size, grid, margin)
    cell_size = min(min(y1 - y0, x1 - x0) for y0, y1, x0, x1 in cells)
    extent = item_scale * cell_size
    common_angle = float(rng.uniform(0.0, 360.0))
    items = [
        make_item(
            plan.dimension,
            plan.target_value if k == plan.target_cell else plan.distractor_value,
            extent,
            common_angle,
            rng,
        )
        for k in range(len(cells))
    ]
    # One jitter amplitude per array, small enough that the largest item stays 1 px inside its cell.
    largest = max(circumradius(item) for item in items)
    amplitude = min(jitter * cell_size, cell_size / 2.0 - largest - 1.0)
    if amplitude < 0.0:
        raise ConfigError(
            f"image_size {image_size} is too small for a {grid}x{grid} grid with item_scale {item_scale} "
            f"(data.generate.image_size, grid): items of radius {largest:.1f} px do not fit cells of {cell_size} px"
        )
    offsets = rng.uniform(-amplitude, amplitude, size=(len(cells), 2))
    centres = np.array([((x0 + x1) / 2.0, (y0 + y1) / 2.0) for y0, y1, x0, x1 in cells]) + offsets
    return render_items(items, centres, cells, image_size, grey(BACKGROUND_LIGHTNESS), supersample)


def _check_geometry(
    dimensions: list[str],
    seed: int,
    image_size: int,
    grid: int,
    margin: float,
    jitter: float,
    item_scale: float,
    supersample: int,
) -> None:
    """Render each dimension's strongest contrast in both polarities, so that items too large for their
    cells or too small to cover a pixel fail before anything is written."""
    for dimension in dimensions:
        for polarity in (1, -1):
            target, distractor, difference = feature_values(dimension, 1.0, polarity, 0.0)
            plan = ArrayPlan(0, "check", dimension, 1, polarity, 0, target, distractor, difference)
            try:
                render_array(plan, seed, image_size, grid, margin, jitter, item_scale, supersample)
            except ConfigError:
                raise
            except ValueError as error:  # an item reaches its cell's edge or covers no pixel
                raise ConfigError(f"pop-out {dimension} items (data.generate.image_size, grid): {error}") from error


def _save_png(path: Path, array: np.ndarray) -> None:
    with atomic_path(path) as temporary:
        Image.fromarray(array).save(temporary, format="PNG")


def _metadata_text(plans: list[ArrayPlan], grid: int, seed: int, image_size: int) -> str:
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(METADATA_COLUMNS + EXTRA_COLUMNS)
    for plan in plans:
        present = plan.target_cell >= 0
        target = f"{plan.target_value:.6g}" if present else ""
        writer.writerow(
            [
                plan.id,
                plan.dimension,
                plan.level,
                target,
                f"{plan.distractor_value:.6g}",
                grid,
                plan.target_cell,
                seed,
                int(present),
                plan.polarity,
                f"{plan.difference:.6g}",
                image_size,
            ]
        )
    return buffer.getvalue()


def read_params(root: Path) -> dict[str, Any] | None:
    """The generator parameters stored in ``root/generator.json`` (None when there is none)."""
    path = root / PARAMS_FILE
    if not path.is_file():
        return None
    try:
        stored = json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as error:
        raise InputFileError(f"{path} is not valid JSON ({error}); expected the pop-out generator's parameter file") from error
    if not isinstance(stored, dict) or stored.get("format") != FORMAT_NAME:
        raise InputFileError(f"{path} is not a {FORMAT_NAME} parameter file")
    return {key: value for key, value in stored.items() if key not in ("format", "version")}


def generate_popout(
    out: str | os.PathLike[str],
    num: int,
    seed: int = 0,
    image_size: int = 448,
    grid: int = 7,
    dimensions: Sequence[str] | str | None = None,
    levels: int = 5,
    absent_fraction: float = 0.0,
    margin: float = 0.06,
    jitter: float = 0.1,
    item_scale: float = 0.35,
    supersample: int = 4,
) -> Path:
    """Write ``num`` pop-out arrays to ``out`` (deterministic per ``seed``) and return ``out``.

    ``margin`` is the empty border as a fraction of ``image_size``; ``jitter`` the largest item displacement
    as a fraction of the cell size; ``item_scale`` the distractor extent as a fraction of the cell size;
    ``supersample`` the sub-pixels per pixel side used for anti-aliasing and masks. A folder that already
    holds a complete set with the same parameters is returned unchanged (an interrupted one is
    finished); one with different parameters, or holding other files, is refused.
    """
    if num < 1:
        raise ConfigError(f"num must be >= 1 (data.generate.num), got {num}")
    if grid < 1 or image_size < 8 or supersample < 1:
        raise ConfigError(
            f"pop-out generator: need grid >= 1, image_size >= 8 and supersample >= 1 (data.generate.*), "
            f"got grid={grid}, image_size={image_size}, supersample={supersample}"
        )
    if not 0.0 <= margin < 0.5 or not 0.0 <= jitter < 0.5 or not 0.0 < item_scale <= 0.5:
        raise ConfigError(
            f"pop-out generator: need 0 <= margin < 0.5, 0 <= jitter < 0.5, 0 < item_scale <= 0.5, "
            f"got margin={margin}, jitter={jitter}, item_scale={item_scale}"
        )
    params = {
        "num": int(num),
        "seed": int(seed),
        "image_size": int(image_size),
        "grid": int(grid),
        "dimensions": normalise_dimensions(dimensions),
        "levels": int(levels),
        "absent_fraction": float(absent_fraction),
        "margin": float(margin),
        "jitter": float(jitter),
        "item_scale": float(item_scale),
        "supersample": int(supersample),
    }
    root = Path(out)
    if root.exists() and not root.is_dir():
        raise InputFileError(f"pop-out output {root} exists and is not a folder; expected a folder for the set")
    stored = read_params(root) if root.is_dir() else None
    if stored is not None and stored != params:
        changed = sorted(key for key in set(stored) | set(params) if stored.get(key) != params.get(key))
        details = ", ".join(f"{key}: {stored.get(key)!r} -> {params.get(key)!r}" for key in changed)
        raise InputFileError(
            f"{root} already holds a pop-out set made with other parameters ({details}); "
            "choose another folder or delete it"
        )
    if stored is None and root.is_dir() and any(root.iterdir()):
        raise InputFileError(
            f"{root} is not empty and holds no {PARAMS_FILE}: refusing to write a pop-out set there"
        )
    if stored is not None and (root / METADATA_FILE).is_file():
        return root
    plans = plan_arrays(num, seed, grid, params["dimensions"], levels, absent_fraction)
    _check_geometry(params["dimensions"], seed, image_size, grid, margin, jitter, item_scale, supersample)
    write_json(root / PARAMS_FILE, {"format": FORMAT_NAME, "version": FORMAT_VERSION, **params})
    for plan in plans:
        rgb, labels = render_array(plan, seed, image_size, grid, margin, jitter, item_scale, supersample)
        target = (
            (labels == plan.target_cell + 1) if plan.target_cell >= 0 else np.zeros_like(labels, dtype=bool)
        )
        _save_png(root / "images" / f"{plan.id}.png", rgb)
        _save_png(root / "masks" / "target" / f"{plan.id}.png", target.astype(np.uint8) * 255)
        _save_png(
            root / "masks" / "items" / f"{plan.id}.png",
            labels.astype(np.uint8 if grid * grid <= 255 else np.uint16),
        )
    write_text(root / METADATA_FILE, _metadata_text(plans, grid, seed, image_size))
    return root


def main(argv: Sequence[str] | None = None) -> Path:
    """``python -m saliency_probe.data.popout --out DIR --num N --seed S [--image-size ...]``."""
    parser = argparse.ArgumentParser(
        description="Generate procedural pop-out search arrays with exact masks."
    )
    parser.add_argument("--out", required=True, help="output folder (must be empty or hold the same set)")
    parser.add_argument("--num", type=int, required=True, help="number of arrays")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--image-size", type=int, default=448)
    parser.add_argument("--grid", type=int, default=7, help="items per row and column")
    parser.add_argument(
        "--dimensions",
        nargs="+",
        default=None,
        help=f"feature dimensions (space or comma separated; default all: {' '.join(DIMENSIONS)})",
    )
    parser.add_argument(
        "--levels", type=int, default=5, help="contrast steps per dimension (0 = no difference)"
    )
    parser.add_argument("--absent-fraction", type=float, default=0.0, help="fraction of target-absent arrays")
    args = parser.parse_args(argv)
    dimensions = None if args.dimensions is None else ",".join(args.dimensions)
    root = generate_popout(
        args.out,
        num=args.num,
        seed=args.seed,
        image_size=args.image_size,
        grid=args.grid,
        dimensions=dimensions,
        levels=args.levels,
        absent_fraction=args.absent_fraction,
    )
    print(f"pop-out set with {args.num} arrays in {root}")
    return root
