"""The shipping rule of docs/model.md, read from two model cards (``scripts/shipping_rule.py``)."""

from __future__ import annotations

import copy

import pytest

from scripts.shipping_rule import conditions
from skin_model.inference.card import read_card_of_shipped


@pytest.fixture(scope="module")
def shipped():
    return read_card_of_shipped()


def _missed(candidate, shipped):
    return [name for name, _, _, met in conditions(candidate, shipped) if not met]


def test_the_shipped_model_meets_the_rule_against_itself(shipped):
    assert _missed(shipped, shipped) == []


def _changed(card, path, value):
    """A copy of ``card`` with the number at ``path`` set to ``value``, or moved by it if negative
    (that much below the shipped model)."""
    candidate = copy.deepcopy(card)
    *parents, key = path
    section = candidate
    for name in parents:
        section = section[name]
    section[key] = section[key] + value if value < 0 else value
    return candidate


REFERRAL = ("referral", "validation")
ANSWER = ("evaluation", "out_of_fold", "answer")
OUTSIDE = ("evaluation", "not_dermoscopy", "all", "flagged")
# (where, just past the bar, just within it, the condition's name)
BARS = [
    ((*REFERRAL, "specificity"), 0.749, 0.75, "referral specificity (out of fold)"),
    ((*REFERRAL, "sensitivity"), 0.899, 0.90, "referral sensitivity (out of fold)"),
    ((*ANSWER, "melanoma_auc"), -0.011, -0.009, "melanoma AUC (out of fold)"),
    ((*ANSWER, "balanced_accuracy_present"), -0.011, -0.009, "suggested diagnosis BA"),
    (("ood", "pass_rate_by_source", "isic2017"), 0.969, 0.97, "isic2017: passes the out-of-domain check"),
    (OUTSIDE, -0.021, -0.019, "kept-aside not-dermoscopy flagged"),
]


@pytest.mark.parametrize("path, past, within, name", BARS)
def test_each_condition_is_missed_alone_just_past_its_bar_and_met_just_within_it(shipped, path, past, within, name):
    missed = _missed(_changed(shipped, path, past), shipped)
    assert len(missed) == 1 and missed[0].startswith(name)
    assert _missed(_changed(shipped, path, within), shipped) == []


@pytest.mark.parametrize("path", [(*ANSWER, "images"), (*REFERRAL, "n")])
def test_other_out_of_fold_images_miss_the_rule(shipped, path):
    assert _missed(_changed(shipped, path, 7000), shipped) == ["the same out-of-fold images as the shipped model"]
