"""The referral rule: should a dermatologist see this lesion?

A clinician's question is not "which of seven diagnoses?" but "should this be looked
at?". The rule answers it from one number, P(malignant or pre-malignant) = P(mel) +
P(bcc) + P(akiec) under the ``training`` prior (so it never moves with the prior shown
to the user), read against a threshold chosen out of fold: the highest one that still flags the recipe's
``target_sensitivity`` (default ``TARGET_SENSITIVITY``) of the malignant and pre-malignant lesions.
A missed melanoma costs more than an extra referral.
"""

from __future__ import annotations

import math

import numpy as np

from skin_model import vocab

TARGET_SENSITIVITY = 0.90
MALIGNANT_OR_PREMALIGNANT: tuple[str, ...] = tuple(d.code for d in vocab.DIAGNOSES if d.group != "benign")
MALIGNANT_INDEX = [vocab.CLASSES.index(c) for c in MALIGNANT_OR_PREMALIGNANT]
MEL = vocab.CLASSES.index("mel")
# What a Grad-CAM may explain: the referral's score (what the verdict reads) or one class.
MALIGNANT = "malignant"
CAM_TARGETS: tuple[str, ...] = (MALIGNANT, *vocab.CLASSES)

# The answer's three values: what the app shows first.
SUSPICIOUS, NOT_SUSPICIOUS, CANNOT_JUDGE = "suspicious", "not_suspicious", "cannot_judge"
VERDICTS = (SUSPICIOUS, NOT_SUSPICIOUS, CANNOT_JUDGE)
# What the page shows a clinician at a glance: the verdict, with "near the line" set apart.
BORDERLINE = "borderline"
STATES = (SUSPICIOUS, BORDERLINE, NOT_SUSPICIOUS, CANNOT_JUDGE)
RULE = (
    "refer when P(mel) + P(bcc) + P(akiec), under the training prior, is at or above the threshold; "
    "an image out of domain cannot be judged: no number is given and nothing is decided"
)
# Published operating points the card sets beside the model's (sensitivity, specificity).
ANCHORS = (
    {
        "key": "dermatologists",
        "who": "Dermatologists reading dermoscopic images (ISIC 2016 reader study)",
        "task": "melanoma",
        "sensitivity": 0.82,
        "specificity": 0.59,
        "source": "Marchetti M.A. et al., J Am Acad Dermatol 78(2):270-277, 2018",
    },
    {
        "key": "skinvision",
        "who": "SkinVision (CE-marked smartphone app)",
        "task": "malignant or pre-malignant",
        "sensitivity": 0.95,
        "specificity": 0.78,
        "source": "Udrea A. et al., J Eur Acad Dermatol Venereol 34(3):648-655, 2020",
    },
)


def verdict(malignant_probability: float, threshold: float, ood: bool) -> str:
    """The referral verdict of one image: out of domain is never reassuring, and neither is a
    probability or a threshold that is not a number (fail closed)."""
    if ood or not (math.isfinite(malignant_probability) and math.isfinite(threshold)):
        return CANNOT_JUDGE
    return SUSPICIOUS if malignant_probability >= threshold else NOT_SUSPICIOUS


def malignant_scores(probs: np.ndarray) -> np.ndarray:
    """(N, classes) probabilities -> (N,) P(malignant or pre-malignant)."""
    return np.asarray(probs)[:, MALIGNANT_INDEX].sum(1)


def is_malignant(labels: np.ndarray) -> np.ndarray:
    return np.isin(np.asarray(labels), MALIGNANT_INDEX)


def choose_threshold(scores: np.ndarray, malignant: np.ndarray, sensitivity: float = TARGET_SENSITIVITY) -> float:
    """The highest threshold t at which ``scores >= t`` flags at least ``sensitivity`` of the
    malignant rows: the k-th highest malignant score, k = ceil(sensitivity * positives)."""
    positives = np.sort(np.asarray(scores, dtype=np.float64)[np.asarray(malignant, dtype=bool)])[::-1]
    if len(positives) == 0:
        raise ValueError("no malignant or pre-malignant lesion to choose a referral threshold on")
    k = math.ceil(sensitivity * len(positives) - 1e-9)
    return float(positives[k - 1])


def roc_curve(scores: np.ndarray, positive: np.ndarray, points: int = 101) -> dict:
    """False and true positive rates over ``points`` thresholds spread by score quantile
    (small enough for a card, fine enough for a plot), from (0, 0) to (1, 1)."""
    scores = np.asarray(scores, dtype=np.float64)
    positive = np.asarray(positive, dtype=bool)
    cuts = np.unique(np.quantile(scores, np.linspace(0, 1, points)))[::-1]
    fpr = [0.0] + [float((scores[~positive] >= t).mean()) for t in cuts] + [1.0]
    tpr = [0.0] + [float((scores[positive] >= t).mean()) for t in cuts] + [1.0]
    return {"fpr": fpr, "tpr": tpr, "thresholds": [None] + [float(t) for t in cuts] + [None]}


def operating_point(scores: np.ndarray, labels: np.ndarray, threshold: float) -> dict:
    """How the rule does on labelled images: the confusion of referral against truth,
    sensitivity, specificity, melanoma-only sensitivity, the AUC and the ROC curve."""
    from sklearn.metrics import roc_auc_score

    scores, labels = np.asarray(scores, dtype=np.float64), np.asarray(labels)
    malignant, referred = is_malignant(labels), scores >= threshold
    melanoma = labels == MEL
    tp, fn = int((referred & malignant).sum()), int((~referred & malignant).sum())
    fp, tn = int((referred & ~malignant).sum()), int((~referred & ~malignant).sum())
    both = 0 < malignant.sum() < len(labels)
    return {
        "n": len(labels),
        "sensitivity": tp / max(tp + fn, 1),
        "specificity": tn / max(tn + fp, 1),
        "melanoma_sensitivity": float(referred[melanoma].mean()) if melanoma.any() else None,
        "referred_share": float(referred.mean()),
        "confusion": {"referred_malignant": tp, "missed_malignant": fn, "referred_benign": fp, "cleared_benign": tn},
        "auc": float(roc_auc_score(malignant, scores)) if both else None,
        "roc": roc_curve(scores, malignant) if both else None,
    }


def card_section(
    val_scores: np.ndarray, val_labels: np.ndarray, chosen_on: str, sensitivity: float = TARGET_SENSITIVITY
) -> dict:
    """The model card's ``referral``: the rule, its threshold chosen on ``val_scores`` for
    ``sensitivity`` (the recipe's ``target_sensitivity``), and how it did there."""
    threshold = choose_threshold(val_scores, is_malignant(val_labels), sensitivity)
    val_scores, val_labels = np.asarray(val_scores, dtype=np.float64), np.asarray(val_labels)
    return {
        "rule": RULE,
        "classes": list(MALIGNANT_OR_PREMALIGNANT),
        "prior": "training",
        "target_sensitivity": sensitivity,
        "threshold": threshold,
        "chosen_on": chosen_on,
        "validation": operating_point(val_scores, val_labels, threshold),
        "test": None,
        "anchors": list(ANCHORS),
        # What the threshold was chosen on, so that anyone can check the choice (tests do).
        "chosen_on_scores": {
            "malignant_probability": [float(x) for x in val_scores],
            "malignant": [int(x) for x in is_malignant(val_labels)],
            "melanoma": [int(x) for x in (val_labels == MEL)],
        },
    }


BORDERLINE_SHARE = 0.10  # the out-of-fold images nearest the threshold, half on each side


def borderline_band(rule: dict, share: float = BORDERLINE_SHARE) -> dict:
    """The scores called borderline: the ``share`` of the images the threshold was chosen on that
    lie nearest it by rank (half below, half above), and how many of those were malignant.
    Read from the card's stored out-of-fold scores (``chosen_on_scores``), so every card has it."""
    scores = np.sort(np.asarray(rule["chosen_on_scores"]["malignant_probability"], dtype=np.float64))
    malignant = np.asarray(rule["chosen_on_scores"]["malignant"], dtype=bool)
    raw = np.asarray(rule["chosen_on_scores"]["malignant_probability"], dtype=np.float64)
    at = np.searchsorted(scores, rule["threshold"]) / len(scores)  # the threshold's rank
    low = float(np.quantile(scores, max(0.0, at - share / 2)))
    high = float(np.quantile(scores, min(1.0, at + share / 2)))
    inside = (raw >= low) & (raw <= high)
    return {
        "low": low,
        "high": high,
        "share_of_images": float(inside.mean()),
        "malignant_share": float(malignant[inside].mean()) if inside.any() else None,
        "rule": f"the {share:.0%} of out-of-fold images nearest the threshold by rank, half on each side",
    }


def natural_frequencies(point: dict) -> tuple[int, int]:
    """(of 100 malignant lesions, how many flagged; of 100 benign ones, how many flagged)."""
    return round(100 * point["sensitivity"]), round(100 * (1 - point["specificity"]))


def answer_state(verdict_: str, borderline: bool) -> str:
    """The state a clinician reads at a glance: ``borderline`` (near the line, on either side) sets
    itself apart from a plain suspicious or not-suspicious verdict; cannot judge stays cannot judge."""
    if verdict_ == CANNOT_JUDGE:
        return CANNOT_JUDGE
    return BORDERLINE if borderline else verdict_


def rule_evidence(card: dict) -> dict:
    """What is known of the rule, as whole counts out of 100: its sensitivity and false alarms on
    the clinics it learnt from (out of fold) and, where the card's evaluation has one, on a clinic
    it never saw (``unseen``: its name, the same two counts and the images it could not judge)."""
    home = card["referral"]["validation"]
    evidence = {"sensitivity": home["sensitivity"], "false_alarms": 1 - home["specificity"], "unseen": None}
    unseen = ((card.get("evaluation") or {}).get("unseen_sources")) or {}
    if unseen:
        name, figures = sorted(unseen.items())[0]
        evidence["unseen"] = {
            "source": name,
            "sensitivity": figures["sensitivity"],
            "false_alarms": 1 - figures["specificity"],
            "cannot_judge": figures["cannot_judge"],
        }
    return evidence
