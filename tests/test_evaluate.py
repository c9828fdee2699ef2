"""The evaluation of an exported artifact: it scores what the predictor answers, and writes the card."""

import json

import numpy as np
import pytest

from skin_model import vocab
from skin_model.training import evaluate as stage
from skin_model.training.data import find_images, metadata_of


@pytest.mark.parametrize("prior", ["training", "equal"])
@pytest.mark.parametrize("part", ["test", "check"])
def test_evaluation_and_the_predictor_give_the_same_probabilities(cv_run, tiny_model, part, prior):
    """The same images give the same calibrated probabilities and out-of-domain flags whether the
    evaluation scores them or the app predicts them (temperature and class biases included)."""
    assert any(abs(b) > 1e-3 for b in tiny_model.card["bias"].values())  # a bias-free formula would differ
    data = cv_run.data
    mask = data.df["split"].eq(part).to_numpy()
    scored = stage.score_cached(tiny_model, data, mask)
    paths = find_images(cv_run.data_dirs)
    rows = list(data.df[mask].itertuples())
    assert len(rows) == len(scored[prior]) > 1
    for i, row in enumerate(rows):
        meta = metadata_of(row)
        pred = tiny_model.predict(paths[row.image_id], meta.age, meta.sex, meta.site, prior=prior)
        np.testing.assert_allclose(scored[prior][i], [pred.probabilities[c] for c in vocab.CLASSES], atol=1e-5)
        assert bool(scored["ood"][i]) == pred.ood


def test_the_evaluation_is_written_into_the_artifacts_card(cv_run):
    card = json.loads((cv_run.artifact / "model_card.json").read_text())
    evaluation, df = card["evaluation"], cv_run.data.df
    assert evaluation["splits"]["test"]["equal_prior"]["images"] == int(df["split"].eq("test").sum())
    assert evaluation["splits"]["check"]["equal_prior"]["images"] == int(df["split"].eq("check").sum())
    assert "isic2017 (check)" in evaluation["by_source"]
    assert card["referral"]["test"] == evaluation["splits"]["test"]["referral"]
    # The not-dermoscopy images: half fitted the check, the kept-aside half is what the evaluation reports.
    assert card["ood"]["outlier_exposure"]["outside_images_by_category"] == {"documents": 4, "natural": 4}
    assert {k: v["n"] for k, v in evaluation["not_dermoscopy"].items()} == {"documents": 4, "natural": 4, "all": 8}
    assert evaluation["not_dermoscopy_fitting_part"]["all"]["n"] == 8


def test_the_out_of_fold_answers_are_the_exports_scored_again_from_the_artifact(cv_run):
    """The evaluation re-scores each fold's images with the artifact's own fold model: what it
    finds is what the export chose the answer on (the stored weights are fp16, the export's fp32)."""
    card = json.loads((cv_run.artifact / "model_card.json").read_text())
    oof, df = card["evaluation"]["out_of_fold"], cv_run.data.df
    in_folds = df["split"].eq("train") & df["fold"].ge(0)
    assert oof["images"] == int(in_folds.sum())
    assert {s: r["images"] for s, r in oof["by_source"].items()} == df[in_folds]["source"].value_counts().to_dict()
    assert oof["answer"] == oof["training"]  # the answer: the top class of the probabilities shown
    for prior, exported in card["prior"]["out_of_fold_answers"].items():
        assert oof[prior]["melanoma_recall"] == pytest.approx(exported["melanoma_recall"], abs=0.02)
        assert oof[prior]["balanced_accuracy_present"] == pytest.approx(exported["balanced_accuracy"], abs=0.02)
    # Its AUCs rank by the calibrated probabilities, whichever prior names the answer.
    assert oof["equal"]["melanoma_auc"] == oof["training"]["melanoma_auc"]
