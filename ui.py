"""Streamlit glue shared by the pages: the cached model, the language, translated text.

No model logic here: that lives in ``skin_model``.
"""

from __future__ import annotations

import csv
from pathlib import Path

import streamlit as st

from skin_model import shared_model, vocab
from skin_model.i18n import LANGUAGES, SOURCE_CLINIC, class_label, number, percent, t
from skin_model.inference.card import ModelArtifactError, read_card_of_shipped
from skin_model.inference.predictor import SkinClassifier

ASSETS = Path(__file__).resolve().parent / "assets"
SAMPLES = ASSETS / "samples"
GROUP_COLOURS = {"malignant": "red", "premalignant": "orange", "benign": "green"}


@st.cache_resource(show_spinner=False)
def _load_model() -> SkinClassifier:
    return shared_model()  # the API's own (see streamlit_app.py)


def model() -> SkinClassifier:
    """The one model of this process; a clear error (naming the file) stops the page if it cannot load.
    The first visitor after a start waits for it to load, and is told so."""
    try:
        with st.spinner(tr("app.loading")):
            loaded = _load_model()
    except ModelArtifactError as err:
        st.error(t("app.model_error", lang(), error=err))
        st.stop()
    _freeze_long_lived_objects()
    return loaded


@st.cache_resource(show_spinner=False)  # once per process, once the model is loaded
def _freeze_long_lived_objects() -> None:
    """Streamlit runs a full garbage collection after every script run (``runner.postScriptGC``,
    kept: it bounds memory), and that walks every object of torch and Streamlit itself: 0.17 s
    of each answer and each slider step on 2 cores. What is alive once the model is loaded
    lives as long as the process, so it leaves the collector's sight (``gc.freeze``); reference
    counting still frees it, and each collection then walks only what later runs create."""
    import gc

    gc.collect()
    gc.freeze()


@st.cache_resource(show_spinner=False)
def model_version() -> str:
    """The shipped model's version, from its card (no weights loaded)."""
    try:
        return read_card_of_shipped()["model_version"]
    except ModelArtifactError:
        return "?"


DATASETS = ("HAM10000", "ISIC 2017", "BCN20000")  # as the card's data section names them


def training_datasets(card: dict) -> list[str]:
    """The datasets a model was trained on, from its card."""
    return [name for name in DATASETS if name in card["data"]["dataset"]]


@st.cache_resource(show_spinner=False)
def shipped_datasets() -> list[str]:
    """The shipped model's training datasets, from its card (no weights loaded)."""
    try:
        return training_datasets(read_card_of_shipped())
    except ModelArtifactError:
        return []


def clinics(sources: list[str]) -> list[str]:
    """The clinics the card's sources come from, each once (an unknown source by its name)."""
    named = (tr(f"clinic.{SOURCE_CLINIC[s]}") if s in SOURCE_CLINIC else s for s in sources)
    return list(dict.fromkeys(named))


def joined(items: list[str]) -> str:
    """ "a, b and c" in the page's language."""
    if len(items) < 2:
        return "".join(items)
    return f"{', '.join(items[:-1])} {tr('word.and')} {items[-1]}"


def lang() -> str:
    """The page language: the sidebar's choice, else the URL's ``?lang=`` (a reload or a shared
    link keeps it), else English."""
    chosen = st.session_state.get("lang") or st.query_params.get("lang")
    return chosen if chosen in LANGUAGES else "en"


def choice(widget, label: str, options, name: str, default, format_func, **kwargs):
    """A selectbox or radio whose value outlives a language switch and a visit to another page.

    Streamlit remembers a keyed widget's choice by its shown text, which a language switch
    changes (the widget then shows a stale or empty choice), and forgets it when the page is
    left. So there is one widget per language (key ``name.<lang>``), and the value itself is
    kept in the session under ``name``.
    """
    options, key = list(options), f"{name}.{lang()}"
    kept = st.session_state.get(name, default)
    index = options.index(kept if kept in options else default)
    return widget(
        label, options, index=index, format_func=format_func, key=key, on_change=_remember, args=(name, key), **kwargs
    )


def _remember(name: str, key: str) -> None:
    """A widget's on_change: keep its value under ``name``. Runs before the rerun, so that code
    above the widget sees the new value."""
    st.session_state[name] = st.session_state[key]


def forget(name: str) -> None:
    """Reset a ``choice`` or ``kept`` value to its default, with its widgets."""
    for key in [k for k in st.session_state if k == name or str(k).startswith(f"{name}.")]:
        del st.session_state[key]


def kept(widget, name: str, default, **kwargs):
    """A number input or slider whose value is kept in the session under ``name`` across
    pages (its widget key is ``name.widget``)."""
    key = f"{name}.widget"
    return widget(value=st.session_state.get(name, default), key=key, on_change=_remember, args=(name, key), **kwargs)


def jpeg(image, quality: int = 90) -> bytes:
    """A photograph for display: JPEG encodes several times faster, and smaller, than PNG."""
    import io

    buffer = io.BytesIO()
    image.save(buffer, format="JPEG", quality=quality)
    return buffer.getvalue()


def tr(key: str, **values) -> str:
    return t(key, lang(), **values)


def pct(p: float) -> str:
    return percent(p, lang())


def num(x: float, digits: int = 2) -> str:
    return number(x, lang(), digits)


@st.cache_data(show_spinner=False)
def colour_legend(width: int = 256, height: int = 12):
    """The heatmap's colour scale, low (blue) to high (red), as a thin strip."""
    import numpy as np

    from skin_model.inference.gradcam import jet

    strip = np.tile(jet(np.linspace(0.0, 1.0, width))[None], (height, 1, 1))
    return (strip * 255).round().astype(np.uint8)


def label(code: str) -> str:
    return class_label(code, lang())


def badge(code: str) -> str:
    group = vocab.BY_CODE[code].group
    return f":{GROUP_COLOURS[group]}-badge[{tr('group.' + group)}]"


@st.cache_data(show_spinner=False)
def samples() -> list[dict]:
    """The bundled sample images with their recorded metadata (image_id, dx, age, sex, localization, path).

    Read with ``csv``, not pandas: the Diagnose page then never loads pandas and
    pyarrow (about 80 MB of the app's memory).
    """
    with open(SAMPLES / "metadata.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    return [{**row, "age": int(float(row["age"])), "path": str(SAMPLES / f"{row['image_id']}.jpg")} for row in rows]


def probability_table(
    probabilities: dict[str, float],
    image_only: dict[str, float],
    highlight: str,
    before_base_rates: dict[str, float] | None = None,
) -> str:
    """All seven diagnoses, most probable first: the code with its full name (no hover needed on a
    phone), a bar and the probability with the patient information, the image-only probability,
    and where asked the view before base rates; one small HTML table (a chart library cost the
    browser ~40 ms of each answer on 2 cores). Only our own codes, names and numbers go in it."""
    extra = f"<th>{tr('diag.balanced')}</th>" if before_base_rates else ""
    head = (
        f"<tr><th>{tr('diag.class')}</th><th></th><th>{tr('diag.fused')}</th><th>{tr('diag.image_only')}</th>"
        f"{extra}</tr>"
    )
    rows = []
    for code in sorted(probabilities, key=probabilities.get, reverse=True):
        p, colour = probabilities[code], "#d62728" if code == highlight else "#9aa5b1"
        bar = f'<div aria-hidden="true" style="background:{colour};width:{100 * p:.1f}%;height:0.8em;border-radius:2px"></div>'
        balanced = f'<td style="text-align:right">{pct(before_base_rates[code])}</td>' if before_base_rates else ""
        rows.append(
            f'<tr><td><b>{code}</b><br><span style="font-size:0.8em">{vocab.BY_CODE[code].name(lang())}</span></td>'
            f'<td style="width:30%">{bar}</td>'
            f'<td style="text-align:right">{pct(p)}</td><td style="text-align:right">{pct(image_only[code])}</td>'
            f"{balanced}</tr>"
        )
    return f'<table style="width:100%"><thead>{head}</thead><tbody>{"".join(rows)}</tbody></table>'


def similar_cases(cases) -> str:
    """The similar confirmed cases as a wrapping grid of cards (two a row on a phone), each a tap
    away from its details (an HTML ``details`` element: no rerun, no hover): the thumbnail, a
    short caption (diagnosis, similarity, age and site where recorded), then the full name, how
    it was confirmed and the patient. Only our own codes, names, numbers and JPEGs go in it."""
    import base64

    cards = []
    for case in cases:
        patient = case.patient
        age = tr("diag.similar_age", age=f"{patient.age:.0f}") if patient.age is not None else ""
        site = tr(f"site.{patient.site}") if patient.site != vocab.UNKNOWN else ""
        short = " · ".join(
            x
            for x in (
                f"<b>{vocab.BY_CODE[case.dx].name(lang())}</b>",
                tr("diag.similarity", s=num(case.similarity)),
                age,
                site,
            )
            if x
        )
        details = tr(
            "diag.similar_details",
            name=vocab.BY_CODE[case.dx].name(lang()),
            how=tr(f"dx_type.{case.dx_type}"),
            similarity=num(case.similarity),
        )
        if patient.sex != vocab.UNKNOWN:
            details += " " + tr("diag.similar_sex", sex=tr(f"sex.{patient.sex}"))
        picture = base64.b64encode(case.thumbnail).decode()
        cards.append(
            '<details style="flex:0 0 150px;font-size:0.8em;line-height:1.3">'
            '<summary style="list-style:none;cursor:pointer">'
            f'<img src="data:image/jpeg;base64,{picture}" alt="{case.dx}" '
            'style="width:150px;height:112px;object-fit:cover;display:block;border-radius:4px;margin-bottom:2px">'
            f"{short}</summary><div>"
            # Opened, the case shows its image larger (the thumbnail's full resolution) above its details.
            f'<img src="data:image/jpeg;base64,{picture}" alt="{case.dx}" '
            'style="width:100%;max-width:240px;display:block;border-radius:4px;margin:4px 0">'
            f"{details}</div></details>"
        )
    return f'<div style="display:flex;flex-wrap:wrap;gap:10px;margin-bottom:1rem">{"".join(cards)}</div>'
