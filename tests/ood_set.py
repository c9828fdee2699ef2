"""Images that are not dermoscopy, made from what is on disk: the out-of-domain test set.

Synthetic images (solid colours, noise, gradients, checkerboards, rendered text,
camera test patterns) plus the photos that ship inside installed packages
(scikit-learn's ``china.jpg`` and ``flower.jpg``, whole and cropped). Used by
the tests; ``evaluate`` measures the real images of ``../shared/data/not_dermoscopy`` instead.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw, ImageFont

SIZE = (320, 240)


def _solid(rng) -> list[Image.Image]:
    colours = [
        (0, 0, 0),
        (255, 255, 255),
        (128, 128, 128),
        (255, 0, 0),
        (0, 160, 0),
        (20, 40, 200),
        (224, 172, 150),
        (90, 60, 40),
    ]  # the last two: skin and brown, still no lesion
    return [Image.new("RGB", SIZE, c) for c in colours]


def _noise(rng) -> list[Image.Image]:
    w, h = SIZE
    out = [
        Image.fromarray(rng.integers(0, 256, (h, w, 3), dtype=np.uint8)),
        Image.fromarray(np.repeat(rng.integers(0, 256, (h, w, 1), dtype=np.uint8), 3, axis=2)),
    ]
    for sigma in (20, 60):
        base = rng.integers(60, 200, 3)
        out.append(Image.fromarray(np.clip(base + rng.normal(0, sigma, (h, w, 3)), 0, 255).astype(np.uint8)))
    blocks = rng.integers(0, 256, (h // 20, w // 20, 3), dtype=np.uint8)
    out.append(Image.fromarray(blocks).resize(SIZE, Image.Resampling.NEAREST))
    return out


def _gradients(rng) -> list[Image.Image]:
    w, h = SIZE
    x = np.linspace(0, 1, w)[None, :, None]
    y = np.linspace(0, 1, h)[:, None, None]
    r = np.sqrt((x - 0.5) ** 2 + (y - 0.5) ** 2) / 0.71
    out = []
    for a, b in (((0, 0, 0), (255, 255, 255)), ((255, 0, 0), (0, 0, 255)), ((250, 220, 200), (120, 60, 40))):
        a, b = np.array(a), np.array(b)
        out.append(Image.fromarray((a + (b - a) * x + 0 * y).astype(np.uint8)))
        out.append(Image.fromarray((a + (b - a) * r).astype(np.uint8)))
    return out


def _checkerboards(rng) -> list[Image.Image]:
    w, h = SIZE
    out = []
    for cell, (a, b) in (
        (8, ((0, 0, 0), (255, 255, 255))),
        (24, ((0, 0, 0), (255, 255, 255))),
        (40, ((200, 30, 30), (30, 30, 200))),
        (16, ((230, 200, 180), (140, 90, 70))),
    ):
        yy, xx = np.mgrid[0:h, 0:w]
        mask = ((yy // cell + xx // cell) % 2).astype(bool)[..., None]
        out.append(Image.fromarray(np.where(mask, np.array(a), np.array(b)).astype(np.uint8)))
    return out


def _text(rng) -> list[Image.Image]:
    lines = [
        "Patient record",
        "Diagnosis: pending review",
        "Invoice 2026-11-27",
        "Lorem ipsum dolor sit amet,",
        "consectetur adipiscing elit.",
        "Total: 42.00 EUR",
        "The quick brown fox",
        "jumps over the lazy dog.",
    ]
    out = []
    for size, bg, fg in (
        (14, "white", "black"),
        (22, "white", "black"),
        (18, (250, 250, 235), (30, 30, 90)),
        (16, (30, 30, 30), (230, 230, 230)),
        (28, "white", (200, 0, 0)),
    ):
        img = Image.new("RGB", SIZE, bg)
        draw = ImageDraw.Draw(img)
        font = ImageFont.load_default(size=size)
        for i, line in enumerate(rng.permutation(lines)):
            draw.text((10, 8 + i * (size + 6)), str(line), fill=fg, font=font)
        out.append(img)
    return out


def _test_patterns(rng) -> list[Image.Image]:
    w, h = SIZE
    out = []
    bars = [(192, 192, 192), (192, 192, 0), (0, 192, 192), (0, 192, 0), (192, 0, 192), (192, 0, 0), (0, 0, 192)]
    img = Image.new("RGB", SIZE)
    draw = ImageDraw.Draw(img)
    for i, c in enumerate(bars):  # SMPTE-like colour bars
        draw.rectangle([i * w // 7, 0, (i + 1) * w // 7, h], fill=c)
    out.append(img)
    for bg, fg in (((0, 0, 0), (0, 200, 0)), ((40, 40, 40), (240, 240, 240))):
        img = Image.new("RGB", SIZE, bg)  # a fake camera's moving square with a timer
        draw = ImageDraw.Draw(img)
        draw.rectangle([w // 3, h // 3, 2 * w // 3, 2 * h // 3], fill=fg)
        draw.text((10, 10), "00:01:23.456", fill=(255, 255, 255), font=ImageFont.load_default(size=20))
        out.append(img)
    for n in (3, 6):
        img = Image.new("RGB", SIZE, tuple(int(v) for v in rng.integers(0, 256, 3)))
        draw = ImageDraw.Draw(img)
        for _ in range(n):  # coloured shapes
            x0, y0 = rng.integers(0, w - 60), rng.integers(0, h - 60)
            fill = tuple(int(v) for v in rng.integers(0, 256, 3))
            (draw.ellipse if rng.random() < 0.5 else draw.rectangle)(
                [x0, y0, x0 + rng.integers(30, 120), y0 + rng.integers(30, 120)], fill=fill
            )
        out.append(img)
    return out


def packaged_photos() -> list[Image.Image]:
    """scikit-learn's two bundled photos, whole and as four quarter crops each (none if not installed)."""
    try:
        import sklearn
    except ImportError:
        return []
    out = []
    for name in ("china.jpg", "flower.jpg"):
        path = Path(sklearn.__file__).parent / "datasets" / "images" / name
        if not path.is_file():
            continue
        with Image.open(path) as img:
            img = img.convert("RGB")
        w, h = img.size
        out.append(img)
        out += [img.crop((x, y, x + w // 2, y + h // 2)) for x in (0, w // 2) for y in (0, h // 2)]
    return out


def out_of_domain_images(seed: int = 0) -> dict[str, list[Image.Image]]:
    """Category -> images, none of them a dermoscopic image of a skin lesion."""
    rng = np.random.default_rng(seed)
    sets = {
        "solid colour": _solid(rng),
        "noise": _noise(rng),
        "gradient": _gradients(rng),
        "checkerboard": _checkerboards(rng),
        "text": _text(rng),
        "test pattern": _test_patterns(rng),
        "photo (packaged)": packaged_photos(),
    }
    return {k: v for k, v in sets.items() if v}
