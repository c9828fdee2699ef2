"""The image-quality check: it warns on blurred, dark and badly framed photos and stays quiet on
sharp, well-exposed, centred ones; on real dermoscopy (where present) it warns rarely and catches
the same images degraded."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image, ImageEnhance, ImageFilter

from skin_model.inference import quality
from skin_model.inference.lesion_finder import LesionFinder

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


@pytest.fixture(scope="module")
def finder():
    return LesionFinder.load()  # the shipped one


def _disc(centre, radius, shape=(36, 48)) -> np.ndarray:
    h, w = shape
    yy, xx = np.mgrid[0:h, 0:w]
    return (xx - centre[0] * w) ** 2 + (yy - centre[1] * h) ** 2 < (radius * h) ** 2


@pytest.mark.parametrize("centre", [(0.5, 0.5), (0.15, 0.5)], ids=["centred", "at the left edge"])
def test_the_lesion_finder_finds_the_lesion_not_the_skin_around_it(finder, centre):
    image = _lesion(centre=centre)
    masks, _ = finder.find([np.asarray(quality.within_size(image))])
    truth = _disc(centre, 0.22, masks[0].shape)
    assert (masks[0] & truth).sum() / (masks[0] | truth).sum() > 0.6
    assert quality.check(image, finder).lesion_share == pytest.approx(masks[0].mean())  # the region judged


def test_the_finder_sees_how_much_of_a_lesion_the_frame_cuts_off(finder):
    whole = _lesion(radius=0.3)
    half = whole.crop((whole.width // 2, 0, whole.width, whole.height))  # the left half of the lesion gone
    outside = [quality.check(im, finder).lesion_outside for im in (whole, half)]
    assert outside[0] < finder.thresholds["max_outside"] < outside[1]


SHARP = quality.Photo(sharpness=10.0, brightness=150.0, pixels=np.zeros((1, 1, 3), np.uint8))
LIMITS = {"min_share": 0.02, "max_outside": 0.3, "close_up_share": 0.7, "close_up_margin": 1.0}


@pytest.mark.parametrize(
    "mask, outside, expected",
    [
        (_disc((0.5, 0.5), 0.3), 0.0, ()),
        (np.ones((36, 48), bool), 0.9, ()),  # a close-up: its frame cuts it by design (no margin is enough)
        (_disc((0.5, 0.5), 0.05), 0.0, ("lesion_too_small",)),
        (np.zeros((36, 48), bool), 0.0, ("lesion_too_small",)),
        (_disc((0.0, 0.5), 0.3), 0.5, ("lesion_cut_off",)),
        (_disc((0.5, 0.5), 0.3), 0.5, ()),  # the network alone says half outside; its whole outline, none
    ],
    ids=["centred", "a close-up", "tiny", "none found", "half outside", "outline whole"],
)
def test_the_framing_rule(mask, outside, expected):
    judged = quality.judge(SHARP, mask, outside, LIMITS)
    assert judged.problems == expected
    assert (judged.lesion_share, judged.lesion_outside) == quality.framing(mask, outside, LIMITS["close_up_share"])


@pytest.mark.parametrize(
    "outside, margin, cut_off",
    [(0.65, 0.3, True), (0.55, 0.3, False), (0.35, 0.3, False), (0.95, 1.0, False)],
    ids=["far more cut", "within the margin", "as cut as a cut lesion", "margin 1: never"],
)
def test_a_close_up_must_be_found_more_cut_by_its_margin(outside, margin, cut_off):
    """Over ``close_up_share`` of the photo, the share outside is read less ``close_up_margin``,
    and is the network's estimate alone: a close-up has little edge in the photo to fit an outline
    to (this one's, fitted to a straight edge, says 3%)."""
    limits = {**LIMITS, "close_up_share": 0.7, "close_up_margin": margin}
    mask = np.zeros((36, 48), bool)
    mask[:, :39] = True  # 81% of the photo, against three sides
    judged = quality.judge(SHARP, mask, outside, limits)
    assert ("lesion_cut_off" in judged.problems) == cut_off
    assert judged.lesion_outside == pytest.approx(outside)
    assert quality.framing(mask, outside)[1] < outside - 0.15  # averaged with the outline, were it no close-up


def _true_outside(centre, radius, shape=(36, 48), fine=8) -> float:
    """The share of a disc (as ``_disc`` draws it) outside the frame, on a fine grid past it."""
    h, w = shape
    yy, xx = (np.mgrid[-2 * h * fine : 3 * h * fine, -2 * w * fine : 3 * w * fine] + 0.5) / fine
    disc = (xx - centre[0] * w) ** 2 + (yy - centre[1] * h) ** 2 < (radius * h) ** 2
    return 1 - disc[(xx >= 0) & (xx < w) & (yy >= 0) & (yy < h)].sum() / disc.sum()


@pytest.mark.parametrize(
    "centre, radius",
    [((0.5, 0.5), 0.3), ((0.1, 0.5), 0.3), ((0.0, 0.5), 0.3), ((1.0, 0.3), 0.4), ((0.0, 0.0), 0.35), ((1.0, 1.0), 0.5)],
    ids=["whole", "a fifth out", "half out", "half out, right", "three quarters out, corner", "corner, big"],
)
def test_the_outline_continues_the_lesion_past_the_frame(centre, radius):
    """An ellipse fitted to the edge in view, continued past the frame: a disc's share outside within 0.1."""
    mask = _disc(centre, radius)
    assert quality.outline_outside(mask) == pytest.approx(_true_outside(centre, radius), abs=0.1)


def test_the_outline_reads_the_largest_part_and_a_frame_filled_lesion():
    speck = _disc((0.95, 0.1), 0.05)  # a dark corner, apart from the lesion
    assert quality.outline_outside(_disc((0.5, 0.5), 0.3) | speck) == 0.0
    assert quality.outline_outside(np.ones((36, 48), bool)) == 1.0  # no edge in view at all
    stretched = np.repeat(_disc((0.5, 0.5), 0.45)[:, 24:], 2, axis=1)  # its right half, twice as wide
    assert quality.outline_outside(stretched) == pytest.approx(0.5, abs=0.1)


def test_a_sharp_well_exposed_centred_lesion_gets_no_warning(finder):
    assert quality.check(_lesion(), finder).problems == ()


@pytest.mark.parametrize(
    "degrade, expected",
    [
        (lambda im: im.filter(ImageFilter.GaussianBlur(radius=6)), "blurred"),
        (lambda im: ImageEnhance.Brightness(im).enhance(0.2), "too_dark"),
        (lambda im: ImageEnhance.Brightness(im).enhance(1.9), "too_bright"),
        (lambda im: im.crop((im.width // 2, 0, im.width, im.height)).resize(im.size), "lesion_cut_off"),
    ],
    ids=["blurred", "dark", "bright", "cut by the frame"],
)
def test_each_degradation_is_named(finder, degrade, expected):
    assert expected in quality.check(degrade(_lesion()), finder).problems


@pytest.mark.parametrize("ring", [None, (40, 170, 90)], ids=["plain", "ringed"])
@pytest.mark.parametrize("colour", [(40, 120, 220), (245, 140, 30), (245, 220, 40)], ids=["blue", "orange", "yellow"])
def test_a_calibration_sticker_at_the_frame_is_not_a_lesion_cut_by_it(finder, colour, ring):
    """ISIC 2017's photos often carry a coloured sticker half outside the frame; the finder of the
    last round took an orange one for a lesion a fifth outside the photo (docs/model.md, "Image
    quality"). The lesion here is whole: its share outside is estimated near nought."""
    image = np.array(_lesion(radius=0.12))
    h, w = image.shape[:2]
    yy, xx = np.mgrid[0:h, 0:w]
    for radius, paint in ((0.5, colour), (0.27, ring)):
        if paint is not None:
            image[(xx - w) ** 2 + (yy - h / 2) ** 2 < (radius * h) ** 2] = paint
    checked = quality.check(Image.fromarray(image), finder)
    assert checked.lesion_outside < 0.05 and "lesion_cut_off" not in checked.problems


def test_a_tiny_lesion_is_named(finder):
    assert "lesion_too_small" in quality.check(_lesion(radius=0.03), finder).problems


def test_sharpness_does_not_depend_on_exposure_or_size():
    """A ratio: the same photo darker, or at its own smaller size, is as sharp."""
    image = _lesion()
    sharp = quality.measure(image).sharpness
    assert quality.measure(ImageEnhance.Brightness(image).enhance(0.5)).sharpness == pytest.approx(sharp, rel=0.1)
    assert quality.measure(image.filter(ImageFilter.GaussianBlur(3))).sharpness < quality.MIN_SHARPNESS < sharp


def test_the_answer_carries_the_check_and_still_answers(tiny_model):
    dark = ImageEnhance.Brightness(_lesion()).enhance(0.2)
    pred = tiny_model.predict(dark)
    assert "too_dark" in pred.quality.problems and pred.as_dict()["image_quality"]["problems"] == list(
        pred.quality.problems
    )
    assert pred.label  # a warning, never a refusal


@pytest.mark.parametrize("source", ["ham10000", "isic2017", "bcn20000"])
def test_on_real_dermoscopy_it_warns_rarely_and_catches_the_degraded(finder, source):
    """Issue 41's bars on each source present: it warns on at most 5% of real dermoscopy (every
    image) and catches at least 90% of the same images blurred and darkened (every 20th;
    docs/model.md)."""
    from skin_model.inference.inputs import load_image
    from skin_model.training.data import find_images

    folder = SHARED_DATA.parent / source
    if not folder.is_dir():
        pytest.skip(f"{folder} is not present")
    paths = sorted(find_images(folder).values())
    warned = np.mean([not quality.check(load_image(p), finder).good for p in paths])  # every image
    assert warned <= 0.05
    images = [load_image(p) for p in paths[::20]]
    for degrade, check in (
        (lambda im: ImageEnhance.Brightness(im).enhance(0.3), "too_dark"),
        (lambda im: im.filter(ImageFilter.GaussianBlur(0.015 * im.width)), "blurred"),
    ):
        assert np.mean([check in quality.check(degrade(im), finder).problems for im in images]) >= 0.9


def test_on_the_lesion_finders_validation_fold_it_tells_lesions_cut_by_the_frame(finder):
    """On the fold the finder did not learn (every 5th image), its estimate of the lesion's share
    outside the photo ranks a cut copy above its real photo almost always, and the check warns on
    90% of these cut copies (88.4% over the whole fold): more than finder 1.4.0 (89%; its share
    outside learnt with less weight, close-ups never called cut), 1.3.0 (84%, without training
    views cut through the lesion) or the network's estimate alone (56%; the darker-region estimate
    before it, 30%). Issue 41's bar, 90%, is missed over the whole fold: the threshold must also
    spare real BCN20000 photos whose lesions the frame cuts (docs/model.md, "Image quality")."""
    from scripts.quality_rates import DEGRADATIONS
    from skin_model.inference.inputs import load_image
    from skin_model.training.data import find_images
    from skin_model.training.lesion_finder import FinderRecipe, ham_parts

    if not (SHARED_DATA / "masks").is_dir():
        pytest.skip(f"{SHARED_DATA} is not present")
    recipe = FinderRecipe(**{**finder.card["recipe"], "input_size": tuple(finder.input_size)})
    paths = find_images(SHARED_DATA)
    images = [load_image(paths[i]) for i in ham_parts(SHARED_DATA, recipe)[1][::5]]
    cut, named = DEGRADATIONS["lesion_cut_by_the_frame"]
    real = [quality.check(im, finder) for im in images]
    copies = [quality.check(cut(im), finder) for im in images]
    ranked = np.mean([c.lesion_outside > r.lesion_outside for r, c in zip(real, copies)])
    assert ranked >= 0.95
    assert np.mean([any(p in named for p in c.problems) for c in copies]) >= 0.88
    assert np.mean([not r.good for r in real]) <= 0.05
