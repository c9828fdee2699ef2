"""Shared fixtures: synthetic sources and a model made from them in seconds by the shipped path
(recipe, cross-validated training, export, evaluation), so that every test sees the shipped format."""

from __future__ import annotations

import io
import os
import shutil
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from PIL import Image

from skin_model import vocab
from skin_model.config import DEFAULT_DATA_DIR

REPO = Path(__file__).resolve().parents[1]
SAMPLES_DIR = REPO / "assets" / "samples"
SHARED_DATA = Path(os.environ.get("SKIN_MODEL_DATA", DEFAULT_DATA_DIR))

# A colour per class, so that a tiny network can tell the synthetic classes apart.
CLASS_COLOURS = {
    c: tuple(int(v) for v in np.random.default_rng(i).integers(30, 225, 3)) for i, c in enumerate(vocab.CLASSES)
}


def synthetic_lesion(dx: str, seed: int, size=(80, 60)) -> Image.Image:
    """A skin-coloured image with a class-coloured blob at a random place."""
    rng = np.random.default_rng(seed)
    w, h = size
    img = np.empty((h, w, 3), np.float32)
    img[:] = (200, 160, 140)
    yy, xx = np.mgrid[0:h, 0:w]
    cx, cy, r = rng.uniform(0.3 * w, 0.7 * w), rng.uniform(0.3 * h, 0.7 * h), rng.uniform(0.3, 0.45) * h
    blob = ((xx - cx) ** 2 + (yy - cy) ** 2) < r**2
    img[blob] = CLASS_COLOURS[dx]
    img += rng.normal(0, 8, img.shape)
    return Image.fromarray(np.clip(img, 0, 255).astype(np.uint8))


def make_synthetic_dataset(root: Path, per_class: int = 24) -> Path:
    """HAM10000 layout (metadata CSV, images in two part folders); some lesions have two images.

    24 images per class give the training split 8 steps of 16 per epoch: enough for every
    registered backbone, from scratch, to lower its loss from epoch 1 to 2 (with 12 per
    class, 4 steps, MobileNetV2's loss rose on some seeds and machines).
    """
    rows = []
    rng = np.random.default_rng(0)
    for k, dx in enumerate(vocab.CLASSES):
        for j in range(per_class):
            lesion = f"HAM_{k:02d}{j // 2 if j < 4 else j:03d}"
            image_id = f"ISIC_{k:02d}{j:03d}"
            part = root / ("HAM10000_images_part_1" if j % 2 else "HAM10000_images_part_2")
            part.mkdir(parents=True, exist_ok=True)
            synthetic_lesion(dx, seed=100 * k + j).save(part / f"{image_id}.jpg", quality=95)
            rows.append(
                {
                    "lesion_id": lesion,
                    "image_id": image_id,
                    "dx": dx,
                    "dx_type": "histo",
                    "age": "" if j == 0 else float(rng.integers(1, 18) * 5),
                    "sex": ["male", "female", "unknown"][j % 3],
                    "localization": vocab.SITES[(k + j) % len(vocab.SITES)],
                }
            )
    pd.DataFrame(rows).to_csv(root / "HAM10000_metadata.csv", index=False)
    return root


def make_second_source(root: Path, per_class: int = 12) -> Path:
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


def make_not_dermoscopy(root: Path, per_category: int = 8) -> Path:
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


def write_lesion_file(metadata_csv: Path, path: Path, folds: int = 5) -> Path:
    """A lesion file (``lesion_id,split,fold``): every 7th lesion is test, the rest dealt into folds."""
    lesions = sorted(set(pd.read_csv(metadata_csv)["lesion_id"]))
    rows = [
        {"lesion_id": x, "split": "test" if i % 7 == 0 else "train", "fold": -1 if i % 7 == 0 else i % folds}
        for i, x in enumerate(lesions)
    ]
    pd.DataFrame(rows).to_csv(path, index=False)
    return path


# The test recipe: the shipped recipe's keys, at a size that trains in seconds (ResNet18 from
# scratch, 48x64, 2 epochs, five folds).
TEST_RECIPE = """
model_version = "0.0.test"
folds = 5
colour_constancy_p = 6
tta = ["identity", "hflip", "vflip", "hvflip"]
target_sensitivity = 0.90
ood_pass_rate = 0.97
outlier_exposure = true

[sources.ham10000]
split = "lesion_file"
lesion_file = "{lesion_file}"

[sources.isic2017]
split = "own_parts"
parts = {{ isic2017_train = "train", isic2017_val = "check" }}

[member_defaults]
epochs = 2
batch_size = 16
lr = 2e-3
ema_decay = 0.9
meta_drop_all = 0.2
label_smoothing = 0.1

[[members]]
name = "tiny"
arch = "resnet18"
height = 48
width = 64
"""


@dataclass
class CrossValidatedRun:
    """The shared test model, made as the shipped one is: recipe -> crossval -> export -> evaluation."""

    recipe: object
    data: object  # crossval.load_sources' Dataset
    data_dirs: list[Path]
    root: Path
    run: Path  # the fold models
    artifact: Path  # exported, then evaluated (its card holds the evaluation)
    exported: Path  # a copy of the artifact as exported, before the evaluation wrote into it
    outliers: Path
    card: dict


def make_cross_validated_run(root: Path) -> CrossValidatedRun:
    from skin_model.training.crossval import load_sources, train_folds
    from skin_model.training.evaluate import evaluate_sources
    from skin_model.training.export import export_recipe
    from skin_model.training.recipe import Recipe

    ham = make_synthetic_dataset(root / "ham10000")  # named as the real folders: the recipe's roles name them
    isic = make_second_source(root / "isic2017")
    lesion_file = write_lesion_file(ham / "HAM10000_metadata.csv", root / "lesions.csv")
    (root / "recipe.toml").write_text(TEST_RECIPE.format(lesion_file=lesion_file))
    recipe = Recipe.load(root / "recipe.toml")
    data_dirs = [ham, isic]
    data = load_sources(recipe, data_dirs)
    train_folds(recipe, data, root / "run")
    outliers = make_not_dermoscopy(root / "not_dermoscopy")
    card = export_recipe(recipe, data, data_dirs, root / "run", root / "artifact", outliers)
    shutil.copytree(root / "artifact", root / "exported")
    evaluate_sources(data, root / "artifact", recipe.sources, write_card=True, outliers=outliers)
    return CrossValidatedRun(
        recipe, data, data_dirs, root, root / "run", root / "artifact", root / "exported", outliers, card
    )


@pytest.fixture(scope="session")
def cv_run(tmp_path_factory) -> CrossValidatedRun:
    return make_cross_validated_run(tmp_path_factory.mktemp("cv"))


@pytest.fixture(scope="session")
def synthetic_data(cv_run) -> Path:
    """The HAM10000-layout folder the shared model was trained on."""
    return cv_run.data_dirs[0]


@pytest.fixture(scope="session")
def model_dir(cv_run) -> Path:
    """The shared test artifact (as exported and evaluated)."""
    return cv_run.artifact


@pytest.fixture(scope="session")
def tiny_model(model_dir):
    from skin_model.inference.predictor import SkinClassifier

    return SkinClassifier.load(model_dir)


def encode(img: Image.Image, fmt: str = "PNG", **kwargs) -> bytes:
    buf = io.BytesIO()
    img.save(buf, fmt, **kwargs)
    return buf.getvalue()


@pytest.fixture
def model_calls(monkeypatch):
    """The model's work the pages ask for, from outside them: "answer" for an answer alone (a
    forward pass), "forward" for an answer whose forward pass is kept for heatmaps, "quality" for
    a photo's quality check alone, and the class of each heatmap made from it (a backward pass)."""
    from skin_model.inference.predictor import Attention, SkinClassifier

    calls = []
    predict, answer, heatmap = SkinClassifier.predict_prepared, SkinClassifier.answer_prepared, Attention.heatmap
    check_quality = SkinClassifier.check_quality

    def checked(self, *args, **kwargs):
        calls.append("quality")
        return check_quality(self, *args, **kwargs)

    def answered(self, *args, **kwargs):
        calls.append("answer")
        return predict(self, *args, **kwargs)

    def forward(self, *args, **kwargs):
        calls.append("forward")
        return answer(self, *args, **kwargs)

    def explained(self, target, *args, **kwargs):
        calls.append(target)
        return heatmap(self, target, *args, **kwargs)

    monkeypatch.setattr(SkinClassifier, "predict_prepared", answered)
    monkeypatch.setattr(SkinClassifier, "answer_prepared", forward)
    monkeypatch.setattr(Attention, "heatmap", explained)
    monkeypatch.setattr(SkinClassifier, "check_quality", checked)
    return calls
