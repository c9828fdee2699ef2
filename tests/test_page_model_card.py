"""The Model card page (and the datasets it names, cited on the About page), driven headless by streamlit.testing."""

import json

import pytest

from skin_model.i18n import number, t

from .app_helpers import _app, _texts
from .test_holdout import held_out_row


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
    # Held-out rows of its own, as the harness writes them, each source with its own melanoma AUC.
    aucs = {"bcn20000": 0.612, "isic2017": 0.734, "rosendahl": 0.801, "vidir_modern": 0.689}
    results = tmp_path / "results.jsonl"
    results.write_text("".join(json.dumps(held_out_row(s, auc)) + "\n" for s, auc in aucs.items()))
    card = read_card(PACKAGE_DIR / "model")
    card["held_out_sources"] = held_out_evidence(results, "chosen")
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
        assert sources[:-1] == sorted(aucs)  # every row written, one a source
        first = next(iter(card["held_out_sources"]["by_source"].values()))
        images = list(table[t("card.images", lang)])
        assert images[0] == str(first["images"]) and images[-1] == ""  # the mean row counts nothing
        mean = card["held_out_sources"]["mean"]["melanoma_auc"]
        assert table[t("card.mel_auc", lang)].iloc[-1] == pytest.approx(mean)
        assert list(table[t("card.mel_auc", lang)].iloc[:-1]) == pytest.approx([aucs[s] for s in sorted(aucs)])
        assert mean == pytest.approx(sum(aucs.values()) / len(aucs))  # the mean of the rows written
        assert number(mean, lang, 3) in _texts(at)  # the page's language's way ("0,709" in French)
    finally:
        st.cache_resource.clear()  # the next test reads the shipped card again
        st.cache_data.clear()
