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


@pytest.mark.parametrize(
    "path, value, missed",
    [
        (("referral", "validation", "specificity"), 0.74, "referral specificity (out of fold)"),
        (("referral", "validation", "sensitivity"), 0.89, "referral sensitivity (out of fold)"),
        (("evaluation", "out_of_fold", "answer", "melanoma_auc"), -0.011, "melanoma AUC (out of fold)"),
        (("evaluation", "out_of_fold", "answer", "balanced_accuracy_present"), -0.011, "suggested diagnosis BA"),
        (("ood", "pass_rate_by_source", "isic2017"), 0.96, "isic2017: passes the out-of-domain check"),
        (("evaluation", "not_dermoscopy", "all", "flagged"), -0.021, "kept-aside not-dermoscopy flagged"),
        (("evaluation", "out_of_fold", "answer", "images"), 7000, "the same out-of-fold images"),
    ],
)
def test_each_condition_is_missed_alone_just_past_its_bar(shipped, path, value, missed):
    candidate = copy.deepcopy(shipped)
    *parents, key = path
    section = candidate
    for name in parents:
        section = section[name]
    section[key] = section[key] + value if value < 0 else value  # negative: that much below the shipped model
    assert len(_missed(candidate, shipped)) == 1 and _missed(candidate, shipped)[0].startswith(missed)
