from skin_model import vocab


def test_class_order_is_ham10000():
    assert vocab.CLASSES == ("akiec", "bcc", "bkl", "df", "mel", "nv", "vasc")


def test_every_class_has_two_distinct_names_and_a_group():
    for d in vocab.DIAGNOSES:
        assert d.name("en") and d.name("fr") and d.name("en") != d.name("fr")
        assert d.group in vocab.GROUPS
    assert len({d.name_en for d in vocab.DIAGNOSES}) == len(vocab.CLASSES)


def test_malignancy_groups():
    groups = {d.code: d.group for d in vocab.DIAGNOSES}
    assert {c for c, g in groups.items() if g == "malignant"} == {"mel", "bcc"}
    assert {c for c, g in groups.items() if g == "premalignant"} == {"akiec"}


def test_metadata_vocabulary():
    assert vocab.SEXES == ("female", "male", "unknown")
    assert len(vocab.SITES) == 15 and vocab.UNKNOWN in vocab.SITES
    assert len(set(vocab.SITES)) == 15
    assert vocab.vocabulary()["age"] == {"min": 0, "max": 100}
