"""Classification and calibration metrics (numpy in, plain floats and lists out)."""

from __future__ import annotations

import numpy as np

from skin_model import vocab


def confusion_matrix(labels: np.ndarray, preds: np.ndarray, k: int = len(vocab.CLASSES)) -> np.ndarray:
    cm = np.zeros((k, k), dtype=np.int64)
    np.add.at(cm, (labels, preds), 1)
    return cm


def expected_calibration_error(probs: np.ndarray, labels: np.ndarray, bins: int = 15) -> float:
    """Top-label ECE with equal-width confidence bins."""
    conf = probs.max(axis=1)
    correct = probs.argmax(axis=1) == labels
    edges = np.linspace(0.0, 1.0, bins + 1)
    ece = 0.0
    for lo, hi in zip(edges[:-1], edges[1:]):
        inside = (conf > lo) & (conf <= hi)
        if inside.any():
            ece += inside.mean() * abs(correct[inside].mean() - conf[inside].mean())
    return float(ece)


def reliability(probs: np.ndarray, labels: np.ndarray, bins: int = 15) -> dict:
    """Per-bin mean confidence, accuracy and count, for a reliability diagram."""
    conf = probs.max(axis=1)
    correct = probs.argmax(axis=1) == labels
    idx = np.clip(np.ceil(conf * bins).astype(int) - 1, 0, bins - 1)
    out = {"confidence": [], "accuracy": [], "count": []}
    for b in range(bins):
        inside = idx == b
        out["count"].append(int(inside.sum()))
        out["confidence"].append(float(conf[inside].mean()) if inside.any() else None)
        out["accuracy"].append(float(correct[inside].mean()) if inside.any() else None)
    return out


def macro_auc(probs: np.ndarray, labels: np.ndarray) -> float | None:
    from sklearn.metrics import roc_auc_score

    present = np.unique(labels)
    if len(present) < 2:
        return None
    aucs = [roc_auc_score(labels == c, probs[:, c]) for c in present]
    return float(np.mean(aucs))


def classification_report(probs: np.ndarray, labels: np.ndarray) -> dict:
    """Accuracy, balanced accuracy, macro AUC, per-class recall/precision, confusion, ECE."""
    preds = probs.argmax(axis=1)
    cm = confusion_matrix(labels, preds)
    support = cm.sum(axis=1)
    predicted = cm.sum(axis=0)
    recall = np.divide(np.diag(cm), support, out=np.full(len(cm), np.nan), where=support > 0)
    precision = np.divide(np.diag(cm), predicted, out=np.full(len(cm), np.nan), where=predicted > 0)

    def per_class(values):
        return {c: (None if np.isnan(v) else float(v)) for c, v in zip(vocab.CLASSES, values)}

    return {
        "n": int(len(labels)),
        "accuracy": float((preds == labels).mean()),
        "balanced_accuracy": float(np.nanmean(recall)),
        "macro_auc": macro_auc(probs, labels),
        "ece_15": expected_calibration_error(probs, labels),
        "recall": per_class(recall),
        "precision": per_class(precision),
        "confusion_matrix": cm.tolist(),
    }


def binary_calibration(probs: np.ndarray, positive: np.ndarray, bins: int = 10) -> dict:
    """Calibration of one probability (e.g. 'malignant or pre-malignant') against a yes/no truth:
    ECE over equal-width bins, Brier score, and per-bin mean probability, observed rate and count."""
    positive = np.asarray(positive, dtype=float)
    idx = np.clip(np.ceil(probs * bins).astype(int) - 1, 0, bins - 1)
    table = {"probability": [], "observed": [], "count": []}
    ece = 0.0
    for b in range(bins):
        inside = idx == b
        table["count"].append(int(inside.sum()))
        table["probability"].append(float(probs[inside].mean()) if inside.any() else None)
        table["observed"].append(float(positive[inside].mean()) if inside.any() else None)
        if inside.any():
            ece += inside.mean() * abs(positive[inside].mean() - probs[inside].mean())
    return {
        "ece": float(ece),
        "brier": float(np.mean((probs - positive) ** 2)),
        "mean_probability": float(probs.mean()),
        "observed_rate": float(positive.mean()),
        "bins": table,
    }


def source_report(probs: np.ndarray, labels: np.ndarray, ranking: np.ndarray | None = None) -> dict:
    """One group of images (a source, a held-out clinic): melanoma recall and balanced accuracy
    over the classes present (a source may lack some) of the top class of ``probs``; melanoma
    and P(malignant) AUCs of ``ranking`` (default: ``probs``)."""
    from sklearn.metrics import roc_auc_score

    from skin_model.inference.referral import MEL, is_malignant, malignant_scores

    ranking = probs if ranking is None else ranking
    preds = probs.argmax(1)
    present = sorted(set(labels.tolist()))
    recalls = {vocab.CLASSES[c]: float((preds[labels == c] == c).mean()) for c in present}
    is_mel, malignant = labels == MEL, is_malignant(labels)

    def auc(positive, scores):
        return float(roc_auc_score(positive, scores)) if 0 < positive.sum() < len(labels) else None

    return {
        "images": len(labels),
        "melanomas": int(is_mel.sum()),
        "melanoma_recall": recalls.get("mel"),
        "melanoma_auc": auc(is_mel, ranking[:, MEL]),
        "malignant_auc": auc(malignant, malignant_scores(ranking)),
        "balanced_accuracy_present": float(np.mean(list(recalls.values()))),
        "recall": recalls,
    }


def training_prior_report(probs: np.ndarray, labels: np.ndarray) -> dict:
    """Does the ``training`` prior mean what it says? ECE, each class's mean probability beside its
    frequency, and mean P(malignant or pre-malignant) beside the malignant share."""
    from skin_model.inference.referral import is_malignant, malignant_scores

    return {
        "ece_15": expected_calibration_error(probs, labels),
        "mean_malignant_probability": float(malignant_scores(probs).mean()),
        "malignant_share": float(is_malignant(labels).mean()),
        "mean_probability": {c: float(probs[:, i].mean()) for i, c in enumerate(vocab.CLASSES)},
        "frequency": {c: float((labels == i).mean()) for i, c in enumerate(vocab.CLASSES)},
        "reliability": reliability(probs, labels),
    }
