"""What the card reports of a design's held-out-source rows (``holdout.held_out_evidence``)."""

from __future__ import annotations

import json

import pytest

from skin_model.training.holdout import EVIDENCE_KEYS, held_out_evidence

MEMBER = {"arch": "mobilenet_v2", "width": 128, "height": 96, "epochs": 4}


def held_out_row(source, auc, variant="chosen"):
    """A held-out row as the harness writes it."""
    return _row(variant, source, auc)


def _row(variant, source, auc, split=True):
    row = {key: 0.5 for key in EVIDENCE_KEYS.values()} | {"images": 10, "melanomas": 3}
    row |= {"variant": variant, "holdout": source, "melanoma_auc_training_prior": auc, "member": MEMBER}
    return row | ({"split": "4.0.0.toml fold 0"} if split else {})


@pytest.fixture
def results(tmp_path):
    path = tmp_path / "results.jsonl"
    rows = [
        _row("chosen", "a", 0.60),
        _row("chosen", "b", 0.80),
        _row("other", "c", 0.70),
        _row("chosen", "a", 0.70),  # scored again: replaces the row before
        _row("chosen", "a", 0.99, split=False),  # the old single split: not this design's evidence
    ]
    path.write_text("\n".join(json.dumps(r) for r in rows) + "\n")
    return path


def test_the_latest_row_of_each_source_of_the_variant_and_their_mean(results):
    evidence = held_out_evidence(results, "chosen")
    assert set(evidence["by_source"]) == {"a", "b"}
    assert evidence["by_source"]["a"]["melanoma_auc"] == 0.70
    assert evidence["mean"]["melanoma_auc"] == pytest.approx(0.75)
    assert "images" not in evidence["mean"] and evidence["by_source"]["b"]["images"] == 10
    assert evidence["split"] == "4.0.0.toml fold 0"
    assert evidence["fold_model"] == MEMBER | {"fold": 0}


def test_rows_of_unlike_fold_models_are_an_error(results):
    other = _row("chosen", "b", 0.8) | {"member": MEMBER | {"epochs": 8}}
    results.write_text(results.read_text() + json.dumps(other) + "\n")
    with pytest.raises(ValueError, match="differ in their fold model"):
        held_out_evidence(results, "chosen")


@pytest.mark.parametrize("variant", ["missing", "CHOSEN"])
def test_a_variant_without_rows_is_an_error_that_names_it(results, variant):
    with pytest.raises(ValueError, match=variant):
        held_out_evidence(results, variant)
