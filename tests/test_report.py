"""The one-page PDF report: valid, one page, holding the state, the number and the differential in
the page's language; an image that cannot be judged gets no number in it."""

from __future__ import annotations

import io

import pytest

from skin_model.i18n import percent, t
from skin_model.inference.referral import answer_state
from skin_model.serving.report import pdf_report

from .conftest import synthetic_lesion


def _text(pdf: bytes) -> str:
    from pypdf import PdfReader

    reader = PdfReader(io.BytesIO(pdf))
    assert len(reader.pages) == 1
    return " ".join(reader.pages[0].extract_text().split())


@pytest.mark.parametrize("lang", ["en", "fr"])
def test_the_report_is_one_page_holding_the_verdict_and_its_number(tiny_model, lang):
    image = synthetic_lesion("mel", 7, size=(200, 150))
    pred, explanation = tiny_model.diagnose(image, age=61, sex="male", site="back")
    pred = pred if pred.judged else pred.anyway()  # the tiny model may find a synthetic image out of domain
    pdf = pdf_report(pred, image, image, lang)
    assert pdf.startswith(b"%PDF-")
    text = _text(pdf)
    state = answer_state(pred.verdict, pred.borderline)
    assert " ".join(t(f"refer.{state}", lang).split()) in text
    spaced = percent(pred.referral_probability, lang).replace("\u202f", " ").replace("\u00a0", " ")
    assert spaced in text.replace("\u00a0", " ").replace("\u202f", " ")
    assert pred.label in text and pred.model_version in text
    assert " ".join(t("diag.differential", lang).split()) in text
    assert "61" in text  # the patient information given


def test_an_image_that_cannot_be_judged_has_no_number_in_its_report(tiny_model):
    from dataclasses import replace

    image = synthetic_lesion("nv", 8, size=(200, 150))
    pred = replace(tiny_model.predict(image), ood=True)
    text = _text(pdf_report(pred, image, image, "en"))
    assert " ".join(t("refer.cannot_judge", "en").split()) in text
    assert "%" not in text and t("report.no_number", "en") in text
    assert t("diag.differential", "en") not in text
