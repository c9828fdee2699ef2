"""When to say "uncertain between A and B" instead of naming one answer.

Rule: the answer is uncertain when its top two probabilities are closer than a gap.
The gap is chosen on validation as the widest band of small gaps inside which the top
answer is right no more often than a coin toss (``BAND_ACCURACY``): there the model
truly cannot tell the two apart, and saying so is honest. Wider gaps name one answer,
with its probability beside it.
"""

from __future__ import annotations

import numpy as np

BAND_ACCURACY = 0.5  # inside the band, the top answer is right at most this often
MIN_BAND = 20  # validation answers needed in a band before its accuracy is trusted
GAPS = np.round(np.arange(0.02, 0.801, 0.02), 2)


def top_two_gap(probs: np.ndarray) -> np.ndarray:
    top = np.sort(probs, axis=-1)
    return top[..., -1] - top[..., -2]


def choose_gap(probs: np.ndarray, labels: np.ndarray, band_accuracy: float = BAND_ACCURACY) -> dict:
    """The widest gap whose band (answers with a smaller top-two gap) holds at least
    ``MIN_BAND`` answers that are right at most ``band_accuracy`` of the time; 0 if none."""
    gaps = top_two_gap(probs)
    right = probs.argmax(-1) == labels
    table = []
    for g in GAPS:
        band = gaps < g
        table.append(
            {
                "gap": float(g),
                "share_uncertain": float(band.mean()),
                "n_uncertain": int(band.sum()),
                "accuracy_of_uncertain": float(right[band].mean()) if band.any() else None,
                "accuracy_of_the_rest": float(right[~band].mean()) if (~band).any() else None,
            }
        )
    within = [r for r in table if r["n_uncertain"] >= MIN_BAND and r["accuracy_of_uncertain"] <= band_accuracy]
    chosen = within[-1] if within else {"gap": 0.0, "share_uncertain": 0.0, "n_uncertain": 0}
    return {
        "rule": "uncertain when the top two probabilities differ by less than the gap; the gap is the widest "
        f"for which such answers were right at most {band_accuracy:.0%} of the time on validation",
        "gap": chosen["gap"],
        "band_accuracy": band_accuracy,
        "validation": chosen,
    }


def uncertain_pair(probabilities: dict[str, float], gap: float) -> tuple[str, str] | None:
    """The two leading classes when they are closer than ``gap``, else None."""
    first, second = sorted(probabilities, key=probabilities.get, reverse=True)[:2]
    return (first, second) if probabilities[first] - probabilities[second] < gap else None
