"""Metrics of an artifact on the validation and test splits: per member and ensemble,
fused and image-only, with and without test-time flips, under both priors."""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import pandas as pd
import torch
from PIL import Image
from tqdm import tqdm

from . import card as model_card
from . import referral, vocab
from .config import DEFAULT_DATA_DIR
from .data import find_images, find_metadata_csv, metadata_of, read_metadata
from .metrics import (
    binary_calibration,
    classification_report,
    expected_calibration_error,
    reliability,
    source_report,
    training_prior_report,
)
from .network import encode_metadata
from .ood import image_statistics
from .predictor import FUSED, IMAGE_ONLY, SkinClassifier
from .priors import PRIORS, apply_prior
from .referral import MALIGNANT_OR_PREMALIGNANT
from .similar import member_embedding
from .splits import outlier_parts

log = logging.getLogger(__name__)
VIEWS = {"fused": FUSED, "image_only": IMAGE_ONLY}
HEADLINE = ("ensemble", "tta", "equal", "fused")  # what the app shows by default


def split_frame(data_dir: Path, run_dir: Path, split: str) -> pd.DataFrame:
    df = read_metadata(find_metadata_csv(data_dir))
    saved = pd.read_csv(Path(run_dir) / "split.csv", dtype=str).set_index("image_id")["split"]
    return df[df["image_id"].map(saved) == split].reset_index(drop=True)


def collect_outputs(
    model: SkinClassifier, df: pd.DataFrame, paths: dict[str, Path], tta: bool = True, batch_size: int = 64
) -> tuple[torch.Tensor, torch.Tensor]:
    """Member logits (members, views, N, classes), the embedding input (N, features) and the
    image statistics (N, 8), through the same path as the app."""
    logits, features, stats = [], [], []
    for start in tqdm(range(0, len(df), batch_size), desc="logits", unit="batch", mininterval=5):
        rows = df.iloc[start : start + batch_size]
        pixels = torch.cat([model.prepare(paths[i]).pixels for i in rows["image_id"]])
        metas = torch.stack([encode_metadata(metadata_of(r)) for r in rows.itertuples()])
        lg, feats = model.member_outputs(pixels, metas, tta)
        logits.append(lg)
        features.append(member_embedding(feats))
        stats.append(image_statistics(pixels))
    return torch.cat(logits, dim=2), torch.cat(features), torch.cat(stats)


def collect_logits(
    model: SkinClassifier, df: pd.DataFrame, paths: dict[str, Path], tta: bool = True, batch_size: int = 64
) -> torch.Tensor:
    return collect_outputs(model, df, paths, tta, batch_size)[0]


def neighbour_vote(model: SkinClassifier, features: torch.Tensor, labels: np.ndarray, k: int = 6) -> dict:
    """How often the majority diagnosis of the k most similar training images is the truth
    (ties: the larger summed similarity)."""
    votes = []
    for row in model.cases.similarities(features):
        values, idx = row.topk(k)
        score = np.zeros(len(vocab.CLASSES))
        np.add.at(score, model.cases.labels[idx].numpy(), 1.0 + 1e-3 * values.numpy())
        votes.append(score)
    report = classification_report(np.array(votes) / k, labels)
    return {
        "k": k,
        "balanced_accuracy": report["balanced_accuracy"],
        "accuracy": report["accuracy"],
        "recall": report["recall"],
    }


def out_of_domain_report(model: SkinClassifier, in_domain_scores: dict[str, torch.Tensor]) -> dict:
    """Share flagged per category of real images that are not dermoscopy (their kept-aside half,
    ``not_dermoscopy_report``; empty where that folder is absent), and of the in-domain splits."""
    outside = not_dermoscopy_report(model) or {}
    report = {
        "threshold": model.ood.threshold,
        "categories": {k: v for k, v in outside.items() if k != "all"},
        "non_skin_flagged": outside.get("all", {}).get("flagged"),
    }
    for split, scores in in_domain_scores.items():
        report[f"{split}_flagged"] = float((scores > model.ood.threshold).double().mean())
    return report


def _report(
    logits: torch.Tensor, temperature: float, labels: np.ndarray, train_prior: torch.Tensor, prior: str, strength: float
) -> dict:
    probs = torch.softmax(logits.double() / temperature, -1)
    if prior != "training":
        probs = apply_prior(probs, train_prior, PRIORS[prior](train_prior), strength)
    report = classification_report(probs.numpy(), labels)
    if prior == "training":
        report["ece_15_before_calibration"] = expected_calibration_error(torch.softmax(logits, -1).numpy(), labels)
    return report


def split_reports(model: SkinClassifier, logits_by_tta: dict[str, torch.Tensor], labels: np.ndarray) -> dict:
    """``{model: {tta: {prior: {view: report}}}}`` for each member and the ensemble."""
    strength = model.prior_strength
    models = {
        f"member_{i}_{spec['name']}": (lambda lg, i=i: lg[i], model.member_temperatures[i])
        for i, spec in enumerate(model.card["members"])
    }
    models["ensemble"] = (lambda lg: lg.mean(0), model.temperature)
    out: dict = {}
    for name, (pick, temperature) in models.items():
        out[name] = {
            tta: {
                prior: {
                    view: _report(pick(lg)[v], temperature, labels, model.train_prior, prior, strength)
                    for view, v in VIEWS.items()
                }
                for prior in PRIORS
            }
            for tta, lg in logits_by_tta.items()
        }
    return out


def malignant_calibration(model: SkinClassifier, logits: torch.Tensor, labels: np.ndarray) -> dict:
    """How well P(mel + bcc + akiec) is calibrated, under each prior (headline model, fused, TTA)."""
    malignant = np.isin(labels, [vocab.CLASSES.index(c) for c in MALIGNANT_OR_PREMALIGNANT])
    idx = [vocab.CLASSES.index(c) for c in MALIGNANT_OR_PREMALIGNANT]
    return {
        prior: binary_calibration(model.calibrate(logits, prior)[FUSED][:, idx].sum(-1).numpy(), malignant)
        for prior in PRIORS
    }


def referral_report(
    model: SkinClassifier, val: tuple[torch.Tensor, np.ndarray], test: tuple[torch.Tensor, np.ndarray]
) -> dict:
    """The card's referral section: the threshold from validation's (member logits, labels),
    then the rule scored once on test's."""
    scores = {}
    for name, (logits, _) in (("val", val), ("test", test)):
        scores[name] = referral.malignant_scores(model.calibrate(logits, "training")[FUSED].numpy())
    section = referral.card_section(scores["val"], val[1])
    section["test"] = referral.operating_point(scores["test"], test[1], section["threshold"])
    return section


def write_referral(data_dir: Path, run_dir: Path, model_dir: Path | None = None, write_card: bool = False) -> dict:
    """The referral section of an artifact's card, from its own outputs on validation and test
    (for an artifact exported before the rule existed; export writes the validation half)."""
    model = SkinClassifier.load(model_dir)
    paths = find_images(data_dir)
    parts = {}
    for split in ("val", "test"):
        df = split_frame(data_dir, run_dir, split)
        parts[split] = (collect_logits(model, df, paths, tta=True), df["label"].to_numpy())
    section = referral_report(model, parts["val"], parts["test"])
    if write_card:
        _update_card(model_dir, referral=section)
    return section


def _update_card(model_dir: Path | None, **sections) -> None:
    """Into the card of the model that was evaluated, wherever it was loaded from."""
    with model_card.model_folder(model_dir) as folder:
        card = model_card.read_card(folder)
        card.update(sections)
        model_card.write_card(folder, card)
        log.info("%s written into %s", ", ".join(sections), folder)


def cam_mask_share(
    model: SkinClassifier, df: pd.DataFrame, paths: dict[str, Path], mask_dir: Path, limit: int | None = None
) -> dict | None:
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
    return {
        "n": len(rows),
        "target": "predicted class",
        "mean_energy_in_mask": float(energy.mean()),
        "mean_mask_area_share": float(area.mean()),
        "share_of_images_energy_above_area": float((energy > area).mean()),
    }


def evaluate(
    data_dir: Path, run_dir: Path, model_dir: Path | None = None, write_card: bool = False, cam_limit: int | None = None
) -> dict:
    model = SkinClassifier.load(model_dir)
    paths = find_images(data_dir)
    results: dict = {"headline": "/".join(HEADLINE), "splits": {}}
    ood_scores, headline_logits = {}, {}
    for split in ("val", "test"):
        df = split_frame(data_dir, run_dir, split)
        labels = df["label"].to_numpy()
        tta_logits, features, stats = collect_outputs(model, df, paths, tta=True)
        logits = {"tta": tta_logits, "no_tta": collect_logits(model, df, paths, tta=False)}
        ood_scores[split] = model.ood.score_features(model.cases, features, stats)
        headline_logits[split] = (tta_logits, labels)
        reports = split_reports(model, logits, labels)
        headline = torch.softmax(logits["tta"].double().mean(0)[FUSED] / model.temperature, -1).numpy()
        results["splits"][split] = {
            "n_images": len(df),
            "n_lesions": int(df["lesion_id"].nunique()),
            "models": reports,
            "reliability_training_prior": reliability(headline, labels),
            "malignant_probability_calibration": malignant_calibration(model, logits["tta"], labels),
            "similar_cases_majority": neighbour_vote(model, features, labels),
        }
        if split == "test":
            mask_dir = Path(data_dir) / "masks"
            results["gradcam_mask_share"] = (
                cam_mask_share(model, df, paths, mask_dir, cam_limit) if mask_dir.is_dir() else None
            )
    results["out_of_domain"] = out_of_domain_report(model, ood_scores)
    # The constant baseline: always nv, with the training split's class frequencies.
    test_labels = split_frame(data_dir, run_dir, "test")["label"].to_numpy()
    majority = np.tile(model.train_prior.numpy(), (len(test_labels), 1))
    majority_report = classification_report(majority, test_labels)
    majority_report["macro_auc"] = 0.5  # constant scores: no ranking, by definition
    results["majority_baseline"] = majority_report
    results["referral"] = referral_report(model, headline_logits["val"], headline_logits["test"])
    if write_card:
        _update_card(model_dir, test_metrics=results, referral=results["referral"])
    return results


def headline(
    results: dict,
    split: str = "test",
    name: str = "ensemble",
    tta: str = "tta",
    prior: str = "equal",
    view: str = "fused",
) -> dict:
    return results["splits"][split]["models"][name][tta][prior][view]


def summary_table(results: dict) -> str:
    lines = [
        f"{'model':<30}{'tta':<7}{'prior':<9}{'view':<11}{'val BA':>7}{'test BA':>8}{'mel rec':>8}{'AUC':>7}{'ECE':>7}"
    ]
    for name in results["splits"]["test"]["models"]:
        for tta in ("tta", "no_tta"):
            for prior in PRIORS:
                for view in VIEWS:
                    v = headline(results, "val", name, tta, prior, view)
                    r = headline(results, "test", name, tta, prior, view)
                    lines.append(
                        f"{name:<30}{tta:<7}{prior:<9}{view:<11}{v['balanced_accuracy']:>7.3f}"
                        f"{r['balanced_accuracy']:>8.3f}{r['recall']['mel']:>8.3f}"
                        f"{r['macro_auc']:>7.3f}{r['ece_15']:>7.3f}"
                    )
    m = results["majority_baseline"]
    lines.append(
        f"majority class (nv) on test: accuracy {m['accuracy']:.3f}, balanced accuracy {m['balanced_accuracy']:.3f}"
    )
    ood = results["out_of_domain"]
    outside = (
        ", ".join(f"{k} {v['flagged']:.0%}" for k, v in ood["categories"].items())
        + f"; all not dermoscopy {ood['non_skin_flagged']:.1%}"
        if ood["non_skin_flagged"] is not None
        else "no not_dermoscopy folder"
    )
    lines.append(
        f"out of domain flagged: {outside}; in-domain val {ood['val_flagged']:.1%}, test {ood['test_flagged']:.1%}"
    )
    knn = results["splits"]["test"]["similar_cases_majority"]
    lines.append(
        f"majority of the {knn['k']} most similar training images on test: balanced accuracy "
        f"{knn['balanced_accuracy']:.3f}"
    )
    cam = results.get("gradcam_mask_share")
    if cam:
        lines.append(
            f"Grad-CAM energy inside lesion masks: {cam['mean_energy_in_mask']:.3f} "
            f"(masks cover {cam['mean_mask_area_share']:.3f} of the image; n={cam['n']})"
        )
    return "\n".join(lines)


NOT_DERMOSCOPY_DIR = DEFAULT_DATA_DIR.parent / "not_dermoscopy"


def source_metrics(probs: np.ndarray, labels: np.ndarray, ood: np.ndarray) -> dict:
    """``metrics.source_report`` of one group of images, with the share flagged out of domain."""
    return source_report(probs, labels) | {"ood_flagged": float(ood.mean())}


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


def evaluate_sources(data, model_dir: Path, write_card: bool = False, outliers: Path = NOT_DERMOSCOPY_DIR) -> dict:
    """A cross-validated artifact on what it was never trained on: HAM10000's test split (each of
    its sources too), ISIC 2017's check part, and real images that are not dermoscopy. Scored
    once; nothing here feeds a choice."""
    model = SkinClassifier.load(model_dir)
    groups = {"test": data.df["split"].eq("test"), "check": data.df["split"].eq("check")}
    results: dict = {"splits": {}, "by_source": {}}
    for name, mask in groups.items():
        df = data.df[mask.to_numpy()].reset_index(drop=True)
        if not len(df):
            continue
        logits, features, stats = _outputs_of_cached(model, data, mask.to_numpy())
        ood = (model.ood.score_features(model.cases, features, stats) > model.ood.threshold).numpy()
        training = model.calibrate(logits, "training")[FUSED].numpy()
        equal = model.calibrate(logits, "equal")[FUSED].numpy()
        labels = df["label"].to_numpy()
        p_malignant = referral.malignant_scores(training)
        results["splits"][name] = {
            "equal_prior": source_metrics(equal, labels, ood),
            "training_prior": training_prior_report(training, labels),
            "equal_prior_report": classification_report(equal, labels),
            "referral": referral.operating_point(p_malignant, labels, model.refer_threshold),
        }
        for source in sorted(set(df["source"])):
            inside = (df["source"] == source).to_numpy()
            results["by_source"][f"{source} ({name})"] = source_metrics(equal[inside], labels[inside], ood[inside])
    results["not_dermoscopy"] = not_dermoscopy_report(model, outliers)  # kept aside: the check
    results["not_dermoscopy_fitting_part"] = not_dermoscopy_report(model, outliers, part="fitting")
    if write_card:
        with model_card.model_folder(model_dir) as folder:
            card = model_card.read_card(folder)
            card["evaluation"] = results
            if "test" in results["splits"]:
                card["referral"]["test"] = results["splits"]["test"]["referral"]
            model_card.write_card(folder, card)
    return results


def _outputs_of_cached(model: SkinClassifier, data, mask: np.ndarray, batch_size: int = 4):
    """Member logits, embedding input and image statistics of cached images (already at the
    artifact's source size and colour balance, as ``prepare`` makes them)."""
    rows = np.flatnonzero(mask)
    logits, features, stats = [], [], []
    for start in range(0, len(rows), batch_size):
        idx = rows[start : start + batch_size]
        pixels = data.images[idx]
        lg, feats = model.member_outputs(pixels, data.meta[idx])
        logits.append(lg)
        features.append(member_embedding(feats))
        stats.append(image_statistics(pixels))
    return torch.cat(logits, dim=2), torch.cat(features), torch.cat(stats)
