"""Held-out test metrics of an artifact: per member and ensemble, fused and image-only."""
from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import pandas as pd
import torch
from PIL import Image
from tqdm import tqdm

from . import vocab
from . import artifact
from .data import find_images, find_metadata_csv, metadata_of, read_metadata
from .metrics import classification_report, expected_calibration_error, reliability
from .network import encode_metadata
from .predictor import FUSED, IMAGE_ONLY, SkinClassifier, on_torch_thread

log = logging.getLogger(__name__)
VIEWS = {"fused": FUSED, "image_only": IMAGE_ONLY}


def test_frame(data_dir: Path, run_dir: Path) -> pd.DataFrame:
    df = read_metadata(find_metadata_csv(data_dir))
    split = pd.read_csv(Path(run_dir) / "split.csv", dtype=str).set_index("image_id")["split"]
    return df[df["image_id"].map(split) == "test"].reset_index(drop=True)


def collect_logits(model: SkinClassifier, df: pd.DataFrame, paths: dict[str, Path],
                   batch_size: int = 64) -> torch.Tensor:
    """Member logits (members, views, N, classes) through the same path as the app."""
    def batch_logits(rows: pd.DataFrame) -> torch.Tensor:
        images = torch.cat([model.prepare(paths[i])[1] for i in rows["image_id"]])
        metas = torch.stack([encode_metadata(metadata_of(r)) for r in rows.itertuples()])
        return model.member_logits(images, metas)

    out = []
    for start in tqdm(range(0, len(df), batch_size), desc="test logits", unit="batch", mininterval=5):
        # Batches are assembled on the model's torch thread too: see predictor.on_torch_thread.
        out.append(on_torch_thread(batch_logits, df.iloc[start:start + batch_size]))
    return torch.cat(out, dim=2)


def _report(logits: torch.Tensor, temperature: float, labels: np.ndarray) -> dict:
    raw = torch.softmax(logits, -1).numpy()
    probs = torch.softmax(logits / temperature, -1).numpy()
    report = classification_report(probs, labels)
    report["ece_15_before_calibration"] = expected_calibration_error(raw, labels)
    return report


def cam_mask_share(model: SkinClassifier, df: pd.DataFrame, paths: dict[str, Path], mask_dir: Path,
                   limit: int | None = None) -> dict | None:
    """Share of Grad-CAM energy (predicted class) inside the lesion mask, beside the mask's area share."""
    rows = [r for r in df.itertuples() if (mask_dir / f"{r.image_id}_segmentation.png").exists()]
    if not rows:
        return None
    rows = rows[:limit] if limit else rows
    energy, area = [], []
    for r in tqdm(rows, desc="Grad-CAM vs masks", unit="img", mininterval=5):
        meta = metadata_of(r)
        _, explanation = model.diagnose(paths[r.image_id], meta.age, meta.sex, meta.site)
        mask = np.asarray(Image.open(mask_dir / f"{r.image_id}_segmentation.png").convert("L")) > 127
        heat = explanation.heatmap
        if heat.shape != mask.shape:
            raise ValueError(f"mask and image sizes differ for {r.image_id}")
        energy.append(float((heat * mask).sum() / max(float(heat.sum()), 1e-12)))
        area.append(float(mask.mean()))
    energy, area = np.array(energy), np.array(area)
    return {"n": len(rows), "target": "predicted class",
            "mean_energy_in_mask": float(energy.mean()), "mean_mask_area_share": float(area.mean()),
            "share_of_images_energy_above_area": float((energy > area).mean())}


def evaluate(data_dir: Path, run_dir: Path, model_dir: Path | None = None, write_card: bool = False,
             cam_limit: int | None = None) -> dict:
    model = SkinClassifier.load(model_dir)
    df = test_frame(data_dir, run_dir)
    paths = find_images(data_dir)
    labels = df["label"].to_numpy()
    logits = collect_logits(model, df, paths)
    results: dict = {"n_test_images": len(df), "n_test_lesions": int(df["lesion_id"].nunique())}
    for i, spec in enumerate(model.card["members"]):
        name = f"member_{i}_{spec['architecture']}"
        results[name] = {view: _report(logits[i, v], model.member_temperatures[i], labels)
                         for view, v in VIEWS.items()}
    ensemble = logits.mean(0)
    results["ensemble"] = {view: _report(ensemble[v], model.temperature, labels) for view, v in VIEWS.items()}
    fused = torch.softmax(ensemble[FUSED] / model.temperature, -1).numpy()
    results["ensemble"]["fused"]["reliability"] = reliability(fused, labels)
    # The constant baseline: always nv, with the training split's class frequencies.
    split = pd.read_csv(Path(run_dir) / "split.csv", dtype=str)
    train_freq = split.loc[split["split"] == "train", "dx"].value_counts().reindex(vocab.CLASSES, fill_value=0)
    majority = np.tile(train_freq.to_numpy() / train_freq.sum(), (len(labels), 1))
    majority_report = classification_report(majority, labels)
    majority_report["macro_auc"] = 0.5  # constant scores: no ranking, by definition
    results["majority_baseline"] = majority_report
    mask_dir = Path(data_dir) / "masks"
    results["gradcam_mask_share"] = cam_mask_share(model, df, paths, mask_dir, cam_limit) if mask_dir.is_dir() else None
    if write_card:
        target = Path(model_dir) if model_dir else None
        if target is None:
            from .config import PACKAGE_DIR
            target = PACKAGE_DIR / "model"
        card = artifact.read_card(target)
        card["test_metrics"] = results
        artifact.write_card(target, card)
        log.info("test metrics written into %s", target)
    return results


def summary_table(results: dict) -> str:
    lines = [f"{'model':<28}{'view':<12}{'acc':>7}{'bal.acc':>9}{'AUC':>7}{'ECE raw':>9}{'ECE cal':>9}"]
    for name, views in results.items():
        if not name.startswith(("member_", "ensemble")):
            continue
        for view, r in views.items():
            lines.append(f"{name:<28}{view:<12}{r['accuracy']:>7.3f}{r['balanced_accuracy']:>9.3f}"
                         f"{r['macro_auc']:>7.3f}{r['ece_15_before_calibration']:>9.3f}{r['ece_15']:>9.3f}")
    m = results["majority_baseline"]
    lines.append(f"{'majority class (nv)':<28}{'-':<12}{m['accuracy']:>7.3f}{m['balanced_accuracy']:>9.3f}{0.5:>7.3f}")
    cam = results.get("gradcam_mask_share")
    if cam:
        lines.append(f"Grad-CAM energy inside lesion masks: {cam['mean_energy_in_mask']:.3f} "
                     f"(masks cover {cam['mean_mask_area_share']:.3f} of the image; n={cam['n']})")
    return "\n".join(lines)
