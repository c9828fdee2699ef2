"""Honest numbers: probability formatting, the uncertain pair, the out-of-domain set and check."""

import numpy as np
import pytest

from skin_model.i18n import percent, t
from skin_model.inference.uncertainty import choose_gap, uncertain_pair


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
    words = {"a": "bcc", "p_a": "33.6%", "b": "akiec", "p_b": "30.3%"}
    assert t("diag.uncertain", "en", **words).startswith("Uncertain between **bcc** (33.6%) and **akiec** (30.3%)")
    assert "Incertain entre **bcc** (33.6%) et **akiec** (30.3%)" in t("diag.uncertain", "fr", **words)


def _answers(n=2000, seed=0):
    """Synthetic validation answers over 3 classes whose top answer is right more often as
    the top-two gap widens: right with probability 0.3 + gap."""
    rng = np.random.default_rng(seed)
    labels = rng.integers(0, 3, n)
    gap = rng.uniform(0, 0.6, n)
    right = rng.uniform(0, 1, n) < 0.3 + gap
    top = np.where(right, labels, (labels + 1) % 3)
    probs = np.zeros((n, 3))
    probs[np.arange(n), top] = 0.5 + gap / 2
    probs[np.arange(n), (top + 2) % 3] = 0.5 - gap / 2
    return probs, labels, gap, top == labels


def test_the_gap_is_the_widest_band_where_the_answer_is_a_coin_toss():
    probs, labels, gap, right = _answers()
    chosen = choose_gap(probs, labels)
    g = chosen["gap"]
    assert 0.2 < g < 0.6  # right at 0.3 + gap: the band's accuracy passes 50% around g = 0.4
    assert right[gap < g].mean() <= 0.5
    assert right[gap < g + 0.02].mean() > 0.5  # one step wider is no longer a coin toss
    assert chosen["validation"]["share_uncertain"] == pytest.approx((gap < g).mean())


def test_a_model_that_is_always_right_is_never_called_uncertain():
    probs, labels, gap, _ = _answers()
    labels = probs.argmax(-1)
    assert choose_gap(probs, labels)["gap"] == 0.0
    assert uncertain_pair(dict(zip("abc", probs[0])), 0.0) is None


def test_the_out_of_domain_set_has_every_category():
    from .ood_set import out_of_domain_images

    sets = out_of_domain_images()
    assert {"solid colour", "noise", "gradient", "checkerboard", "text", "test pattern"} <= set(sets)
    assert all(len(images) >= 4 for images in sets.values())
    assert all(min(img.size) >= 32 for images in sets.values() for img in images)
