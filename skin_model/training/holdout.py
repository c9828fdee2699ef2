"""Held-out-source evaluation: train without one source (a clinic or a collection), score it.

The best guide there is to how the model will do on dermoscopy from a clinic it has never seen.
It uses training's own data and split code (``crossval.decode_sources``, ``splits.fold_parts``):
a held-out run is fold 0's model of a recipe with one source left out. The test rows are never
read: they are dropped before anything else happens.
"""

from __future__ import annotations

import json
import logging
from dataclasses import asdict
from pathlib import Path

import numpy as np
import torch

from skin_model.inference.preprocess import SourceSize
from skin_model.inference.priors import PRIORS, apply_prior
from skin_model.inference.referral import MEL, is_malignant, malignant_scores
from skin_model.training.crossval import decode_sources
from skin_model.training.data import Dataset
from skin_model.training.metrics import source_report
from skin_model.training.splits import fold_parts

log = logging.getLogger(__name__)
HOLDOUT_FOLD = 0  # the fold model trained: fold 0's lesions choose its epoch


def load_all(recipe, data_dirs: list[Path], source: SourceSize, cache: Path | None) -> Dataset:
    """Every image the harness may read, decoded once as training decodes it (``crossval``), with
    the recipe's declared roles; the test rows are dropped before anything else happens."""
    data = decode_sources(recipe, data_dirs, source, cache)
    return data.subset(data.df["split"].ne("test").to_numpy())


def run_holdout(data: Dataset, holdout: str, cfg, run_root: Path) -> dict:
    """Fold 0's model of ``cfg`` trained on every source but ``holdout`` (epoch chosen on the other
    sources' fold-0 lesions), then the held-out source's every image scored: under the equal prior
    at its chosen strength (the 7-class answer), and under the training frequencies (the ranking)."""
    from skin_model.training.train import (
        TTA_VIEWS,
        Run,
        choose_prior_strength,
        class_frequencies,
        load_member,
        predict_outputs,
        train_member,
    )

    sources = data.df["source"]
    if holdout not in set(sources):
        raise ValueError(f"unknown source {holdout!r}; the data has {sorted(set(sources))}")
    others = sources.ne(holdout).to_numpy()
    train, val = fold_parts(data.df, HOLDOUT_FOLD)
    parts = {"train": data.subset(train & others), "val": data.subset(val & others)}
    held_out = data.subset(~others)
    run = Run(run_root / f"without_{holdout}")
    member_dir = run.member_dir(cfg.name)
    if not (member_dir / "done.json").exists():
        train_member(parts, run, cfg, resume=True)
    net, cfg = load_member(member_dir)
    train_prior = class_frequencies(parts["train"].labels)
    equal = PRIORS["equal"](train_prior)
    val_logits, val_features = predict_outputs(net, parts["val"], cfg.inputs, TTA_VIEWS)
    val_probs = torch.softmax(val_logits, 1).double()
    strength, _ = choose_prior_strength(val_probs, parts["val"].labels, train_prior)
    held_logits, held_features = predict_outputs(net, held_out, cfg.inputs, TTA_VIEWS)
    probs = torch.softmax(held_logits, 1).double()
    decided = apply_prior(probs, train_prior, equal, strength).numpy()
    labels = held_out.labels.numpy()
    report = source_report(decided, labels)
    report |= _training_prior_ranking(probs.numpy(), labels)
    report["ood_flagged"] = ood_share(net, cfg, parts, val_features, held_out, held_features)
    report |= {"holdout": holdout, "equal_prior_strength": strength, "member": asdict(cfg)}
    (member_dir / "holdout.json").write_text(json.dumps(report, indent=2))
    return report


def _training_prior_ranking(probs: np.ndarray, labels: np.ndarray) -> dict:
    """Melanoma and P(malignant) AUCs of the network's own output (its training frequencies): no
    prior divides it, so rare classes are not boosted unevenly from image to image."""
    from sklearn.metrics import roc_auc_score

    is_mel, malignant = labels == MEL, is_malignant(labels)

    def auc(positive, scores):
        return float(roc_auc_score(positive, scores)) if 0 < positive.sum() < len(labels) else None

    return {
        "melanoma_auc_training_prior": auc(is_mel, probs[:, MEL]),
        "malignant_auc_training_prior": auc(malignant, malignant_scores(probs)),
    }


def ood_share(
    net, cfg, parts: dict, val_features: torch.Tensor, held_out: Dataset, held_features: torch.Tensor
) -> float:
    """Share of the held-out source flagged by the out-of-domain check built as export builds it:
    an index of the training images, its threshold passing 97% of each validation source."""
    from skin_model.inference.ood import OodCheck, image_statistics
    from skin_model.inference.similar import CaseIndex, member_embedding
    from skin_model.training.train import TTA_VIEWS, predict_outputs

    train = parts["train"]
    train_features = predict_outputs(net, train, cfg.inputs, TTA_VIEWS)[1]
    index = CaseIndex.build(
        member_embedding([train_features]),
        train.labels,
        list(train.df["dx_type"]),
        list(train.df["image_id"]),
        [b""] * len(train),
    )
    val = parts["val"]
    check = OodCheck.fit(image_statistics(train.images))
    check.calibrate_by_source(
        index,
        {"validation": (member_embedding([val_features]), image_statistics(val.images), val.df)},
        list(train.df["lesion_id"]),
    )
    scores = check.score_features(index, member_embedding([held_features]), image_statistics(held_out.images))
    return float(check.flags(scores).double().mean())


# What the card reports of a design's held-out rows (``scripts.holdout_proxy``'s results file):
# card name -> the row's key. AUCs are the network's own output's (its training frequencies).
EVIDENCE_KEYS = {
    "images": "images",
    "melanomas": "melanomas",
    "melanoma_auc": "melanoma_auc_training_prior",
    "malignant_auc": "malignant_auc_training_prior",
    "balanced_accuracy_present": "balanced_accuracy_present",
    "melanoma_recall": "melanoma_recall",
    "ood_flagged": "ood_flagged",
}


def latest_rows(results: Path) -> dict[tuple[str, str, bool], dict]:
    """The rows of ``results.jsonl`` by (variant, held-out source, made on the folds): a row scored
    again replaces the older one; rows without a ``split`` were made on the old single split."""
    latest = {}
    for line in Path(results).read_text().splitlines():
        row = json.loads(line)
        latest[(row["variant"], row["holdout"], "split" in row)] = row
    return latest


def held_out_evidence(results: Path, variant: str) -> dict:
    """The card's ``held_out_sources``: the chosen design's latest row for each held-out source,
    and their means (the number the design was chosen on). Every row must come from the same
    fold model's settings and have a melanoma AUC: a mean over unlike rows means nothing."""
    latest = {
        source: row
        for (name, source, on_folds), row in latest_rows(results).items()
        if name == variant and on_folds  # rows without a split: the old single split
    }
    if not latest:
        raise ValueError(f"{results} holds no held-out rows of the variant {variant!r}")
    members = {json.dumps(r["member"], sort_keys=True) for r in latest.values()}
    if len(members) > 1 or any(r.get("melanoma_auc_training_prior") is None for r in latest.values()):
        raise ValueError(f"{results}: the rows of {variant!r} differ in their fold model or lack a melanoma AUC")
    member = next(iter(latest.values()))["member"]
    by_source = {s: {k: r.get(key) for k, key in EVIDENCE_KEYS.items()} for s, r in sorted(latest.items())}
    return {
        "variant": variant,
        # one fold model per source: fold HOLDOUT_FOLD's, trained without the source, scored on all of it
        "fold_model": {k: member[k] for k in ("arch", "width", "height", "epochs")} | {"fold": HOLDOUT_FOLD},
        "split": next(iter(latest.values()))["split"],
        "by_source": by_source,
        "mean": {
            k: float(np.mean([r[k] for r in by_source.values() if r[k] is not None]))
            for k in EVIDENCE_KEYS
            if k not in ("images", "melanomas")
        },
    }
