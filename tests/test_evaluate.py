"""The evaluate stage on the synthetic dataset: same path as the app, metrics, card, mask check."""

import json
import shutil

import numpy as np
import pandas as pd
import pytest
import torch
from PIL import Image

from skin_model import evaluate as stage
from skin_model import vocab
from skin_model.config import CARD_FILE
from skin_model.data import find_images, metadata_of
from skin_model.splits import outlier_parts


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
    df = stage.split_frame(synthetic_data, run.root, "test")
    assert set(pd.read_csv(run.split_csv).set_index("image_id").loc[df["image_id"], "split"]) == {"test"}
    paths = find_images(synthetic_data)
    logits = stage.collect_logits(tiny_model, df, paths, batch_size=4)  # several batches
    assert logits.shape == (len(tiny_model.members), 2, len(df), len(vocab.CLASSES))
    for i in (0, len(df) - 1):
        row = next(df.iloc[[i]].itertuples())
        meta = metadata_of(row)
        pred = tiny_model.predict(paths[row.image_id], meta.age, meta.sex, meta.site)
        probs = tiny_model.calibrate(logits[:, :, i : i + 1])[0, 0].numpy()
        np.testing.assert_allclose(probs, [pred.probabilities[c] for c in vocab.CLASSES], atol=1e-5)


def test_evaluate_reports_members_ensemble_baseline_and_writes_the_card(
    trained_run, data_with_masks, tiny_model, tmp_path
):
    run, artifact_dir = trained_run
    model_dir = tmp_path / "model"
    shutil.copytree(artifact_dir, model_dir)
    results = stage.evaluate(data_with_masks, run.root, model_dir, write_card=True)

    for split in ("val", "test"):
        part = results["splits"][split]
        assert part["n_images"] == len(stage.split_frame(data_with_masks, run.root, split))
        models = part["models"]
        assert sorted(models) == sorted(
            [f"member_{i}_{m['name']}" for i, m in enumerate(tiny_model.card["members"])] + ["ensemble"]
        )
        for by_tta in models.values():
            assert set(by_tta) == {"tta", "no_tta"}
            for by_prior in by_tta.values():
                assert set(by_prior) == {"equal", "training"}
                for report in (r for by_view in by_prior.values() for r in by_view.values()):
                    for key in ("accuracy", "balanced_accuracy", "macro_auc", "ece_15"):
                        assert 0.0 <= report[key] <= 1.0, key
        calibration = part["malignant_probability_calibration"]["training"]
        assert 0.0 <= calibration["ece"] <= 1.0 and sum(calibration["bins"]["count"]) == part["n_images"]
        assert part["similar_cases_majority"]["k"] == 6
    # The headline under the training prior is the plain calibrated ensemble: recompute it by hand.
    df = stage.split_frame(data_with_masks, run.root, "test")
    logits = stage.collect_logits(tiny_model, df, find_images(data_with_masks))
    probs = torch.softmax(logits.mean(0)[0].double() / tiny_model.temperature, -1).numpy()
    expected = (probs.argmax(1) == df["label"].to_numpy()).mean()
    assert stage.headline(results, "test", prior="training")["accuracy"] == pytest.approx(expected)
    ood = results["out_of_domain"]
    if stage.NOT_DERMOSCOPY_DIR.is_dir():  # real images that are not dermoscopy, by category
        categories = {p.name for p in stage.NOT_DERMOSCOPY_DIR.iterdir() if p.is_dir()}
        assert set(ood["categories"]) == categories and 0 <= ood["non_skin_flagged"] <= 1
        kept_aside = outlier_parts(stage.NOT_DERMOSCOPY_DIR)[1]  # the half never trained on
        assert sum(c["n"] for c in ood["categories"].values()) == len(kept_aside)
    else:
        assert ood["categories"] == {} and ood["non_skin_flagged"] is None
    assert results["majority_baseline"]["balanced_accuracy"] == pytest.approx(1 / 7)
    cam = results["gradcam_mask_share"]
    assert cam["n"] == results["splits"]["test"]["n_images"]
    assert cam["mean_mask_area_share"] == pytest.approx(0.5)
    assert 0.0 < cam["mean_energy_in_mask"] < 1.0
    # Written into the card of the model evaluated (here: a copy), not into the package's.
    assert json.loads((model_dir / CARD_FILE).read_text())["test_metrics"] == json.loads(json.dumps(results))
    table = stage.summary_table(results)
    assert "Grad-CAM energy inside lesion masks" in table and "out of domain flagged" in table
