"""Decisions under a stated prior, and test-time flips (the answer of model v2)."""

import numpy as np
import pytest
import torch
from PIL import Image

from skin_model import vocab
from skin_model.priors import PRIORS, apply_prior, choose_prior_strength

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


def test_the_answer_under_each_prior(tiny_model):
    img = synthetic_lesion("bkl", 31)
    training = tiny_model.predict(img, age=50, prior="training")
    equal = tiny_model.predict(img, age=50, prior="equal")
    assert (training.prior, equal.prior) == ("training", "equal")
    for pred in (training, equal):  # the predicted class is always the top of what is shown
        assert pred.label == max(pred.probabilities, key=pred.probabilities.get)
        assert sum(pred.probabilities.values()) == pytest.approx(1.0)
    ratio = (1 / len(vocab.CLASSES) / tiny_model.train_prior.numpy()) ** tiny_model.prior_strength
    expected = np.array(list(training.probabilities.values())) * ratio
    assert list(equal.probabilities.values()) == pytest.approx(list(expected / expected.sum()), abs=1e-9)
    assert equal.malignant_probability == pytest.approx(sum(equal.probabilities[c] for c in ("akiec", "bcc", "mel")))


def test_the_default_prior_is_equal(tiny_model):
    img = synthetic_lesion("df", 32)
    assert tiny_model.predict(img).probabilities == tiny_model.predict(img, prior="equal").probabilities


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
    from skin_model.network import encode_metadata

    meta = encode_metadata(prepared.metadata)[None]
    on, off = (
        tiny_model.member_logits(prepared.pixels, meta),
        tiny_model.member_logits(prepared.pixels, meta, tta=False),
    )
    assert on.shape == off.shape and not torch.allclose(on, off)
