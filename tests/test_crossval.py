"""Cross-validated training from a recipe, on synthetic data: two sources, five folds, one export
(the shared test model of ``conftest.make_cross_validated_run``)."""

from __future__ import annotations

import hashlib
import json
import shutil

import numpy as np
import pytest
import torch

from skin_model import vocab
from skin_model.training.recipe import Recipe


def test_every_fold_trains_on_the_other_source_and_never_on_its_own_lesions(cv_run):
    from skin_model.training.splits import fold_parts

    recipe, df = cv_run.recipe, cv_run.data.df
    for k in range(recipe.folds):
        train, val = fold_parts(df, k)
        assert not set(df[train]["lesion_id"]) & set(df[val]["lesion_id"])
        assert set(df[train & (df["source"] == "isic2017").to_numpy()]["dataset"]) == {"isic2017_train"}
        assert not (df[train | val]["split"] == "test").any()
    oof = df["split"].eq("train") & df["fold"].ge(0)
    assert sorted(df[oof]["fold"].unique()) == list(range(recipe.folds))


def test_the_export_is_calibrated_to_the_out_of_fold_frequencies(cv_run):
    data, card = cv_run.data, cv_run.card
    frequencies = card["prior"]["training_frequencies"]
    df = data.df
    oof = df[df["split"].eq("train") & df["fold"].ge(0)]
    assert frequencies == pytest.approx({c: float((oof["dx"] == c).mean()) for c in vocab.CLASSES})
    assert card["prior"]["equal_strength"] == 1.0
    assert len(card["members"]) == 5 and {m["fold"] for m in card["members"]} == set(range(5))
    assert card["source"]["colour_constancy"]["p"] == 6
    assert card["referral"]["validation"]["sensitivity"] >= 0.9
    assert set(card["ood"]["pass_rate_by_source"]) <= {"isic2017", "ham10000"}
    assert card["data"]["roles"]["isic2017"] == {
        "split": "own_parts",
        "parts": {"isic2017_train": "train", "isic2017_val": "check"},
    }
    # The bias makes the training prior mean the out-of-fold frequencies, class by class (the
    # fitted biases' gradient is the mean probability minus the frequency).
    training_prior = card["out_of_fold"]["training_prior"]
    assert training_prior["frequency"] == pytest.approx(frequencies)
    assert training_prior["mean_probability"] == pytest.approx(frequencies, abs=0.01)
    assert training_prior["mean_malignant_probability"] == pytest.approx(training_prior["malignant_share"], abs=0.01)


def test_the_card_reports_each_prior_s_out_of_fold_answer_and_gap(cv_run):
    """Both priors' top-class figures are reported (the default's and the balanced decision's),
    each with the uncertainty gap chosen on its own probabilities."""
    prior = cv_run.card["prior"]
    assert set(prior["out_of_fold_answers"]) == set(vocab.PRIOR_NAMES) == set(cv_run.card["uncertainty"]["by_prior"])
    assert "default" not in prior  # no second prior decides the answer


def test_similar_cases_carry_the_patient_recorded_with_each_image(cv_run, tiny_model):
    from skin_model.training.data import metadata_of

    recorded = cv_run.data.df.set_index("image_id")
    cases = tiny_model.cases
    assert len(cases.patients) == len(cases.image_ids)
    known = 0
    for image_id, patient in zip(cases.image_ids, cases.patients):
        assert patient == metadata_of(recorded.loc[image_id]), image_id
        known += patient.age is not None
    assert known > 0


def test_a_recipe_with_outlier_exposure_and_no_such_folder_says_what_to_give(cv_run, tmp_path, capsys):
    from skin_model.serving.cli import main

    recipe, data_dirs = cv_run.recipe, cv_run.data_dirs
    args = ["train", "--recipe", str(recipe.path), "--run", str(cv_run.run), "--export-only", "--out", str(tmp_path)]
    code = main(args + sum((["--data", str(d)] for d in data_dirs), []) + ["--outliers", str(tmp_path / "absent")])
    assert code == 2 and "--outliers" in capsys.readouterr().err
    assert not list(tmp_path.iterdir())  # nothing exported


def test_export_never_reads_test_labels(cv_run):
    """Poisoning the test split's labels changes nothing the export writes."""
    from skin_model.training.export import export_recipe

    recipe, data, data_dirs, root = cv_run.recipe, cv_run.data, cv_run.data_dirs, cv_run.root
    poisoned = data.subset(np.ones(len(data), dtype=bool))
    test = poisoned.df["split"].eq("test").to_numpy(copy=True)
    poisoned.labels[test] = (poisoned.labels[test] + 3) % len(vocab.CLASSES)
    poisoned.df.loc[test, "dx"] = [vocab.CLASSES[i] for i in poisoned.labels[test]]
    export_recipe(recipe, poisoned, data_dirs, cv_run.run, root / "poisoned", cv_run.outliers)
    assert (root / "poisoned" / "model_card.json").read_bytes() == (cv_run.exported / "model_card.json").read_bytes()
    for name in ("model.safetensors", "index.safetensors"):
        # Same tensors, bytes and metadata (safetensors may order its header's keys differently).
        assert _safetensors_content(root / "poisoned" / name) == _safetensors_content(cv_run.exported / name), name


def _safetensors_content(path) -> tuple[dict, dict]:
    from safetensors import safe_open

    with safe_open(str(path), "pt") as f:
        return {k: f.get_tensor(k).numpy().tobytes() for k in sorted(f.keys())}, f.metadata()


def test_the_loss_leaves_a_source_s_absent_diagnoses_alone():
    import torch.nn.functional as F

    from skin_model.training.train import partial_cross_entropy

    g = torch.Generator().manual_seed(0)
    logits = torch.randn(6, 7, generator=g, requires_grad=True)
    labels = torch.tensor([4, 5, 2, 4, 5, 2])  # mel, nv, bkl: what ISIC 2017 can name
    weight = torch.rand(7, generator=g) + 0.5
    everything = torch.ones(6, 7, dtype=torch.bool)
    expected = F.cross_entropy(logits, labels, weight=weight)
    assert partial_cross_entropy(logits, labels, everything, weight).item() == pytest.approx(expected.item())
    isic = torch.zeros(6, 7, dtype=torch.bool)
    isic[:, [2, 4, 5]] = True
    partial_cross_entropy(logits, labels, isic, weight, smoothing=0.1).backward()
    assert torch.all(logits.grad[:, [0, 1, 3, 6]] == 0)  # no push against akiec, bcc, df, vasc
    assert torch.all(logits.grad[:, [2, 4, 5]].abs().sum(1) > 0)


def test_evaluate_only_scores_the_exported_artifact_and_trains_nothing(cv_run, tmp_path):
    from skin_model.serving.cli import main

    recipe, data, data_dirs = cv_run.recipe, cv_run.data, cv_run.data_dirs
    artifact = shutil.copytree(cv_run.exported, tmp_path / "artifact")
    checkpoints = sorted(p.name for p in cv_run.run.rglob("*.safetensors"))
    args = ["train", "--recipe", str(recipe.path), "--run", str(cv_run.run), "--out", str(artifact)]
    assert main(args + sum((["--data", str(d)] for d in data_dirs), []) + ["--evaluate-only"]) == 0
    card = json.loads((artifact / "model_card.json").read_text())
    assert card["evaluation"]["splits"]["test"]["equal_prior"]["images"] == int(data.df["split"].eq("test").sum())
    assert sorted(p.name for p in cv_run.run.rglob("*.safetensors")) == checkpoints
    assert (artifact / "model.safetensors").read_bytes() == (cv_run.exported / "model.safetensors").read_bytes()


def _starting_recipe(cv_run, tmp_path, sha: str):
    """The test recipe, one epoch at a rate too small to move a weight, starting from the test artifact."""
    text = cv_run.recipe.path.read_text().replace(
        'model_version = "0.0.test"',
        f'model_version = "0.0.next"\nstart_from = {{ model_version = "0.0.test", sha256 = "{sha}" }}',
    )
    text = text.replace("epochs = 2", "epochs = 1").replace("lr = 2e-3", "lr = 1e-12")
    (tmp_path / "next.toml").write_text(text)
    return Recipe.load(tmp_path / "next.toml")


def test_a_recipe_that_starts_from_an_artifact_starts_each_fold_from_that_fold_s_model(cv_run, tmp_path):
    from safetensors.torch import load_file

    from skin_model.inference.artifact import load_artifact
    from skin_model.training.crossval import fold_dir, train_folds

    sha = hashlib.sha256((cv_run.artifact / "model.safetensors").read_bytes()).hexdigest()
    recipe = _starting_recipe(cv_run, tmp_path, sha)
    train_folds(recipe, cv_run.data, tmp_path / "run", start=cv_run.artifact)
    nets, card = load_artifact(cv_run.artifact)
    learnt = [k for k, v in nets[0].state_dict().items() if v.is_floating_point() and "running" not in k]

    def same(trained: dict, net) -> bool:
        return all(torch.allclose(trained[n], net.state_dict()[n], atol=1e-6) for n in learnt)

    for k in range(recipe.folds):
        trained = load_file(str(fold_dir(tmp_path / "run", "tiny", k) / "epoch_01.safetensors"))
        assert card["members"][k]["fold"] == k
        assert same(trained, nets[k]) and not same(trained, nets[(k + 1) % recipe.folds])


@pytest.mark.parametrize("given", ["wrong sha256", "no folder"])
def test_a_recipe_that_starts_from_an_artifact_refuses_another_or_none(cv_run, tmp_path, given):
    from skin_model.training.crossval import start_weights

    recipe = _starting_recipe(cv_run, tmp_path, "0" * 64)
    with pytest.raises(ValueError, match="sha256" if given == "wrong sha256" else "--start-from"):
        start_weights(recipe, cv_run.artifact if given == "wrong sha256" else None)


@pytest.mark.parametrize(
    "pretrained, start_from, said",
    [
        (True, None, "ImageNet"),
        (False, None, "none (from scratch)"),
        (True, {"model_version": "3.0.1", "sha256": "bb38b4e29908" + "0" * 52}, "model 3.0.1's fold 2 model"),
    ],
    ids=["ImageNet", "from scratch", "an earlier artifact"],
)
def test_the_card_says_where_each_fold_model_started(pretrained, start_from, said):
    from skin_model.training.export import starting_point

    words = starting_point(pretrained, 2, start_from)
    assert words.startswith(said)
    assert ("bb38b4e29908" in words) == (start_from is not None)  # which weights, checkably
