"""The vocabulary is the contract between the network's outputs, the artifact and the app."""

from skin_model import vocab


def test_class_order_is_ham10000():
    """The network's outputs follow this order; a reordering would silently swap diagnoses."""
    assert vocab.CLASSES == ("akiec", "bcc", "bkl", "df", "mel", "nv", "vasc")


def test_every_class_has_two_distinct_names_and_a_group():
    for d in vocab.DIAGNOSES:
        assert d.name("en") and d.name("fr") and d.name("en") != d.name("fr")
        assert d.group in vocab.GROUPS
    assert len({d.name_en for d in vocab.DIAGNOSES}) == len(vocab.CLASSES)


def test_the_referral_counts_melanoma_bcc_and_akiec_as_malignant_or_premalignant():
    from skin_model.inference.referral import MALIGNANT_OR_PREMALIGNANT

    assert set(MALIGNANT_OR_PREMALIGNANT) == {"mel", "bcc", "akiec"}


def test_an_artifact_of_another_vocabulary_is_refused(tmp_path):
    import json

    import pytest

    from skin_model.inference.card import FORMAT, ModelArtifactError, read_card

    other = vocab.vocabulary() | {"classes": ["mel", "nv"]}
    (tmp_path / "model_card.json").write_text(json.dumps({"format": FORMAT, "vocabulary": other}))
    with pytest.raises(ModelArtifactError, match="vocabulary"):
        read_card(tmp_path)
