"""Decisions under a stated prior, and test-time flips (the answer of model v2)."""

import copy

import numpy as np
import pytest
import torch
from PIL import Image

from skin_model import vocab
from skin_model.inference.priors import PRIORS, apply_prior

from .conftest import synthetic_lesion


def test_bayes_correction_on_known_numbers():
    probs = torch.tensor([[0.5, 0.5]], dtype=torch.float64)
    train = torch.tensor([0.8, 0.2], dtype=torch.float64)
    equal = PRIORS["equal"](train)
    # p' ~ p * (0.5 / 0.8, 0.5 / 0.2) = (0.625, 2.5) -> (0.2, 0.8)
    assert apply_prior(probs, train, equal)[0].numpy() == pytest.approx([0.2, 0.8])
    assert apply_prior(probs, train, equal, strength=0.0)[0].numpy() == pytest.approx([0.5, 0.5])
    assert apply_prior(probs, train, PRIORS["training"](train))[0].numpy() == pytest.approx([0.5, 0.5])


def test_equal_on_a_balanced_training_set_changes_nothing():
    probs = torch.softmax(torch.randn(20, len(vocab.CLASSES), dtype=torch.float64), 1)
    balanced = torch.full((len(vocab.CLASSES),), 1 / len(vocab.CLASSES), dtype=torch.float64)
    assert torch.allclose(apply_prior(probs, balanced, PRIORS["equal"](balanced)), probs)


def test_bias_corrected_temperature_matches_the_frequencies_of_the_data_it_is_fitted_on():
    """Under the training prior, each class's mean probability is its frequency, whatever the
    model's lean (here: a model that over-calls the rarest class, as a class-weighted loss does)."""
    from skin_model.training.calibration import fit_bias_temperature

    g = torch.Generator().manual_seed(0)
    frequencies = torch.tensor([0.03, 0.05, 0.11, 0.01, 0.11, 0.67, 0.02])
    labels = torch.multinomial(frequencies, 4000, replacement=True, generator=g)
    logits = 3 * torch.randn(4000, 7, generator=g)
    logits[torch.arange(4000), labels] += 3.0
    logits[:, 3] += 2.0  # the lean
    t, bias = fit_bias_temperature(logits, labels)
    probs = torch.softmax(logits.double() / t + bias, 1)
    observed = torch.bincount(labels, minlength=7).double() / len(labels)
    assert probs.mean(0).numpy() == pytest.approx(observed.numpy(), abs=2e-3)
    assert bias[3] < bias.mean()  # the lean is taken out
    assert abs(float(bias.sum())) < 1e-9


def test_the_answer_under_each_prior(tiny_model):
    img = synthetic_lesion("bkl", 31)
    training = tiny_model.predict(img, age=50, prior="training")
    equal = tiny_model.predict(img, age=50, prior="equal")
    assert (training.prior, equal.prior) == ("training", "equal")
    for pred in (training, equal):
        assert sum(pred.probabilities.values()) == pytest.approx(1.0)
    # The answer is the most probable class under the prior the probabilities are stated in.
    for pred in (training, equal):
        assert pred.label == max(pred.probabilities, key=pred.probabilities.get)
        assert pred.confidence == max(pred.probabilities.values())
    # The equal prior raises the rarer classes against the commoner ones: the ratio of the two
    # answers falls as the training frequency rises.
    frequency = dict(zip(vocab.CLASSES, tiny_model.train_prior.tolist()))
    ratio = {c: equal.probabilities[c] / training.probabilities[c] for c in vocab.CLASSES}
    by_frequency = sorted(vocab.CLASSES, key=frequency.get)
    assert all(ratio[a] >= ratio[b] - 1e-9 for a, b in zip(by_frequency, by_frequency[1:]))
    # One malignancy number: the referral's (training frequencies) whatever prior the seven are under.
    malignant = sum(training.probabilities[c] for c in ("akiec", "bcc", "mel"))
    assert equal.malignant_probability == training.malignant_probability == pytest.approx(malignant)
    assert training.before_base_rates == pytest.approx(equal.probabilities)  # the other view, by its own name


def test_the_default_prior_is_the_training_frequencies(tiny_model):
    img = synthetic_lesion("df", 32)
    assert tiny_model.predict(img).probabilities == tiny_model.predict(img, prior="training").probabilities


def test_an_unknown_prior_is_refused(tiny_model):
    with pytest.raises(ValueError, match="Unknown prior"):
        tiny_model.predict(synthetic_lesion("df", 33), prior="uniformish")


@pytest.mark.parametrize(
    "flip", [Image.Transpose.FLIP_LEFT_RIGHT, Image.Transpose.FLIP_TOP_BOTTOM, Image.Transpose.ROTATE_180]
)
def test_flips_of_an_image_get_the_same_answer(tiny_model, flip):
    """The four flipped views of a flipped image are the four views of the image. At the source
    size already: an image brought to it goes through a JPEG round trip (as the training copies
    did), whose 8x8 blocks do not commute with a flip."""
    source = tiny_model.source
    img = synthetic_lesion("mel", 34, size=(source.width, source.height))
    a = tiny_model.predict(img, age=40, site="back")
    b = tiny_model.predict(img.transpose(flip), age=40, site="back")
    assert list(a.probabilities.values()) == pytest.approx(list(b.probabilities.values()), abs=1e-4)


def test_gradcam_follows_a_flip(tiny_model):
    # at the source size: no JPEG round trip, whose 8x8 blocks do not commute with a flip
    img = synthetic_lesion("mel", 35, size=(tiny_model.source.width, tiny_model.source.height))
    heat = tiny_model.explain(img, target="mel").heatmap
    flipped = tiny_model.explain(img.transpose(Image.Transpose.FLIP_LEFT_RIGHT), target="mel").heatmap
    np.testing.assert_allclose(flipped, heat[:, ::-1], atol=2e-3)


def test_tta_off_differs_from_tta_on(tiny_model):
    prepared = tiny_model.prepare(synthetic_lesion("vasc", 36))
    from skin_model.inference.network import encode_metadata

    meta = encode_metadata(prepared.metadata)[None]
    on, off = (
        tiny_model.member_logits(prepared.pixels, meta),
        tiny_model.member_logits(prepared.pixels, meta, tta=False),
    )
    assert on.shape == off.shape and not torch.allclose(on, off)


@pytest.mark.parametrize("prior", ["training", "equal"])
def test_uncertain_between_is_always_the_top_two_of_the_probabilities_shown(tiny_model, prior):
    """Over a sweep of synthetic images: the pair named is the two most probable classes shown, in
    order, and only when they are closer than that prior's gap; the answer is the first."""
    gap = tiny_model.uncertainty_gaps[prior]
    named = 0
    for seed in range(40):
        dx = vocab.CLASSES[seed % len(vocab.CLASSES)]
        pred = tiny_model.predict(synthetic_lesion(dx, 500 + seed), age=20 + seed, prior=prior)
        first, second = sorted(pred.probabilities, key=pred.probabilities.get, reverse=True)[:2]
        assert pred.label == first
        close = pred.probabilities[first] - pred.probabilities[second] < gap
        assert pred.uncertain_between == ((first, second) if close else None)
        named += close
    assert gap == 0 or named > 0  # the sweep met the rule on both sides where the gap allows it


def test_a_card_without_a_gap_for_each_prior_is_refused(tiny_model):
    from skin_model.inference.card import ModelArtifactError
    from skin_model.inference.predictor import SkinClassifier

    card = copy.deepcopy(tiny_model.card)
    del card["uncertainty"]["by_prior"]["equal"]
    with pytest.raises(ModelArtifactError, match="uncertainty.by_prior"):
        SkinClassifier([], card, tiny_model.cases, tiny_model.ood)
