"""Honest numbers: probability formatting, the uncertain pair, the out-of-domain set and check."""

import numpy as np
import pytest

from skin_model.i18n import percent, t
from skin_model.uncertainty import choose_gap, uncertain_pair


@pytest.mark.parametrize(
    "p, en, fr",
    [
        (1.0, "100.0%", "100,0\u202f%"),
        (0.9995, ">99.9%", ">99,9\u202f%"),
        (0.99951, ">99.9%", ">99,9\u202f%"),
        (0.999, "99.9%", "99,9\u202f%"),
        (0.59, "59.0%", "59,0\u202f%"),
        (0.0004, "<0.1%", "<0,1\u202f%"),
        (0.0, "0.0%", "0,0\u202f%"),
        (0.0005, "0.1%", "0,1\u202f%"),
    ],
)
def test_probabilities_are_never_rounded_to_false_certainty(p, en, fr):
    assert percent(p, "en") == en and percent(p, "fr") == fr


def test_the_uncertain_pair_and_its_words():
    close = {"akiec": 0.303, "bcc": 0.336, "bkl": 0.2, "df": 0.05, "mel": 0.05, "nv": 0.05, "vasc": 0.011}
    assert uncertain_pair(close, gap=0.10) == ("bcc", "akiec")
    assert uncertain_pair(close, gap=0.02) is None
    assert t("diag.uncertain", "en", a="bcc", b="akiec").startswith("Uncertain between **bcc** and **akiec**")
    assert "Incertain entre **bcc** et **akiec**" in t("diag.uncertain", "fr", a="bcc", b="akiec")


def test_the_gap_is_the_smallest_that_reaches_the_target_on_the_data_given():
    rng = np.random.default_rng(0)
    labels = rng.integers(0, 3, 600)
    gap = rng.uniform(0, 0.6, 600)
    right = rng.uniform(0, 0.6, 600) < gap + 0.25  # wider gaps are right more often
    top = np.where(right, labels, (labels + 1) % 3)
    probs = np.full((600, 3), 0.0)
    probs[np.arange(600), top] = 0.5 + gap / 2
    probs[np.arange(600), (top + 2) % 3] = 0.5 - gap / 2
    chosen = choose_gap(probs, labels, target=0.85)
    assert chosen["validation"]["balanced_accuracy_of_certain"] >= 0.85
    smaller = chosen["gap"] - 0.02
    certain = gap >= smaller - 1e-9
    recalls = [(top[certain & (labels == c)] == c).mean() for c in range(3)]
    assert np.mean(recalls) < 0.85  # one step smaller misses the target


def test_the_out_of_domain_set_has_every_category():
    from skin_model.ood_set import out_of_domain_images

    sets = out_of_domain_images()
    assert {"solid colour", "noise", "gradient", "checkerboard", "text", "test pattern"} <= set(sets)
    assert all(len(images) >= 4 for images in sets.values())
    assert all(min(img.size) >= 32 for images in sets.values() for img in images)
