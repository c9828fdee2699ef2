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
from safetensors.torch import load_file

from skin_model import vocab
from skin_model.inference.ensemble import calibrate, member_outputs
from skin_model.inference.preprocess import SourceSize
from skin_model.inference.priors import PRIORS, apply_prior, class_frequencies
from skin_model.inference.referral import MEL, is_malignant, malignant_scores
from skin_model.training.calibration import calibrated_balanced_accuracy, fit_bias_temperature
from skin_model.training.crossval import decode_sources
from skin_model.training.data import Dataset
from skin_model.training.metrics import source_report
from skin_model.training.splits import fold_parts

log = logging.getLogger(__name__)
HOLDOUT_FOLD = 0  # the fold model trained: fold 0's lesions choose its epoch
PROBABILITIES_FILE = "held_out_probabilities.csv"


def load_all(recipe, data_dirs: list[Path], source: SourceSize, cache: Path | None) -> Dataset:
    """Every image the harness may read, decoded once as training decodes it (``crossval``), with
    the recipe's declared roles; the test rows are dropped before anything else happens."""
    data = decode_sources(recipe, data_dirs, source, cache)
    return data.subset(data.df["split"].ne("test").to_numpy())


def run_holdout(data: Dataset, holdout: str, cfg, run_root: Path) -> dict:
    """Fold 0's model of ``cfg`` trained on every source but ``holdout``, then the held-out source's
    every image scored as the shipped pipeline scores an image: the epoch by export's rule
    (``calibration.calibrated_balanced_accuracy``) on the other sources' fold-0 lesions, logits with
    test-time flips (``ensemble.member_outputs``), calibrated by bias-corrected temperature scaling
    fitted on those lesions (``ensemble.calibrate``); the 7-class answer under the equal prior, the
    ranking under the calibration's frequencies."""
    from skin_model.training.train import TTA_VIEWS, Run, load_epoch, train_member

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
    epoch, _ = choose_fold_epoch(member_dir, parts["val"].labels)
    net, cfg = load_epoch(member_dir, epoch)
    val_logits, val_features = member_outputs(net, cfg.inputs, parts["val"].images, parts["val"].meta, TTA_VIEWS)
    temperature, bias = fit_bias_temperature(val_logits, parts["val"].labels)
    held_logits, held_features = member_outputs(net, cfg.inputs, held_out.images, held_out.meta, TTA_VIEWS)
    probs = calibrate(held_logits[None], temperature, bias)
    frequencies = class_frequencies(parts["val"].labels, len(vocab.CLASSES))
    decided = apply_prior(probs, frequencies, PRIORS["equal"](frequencies)).numpy()
    labels = held_out.labels.numpy()
    report = source_report(decided, labels)
    report |= _training_prior_ranking(probs.numpy(), labels)
    report["ood_flagged"] = ood_share(net, cfg, parts, val_features, held_out, held_features)
    report |= {"holdout": holdout, "epoch": epoch, "scoring": SCORING, "member": asdict(cfg)}
    report |= {"temperature": temperature, "bias": bias.tolist()}
    (member_dir / "holdout.json").write_text(json.dumps(report, indent=2))
    table = held_out.df[["image_id"]].reset_index(drop=True).copy()
    table[list(vocab.CLASSES)] = probs.numpy()  # the calibrated probabilities behind the report
    table.to_csv(member_dir / PROBABILITIES_FILE, index=False, float_format="%.8f")
    return report


# Rows scored by the harness above carry this; older rows do not, and the card says which kind it shows.
SCORING = "export's epoch rule and calibration, with test-time flips"
EARLIER_SCORING = (
    "the harness before the one inference path: the fold's best epoch by its own rule, its plain softmax "
    "(AUCs) and a fitted prior strength (the answer)"
)


def choose_fold_epoch(member_dir: Path, labels: torch.Tensor) -> tuple[int, dict[str, float]]:
    """Export's epoch rule on one fold's validation logits (``val_logits_NN``); ties: the earlier."""
    scores = {
        int(p.stem.rsplit("_", 1)[1]): calibrated_balanced_accuracy(load_file(str(p))["logits"], labels)
        for p in sorted(member_dir.glob("val_logits_*.safetensors"))
    }
    if not scores:
        raise RuntimeError(f"{member_dir} has no validation logits")
    return max(scores, key=lambda e: (round(scores[e], 6), -e)), scores


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
    from skin_model.training.train import TTA_VIEWS

    train = parts["train"]
    train_features = member_outputs(net, cfg.inputs, train.images, train.meta, TTA_VIEWS)[1]
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
    scorings = {r.get("scoring", EARLIER_SCORING) for r in latest.values()}
    return {
        "variant": variant,
        "scoring": " / ".join(sorted(scorings)),
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
