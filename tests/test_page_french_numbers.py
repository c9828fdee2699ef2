"""In French, every number a page writes is written the French way (a decimal comma, never a decimal
point): each page driven headless by streamlit.testing, in French, with an answer on screen."""

import re

import pytest
from streamlit.testing.v1 import AppTest

from .app_helpers import SAMPLE, _batch, _upload
from .conftest import REPO

# The kinds of element whose text is prose a reader sees.
PROSE = ("title", "header", "subheader", "markdown", "caption", "text", "info", "success", "warning", "error")
DECIMAL_POINT = re.compile(r"(?<![\w/.:-])\d+\.\d+(?!\w|\.\w)")  # "0.5." at a sentence end too
DECIMAL_COMMA = re.compile(r"\d,\d")
# What legitimately holds a dot between digits and is no number, removed before looking: HTML tags
# with their attributes (a bar's style="width:42.1%"; the text between tags stays), addresses,
# DOIs and arXiv ids, licence versions (CC BY-NC-SA 4.0), version numbers (3.0.1) and file names.
NOT_NUMBERS = [
    re.compile(r"<[^>]+>"),
    re.compile(r"\b(?:https?|data):\S+"),
    re.compile(r"\b(?:doi|arXiv):\S+", re.IGNORECASE),
    re.compile(r"\bCC[ -]BY(?:-[A-Z]{2})*\s+\d+\.\d+"),
    re.compile(r"\bv?\d+\.\d+\.\d+(?:\.\d+)*\b"),
    re.compile(r"[\w-]+(?:\.[\w-]+)*\.(?:jpe?g|png|webp|bmp|tiff?|csv|json|toml|pdf|zip|safetensors)\b", re.I),
]


def _shown(at) -> list[str]:
    """Every piece of text the page shows: the prose elements above, metric labels and values,
    expander labels, and the tables' headers and text cells (numbers the page wrote itself)."""
    texts = [str(e.value) for kind in PROSE for e in at.get(kind)]
    texts += [part for m in at.metric for part in (m.label, str(m.value))]
    texts += [e.label for e in at.expander]
    for table in at.dataframe:
        frame = _displayed(table)
        texts += [str(c) for c in frame.columns] + [str(i) for i in frame.index]
        texts += [cell for column in frame.columns for cell in frame[column] if isinstance(cell, str)]
    return texts


def _displayed(table):
    """A table as the reader sees it: a pandas Styler's display values where it has them (its
    numbers stay numbers underneath), else its cells."""
    from streamlit.dataframe_util import convert_arrow_bytes_to_pandas_df

    shown = table.proto.arrow_data.styler.display_values
    return convert_arrow_bytes_to_pandas_df(shown) if shown else table.value


def decimal_points(text: str) -> list[str]:
    """The numbers written with a decimal point in ``text``, each with a little context."""
    for pattern in NOT_NUMBERS:
        text = pattern.sub(" ", text)
    return [text[max(0, m.start() - 40) : m.end() + 20] for m in DECIMAL_POINT.finditer(text)]


def test_decimal_points_finds_numbers_and_leaves_identifiers_alone():
    assert decimal_points("AUC 0.912, 59.0 %") == ["AUC 0.912, 59.0 %", "AUC 0.912, 59.0 %"]
    assert decimal_points("(n=1.5)") and decimal_points("**0.91**") and decimal_points("0.5.")
    assert not decimal_points("AUC 0,912 · 59,0 % · 7 284 · n = 50 · 160×120 px")
    assert not decimal_points('<div style="width:42.1%;height:0.8em"></div><td>42,1 %</td>')
    assert not decimal_points("Sci. Data 5, 180161 (2018). doi:10.1038/sdata.2018.161 · arXiv:1710.05006")
    assert not decimal_points("HAM10000 : CC BY-NC-SA 4.0 · BCN20000 : CC BY-NC 4.0 · CC-0")
    assert not decimal_points("Appli 3.1.0 · modèle 3.0.1 · ISIC_0027622.jpg · ham10000_lesions.csv")
    assert not decimal_points("`/api/v1/openapi.json` · https://example.org/a1.2b")


def _analyse(at):
    _upload(at, "lesion.jpg", SAMPLE.read_bytes())
    # The view before base rates too: one more column of numbers.
    at.toggle(key="balanced.widget").set_value(True).run()


def _batch_one(at):
    _batch(at, [("a.jpg", SAMPLE.read_bytes(), "image/jpeg")])


PAGES = {
    "app_pages/analyse.py": _analyse,
    "app_pages/batch.py": _batch_one,
    "app_pages/model_card.py": None,
    "app_pages/about.py": None,
}


def _in_french(page: str, monkeypatch) -> AppTest:
    """``page`` in French from the first run. The language is also fixed where AppTest itself
    calls a selector's ``format_func`` (to send the widget's state at each rerun): outside a
    script run, with no session to read, ``ui.lang`` would answer English there and AppTest
    would look for an English option among the French ones."""
    import ui

    monkeypatch.setattr(ui, "lang", lambda: "fr")
    at = AppTest.from_file(str(REPO / "navigation.py"), default_timeout=60)
    at.session_state["lang"] = "fr"
    at.run()
    at.switch_page(page)
    at.run()
    assert not at.exception, at.exception
    return at


@pytest.mark.parametrize("page", list(PAGES))
def test_every_number_of_a_french_page_is_written_the_french_way(page, monkeypatch):
    at = _in_french(page, monkeypatch)
    if PAGES[page]:
        PAGES[page](at)
    assert not at.exception, at.exception
    texts = _shown(at)
    found = [snippet for text in texts for snippet in decimal_points(text)]
    assert found == [], f"{page}: numbers with a decimal point in French: {found}"
    if page != "app_pages/about.py":  # not looked at in vain: the page does write decimals, with commas
        assert any(DECIMAL_COMMA.search(re.sub(r"<[^>]+>", " ", text)) for text in texts), page
