import pytest

from skin_model import vocab
from skin_model.i18n import LANGUAGES, TEXT, error_text, t
from skin_model.inputs import InvalidAgeError, NotAnImageError


@pytest.mark.parametrize("key", sorted(TEXT))
def test_every_string_exists_in_every_language(key):
    for lang in LANGUAGES:
        assert TEXT[key].get(lang), f"{key} lacks {lang}"


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

    from skin_model.inputs import InvalidInputError, load_image

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
    from skin_model.inputs import parse_metadata_leniently

    meta, unread = parse_metadata_leniently("abc", "robot", "dos")
    assert meta.age is None and meta.sex == vocab.UNKNOWN and meta.site == "back"
    assert [e.field for e in unread] == ["age", "sex"]
    assert unread_field_text(unread[1], "fr") == "sexe « robot » non compris, pris comme inconnu"
    assert "robot" in unread_field_text(unread[1], "en") and "sex" in unread_field_text(unread[1], "en")


@pytest.mark.parametrize("lang", sorted(LANGUAGES))
def test_every_shown_metadata_name_is_understood_when_read_back(lang):
    """What the app shows in either language is accepted in a metadata file."""
    from skin_model.inputs import parse_sex, parse_site

    for sex in vocab.SEXES:
        assert parse_sex(t(f"sex.{sex}", lang).upper()) == sex
    for site in vocab.SITES:
        assert parse_site(t(f"site.{site}", lang)) == site
