"""Decisions under a stated prior, and test-time flips (the answer of model v2)."""

import copy

import numpy as np
import pytest
import torch
from PIL import Image

from skin_model import vocab
from skin_model.inference.priors import PRIORS, apply_prior
from skin_model.training.train import choose_prior_strength

from .conftest import synthetic_lesion


def test_bayes_correction_on_known_numbers():
    probs = torch.tensor([[0.5, 0.5]], dtype=torch.float64)
    train = torch.tensor([0.8, 0.2], dtype=torch.float64)
    equal = PRIORS["equal"](train)
    # p' ~ p * (0.5 / 0.8, 0.5 / 0.2) = (0.625, 2.5) -> (0.2, 0.8)
    assert apply_prior(probs, train, equal)[0].numpy() == pytest.approx([0.2, 0.8])
    assert apply_prior(probs, train, equal, strength=0.0)[0].numpy() == pytest.approx([0.5, 0.5])
    assert apply_prior(probs, train, PRIORS["training"](train))[0].numpy() == pytest.approx([0.5, 0.5])


def test_prior_strength_is_chosen_on_the_data_given():
    rng = np.random.default_rng(0)
    train = torch.tensor([0.9, 0.1], dtype=torch.float64)
    labels = torch.tensor([0] * 200 + [1] * 200)
    # Scores that a model trained on 90/10 data gives: the minority class is under-called,
    # so the full correction is what balanced accuracy wants...
    evidence = torch.tensor(np.concatenate([rng.normal(-1, 1, 200), rng.normal(1, 1, 200)]))
    skewed = torch.stack([torch.sigmoid(-evidence) * 0.9, torch.sigmoid(evidence) * 0.1], 1)
    skewed = skewed / skewed.sum(1, keepdim=True)
    strength, scores = choose_prior_strength(skewed, labels, train)
    assert strength >= 0.8 and scores[f"{strength:.1f}"] == max(scores.values())
    # ...while scores that are already balanced need none.
    balanced = torch.stack([torch.sigmoid(-evidence), torch.sigmoid(evidence)], 1)
    assert choose_prior_strength(balanced, labels, train)[0] <= 0.2


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
    # The suggested diagnosis is the top class under the card's answer prior, whatever prior the
    # probabilities are stated under.
    decided = {"training": training, "equal": equal}[tiny_model.answer_prior].probabilities
    assert training.label == equal.label == max(decided, key=decided.get)
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
    """The four flipped views of a flipped image are the four views of the image."""
    img = synthetic_lesion("mel", 34, size=(120, 90))
    a = tiny_model.predict(img, age=40, site="back")
    b = tiny_model.predict(img.transpose(flip), age=40, site="back")
    assert list(a.probabilities.values()) == pytest.approx(list(b.probabilities.values()), abs=1e-4)


def test_gradcam_follows_a_flip(tiny_model):
    img = synthetic_lesion("mel", 35, size=(120, 90))
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


@pytest.mark.parametrize("answer_prior", ["training", "equal"])
def test_the_card_names_the_prior_the_answer_is_decided_under(tiny_model, answer_prior):
    model = copy.copy(tiny_model)
    model.answer_prior = answer_prior
    for seed, dx in enumerate(vocab.CLASSES):
        pred = model.predict(synthetic_lesion(dx, 40 + seed), age=50)
        decided = model.predict(synthetic_lesion(dx, 40 + seed), age=50, prior=answer_prior).probabilities
        assert pred.label == max(decided, key=decided.get)
        assert pred.confidence == pred.probabilities[pred.label]  # stated under the asked prior


def test_an_unknown_answer_prior_in_the_card_is_refused(tiny_model):
    from skin_model.inference.card import ModelArtifactError
    from skin_model.inference.predictor import SkinClassifier

    card = copy.deepcopy(tiny_model.card)
    card["prior"]["default"] = "uniformish"
    with pytest.raises(ModelArtifactError, match="uniformish"):
        SkinClassifier([], card, tiny_model.cases, tiny_model.ood)
