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
