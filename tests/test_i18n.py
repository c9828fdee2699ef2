import ast
import re
import string

import pytest

from skin_model import vocab
from skin_model.i18n import LANGUAGES, TEXT, error_text, t
from skin_model.inference.inputs import InvalidAgeError, NotAnImageError

from .conftest import REPO

CODE = [
    *sorted((REPO / "skin_model").glob("*.py")),
    *sorted((REPO / "skin_model" / "serving").glob("*.py")),
    *sorted((REPO / "app_pages").glob("*.py")),
    REPO / "ui.py",
    REPO / "navigation.py",
    REPO / "streamlit_app.py",
]
KEY_PREFIX = re.compile(r"^[a-z_]+(\.[a-z_]+)*\.$")


def _placeholders(text: str) -> set[str]:
    return {field for _, field, _, _ in string.Formatter().parse(text) if field is not None}


def _targets(node) -> list:
    return node.targets if isinstance(node, ast.Assign) else [node.target]


def _code_keys() -> tuple[set[str], set[str], set[str]]:
    """(string literals, key prefixes built at run time, keys asked for by t()/tr() calls) in the
    code, the TEXT table itself left out."""
    literals, prefixes, asked = set(), set(), set()
    for path in CODE:
        tree = ast.parse(path.read_text())
        table = {
            id(n)
            for node in ast.walk(tree)
            if isinstance(node, ast.AnnAssign | ast.Assign)
            and any(isinstance(x, ast.Name) and x.id == "TEXT" for x in _targets(node))
            for n in ast.walk(node.value)
        }
        for node in ast.walk(tree):
            if id(node) in table:
                continue
            if isinstance(node, ast.Constant) and isinstance(node.value, str):
                literals.add(node.value)
            elif isinstance(node, ast.JoinedStr) and node.values and isinstance(node.values[0], ast.Constant):
                prefixes.add(node.values[0].value)  # f"sex.{value}"
            elif (
                isinstance(node, ast.BinOp) and isinstance(node.left, ast.Constant) and isinstance(node.left.value, str)
            ):
                prefixes.add(node.left.value)  # "group." + group
            if (
                isinstance(node, ast.Call)
                and getattr(node.func, "id", getattr(node.func, "attr", None)) in ("t", "tr")
                and node.args
                and isinstance(node.args[0], ast.Constant)
            ):
                asked.add(node.args[0].value)
    return literals, {p for p in prefixes if KEY_PREFIX.match(p)}, asked


def test_every_string_exists_in_every_language_with_the_same_placeholders():
    for key, texts in TEXT.items():
        assert set(texts) == set(LANGUAGES), key
        assert all(texts[lang].strip() for lang in LANGUAGES), key
        assert _placeholders(texts["en"]) == _placeholders(texts["fr"]), key


def test_no_key_is_missing_where_the_code_asks_and_none_is_unused():
    literals, prefixes, asked = _code_keys()
    assert asked - set(TEXT) == set(), "asked for but missing"
    unused = {k for k in TEXT if k not in literals and not any(k.startswith(p) for p in prefixes)}
    assert unused == set(), "in the table but never used"


def test_every_vocabulary_value_has_a_label():
    for sex in vocab.SEXES:
        assert f"sex.{sex}" in TEXT
    for site in vocab.SITES:
        assert f"site.{site}" in TEXT
    for code in vocab.CLASSES:
        assert f"about.class.{code}" in TEXT


def test_formatting_and_error_messages():
    assert t("batch.run", "fr", n=3) == "Analyser 3 image(s)"
    assert error_text(NotAnImageError("x"), "fr").startswith("Ce fichier n'est pas une image")
    assert "0 and 100" in error_text(InvalidAgeError("bad"), "en")


@pytest.mark.parametrize("lang", sorted(LANGUAGES))
def test_error_texts_are_whole_sentences_in_the_language_without_english_details(lang):
    """Each refusal is worded once, in the chosen language, with its own numbers."""
    from PIL import Image

    from skin_model.inference.inputs import InvalidInputError, load_image

    with pytest.raises(InvalidInputError) as small:
        load_image(Image.new("RGB", (20, 10)))
    text = error_text(small.value, lang)
    assert "20×10" in text and text.count("20×10") == 1
    if lang == "fr":
        assert "too small" not in text and "trop petite" in text
    with pytest.raises(InvalidInputError) as not_image:
        load_image(b"plain text, no image")
    text = error_text(not_image.value, lang)
    assert text == t("error.NotAnImageError", lang)  # no "Details: <the same sentence>" after it


def test_a_metadata_warning_names_the_field_and_the_value_in_the_language():
    from skin_model.i18n import unread_field_text
    from skin_model.inference.inputs import parse_metadata_leniently

    meta, unread = parse_metadata_leniently("abc", "robot", "dos")
    assert meta.age is None and meta.sex == vocab.UNKNOWN and meta.site == "back"
    assert [e.field for e in unread] == ["age", "sex"]
    assert unread_field_text(unread[1], "fr") == "sexe « robot » non compris, pris comme inconnu"
    assert "robot" in unread_field_text(unread[1], "en") and "sex" in unread_field_text(unread[1], "en")


@pytest.mark.parametrize("lang", sorted(LANGUAGES))
def test_every_shown_metadata_name_is_understood_when_read_back(lang):
    """What the app shows in either language is accepted in a metadata file."""
    from skin_model.inference.inputs import parse_sex, parse_site

    for sex in vocab.SEXES:
        assert parse_sex(t(f"sex.{sex}", lang).upper()) == sex
    for site in vocab.SITES:
        assert parse_site(t(f"site.{site}", lang)) == site


def test_every_source_names_a_clinic_with_text_in_both_languages():
    from skin_model.i18n import SOURCE_CLINIC, TEXT

    for source, clinic in SOURCE_CLINIC.items():
        assert set(TEXT[f"clinic.{clinic}"]) == {"en", "fr"}, source
