"""The Streamlit pages, driven headless by streamlit.testing (one test per page, plus errors)."""

import pandas as pd
import pytest
from streamlit.testing.v1 import AppTest

from skin_model import vocab
from skin_model.i18n import error_text, percent, t
from skin_model.inference.inputs import load_image
from skin_model.inference.referral import VERDICTS

from .conftest import REPO, SAMPLES_DIR, encode

SAMPLE = SAMPLES_DIR / "ISIC_0027622.jpg"


def _app(page: str | None = None) -> AppTest:
    at = AppTest.from_file(str(REPO / "navigation.py"), default_timeout=60)
    at.run()
    if page:
        at.switch_page(page)
        at.run()
    assert not at.exception, at.exception
    return at


def _probability_table(at) -> str | None:
    """The Analyse page's HTML table of all seven diagnoses, if shown."""
    return next((m.value for m in at.markdown if m.value.startswith("<table")), None)


def _texts(at) -> str:
    return " ".join(
        str(e.value) for kind in ("markdown", "subheader", "title", "caption", "error", "info") for e in at.get(kind)
    )


@pytest.fixture
def model_calls(monkeypatch):
    """Counts the model's answers (``diagnose`` calls) made by the pages, from outside them."""
    from skin_model.inference.predictor import SkinClassifier

    calls = []
    diagnose = SkinClassifier.diagnose

    def counted(self, *args, **kwargs):
        calls.append(kwargs.get("target"))
        return diagnose(self, *args, **kwargs)

    monkeypatch.setattr(SkinClassifier, "diagnose", counted)
    return calls


def _upload(at, name, data, mime="image/jpeg"):
    at.file_uploader(key="upload.widget").set_value((name, data, mime))
    at.run()
    assert not at.exception, at.exception


def test_diagnose_shows_answer_chart_and_heatmap(model_calls):
    at = _app()
    _upload(at, "lesion.jpg", SAMPLE.read_bytes())
    prediction = at.session_state["diagnosis"]["prediction"]
    assert prediction.label in vocab.CLASSES
    if prediction.uncertain_between:  # a near tie is said in words, not as an answer
        a, b = prediction.uncertain_between
        assert any(t("diag.uncertain", a=a, b=b) == s.value for s in at.subheader)
    else:
        assert any(
            prediction.label in s.value and vocab.BY_CODE[prediction.label].name_en in s.value for s in at.subheader
        )
    assert len(at.get("imgs")) >= 1 or len(at.get("image")) >= 1
    table = _probability_table(at)  # every class, most likely first: fused, then image-only
    rows = table.split("<tr>")[2:]
    by_probability = sorted(vocab.CLASSES, key=prediction.probabilities.get, reverse=True)
    assert [row.split("</b>")[0].rsplit("<b>", 1)[1] for row in rows] == by_probability
    for code, row in zip(by_probability, rows):  # the full name too, visible without hovering
        assert vocab.BY_CODE[code].name_en in row
    for code, row in zip(by_probability, rows):
        fused, image_only = percent(prediction.probabilities[code]), percent(prediction.image_only[code])
        assert row.index(fused) < row.rindex(image_only)
        assert f"width:{100 * prediction.probabilities[code]:.1f}%" in row  # the bar
    assert len(model_calls) == 1
    at.slider(key="opacity.widget").set_value(80).run()
    at.number_input(key="age.widget")  # still there
    assert len(model_calls) == 1, "moving the opacity slider ran the model"
    assert not at.exception


def test_metadata_change_reruns_and_class_selector_explains(monkeypatch):
    at = _app()
    _upload(at, "lesion.jpg", SAMPLE.read_bytes())
    before = at.session_state["diagnosis"]["prediction"]
    at.number_input(key="age.widget").set_value(70).run()
    at.selectbox(key="sex.en").set_value("female").run()
    at.selectbox(key="site.en").set_value("back").run()
    after = at.session_state["diagnosis"]["prediction"]
    assert after.metadata.age == 70 and after.metadata.site == "back"
    assert after.image_only == pytest.approx(before.image_only)
    assert list(at.session_state["diagnosis"]["heatmaps"]) == [after.label]  # its own class first
    at.selectbox(key="cam_class.en").set_value("malignant").run()  # the verdict's score, one choice away
    assert "malignant" in at.session_state["diagnosis"]["heatmaps"]
    other = next(c for c in vocab.CLASSES if c != after.label)
    at.selectbox(key="cam_class.en").set_value(other).run()
    assert other in at.session_state["diagnosis"]["heatmaps"]
    assert not at.exception


@pytest.mark.parametrize(
    "name,data",
    [("notes.jpg", b"this is not an image at all"), ("cut.jpg", SAMPLE.read_bytes()[:3000]), ("empty.png", b"")],
)
def test_bad_upload_shows_error_then_app_still_works(name, data):
    at = _app()
    _upload(at, name, data)
    assert len(at.error) == 1 and "Traceback" not in at.error[0].value
    assert "diagnosis" not in at.session_state
    _upload(at, "lesion.jpg", SAMPLE.read_bytes())
    assert not at.error and at.session_state["diagnosis"]["prediction"].label in vocab.CLASSES


def test_sample_gallery():
    at = _app()
    at.radio(key="source.en").set_value("sample").run()
    recorded = pd.read_csv(SAMPLES_DIR / "metadata.csv", dtype={"image_id": str})
    for index in (0, len(recorded) - 1):
        at.selectbox(key="sample.en").set_value(index).run()
        row, meta = recorded.iloc[index], at.session_state["diagnosis"]["prediction"].metadata
        assert (meta.age, meta.sex, meta.site) == (row.age, row.sex, row.localization)
    assert _probability_table(at) and not at.exception


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
    assert list(result["image_id"]) == ["ISIC_0027622", "ISIC_0029827"]
    assert (result["error"] == "").all()
    assert len(at.dataframe) == 1 and len(at.get("plotly_chart")) == 1
    # The verdict leads each row, then P(malignant); the batch's one prior is said once; it, the
    # referral's tick, threshold and band, the OOD flag and score and text columns empty for
    # every row stay in the CSV, off the screen.
    hidden = {"prior", "ood_score", "refer", "refer_threshold", "borderline", "ood", "warning", "error"} | (
        {"uncertain_between"} if (result["uncertain_between"] == "").all() else set()
    )
    first = ["verdict", "malignant_probability", "image_id", "prediction"]
    expected = first + [c for c in result.columns if c not in hidden and c not in first]
    assert list(at.dataframe[0].proto.column_order) == expected
    assert any(c.value == t("diag.prior_in_force", "en", prior=t("prior.training", "en")) for c in at.caption)
    shown = at.dataframe[0].value  # riskiest first: suspicious by P(malignant), then the others
    ranks = shown["verdict"].map(lambda v: 0 if v.startswith(t("refer.short.suspicious", "en")) else 1)
    assert list(ranks) == sorted(ranks)
    malignant = result[["mel", "bcc", "akiec"]].sum(axis=1)  # one number: the classes add up to it
    assert ((result["malignant_probability"] - malignant).abs() < 1e-9).all()


def _batch(at, files, csv=None):
    at.file_uploader(key="batch_images").set_value(files)
    at.file_uploader(key="batch_csv").set_value(("meta.csv", csv, "text/csv") if csv else None)
    at.run()
    at.button(key="batch_run").click().run()
    assert not at.exception, at.exception
    return at.session_state["batch"]["result"]


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
    assert list(result["warning"] != "") == [False, False, False, True]
    assert "robot" in result.loc[3, "warning"] and "elbow" in result.loc[3, "warning"]
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


def test_model_card_renders_its_metrics():
    at = _app("app_pages/model_card.py")
    labels = [m.label for m in at.metric]
    test = f" · {t('card.test', 'en')}"
    referral = ("card.sensitivity", "card.specificity", "card.mel_sensitivity")  # the referral rule first
    headline = ("card.bal_acc", "card.mel_recall", "card.mel_auc", "card.auc", "card.ece")
    assert labels == [t(k, "en") + test for k in (*referral, *headline)]
    assert all(0 < float(m.value) <= 1 for m in at.metric)
    # out-of-fold beside test: the 3 referral figures and each headline figure
    assert sum(c.value.startswith(t("card.oof", "en") + ":") for c in at.caption) == 8
    assert len(at.get("plotly_chart")) == 4  # the referral ROC, recall, confusion, reliability
    assert {t("card.referral", "en"), t("card.ood", "en")} <= {h.value for h in at.subheader}


@pytest.mark.parametrize("lang", ["en", "fr"])
def test_about_page_explains_the_answer_and_has_the_glossary(lang):
    at = _app("app_pages/about.py")
    at.session_state["lang"] = lang
    at.run()
    text = _texts(at)
    for d in vocab.DIAGNOSES:
        assert d.name(lang) in text
    assert t("about.answer.text", lang) in text  # verdict, threshold, borderline, calibrated, base rates
    assert not any("pip install" in str(c.value) for c in at.code)  # installing is the README's job


@pytest.mark.parametrize("lang", ["en", "fr"])
def test_the_pages_name_and_cite_the_datasets_the_model_card_names(lang):
    from skin_model.inference.card import read_card_of_shipped

    named = read_card_of_shipped()["data"]["dataset"]
    for page, key in (("app_pages/about.py", "cite"), ("app_pages/model_card.py", "data")):
        at = _app(page)
        at.session_state["lang"] = lang
        at.run()
        text = _texts(at)
        for name in ("HAM10000", "ISIC 2017", "BCN20000"):
            assert (t(f"{key}.{name}", lang) in text) == (name in named), (page, name)
            if page.endswith("model_card.py"):
                assert (t(f"split.{name}", lang) in text) == (name in named), name


@pytest.mark.parametrize("lang", ["en", "fr"])
def test_the_model_card_page_names_each_clinic_the_model_has_seen_once(lang):
    from skin_model.i18n import SOURCE_CLINIC
    from skin_model.inference.card import read_card_of_shipped

    at = _app("app_pages/model_card.py")
    at.session_state["lang"] = lang
    at.run()
    opening = t("card.sources", lang, sources="\0").split("\0")[0]  # the sentence before the clinics
    seen = next(i.value for i in at.info if i.value.startswith(opening))
    sources = read_card_of_shipped()["data"]["sources"]
    for clinic in {SOURCE_CLINIC[s] for s in sources}:
        assert seen.count(t(f"clinic.{clinic}", lang)) == 1, clinic
    assert not any(s in seen for s in sources)  # clinics, not the data's column values


@pytest.mark.parametrize("lang", ["en", "fr"])
def test_the_model_card_page_shows_the_held_out_sources_its_card_reports(tmp_path, monkeypatch, lang):
    import streamlit as st

    from skin_model.config import PACKAGE_DIR
    from skin_model.inference.card import read_card, write_card
    from skin_model.training.holdout import held_out_evidence

    model_dir = tmp_path / "model"
    model_dir.mkdir()
    for path in (PACKAGE_DIR / "model").glob("*.safetensors"):
        (model_dir / path.name).symlink_to(path)
    card = read_card(PACKAGE_DIR / "model")
    card["held_out_sources"] = held_out_evidence(REPO / "runs/holdout/results.jsonl", "sog_bcn_lowres")
    write_card(model_dir, card)
    monkeypatch.setenv("SKIN_MODEL_DIR", str(model_dir))
    st.cache_resource.clear()
    st.cache_data.clear()
    try:
        at = _app("app_pages/model_card.py")
        at.session_state["lang"] = lang
        at.run()
        assert not at.exception, at.exception
        assert t("card.held_out", lang) in [h.value for h in at.subheader]
        table = next(d.value for d in at.dataframe if t("card.melanomas", lang) in d.value.columns)
        sources = [*card["held_out_sources"]["by_source"], t("card.mean", lang)]
        assert list(table[t("card.source", lang)]) == sources
        first = next(iter(card["held_out_sources"]["by_source"].values()))
        images = list(table[t("card.images", lang)])
        assert images[0] == str(first["images"]) and images[-1] == ""  # the mean row counts nothing
        mean = card["held_out_sources"]["mean"]["melanoma_auc"]
        assert table[t("card.mel_auc", lang)].iloc[-1] == pytest.approx(mean)
        assert f"{mean:.3f}" in _texts(at)
    finally:
        st.cache_resource.clear()  # the next test reads the shipped card again
        st.cache_data.clear()


def test_language_switch_changes_the_text():
    at = _app()
    assert at.title[0].value == t("diag.title", "en")
    at.sidebar.selectbox[0].set_value("fr").run()
    assert at.title[0].value == t("diag.title", "fr")
    assert at.radio(key="source.fr").options[0] == t("diag.source.upload", "fr")


def test_after_a_language_switch_every_selector_shows_french_values_and_keeps_its_choice():
    at = _app()
    at.radio(key="source.en").set_value("sample").run()
    at.selectbox(key="sample.en").set_value(2).run()
    at.checkbox(key="sample_meta.widget").uncheck().run()
    at.selectbox(key="sex.en").set_value("female").run()
    at.selectbox(key="site.en").set_value("back").run()
    label = at.session_state["diagnosis"]["prediction"].label
    # AppTest drops the sidebar from its tree after a rerun under st.navigation, so the
    # language is chosen through the state of the sidebar's widget.
    at.session_state["lang"] = "fr"
    at.run()
    assert not at.exception and not at.warning
    source = at.radio(key="source.fr")
    assert source.value == "sample" and source.options == [
        t(f"diag.source.{s}", "fr") for s in ("upload", "camera", "sample")
    ]
    assert at.selectbox(key="sample.fr").value == 2
    assert at.selectbox(key="sex.fr").value == "female"
    assert at.selectbox(key="sex.fr").options == [t(f"sex.{s}", "fr") for s in vocab.SEXES]
    assert at.selectbox(key="site.fr").value == "back"
    cam = at.selectbox(key="cam_class.fr")  # the verdict's score first, then each class
    assert cam.value == label and cam.options[0] == t("diag.cam_malignant", "fr")
    assert cam.options[1] == f"akiec — {vocab.BY_CODE['akiec'].name_fr}"
    assert at.toggle(key="balanced.widget").label == t("diag.balanced_toggle", "fr")
    assert at.session_state["diagnosis"]["prediction"].label == label  # the same answer, now in French


def test_an_answer_and_its_inputs_survive_a_visit_to_another_page(model_calls):
    at = _app()
    _upload(at, "lesion.jpg", SAMPLE.read_bytes())
    at.number_input(key="age.widget").set_value(55).run()
    at.selectbox(key="site.en").set_value("back").run()
    answer = at.session_state["diagnosis"]["prediction"]
    calls = len(model_calls)
    at.switch_page("app_pages/about.py").run()
    at.switch_page("app_pages/analyse.py").run()
    assert not at.exception
    assert at.number_input(key="age.widget").value == 55 and at.selectbox(key="site.en").value == "back"
    assert at.session_state["diagnosis"]["prediction"] is answer and len(model_calls) == calls
    assert any(t("diag.kept", "en", name="lesion.jpg") == c.value for c in at.caption)
    assert at.subheader  # the answer is on the page
    at.button(key="upload.remove").click().run()
    assert not at.subheader and any(t("diag.waiting", "en") == c.value for c in at.caption)


def test_a_refused_upload_replaces_the_previous_answer():
    at = _app()
    _upload(at, "lesion.jpg", SAMPLE.read_bytes())
    assert at.subheader
    _upload(at, "anim.gif", b"GIF89a not really", "image/gif")
    assert len(at.error) == 1 and at.error[0].value == t("error.NotAnImageError", "en")
    assert not at.subheader and _probability_table(at) is None


def test_hostile_uploads_keep_the_page_working():
    """Every hostile image: an error in plain words (or an answer if it is a valid image), never a traceback."""
    from .hostile import HOSTILE_IMAGES

    at = _app()
    good = SAMPLE.read_bytes()
    for name, (make, error) in sorted(HOSTILE_IMAGES.items()):
        if not isinstance(make(), bytes):
            continue  # a path: nothing a browser can upload
        _upload(at, f"{name}.jpg", make())
        if error is None:
            assert not at.error, (name, [e.value for e in at.error])
            assert "diagnosis" in at.session_state, name
        else:
            assert len(at.error) == 1 and "diagnosis" not in at.session_state, name
            with pytest.raises(error) as refused:
                load_image(make())
            assert at.error[0].value == error_text(refused.value, "en"), name  # its own message, once
            assert "Traceback" not in at.error[0].value
        _upload(at, "lesion.jpg", good)
        assert not at.error and at.session_state["diagnosis"]["prediction"].label in vocab.CLASSES, name


def test_impossible_ages_never_reach_the_model_from_the_page():
    """The Diagnose page's age widget is bounded by the vocabulary; values a hostile client
    sends outside it are dropped by Streamlit (the last valid age stays), never a traceback."""
    at = _app()
    _upload(at, "lesion.jpg", SAMPLE.read_bytes())
    assert (
        at.number_input(key="age.widget").min == vocab.AGE_MIN
        and at.number_input(key="age.widget").max == vocab.AGE_MAX
    )
    assert at.selectbox(key="sex.en").options == [t(f"sex.{s}", "en") for s in vocab.SEXES]
    assert at.selectbox(key="site.en").options == [t(f"site.{s}", "en") for s in vocab.SITES]
    for age in (-1, 101, 10_000):
        at.number_input(key="age.widget").set_value(70).run()
        at.number_input(key="age.widget").set_value(age).run()
        assert not at.exception and not at.error, age
        assert at.session_state["diagnosis"]["prediction"].metadata.age == 70, age  # the last valid age
    at.number_input(key="age.widget").set_value(35).run()
    assert at.session_state["diagnosis"]["prediction"].metadata.age == 35


@pytest.mark.parametrize("damage", ["missing", "corrupted"])
def test_broken_artifact_gives_a_clear_start_up_error(tmp_path, monkeypatch, damage):
    import shutil

    import streamlit as st

    from skin_model.config import PACKAGE_DIR, WEIGHTS_FILE

    model_dir = tmp_path / "model"
    shutil.copytree(PACKAGE_DIR / "model", model_dir)
    weights = model_dir / WEIGHTS_FILE
    if damage == "missing":
        weights.unlink()
    else:
        weights.write_bytes(weights.read_bytes()[:1000])
    monkeypatch.setenv("SKIN_MODEL_DIR", str(model_dir))
    st.cache_resource.clear()
    try:
        at = _app()
        assert len(at.error) == 1 and str(weights) in at.error[0].value
        assert "diagnosis" not in at.session_state
    finally:
        st.cache_resource.clear()  # the next test loads the real model again


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


def _verdicts(at) -> list[str]:
    """The referral verdicts shown (their headings), in order."""
    names = {t(f"refer.{v}", lang): v for v in VERDICTS for lang in ("en", "fr")}
    return [v for m in at.markdown for text, v in names.items() if m.value.startswith("####") and text in m.value]


def at_threshold() -> float:
    import skin_model

    return skin_model.load_model().ood.threshold


def test_an_image_that_is_not_dermoscopy_gets_the_warning_first():
    """A flagged image: "cannot judge" first, never a reassuring verdict, no answer and no
    badge; the answer only on request."""
    from PIL import Image

    from .conftest import encode

    at = _app()
    _upload(at, "black.png", encode(Image.new("RGB", (320, 240), (0, 0, 0))), "image/png")
    assert at.session_state["diagnosis"]["prediction"].ood
    assert _verdicts(at) == ["cannot_judge"]  # never "not suspicious" for an image it cannot judge
    pred = at.session_state["diagnosis"]["prediction"]
    reason = t("refer.cannot_judge_note", "en", score=f"{pred.ood_score:.2f}", threshold=f"{at_threshold():.2f}")
    assert reason in [m.value for m in at.markdown]  # unlike its dermoscopy, with the reason's numbers
    assert len(at.get("imgs")) >= 1 or len(at.get("image")) >= 1  # and the image itself, beside it
    assert not at.subheader and not any("-badge[" in m.value for m in at.markdown)
    shown = next(c for c in at.checkbox if c.label == t("diag.show_anyway", "en"))
    shown.check().run()
    assert not at.exception, at.exception
    label = at.session_state["diagnosis"]["prediction"].label
    assert [s.value for s in at.subheader] == [t("diag.ood_answer", "en", code=label)]
    assert not any("-badge[" in m.value for m in at.markdown)  # never a confident badge
    assert _verdicts(at) == ["cannot_judge"]  # the verdict stays


def test_a_sample_gets_the_referral_score_the_prior_and_similar_cases():
    at = _app()
    _upload(at, "lesion.jpg", SAMPLE.read_bytes())
    pred = at.session_state["diagnosis"]["prediction"]
    assert not pred.ood
    text = _texts(at)
    # One malignancy number: the verdict's P(malignant) is the table's mel + bcc + akiec.
    score = t("refer.score", "en", p=percent(pred.referral_probability), threshold=percent(pred.refer_threshold))
    assert score in text and pred.prior == "training"
    assert sum(pred.probabilities[c] for c in ("mel", "bcc", "akiec")) == pytest.approx(pred.referral_probability)
    assert pred.malignant_probability == pred.referral_probability
    assert len(pred.neighbours) == 6
    # Each a card a tap opens: the thumbnail and a short caption, then the full name and how confirmed.
    cards = next(m.value for m in at.markdown if "<details" in m.value)
    assert cards.count("<details") == 6 and cards.count("data:image/jpeg;base64,") == 6
    first = pred.neighbours[0]
    assert vocab.BY_CODE[first.dx].name_en in cards and t(f"dx_type.{first.dx_type}", "en") in cards
    assert t("diag.balanced", "en") not in _probability_table(at)
    at.toggle(key="balanced.widget").set_value(True).run()  # the view before base rates, as an extra column
    assert t("diag.balanced", "en") in _probability_table(at)
    assert at.session_state["diagnosis"]["prediction"] is pred  # no new answer: the verdict cannot move
    assert score in _texts(at)


@pytest.mark.parametrize("lang", ["en", "fr"])
def test_the_referral_verdict_comes_first_in_both_languages(lang):
    """Above the seven diagnoses: the verdict in words, P(malignant) against the threshold, and
    the rule's evidence from the card as natural frequencies."""
    from skin_model.inference.referral import natural_frequencies

    at = _app()
    _upload(at, "lesion.jpg", SAMPLE.read_bytes())
    at.session_state["lang"] = lang  # as the sidebar's language selector sets it (see above)
    at.run()
    pred = at.session_state["diagnosis"]["prediction"]
    assert not pred.ood and pred.verdict in ("suspicious", "not_suspicious")
    assert _verdicts(at) == [pred.verdict]
    texts = [str(m.value) for m in at.markdown]
    heading = next(i for i, m in enumerate(texts) if t("refer." + pred.verdict, lang) in m)
    score = t(
        "refer.score", lang, p=percent(pred.referral_probability, lang), threshold=percent(pred.refer_threshold, lang)
    )
    assert score in texts
    # first, then the score, then the seven diagnoses' table
    assert heading < texts.index(score) < next(i for i, m in enumerate(texts) if m.startswith("<table"))
    assert not at.error  # a verdict is no error
    flagged, false_alarms = natural_frequencies(_card()["referral"]["validation"])
    assert t("refer.evidence", lang, flagged=flagged, false_alarms=false_alarms) in [c.value for c in at.caption]


def _card() -> dict:
    from skin_model.inference.card import read_card_of_shipped

    return read_card_of_shipped()


def _busy(*args, **kwargs):
    from skin_model.inference.torch_thread import TorchThreadError

    raise TorchThreadError("The model is busy with too many requests; please try again shortly.")


def _warnings(at) -> str:
    return " ".join(str(w.value) for w in at.warning)


@pytest.mark.parametrize("lang", ["en", "fr"])
def test_a_busy_model_is_said_as_busy_on_analyse_and_the_image_is_kept(monkeypatch, lang):
    from skin_model.inference.predictor import SkinClassifier
    from skin_model.inference.torch_thread import TorchThreadError

    at = _app()
    monkeypatch.setattr(SkinClassifier, "diagnose", _busy)
    _upload(at, "lesion.jpg", SAMPLE.read_bytes())
    at.session_state["lang"] = lang  # as the sidebar's language selector sets it
    at.run()
    busy = error_text(TorchThreadError(), lang)
    assert busy in _warnings(at) and not at.error
    assert "diagnosis" not in at.session_state and at.session_state["upload"]["name"] == "lesion.jpg"
    if lang == "en":  # (AppTest cannot rerun a French page whose radio it set in English)
        monkeypatch.undo()  # the model is free again: the next run answers, nothing re-uploaded
        at.run()
        assert not at.exception and at.session_state["diagnosis"]["prediction"].label in vocab.CLASSES


def test_a_busy_model_in_the_heatmap_keeps_the_answer(monkeypatch):
    from skin_model.inference.predictor import SkinClassifier
    from skin_model.inference.torch_thread import TorchThreadError

    at = _app()
    _upload(at, "lesion.jpg", SAMPLE.read_bytes())
    answered = at.session_state["diagnosis"]["prediction"]
    other = next(c for c in vocab.CLASSES if c != answered.label)
    monkeypatch.setattr(SkinClassifier, "diagnose", _busy)
    at.selectbox(key="cam_class.en").set_value(other).run()
    assert not at.exception, at.exception
    assert error_text(TorchThreadError(), "en") in _warnings(at)
    assert at.session_state["diagnosis"]["prediction"] is answered  # the answer above stays


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


def test_a_suggested_diagnosis_that_is_not_the_most_probable_says_why():
    at = _app()
    _upload(at, "lesion.jpg", SAMPLE.read_bytes())
    pred = at.session_state["diagnosis"]["prediction"]
    assert pred.label == "mel" and pred.most_probable == "nv"  # this sample (pinned with the model)
    why = t(
        "diag.answer_rule",
        "en",
        top="nv",
        p_top=percent(pred.probabilities["nv"]),
        code="mel",
        p=percent(pred.probabilities["mel"]),
    )
    assert why in _texts(at)
    assert pred.probabilities["nv"] > pred.probabilities["mel"]  # the sentence's claim holds


def test_a_suspicious_verdict_over_a_benign_diagnosis_says_why_and_a_change_says_what_moved():
    at = _app()
    _upload(at, "lesion.jpg", (SAMPLES_DIR / "ISIC_0029827.jpg").read_bytes())
    pred = at.session_state["diagnosis"]["prediction"]
    conflict = pred.verdict == "suspicious" and vocab.BY_CODE[pred.label].group == "benign"
    assert conflict  # this sample: dermatofibroma suggested, yet referred (pinned with the model)
    why = t(
        "refer.conflict",
        "en",
        code=pred.label,
        top=percent(pred.confidence),
        p=percent(pred.referral_probability),
        threshold=percent(pred.refer_threshold),
    )
    assert why in _texts(at)
    assert not any("What changed" in str(i.value) for i in at.info)  # a first answer changed nothing
    at.number_input(key="age.widget").set_value(80).run()
    after = at.session_state["diagnosis"]["prediction"]
    line = t(
        "diag.changed",
        "en",
        before=percent(pred.referral_probability),
        after=percent(after.referral_probability),
        top_before=pred.label,
        top_after=after.label,
        verdict=t("diag.verdict_same", "en")
        if after.verdict == pred.verdict
        else f"{t('refer.short.' + pred.verdict, 'en')} → {t('refer.short.' + after.verdict, 'en')}",
    )
    assert line in [str(i.value) for i in at.info]
