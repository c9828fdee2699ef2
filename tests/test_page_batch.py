"""The Batch page, driven headless by streamlit.testing."""

from skin_model import vocab
from skin_model.i18n import error_text, t
from skin_model.inference.inputs import load_image
from skin_model.inference.referral import answer_state
from skin_model.serving.batch import RISK_ORDER

from .app_helpers import SAMPLE, _app, _batch, _busy, _warnings
from .conftest import SAMPLES_DIR, encode


def test_batch_with_two_images_and_a_csv():
    at = _app("app_pages/batch.py")
    files = [
        ("ISIC_0027622.jpg", SAMPLE.read_bytes(), "image/jpeg"),
        ("ISIC_0029827.jpg", (SAMPLES_DIR / "ISIC_0029827.jpg").read_bytes(), "image/jpeg"),
    ]
    at.file_uploader(key="batch_images").set_value(files)
    csv = b"image_id,age,sex,localization\nISIC_0027622,40,female,upper extremity\n"
    at.file_uploader(key="batch_csv").set_value(("meta.csv", csv, "text/csv"))
    at.run()
    at.button(key="batch_run").click().run()
    assert not at.exception, at.exception
    result = at.session_state["batch"]["result"]
    assert sorted(result["image_id"]) == ["ISIC_0027622", "ISIC_0029827"]
    assert (result["error"] == "").all()
    assert len(at.dataframe) == 1 and len(at.get("plotly_chart")) == 1
    # The rank, the picture, the state, then P(malignant) lead each row; the seven follow, the
    # malignant ones first. The batch's one prior is said once; it, the referral's tick, threshold
    # and band, the OOD flag and score and text columns empty for every row stay in the CSV.
    optional = [] if (result["uncertain_between"] == "").all() else ["uncertain_between"]
    expected = ["rank", "thumbnail", "verdict", "malignant_probability", "image_id", "prediction", *optional]
    expected += ["mel", "bcc", "akiec", "nv", "bkl", "df", "vasc"]
    assert list(at.dataframe[0].proto.column_order) == expected
    assert any(c.value == t("diag.prior_in_force", "en", prior=t("prior.training", "en")) for c in at.caption)
    shown = at.dataframe[0].value  # riskiest first, as the CSV (batch.ranked)
    assert list(shown["rank"]) == [1, 2] and list(shown["image_id"]) == list(result["image_id"])
    order = [RISK_ORDER[answer_state(v, b == 1)] for v, b in zip(result["verdict"], result["borderline"])]
    assert order == sorted(order)
    assert all(str(u).startswith("data:image/jpeg;base64,") for u in shown["thumbnail"])  # a picture per row
    malignant = result[["mel", "bcc", "akiec"]].sum(axis=1)  # one number: the classes add up to it
    assert ((result["malignant_probability"] - malignant).abs() < 1e-9).all()


def test_batch_metadata_in_common_spellings_is_understood_and_a_bad_field_only_warns():
    """M/F and French spellings are read; an unknown value becomes unknown with a row warning,
    and is never blamed on the image."""
    at = _app("app_pages/batch.py")
    images = [(f"img{i}.jpg", SAMPLE.read_bytes(), "image/jpeg") for i in range(4)]
    csv = (
        "image_id,age,sex,localization\nimg0,40,M,back\nimg1,55,f,Dos\nimg2,70,homme,membre inférieur\n"
        "img3,abc,robot,elbow\n"
    ).encode()
    result = _batch(at, images, csv)
    assert (result["error"] == "").all() and result["prediction"].isin(vocab.CLASSES).all()
    by_id = result.set_index("image_id")  # rows riskiest first: read them by image
    assert list(by_id.loc[["img0", "img1", "img2", "img3"], "warning"] != "") == [False, False, False, True]
    assert "robot" in by_id.loc["img3", "warning"] and "elbow" in by_id.loc["img3", "warning"]
    shown = list(at.dataframe[0].proto.column_order)
    assert "warning" in shown and "error" not in shown  # a column shows where one row has a value
    warnings = [w.value for w in at.warning]
    assert t("batch.warned", "en", n=1, column=t("column.warning", "en")) in warnings
    assert not any("could not be read" in w for w in warnings)


def test_batch_refuses_more_files_than_its_limit(monkeypatch):
    monkeypatch.setenv("SKIN_MODEL_MAX_BATCH", "3")
    at = _app("app_pages/batch.py")
    at.file_uploader(key="batch_images").set_value([(f"i{i}.jpg", SAMPLE.read_bytes(), "image/jpeg") for i in range(4)])
    at.run()
    assert [e.value for e in at.error] == [t("batch.too_many", "en", limit=3, n=4)]
    assert not at.button and "batch" not in at.session_state


def test_batch_results_survive_another_page_and_never_sit_under_new_files():
    at = _app("app_pages/batch.py")
    first = _batch(at, [("a.jpg", SAMPLE.read_bytes(), "image/jpeg")])
    at.switch_page("app_pages/about.py").run()
    at.switch_page("app_pages/batch.py").run()
    assert at.session_state["batch"]["result"] is first and len(at.dataframe) == 1
    assert any(c.value == t("batch.kept", "en", n=1) for c in at.caption)
    at.file_uploader(key="batch_images").set_value(
        [("b.jpg", SAMPLE.read_bytes(), "image/jpeg"), ("c.jpg", SAMPLE.read_bytes(), "image/jpeg")]
    )
    at.run()
    assert "batch" not in at.session_state and not at.dataframe  # the old table is gone
    assert at.button(key="batch_run").label == t("batch.run", "en", n=2)


def test_batch_chart_when_nothing_could_be_read():
    at = _app("app_pages/batch.py")
    result = _batch(at, [("x.jpg", b"junk", "image/jpeg")])
    assert (result["error"] != "").all()
    assert not at.get("plotly_chart") and any(c.value == t("batch.none", "en") for c in at.caption)


def test_hostile_metadata_csvs_on_the_batch_page():
    from .hostile import HOSTILE_CSVS

    at = _app("app_pages/batch.py")
    image = ("img0.jpg", SAMPLE.read_bytes(), "image/jpeg")
    for name, (data, error) in sorted(HOSTILE_CSVS.items()):
        at.file_uploader(key="batch_images").set_value([image])
        at.file_uploader(key="batch_csv").set_value((f"{name}.csv", data, "text/csv"))
        at.run()
        at.button(key="batch_run").click().run()
        assert not at.exception, (name, at.exception)
        if error is None:
            assert not at.error, name
            assert at.session_state["batch"]["result"].loc[0, "prediction"] in vocab.CLASSES, name
        else:
            assert len(at.error) == 1 and "Traceback" not in at.error[0].value, name
    at.file_uploader(key="batch_csv").set_value(None)
    at.run()
    at.button(key="batch_run").click().run()
    assert not at.error and at.session_state["batch"]["result"].loc[0, "error"] == ""


def test_a_busy_model_on_the_batch_page_keeps_the_uploads(monkeypatch):
    from skin_model.inference.predictor import SkinClassifier
    from skin_model.inference.torch_thread import TorchThreadError

    at = _app("app_pages/batch.py")
    monkeypatch.setattr(SkinClassifier, "predict_prepared", _busy)
    at.file_uploader(key="batch_images").set_value([("a.jpg", SAMPLE.read_bytes(), "image/jpeg")])
    at.run()
    at.button(key="batch_run").click().run()
    assert not at.exception, at.exception
    assert error_text(TorchThreadError(), "en") in _warnings(at) and "batch" not in at.session_state
    monkeypatch.undo()
    at.button(key="batch_run").click().run()
    assert list(at.session_state["batch"]["result"]["image_id"]) == ["a"]


def test_batch_uploads_sharing_a_stem_keep_distinct_ids():
    at = _app("app_pages/batch.py")
    data = SAMPLE.read_bytes()
    png = encode(load_image(data), "PNG")
    result = _batch(at, [("x.jpg", data, "image/jpeg"), ("x.png", png, "image/png"), ("x.jpg", data, "image/jpeg")])
    assert list(result["image_id"]) == ["x.jpg", "x.png", "x.jpg (2)"]
    assert (result["error"] == "").all()


def test_rows_equal_as_written_keep_their_order_and_the_rest_go_riskiest_first():
    """Ranked by the number as the CSV writes it: the same image in another pass (a difference of
    ~1e-7) keeps the upload order; a difference the CSV shows moves the row up."""
    import pandas as pd

    from skin_model.inference.referral import SUSPICIOUS
    from skin_model.serving.batch import ranked

    table = pd.DataFrame(
        {
            "image_id": ["a", "b", "c", "d"],
            "verdict": [SUSPICIOUS] * 4,
            "borderline": [0] * 4,
            "malignant_probability": [0.5, 0.5 + 2e-7, 0.5 - 2e-7, 0.5002],
        }
    )
    out = ranked(table)
    assert list(out["image_id"]) == ["d", "a", "b", "c"] and list(out["rank"]) == [1, 2, 3, 4]
