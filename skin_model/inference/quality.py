"""Is the photo good enough to read? Blur, exposure, and a lesion too small or cut by the border.

A warning with advice to retake the photo, never a refusal: the answer is still given. Measured on
the image at a fixed 200x150 (HAM10000's working size), NumPy only (~2 ms), off the torch thread:

- **sharpness**: variance of the Laplacian over the image's own contrast (variance), so that a dark
  or flat image is not called blurred for that alone;
- **exposure**: the median brightness of the field of view (the dermoscope's black vignette left out);
- **lesion**: the darker region by Otsu's threshold within the field's skin-coloured part (red the
  strongest channel: the blue, green and cyan colour markers some clinics stick beside a lesion are
  not it); its share of that part, and how far its centre lies from the photo's (0: centred, 1: on
  an edge), as a lesion cut by the frame is.

Sharpness is measured at the photo's own resolution when it is smaller than 200x150 (an 84 px image is
not blurred for being small), brought down to it otherwise.

The thresholds were chosen on the training images of each source the model learnt from (HAM10000's
folds, ISIC 2017's training part) so that no check warns on more than about 1% of any of them, and
their rates on every source and on degraded copies are measured by
``scripts/quality_rates.py`` (docs/model.md, "Image quality").
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from PIL import Image

SIZE = (200, 150)
FIELD_MIN = 30  # grey levels below this: the dermoscope's vignette, not the field of view
# Thresholds (scripts/quality_rates.py chose them; see the module's docstring).
MIN_SHARPNESS = 0.0117
MIN_BRIGHTNESS = 95.1
MAX_BRIGHTNESS = 233.0
MIN_LESION_SHARE = 0.0129
MAX_OFF_CENTRE = 0.641
CHECKS = ("blurred", "too_dark", "too_bright", "lesion_too_small", "lesion_cut_off")


@dataclass(frozen=True)
class Quality:
    """The measures of one photo and the problems they show (``problems``: keys of ``CHECKS``)."""

    sharpness: float
    brightness: float
    lesion_share: float
    off_centre: float

    @property
    def problems(self) -> tuple[str, ...]:
        found = {
            "blurred": self.sharpness < MIN_SHARPNESS,
            "too_dark": self.brightness < MIN_BRIGHTNESS,
            "too_bright": self.brightness > MAX_BRIGHTNESS,
            "lesion_too_small": self.lesion_share < MIN_LESION_SHARE,
            "lesion_cut_off": self.off_centre > MAX_OFF_CENTRE,
        }
        return tuple(name for name in CHECKS if found[name])

    @property
    def good(self) -> bool:
        return not self.problems

    def as_dict(self) -> dict:
        return {
            "problems": list(self.problems),
            "sharpness": self.sharpness,
            "brightness": self.brightness,
            "lesion_share": self.lesion_share,
            "off_centre": self.off_centre,
        }


def within_size(image: Image.Image) -> Image.Image:
    """The photo within ``SIZE`` (brought down, never up), RGB."""
    small = image.convert("RGB")
    if small.width > SIZE[0] or small.height > SIZE[1]:
        small.thumbnail(SIZE, Image.Resampling.BILINEAR)
    return small


def skin_coloured(small: Image.Image) -> np.ndarray:
    """Where red is the strongest channel (smoothed): skin and lesions, not a blue or green marker."""
    red, green, blue = (_box(np.asarray(band, dtype=np.float32)) for band in small.split())
    return (red >= green) & (red >= blue)


def _laplacian(g: np.ndarray) -> np.ndarray:
    return g[1:-1, :-2] + g[1:-1, 2:] + g[:-2, 1:-1] + g[2:, 1:-1] - 4 * g[1:-1, 1:-1]


def _box(g: np.ndarray, k: int = 5) -> np.ndarray:
    """A k x k mean filter (edges padded), by cumulative sums."""
    pad = k // 2
    padded = np.pad(g, pad, mode="edge")
    c = padded.cumsum(0).cumsum(1)
    c = np.pad(c, ((1, 0), (1, 0)))
    h, w = g.shape
    return (c[k : k + h, k : k + w] - c[:h, k : k + w] - c[k : k + h, :w] + c[:h, :w]) / (k * k)


def _otsu(values: np.ndarray) -> float:
    hist, edges = np.histogram(values, bins=64, range=(0, 255))
    p = hist / max(hist.sum(), 1)
    centres = (edges[:-1] + edges[1:]) / 2
    w0 = np.cumsum(p)
    m0 = np.cumsum(p * centres)
    mt = m0[-1]
    between = (mt * w0 - m0) ** 2 / np.maximum(w0 * (1 - w0), 1e-12)
    return float(centres[int(np.argmax(between))])


def _grey_field_skin(image: Image.Image) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The photo within ``SIZE`` in grey levels, its field of view, and the field's skin-coloured part."""
    small = within_size(image)
    g = np.asarray(small.convert("L"), dtype=np.float32)
    field = _box(g) >= FIELD_MIN
    return g, field, field & skin_coloured(small)


def off_centre(lesion: np.ndarray) -> float:
    """How far a lesion mask's centre lies from the photo's (0: centred, 1: on an edge; 1 for none)."""
    rows, cols = np.nonzero(lesion)
    h, w = lesion.shape
    return float(max(abs(cols.mean() / w - 0.5), abs(rows.mean() / h - 0.5)) * 2) if len(rows) else 1.0


def assess(image: Image.Image) -> Quality:
    """The measures of ``image`` (any size, RGB)."""
    g, field, skin = _grey_field_skin(image)
    contrast = float(g[field].var()) if field.sum() > 100 else float(g.var())
    lap = _laplacian(g)
    inner = field[1:-1, 1:-1]
    sharpness = float(lap[inner].var() / max(contrast, 1.0)) if inner.sum() > 100 else 0.0
    brightness = float(np.median(g[field])) if field.any() else 0.0
    if skin.sum() > 100 and contrast > 4.0:
        lesion = _lesion(g, skin)
        share, off = float(lesion.sum() / skin.sum()), off_centre(lesion)
    else:  # a flat image: no lesion to find
        share, off = 0.0, 0.0
    return Quality(sharpness, brightness, share, off)


def _lesion(g: np.ndarray, skin: np.ndarray) -> np.ndarray:
    """The darker region of the skin-coloured field (Otsu's threshold of the smoothed grey levels)."""
    smooth = _box(g)
    return (smooth < _otsu(smooth[skin])) & skin


def lesion_estimate(image: Image.Image) -> np.ndarray:
    """Where ``assess`` finds the lesion, within ``SIZE`` (boolean; all False when there is no
    skin-coloured field). For measuring the check (scripts/quality_rates.py)."""
    g, _, skin = _grey_field_skin(image)
    return _lesion(g, skin) if skin.sum() > 100 else np.zeros(g.shape, bool)
