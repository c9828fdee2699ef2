import numpy as np
import pytest
import torch

from skin_model.training.calibration import fit_temperature
from skin_model.training.metrics import classification_report, expected_calibration_error


def test_report_on_a_known_case():
    labels = np.array([0, 0, 1, 1, 5, 5, 5, 5])
    preds = np.array([0, 1, 1, 1, 5, 5, 5, 0])
    probs = np.eye(7)[preds] * 0.9 + 0.1 / 7
    r = classification_report(probs, labels)
    assert r["accuracy"] == pytest.approx(6 / 8)
    assert r["balanced_accuracy"] == pytest.approx((0.5 + 1.0 + 0.75) / 3)
    assert r["confusion_matrix"][0][1] == 1 and r["confusion_matrix"][5][0] == 1
    assert r["precision"]["bcc"] == pytest.approx(2 / 3) and r["recall"]["df"] is None


def test_ece_is_zero_when_confidence_matches_accuracy_and_large_when_not():
    labels = np.array([0, 0, 0, 1])
    probs = np.tile([0.75, 0.25, 0, 0, 0, 0, 0], (4, 1))
    assert expected_calibration_error(probs, labels) == pytest.approx(0.0)
    sure = np.tile([1.0, 0, 0, 0, 0, 0, 0], (4, 1))
    assert expected_calibration_error(sure, labels) == pytest.approx(0.25)


def test_temperature_scaling_recovers_the_true_temperature():
    gen = torch.Generator().manual_seed(0)
    logits = torch.randn(20000, 7, generator=gen) * 3
    labels = torch.multinomial(torch.softmax(logits / 2.0, 1), 1, generator=gen).squeeze(1)
    assert fit_temperature(logits, labels) == pytest.approx(2.0, rel=0.05)
