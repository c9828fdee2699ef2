"""Scoring the shipped model's CLI answers on a whole unseen source (``scripts/unseen_source.py``)."""

from __future__ import annotations

import pandas as pd
import pytest
from PIL import Image

from scripts.unseen_source import prepare, score


def _source(tmp_path):
    """Three lesions, one with two images: a melanoma, a bcc and a nevus."""
    rows = [("L1", "B2", "mel"), ("L1", "A1", "mel"), ("L2", "C3", "bcc"), ("L3", "D4", "nv")]
    (tmp_path / "src" / "images").mkdir(parents=True)
    for _, image_id, _ in rows:
        Image.new("RGB", (8, 8)).save(tmp_path / "src" / "images" / f"{image_id}.jpg")
    pd.DataFrame(rows, columns=["lesion_id", "image_id", "dx"]).to_csv(tmp_path / "src" / "metadata.csv", index=False)
    return tmp_path / "src"


def test_prepare_keeps_each_lesion_s_first_image_once(tmp_path):
    prepare(_source(tmp_path), tmp_path / "out")
    kept = pd.read_csv(tmp_path / "out" / "metadata.csv")
    assert sorted(kept["image_id"]) == ["A1", "C3", "D4"]
    assert sorted(p.name for p in (tmp_path / "out" / "images").iterdir()) == ["A1.jpg", "C3.jpg", "D4.jpg"]


def _answers(tmp_path, rows):
    columns = ["image_id", "prediction", "mel", "malignant_probability", "refer", "ood", "prior"]
    pd.DataFrame(rows, columns=columns).to_csv(tmp_path / "pred.csv", index=False)
    return tmp_path / "pred.csv"


def test_score_reads_the_cli_s_answers_against_the_truth(tmp_path):
    prepare(_source(tmp_path), tmp_path / "out")
    answers = _answers(
        tmp_path,
        [  # the nevus referred and flagged, the bcc missed
            ("A1", "mel", 0.9, 0.95, 1, 0, "training"),
            ("C3", "nv", 0.1, 0.05, 0, 0, "training"),
            ("D4", "nv", 0.2, 0.40, 1, 1, "training"),
        ],
    )
    got = score(tmp_path / "out" / "metadata.csv", answers)
    assert got["melanoma AUC"] == 1.0 and got["melanoma recall"] == 1.0
    assert got["P(malignant) AUC"] == 0.5  # the bcc (0.05) ranks below the nevus (0.40)
    assert got["balanced accuracy (classes present)"] == pytest.approx(2 / 3)
    assert got["referred: malignant and pre-malignant"] == 0.5 and got["not referred: benign"] == 0.0
    assert got["flagged out of domain"] == pytest.approx(1 / 3)


def test_score_refuses_answers_that_miss_an_image(tmp_path):
    prepare(_source(tmp_path), tmp_path / "out")
    answers = _answers(
        tmp_path, [("A1", "mel", 0.9, 0.95, 1, 0, "training"), ("C3", "bcc", 0.1, 0.6, 1, 0, "training")]
    )
    with pytest.raises(SystemExit, match="1 images"):
        score(tmp_path / "out" / "metadata.csv", answers)


@pytest.mark.parametrize(
    "row, message",
    [
        (("D4", None, None, None, 1, 1, "training"), "could not be read"),
        (("D4", "nv", 0.2, 0.40, 1, 1, "equal"), "--prior training"),
    ],
)
def test_score_refuses_unread_images_and_the_equal_view(tmp_path, row, message):
    prepare(_source(tmp_path), tmp_path / "out")
    good = [("A1", "mel", 0.9, 0.95, 1, 0, "training"), ("C3", "nv", 0.1, 0.05, 0, 0, "training")]
    with pytest.raises(SystemExit, match=message):
        score(tmp_path / "out" / "metadata.csv", _answers(tmp_path, [*good, row]))
