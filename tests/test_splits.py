"""The lesion split: known lesions keep their place, unseen ones are placed by a hash."""

from __future__ import annotations

import pandas as pd
import pytest

from skin_model.splits import FOLDS, SplitLeakError, assign, lesion_hash, make_lesion_split


def _images(lesions: list[str], dataset: str = "vidir_modern") -> pd.DataFrame:
    rows = [{"lesion_id": x, "image_id": f"{x}_{i}", "dx": "nv", "dataset": dataset} for x in lesions for i in (0, 1)]
    return pd.DataFrame(rows)


def test_a_superset_of_the_split_keeps_every_known_lesion_and_places_the_rest_by_hash():
    """The public HAM10000 has lesions the working copy lacks: retraining on it must work."""
    known = [f"HAM_{i:07d}" for i in range(60)]
    table = make_lesion_split(_images(known).assign(split=["test" if i % 14 < 2 else "train" for i in range(120)]))
    unseen = [f"HAM_{i:07d}" for i in range(1000, 1300)]
    placed = assign(_images(known + unseen), table)
    by_lesion = placed.groupby("lesion_id")[["split", "fold"]].first()
    pd.testing.assert_frame_equal(
        by_lesion.loc[known].reset_index(), table.set_index("lesion_id").loc[known, ["split", "fold"]].reset_index()
    )
    for lesion in unseen:  # deterministic: from the lesion_id alone
        h = lesion_hash(lesion)
        expected = ("test", -1) if h % 7 == 0 else ("train", (h // 7) % FOLDS)
        assert tuple(by_lesion.loc[lesion]) == expected
    share = (by_lesion.loc[unseen, "split"] == "test").mean()
    assert 0.05 < share < 0.25  # about 1 in 7
    assert placed.groupby("lesion_id")["fold"].nunique().max() == 1  # both images of a lesion together
    again = assign(_images(list(reversed(known + unseen))), table).groupby("lesion_id")[["split", "fold"]].first()
    pd.testing.assert_frame_equal(again.sort_index(), by_lesion.sort_index())


def test_another_sources_parts_have_their_roles():
    table = make_lesion_split(_images([f"HAM_{i}" for i in range(10)]).assign(split="train"))
    isic = pd.concat([_images(["ISIC_1"], "isic2017_train"), _images(["ISIC_2"], "isic2017_val")])
    placed = assign(isic, table).groupby("lesion_id")[["split", "fold"]].first()
    assert tuple(placed.loc["ISIC_1"]) == ("train", -1)  # in every fold's training
    assert tuple(placed.loc["ISIC_2"]) == ("check", -1)  # scored, never trained on


def test_a_lesion_listed_twice_is_refused(tmp_path):
    from skin_model.splits import read_lesion_split

    path = tmp_path / "lesions.csv"
    path.write_text("lesion_id,split,fold\nHAM_1,train,0\nHAM_1,test,-1\n")
    with pytest.raises(SplitLeakError):
        read_lesion_split(path)


def test_the_not_dermoscopy_images_split_in_two_halves_per_category_by_file_name(tmp_path):
    from skin_model.splits import outlier_parts

    for category, n in (("documents", 6), ("natural", 7)):
        (tmp_path / category).mkdir()
        for j in range(n):
            (tmp_path / category / f"{category}_{j:03d}.jpg").write_bytes(b"x")
    fitting, kept_aside = outlier_parts(tmp_path)
    assert not set(fitting) & set(kept_aside) and len(fitting) + len(kept_aside) == 13
    assert [p.parent.name for p in fitting].count("documents") == 3
    assert [p.parent.name for p in fitting].count("natural") == 3  # the odd one is kept aside
    # Each category on its own: a new file in one moves no file of another.
    (tmp_path / "natural" / "natural_999.jpg").write_bytes(b"x")
    again, _ = outlier_parts(tmp_path)
    assert [p for p in fitting if p.parent.name == "documents"] == [p for p in again if p.parent.name == "documents"]
