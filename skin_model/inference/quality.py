"""Is the photo good enough to read? Blur, exposure, and a lesion too small or cut by the border.

A warning with advice to retake the photo, never a refusal: the answer is still given. Measured on
the image at a fixed 200x150 (HAM10000's working size):

- **sharpness**: how much of the finest detail a slight blur (Gaussian, sigma 1 px) takes away, the
  variance of the Laplacian before it over after it. A sharp photo loses most of it; a blurred one
  has little left to lose. Measured at one exposure (the field's median brought to
  ``REFERENCE_LEVEL``), so that a dark photo is not called blurred for that alone, and the detail
  left counted from a floor (``DETAIL_FLOOR``). The Laplacian over the photo's contrast, used
  before, caught 69% of ISIC 2017's blurred copies, whose fine texture sets them apart from
  HAM10000's. NumPy, on the caller's thread (``measure``);
- **exposure**: the median brightness of the field of view (the dermoscope's black vignette left out);
- **framing**: the lesion as the lesion finder finds it (``lesion_finder.py``, a small network that
  learnt HAM10000's lesion masks; torch work, on the torch thread): its share of the photo, and the
  share of it that lies outside the photo, as the finder estimates. Where the lesion's centre lies,
  or which sides of the frame it touches, tells too little: many real lesions fill the frame, or
  sit off-centre (docs/model.md).

Sharpness is measured at the photo's own resolution when it is smaller than 200x150 (an 84 px image is
not blurred for being small), brought down to it otherwise.

Sharpness and exposure thresholds were chosen on the training images of each source the model learnt
from (HAM10000's folds, ISIC 2017's training part) so that neither warns on more than about 1% of
any of them; the framing thresholds travel with the lesion finder, chosen by its export on its
validation fold, ISIC 2017's training part and BCN20000 (a lesion too small: 1% of any of them;
cut by the frame: 2.5%). Their rates on every source and on degraded copies are measured
by ``scripts/quality_rates.py`` (docs/model.md, "Image quality").
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from PIL import Image

SIZE = (200, 150)
FIELD_MIN = 30  # grey levels below this: the dermoscope's vignette, not the field of view
# Sharpness is measured at one exposure (the field's median brought to REFERENCE_LEVEL), and the
# detail left after a slight blur is counted from a floor: the Laplacian's variance of whole grey
# levels' rounding (20 / 12). Without the floor, a blurred photo's own rounding and JPEG noise,
# which that blur takes away, made it look sharp.
REFERENCE_LEVEL = 150.0
DETAIL_FLOOR = 20 / 12
# Thresholds (scripts/quality_rates.py chose them; see the module's docstring).
MIN_SHARPNESS = 3.1663
MIN_BRIGHTNESS = 95.1
MAX_BRIGHTNESS = 233.0
CHECKS = ("blurred", "too_dark", "too_bright", "lesion_too_small", "lesion_cut_off")


@dataclass(frozen=True)
class Photo:
    """What the caller's thread measures of a photo: sharpness, brightness, and the photo within
    ``SIZE`` (uint8, H x W x 3) for the lesion finder."""

    sharpness: float
    brightness: float
    pixels: np.ndarray


@dataclass(frozen=True)
class Quality:
    """The measures of one photo and the problems they show (``problems``: keys of ``CHECKS``)."""

    sharpness: float
    brightness: float
    lesion_share: float
    lesion_outside: float
    problems: tuple[str, ...]

    @property
    def good(self) -> bool:
        return not self.problems

    def as_dict(self) -> dict:
        return {
            "problems": list(self.problems),
            "sharpness": self.sharpness,
            "brightness": self.brightness,
            "lesion_share": self.lesion_share,
            "lesion_outside": self.lesion_outside,
        }


def within_size(image: Image.Image) -> Image.Image:
    """The photo within ``SIZE`` (brought down, never up), RGB."""
    small = image.convert("RGB")
    if small.width > SIZE[0] or small.height > SIZE[1]:
        small.thumbnail(SIZE, Image.Resampling.BILINEAR)
    return small


def _laplacian(g: np.ndarray) -> np.ndarray:
    return g[1:-1, :-2] + g[1:-1, 2:] + g[:-2, 1:-1] + g[2:, 1:-1] - 4 * g[1:-1, 1:-1]


def _gaussian(g: np.ndarray, sigma: float = 1.0) -> np.ndarray:
    """A Gaussian blur (edges padded), separable."""
    radius = int(np.ceil(3 * sigma))
    t = np.arange(-radius, radius + 1)
    k = np.exp(-(t**2) / (2 * sigma**2))
    k /= k.sum()
    padded = np.pad(g, radius, mode="edge")
    rows = sum(w * padded[:, i : i + g.shape[1]] for i, w in enumerate(k))
    return sum(w * rows[i : i + g.shape[0]] for i, w in enumerate(k))


def _box(g: np.ndarray, k: int = 5) -> np.ndarray:
    """A k x k mean filter (edges padded), by cumulative sums."""
    pad = k // 2
    padded = np.pad(g, pad, mode="edge")
    c = padded.cumsum(0).cumsum(1)
    c = np.pad(c, ((1, 0), (1, 0)))
    h, w = g.shape
    return (c[k : k + h, k : k + w] - c[:h, k : k + w] - c[k : k + h, :w] + c[:h, :w]) / (k * k)


def measure(image: Image.Image) -> Photo:
    """Sharpness and brightness of ``image`` (any size, RGB), and its pixels within ``SIZE``."""
    small = within_size(image)
    g = np.asarray(small.convert("L"), dtype=np.float32)
    field = _box(g) >= FIELD_MIN
    brightness = float(np.median(g[field])) if field.any() else 0.0
    inner = field[1:-1, 1:-1]
    if inner.sum() < 100:  # hardly any field of view: measured on the whole photo
        inner = np.ones_like(inner)
    g = g * (REFERENCE_LEVEL / max(brightness, 1.0))  # at one exposure; see DETAIL_FLOOR
    detail, left = _laplacian(g)[inner].var(), _laplacian(_gaussian(g))[inner].var()
    sharpness = float(detail / (left + DETAIL_FLOOR))
    return Photo(sharpness, brightness, np.asarray(small))


def judge(photo: Photo, lesion: np.ndarray, outside: float, limits: dict) -> Quality:
    """The photo's measures, the lesion finder's mask (any size) and its estimate of the share of
    the lesion outside the photo -> its quality, under the finder's ``limits``
    (``lesion_finder.THRESHOLD_KEYS``)."""
    share, outside = float(lesion.mean()), float(outside)
    found = {
        "blurred": photo.sharpness < MIN_SHARPNESS,
        "too_dark": photo.brightness < MIN_BRIGHTNESS,
        "too_bright": photo.brightness > MAX_BRIGHTNESS,
        "lesion_too_small": share < limits["min_share"],
        "lesion_cut_off": outside > limits["max_outside"],
    }
    problems = tuple(name for name in CHECKS if found[name])
    return Quality(photo.sharpness, photo.brightness, share, outside, problems)


def check_photos(photos: list[Photo], finder) -> list[Quality]:
    """The quality of measured photos (``measure``): the ``finder``'s lesions
    (``lesion_finder.LesionFinder``, torch work) and ``judge``."""
    lesions, outside = finder.find([photo.pixels for photo in photos])
    return [judge(photo, lesion, out, finder.thresholds) for photo, lesion, out in zip(photos, lesions, outside)]


def check(image: Image.Image, finder) -> Quality:
    """``measure`` and ``check_photos`` for one image on the calling thread (scripts and tests; the
    predictor checks its photos on its torch thread)."""
    return check_photos([measure(image)], finder)[0]
