"""A one-page PDF of one answer, to print or attach to a referral letter (fpdf2, in memory).

It holds what the Analyse page shows first: the image and its heatmap, the state and its plain
sentence, the number and the line (none for an image that cannot be judged, unless its answer was
asked for anyway, and then marked), the differential, the patient information given, the model's
version, the date, what the model does not cover and the disclaimer, in the page's language.
"""

from __future__ import annotations

import io
from datetime import datetime

from PIL import Image

from skin_model.i18n import class_label, percent, t
from skin_model.inference.referral import CANNOT_JUDGE, answer_state

# The PDF's core fonts cover Latin-1: the few other characters our texts use, mapped.
_LATIN1 = str.maketrans({"\u202f": "\u00a0", "—": "-", "–": "-", "→": "->", "’": "'", "…": "...", "“": '"', "”": '"'})
UNLIKELY = 0.05  # diagnoses below this are left out of the differential's lines (the table has all seven)


def _text(value: str) -> str:
    return value.translate(_LATIN1).replace("**", "").encode("latin-1", "replace").decode("latin-1")


def _jpeg(image: Image.Image) -> io.BytesIO:
    buffer = io.BytesIO()
    image.convert("RGB").save(buffer, "JPEG", quality=85)
    buffer.seek(0)
    return buffer


def pdf_report(
    pred, image: Image.Image, overlay: Image.Image | None, lang: str = "en", when: datetime | None = None
) -> bytes:
    """The report of ``pred`` (a ``Prediction``) for ``image``, with ``overlay`` (the heatmap over the
    image) where one is shown; one A4 page."""
    from fpdf import FPDF

    when = when or datetime.now()
    state = answer_state(pred.verdict, pred.borderline)
    pdf = FPDF(format="A4")
    pdf.set_auto_page_break(False)
    pdf.add_page()
    pdf.set_margins(15, 15, 15)
    width = pdf.w - 30

    def line(text: str, size: float = 10, style: str = "", height: float = 5.0) -> None:
        pdf.set_font("Helvetica", style, size)
        pdf.set_x(15)
        pdf.multi_cell(width, height, _text(text))

    line(t("report.title", lang), 15, "B", 7)
    line(t("report.made", lang, date=when.strftime("%Y-%m-%d %H:%M"), version=pred.model_version), 9)
    pdf.ln(2)
    top = pdf.get_y()
    side = (width - 6) / 2
    pdf.image(_jpeg(image), x=15, y=top, w=side, h=side * 0.75, keep_aspect_ratio=True)
    if overlay is not None and pred.judged:
        pdf.image(_jpeg(overlay), x=15 + side + 6, y=top, w=side, h=side * 0.75, keep_aspect_ratio=True)
    pdf.set_y(top + side * 0.75 + 4)
    line(t(f"refer.{state}", lang), 14, "B", 7)
    line(t(f"refer.plain.{state}", lang))
    if pred.judged:
        if pred.answered_anyway:
            line(t("diag.anyway", lang), 10, "B")
        line(
            f"{t('refer.number', lang)}{t('punct.colon', lang)}{percent(pred.referral_probability, lang)} "
            f"({t('refer.line', lang, threshold=percent(pred.refer_threshold, lang))})",
            11,
            "B",
        )
        pdf.ln(2)
        line(t("diag.differential", lang), 11, "B")
        ranked = sorted(pred.probabilities, key=pred.probabilities.get, reverse=True)
        for code in ranked:
            p = pred.probabilities[code]
            if p >= UNLIKELY or code == ranked[0]:
                line(f"{class_label(code, lang)}{t('punct.colon', lang)}{percent(p, lang)}")
    pdf.ln(2)
    line(t("diag.patient", lang), 11, "B")
    meta = pred.metadata
    age = t("report.unknown", lang) if meta.age is None else f"{meta.age:.0f}"
    line(
        " · ".join(
            f"{name}{t('punct.colon', lang)}{value}"
            for name, value in (
                (t("meta.sex", lang), t("sex." + meta.sex, lang)),
                (t("field.age", lang).capitalize(), age),
                (t("meta.site", lang), t("site." + meta.site, lang)),
            )
        )
    )
    pdf.ln(2)
    if state == CANNOT_JUDGE and not pred.judged:
        line(t("report.no_number", lang), 9)
    line(t("diag.coverage", lang), 9)
    line(t("app.disclaimer", lang), 9, "B")
    return bytes(pdf.output())
