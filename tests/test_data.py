import pandas as pd
import pytest

from skin_model import vocab
from skin_model.training.data import find_images, find_metadata_csv, read_metadata


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
