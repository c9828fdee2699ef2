"""Splitting: each data folder's declared role; known lesions keep their place, unseen ones are placed by a hash."""

from __future__ import annotations

import pandas as pd
import pytest

from skin_model.training.splits import FOLDS, SourceRoles, SplitLeakError, assign, calibration_part, lesion_hash

from .conftest import REPO, SHARED_DATA


def _images(lesions: list[str], dataset: str = "vidir_modern", folder: str = "ham10000") -> pd.DataFrame:
    rows = [
        {"lesion_id": x, "image_id": f"{x}_{i}", "dx": "nv", "dataset": dataset, "folder": folder}
        for x in lesions
        for i in (0, 1)
    ]
    return pd.DataFrame(rows)


def _lesion_file(path, lesions: list[str]) -> dict[str, SourceRoles]:
    rows = [
        {"lesion_id": x, "split": "test" if i % 7 == 0 else "train", "fold": -1 if i % 7 == 0 else i % FOLDS}
        for i, x in enumerate(lesions)
    ]
    pd.DataFrame(rows).to_csv(path, index=False)
    return SourceRoles.from_toml("ham10000", {"split": "lesion_file", "lesion_file": str(path)})


ISIC = SourceRoles.from_toml(
    "isic2017", {"split": "own_parts", "parts": {"isic2017_train": "train", "isic2017_val": "check"}}
)
BCN = SourceRoles.from_toml("bcn20000", {"split": "lesion_hash"})


def test_a_superset_of_the_lesion_file_keeps_every_known_lesion_and_places_the_rest_by_hash(tmp_path):
    """The public HAM10000 has lesions the working copy lacks: retraining on it must work."""
    known = [f"HAM_{i:07d}" for i in range(60)]
    roles = {"ham10000": _lesion_file(tmp_path / "lesions.csv", known)}
    table = pd.read_csv(tmp_path / "lesions.csv").set_index("lesion_id")
    unseen = [f"HAM_{i:07d}" for i in range(1000, 1300)]
    placed = assign(_images(known + unseen), roles)
    by_lesion = placed.groupby("lesion_id")[["split", "fold"]].first()
    pd.testing.assert_frame_equal(by_lesion.loc[known], table.loc[known, ["split", "fold"]])
    for lesion in unseen:  # deterministic: from the lesion_id alone
        h = lesion_hash(lesion)
        expected = ("test", -1) if h % 7 == 0 else ("train", (h // 7) % FOLDS)
        assert tuple(by_lesion.loc[lesion]) == expected
    share = (by_lesion.loc[unseen, "split"] == "test").mean()
    assert 0.05 < share < 0.25  # about 1 in 7
    assert placed.groupby("lesion_id")["fold"].nunique().max() == 1  # both images of a lesion together
    again = assign(_images(list(reversed(known + unseen))), roles).groupby("lesion_id")[["split", "fold"]].first()
    pd.testing.assert_frame_equal(again.sort_index(), by_lesion.sort_index())


def test_each_folder_takes_its_declared_role(tmp_path):
    roles = {"ham10000": _lesion_file(tmp_path / "lesions.csv", ["HAM_1"]), "isic2017": ISIC, "bcn20000": BCN}
    isic = pd.concat(
        [_images(["ISIC_1"], "isic2017_train", "isic2017"), _images(["ISIC_2"], "isic2017_val", "isic2017")]
    )
    bcn = _images([f"BCN_{i:07d}" for i in range(200)], "bcn20000", "bcn20000")
    placed = assign(pd.concat([_images(["HAM_1"]), isic, bcn]), roles).groupby("lesion_id")[["split", "fold"]].first()
    assert tuple(placed.loc["ISIC_1"]) == ("train", -1)  # in every fold's training
    assert tuple(placed.loc["ISIC_2"]) == ("check", -1)  # scored, never trained on
    bcn_places = placed.loc[[f"BCN_{i:07d}" for i in range(200)]]
    assert set(bcn_places["split"]) == {"train"}  # no test part: the HAM10000 test split is the one test
    assert sorted(bcn_places["fold"].unique()) == list(range(FOLDS))
    assert tuple(placed.loc["BCN_0000007"]) == ("train", lesion_hash("BCN_0000007") % FOLDS)


def test_only_the_lesion_file_source_s_out_of_fold_rows_calibrate(tmp_path):
    ham = [f"HAM_{i:07d}" for i in range(40)]
    roles = {"ham10000": _lesion_file(tmp_path / "lesions.csv", ham), "isic2017": ISIC, "bcn20000": BCN}
    isic = _images(["ISIC_1"], "isic2017_train", "isic2017")
    bcn = _images([f"BCN_{i:07d}" for i in range(30)], "bcn20000", "bcn20000")
    placed = assign(pd.concat([_images(ham), isic, bcn]), roles)
    calibrating = calibration_part(placed, roles)
    expected = placed["folder"].eq("ham10000") & placed["split"].eq("train") & placed["fold"].ge(0)
    assert calibrating.tolist() == expected.tolist() and calibrating.any()
    assert not calibrating[placed["folder"].eq("bcn20000").to_numpy()].any()  # in folds, not calibrating
    # Without a lesion-file source, every out-of-fold row calibrates.
    hashed = {"bcn20000": BCN}
    assert calibration_part(assign(bcn, hashed), hashed).all()


def test_a_folder_without_a_declared_role_is_refused_not_guessed(tmp_path):
    """Before roles were declared, any folder without a _train/_val suffix was taken for HAM10000
    and could land in its test split."""
    roles = {"ham10000": _lesion_file(tmp_path / "lesions.csv", ["HAM_1"])}
    with pytest.raises(ValueError, match="bcn20000"):
        assign(_images(["BCN_1"], "bcn20000", "bcn20000"), roles)
    with pytest.raises(ValueError, match="isic2017_test"):
        assign(_images(["ISIC_3"], "isic2017_test", "isic2017"), {"isic2017": ISIC})


@pytest.mark.parametrize(
    "table, message",
    [
        ({"split": "by_name"}, "split must be one of"),
        ({"split": "lesion_hash", "lesion_file": "x.csv"}, "lesion_file is given"),
        ({"split": "lesion_file"}, "lesion_file is given"),
        ({"split": "own_parts"}, "parts are given"),
        ({"split": "own_parts", "parts": {"a_train": "validation"}}, "role is one of"),
        ({"split": "lesion_hash", "test_share": 0.1}, "unknown setting"),
    ],
)
def test_a_role_that_cannot_be_read_is_refused_with_what_is_wrong(table, message):
    with pytest.raises(ValueError, match=message):
        SourceRoles.from_toml("somewhere", table)


def test_a_lesion_listed_twice_is_refused(tmp_path):
    from skin_model.training.splits import read_lesion_split

    path = tmp_path / "lesions.csv"
    path.write_text("lesion_id,split,fold\nHAM_1,train,0\nHAM_1,test,-1\n")
    with pytest.raises(SplitLeakError):
        read_lesion_split(path)


def test_a_lesion_in_two_folders_is_refused(tmp_path):
    roles = {"ham10000": _lesion_file(tmp_path / "lesions.csv", ["HAM_1"]), "bcn20000": BCN}
    # HAM_1 is a test lesion in the lesion file; the same lesion_id in another folder sits in a fold.
    both = pd.concat([_images(["HAM_1"]), _images(["HAM_1"], "bcn20000", "bcn20000").assign(image_id=["b0", "b1"])])
    with pytest.raises(SplitLeakError):
        assign(both, roles)


@pytest.mark.skipif(not SHARED_DATA.is_dir(), reason="the shared data is not on this machine")
def test_the_shipped_recipes_roles_on_the_real_data_leak_no_lesion():
    from skin_model.training.data import read_sources
    from skin_model.training.recipe import Recipe

    recipe = Recipe.load(REPO / "recipes" / "4.0.0.toml")
    folders = [SHARED_DATA.parent / f for f in recipe.sources if (SHARED_DATA.parent / f).is_dir()]
    placed = assign(read_sources(folders), recipe.sources)
    assert placed.groupby("lesion_id")[["split", "fold"]].nunique().max().max() == 1
    ham = placed[placed["folder"] == "ham10000"]
    assert 0.1 < ham["split"].eq("test").mean() < 0.2
    assert set(placed[placed["folder"] != "ham10000"]["split"]) <= {"train", "check"}  # one test: HAM10000's


def test_the_not_dermoscopy_images_split_in_two_halves_per_category_by_file_name(tmp_path):
    from skin_model.training.splits import outlier_parts

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
