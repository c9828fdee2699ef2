"""The referral rule: its threshold, its verdicts, and the card's record of both."""

from __future__ import annotations

import json

import numpy as np
import pytest

from skin_model import vocab
from skin_model.config import PACKAGE_DIR
from skin_model.inference import referral

MEL, NV, BCC = (vocab.CLASSES.index(c) for c in ("mel", "nv", "bcc"))


def test_the_threshold_is_the_highest_that_keeps_the_sensitivity():
    # ten malignant lesions scored 0.1 ... 1.0 and benign ones below: 90% -> the 9th highest, 0.2
    scores = np.array([0.1 * i for i in range(1, 11)] + [0.05, 0.15, 0.25])
    malignant = np.array([True] * 10 + [False] * 3)
    assert referral.choose_threshold(scores, malignant) == pytest.approx(0.2)
    assert referral.choose_threshold(scores, malignant, sensitivity=1.0) == pytest.approx(0.1)
    assert referral.choose_threshold(scores, malignant, sensitivity=0.5) == pytest.approx(0.6)
    # at that threshold the rule flags 9 of 10; a hair higher, 8
    assert (scores[malignant] >= 0.2).mean() == 0.9 and (scores[malignant] >= 0.2001).mean() == 0.8


@pytest.mark.parametrize("sensitivity", [0.8, 0.9, 0.95, 1.0])
def test_on_random_scores_the_chosen_threshold_meets_the_sensitivity_and_no_higher_one_does(sensitivity):
    rng = np.random.default_rng(int(sensitivity * 100))
    labels = rng.choice(len(vocab.CLASSES), 500)
    scores = rng.random(500) + 0.3 * referral.is_malignant(labels)
    t = referral.choose_threshold(scores, referral.is_malignant(labels), sensitivity)
    point = referral.operating_point(scores, labels, t)
    assert point["sensitivity"] >= sensitivity
    higher = np.nextafter(t, 2.0)
    assert referral.operating_point(scores, labels, higher)["sensitivity"] < sensitivity
    c = point["confusion"]
    assert c["referred_malignant"] + c["missed_malignant"] == referral.is_malignant(labels).sum()
    assert sum(c.values()) == 500


@pytest.mark.parametrize("ood", [False, True])
@pytest.mark.parametrize("p", [0.0, 0.2, 0.99])
def test_an_image_out_of_domain_is_never_cleared(ood, p):
    verdict = referral.verdict(p, threshold=0.2, ood=ood)
    if ood:
        assert verdict == referral.CANNOT_JUDGE
    else:
        assert verdict == (referral.SUSPICIOUS if p >= 0.2 else referral.NOT_SUSPICIOUS)


def test_natural_frequencies_round_to_whole_lesions():
    assert referral.natural_frequencies({"sensitivity": 0.906, "specificity": 0.734}) == (91, 27)


def _cards(model_dir) -> dict:
    shipped = json.loads((PACKAGE_DIR / "model" / "model_card.json").read_text())
    tiny = json.loads((model_dir / "model_card.json").read_text())
    return {"shipped": shipped, "tiny": tiny}


@pytest.mark.parametrize("which", ["shipped", "tiny"])
def test_the_cards_threshold_and_sensitivity_follow_from_its_stored_predictions(model_dir, which):
    rule = _cards(model_dir)[which]["referral"]
    stored = rule["chosen_on_scores"]
    scores, malignant = np.array(stored["malignant_probability"]), np.array(stored["malignant"], dtype=bool)
    assert referral.choose_threshold(scores, malignant, rule["target_sensitivity"]) == rule["threshold"]
    flagged = scores >= rule["threshold"]
    assert flagged[malignant].mean() == pytest.approx(rule["validation"]["sensitivity"])
    assert (~flagged[~malignant]).mean() == pytest.approx(rule["validation"]["specificity"])
    melanoma = np.array(stored["melanoma"], dtype=bool)
    assert flagged[melanoma].mean() == pytest.approx(rule["validation"]["melanoma_sensitivity"])
    assert rule["validation"]["sensitivity"] >= rule["target_sensitivity"]


def test_a_prediction_carries_the_verdict_under_the_training_prior_whatever_the_prior(tiny_model):
    from PIL import Image

    from .conftest import synthetic_lesion

    image = synthetic_lesion("bcc", seed=3)
    equal, training = (tiny_model.predict(image, prior=p) for p in ("equal", "training"))
    assert equal.referral_probability == pytest.approx(training.malignant_probability)
    assert equal.verdict == training.verdict and equal.refer_threshold == tiny_model.refer_threshold
    black = tiny_model.predict(Image.new("RGB", (160, 120)))
    assert black.ood and black.verdict == referral.CANNOT_JUDGE and black.refer is None  # it decides nothing
    assert black.as_dict()["refer"] is None  # cannot judge: the model decides nothing


def test_a_default_prediction_is_not_reassuring():
    """Fail closed: a Prediction built without the referral's numbers cannot be judged, and is
    referred."""
    from skin_model.inference.inputs import Metadata
    from skin_model.inference.predictor import Prediction

    probabilities = {c: 1 / 7 for c in vocab.CLASSES}
    pred = Prediction("nv", probabilities, probabilities, Metadata.unknown(), "0")
    assert (pred.verdict, pred.refer, pred.ood) == (referral.CANNOT_JUDGE, None, True)  # never "not suspicious"
    judged = Prediction("nv", probabilities, probabilities, Metadata.unknown(), "0", ood=False)
    assert judged.verdict == referral.CANNOT_JUDGE  # still no referral probability: not "not suspicious"


@pytest.mark.parametrize(
    "probability, threshold, ood, expected",
    [
        (0.5, 0.2, False, referral.SUSPICIOUS),
        (0.1, 0.2, False, referral.NOT_SUSPICIOUS),
        (0.1, 0.2, True, referral.CANNOT_JUDGE),
        (float("nan"), 0.2, False, referral.CANNOT_JUDGE),
        (0.1, float("nan"), False, referral.CANNOT_JUDGE),
        (0.1, float("inf"), False, referral.CANNOT_JUDGE),
    ],
)
def test_the_verdict_fails_closed(probability, threshold, ood, expected):
    assert referral.verdict(probability, threshold, ood) == expected
