"""Shared fixtures: a synthetic HAM10000-style dataset and a model trained on it in seconds."""

from __future__ import annotations

import io
import os
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


@pytest.fixture(scope="session")
def synthetic_data(tmp_path_factory) -> Path:
    return make_synthetic_dataset(tmp_path_factory.mktemp("ham_synthetic"))


def tiny_config(arch: str, **kwargs):
    """The training recipe of the test members: 2 epochs at 48x64 px (4:3, like the real ones)."""
    from skin_model.train import TrainConfig

    return TrainConfig(
        arch=arch,
        **{
            "epochs": 2,
            "height": 48,
            "width": 64,
            "batch_size": 16,
            "lr": 2e-3,
            "ema_decay": 0.9,
            "meta_drop_all": 0.2,
            **kwargs,
        },
    )


@pytest.fixture(scope="session")
def trained_run(synthetic_data, tmp_path_factory):
    """One member per registered backbone, trained for 2 epochs, exported as an artifact."""
    from skin_model.network import BACKBONES
    from skin_model.preprocess import SourceSize
    from skin_model.train import Run, export, load_splits, train_member

    run = Run(tmp_path_factory.mktemp("run"))
    data = load_splits(synthetic_data, run, SourceSize.for_inputs(48), seed=0)
    for arch in sorted(BACKBONES):
        train_member(data, run, tiny_config(arch))
    out = run.root / "artifact"
    export(run, synthetic_data, out, "0.0.test")
    return run, out


@pytest.fixture(scope="session")
def tiny_model(trained_run):
    from skin_model.predictor import SkinClassifier

    return SkinClassifier.load(trained_run[1])


def encode(img: Image.Image, fmt: str = "PNG", **kwargs) -> bytes:
    buf = io.BytesIO()
    img.save(buf, fmt, **kwargs)
    return buf.getvalue()
