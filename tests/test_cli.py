"""The command line's contract: exit status, unique ids, skipped files, the batch metadata rule,
messages fit for a terminal, and tracebacks only with -v."""

import logging
from pathlib import Path

import pandas as pd
import pytest

from skin_model import vocab
from skin_model.serving import cli
from skin_model.serving.batch import RESULT_COLUMNS

from .conftest import encode, synthetic_lesion


@pytest.fixture
def predict(model_dir, capsys, caplog):
    """Runs ``predict`` in-process on the tiny model; returns (exit status, table, stderr, log)."""

    def run(*args, verbose=False):
        out = args[0].parent / "out.csv" if hasattr(args[0], "parent") else None
        argv = (["-v"] if verbose else []) + [
            "predict",
            *map(str, args),
            "--model",
            str(model_dir),
            "--out",
            str(out),
        ]
        caplog.clear()
        with caplog.at_level(logging.DEBUG):
            status = cli.main(argv)
        table = pd.read_csv(out, keep_default_na=False) if out.exists() else None
        return status, table, capsys.readouterr().err, caplog.records

    return run


def _lesion(path, seed=1):
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(encode(synthetic_lesion("nv", seed), "JPEG"))
    return path


def test_every_file_failing_exits_non_zero(tmp_path, predict):
    folder = tmp_path / "bad"
    folder.mkdir()
    (folder / "a.jpg").write_bytes(b"not an image")
    (folder / "b.png").write_bytes(b"")
    status, table, err, _ = predict(folder)
    assert status == 1
    assert "none of the 2 image(s) could be predicted" in err
    assert (table["error"] != "").all()


def test_some_failing_exits_zero_with_a_one_line_summary(tmp_path, predict):
    folder = tmp_path / "mixed"
    _lesion(folder / "good.jpg")
    (folder / "bad.jpg").write_bytes(b"not an image")
    status, table, err, _ = predict(folder)
    assert status == 0
    assert "predicted 1 of 2 image(s); 1 could not be read" in err
    assert table.set_index("image_id").loc["good", "prediction"] in vocab.CLASSES


def test_one_name_in_two_folders_gets_two_ids_and_two_heatmaps(tmp_path, predict, model_dir):
    _lesion(tmp_path / "a" / "x.jpg", 1)
    _lesion(tmp_path / "b" / "x.jpg", 2)
    _lesion(tmp_path / "b" / "y.jpg", 3)
    cams = tmp_path / "cams"
    status, table, _, _ = predict(tmp_path / "a", tmp_path / "b", "--cam-dir", cams)
    assert status == 0
    ids = list(table["image_id"])
    assert len(set(ids)) == 3 and "y" in ids
    x_ids = [i for i in ids if i.endswith("/x")]
    assert len(x_ids) == 2 and x_ids[0] != x_ids[1]
    for image_id in ids:
        assert (cams / f"{image_id}.png").is_file(), image_id


def test_files_that_are_not_images_are_listed(tmp_path, predict):
    folder = tmp_path / "mixed"
    _lesion(folder / "lesion.jpg")
    (folder / "notes.txt").write_text("patient notes")
    status, table, err, _ = predict(folder)
    assert status == 0 and list(table["image_id"]) == ["lesion"]
    assert "skipped 1 file(s) that are not images" in err and "notes.txt" in err


@pytest.mark.parametrize(
    "age, sex, site, warned",
    [
        ("abc", "", "", ["age"]),
        ("", "robot", "elbow", ["sex", "localization"]),
        ("45,5", "M", "Dos", []),
        ("70", "femme", "membre inférieur", []),
        ("300", "F", "", ["age"]),
    ],
)
def test_a_bad_metadata_field_becomes_unknown_with_a_warning(tmp_path, predict, age, sex, site, warned):
    folder = tmp_path / "imgs"
    _lesion(folder / "img0.jpg")
    csv = tmp_path / "meta.csv"
    csv.write_text(f"image_id,age,sex,localization\nimg0,{age},{sex},{site}\n")
    status, table, err, _ = predict(folder, "--metadata", csv)
    assert status == 0 and list(table.columns) == list(RESULT_COLUMNS)
    row = table.iloc[0]
    assert row["prediction"] in vocab.CLASSES and row["error"] == ""
    for field in ("age", "sex", "localization"):
        assert (field in row["warning"]) == (field in warned), row["warning"]
    assert ("had metadata taken as unknown" in err) == bool(warned)


def test_messages_do_not_ask_to_upload(tmp_path, predict):
    folder = tmp_path / "cut"
    data = encode(synthetic_lesion("mel", 3, (400, 300)), "JPEG")
    (folder).mkdir()
    (folder / "cut.jpg").write_bytes(data[: len(data) // 2])
    (folder / "big.png").write_bytes(b"")
    status, table, err, _ = predict(folder)
    text = " ".join(table["error"]) + err
    assert status == 1 and "truncated" in text
    assert "upload" not in text.lower()


def test_traceback_only_with_verbose(tmp_path, predict):
    folder = tmp_path / "imgs"
    _lesion(folder / "img0.jpg")
    junk = tmp_path / "meta.csv"
    junk.write_bytes(b"\x00\x01binary" * 100)
    status, _, _, records = predict(folder, "--metadata", junk)
    errors = [r for r in records if r.levelno >= logging.ERROR]
    assert status == 1 and "not a CSV table" in errors[0].getMessage() and errors[0].exc_info is None
    status, _, _, records = predict(folder, "--metadata", junk, verbose=True)
    errors = [r for r in records if r.levelno >= logging.ERROR]
    assert status == 1 and errors[0].exc_info is not None


def test_no_file_name_or_metadata_reaches_the_log(tmp_path, predict):
    folder = tmp_path / "imgs"
    _lesion(folder / "patient_dupont.jpg")
    (folder / "secret_notes.txt").write_text("x")
    csv = tmp_path / "meta.csv"
    csv.write_text("image_id,age,sex,localization\npatient_dupont,63,robot,scalp\n")
    status, _, err, records = predict(folder, "--metadata", csv, verbose=True)
    assert status == 0 and "secret_notes.txt" in err  # the person at the terminal is told
    logged = " ".join(r.getMessage() for r in records)
    for private in ("patient_dupont", "secret_notes", "robot", "scalp"):
        assert private not in logged


def test_the_training_summary_survives_a_split_without_melanoma(cv_run):
    """A split without melanoma has no melanoma recall, AUC or sensitivity: dashes, no crash."""
    import json

    evaluation = json.loads((cv_run.artifact / "model_card.json").read_text())["evaluation"]
    text = cli.summary(evaluation)
    assert text.count("\n") >= len(evaluation["splits"]) and "test (" in text
    without = {
        "splits": {
            "check": {
                "answer": {
                    "images": 3,
                    "balanced_accuracy_present": 1.0,
                    "melanoma_recall": None,
                    "melanoma_auc": None,
                },
                "referral": {"sensitivity": 0.0, "specificity": 1.0, "melanoma_sensitivity": None},
            }
        },
        "by_source": {
            "isic2017 (check)": {"images": 3, "melanoma_recall": None, "melanoma_auc": None, "ood_flagged": 0.0}
        },
        "not_dermoscopy": None,
    }
    text = cli.summary(without)
    assert "melanoma recall –, melanoma AUC –" in text and "melanoma sensitivity –" in text


@pytest.mark.parametrize(
    "image_id, expected",
    [
        ("x", "x.png"),
        ("a/x", "a/x.png"),
        ("../../etc/passwd", "etc/passwd.png"),
        ("/abs/x", "abs/x.png"),
        ("a/../../x", "a/x.png"),
        ("..", "image.png"),
    ],
)
def test_a_heatmap_is_never_written_outside_the_cam_folder(tmp_path, image_id, expected):
    from skin_model.serving.batch import cam_file

    path = cam_file(tmp_path / "cams", image_id)
    assert path == tmp_path / "cams" / expected
    assert path.resolve().is_relative_to((tmp_path / "cams").resolve())


def test_ids_with_dots_write_their_heatmaps_inside_the_cam_folder(tmp_path, predict, monkeypatch):
    """Two images named x.jpg in ../a and ../b get the ids ../a/x and ../b/x: their heatmaps
    land inside --cam-dir, one each."""
    work = tmp_path / "work"
    for folder in ("a", "b"):
        _lesion(tmp_path / folder / "x.jpg")
    work.mkdir()
    monkeypatch.chdir(work)
    status, table, _, _ = predict(Path("..") / "a" / "x.jpg", Path("..") / "b" / "x.jpg", "--cam-dir", "cams")
    assert status == 0 and sorted(table["image_id"]) == ["../a/x", "../b/x"]
    written = sorted(p.relative_to(work / "cams").as_posix() for p in (work / "cams").rglob("*.png"))
    assert written == ["a/x.png", "b/x.png"]
    assert not (work / "a").exists() and not (work / "b").exists()  # cams/../a/x.png: outside the folder


def test_uploads_sharing_a_stem_or_a_name_keep_distinct_ids():
    from skin_model.serving.batch import upload_ids

    assert upload_ids(["a.jpg", "b.jpg"]) == ["a", "b"]
    assert upload_ids(["x.jpg", "x.png", "y.jpg"]) == ["x.jpg", "x.png", "y"]
    assert upload_ids(["x.jpg", "x.jpg"]) == ["x.jpg", "x.jpg (2)"]


def test_the_help_names_the_prior_predict_uses_by_default(capsys):
    """The help once called ``equal`` the default after the default had become ``training``."""
    with pytest.raises(SystemExit):
        cli.main(["predict", "--help"])
    help_text = " ".join(capsys.readouterr().out.split())
    assert f"(default: {vocab.DEFAULT_PRIOR})" in help_text
    assert cli.build_parser().parse_args(["predict", "x.jpg"]).prior == vocab.DEFAULT_PRIOR


def test_a_heatmap_that_cannot_be_written_keeps_the_answer_and_the_run_goes_on(tmp_path, predict):
    """One image's heatmap path is taken by a folder: its row keeps its answer with a warning, and
    the images after it are analysed and get their heatmaps."""
    folder = tmp_path / "images"
    folder.mkdir()
    for name in ("a", "b", "c"):
        _lesion(folder / f"{name}.jpg", seed=ord(name))
    cams = tmp_path / "cams"
    (cams / "b.png").mkdir(parents=True)  # a folder where b's heatmap file should go
    status, table, err, _ = predict(folder, "--cam-dir", cams)
    assert status == 0
    rows = table.set_index("image_id")
    assert list(rows["error"]) == ["", "", ""] and rows.loc["b", "verdict"] in (
        "suspicious",
        "not_suspicious",
        "cannot_judge",
    )
    assert "heatmap not written" in rows.loc["b", "warning"] and rows.loc["c", "warning"] == ""
    assert (cams / "a.png").is_file() and (cams / "c.png").is_file()


def test_an_unexpected_failure_of_one_image_is_its_row_s_error_and_the_run_goes_on(tmp_path, predict, monkeypatch):
    from skin_model.inference.predictor import SkinClassifier

    folder = tmp_path / "images"
    folder.mkdir()
    for name in ("a", "b"):
        _lesion(folder / f"{name}.jpg", seed=ord(name))
    real = SkinClassifier.diagnose

    def fails_on_a(self, source, *args, **kwargs):
        if Path(source).stem == "a":
            raise ZeroDivisionError("a bug")
        return real(self, source, *args, **kwargs)

    monkeypatch.setattr(SkinClassifier, "diagnose", fails_on_a)
    status, table, err, _ = predict(folder, "--cam-dir", tmp_path / "cams")
    rows = table.set_index("image_id")
    assert status == 0 and "analysis failed" in rows.loc["a", "error"] and rows.loc["b", "error"] == ""
