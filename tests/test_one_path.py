"""One inference path: export's out-of-fold numbers and the held-out harness's are the predictor's,
and an artifact the predictor cannot answer with fails at load, naming what is wrong."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pandas as pd
import pytest
import torch
from safetensors import safe_open
from safetensors.torch import load_file, save_file

from skin_model import vocab
from skin_model.config import CARD_FILE, INDEX_FILE
from skin_model.inference.card import ModelArtifactError
from skin_model.inference.network import encode_metadata
from skin_model.inference.predictor import FUSED, SkinClassifier


def _predictor_probabilities(model: SkinClassifier, pixels, metas, members) -> np.ndarray:
    logits, _ = model.member_outputs(pixels, metas, members=members)
    return model.calibrate(logits[:, FUSED], "training").numpy()


def test_export_s_out_of_fold_probabilities_are_the_predictor_s(cv_run, tiny_model):
    """Each out-of-fold image through the fold model(s) that never saw it, by the predictor's own
    code (``member_outputs``, ``calibrate``), gives the probabilities export chose everything on."""
    from skin_model.training.export import OUT_OF_FOLD_FILE

    written = pd.read_csv(cv_run.run / OUT_OF_FOLD_FILE)
    data = cv_run.data
    row_of = {image_id: i for i, image_id in enumerate(data.df["image_id"])}
    folds = [m["fold"] for m in tiny_model.card["members"]]
    checked = 0
    for k in sorted(set(written["fold"])):
        part = written[written["fold"] == k]
        rows = [row_of[i] for i in part["image_id"]]
        members = [i for i, fold in enumerate(folds) if fold == k]
        probs = _predictor_probabilities(tiny_model, data.images[rows], data.meta[rows], members)
        np.testing.assert_allclose(probs, part[list(vocab.CLASSES)].to_numpy(), atol=1e-5)
        checked += len(rows)
    assert checked == len(written) > 50


def test_the_held_out_harness_scores_as_the_predictor_would(cv_run, tiny_model, tmp_path):
    """The harness's held-out probabilities equal the predictor's for the same weights and calibration."""
    from dataclasses import replace

    from skin_model.training.holdout import PROBABILITIES_FILE, run_holdout
    from skin_model.training.train import load_epoch

    cfg = replace(cv_run.recipe.members[0], name="proxy")
    report = run_holdout(cv_run.data, "isic2017", cfg, tmp_path)
    member_dir = tmp_path / "without_isic2017" / "proxy"
    written = pd.read_csv(member_dir / PROBABILITIES_FILE)
    net, trained = load_epoch(member_dir, report["epoch"])
    # The shipped code, with the harness's fold model and calibration.
    model = SkinClassifier([net], tiny_model.card, tiny_model.cases, tiny_model.ood)
    model.member_inputs = [trained.inputs]
    model.temperature, model.bias = report["temperature"], torch.tensor(report["bias"], dtype=torch.float64)
    held = cv_run.data.subset(cv_run.data.df["source"].eq("isic2017").to_numpy())
    probs = _predictor_probabilities(model, held.images, held.meta, None)
    assert list(written["image_id"]) == list(held.df["image_id"])
    np.testing.assert_allclose(probs, written[list(vocab.CLASSES)].to_numpy(), atol=1e-5)


def _broken_copy(model_dir, tmp_path, edit_card=None, edit_index=None):
    copy = tmp_path / "model"
    shutil.copytree(model_dir, copy)
    if edit_card:
        card = json.loads((copy / CARD_FILE).read_text())
        edit_card(card)
        (copy / CARD_FILE).write_text(json.dumps(card))
    if edit_index:
        tensors = load_file(str(copy / INDEX_FILE))
        with safe_open(str(copy / INDEX_FILE), "pt") as f:
            metadata = f.metadata()
        edit_index(metadata)
        save_file(tensors, str(copy / INDEX_FILE), metadata=metadata)
    return copy


def _drop(section, key):
    return lambda card: card[section].pop(key)


def _set_threshold(value):
    return lambda metadata: metadata.__setitem__("threshold", value)


@pytest.mark.parametrize(
    "edit_card, edit_index, named",
    [
        (lambda card: card.pop("bias"), None, "bias"),
        (_drop("referral", "threshold"), None, "referral.threshold"),
        (_drop("ood", "threshold"), None, "ood.threshold"),
        (None, _set_threshold("None"), "threshold"),
        (None, _set_threshold("0.123"), "ood.threshold"),
        (lambda card: card["recipe"]["content"].__setitem__("split_file", "x.csv"), None, "split_file"),
        (_drop("data", "roles"), None, "data.roles"),
    ],
    ids=[
        "no bias",
        "no referral threshold",
        "no shown ood threshold",
        "no ood threshold",
        "two ood thresholds",
        "a refused recipe",
        "no roles",
    ],
)
def test_a_model_the_predictor_cannot_answer_with_fails_at_load(model_dir, tmp_path, edit_card, edit_index, named):
    import skin_model

    broken = _broken_copy(model_dir, tmp_path, edit_card, edit_index)
    with pytest.raises(ModelArtifactError, match=named.replace(".", r"\.")):
        skin_model.load_model(broken)


def test_loading_is_not_subject_to_the_per_call_timeout(model_dir, monkeypatch):
    """A slow cold start finishes: the load waits as long as it takes, once."""
    import time

    from skin_model.inference import predictor, torch_thread

    monkeypatch.setattr(torch_thread._default, "timeout_s", 0.05)
    real = predictor.load_artifact

    def slow(*args, **kwargs):
        time.sleep(0.3)
        return real(*args, **kwargs)

    monkeypatch.setattr(predictor, "load_artifact", slow)
    model = SkinClassifier.load(model_dir)
    assert model.version == "0.0.test"
    with pytest.raises(torch_thread.TorchThreadError):  # while an ordinary call still times out
        torch_thread.on_torch_thread(time.sleep, 0.3)


def test_the_metadata_vector_has_one_layout(tiny_model):
    """Training's metadata dropout hides fields where encoding puts them."""
    from skin_model.inference.inputs import Metadata
    from skin_model.training.train import hide_metadata

    known = encode_metadata(Metadata(age=40, sex="female", site="back"))[None]
    hidden = hide_metadata(known, 1.0, torch.Generator().manual_seed(0))
    assert torch.equal(hidden[0], encode_metadata(Metadata.unknown()))


@pytest.mark.parametrize(
    "members, views, lanes, expected",
    [
        (5, 4, 2, [4, 2]),  # four whole members, the fifth's views as two halves
        (4, 4, 2, [4, 0]),  # a full last round: nothing cut
        (5, 4, 1, [5, 0]),  # no lanes: nothing cut
        (5, 4, 3, [3, 4]),  # two members left for three lanes: each in two
        (1, 4, 8, [0, 4]),  # one member on many lanes: one view a part
        (5, 1, 2, [5, 0]),  # one view (no test-time flips): nothing to cut
        (3, 3, 2, [2, 2]),  # three views: a run of one and a run of two
    ],
)
def test_the_lanes_parts_cover_each_member_s_views_once_in_order(members, views, lanes, expected):
    from skin_model.inference.ensemble import lane_parts

    views = ("identity", "hflip", "vflip", "hvflip")[:views]
    parts = lane_parts(members, views, lanes)
    whole = [m for m, v in parts if v == views]
    assert [len(whole), len(parts) - len(whole)] == expected
    assert [m for m, _ in parts] == sorted(m for m, _ in parts)  # in member order
    for m in range(members):  # every view of every member, once, in order
        assert sum((v for i, v in parts if i == m), ()) == views


def test_an_answer_cut_into_parts_for_the_lanes_is_the_whole_pass_s(tiny_model, monkeypatch):
    """The members' pass cut for the lanes (the fifth member's views as two halves on two lanes)
    gives the answer, the features and every heatmap of the pass of whole members."""
    from skin_model.inference import torch_thread
    from skin_model.inference.referral import MALIGNANT

    from .conftest import synthetic_lesion

    monkeypatch.setattr(torch_thread._default, "lanes", 2)  # two real lanes, whatever this machine's cores
    assert any(len(v) < len(tiny_model.views) for _, v in tiny_model._parts(tiny_model.views))
    # One fold model over a data set runs whole (on the torch thread's own pool); a member named
    # twice is refused rather than summed.
    assert tiny_model._parts(tiny_model.views, [3]) == [(3, tiny_model.views)]
    with pytest.raises(ValueError, match="twice"):
        tiny_model._parts(tiny_model.views, [0, 0])
    prepared = tiny_model.prepare(synthetic_lesion("mel", 4), age=60, sex="male", site="back")
    pixels, metas = prepared.pixels, encode_metadata(prepared.metadata)[None]
    cut = tiny_model.answer_prepared(prepared), tiny_model.member_outputs(pixels, metas)
    monkeypatch.setattr(torch_thread._default, "lanes", 1)  # no lanes: whole members, inline
    assert all(len(v) == len(tiny_model.views) for _, v in tiny_model._parts(tiny_model.views))
    whole = tiny_model.answer_prepared(prepared), tiny_model.member_outputs(pixels, metas)
    (cut_pred, cut_attention), (whole_pred, whole_attention) = cut[0], whole[0]
    assert cut_pred.label == whole_pred.label and cut_pred.verdict == whole_pred.verdict
    for code in vocab.CLASSES:
        assert cut_pred.probabilities[code] == pytest.approx(whole_pred.probabilities[code], abs=1e-6)
    assert cut_pred.referral_probability == pytest.approx(whole_pred.referral_probability, abs=1e-6)
    torch.testing.assert_close(cut[1][0], whole[1][0], atol=1e-5, rtol=0)
    for cut_features, whole_features in zip(cut[1][1], whole[1][1]):
        torch.testing.assert_close(cut_features, whole_features, atol=1e-5, rtol=1e-5)
    for target in (cut_pred.label, MALIGNANT, "nv"):
        np.testing.assert_allclose(
            cut_attention.heatmap(target, (64, 48)).heatmap,
            whole_attention.heatmap(target, (64, 48)).heatmap,
            atol=1e-5,
        )
