"""The Analyse page's verdict, driven headless by streamlit.testing: the referral, the reasons
given, an image unlike dermoscopy and a busy model."""

import pytest

from skin_model import vocab
from skin_model.i18n import class_label, error_text, percent, t

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
)
from .conftest import SAMPLES_DIR


def _forced(monkeypatch, **changes):
    """The page's model answers as it would, with some of the prediction's fields replaced."""
    from dataclasses import replace

    from skin_model.inference.predictor import SkinClassifier

    real = SkinClassifier.answer_prepared

    def answer_prepared(self, *args, **kwargs):
        pred, attention = real(self, *args, **kwargs)
        return replace(pred, **changes), attention

    monkeypatch.setattr(SkinClassifier, "answer_prepared", answer_prepared)


def _number_line(pred, lang="en") -> str:
    return (
        f"{t('refer.number', lang)}{t('punct.colon', lang)}**{percent(pred.referral_probability, lang)}** "
        f"({t('refer.line', lang, threshold=percent(pred.refer_threshold, lang))})"
    )


def test_an_image_that_is_not_dermoscopy_is_not_judged_until_asked():
    """A flagged image: "cannot judge" first, and no number, threshold, diagnosis, table or heatmap
    on the page until the answer is asked for anyway; then it is marked as such."""
    from PIL import Image

    from .conftest import encode

    at = _app()
    _upload(at, "black.png", encode(Image.new("RGB", (320, 240), (0, 0, 0))), "image/png")
    pred = at.session_state["diagnosis"]["prediction"]
    assert pred.ood and not pred.judged
    assert _verdicts(at) == ["cannot_judge"]  # never "not suspicious" for an image it cannot judge
    shown = " ".join(str(m.value) for m in at.markdown if not m.value.startswith("####"))
    assert "%" not in shown and "%" not in " ".join(str(c.value) for c in at.caption if "100" not in c.value)
    assert t("refer.plain.cannot_judge", "en") in shown
    assert _probability_table(at) is None and not any("<details" in m.value for m in at.markdown)
    assert not at.get("imgs") and not at.get("image")  # no heatmap, no image panel: only the verdict's picture
    assert not any(t("diag.differential", "en") in m.value for m in at.markdown)  # no diagnosis named
    assert not any(b.label == t("report.download", "en") for b in at.get("download_button"))
    at.checkbox(key=f"show_anyway_{at.session_state['diagnosis']['key'][0][:16]}").check().run()
    assert not at.exception, at.exception
    assert t("diag.anyway", "en") in _warnings(at)  # marked, where the numbers appear
    assert _probability_table(at) is not None
    assert _verdicts(at) == ["cannot_judge"]  # the verdict stays


def test_a_sample_gets_the_number_the_table_adds_up_to_and_similar_cases():
    at = _app()
    _upload(at, "lesion.jpg", SAMPLE.read_bytes())
    pred = at.session_state["diagnosis"]["prediction"]
    assert not pred.ood
    # One malignancy number: the verdict's P(malignant) is the table's mel + bcc + akiec.
    assert _number_line(pred) in _texts(at) and pred.prior == "training"
    assert sum(pred.probabilities[c] for c in ("mel", "bcc", "akiec")) == pytest.approx(pred.referral_probability)
    assert 1 <= len(pred.neighbours) <= 6
    # Each a card a tap opens: the thumbnail, a similarity (not a percentage), then the details.
    cards = next(m.value for m in at.markdown if "<details" in m.value)
    assert cards.count("<details") == len(pred.neighbours)
    first = pred.neighbours[0]
    assert t("diag.similarity", "en", s=f"{first.similarity:.2f}") in cards
    assert vocab.BY_CODE[first.dx].name_en in cards and t(f"dx_type.{first.dx_type}", "en") in cards
    assert t("diag.balanced", "en") not in _probability_table(at)
    at.toggle(key="balanced.widget").set_value(True).run()  # the view before base rates, as an extra column
    assert t("diag.balanced", "en") in _probability_table(at)
    assert at.session_state["diagnosis"]["prediction"] is pred  # no new answer: the verdict cannot move


@pytest.mark.parametrize("lang", ["en", "fr"])
def test_the_verdict_comes_first_with_its_number_and_what_is_known_of_the_rule(lang):
    """Above the seven diagnoses: the state in words, P(malignant) against the line, one plain
    sentence, and the rule's evidence at home and on a clinic it never saw, from the card."""
    from skin_model.i18n import per_hundred
    from skin_model.inference.referral import answer_state, rule_evidence

    at = _app()
    _upload(at, "lesion.jpg", SAMPLE.read_bytes())
    at.session_state["lang"] = lang  # as the sidebar's language selector sets it (see above)
    at.run()
    pred = at.session_state["diagnosis"]["prediction"]
    state = answer_state(pred.verdict, pred.borderline)
    assert _verdicts(at) == [state]
    texts = [str(m.value) for m in at.markdown]
    heading = next(i for i, m in enumerate(texts) if m.startswith("####"))
    assert (
        heading < texts.index(_number_line(pred, lang)) < next(i for i, m in enumerate(texts) if m.startswith("<table"))
    )
    assert t(f"refer.plain.{state}", lang) in texts
    known = rule_evidence(_card())
    evidence = next(c.value for c in at.caption if per_hundred(known["sensitivity"]) in c.value)
    assert per_hundred(known["false_alarms"]) in evidence
    if known["unseen"]:
        assert per_hundred(known["unseen"]["sensitivity"]) in evidence
        assert per_hundred(known["unseen"]["cannot_judge"]) in evidence
    assert t("diag.coverage", lang) in [c.value.split(" ", 1)[1] for c in at.caption if " " in c.value]


def test_the_differential_is_the_table_s_order_and_uncertain_is_its_top_two(monkeypatch):
    """Whatever the prediction: the named diagnoses are the table's first rows, in its order."""
    at = _app()
    _upload(at, "lesion.jpg", SAMPLE.read_bytes())
    pred = at.session_state["diagnosis"]["prediction"]
    ranked = sorted(pred.probabilities, key=pred.probabilities.get, reverse=True)
    text = _texts(at)
    assert pred.label == ranked[0]
    if pred.uncertain_between:
        assert list(pred.uncertain_between) == ranked[:2]
        named = t(
            "diag.uncertain",
            "en",
            a=ui_label(ranked[0]),
            p_a=percent(pred.probabilities[ranked[0]]),
            b=ui_label(ranked[1]),
            p_b=percent(pred.probabilities[ranked[1]]),
        )
    else:
        named = t("diag.most_probable", "en", label=ui_label(ranked[0]), p=percent(pred.probabilities[ranked[0]]))
    assert named in text
    table = _probability_table(at)
    positions = [table.index(f"<b>{c}</b>") for c in ranked]
    assert positions == sorted(positions)


def ui_label(code: str) -> str:
    from skin_model.i18n import class_label

    return class_label(code, "en")


def test_a_borderline_answer_has_no_green_tick_and_says_near_the_line(monkeypatch):
    _forced(monkeypatch, borderline=True)
    at = _app()
    _upload(at, "lesion.jpg", SAMPLE.read_bytes())
    heading = next(m.value for m in at.markdown if m.value.startswith("####"))
    assert t("refer.borderline", "en") in heading and "check_circle" not in heading and ":green[" not in heading
    assert t("refer.plain.borderline", "en") in _texts(at)


def test_a_suspicious_verdict_over_a_benign_top_diagnosis_says_why_with_the_table_s_numbers(monkeypatch):
    probabilities = {"akiec": 0.05, "bcc": 0.10, "bkl": 0.08, "df": 0.04, "mel": 0.20, "nv": 0.50, "vasc": 0.03}
    _forced(
        monkeypatch,
        label="nv",
        probabilities=probabilities,
        referral_probability=0.35,
        uncertain_between=None,
        borderline=False,
        ood=False,
    )
    at = _app()
    _upload(at, "lesion.jpg", SAMPLE.read_bytes())
    pred = at.session_state["diagnosis"]["prediction"]
    assert pred.verdict == "suspicious"
    why = t(
        "refer.conflict",
        "en",
        code=class_label("nv", "en"),
        top=percent(0.5),
        p=percent(0.35),
        threshold=percent(pred.refer_threshold),
    )
    assert why in _texts(at)


def test_a_change_of_patient_information_says_what_moved():
    at = _app()
    _upload(at, "lesion.jpg", (SAMPLES_DIR / "ISIC_0029827.jpg").read_bytes())
    pred = at.session_state["diagnosis"]["prediction"]
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
    monkeypatch.setattr(SkinClassifier, "answer_prepared", _busy)
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
    from skin_model.inference.predictor import Attention
    from skin_model.inference.torch_thread import TorchThreadError

    at = _app()
    _upload(at, "lesion.jpg", SAMPLE.read_bytes())
    answered = at.session_state["diagnosis"]["prediction"]
    other = next(c for c in vocab.CLASSES if c != answered.label)
    monkeypatch.setattr(Attention, "heatmap", _busy)
    at.selectbox(key="cam_class.en").set_value(other).run()
    assert not at.exception, at.exception
    assert error_text(TorchThreadError(), "en") in _warnings(at)
    assert at.session_state["diagnosis"]["prediction"] is answered  # the answer above stays
