"""The quality check's lesion finder: its recipe is strict, its training writes an artifact that
loads without pickle and names its recipe, and the shipped one is the committed recipe's."""

from __future__ import annotations

import hashlib
from dataclasses import asdict
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
from PIL import Image

from skin_model.config import REPO_DIR
from skin_model.inference.lesion_finder import FILE, THRESHOLD_KEYS, LesionFinder
from skin_model.training.lesion_finder import (
    FinderRecipe,
    choose_thresholds,
    cut_through,
    framing,
    in_round_field,
    random_views,
    train_lesion_finder,
    with_ruler,
    with_sticker,
)

RECIPE = REPO_DIR / "recipes" / "quality" / "lesion_finder.toml"


def _ham_with_masks(root: Path, n: int = 12) -> tuple[Path, Path]:
    """A HAM10000-like folder of ``n`` dark discs on skin with their masks, and its lesion file
    (two training folds, one test lesion that must never be read)."""
    rng = np.random.default_rng(0)
    (root / "images").mkdir(parents=True)
    (root / "masks").mkdir()
    rows = []
    for i in range(n):
        yy, xx = np.mgrid[0:150, 0:200]
        cx, cy, r = rng.uniform(60, 140), rng.uniform(50, 100), rng.uniform(20, 45)
        inside = (xx - cx) ** 2 + (yy - cy) ** 2 < r**2
        img = np.full((150, 200, 3), (205, 160, 140), np.float32) + rng.normal(0, 8, (150, 200, 3))
        img[inside] = (100, 60, 50)
        Image.fromarray(np.clip(img, 0, 255).astype(np.uint8)).save(root / "images" / f"ISIC_{i:07d}.jpg")
        Image.fromarray((inside * 255).astype(np.uint8)).save(root / "masks" / f"ISIC_{i:07d}_segmentation.png")
        rows.append({"lesion_id": f"HAM_{i:07d}", "image_id": f"ISIC_{i:07d}", "dx": "nv"})
    pd.DataFrame(rows).to_csv(root / "HAM10000_metadata.csv", index=False)
    split = pd.DataFrame(
        {
            "lesion_id": [r["lesion_id"] for r in rows],
            "split": ["test"] + ["train"] * (n - 1),
            "fold": [0] + [i % 2 for i in range(1, n)],
        }
    )
    (root / "images" / "ISIC_0000000.jpg").write_bytes(b"not an image: the test split is never read")
    split.to_csv(root / "lesions.csv", index=False)
    return root, root / "lesions.csv"


@pytest.mark.parametrize(
    "key, value",
    [
        ("cut_quantile", 97.5),
        ("real_quantile", 0.3),
        ("sticker_p", 1.5),
        ("close_up_share", 70),
        ("close_up_margin", 1.5),
        ("outside_weight", 0),
    ],
)
def test_a_setting_out_of_its_range_is_an_error_that_names_it(tmp_path, key, value):
    bad = tmp_path / "r.toml"
    bad.write_text(
        "\n".join(line for line in RECIPE.read_text().splitlines() if not line.startswith(key)) + f"\n{key} = {value}\n"
    )
    with pytest.raises(ValueError, match=key):
        FinderRecipe.load(bad)


def test_an_unknown_recipe_key_is_an_error_that_names_it(tmp_path):
    bad = tmp_path / "r.toml"
    bad.write_text(RECIPE.read_text() + "\nlearning_rate = 0.1\n")
    with pytest.raises(ValueError, match="learning_rate"):
        FinderRecipe.load(bad)


def test_training_writes_a_finder_that_loads_and_names_its_recipe(tmp_path):
    ham, lesions = _ham_with_masks(tmp_path / "ham")
    recipe_file = tmp_path / "finder.toml"
    recipe_file.write_text(
        f'version = "0.0.1"\nlesion_file = "{lesions}"\nvalidation_fold = 0\nepochs = 1\nbatch_size = 4\n'
        "input_size = [48, 36]\nwidths = [4, 8, 8]\nreal_quantile = 0.9\ncut_quantile = 0.8\n"
        "sticker_p = 1.0\nruler_p = 1.0\nfield_p = 1.0\n"  # every view drawn on: those paths run too
    )
    recipe = FinderRecipe.load(recipe_file)
    bcn = tmp_path / "bcn" / "images"  # a BCN20000-like folder: 84 px squares, thresholds only
    bcn.mkdir(parents=True)
    for i in range(3):
        Image.fromarray(np.full((84, 84, 3), 120 + 20 * i, np.uint8)).save(bcn / f"ISIC_{i:07d}.jpg")
    out = tmp_path / FILE
    train_lesion_finder(recipe, ham, None, out, bcn=bcn.parent)
    finder = LesionFinder.load(out)
    assert finder.card["recipe_sha256"] == hashlib.sha256(recipe_file.read_bytes()).hexdigest()
    assert finder.card["version"] == "0.0.1" and set(THRESHOLD_KEYS) <= set(finder.thresholds)
    assert finder.card["validation"]["images"] == 5 and finder.card["thresholds_chosen_on"] == {
        "ham10000 validation fold": 5,
        "bcn20000": 3,
    }
    masks, outside = finder.find([np.zeros((150, 200, 3), np.uint8), np.zeros((84, 84, 3), np.uint8)])
    assert masks.shape == (2, 18, 24) and masks.dtype == bool
    assert outside.shape == (2,) and ((0 <= outside) & (outside <= 1)).all()


def test_the_shipped_finder_is_the_committed_recipes():
    finder = LesionFinder.load()
    recipe = FinderRecipe.load(RECIPE)
    assert finder.card["recipe_sha256"] == recipe.sha256
    stored = {k: tuple(v) if isinstance(v, list) else v for k, v in finder.card["recipe"].items()}
    assert stored == {k: v for k, v in asdict(recipe).items() if k != "sha256"}
    assert finder.card["validation"]["iou"] > 0.75  # on the fold it never learnt


def test_another_file_is_refused_in_words():
    with pytest.raises(ValueError, match="not a lesion finder"):
        LesionFinder.load(REPO_DIR / "skin_model" / "model" / "index.safetensors")


def test_the_finder_answers_as_its_stored_network(tmp_path):
    """Loaded, its batch norms are folded and its layout channels-last: the same masks and shares
    as the network as stored."""
    from safetensors.torch import load_file

    from skin_model.inference.lesion_finder import LesionNet, finder_input
    from skin_model.inference.quality import within_size

    from .test_quality import _lesion

    finder = LesionFinder.load()
    stored = LesionNet(tuple(finder.card["widths"]), tuple(finder.input_size))
    stored.load_state_dict(load_file(str(REPO_DIR / "skin_model" / "model" / FILE)))
    pixels = [np.asarray(within_size(_lesion(centre=c))) for c in ((0.5, 0.5), (0.1, 0.4))]
    masks, outside = finder.find(pixels)
    with torch.inference_mode():
        x = torch.cat(
            [finder_input(torch.from_numpy(p.copy()).permute(2, 0, 1)[None], finder.input_size) for p in pixels]
        )
        logits, outside_logit = stored.eval()(x)
    assert np.allclose(outside, torch.sigmoid(outside_logit).numpy(), atol=1e-5)
    assert (masks == (logits[:, 0] > 0).numpy()).mean() > 0.999


def _rand(seed: int):
    g = torch.Generator().manual_seed(seed)
    return lambda *shape: torch.rand(*shape, generator=g)


@pytest.mark.parametrize("seed", range(6))
def test_a_sticker_sits_at_the_frame_and_hides_no_lesion_under_it(seed):
    """ISIC 2017's calibration stickers: a saturated disc within about a radius of an edge, and the
    mask says there is no lesion under it."""
    x = torch.zeros(1, 3, 72, 96)  # mid-grey skin
    y = torch.ones(1, 1, 36, 48)  # lesion everywhere
    stuck, mask = with_sticker(x, y, _rand(seed))
    changed = (stuck != x).any(1)[0]
    assert 0.01 < changed.float().mean() < 0.6
    rows, cols = changed.nonzero(as_tuple=True)
    assert min(rows.min(), 71 - rows.max(), cols.min(), 95 - cols.max()) == 0  # it reaches the frame
    covered = mask[0, 0] == 0
    assert covered.any() and (mask[0, 0][~covered] == 1).all()
    small = torch.nn.functional.interpolate(changed[None, None].float(), size=(36, 48), mode="area")[0, 0]
    assert (small[covered] > 0).float().mean() > 0.9  # the mask is cleared where the sticker is


@pytest.mark.parametrize("seed", range(4))
def test_a_ruler_is_thin_and_dark(seed):
    x = torch.full((1, 3, 72, 96), 0.5)
    ruled = with_ruler(x, _rand(seed))
    changed = (ruled != x).any(1)
    assert 0 < changed.float().mean() < 0.05
    assert (ruled[:, :, changed[0]] <= -0.6).all()


@pytest.mark.parametrize("seed", range(4))
def test_a_round_field_darkens_the_corners_and_loses_the_lesion_under_them(seed):
    img = torch.full((1, 3, 150, 200), 200.0)
    mask = torch.ones(1, 1, 150, 200)
    seen, kept = in_round_field(img, mask, _rand(seed))
    assert seen[..., 0, 0].max() < 30 and seen[..., 75, 100].min() > 195
    assert kept[..., 0, 0].item() == 0 and kept[..., 75, 100].item() == 1


@pytest.mark.parametrize("radius, cut", [(70, True), (20, False)], ids=["filling the photo", "small, central"])
def test_a_lesion_the_round_field_hides_counts_as_cut_off(radius, cut):
    """The field cuts a lesion off as the frame does: a lesion filling the photo loses its corners
    to it (a share outside), a small central one loses nothing."""
    yy, xx = torch.meshgrid(torch.arange(150), torch.arange(200), indexing="ij")
    lesion = (((xx - 100) ** 2 + (yy - 75) ** 2) < radius**2) | torch.tensor(radius > 50)
    images = torch.full((4, 3, 150, 200), 200, dtype=torch.uint8)
    masks = lesion.float().expand(4, 1, 150, 200).clone()
    recipe = FinderRecipe(version="t", crop_p=0.0, field_p=1.0, blur_p=0.0, low_res_p=0.0)
    _, _, outside = random_views(images, masks, recipe, torch.Generator().manual_seed(0))
    assert ((outside > 0.01) if cut else (outside == 0)).all()


def _photo_and_disc(centre: tuple[int, int], radius: float) -> tuple[torch.Tensor, torch.Tensor]:
    """A 200x150 photo whose every pixel holds its own index, and a disc lesion's 0/1 mask."""
    yy, xx = torch.meshgrid(torch.arange(150), torch.arange(200), indexing="ij")
    lesion = (((xx - centre[0]) ** 2 + (yy - centre[1]) ** 2) < radius**2).float()[None, None]
    return torch.arange(150 * 200, dtype=torch.float32).view(1, 1, 150, 200).expand(1, 3, 150, 200), lesion


@pytest.mark.parametrize(
    "centre, radius", [((90, 80), 40), ((185, 140), 20), ((100, 75), 1)], ids=["centred", "at a corner", "a pixel"]
)
def test_a_cut_through_view_is_the_photo_on_one_side_of_a_straight_cut(centre, radius):
    """Over 16 draws: each view is the photo's own pixels where they were, cut along one axis, at
    least a quarter of it along that axis; a centred lesion is cut through (some of it kept, not
    all), from each of the four sides; a one-pixel lesion is kept whole or not at all."""
    img, lesion = _photo_and_disc(centre, radius)
    sides = set()
    for seed in range(16):
        part, mask = cut_through(img, lesion, _rand(seed))
        first = int(part[0, 0, 0, 0])
        top, left = first // 200, first % 200
        assert torch.equal(part, img[..., top : top + part.shape[-2], left : left + part.shape[-1]])
        assert torch.equal(mask, lesion[..., top : top + part.shape[-2], left : left + part.shape[-1]])
        upright = part.shape[-1] == 200
        assert upright != (part.shape[-2] == 150)  # cut along one axis only
        assert (part.shape[-2] >= 150 // 4) if upright else (part.shape[-1] >= 200 // 4)
        sides.add((upright, top > 0 or left > 0))
        kept = float(mask.sum()) / float(lesion.sum())
        if radius == 1:
            assert kept in (0.0, 1.0)
        elif centre == (90, 80):
            assert 0.1 < kept < 0.9
    if centre == (90, 80):
        assert len(sides) == 4


def test_a_photo_without_a_lesion_is_not_cut():
    img, lesion = _photo_and_disc((100, 75), 0)
    part, mask = cut_through(img, lesion, _rand(0))
    assert part is img and mask is lesion


def test_the_export_reads_photos_as_the_quality_check_does(tmp_path):
    """The thresholds are chosen on the measures the check compares with them: photos of any size
    and shape (an 84 px square, a portrait, a large 4:3) read the same way."""
    from skin_model.inference import quality
    from skin_model.inference.inputs import load_image

    from .test_quality import _lesion

    finder = LesionFinder.load()
    paths = []
    for i, (size, centre) in enumerate([((84, 84), (0.5, 0.5)), ((150, 220), (0.1, 0.5)), ((800, 600), (0.9, 0.4))]):
        paths.append(tmp_path / f"{i}.png")
        _lesion(size=size, centre=centre, seed=i).save(paths[-1])
    checked = [quality.check(load_image(p), finder) for p in paths]
    assert np.allclose(
        framing(finder, paths, finder.thresholds["close_up_share"]),
        [(q.lesion_share, q.lesion_outside) for q in checked],
    )


def test_each_framing_threshold_is_its_own_quantile_the_most_lenient():
    rng = np.random.default_rng(0)
    # a has the lowest shares, b the highest shares outside: each threshold comes from another source
    a = np.stack([rng.uniform(0.0, 0.4, 1000), rng.uniform(0, 0.2, 1000)], 1)
    b = np.stack([rng.uniform(0.1, 0.5, 1000), rng.uniform(0, 0.6, 1000)], 1)
    for measures in ([a, b], [b, a]):
        got = choose_thresholds(measures, small_q=0.99, cut_q=0.9)
        assert got["min_share"] == pytest.approx(np.quantile(a[:, 0], 0.01))
        assert got["max_outside"] == pytest.approx(np.quantile(b[:, 1], 0.9))


def test_close_ups_are_read_less_their_margin_where_the_cut_threshold_is_chosen():
    """A lesion over ``close_up_share`` of the photo counts as ``close_up_margin`` less cut, where
    the threshold is chosen as where it is judged: far-outside close-ups raise it only by what is
    left; a margin of 1 leaves them out."""
    rng = np.random.default_rng(0)
    shares = rng.uniform(0, 1, 2000)
    outside = np.where(shares > 0.7, 0.9, rng.uniform(0, 0.3, 2000))  # close-ups: far outside
    measures = [np.stack([shares, outside], 1)]
    for margin in (1.0, 0.3):
        got = choose_thresholds(measures, small_q=0.99, cut_q=0.9, close_up_share=0.7, close_up_margin=margin)
        assert got["close_up_share"] == 0.7 and got["close_up_margin"] == margin
        read = np.where(shares < 0.7, outside, outside - margin)
        assert got["max_outside"] == pytest.approx(np.quantile(read, 0.9))
    assert choose_thresholds(measures, 0.99, 0.9, 0.7, 1.0)["max_outside"] < 0.3
    assert choose_thresholds(measures, 0.99, 0.9, 0.7, 0.3)["max_outside"] == pytest.approx(0.6)
    assert choose_thresholds(measures, 0.99, 0.9)["max_outside"] == pytest.approx(0.9)
