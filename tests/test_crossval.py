"""Cross-validated training from a recipe, on synthetic data: two sources, five folds, one export."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pandas as pd
import pytest
import torch
from PIL import Image

from skin_model import vocab

from .conftest import make_synthetic_dataset, synthetic_lesion


def make_second_source(root, per_class: int = 12):
    """A challenge-like source in HAM10000's columns: 3 of the 7 diagnoses, no body site, its own
    train / val parts."""
    rows = []
    (root / "images").mkdir(parents=True)
    for k, dx in enumerate(("bkl", "mel", "nv")):
        for j in range(per_class):
            image_id = f"ISIC_9{k}{j:03d}"
            synthetic_lesion(dx, seed=7000 + 100 * k + j).save(root / "images" / f"{image_id}.jpg")
            rows.append(
                {
                    "lesion_id": image_id,
                    "image_id": image_id,
                    "dx": dx,
                    "dx_type": "isic2017",
                    "age": 50,
                    "sex": "female",
                    "localization": "unknown",
                    "dataset": "isic2017_val" if j < 3 else "isic2017_train",
                }
            )
    pd.DataFrame(rows).to_csv(root / "metadata.csv", index=False)
    return root


def make_not_dermoscopy(root, per_category: int = 8):
    """Two kinds of image that are not dermoscopy: text pages and smooth colour gradients."""
    from PIL import ImageDraw

    for category in ("documents", "natural"):
        (root / category).mkdir(parents=True)
        for j in range(per_category):
            rng = np.random.default_rng(900 + j)
            if category == "documents":
                img = Image.new("RGB", (90, 120), "white")
                draw = ImageDraw.Draw(img)
                for line in range(4, 116, 9):
                    draw.text((4, line), "".join(rng.choice(list("lorem ipsum")) for _ in range(14)), fill="black")
            else:
                ramp = np.linspace(0, 1, 80)[None, :, None] * rng.uniform(0, 255, (1, 1, 3))
                img = Image.fromarray((ramp + np.linspace(0, 60, 60)[:, None, None]).clip(0, 255).astype(np.uint8))
            img.save(root / category / f"{category}_{j:03d}.jpg")
    return root


RECIPE = """
model_version = "0.0.cv"
folds = 5
split_file = "{split}"
colour_constancy_p = 6
tta = ["identity", "hflip"]
outlier_exposure = true

[member_defaults]
epochs = 2
batch_size = 16
lr = 2e-3

[[members]]
name = "tiny"
arch = "resnet18"
height = 48
width = 64
"""


@pytest.fixture(scope="module")
def cv_run(tmp_path_factory):
    from skin_model.crossval import load_sources, train_folds
    from skin_model.export import export_recipe
    from skin_model.recipe import Recipe
    from skin_model.splits import make_lesion_split

    root = tmp_path_factory.mktemp("cv")
    ham = make_synthetic_dataset(root / "ham")
    isic = make_second_source(root / "isic")
    meta = pd.read_csv(ham / "HAM10000_metadata.csv")
    meta["split"] = np.where(np.arange(len(meta)) % 7 == 0, "test", "train")
    meta.loc[meta["lesion_id"].duplicated(keep=False), "split"] = "train"  # a lesion stays whole
    make_lesion_split(meta).to_csv(root / "lesions.csv", index=False)
    (root / "recipe.toml").write_text(RECIPE.format(split=root / "lesions.csv"))
    recipe = Recipe.load(root / "recipe.toml")
    data_dirs = [ham, isic]
    data = load_sources(recipe, data_dirs)
    train_folds(recipe, data, root / "run")
    outside = make_not_dermoscopy(root / "not_dermoscopy")
    card = export_recipe(recipe, data, data_dirs, root / "run", root / "artifact", outside)
    shutil.copytree(root / "artifact", root / "exported")  # as exported, before any evaluation writes
    return recipe, data, data_dirs, root, card


def test_every_fold_trains_on_the_other_source_and_never_on_its_own_lesions(cv_run):
    from skin_model.splits import fold_parts

    recipe, data, _, _, _ = cv_run
    df = data.df
    for k in range(recipe.folds):
        train, val = fold_parts(df, k)
        assert not set(df[train]["lesion_id"]) & set(df[val]["lesion_id"])
        assert set(df[train & (df["source"] == "isic2017").to_numpy()]["dataset"]) == {"isic2017_train"}
        assert not (df[train | val]["split"] == "test").any()
    oof = df["split"].eq("train") & df["fold"].ge(0)
    assert sorted(df[oof]["fold"].unique()) == list(range(recipe.folds))


def test_the_export_is_calibrated_to_the_out_of_fold_frequencies(cv_run):
    _, data, _, root, card = cv_run
    frequencies = card["prior"]["training_frequencies"]
    df = data.df
    oof = df[df["split"].eq("train") & df["fold"].ge(0)]
    assert frequencies == pytest.approx({c: float((oof["dx"] == c).mean()) for c in vocab.CLASSES})
    assert card["prior"]["equal_strength"] == 1.0
    assert len(card["members"]) == 5 and {m["fold"] for m in card["members"]} == set(range(5))
    assert card["source"]["colour_constancy"]["p"] == 6
    assert card["referral"]["validation"]["sensitivity"] >= 0.9
    assert set(card["ood"]["pass_rate_by_source"]) <= {"isic2017", "HAM10000_metadata", "ham"}
    # The bias makes the training prior mean the out-of-fold frequencies, class by class (the
    # fitted biases' gradient is the mean probability minus the frequency).
    training_prior = card["out_of_fold"]["training_prior"]
    assert training_prior["frequency"] == pytest.approx(frequencies)
    assert training_prior["mean_probability"] == pytest.approx(frequencies, abs=0.01)
    assert training_prior["mean_malignant_probability"] == pytest.approx(training_prior["malignant_share"], abs=0.01)


def test_the_exported_model_predicts_and_evaluates(cv_run):
    from skin_model.evaluate import evaluate_sources
    from skin_model.predictor import SkinClassifier

    _, data, data_dirs, root, _ = cv_run
    model = SkinClassifier.load(root / "artifact")
    pred = model.predict(synthetic_lesion("mel", seed=1), age=40)
    assert pred.verdict in ("suspicious", "not_suspicious", "cannot_judge")
    results = evaluate_sources(data, root / "artifact", write_card=True, outliers=root / "not_dermoscopy")
    card = json.loads((root / "artifact" / "model_card.json").read_text())
    assert card["evaluation"]["splits"]["test"]["equal_prior"]["images"] == int(data.df["split"].eq("test").sum())
    assert "isic2017 (check)" in results["by_source"]
    # The not-dermoscopy images: half fitted the check, the kept-aside half is what the evaluation reports.
    assert model.ood.outliers is not None
    assert card["ood"]["outlier_exposure"]["outside_images_by_category"] == {"documents": 4, "natural": 4}
    assert {k: v["n"] for k, v in results["not_dermoscopy"].items()} == {"documents": 4, "natural": 4, "all": 8}
    assert results["not_dermoscopy_fitting_part"]["all"]["n"] == 8


def test_a_recipe_with_outlier_exposure_and_no_such_folder_says_what_to_give(cv_run, tmp_path, capsys):
    from skin_model.cli import main

    recipe, _, data_dirs, root, _ = cv_run
    args = ["train", "--recipe", str(recipe.path), "--run", str(root / "run"), "--export-only", "--out", str(tmp_path)]
    code = main(args + sum((["--data", str(d)] for d in data_dirs), []) + ["--outliers", str(tmp_path / "absent")])
    assert code == 2 and "--outliers" in capsys.readouterr().err
    assert not list(tmp_path.iterdir())  # nothing exported


def test_export_never_reads_test_labels(cv_run):
    """Poisoning the test split's labels changes nothing the export writes."""
    from skin_model.export import export_recipe

    recipe, data, data_dirs, root, card = cv_run
    poisoned = data.subset(np.ones(len(data), dtype=bool))
    test = poisoned.df["split"].eq("test").to_numpy(copy=True)
    poisoned.labels[test] = (poisoned.labels[test] + 3) % len(vocab.CLASSES)
    poisoned.df.loc[test, "dx"] = [vocab.CLASSES[i] for i in poisoned.labels[test]]
    export_recipe(recipe, poisoned, data_dirs, root / "run", root / "poisoned", root / "not_dermoscopy")
    assert (root / "poisoned" / "model_card.json").read_bytes() == (root / "exported" / "model_card.json").read_bytes()
    for name in ("model.safetensors", "index.safetensors"):
        # Same tensors, bytes and metadata (safetensors may order its header's keys differently).
        assert _safetensors_content(root / "poisoned" / name) == _safetensors_content(root / "exported" / name), name


def _safetensors_content(path) -> tuple[dict, dict]:
    from safetensors import safe_open

    with safe_open(str(path), "pt") as f:
        return {k: f.get_tensor(k).numpy().tobytes() for k in sorted(f.keys())}, f.metadata()


def test_the_loss_leaves_a_source_s_absent_diagnoses_alone():
    import torch.nn.functional as F

    from skin_model.train import partial_cross_entropy

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
    from skin_model.cli import main

    recipe, data, data_dirs, root, _ = cv_run
    artifact = shutil.copytree(root / "exported", tmp_path / "artifact")
    checkpoints = sorted(p.name for p in (root / "run").rglob("*.safetensors"))
    args = ["train", "--recipe", str(recipe.path), "--run", str(root / "run"), "--out", str(artifact)]
    assert main(args + sum((["--data", str(d)] for d in data_dirs), []) + ["--evaluate-only"]) == 0
    card = json.loads((artifact / "model_card.json").read_text())
    assert card["evaluation"]["splits"]["test"]["equal_prior"]["images"] == int(data.df["split"].eq("test").sum())
    assert sorted(p.name for p in (root / "run").rglob("*.safetensors")) == checkpoints
    assert (artifact / "model.safetensors").read_bytes() == (root / "exported" / "model.safetensors").read_bytes()
