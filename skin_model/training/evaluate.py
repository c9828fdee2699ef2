"""An exported artifact on what it was never trained on: HAM10000's test split (and each of its
sources), the sources' check parts, and the kept-aside half of the images that are not
dermoscopy. Scored once, through the predictor's own calibration; nothing here feeds a choice."""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import pandas as pd
import torch

from skin_model import vocab
from skin_model.config import DEFAULT_DATA_DIR
from skin_model.inference import card as model_card
from skin_model.inference import referral
from skin_model.inference.ood import image_statistics
from skin_model.inference.predictor import FUSED, SkinClassifier
from skin_model.inference.similar import member_embedding
from skin_model.training.metrics import classification_report, source_report, training_prior_report
from skin_model.training.splits import calibration_part, out_of_fold, outlier_parts

log = logging.getLogger(__name__)


NOT_DERMOSCOPY_DIR = DEFAULT_DATA_DIR.parent / "not_dermoscopy"
ORIGINALS_DIR = DEFAULT_DATA_DIR.parent / "ham10000_originals"


def uploads_report(
    model: SkinClassifier, originals: Path = ORIGINALS_DIR, copies: Path = DEFAULT_DATA_DIR
) -> dict | None:
    """Full-size uploads against the copies the model learnt from: each original (600x450, as a
    user uploads it) and its 200x150 working copy through ``predict``, with the same metadata.
    Not a test of accuracy (these lesions are in the training folds): how far the answer moves
    with the way an image was brought to size."""
    table = Path(originals) / "metadata.csv"
    if not table.is_file():
        return None
    from skin_model.training.data import find_images

    copy_paths = find_images(copies)
    rows = [r for r in pd.read_csv(table).itertuples() if r.image_id in copy_paths]
    pairs = []
    for r in rows:
        meta = {"age": None if pd.isna(r.age) else r.age, "sex": r.sex, "site": r.localization}
        pairs.append(
            (
                model.predict(Path(originals) / "images" / f"{r.image_id}.jpg", **meta),
                model.predict(copy_paths[r.image_id], **meta),
            )
        )
    delta = np.array([abs(a.malignant_probability - b.malignant_probability) for a, b in pairs])
    return {
        "images": len(pairs),
        "verdicts_agree": float(np.mean([a.verdict == b.verdict for a, b in pairs])),
        "mean_abs_delta_p_malignant": float(delta.mean()),
        "max_abs_delta_p_malignant": float(delta.max()),
        "suggested_diagnoses_agree": float(np.mean([a.label == b.label for a, b in pairs])),
        "ood_flagged_original": float(np.mean([a.ood for a, _ in pairs])),
        "ood_flagged_copy": float(np.mean([b.ood for _, b in pairs])),
    }


def source_metrics(probs: np.ndarray, labels: np.ndarray, ood: np.ndarray, ranking: np.ndarray | None = None) -> dict:
    """``metrics.source_report`` of one group of images, with the share flagged out of domain."""
    return source_report(probs, labels, ranking) | {"ood_flagged": float(ood.mean())}


def not_dermoscopy_report(
    model: SkinClassifier, folder: Path = NOT_DERMOSCOPY_DIR, part: str = "kept_aside"
) -> dict | None:
    """Share flagged out of domain per category of real images that are not dermoscopy: their
    kept-aside half (never trained on; ``splits.outlier_parts``), or the half that outlier
    exposure may fit on (``part="fitting"``)."""
    if not Path(folder).is_dir():
        return None
    fitting, kept_aside = outlier_parts(folder)
    paths = kept_aside if part == "kept_aside" else fitting
    report = {}
    for category in sorted({p.parent.name for p in paths}):
        flags = [model.predict(p).ood for p in paths if p.parent.name == category]
        report[category] = {"n": len(flags), "flagged": float(np.mean(flags))}
    n = sum(r["n"] for r in report.values())
    report["all"] = {"n": n, "flagged": sum(r["flagged"] * r["n"] for r in report.values()) / max(n, 1)}
    return report


def unseen_source_report(model: SkinClassifier, folder: Path, batch_size: int = 16) -> dict:
    """A labelled source the model never saw (``<folder>/metadata.csv`` and ``images/``), one image
    per lesion (its first by ``image_id``), as the app answers: the share it cannot judge, and on
    the images it judges the referral rule's sensitivity and specificity, the melanoma AUC of the
    calibrated probabilities and the answer's balanced accuracy over the classes present."""
    from sklearn.metrics import roc_auc_score

    from skin_model.training.data import find_images

    table = pd.read_csv(Path(folder) / "metadata.csv", dtype={"image_id": str})
    one = table.sort_values("image_id").groupby("lesion_id").head(1).reset_index(drop=True)
    paths = find_images(Path(folder))
    preds = []
    for start in range(0, len(one), batch_size):
        rows = one.iloc[start : start + batch_size]
        prepared = [
            model.prepare(paths[r.image_id], None if pd.isna(r.age) else r.age, r.sex, r.localization)
            for r in rows.itertuples()
        ]
        preds += model.predict_prepared(prepared)
    labels = one["dx"].map(vocab.CLASSES.index).to_numpy()
    judged = np.array([p.verdict != referral.CANNOT_JUDGE for p in preds])
    malignant = referral.is_malignant(labels)
    refer = np.array([p.verdict == referral.SUSPICIOUS for p in preds])
    probs = np.array([[p.probabilities[c] for c in vocab.CLASSES] for p in preds])
    labels_j, probs_j = labels[judged], probs[judged]
    report = source_report(probs_j, labels_j, probs_j)
    return {
        "lesions": len(one),
        "cannot_judge": float(1 - judged.mean()),
        "judged": int(judged.sum()),
        "sensitivity": float(refer[judged & malignant].mean()),
        "specificity": float(1 - refer[judged & ~malignant].mean()),
        "melanoma_sensitivity": float(refer[judged & (labels == referral.MEL)].mean()),
        "melanoma_auc": float(roc_auc_score(labels_j == referral.MEL, probs_j[:, referral.MEL])),
        "balanced_accuracy_present": report["balanced_accuracy_present"],
        "rule": "one image per lesion; referral figures on the images the model judged, at its own threshold",
    }


def evaluate_sources(
    data,
    model_dir: Path,
    roles: dict,
    write_card: bool = False,
    outliers: Path = NOT_DERMOSCOPY_DIR,
    originals: Path = ORIGINALS_DIR,
    copies: Path = DEFAULT_DATA_DIR,
    unseen: tuple[Path, ...] = (),
) -> dict:
    """A cross-validated artifact on what it was never trained on: HAM10000's test split (each of
    its sources too), ISIC 2017's check part, and real images that are not dermoscopy; and out of
    fold again (``roles``: the recipe's sources, which say which images calibrated the model).
    Scored once; nothing here feeds a choice."""
    model = SkinClassifier.load(model_dir)
    groups = {"test": data.df["split"].eq("test"), "check": data.df["split"].eq("check")}
    results: dict = {"splits": {}, "by_source": {}}
    for name, mask in groups.items():
        df = data.df[mask.to_numpy()].reset_index(drop=True)
        if not len(df):
            continue
        scored = score_cached(model, data, mask.to_numpy())
        training, equal, ood = scored["training"], scored["equal"], scored["ood"]
        labels = df["label"].to_numpy()
        p_malignant = referral.malignant_scores(training)
        answer = training  # the answer: the most probable class of the probabilities shown
        results["splits"][name] = {
            # What the app answers: the most probable class (default prior) and the calibrated
            # probabilities, whose ranking the AUCs measure; the equal prior's is the balanced decision.
            "answer": source_metrics(answer, labels, ood, ranking=training),
            "equal_prior": source_metrics(equal, labels, ood),
            "training_prior_answer": source_metrics(training, labels, ood),
            "training_prior": training_prior_report(training, labels),
            "equal_prior_report": classification_report(equal, labels),
            "referral": referral.operating_point(p_malignant, labels, model.refer_threshold),
        }
        for source in sorted(set(df["source"])):
            inside = (df["source"] == source).to_numpy()
            # The answer's recalls; the AUCs of the ranking the referral and the ROC
            # use: the calibrated probabilities, no prior dividing them.
            per_source = source_metrics(answer[inside], labels[inside], ood[inside], ranking=training[inside])
            per_source["melanoma_auc_equal_prior"] = source_report(equal[inside], labels[inside])["melanoma_auc"]
            results["by_source"][f"{source} ({name})"] = per_source
    results["out_of_fold"] = out_of_fold_answers(model, data, roles)
    results["not_dermoscopy"] = not_dermoscopy_report(model, outliers)  # kept aside: the check
    results["not_dermoscopy_fitting_part"] = not_dermoscopy_report(model, outliers, part="fitting")
    results["full_size_uploads"] = uploads_report(model, originals, copies)
    results["unseen_sources"] = {Path(folder).name: unseen_source_report(model, Path(folder)) for folder in unseen}
    if write_card:
        with model_card.model_folder(model_dir) as folder:
            card = model_card.read_card(folder)
            card["evaluation"] = results
            if "test" in results["splits"]:
                card["referral"]["test"] = results["splits"]["test"]["referral"]
            model_card.write_card(folder, card)
    return results


def out_of_fold_answers(model: SkinClassifier, data, roles: dict) -> dict:
    """The fold part of every source, each image through the one fold model that never saw it
    (as export chose on): the top class under each prior and the calibrated ranking's AUCs on
    the calibration population (``splits.calibration_part``: what export chose on), and each
    source's out-of-fold images apart."""
    folds = [m["fold"] for m in model.card["members"]]
    df = data.df
    oof = out_of_fold(df)
    parts = []
    for k in sorted(set(folds)):
        rows = oof & df["fold"].eq(k).to_numpy()
        members = [i for i, f in enumerate(folds) if f == k]
        logits, _, _ = _outputs_of_cached(model, data, rows, batch_size=16, members=members)
        parts.append((np.flatnonzero(rows), model.calibrate(logits, "training")[FUSED]))
    order = np.concatenate([rows for rows, _ in parts])
    training = torch.cat([p for _, p in parts]).numpy()
    labels, sources = data.labels.numpy()[order], df["source"].to_numpy()[order]
    calibrating = calibration_part(df, roles)[order]
    report: dict = {"images": int(calibrating.sum())}
    for prior in vocab.PRIOR_NAMES:
        decided = model.under_prior(torch.from_numpy(training[calibrating]), prior).numpy()
        report[prior] = source_report(decided, labels[calibrating], ranking=training[calibrating])
    answer = training
    report["answer"] = report[vocab.DEFAULT_PRIOR]
    report["by_source"] = {
        s: source_report(answer[sources == s], labels[sources == s], ranking=training[sources == s])
        for s in sorted(set(sources))
    }
    return report


def score_cached(model: SkinClassifier, data, mask: np.ndarray) -> dict[str, np.ndarray]:
    """What the predictor answers for each cached image in ``mask``, as arrays: the fused
    calibrated probabilities under each prior (N, classes) and the out-of-domain flag (N,).
    Through the predictor's own ``calibrate`` (temperature and bias), so that the evaluation
    scores exactly what the app shows (``tests/test_evaluate.py`` checks it image by image)."""
    logits, features, stats = _outputs_of_cached(model, data, mask)
    ood = model.ood.flags(model.ood.score_features(model.cases, features, stats)).numpy()
    return {
        "training": model.calibrate(logits, "training")[FUSED].numpy(),
        "equal": model.calibrate(logits, "equal")[FUSED].numpy(),
        "ood": ood,
    }


def _outputs_of_cached(model: SkinClassifier, data, mask: np.ndarray, batch_size: int = 4, members=None):
    """Member logits, embedding input and image statistics of cached images (already at the
    artifact's source size and colour balance, as ``prepare`` makes them)."""
    rows = np.flatnonzero(mask)
    logits, features, stats = [], [], []
    for start in range(0, len(rows), batch_size):
        idx = rows[start : start + batch_size]
        pixels = data.images[idx]
        lg, feats = model.member_outputs(pixels, data.meta[idx], members=members)
        logits.append(lg)
        features.append(member_embedding(feats))
        stats.append(image_statistics(pixels))
    return torch.cat(logits, dim=2), torch.cat(features), torch.cat(stats)
