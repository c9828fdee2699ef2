"""Two changes to the shipped model that need no retraining, probed on validation only
(issue 9, sessions 8 and 9). The test split is never read; results are in the README.

1. Late metadata fusion: a naive-Bayes table log p(age band | c), log p(sex | c),
   log p(site | c) counted on the training split (Laplace-smoothed; unknown fields add
   nothing), added with weight w to the calibrated logits of the fused or the image-only
   view; w chosen on validation. Its optimism is measured by choosing w on a random
   lesion-grouped half of validation and scoring the other half, 20 times.
2. The test-time input size (FixRes, Touvron et al. 2019: training crops 35-100% of the
   area, so lesions look larger in training than in a whole test image): every member's
   input scaled by each factor, and the factors' logits averaged.

Every score is the shipped decision rule: temperature fitted, then the equal prior at its
best strength (flips on).

    python -m scripts.probe_validation --data ../shared/data/ham10000 [--scales 1.0 1.1 1.2 1.3]
"""

import argparse
import itertools
from dataclasses import replace
from pathlib import Path

import numpy as np
import pandas as pd
import torch

from skin_model import vocab
from skin_model.calibration import fit_temperature
from skin_model.data import find_images
from skin_model.evaluate import collect_logits, split_frame
from skin_model.metrics import classification_report
from skin_model.predictor import FUSED, IMAGE_ONLY, SkinClassifier
from skin_model.priors import PRIORS, apply_prior, choose_prior_strength

AGE_BANDS = (20, 30, 40, 50, 60, 70, 80)  # band edges in years
WEIGHTS = tuple(round(0.1 * i, 1) for i in range(16))


def field_values(df: pd.DataFrame) -> dict[str, list]:
    """Per field, each row's value, or None where unknown."""
    return {
        "age": [None if pd.isna(a) else int(np.searchsorted(AGE_BANDS, a, side="right")) for a in df["age"]],
        "sex": [None if s == vocab.UNKNOWN else s for s in df["sex"]],
        "site": [None if s == vocab.UNKNOWN else s for s in df["localization"]],
    }


def fit_metadata_table(train: pd.DataFrame) -> dict[str, dict]:
    """``{field: {value: log p(value | class) (classes,)}}`` from the training split."""
    labels = train["label"].to_numpy()
    tables = {}
    for field, values in field_values(train).items():
        known = sorted({v for v in values if v is not None}, key=str)
        counts = np.ones((len(known), len(vocab.CLASSES)))  # Laplace smoothing
        for v, c in zip(values, labels):
            if v is not None:
                counts[known.index(v), c] += 1
        logp = np.log(counts / counts.sum(0, keepdims=True))
        tables[field] = {v: torch.tensor(logp[i]) for i, v in enumerate(known)}
    return tables


def metadata_term(tables: dict[str, dict], df: pd.DataFrame) -> torch.Tensor:
    """(N, classes): the summed log-likelihoods of each row's known fields."""
    out = torch.zeros(len(df), len(vocab.CLASSES), dtype=torch.float64)
    for field, values in field_values(df).items():
        for i, v in enumerate(values):
            if v is not None and v in tables[field]:
                out[i] += tables[field][v]
    return out


class Rule:
    """The shipped decision rule, fitted on one set of logits and applied to another."""

    def __init__(self, logits: torch.Tensor, labels: torch.Tensor, train_prior: torch.Tensor):
        self.train_prior = train_prior
        self.temperature = fit_temperature(logits, labels)
        probs = torch.softmax(logits.double() / self.temperature, -1)
        self.strength, scores = choose_prior_strength(probs, labels, train_prior)
        self.score = scores[f"{self.strength:.1f}"]

    def report(self, logits: torch.Tensor, labels: torch.Tensor) -> dict:
        probs = torch.softmax(logits.double() / self.temperature, -1)
        equal = PRIORS["equal"](self.train_prior)
        return classification_report(apply_prior(probs, self.train_prior, equal, self.strength).numpy(), labels.numpy())


def best_weight(base: torch.Tensor, term: torch.Tensor, labels: torch.Tensor, train_prior: torch.Tensor) -> float:
    """The metadata weight with the best balanced accuracy (ties: the smaller)."""
    scores = {w: Rule(base + w * term, labels, train_prior).score for w in WEIGHTS}
    return max(WEIGHTS, key=lambda w: (round(scores[w], 6), -w))


def probe_metadata(logits, labels, val, tables, train_prior) -> None:
    term = metadata_term(tables, val)
    print("\n1. late metadata fusion (balanced accuracy on validation)")
    print(f"shipped rule, fused view: {Rule(logits[FUSED], labels, train_prior).score:.4f}")
    views = {"fused": logits[FUSED], "image_only": logits[IMAGE_ONLY]}
    for name, view in views.items():
        base = view / fit_temperature(view, labels)
        scores = ", ".join(f"{w}: {Rule(base + w * term, labels, train_prior).score:.4f}" for w in WEIGHTS)
        print(f"{name} + w x metadata table: {scores}")
    rng = np.random.default_rng(0)
    lesions = val["lesion_id"].unique()
    gains: dict[str, list] = {name: [] for name in views}
    for _ in range(20):
        half = torch.tensor(val["lesion_id"].isin(rng.choice(lesions, len(lesions) // 2, replace=False)).to_numpy())
        a, b = half, ~half
        shipped = Rule(logits[FUSED][a], labels[a], train_prior).report(logits[FUSED][b], labels[b])
        for name, view in views.items():
            base = view / fit_temperature(view[a], labels[a])
            w = best_weight(base[a], term[a], labels[a], train_prior)
            rule = Rule(base[a] + w * term[a], labels[a], train_prior)
            gain = rule.report(base[b] + w * term[b], labels[b])["balanced_accuracy"] - shipped["balanced_accuracy"]
            gains[name].append(gain)
    for name, g in gains.items():
        print(
            f"{name} + table, w chosen on one half, gain on the other over the shipped rule: "
            f"mean {np.mean(g):+.4f}, sd {np.std(g):.4f} (20 halves)"
        )


def probe_sizes(model, val, paths, labels, train_prior, scales, shipped_logits) -> None:
    print("\n2. test-time input size (fused view; balanced accuracy / macro AUC on validation)")
    shipped_inputs = model.member_inputs
    by_scale = {}
    for s in scales:
        model.member_inputs = [
            replace(i, height=round(i.height * s / 3) * 3, width=round(i.height * s / 3) * 4) for i in shipped_inputs
        ]
        # x1.0 is the shipped input: its member logits are already at hand.
        by_scale[s] = shipped_logits if s == 1.0 else collect_logits(model, val, paths)[:, FUSED]
        members = [Rule(m, labels, train_prior).report(m, labels) for m in by_scale[s]]
        ensemble = by_scale[s].mean(0)
        r = Rule(ensemble, labels, train_prior).report(ensemble, labels)
        sizes = ", ".join(f"{i.width}x{i.height}" for i in model.member_inputs)
        print(
            f"x{s} ({sizes}): members "
            + ", ".join(f"{m['balanced_accuracy']:.3f} / {m['macro_auc']:.3f}" for m in members)
            + f"; ensemble {r['balanced_accuracy']:.4f} / {r['macro_auc']:.4f}, melanoma recall {r['recall']['mel']:.3f}"
        )
    model.member_inputs = shipped_inputs
    for k in range(2, len(scales) + 1):
        for combo in itertools.combinations(scales, k):
            if combo[0] != 1.0:
                continue
            ensemble = torch.cat([by_scale[s] for s in combo]).mean(0)
            r = Rule(ensemble, labels, train_prior).report(ensemble, labels)
            print(f"sizes {combo} averaged: {r['balanced_accuracy']:.4f} / {r['macro_auc']:.4f}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", type=Path, required=True)
    parser.add_argument("--run", type=Path, default=Path("runs/v1"), help="the run whose split.csv to use")
    parser.add_argument("--scales", type=float, nargs="+", default=[1.0, 1.1, 1.2, 1.3])
    args = parser.parse_args()
    model = SkinClassifier.load()
    paths = find_images(args.data)
    train = split_frame(args.data, args.run, "train")
    val = split_frame(args.data, args.run, "val")
    labels = torch.tensor(val["label"].to_numpy())
    train_prior = torch.tensor(np.bincount(train["label"], minlength=len(vocab.CLASSES)) / len(train))
    member_logits = collect_logits(model, val, paths)  # (members, views, N, classes)
    probe_metadata(member_logits.mean(0), labels, val, fit_metadata_table(train), train_prior)
    probe_sizes(model, val, paths, labels, train_prior, args.scales, member_logits[:, FUSED])


if __name__ == "__main__":
    main()
