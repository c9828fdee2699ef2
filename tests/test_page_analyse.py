"""The Analyse page, driven headless by streamlit.testing: uploads, samples, metadata, languages."""

import pandas as pd
import pytest

from skin_model import vocab
from skin_model.i18n import class_label, error_text, percent, t
from skin_model.inference.inputs import load_image

from .app_helpers import SAMPLE, _app, _probability_table, _upload
from .conftest import SAMPLES_DIR


def test_diagnose_shows_answer_chart_and_heatmap(model_calls):
    at = _app()
    _upload(at, "lesion.jpg", SAMPLE.read_bytes())
    prediction = at.session_state["diagnosis"]["prediction"]
    assert prediction.label in vocab.CLASSES
    shown = [m.value for m in at.markdown]
    if prediction.uncertain_between:  # a near tie is said in words: the table's first two
        a, b = prediction.uncertain_between
        line = t(
            "diag.uncertain",
            a=class_label(a),
            p_a=percent(prediction.probabilities[a]),
            b=class_label(b),
            p_b=percent(prediction.probabilities[b]),
        )
    else:
        line = t("diag.most_probable", label=class_label(prediction.label), p=percent(prediction.confidence))
    assert line in shown
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
    # One forward pass for the verdict, then the photo's quality check, then the heatmap of its most
    # probable class: one backward pass.
    assert model_calls == ["forward", "quality", prediction.label]
    at.slider(key="opacity.widget").set_value(80).run()
    at.number_input(key="age.widget")  # still there
    assert len(model_calls) == 3, "moving the opacity slider ran the model"
    other = next(c for c in vocab.CLASSES if c != prediction.label)
    at.selectbox(key="cam_class.en").set_value(other).run()
    assert model_calls[3:] == [other], "another class's heatmap ran the image through the network again"
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
    assert _probability_table(at) is not None  # the answer is on the page
    at.button(key="upload.remove").click().run()
    assert _probability_table(at) is None and any(t("diag.waiting", "en") == c.value for c in at.caption)


@pytest.mark.parametrize("stopped", [False, True], ids=["removed", "stopped by the next run"])
def test_an_emptied_uploader_draws_nothing_a_moment_and_forgets_its_image(monkeypatch, stopped):
    """Replacing a file runs the page with the old file gone, then with the new one: the first run
    waits before it draws anything of the answer, so that the old one stays on the screen until
    the next verdict takes its place. The image is forgotten either way, even when another run
    (the new file's, or a visit to another page) stops the waiting one."""
    import time

    from streamlit.runtime.scriptrunner import get_script_run_ctx

    at = _app()
    _upload(at, "lesion.jpg", SAMPLE.read_bytes())
    waits, sleep = [], time.sleep

    def waiting(seconds):  # the page's wait, on its own thread (AppTest's polls are shorter)
        if seconds < 0.1:
            return sleep(seconds)
        waits.append(seconds)
        if stopped:
            get_script_run_ctx().script_requests.request_stop()

    monkeypatch.setattr(time, "sleep", waiting)
    at.file_uploader(key="upload.widget").set_value(None).run()
    assert not at.exception and len(waits) == 1
    assert "upload" not in at.session_state and "diagnosis" not in at.session_state
    if not stopped:  # drawn again without the image: the patient's fields open, the page waits
        assert _probability_table(at) is None and any(t("diag.waiting", "en") == c.value for c in at.caption)
        assert at.expander[0].proto.expanded
    _upload(at, "lesion.jpg", SAMPLE.read_bytes())  # the same file given again is answered again
    assert _probability_table(at) is not None and len(waits) == 1


def test_a_kept_image_outlives_a_change_after_a_visit_to_another_page(model_calls):
    """Back from another page the uploader is empty and the image kept; changing the patient's
    information then answers the kept image again, it does not forget it."""
    at = _app()
    _upload(at, "lesion.jpg", SAMPLE.read_bytes())
    at.switch_page("app_pages/about.py").run()
    at.switch_page("app_pages/analyse.py").run()
    at.number_input(key="age.widget").set_value(62).run()
    assert not at.exception and at.session_state["upload"]["name"] == "lesion.jpg"
    assert _probability_table(at) is not None and model_calls.count("forward") == 2
    assert any(t("diag.kept", "en", name="lesion.jpg") == c.value for c in at.caption)


def test_a_refused_upload_replaces_the_previous_answer():
    at = _app()
    _upload(at, "lesion.jpg", SAMPLE.read_bytes())
    assert _probability_table(at) is not None
    _upload(at, "anim.gif", b"GIF89a not really", "image/gif")
    assert len(at.error) == 1 and at.error[0].value == t("error.NotAnImageError", "en")
    assert not any(m.value.startswith("####") for m in at.markdown) and _probability_table(at) is None


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


def test_the_quality_check_comes_after_the_verdict_and_advises_a_retake(model_calls):
    """A dark photo: the verdict is computed without the quality check (nothing it does not need
    before it), then the check runs once, warns with advice to retake the photo, and the answer
    stands; the answer kept in the session carries the check."""
    from PIL import ImageEnhance

    from .conftest import encode

    at = _app()
    dark = ImageEnhance.Brightness(load_image(SAMPLE.read_bytes())).enhance(0.2)
    _upload(at, "dark.jpg", encode(dark, "JPEG"), "image/jpeg")
    assert model_calls[:2] == ["forward", "quality"]
    kept = at.session_state["diagnosis"]
    assert "prepared" not in kept and "too_dark" in kept["prediction"].quality.problems
    warning = next(w.value for w in at.warning if w.value.startswith(t("quality.intro", "en")))
    assert t("quality.too_dark", "en") in warning
    at.run()  # the same answer drawn again (a dark photo is not judged: there is no heatmap to move)
    assert model_calls.count("quality") == 1, "the quality check ran again for the same answer"
    assert not at.exception


def test_a_busy_model_leaves_the_quality_check_for_the_next_run(monkeypatch):
    """The model busy when the photo's quality is checked: the verdict and the answer stand, no
    error is shown, and the next run checks the photo."""
    from skin_model.inference.predictor import SkinClassifier
    from skin_model.inference.torch_thread import TorchThreadError

    real, tries = SkinClassifier.check_quality, []

    def busy_once(self, *args, **kwargs):
        tries.append(1)
        if len(tries) == 1:
            raise TorchThreadError("busy")
        return real(self, *args, **kwargs)

    monkeypatch.setattr(SkinClassifier, "check_quality", busy_once)
    at = _app()
    _upload(at, "lesion.jpg", SAMPLE.read_bytes())
    kept = at.session_state["diagnosis"]
    assert kept["prediction"].quality is None and "prepared" in kept and _probability_table(at) is not None
    at.run()
    kept = at.session_state["diagnosis"]
    assert len(tries) == 2 and kept["prediction"].quality is not None and "prepared" not in kept
    assert not at.exception and not at.error
