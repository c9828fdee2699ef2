"""When to say "uncertain between A and B" instead of naming one answer.

Rule: the answer is uncertain when its top two probabilities are closer than a
gap. The gap is chosen on validation: the smallest one for which the answers
called certain are right at least ``TARGET_ACCURACY`` of the time (balanced over
classes, like the rest of the model's decisions).
"""

from __future__ import annotations

import numpy as np

TARGET_ACCURACY = 0.85
GAPS = np.round(np.arange(0.0, 0.801, 0.02), 2)


def top_two_gap(probs: np.ndarray) -> np.ndarray:
    top = np.sort(probs, axis=-1)
    return top[..., -1] - top[..., -2]


def choose_gap(probs: np.ndarray, labels: np.ndarray, target: float = TARGET_ACCURACY) -> dict:
    """The smallest gap whose 'certain' answers reach ``target`` balanced accuracy on these data."""
    gaps = top_two_gap(probs)
    preds = probs.argmax(-1)
    table = []
    for g in GAPS:
        certain = gaps >= g
        recalls = [
            (preds[certain & (labels == c)] == c).mean() for c in np.unique(labels) if (certain & (labels == c)).any()
        ]
        table.append(
            {
                "gap": float(g),
                "share_certain": float(certain.mean()),
                "balanced_accuracy_of_certain": float(np.mean(recalls)) if recalls else None,
            }
        )
    reached = [
        row
        for row in table
        if row["balanced_accuracy_of_certain"] is not None and row["balanced_accuracy_of_certain"] >= target
    ]
    chosen = reached[0] if reached else table[-1]
    return {
        "rule": f"uncertain when the top two probabilities differ by less than the gap; the gap is the "
        f"smallest for which certain answers reach balanced accuracy {target} on validation",
        "gap": chosen["gap"],
        "target": target,
        "validation": chosen,
    }


def uncertain_pair(probabilities: dict[str, float], gap: float) -> tuple[str, str] | None:
    """The two leading classes when they are closer than ``gap``, else None."""
    first, second = sorted(probabilities, key=probabilities.get, reverse=True)[:2]
    return (first, second) if probabilities[first] - probabilities[second] < gap else None
