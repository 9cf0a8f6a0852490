"""Drawing primitives of the pop-out generator: colours, item outlines and anti-aliased rendering.

Every item is a set of filled polygons in local pixel coordinates (centre at 0, x right, y down). Rendering
fills them at ``supersample`` times the image resolution and averages each block of sub-pixels: the average is
the item's exact area coverage of a pixel, used both to blend the colour (anti-aliased image) and, thresholded
at 0.5, as the item's boolean mask. Reading the same image's anti-aliased mask back and thresholding at 128
therefore gives the same pixels. Each item is rendered inside its own grid cell, so items never overlap.
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

#: Colour constants in CIE L*a*b* / L*C*h (D65, sRGB). The background is a neutral grey; items are lighter.
BACKGROUND_LIGHTNESS = 35.0
ITEM_LIGHTNESS = 70.0
#: Chroma of coloured items: every hue at L* = 70, C* = 35 lies inside the sRGB gamut.
ITEM_CHROMA = 35.0
#: Fixed-point bits used by ``cv2.fillPoly`` (sub-pixel vertex precision 1/16 of a high-resolution pixel).
_SHIFT = 4
_CIRCLE_VERTICES = 96
SHAPES = ("disc", "bar", "roundrect", "arc", "dots")


def lch_to_rgb(lightness: float, chroma: float, hue_deg: float) -> tuple[float, float, float]:
    """sRGB (0..255 floats) of a CIE L*C*h colour, via OpenCV's float Lab->RGB (D65, sRGB gamma).

    Raises ``ValueError`` when the colour lies outside the sRGB gamut (OpenCV clips silently; a round trip
    back to Lab detects it).
    """
    hue = np.deg2rad(hue_deg)
    lab = np.array([[[lightness, chroma * np.cos(hue), chroma * np.sin(hue)]]], dtype=np.float32)
    rgb = cv2.cvtColor(lab, cv2.COLOR_Lab2RGB)
    back = cv2.cvtColor(rgb, cv2.COLOR_RGB2Lab)
    if float(np.abs(back - lab).max()) > 0.5:
        raise ValueError(f"L*C*h ({lightness}, {chroma}, {hue_deg}) lies outside the sRGB gamut")
    red, green, blue = (float(value) * 255.0 for value in rgb[0, 0])
    return red, green, blue


def grey(lightness: float) -> tuple[float, float, float]:
    """sRGB (0..255 floats) of the neutral grey with CIE lightness ``lightness``."""
    return lch_to_rgb(lightness, 0.0, 0.0)


@dataclass(frozen=True)
class Item:
    """One search item. ``size`` is its main extent in image pixels: disc diameter, bar length, square side
    (of the square with the same area for rounded squares), arc length, or side of a dots patch.

    ``angle`` is in degrees counter-clockwise from horizontal as seen on screen; ``param`` is the roundness
    (0 square .. 1 disc) of a ``roundrect`` or the bend (total turning angle, degrees) of an ``arc``; ``dots``
    holds dot centres in units of ``size`` relative to the patch centre.
    """

    shape: str
    size: float
    colour: tuple[float, float, float]
    angle: float = 0.0
    param: float = 0.0
    dots: tuple[tuple[float, float], ...] = ()


BAR_WIDTH = 0.25  # bar width / length
ARC_WIDTH = 0.18  # stroke width / arc length
DOT_RADIUS = 0.35  # dot radius / slot size of a dots patch


def _circle(
    radius: float, centre: tuple[float, float] = (0.0, 0.0), vertices: int = _CIRCLE_VERTICES
) -> np.ndarray:
    angles = np.linspace(0.0, 2.0 * np.pi, vertices, endpoint=False)
    return np.stack([centre[0] + radius * np.cos(angles), centre[1] + radius * np.sin(angles)], axis=1)


def _rotate(points: np.ndarray, angle_deg: float) -> np.ndarray:
    """Rotate counter-clockwise on screen (image y points down)."""
    angle = np.deg2rad(angle_deg)
    cos, sin = np.cos(angle), np.sin(angle)
    return np.stack(
        [points[:, 0] * cos + points[:, 1] * sin, -points[:, 0] * sin + points[:, 1] * cos], axis=1
    )


def roundrect_side(area_side: float, roundness: float) -> float:
    """Side of the rounded square (corner radius ``roundness * side / 2``) whose area is ``area_side**2``."""
    return area_side / np.sqrt(1.0 - (4.0 - np.pi) * roundness**2 / 4.0)


def _roundrect(area_side: float, roundness: float) -> np.ndarray:
    side = roundrect_side(area_side, roundness)
    radius = roundness * side / 2.0
    inner = side / 2.0 - radius
    corners = [(inner, inner, 0.0), (-inner, inner, 90.0), (-inner, -inner, 180.0), (inner, -inner, 270.0)]
    steps = max(2, _CIRCLE_VERTICES // 4)
    points = []
    for cx, cy, start in corners:
        angles = np.deg2rad(start + np.linspace(0.0, 90.0, steps))
        points.append(np.stack([cx + radius * np.cos(angles), cy + radius * np.sin(angles)], axis=1))
    return np.concatenate(points)


def _arc(length: float, bend_deg: float) -> np.ndarray:
    """Outline of a stroke of constant width along an arc of given length and turning angle, round caps.

    Centred on the middle of its bounding box along the bend direction; horizontal chord; bulges upwards.
    """
    width = ARC_WIDTH * length
    bend = np.deg2rad(bend_deg)
    s = np.linspace(-0.5, 0.5, _CIRCLE_VERTICES) * length
    if bend < 1e-6:
        centre = np.stack([s, np.zeros_like(s)], axis=1)
        normal = np.tile([0.0, -1.0], (len(s), 1))
    else:
        radius = length / bend
        alpha = s / radius
        centre = np.stack([radius * np.sin(alpha), -radius * (np.cos(alpha) - np.cos(bend / 2.0))], axis=1)
        centre[:, 1] += radius * (1.0 - np.cos(bend / 2.0)) / 2.0
        normal = np.stack([np.sin(alpha), -np.cos(alpha)], axis=1)
    outer = centre + normal * width / 2.0
    inner = centre - normal * width / 2.0
    cap = np.linspace(0.0, np.pi, _CIRCLE_VERTICES // 2)[1:-1]

    def half_circle(point: np.ndarray, from_dir: np.ndarray) -> np.ndarray:
        # The normal is the tangent turned by -90 deg, so increasing angles sweep around the stroke's end.
        start = np.arctan2(from_dir[1], from_dir[0]) + cap
        return np.stack(
            [point[0] + width / 2.0 * np.cos(start), point[1] + width / 2.0 * np.sin(start)], axis=1
        )

    # Outer side forwards, cap around the end, inner side backwards, cap around the start.
    return np.concatenate(
        [outer, half_circle(centre[-1], normal[-1]), inner[::-1], half_circle(centre[0], -normal[0])]
    )


def item_polygons(item: Item) -> tuple[list[np.ndarray], list[np.ndarray]]:
    """``(ink, footprint)`` polygons in local pixel coordinates. The footprint (the item's mask) equals the
    ink except for ``dots`` patches, whose footprint is the whole square patch."""
    if item.shape == "disc":
        ink = [_circle(item.size / 2.0)]
    elif item.shape == "bar":
        half_l, half_w = item.size / 2.0, BAR_WIDTH * item.size / 2.0
        ink = [
            _rotate(
                np.array([[-half_l, -half_w], [half_l, -half_w], [half_l, half_w], [-half_l, half_w]]),
                item.angle,
            )
        ]
    elif item.shape == "roundrect":
        ink = [_rotate(_roundrect(item.size, item.param), item.angle)]
    elif item.shape == "arc":
        ink = [_rotate(_arc(item.size, item.param), item.angle)]
    elif item.shape == "dots":
        half = item.size / 2.0
        square = np.array([[-half, -half], [half, -half], [half, half], [-half, half]])
        radius = DOT_RADIUS * item.size / dot_slots_per_side()
        ink = [_circle(radius, (x * item.size, y * item.size), 32) for x, y in item.dots]
        return ink, [square]
    else:
        raise ValueError(f"unknown item shape {item.shape!r}; expected one of {SHAPES}")
    return ink, ink


def dot_slots_per_side() -> int:
    """Dots of a density patch sit on a ``k x k`` lattice of slots (k = 6: at most 36 dots)."""
    return 6


def circumradius(item: Item) -> float:
    """Largest distance of any ink or footprint point from the item centre (image pixels)."""
    ink, footprint = item_polygons(item)
    return float(max(np.hypot(poly[:, 0], poly[:, 1]).max() for poly in ink + footprint))


def _fill(
    shape_hw: tuple[int, int], polygons: list[np.ndarray], offset_xy: np.ndarray, scale: int
) -> np.ndarray:
    """Boolean high-resolution raster of ``polygons`` translated by ``offset_xy`` (low-resolution pixels).

    Continuous coordinate x (pixel i spans [i, i+1)) maps to OpenCV's pixel-centre coordinate x*scale - 0.5.
    """
    canvas = np.zeros(shape_hw, dtype=np.uint8)
    points = [
        np.round(((poly + offset_xy) * scale - 0.5) * (1 << _SHIFT)).astype(np.int32).reshape(-1, 1, 2)
        for poly in polygons
    ]
    cv2.fillPoly(canvas, points, 1, lineType=cv2.LINE_8, shift=_SHIFT)
    return canvas


def _block_count(canvas: np.ndarray, scale: int) -> np.ndarray:
    """Number of set sub-pixels in each ``scale x scale`` block (the pixel's coverage times ``scale**2``)."""
    height, width = canvas.shape[0] // scale, canvas.shape[1] // scale
    return canvas.reshape(height, scale, width, scale).sum(axis=(1, 3), dtype=np.int32)


def render_items(
    items: list[Item],
    centres_xy: np.ndarray,
    cells: list[tuple[int, int, int, int]],
    image_size: int,
    background: tuple[float, float, float],
    supersample: int = 4,
) -> tuple[np.ndarray, np.ndarray]:
    """Render ``items`` (item k centred at ``centres_xy[k]`` inside cell ``cells[k] = (y0, y1, x0, x1)``).

    Returns ``(rgb, labels)``: the ``image_size``-square anti-aliased uint8 RGB image and the int32 instance
    map (item k -> k + 1, 0 background) holding the pixels whose coverage by the item's footprint is >= 0.5.
    Raises ``ValueError`` if an item reaches its cell's edge or covers no pixel (the image is too small).
    """
    rgb = np.empty((image_size, image_size, 3), dtype=np.float64)
    rgb[:] = background
    labels = np.zeros((image_size, image_size), dtype=np.int32)
    bg = np.asarray(background, dtype=np.float64)
    for index, (item, centre, (y0, y1, x0, x1)) in enumerate(zip(items, centres_xy, cells, strict=True)):
        shape_hr = ((y1 - y0) * supersample, (x1 - x0) * supersample)
        offset = np.asarray(centre, dtype=np.float64) - np.array([x0, y0], dtype=np.float64)
        ink_polys, foot_polys = item_polygons(item)
        ink = _fill(shape_hr, ink_polys, offset, supersample)
        foot = ink if foot_polys is ink_polys else _fill(shape_hr, foot_polys, offset, supersample)
        if foot[0].any() or foot[-1].any() or foot[:, 0].any() or foot[:, -1].any():
            raise ValueError(
                f"item {index + 1} ({item.shape}, size {item.size:.2f} px) reaches the edge of its cell: "
                "the image is too small for this grid (raise image_size or lower grid)"
            )
        coverage = _block_count(ink, supersample) / supersample**2
        mask = 2 * _block_count(foot, supersample) >= supersample**2
        if not mask.any():
            raise ValueError(
                f"item {index + 1} ({item.shape}, size {item.size:.2f} px) covers no pixel: "
                "the image is too small for this grid (raise image_size or lower grid)"
            )
        colour = np.asarray(item.colour, dtype=np.float64)
        rgb[y0:y1, x0:x1] = bg + coverage[..., None] * (colour - bg)
        labels[y0:y1, x0:x1][mask] = index + 1
    return np.clip(np.rint(rgb), 0, 255).astype(np.uint8), labels
