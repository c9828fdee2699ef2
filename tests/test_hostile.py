"""Hostile inputs through the Python API: each gets its clear error, and the model keeps answering."""

import io

import numpy as np
import pytest

from skin_model import vocab
from skin_model.serving.batch import BatchItem, predict_items, read_metadata_table

from .conftest import synthetic_lesion
from .hostile import HOSTILE_CSVS, HOSTILE_IMAGES, HOSTILE_METADATA

GOOD = synthetic_lesion("bcc", seed=99)


def _still_answers(model):
    assert model.predict(GOOD).label in vocab.CLASSES


@pytest.mark.parametrize("name", sorted(HOSTILE_IMAGES))
def test_hostile_images(tiny_model, name):
    make, error = HOSTILE_IMAGES[name]
    if error is None:
        pred, explanation = tiny_model.diagnose(make())
        assert sum(pred.probabilities.values()) == pytest.approx(1.0, abs=1e-5)
        assert np.isfinite(explanation.heatmap).all()
    else:
        with pytest.raises(error) as info:
            tiny_model.predict(make())
        assert len(str(info.value)) > 15
    _still_answers(tiny_model)


@pytest.mark.parametrize("meta,error", HOSTILE_METADATA, ids=[repr(m) for m, _ in HOSTILE_METADATA])
def test_hostile_metadata(tiny_model, meta, error):
    age, sex, site = meta
    if error is None:
        assert tiny_model.predict(GOOD, age=age, sex=sex, site=site).label in vocab.CLASSES
    else:
        with pytest.raises(error):
            tiny_model.predict(GOOD, age=age, sex=sex, site=site)
    _still_answers(tiny_model)


@pytest.mark.parametrize("name", sorted(HOSTILE_CSVS))
def test_hostile_metadata_csv(tiny_model, name):
    data, error = HOSTILE_CSVS[name]
    if error is not None:
        with pytest.raises(error):
            read_metadata_table(io.BytesIO(data))
        return
    table = read_metadata_table(io.BytesIO(data))
    # answered anyway: the tiny model may not judge the synthetic image, and the row must be analysed
    result = predict_items(tiny_model, [BatchItem("img0", GOOD, table.get("img0", {}))], answer_anyway=True)
    assert result.loc[0, "prediction"] in vocab.CLASSES


def test_one_bad_row_does_not_sink_the_batch(tiny_model):
    items = [
        BatchItem("good", GOOD, {}),
        BatchItem("bad_age", GOOD, {"age": "300"}),
        BatchItem("bad_file", b"junk", {}),
    ]
    result = predict_items(tiny_model, items, answer_anyway=True)  # analysed, whatever the tiny model judges
    assert result["prediction"].tolist()[0] in vocab.CLASSES
    # The batch rule: an unreadable field becomes unknown and the row says so; the image is analysed.
    assert result.loc[1, "prediction"] in vocab.CLASSES and result.loc[1, "error"] == ""
    assert "age" in result.loc[1, "warning"] and "300" in result.loc[1, "warning"]
    assert result.loc[0, "warning"] == "" and result.loc[2, "error"]
