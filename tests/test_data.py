import pandas as pd
import pytest

from skin_model import vocab
from skin_model.data import find_images, find_metadata_csv, read_metadata, split_by_lesion

from .conftest import SHARED_DATA


def _check_split(df, split):
    assert set(split) == {"train", "val", "test"}
    per_lesion = df.assign(split=split).groupby("lesion_id")["split"].nunique()
    assert per_lesion.max() == 1, "a lesion spans two splits"
    for name in ("train", "val", "test"):
        assert set(df.loc[split == name, "dx"]) == set(vocab.CLASSES), f"{name} lacks a class"


def test_synthetic_split_is_grouped_stratified_and_seeded(synthetic_data):
    df = read_metadata(find_metadata_csv(synthetic_data))
    split = split_by_lesion(df, seed=3)
    _check_split(df, split)
    assert split.equals(split_by_lesion(df, seed=3))
    assert not split.equals(split_by_lesion(df, seed=4))


def test_reads_original_layout(synthetic_data):
    df = read_metadata(find_metadata_csv(synthetic_data))
    paths = find_images(synthetic_data)
    assert set(df["image_id"]) <= set(paths)
    assert {p.parent.name for p in paths.values()} == {"HAM10000_images_part_1", "HAM10000_images_part_2"}
    assert df["age"].isna().sum() == len(vocab.CLASSES)  # the empty ages became unknown


def test_missing_column_is_refused(tmp_path):
    path = tmp_path / "meta.csv"
    pd.DataFrame({"image_id": ["a"], "dx": ["nv"]}).to_csv(path, index=False)
    with pytest.raises(ValueError, match="lesion_id"):
        read_metadata(path)


@pytest.mark.skipif(not SHARED_DATA.is_dir(), reason="the shared HAM10000 copy is not on this machine")
def test_real_split_has_no_leak():
    df = read_metadata(find_metadata_csv(SHARED_DATA))
    split = split_by_lesion(df, seed=0)
    _check_split(df, split)
    shares = split.value_counts(normalize=True)
    assert 0.1 < shares["test"] < 0.2 and 0.1 < shares["val"] < 0.2
