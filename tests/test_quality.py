"""The image-quality check: it warns on blurred, dark and badly framed photos and stays quiet on
sharp, well-exposed, centred ones; on real dermoscopy (where present) it warns rarely and catches
the same images degraded."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image, ImageEnhance, ImageFilter

from skin_model.inference import quality

from .conftest import SHARED_DATA


def _lesion(size=(400, 300), centre=(0.5, 0.5), radius=0.22, seed=0) -> Image.Image:
    """A textured skin background with a darker, textured lesion."""
    rng = np.random.default_rng(seed)
    w, h = size
    yy, xx = np.mgrid[0:h, 0:w]
    img = np.empty((h, w, 3), np.float32)
    img[:] = (205, 160, 140)
    img += rng.normal(0, 10, img.shape)
    inside = (xx - centre[0] * w) ** 2 + (yy - centre[1] * h) ** 2 < (radius * h) ** 2
    img[inside] = np.array((110, 70, 55)) + rng.normal(0, 18, (int(inside.sum()), 3))
    return Image.fromarray(np.clip(img, 0, 255).astype(np.uint8))


@pytest.mark.parametrize("centre", [(0.5, 0.5), (0.15, 0.5)], ids=["centred", "at the left edge"])
def test_the_lesion_estimate_is_the_lesion_the_check_measures(centre):
    image = _lesion(centre=centre)
    found = quality.lesion_estimate(image)
    h, w = found.shape
    yy, xx = np.mgrid[0:h, 0:w]
    truth = (xx - centre[0] * w) ** 2 + (yy - centre[1] * h) ** 2 < (0.22 * h) ** 2
    assert (found & truth).sum() / (found | truth).sum() > 0.8  # the disc, not the skin around it
    measured = quality.assess(image)
    rows, cols = np.nonzero(found)
    off = max(abs(cols.mean() / w - 0.5), abs(rows.mean() / h - 0.5)) * 2
    assert measured.off_centre == pytest.approx(off)  # the same region as assess's


def test_a_sharp_well_exposed_centred_lesion_gets_no_warning():
    assert quality.assess(_lesion()).problems == ()


@pytest.mark.parametrize(
    "degrade, expected",
    [
        (lambda im: im.filter(ImageFilter.GaussianBlur(radius=8)), "blurred"),
        (lambda im: ImageEnhance.Brightness(im).enhance(0.2), "too_dark"),
        (lambda im: ImageEnhance.Brightness(im).enhance(1.9), "too_bright"),
    ],
    ids=["blurred", "dark", "bright"],
)
def test_each_degradation_is_named(degrade, expected):
    assert expected in quality.assess(degrade(_lesion())).problems


def test_a_lesion_cut_by_the_frame_and_a_tiny_one_are_named():
    assert "lesion_cut_off" in quality.assess(_lesion(centre=(0.0, 0.5), radius=0.45)).problems
    assert "lesion_too_small" in quality.assess(_lesion(radius=0.03)).problems


def test_the_answer_carries_the_check_and_still_answers(tiny_model):
    dark = ImageEnhance.Brightness(_lesion()).enhance(0.2)
    pred = tiny_model.predict(dark)
    assert "too_dark" in pred.quality.problems and pred.as_dict()["image_quality"]["problems"] == list(
        pred.quality.problems
    )
    assert pred.label  # a warning, never a refusal


@pytest.mark.parametrize("source", ["ham10000", "isic2017", "bcn20000"])
def test_on_real_dermoscopy_it_warns_rarely_and_catches_the_degraded(source):
    """Issue 41's bars on each source present (every 20th image): it warns on at most 5% of real
    dermoscopy and catches at least 90% of the same images darkened; blurred, on HAM10000's (where
    the bar is measured: ISIC 2017's blurred copies are caught 69% of the time, docs/model.md)."""
    from skin_model.inference.inputs import load_image
    from skin_model.training.data import find_images

    folder = SHARED_DATA.parent / source
    if not folder.is_dir():
        pytest.skip(f"{folder} is not present")
    images = [load_image(p) for p in sorted(find_images(folder).values())[::20]]
    warned = np.mean([not quality.assess(im).good for im in images])
    assert warned <= 0.05
    if source == "bcn20000":
        return  # 84 px: a blur of 1.5% of the width is under a pixel
    darkened = np.mean([quality.assess(ImageEnhance.Brightness(im).enhance(0.3)).good for im in images])
    assert 1 - darkened >= 0.9
    if source == "ham10000":
        blurred = [quality.assess(im.filter(ImageFilter.GaussianBlur(0.015 * im.width))).good for im in images]
        assert 1 - np.mean(blurred) >= 0.9
