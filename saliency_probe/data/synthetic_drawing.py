"""Simple, distinguishable renderings of the paper's 12 salient categories and of scene backgrounds.

Each drawer paints one object into a transparent RGBA layer of its bounding box with PIL primitives; the
layer's alpha is the object's region mask. All randomness comes from the caller's ``numpy`` Generator, so a
seed fixes every pixel.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
from PIL import Image, ImageDraw, ImageFont

Colour = tuple[int, int, int]
Drawer = Callable[[ImageDraw.ImageDraw, int, int, np.random.Generator], None]

SKIN: list[Colour] = [(241, 194, 160), (224, 172, 105), (198, 134, 66), (141, 85, 36), (255, 219, 172)]
HAIR: list[Colour] = [(40, 30, 20), (90, 60, 30), (20, 20, 20), (170, 120, 60), (120, 120, 120)]
FUR: list[Colour] = [(150, 100, 50), (110, 110, 110), (220, 140, 60), (60, 50, 40), (230, 220, 200)]
BRIGHT: list[Colour] = [(220, 40, 40), (40, 90, 220), (250, 200, 30), (30, 160, 80), (240, 120, 20), (150, 50, 180)]
WORDS = ["OPEN", "SALE", "STOP", "CAFE", "EXIT", "BUS", "HOTEL", "PARK", "BAR", "NEWS", "TAXI", "SHOP", "MENU"]
#: Width / height of each category's bounding box.
ASPECT: dict[str, float] = {
    "person head": 0.8,
    "person part": 0.8,
    "animal head": 1.0,
    "animal part": 1.6,
    "object": 1.0,
    "text": 2.4,
    "symbol": 1.0,
    "vehicle": 1.9,
    "food": 1.3,
    "plant": 0.7,
    "drink": 0.6,
    "other": 1.0,
}


def _pick(rng: np.random.Generator, colours: list[Colour]) -> Colour:
    return colours[int(rng.integers(len(colours)))]


def _person_head(draw: ImageDraw.ImageDraw, w: int, h: int, rng: np.random.Generator) -> None:
    draw.ellipse([0, 0, w - 1, int(h * 0.75)], fill=_pick(rng, HAIR))
    draw.ellipse([int(w * 0.1), int(h * 0.12), int(w * 0.9), h - 1], fill=_pick(rng, SKIN))
    eye_y, eye_r = int(h * 0.48), max(1, w // 12)
    for eye_x in (int(w * 0.33), int(w * 0.67)):
        draw.ellipse([eye_x - eye_r, eye_y - eye_r, eye_x + eye_r, eye_y + eye_r], fill=(30, 30, 30))
    draw.line([int(w * 0.5), int(h * 0.55), int(w * 0.47), int(h * 0.68)], fill=(120, 70, 50), width=1)
    draw.arc([int(w * 0.3), int(h * 0.62), int(w * 0.7), int(h * 0.85)], 20, 160, fill=(150, 40, 40), width=2)


def _person_part(draw: ImageDraw.ImageDraw, w: int, h: int, rng: np.random.Generator) -> None:
    shirt, skin = _pick(rng, BRIGHT), _pick(rng, SKIN)
    draw.rectangle([int(w * 0.25), 0, int(w * 0.75), int(h * 0.7)], fill=shirt)
    arm = max(2, w // 7)
    draw.rectangle([0, int(h * 0.05), int(w * 0.25), int(h * 0.05) + arm], fill=shirt)
    draw.rectangle([int(w * 0.75), int(h * 0.05), w - 1, int(h * 0.05) + arm], fill=shirt)
    draw.rectangle([int(w * 0.3), int(h * 0.7), int(w * 0.47), h - 1], fill=(40, 50, 90))
    draw.rectangle([int(w * 0.53), int(h * 0.7), int(w * 0.7), h - 1], fill=(40, 50, 90))
    draw.ellipse([0, int(h * 0.05), arm, int(h * 0.05) + arm], fill=skin)


def _animal_head(draw: ImageDraw.ImageDraw, w: int, h: int, rng: np.random.Generator) -> None:
    fur = _pick(rng, FUR)
    draw.polygon([(0, 0), (int(w * 0.35), int(h * 0.25)), (int(w * 0.1), int(h * 0.45))], fill=fur)
    draw.polygon([(w - 1, 0), (int(w * 0.65), int(h * 0.25)), (int(w * 0.9), int(h * 0.45))], fill=fur)
    draw.ellipse([int(w * 0.05), int(h * 0.15), int(w * 0.95), h - 1], fill=fur)
    eye_r = max(1, w // 12)
    for eye_x in (int(w * 0.33), int(w * 0.67)):
        draw.ellipse([eye_x - eye_r, int(h * 0.45) - eye_r, eye_x + eye_r, int(h * 0.45) + eye_r], fill=(20, 120, 40))
    draw.polygon([(int(w * 0.42), int(h * 0.62)), (int(w * 0.58), int(h * 0.62)), (w // 2, int(h * 0.72))], fill=(30, 20, 20))
    for side in (-1, 1):
        draw.line([w // 2, int(h * 0.72), w // 2 + side * int(w * 0.4), int(h * 0.68)], fill=(20, 20, 20), width=1)


def _animal_part(draw: ImageDraw.ImageDraw, w: int, h: int, rng: np.random.Generator) -> None:
    fur = _pick(rng, FUR)
    leg = max(2, w // 14)
    for x in (0.2, 0.35, 0.65, 0.8):
        draw.rectangle([int(w * x), int(h * 0.5), int(w * x) + leg, h - 1], fill=fur)
    draw.ellipse([int(w * 0.1), int(h * 0.15), int(w * 0.95), int(h * 0.75)], fill=fur)
    draw.line([int(w * 0.12), int(h * 0.4), 0, 0], fill=fur, width=max(2, leg // 2))
    draw.ellipse([int(w * 0.4), int(h * 0.3), int(w * 0.6), int(h * 0.5)], fill=tuple(c // 2 for c in fur))


def _object(draw: ImageDraw.ImageDraw, w: int, h: int, rng: np.random.Generator) -> None:
    colour = _pick(rng, [(180, 130, 80), (160, 160, 170), (90, 60, 40), (200, 200, 190)])
    if rng.random() < 0.5:  # a box with a lid
        draw.polygon([(0, int(h * 0.3)), (int(w * 0.25), 0), (w - 1, 0), (int(w * 0.75), int(h * 0.3))], fill=colour)
        draw.rectangle([0, int(h * 0.3), int(w * 0.75), h - 1], fill=tuple(int(c * 0.8) for c in colour))
        draw.polygon([(int(w * 0.75), int(h * 0.3)), (w - 1, 0), (w - 1, int(h * 0.7)), (int(w * 0.75), h - 1)],
                     fill=tuple(int(c * 0.6) for c in colour))
    else:  # a chair
        draw.rectangle([int(w * 0.15), 0, int(w * 0.3), h - 1], fill=colour)
        draw.rectangle([int(w * 0.15), int(h * 0.5), int(w * 0.85), int(h * 0.6)], fill=colour)
        draw.rectangle([int(w * 0.72), int(h * 0.6), int(w * 0.85), h - 1], fill=colour)


def _fit_font(draw: ImageDraw.ImageDraw, word: str, w: int, h: int) -> ImageFont.FreeTypeFont:
    size = max(6, int(h * 0.7))
    while True:
        font = ImageFont.load_default(size=size)
        left, top, right, bottom = draw.textbbox((0, 0), word, font=font)
        if (right - left <= w * 0.9 and bottom - top <= h * 0.8) or size <= 6:
            return font
        size -= 1


def _text(draw: ImageDraw.ImageDraw, w: int, h: int, rng: np.random.Generator) -> None:
    plate, ink = ((250, 250, 240), (10, 10, 10)) if rng.random() < 0.6 else ((20, 60, 140), (255, 255, 255))
    draw.rectangle([0, 0, w - 1, h - 1], fill=plate)
    word = WORDS[int(rng.integers(len(WORDS)))]
    font = _fit_font(draw, word, w, h)
    draw.text((w / 2, h / 2), word, fill=ink, font=font, anchor="mm")


def _symbol(draw: ImageDraw.ImageDraw, w: int, h: int, rng: np.random.Generator) -> None:
    kind = int(rng.integers(3))
    if kind == 0:  # no entry
        draw.ellipse([0, 0, w - 1, h - 1], fill=(210, 20, 30))
        draw.rectangle([int(w * 0.18), int(h * 0.42), int(w * 0.82), int(h * 0.58)], fill=(255, 255, 255))
    elif kind == 1:  # arrow
        draw.ellipse([0, 0, w - 1, h - 1], fill=(20, 70, 200))
        draw.polygon([(int(w * 0.2), int(h * 0.42)), (int(w * 0.55), int(h * 0.42)), (int(w * 0.55), int(h * 0.25)),
                      (int(w * 0.82), h // 2), (int(w * 0.55), int(h * 0.75)), (int(w * 0.55), int(h * 0.58)),
                      (int(w * 0.2), int(h * 0.58))], fill=(255, 255, 255))
    else:  # warning triangle
        draw.polygon([(w // 2, 0), (w - 1, h - 1), (0, h - 1)], fill=(250, 210, 0))
        draw.rectangle([int(w * 0.46), int(h * 0.35), int(w * 0.54), int(h * 0.72)], fill=(0, 0, 0))
        draw.rectangle([int(w * 0.46), int(h * 0.8), int(w * 0.54), int(h * 0.88)], fill=(0, 0, 0))


def _vehicle(draw: ImageDraw.ImageDraw, w: int, h: int, rng: np.random.Generator) -> None:
    body = _pick(rng, BRIGHT)
    draw.polygon([(int(w * 0.22), int(h * 0.4)), (int(w * 0.32), int(h * 0.05)), (int(w * 0.7), int(h * 0.05)),
                  (int(w * 0.8), int(h * 0.4))], fill=body)
    draw.polygon([(int(w * 0.3), int(h * 0.38)), (int(w * 0.36), int(h * 0.12)), (int(w * 0.66), int(h * 0.12)),
                  (int(w * 0.72), int(h * 0.38))], fill=(170, 210, 240))
    draw.rectangle([0, int(h * 0.4), w - 1, int(h * 0.78)], fill=body)
    radius = int(h * 0.2)
    for cx in (int(w * 0.22), int(w * 0.78)):
        draw.ellipse([cx - radius, h - 1 - 2 * radius, cx + radius, h - 1], fill=(20, 20, 20))
        draw.ellipse([cx - radius // 2, h - 1 - radius - radius // 2, cx + radius // 2, h - 1 - radius // 2],
                     fill=(170, 170, 170))


def _food(draw: ImageDraw.ImageDraw, w: int, h: int, rng: np.random.Generator) -> None:
    draw.ellipse([0, int(h * 0.3), w - 1, h - 1], fill=(245, 245, 245))
    if rng.random() < 0.5:  # pizza slice
        draw.polygon([(int(w * 0.15), int(h * 0.75)), (int(w * 0.85), int(h * 0.75)), (w // 2, 0)], fill=(240, 180, 60))
        for fx, fy in ((0.45, 0.45), (0.55, 0.62), (0.38, 0.65)):
            r = max(1, w // 16)
            draw.ellipse([int(w * fx) - r, int(h * fy) - r, int(w * fx) + r, int(h * fy) + r], fill=(190, 30, 30))
    else:  # fruit
        for fx, colour in ((0.3, (220, 30, 30)), (0.55, (250, 150, 0)), (0.75, (120, 200, 40))):
            r = int(min(w, h) * 0.2)
            draw.ellipse([int(w * fx) - r, int(h * 0.5) - r, int(w * fx) + r, int(h * 0.5) + r], fill=colour)


def _plant(draw: ImageDraw.ImageDraw, w: int, h: int, rng: np.random.Generator) -> None:
    green = _pick(rng, [(30, 130, 40), (60, 160, 60), (20, 100, 50)])
    draw.polygon([(int(w * 0.2), int(h * 0.72)), (int(w * 0.8), int(h * 0.72)), (int(w * 0.7), h - 1),
                  (int(w * 0.3), h - 1)], fill=(160, 80, 40))
    draw.line([w // 2, int(h * 0.72), w // 2, int(h * 0.2)], fill=(40, 90, 30), width=max(1, w // 12))
    for fx, fy in ((0.3, 0.3), (0.7, 0.35), (0.35, 0.55), (0.68, 0.58), (0.5, 0.12)):
        rx, ry = int(w * 0.22), int(h * 0.1)
        draw.ellipse([int(w * fx) - rx, int(h * fy) - ry, int(w * fx) + rx, int(h * fy) + ry], fill=green)


def _drink(draw: ImageDraw.ImageDraw, w: int, h: int, rng: np.random.Generator) -> None:
    if rng.random() < 0.5:  # bottle
        glass = _pick(rng, [(30, 120, 50), (120, 70, 20), (60, 110, 200)])
        draw.rectangle([int(w * 0.35), 0, int(w * 0.65), int(h * 0.3)], fill=glass)
        draw.rounded_rectangle([0, int(h * 0.25), w - 1, h - 1], radius=max(1, w // 5), fill=glass)
        draw.rectangle([0, int(h * 0.5), w - 1, int(h * 0.7)], fill=(240, 240, 230))
    else:  # cup of coffee with a handle
        draw.ellipse([int(w * 0.6), int(h * 0.3), w - 1, int(h * 0.65)], fill=(230, 230, 230))
        draw.polygon([(0, int(h * 0.2)), (int(w * 0.8), int(h * 0.2)), (int(w * 0.7), h - 1), (int(w * 0.1), h - 1)],
                     fill=_pick(rng, [(250, 250, 250), (200, 40, 40), (40, 80, 160)]))
        draw.ellipse([0, int(h * 0.12), int(w * 0.8), int(h * 0.28)], fill=(90, 50, 20))


def _other(draw: ImageDraw.ImageDraw, w: int, h: int, rng: np.random.Generator) -> None:
    count = int(rng.integers(5, 9))
    angles = np.sort(rng.uniform(0, 2 * np.pi, count))
    radii = rng.uniform(0.5, 1.0, count)
    points = [(float((1 + r * np.cos(a)) * (w - 1) / 2), float((1 + r * np.sin(a)) * (h - 1) / 2))
              for a, r in zip(angles, radii, strict=True)]
    draw.polygon(points, fill=_pick(rng, BRIGHT))


DRAWERS: dict[str, Drawer] = {
    "person head": _person_head,
    "person part": _person_part,
    "animal head": _animal_head,
    "animal part": _animal_part,
    "object": _object,
    "text": _text,
    "symbol": _symbol,
    "vehicle": _vehicle,
    "food": _food,
    "plant": _plant,
    "drink": _drink,
    "other": _other,
}


def render_object(category: str, width: int, height: int, rng: np.random.Generator) -> Image.Image:
    """An RGBA layer of ``width x height`` with one object of ``category``; alpha > 0 marks its pixels."""
    layer = Image.new("RGBA", (width, height), (0, 0, 0, 0))
    DRAWERS[category](ImageDraw.Draw(layer), width, height, rng)
    return layer


def background(height: int, width: int, top: Colour, bottom: Colour, rng: np.random.Generator) -> Image.Image:
    """Vertical gradient from ``top`` to ``bottom`` with mild noise (so images are not trivially flat)."""
    ramp = np.linspace(0.0, 1.0, height)[:, None, None]
    image = (1 - ramp) * np.array(top, dtype=np.float64) + ramp * np.array(bottom, dtype=np.float64)
    image = np.broadcast_to(image, (height, width, 3)) + rng.normal(0.0, 6.0, (height, width, 3))
    return Image.fromarray(np.clip(image, 0, 255).astype(np.uint8)).convert("RGBA")
