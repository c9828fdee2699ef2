"""The model shipped in the repository: it loads offline, predicts the samples, the CLI works."""

import io
import json
import os
import subprocess
import sys

import numpy as np
import pandas as pd
import pytest
from PIL import Image

import skin_model
from skin_model import __version__, vocab
from skin_model.config import CARD_FILE, PACKAGE_DIR, WEIGHTS_FILE
from skin_model.inference.network import BACKBONES
from skin_model.serving.batch import RESULT_COLUMNS
from skin_model.training.export import starting_point
from skin_model.training.recipe import Recipe
from skin_model.training.splits import file_sha256, read_lesion_split

from .conftest import REPO, SAMPLES_DIR

MODEL_DIR = PACKAGE_DIR / "model"
SAMPLES = pd.read_csv(SAMPLES_DIR / "metadata.csv", dtype={"image_id": str})
# The working copy's images (splits/ham10000_images.csv) with their lesion's place in the lesion file.
HAM_IMAGE_SPLIT = (
    pd.read_csv(REPO / "splits" / "ham10000_images.csv")
    .set_index("image_id")["lesion_id"]
    .map(read_lesion_split(REPO / "splits" / "ham10000_lesions.csv").set_index("lesion_id")["split"])
)


@pytest.fixture(scope="module")
def shipped():
    return skin_model.load_model()


def test_artifact_is_small_safetensors_with_a_full_card():
    assert (MODEL_DIR / WEIGHTS_FILE).stat().st_size < 50 * 2**20
    assert (MODEL_DIR / WEIGHTS_FILE).read_bytes()[8:9] == b"{"  # safetensors header, not a pickle
    assert (MODEL_DIR / "index.safetensors").stat().st_size < 30 * 2**20
    card = json.loads((MODEL_DIR / CARD_FILE).read_text())
    assert {m["architecture"] for m in card["members"]} <= set(BACKBONES)
    # Cross-validated: one model per fold, the epoch with the best pooled out-of-fold score,
    # the split the card names is the one in the repository, and the test split scored once.
    assert sorted(m["fold"] for m in card["members"]) == list(range(5)) * (len(card["members"]) // 5)
    for member, epoch in card["selection"]["epoch"].items():
        by_epoch = card["selection"]["out_of_fold_balanced_accuracy_by_epoch"][member]
        assert by_epoch[str(epoch)] == max(by_epoch.values())
    lesion_file = REPO / "splits" / "ham10000_lesions.csv"
    assert card["data"]["roles"]["ham10000"]["lesion_file_sha256"] == file_sha256(lesion_file)
    assert card["out_of_fold"]["n_images"] == card["data"]["counts"]["folds (training and out-of-fold)"]["images"]
    test = card["evaluation"]["splits"]["test"]["equal_prior"]
    assert test["images"] == card["data"]["counts"]["test (scored once)"]["images"] > 500


def test_the_shipped_card_is_the_current_code_s_export_of_a_committed_recipe():
    """Rebuilt, not edited: the recipe it names is committed with the very bytes it was made from,
    its roles are recorded, and its held-out evidence is the one its recipe's [held_out] names."""
    card = json.loads((MODEL_DIR / CARD_FILE).read_text())
    recipe_file = REPO / "recipes" / card["recipe"]["file"]
    assert file_sha256(recipe_file) == card["recipe"]["sha256"]
    recipe = Recipe.load(recipe_file)
    assert recipe.model_version == card["model_version"]
    assert set(card["data"]["roles"]) == set(recipe.sources)
    assert card["held_out_sources"]["variant"] == recipe.held_out["variant"]
    assert set(card["held_out_sources"]["by_source"]) == {"bcn20000", "isic2017", "rosendahl", "vidir_modern"}
    for member in card["members"]:  # where each fold model started: as the recipe says
        assert member["pretrained"] == starting_point(
            member["training"]["pretrained"], member["fold"], recipe.start_from
        )


def test_similar_cases_tell_the_patient_s_age_and_site_where_recorded(shipped):
    """The shipped index keeps each training image's recorded age, sex and site (HAM10000 records
    them for almost every image; ISIC 2017 has no site)."""
    patients = shipped.cases.patients
    assert len(patients) == len(shipped.cases.image_ids)
    assert sum(p.age is not None for p in patients) > 0.9 * len(patients)
    assert sum(p.site != vocab.UNKNOWN for p in patients) > 0.7 * len(patients)
    first = SAMPLES.iloc[0]
    neighbours = shipped.predict(SAMPLES_DIR / f"{first.image_id}.jpg").neighbours
    assert any(n.patient.age is not None for n in neighbours)


def test_samples_cover_every_class_from_the_test_split():
    assert set(SAMPLES["dx"]) == set(vocab.CLASSES) and 7 <= len(SAMPLES) <= 14
    split = read_lesion_split(REPO / "splits" / "ham10000_lesions.csv").set_index("lesion_id")["split"]
    for row in SAMPLES.itertuples():
        assert (SAMPLES_DIR / f"{row.image_id}.jpg").exists()
        assert split[row.lesion_id] == "test", f"{row.image_id} is not from the held-out test split"


def test_shipped_model_gives_its_pinned_answer_on_every_sample(shipped):
    """Each sample's answer, pinned when the model last changed on purpose
    (``python -m scripts.pin_samples``): a changed model, preprocessing or decision rule shows here."""
    pinned = json.loads((REPO / "tests" / "sample_expectations.json").read_text())
    assert pinned["model_version"] == shipped.card["model_version"], "re-pin after a deliberate model change"
    assert sorted(pinned["samples"]) == sorted(SAMPLES["image_id"])
    correct = 0
    for row in SAMPLES.itertuples():
        pred = shipped.predict(SAMPLES_DIR / f"{row.image_id}.jpg", row.age, row.sex, row.localization)
        expected = pinned["samples"][row.image_id]
        assert pred.label == expected["label"], row.image_id
        assert pred.probabilities == pytest.approx(expected["probabilities"], abs=2e-4), row.image_id
        assert list(pred.uncertain_between or ()) == expected["uncertain_between"], row.image_id
        assert pred.ood == expected["ood"], row.image_id
        correct += pred.label == row.dx
    assert correct > len(SAMPLES) / 2  # a real model: most samples right (chance: 1 in 7)


def _run_cli(*args, cwd=REPO):
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    return subprocess.run(
        [sys.executable, "-m", "skin_model", *args], cwd=cwd, env=env, capture_output=True, text=True, timeout=300
    )


def test_cli_predict_writes_csv_and_heatmaps(shipped, tmp_path):
    out, cams = tmp_path / "pred.csv", tmp_path / "cams"
    done = _run_cli(
        "predict",
        str(SAMPLES_DIR),
        "--metadata",
        str(SAMPLES_DIR / "metadata.csv"),
        "--out",
        str(out),
        "--cam-dir",
        str(cams),
    )
    assert done.returncode == 0, done.stderr
    table = pd.read_csv(out)
    assert list(table.columns) == list(RESULT_COLUMNS)
    assert set(table["ood"]) <= {0, 1} and (table["ood_score"] >= 0).all()
    assert (table["prior"] == "training").all()
    # One malignancy number: the class columns add up to it (each rounded to 4 decimals).
    np.testing.assert_allclose(
        table[["mel", "bcc", "akiec"]].sum(axis=1), table["malignant_probability"], atol=4 * 5e-5
    )
    assert set(table["verdict"]) <= {"suspicious", "not_suspicious", "cannot_judge"}
    assert sorted(table["image_id"]) == sorted(SAMPLES["image_id"])
    # The CSV states probabilities to 4 decimals (batch.CSV_DIGITS): each within 5e-5 of the answer.
    np.testing.assert_allclose(table[list(vocab.CLASSES)].sum(axis=1), 1.0, atol=7 * 5e-5)
    first = SAMPLES.iloc[0]
    api = shipped.predict(SAMPLES_DIR / f"{first.image_id}.jpg", first.age, first.sex, first.localization)
    row = table.set_index("image_id").loc[first.image_id]
    assert row["prediction"] == api.label
    assert row[list(vocab.CLASSES)].to_numpy(float) == pytest.approx(list(api.probabilities.values()), abs=5.01e-5)
    for image_id in SAMPLES["image_id"]:
        with Image.open(cams / f"{image_id}.png") as cam, Image.open(SAMPLES_DIR / f"{image_id}.jpg") as img:
            assert cam.mode == "L" and cam.size == img.size


def test_cli_single_file_without_metadata_to_stdout():
    done = _run_cli("predict", str(SAMPLES_DIR / f"{SAMPLES.image_id[0]}.jpg"))
    assert done.returncode == 0, done.stderr
    assert done.stdout.splitlines()[0] == ",".join(RESULT_COLUMNS)


def test_cli_reports_a_missing_path():
    done = _run_cli("predict", "/nonexistent/folder")
    assert done.returncode == 1 and "No such file or folder" in done.stderr


def test_cli_version():
    done = _run_cli("--version")
    card = json.loads((MODEL_DIR / CARD_FILE).read_text())
    assert done.returncode == 0
    assert done.stdout.strip() == f"skin_model {__version__}, model {card['model_version']}"


@pytest.mark.parametrize("missing", ["sklearn", "tqdm"])
def test_cli_train_without_the_training_extras_says_what_to_install(
    monkeypatch, caplog, missing, cv_run, synthetic_data, tmp_path
):
    from skin_model.serving import cli

    for name in [m for m in sys.modules if m == missing or m.startswith(missing + ".")] + [missing]:
        monkeypatch.setitem(sys.modules, name, None)  # as in the app's install: not importable
    for name in ("skin_model.training.train", "skin_model.training.data"):
        monkeypatch.delitem(sys.modules, name, raising=False)
    args = ["train", "--recipe", str(cv_run.recipe.path), "--data", str(synthetic_data), "--run", str(tmp_path)]
    assert cli.main(args) == 1
    assert f"{missing} is not installed" in caplog.text and "requirements-dev.txt" in caplog.text


def test_committed_samples_pass_the_out_of_domain_check(shipped):
    for row in SAMPLES.itertuples():
        pred = shipped.predict(SAMPLES_DIR / f"{row.image_id}.jpg", row.age, row.sex, row.localization)
        assert not pred.ood, (row.image_id, pred.ood_score)
        assert len(pred.neighbours) == 6
        # Similar cases come from training images only: HAM10000 lesions in a fold and ISIC 2017's
        # training part, never a test lesion.
        for case in pred.neighbours:
            if case.image_id in HAM_IMAGE_SPLIT.index:  # a HAM10000 image
                assert HAM_IMAGE_SPLIT[case.image_id] == "train"
                assert case.dx in vocab.CLASSES and case.dx_type in ("histo", "follow_up", "consensus", "confocal")
            else:
                assert case.dx_type == "isic2017" and case.dx in ("bkl", "mel", "nv")
            with Image.open(io.BytesIO(case.thumbnail)) as thumb:
                assert thumb.size == (96, 72)


@pytest.mark.parametrize("category", ["solid colour", "noise", "gradient", "checkerboard", "text", "test pattern"])
def test_shipped_model_flags_images_that_are_not_skin(shipped, category):
    from .ood_set import out_of_domain_images

    images = out_of_domain_images()[category]
    assert all(shipped.predict(img).ood for img in images)


def test_in_domain_test_split_mostly_passes(shipped):
    from .conftest import SHARED_DATA

    if not (SHARED_DATA / "HAM10000_metadata.csv").exists():
        pytest.skip(f"HAM10000 is not at {SHARED_DATA}")
    test_ids = HAM_IMAGE_SPLIT.index[HAM_IMAGE_SPLIT == "test"][:200]
    from skin_model.training.data import find_images

    paths = find_images(SHARED_DATA)
    flagged = [shipped.predict(paths[i]).ood for i in test_ids]
    assert np.mean(flagged) <= 0.05


def _sweep():
    """The committed samples, and a synthetic sweep of lesion-like images at the working size."""
    from .conftest import synthetic_lesion

    for row in SAMPLES.itertuples():
        yield SAMPLES_DIR / f"{row.image_id}.jpg", row.age, row.sex, row.localization
    for seed in range(30):
        yield synthetic_lesion(vocab.CLASSES[seed % 7], 900 + seed, size=(200, 150)), None, None, None


@pytest.mark.parametrize("prior", ["training", "equal"])
def test_the_answer_is_the_top_of_the_numbers_shown_and_uncertain_is_their_top_two(shipped, prior):
    for image, age, sex, site in _sweep():
        pred = shipped.predict(image, age, sex, site, prior=prior)
        ranked = sorted(pred.probabilities, key=pred.probabilities.get, reverse=True)
        assert pred.label == ranked[0]
        assert pred.uncertain_between is None or list(pred.uncertain_between) == ranked[:2]


def test_an_image_that_is_not_dermoscopy_gets_no_number_through_the_api(shipped):
    from starlette.testclient import TestClient

    from skin_model.serving.api import create_api

    client = TestClient(create_api(lambda: shipped, 2**22))
    black = io.BytesIO()
    Image.new("RGB", (320, 240)).save(black, "PNG")
    answer = client.post("/predict?cam=mel", files={"image": ("black.png", black.getvalue(), "image/png")}).json()
    assert answer["verdict"] == "cannot_judge" and answer["refer"] is None and not answer["answered_anyway"]
    for key in ("referral_probability", "malignant_probability", "refer_threshold", "prediction", "confidence"):
        assert answer[key] is None, key
    assert answer["probabilities"] == {} and answer["similar_cases"] == [] and "cam" not in answer
    anyway = client.post(
        "/predict", files={"image": ("black.png", black.getvalue(), "image/png")}, data={"answer_anyway": "true"}
    ).json()
    assert anyway["answered_anyway"] and anyway["prediction"] in vocab.CLASSES
    assert sum(anyway["probabilities"].values()) == pytest.approx(1.0)


ORIGINALS = REPO.parent / "shared" / "data" / "ham10000_originals"


@pytest.mark.skipif(not (ORIGINALS / "metadata.csv").exists(), reason="the full-size originals are not present")
def test_a_full_size_upload_gets_the_answer_of_its_training_copy(shipped):
    """Each 600x450 original, as a user uploads it, against its 200x150 copy (issue 43's bar)."""
    from skin_model.training.evaluate import uploads_report

    report = uploads_report(shipped, ORIGINALS, REPO.parent / "shared" / "data" / "ham10000")
    assert report["images"] == 154
    assert report["verdicts_agree"] >= 0.97
    assert report["mean_abs_delta_p_malignant"] <= 0.02


FULL_SIZE = REPO / "tests" / "fixtures" / "full_size"  # committed: one original and its copy


@pytest.mark.parametrize("metadata", [True, False], ids=["with metadata", "image only"])
def test_the_committed_full_size_original_gets_its_copy_s_answer(shipped, metadata):
    row = pd.read_csv(FULL_SIZE / "metadata.csv").iloc[0]
    given = (row.age, row.sex, row.localization) if metadata else ()
    original = shipped.predict(FULL_SIZE / f"{row.image_id}.jpg", *given)
    copy = shipped.predict(FULL_SIZE / f"{row.image_id}_copy.jpg", *given)
    assert Image.open(FULL_SIZE / f"{row.image_id}.jpg").size == (600, 450)
    assert (original.verdict, original.ood) == (copy.verdict, copy.ood)
    assert abs(original.malignant_probability - copy.malignant_probability) <= 0.02
    # The differential's first line names diagnoses the copy's differential leads with: classes a few
    # thousandths apart (here bcc and bkl, second and third) may swap places, and no others.
    copy_top_three = sorted(copy.probabilities, key=copy.probabilities.get, reverse=True)[:3]
    assert set(original.uncertain_between or [original.label]) <= set(copy_top_three)
    assert max(abs(original.probabilities[c] - copy.probabilities[c]) for c in vocab.CLASSES) <= 0.05


def test_a_copy_of_the_shipped_model_without_its_ood_threshold_fails_at_load(tmp_path):
    """At load_model(), naming the field: never at the first prediction (issue 40's bar)."""
    import shutil

    from safetensors import safe_open
    from safetensors.torch import load_file, save_file

    from skin_model.config import INDEX_FILE
    from skin_model.inference.card import ModelArtifactError

    copy = tmp_path / "model"
    shutil.copytree(MODEL_DIR, copy)
    tensors = load_file(str(copy / INDEX_FILE))
    with safe_open(str(copy / INDEX_FILE), "pt") as f:
        metadata = f.metadata()
    save_file(tensors, str(copy / INDEX_FILE), metadata=metadata | {"threshold": "None"})
    with pytest.raises(ModelArtifactError, match="threshold"):
        skin_model.load_model(copy)
