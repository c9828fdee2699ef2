"""The About page, driven headless by streamlit.testing."""

import pytest

from skin_model import vocab
from skin_model.i18n import t

from .app_helpers import _app, _texts


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
