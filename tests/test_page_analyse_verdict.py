"""The Analyse page's verdict, driven headless by streamlit.testing: the referral, the reasons
given, an image unlike dermoscopy and a busy model."""

import pytest

from skin_model import vocab
from skin_model.i18n import error_text, percent, t

from .app_helpers import (
    SAMPLE,
    _app,
    _busy,
    _card,
    _probability_table,
    _texts,
    _upload,
    _verdicts,
    _warnings,
    at_threshold,
)
from .conftest import SAMPLES_DIR


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
