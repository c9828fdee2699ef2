"""Is the photo good enough to read? Blur, exposure, and a lesion too small or cut by the border.

A warning with advice to retake the photo, never a refusal: the answer is still given. Measured on
the image within 200x150 (HAM10000's working size; brought down, never up):

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
  share of it that lies outside the photo (``framing``): the network's own estimate averaged with
  its outline's, an ellipse fitted to the lesion's edge inside the photo and continued past the
  frame. Where the lesion's centre lies, or which sides of the frame it touches, tells too little:
  many real lesions fill the frame, or sit off-centre (docs/model.md). A lesion that fills most of
  the photo is a close-up, whose frame often cuts it by design: it is called cut off only where the
  network finds it far more cut than the threshold (``cut_score``).

Sharpness is measured at the photo's own resolution when it is smaller than 200x150 (an 84 px image is
not blurred for being small), brought down to it otherwise.

Sharpness and exposure thresholds were chosen on the training images of each source the model learnt
from (HAM10000's folds, ISIC 2017's training part) so that neither warns on more than about 1% of
any of them; the framing thresholds travel with the lesion finder, chosen by its export on its
validation fold, ISIC 2017's training part and BCN20000 (a lesion too small: 1% of any of them;
cut by the frame: 2.25%, a close-up's share outside read less a margin). Their rates on every source and on degraded copies are
measured by ``scripts/quality_rates.py`` (docs/model.md, "Image quality").
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


def _largest_part(mask: np.ndarray) -> np.ndarray:
    """The largest 4-connected part of a boolean mask: each pixel's label (the index of a pixel of
    its part) spreads to its neighbours by the minimum, and jumps to its label's label, until none moves."""
    h, w = mask.shape
    none = h * w
    labels = np.where(mask, np.arange(none).reshape(h, w), none)
    while True:
        padded = np.pad(labels, 1, constant_values=none)
        spread = np.minimum.reduce([labels, padded[:-2, 1:-1], padded[2:, 1:-1], padded[1:-1, :-2], padded[1:-1, 2:]])
        spread = np.where(mask, np.append(spread.ravel(), none)[spread], none)
        if np.array_equal(spread, labels):
            return labels == np.bincount(labels[mask]).argmax()
        labels = spread


def _ellipse(x: np.ndarray, y: np.ndarray) -> np.ndarray | None:
    """The conic (a, b, c, d, e, f: a x^2 + b xy + c y^2 + d x + e y + f = 0) of the ellipse that fits
    the points best, by Halir and Flusser's direct least squares; None where none does."""
    d1 = np.stack([x * x, x * y, y * y], 1)
    d2 = np.stack([x, y, np.ones_like(x)], 1)
    try:
        t = -np.linalg.solve(d2.T @ d2, d2.T @ d1)
    except np.linalg.LinAlgError:
        return None
    m = d1.T @ d1 + (d1.T @ d2) @ t
    m = np.array([m[2] / 2, -m[1], m[0] / 2])  # the ellipse's constraint 4ac - b^2 = 1, inverted
    vectors = np.real(np.linalg.eig(m)[1])
    ellipses = np.nonzero(4 * vectors[0] * vectors[2] - vectors[1] ** 2 > 0)[0]
    if len(ellipses) == 0:
        return None
    quadratic = vectors[:, ellipses[0]]
    return np.concatenate([quadratic, t @ quadratic])


def _circle(x: np.ndarray, y: np.ndarray) -> np.ndarray | None:
    """The conic of the circle that fits the points best (x^2 + y^2 + d x + e y + f = 0, least squares)."""
    try:
        (d, e, f), *_ = np.linalg.lstsq(np.stack([x, y, np.ones_like(x)], 1), -(x * x + y * y), rcond=None)
    except np.linalg.LinAlgError:
        return None
    return np.array([1.0, 0.0, 1.0, d, e, f])


def _inside(conic: np.ndarray | None, u: np.ndarray, v: np.ndarray) -> tuple[np.ndarray, float] | None:
    """Which points (u, v) an ellipse's conic holds, and its area; None for no conic or no ellipse."""
    if conic is None:
        return None
    a, b, c, d, e, f = conic
    k = a * c - b * b / 4
    if k <= 0:
        return None
    centre = np.linalg.solve([[2 * a, b], [b, 2 * c]], [-d, -e])
    at = lambda x, y: a * x * x + b * x * y + c * y * y + d * x + e * y + f  # noqa: E731
    area = abs(np.pi * np.linalg.det([[a, b / 2, d / 2], [b / 2, c, e / 2], [d / 2, e / 2, f]]) / k**1.5)
    return np.sign(at(u, v)) == np.sign(at(*centre)), area


def outline_outside(lesion: np.ndarray) -> float | None:
    """The share of a lesion mask's largest part outside the photo, from its outline: an ellipse
    (or a circle) fitted to its edge inside the photo, continued past the frame. 0 for a lesion that
    touches no side; 1 for one with hardly any edge inside the photo; None where neither fits."""
    part = _largest_part(lesion) if lesion.any() else lesion
    h, w = part.shape
    if not (part[0].any() or part[-1].any() or part[:, 0].any() or part[:, -1].any()):
        return 0.0
    # The edge: where a lesion pixel meets skin, between the two pixels' centres (the frame is no edge).
    beyond = np.pad(part, 1, constant_values=True)
    xs, ys = [], []
    for (dy, dx), neighbour in zip(
        ((0, 1), (0, -1), (1, 0), (-1, 0)), (beyond[1:-1, 2:], beyond[1:-1, :-2], beyond[2:, 1:-1], beyond[:-2, 1:-1])
    ):
        y, x = np.nonzero(part & ~neighbour)
        xs.append(x + 0.5 + dx / 2)
        ys.append(y + 0.5 + dy / 2)
    xs, ys = np.concatenate(xs), np.concatenate(ys)
    if len(xs) < 6:
        return 1.0
    # In units of the edge's spread about its mean: the fit is stable at any mask size.
    x0, y0 = xs.mean(), ys.mean()
    scale = max(xs.std(), ys.std(), 0.5)
    u, v = (xs - x0) / scale, (ys - y0) / scale
    grid_y, grid_x = np.mgrid[0:h:0.25, 0:w:0.25] + 0.125  # the photo, sixteen points a pixel
    # A short arc (a lesion mostly outside, or at a corner) can fit an ellipse far from the lesion;
    # a circle through it cannot go so wrong. Of the two, the one whose part in view is most like
    # the lesion in view (intersection over union).
    fits = []
    for conic in (_ellipse(u, v), _circle(u, v)):
        found = _inside(conic, (grid_x - x0) / scale, (grid_y - y0) / scale)
        if found is not None:
            in_view = found[0].reshape(h, 4, w, 4).mean((1, 3)) >= 0.5
            fits.append((np.count_nonzero(in_view & part) / np.count_nonzero(in_view | part), found))
    if not fits:
        return None
    inside, area = max(fits, key=lambda fit: fit[0])[1]
    if area * scale**2 > 25 * h * w:  # nearly a straight edge: a lesion far larger than the photo
        return 1.0
    return float(np.clip(1 - np.count_nonzero(inside) / 16 / (area * scale**2), 0.0, 1.0))


def framing(lesion: np.ndarray, network_outside: float, close_up_share: float = 1.0) -> tuple[float, float]:
    """The lesion finder's mask (any size) and its network's estimate of the share of the lesion
    outside the photo -> the lesion's share of the photo, and its share outside: the network's and
    the outline's (``outline_outside``) averaged. Each alone caught fewer lesions cut by the frame at
    the same warnings on real photos (docs/model.md). A close-up's (a lesion over ``close_up_share``
    of the photo) is the network's alone: little of its edge lies in the photo to fit an outline to.
    The quality check and the finder's export use it."""
    share, network_outside = float(lesion.mean()), float(network_outside)
    if share >= close_up_share:
        return share, network_outside
    outline = outline_outside(lesion)
    return share, network_outside if outline is None else (network_outside + outline) / 2


def cut_score(share, outside, close_up_share: float, close_up_margin: float):
    """What the "cut by the frame" threshold is set on and compared with: the share outside, less
    ``close_up_margin`` for a close-up (a lesion over ``close_up_share`` of the photo, whose frame
    often cuts it by design: it must be found that much more cut). Scalars or arrays: the check
    judges one photo, the finder's export a source's photos."""
    outside = np.asarray(outside, dtype=float)
    return np.where(np.asarray(share) < close_up_share, outside, outside - close_up_margin)


def judge(photo: Photo, lesion: np.ndarray, outside: float, limits: dict) -> Quality:
    """The photo's measures, the lesion finder's mask (any size) and its network's estimate of the
    share of the lesion outside the photo -> its quality, under the finder's ``limits``
    (``lesion_finder.THRESHOLD_KEYS``)."""
    share, outside = framing(lesion, outside, limits["close_up_share"])
    found = {
        "blurred": photo.sharpness < MIN_SHARPNESS,
        "too_dark": photo.brightness < MIN_BRIGHTNESS,
        "too_bright": photo.brightness > MAX_BRIGHTNESS,
        "lesion_too_small": share < limits["min_share"],
        "lesion_cut_off": bool(
            cut_score(share, outside, limits["close_up_share"], limits["close_up_margin"]) > limits["max_outside"]
        ),
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
