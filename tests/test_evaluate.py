"""The evaluate stage on the synthetic dataset: same path as the app, metrics, card, mask check."""
import json
import shutil

import numpy as np
import pandas as pd
import pytest
from PIL import Image

from skin_model import vocab
from skin_model.config import CARD_FILE
from skin_model.data import find_images, metadata_of
from skin_model import evaluate as stage  # imported as a module: its test_frame() is no pytest test


@pytest.fixture(scope="module")
def data_with_masks(synthetic_data, tmp_path_factory):
    """The synthetic dataset plus HAM-style masks covering each image's left half."""
    root = tmp_path_factory.mktemp("ham_masks") / "ham"
    shutil.copytree(synthetic_data, root)
    (root / "masks").mkdir()
    for image_id, path in find_images(root).items():
        with Image.open(path) as img:
            mask = np.zeros((img.height, img.width), np.uint8)
        mask[:, : mask.shape[1] // 2] = 255
        Image.fromarray(mask).save(root / "masks" / f"{image_id}_segmentation.png")
    return root


def test_test_logits_match_the_apps_predictions(trained_run, synthetic_data, tiny_model):
    run, _ = trained_run
    df = stage.test_frame(synthetic_data, run.root)
    assert set(pd.read_csv(run.split_csv).set_index("image_id").loc[df["image_id"], "split"]) == {"test"}
    paths = find_images(synthetic_data)
    logits = stage.collect_logits(tiny_model, df, paths, batch_size=4)   # several batches
    assert logits.shape == (2, 2, len(df), len(vocab.CLASSES))
    for i in (0, len(df) - 1):
        row = next(df.iloc[[i]].itertuples())
        meta = metadata_of(row)
        pred = tiny_model.predict(paths[row.image_id], meta.age, meta.sex, meta.site)
        probs = tiny_model.calibrate(logits[:, :, i:i + 1])[0, 0].numpy()
        np.testing.assert_allclose(probs, [pred.probabilities[c] for c in vocab.CLASSES], atol=1e-5)


def test_evaluate_reports_members_ensemble_baseline_and_writes_the_card(trained_run, data_with_masks, tmp_path):
    run, artifact_dir = trained_run
    model_dir = tmp_path / "model"
    shutil.copytree(artifact_dir, model_dir)
    results = stage.evaluate(data_with_masks, run.root, model_dir, write_card=True)

    assert results["n_test_images"] == len(stage.test_frame(data_with_masks, run.root))
    members = sorted(name for name in results if name.startswith("member_"))
    assert sorted(name.split("_", 2)[2] for name in members) == ["mobilenet_v2", "resnet18"]
    for name in (*members, "ensemble"):
        for view in ("fused", "image_only"):
            report = results[name][view]
            for key in ("accuracy", "balanced_accuracy", "macro_auc", "ece_15", "ece_15_before_calibration"):
                assert 0.0 <= report[key] <= 1.0, (name, view, key)
    assert results["majority_baseline"]["balanced_accuracy"] == pytest.approx(1 / 7)
    cam = results["gradcam_mask_share"]
    assert cam["n"] == results["n_test_images"]
    assert cam["mean_mask_area_share"] == pytest.approx(0.5)
    assert 0.0 < cam["mean_energy_in_mask"] < 1.0
    assert json.loads((model_dir / CARD_FILE).read_text())["test_metrics"] == json.loads(json.dumps(results))
    assert "Grad-CAM energy inside lesion masks" in stage.summary_table(results)
