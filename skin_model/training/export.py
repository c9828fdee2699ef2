"""Export of a cross-validated recipe: the fold models become the ensemble, and every choice
is made on their pooled out-of-fold predictions, never on the test split.

Choices, in order: the epoch (the epoch rule, ``calibration.calibrated_balanced_accuracy``,
on the pooled out-of-fold logits), then on the chosen epoch's out-of-fold logits with
test-time flips (``ensemble``): temperature and class biases (the ``training`` prior then means
HAM10000's frequencies), the equal prior as the plain Bayes correction from them, each prior's
uncertainty gap and out-of-fold answer, the referral threshold, and the
out-of-domain threshold (each source's out-of-fold or check images pass at the stated rate).
Test labels are never read here.
"""

from __future__ import annotations

import json
import logging
from dataclasses import asdict, replace
from datetime import date
from pathlib import Path

import numpy as np
import pandas as pd
import torch
from safetensors.torch import load_file, save_file

from skin_model import __version__, vocab
from skin_model.config import INDEX_FILE
from skin_model.inference.artifact import FORMAT, as_stored, save_artifact, save_index
from skin_model.inference.ensemble import calibrate, member_outputs
from skin_model.inference.inputs import load_image
from skin_model.inference.network import BACKBONES, SkinNet
from skin_model.inference.ood import OodCheck, image_statistics
from skin_model.inference.preprocess import SourceSize
from skin_model.inference.priors import PRIORS, apply_prior, class_frequencies
from skin_model.inference.referral import card_section as referral_section
from skin_model.inference.referral import malignant_scores
from skin_model.inference.similar import THUMB_SIZE, CaseIndex, member_embedding, thumbnail_jpeg
from skin_model.inference.uncertainty import choose_gap
from skin_model.training.calibration import calibrated_balanced_accuracy, fit_bias_temperature
from skin_model.training.crossval import fold_dir
from skin_model.training.data import Dataset, find_images, metadata_of
from skin_model.training.holdout import held_out_evidence
from skin_model.training.metrics import classification_report, training_prior_report
from skin_model.training.recipe import Recipe
from skin_model.training.splits import calibration_part, fold_parts, out_of_fold, outlier_parts

log = logging.getLogger(__name__)

SHORT_NAMES = {"ham10000": "HAM10000", "isic2017": "ISIC 2017", "bcn20000": "BCN20000"}
DATASETS = {
    "ham10000": "HAM10000 (working copy: 8,499 of its 10,015 images)",
    "isic2017": "ISIC 2017 (1,952 images; mel, bkl, nv)",
    "bcn20000": "BCN20000 (11,886 images of 3,538 lesions, 84x84 px)",
}
LICENCES = {
    "ham10000": "HAM10000: CC BY-NC-SA 4.0",
    "isic2017": "ISIC 2017: CC BY-NC or CC-0 per image",
    "bcn20000": "BCN20000: CC BY-NC 4.0",
}
CITATIONS = {
    "ham10000": "Tschandl P., Rosendahl C., Kittler H. The HAM10000 dataset, a large collection of multi-source "
    "dermatoscopic images of common pigmented skin lesions. Sci. Data 5, 180161 (2018). doi:10.1038/sdata.2018.161",
    "isic2017": "Codella N. et al. Skin lesion analysis toward melanoma detection: a challenge at the 2017 "
    "International Symposium on Biomedical Imaging (ISBI), hosted by the International Skin Imaging "
    "Collaboration (ISIC). ISBI 2018. arXiv:1710.05006",
    "bcn20000": "Combalia M. et al. BCN20000: Dermoscopic lesions in the wild. arXiv:1908.02288 (2019)",
}


def equal_prior(probs: torch.Tensor, frequencies: torch.Tensor) -> torch.Tensor:
    """The plain Bayes correction to the equal prior (strength 1: the bias took the loss's lean out)."""
    return apply_prior(probs, frequencies, PRIORS["equal"](frequencies), 1.0)


def starting_point(pretrained: bool, fold: int, start_from: dict | None) -> str:
    """The card's words for where a fold model's training started (``Recipe.start_from`` first)."""
    if start_from:
        return (
            f"model {start_from['model_version']}'s fold {fold} model "
            f"(model.safetensors sha256 {start_from['sha256'][:12]}…)"
        )
    return "ImageNet" if pretrained else "none (from scratch)"


def answers_by_prior(under: dict[str, torch.Tensor], labels: torch.Tensor) -> dict[str, dict]:
    """Balanced accuracy and melanoma recall of the top class of each prior's probabilities."""
    reports = {prior: classification_report(probs.numpy(), labels.numpy()) for prior, probs in under.items()}
    return {
        p: {"balanced_accuracy": r["balanced_accuracy"], "melanoma_recall": r["recall"]["mel"]}
        for p, r in reports.items()
    }


def oof_logits_by_epoch(run_root: Path, member: str, data: Dataset, folds: int) -> dict[int, torch.Tensor]:
    """Epoch -> pooled out-of-fold logits (N, classes), NaN where a row is in no fold."""
    out: dict[int, torch.Tensor] = {}
    for k in range(folds):
        rows = np.flatnonzero(fold_parts(data.df, k)[1])
        for path in sorted(fold_dir(run_root, member, k).glob("val_logits_*.safetensors")):
            epoch = int(path.stem.rsplit("_", 1)[1])
            pooled = out.setdefault(epoch, torch.full((len(data), len(vocab.CLASSES)), float("nan")))
            pooled[rows] = load_file(str(path))["logits"]
    return out


def choose_epoch(run_root: Path, member: str, data: Dataset, folds: int) -> tuple[int, dict[str, float]]:
    """The epoch rule: the epoch whose pooled out-of-fold logits score best by
    ``calibration.calibrated_balanced_accuracy`` (every fold must have reached it); ties: the earlier."""
    oof = torch.from_numpy(out_of_fold(data.df))
    labels = data.labels[oof]
    scores = {}
    for epoch, logits in sorted(oof_logits_by_epoch(run_root, member, data, folds).items()):
        logits = logits[oof]
        if torch.isnan(logits).any():
            continue  # not every fold has this epoch yet
        scores[str(epoch)] = calibrated_balanced_accuracy(logits, labels)
    if not scores:
        raise RuntimeError(f"no epoch of {member} has out-of-fold logits from every fold in {run_root}")
    best = max(scores, key=lambda e: (round(scores[e], 6), -int(e)))
    return int(best), scores


def unpack_artifact(model_dir: Path, recipe: Recipe, data: Dataset, run_root: Path) -> None:
    """An exported artifact's fold models back into a run folder, as training leaves them: each
    fold's config, its chosen epoch's weights and that epoch's validation logits (computed as
    training computes them). ``export_recipe`` then re-exports them with the current code."""
    from skin_model.inference.artifact import load_artifact
    from skin_model.training.train import TrainConfig

    nets, card = load_artifact(model_dir, check=False)  # an artifact of older code may not load whole
    for net, spec in zip(nets, card["members"]):
        member, k = spec["name"].rsplit("_fold", 1)
        if member not in {cfg.name for cfg in recipe.members} or int(k) != spec["fold"]:
            raise ValueError(f"{model_dir}: member {spec['name']} is not one of {recipe.path.name}'s fold models")
        cfg = TrainConfig(**{key: v for key, v in spec["training"].items() if key != "name"}, name=f"fold{k}")
        folder = fold_dir(run_root, member, int(k))
        folder.mkdir(parents=True, exist_ok=True)
        (folder / "config.json").write_text(json.dumps(asdict(cfg), indent=2))
        epoch = int(spec["epoch"])
        save_file(
            {k: v.contiguous() for k, v in net.state_dict().items()}, str(folder / f"epoch_{epoch:02d}.safetensors")
        )
        val = data.subset(fold_parts(data.df, int(k))[1])
        logits = member_outputs(net, cfg.inputs, val.images, val.meta)[0]
        save_file({"logits": logits.contiguous()}, str(folder / f"val_logits_{epoch:02d}.safetensors"))
        (folder / "done.json").write_text(json.dumps({"epochs": cfg.epochs, "unpacked_from": str(model_dir)}))
    log.info("unpacked %d fold models of %s into %s", len(nets), card["model_version"], run_root)


def load_fold_models(recipe: Recipe, run_root: Path, epochs: dict[str, int]) -> list[tuple[SkinNet, object, int]]:
    """(network, its TrainConfig with the member's name, fold) for each member and fold."""
    from skin_model.training.train import TrainConfig

    models = []
    for cfg in recipe.members:
        for k in range(recipe.folds):
            folder = fold_dir(run_root, cfg.name, k)
            trained = TrainConfig.from_json((folder / "config.json").read_text())
            net = SkinNet(trained.arch, meta_hidden=trained.meta_hidden)
            net.load_state_dict(load_file(str(folder / f"epoch_{epochs[cfg.name]:02d}.safetensors")))
            models.append((as_stored(net).eval(), replace(trained, name=f"{cfg.name}_fold{k}"), k))
    return models


def outputs(models, data: Dataset, views: tuple[str, ...]):
    """Per model: (fused logits (N, C), image features (N, F)), averaged over the views."""
    return [member_outputs(net, cfg.inputs, data.images, data.meta, views) for net, cfg, _ in models]


def natural_thumbnails(data: Dataset, data_dirs: list[Path], source: SourceSize) -> list[bytes]:
    """Thumbnails in the images' own colours (the model sees them colour-balanced, people do not)."""
    if not source.colour_constancy_p:
        return [thumbnail_jpeg(img) for img in data.images]
    paths = find_images(data_dirs)
    plain = replace(source, colour_constancy_p=0)
    return [thumbnail_jpeg(plain.to_uint8(load_image(paths[i]))) for i in data.df["image_id"]]


def outside_images(folder: Path, source: SourceSize) -> Dataset:
    """The fitting part of a folder of real images that are not dermoscopy (``splits.outlier_parts``;
    the other part is kept aside for the evaluation), decoded as an upload is, without metadata."""
    paths, _ = outlier_parts(folder)
    if not paths:
        raise FileNotFoundError(f"no images that are not dermoscopy below {folder} (<category>/*.jpg)")
    df = pd.DataFrame(
        {
            "image_id": [p.stem for p in paths],
            "label": -1,
            "age": np.nan,
            "sex": "unknown",
            "localization": "unknown",
            "category": [p.parent.name for p in paths],
        }
    )
    return Dataset(df, torch.stack([source.to_uint8(load_image(p)) for p in paths]))


def export_recipe(
    recipe: Recipe, data: Dataset, data_dirs: list[Path], run_root: Path, out_dir: Path, outliers: Path | None = None
) -> dict:
    """Write the artifact of a finished cross-validated run into ``out_dir``; returns its card.
    ``outliers``: a folder of real images that are not dermoscopy, needed when the recipe asks
    for outlier exposure."""
    if recipe.outlier_exposure and (outliers is None or not Path(outliers).is_dir()):
        raise FileNotFoundError(
            f"recipe {recipe.path.name} trains the out-of-domain check on real images that are not dermoscopy: "
            f"give their folder with --outliers (not found: {outliers})"
        )
    held_out = held_out_evidence(**recipe.held_out) if recipe.held_out else None  # read first: fails early
    df = data.df
    in_train = df["split"].eq("train").to_numpy(copy=True)
    in_check = df["split"].eq("check").to_numpy(copy=True)
    epochs, epoch_scores = {}, {}
    for cfg in recipe.members:
        epochs[cfg.name], epoch_scores[cfg.name] = choose_epoch(run_root, cfg.name, data, recipe.folds)
        log.info("%s: epoch %d chosen on pooled out-of-fold logits", cfg.name, epochs[cfg.name])
    models = load_fold_models(recipe, run_root, epochs)
    views = recipe.tta

    # Every model's logits and features on every image it may see here (training and check rows;
    # never a test row), with test-time flips.
    scored = data.subset(in_train | in_check)
    per_model = outputs(models, scored, views)
    features = member_embedding([f for _, f in per_model])  # as the predictor embeds an image
    # Out-of-fold logits: each fold row of every source through the fold model(s) that never saw it.
    in_scored_oof = out_of_fold(scored.df)
    oof = scored.subset(in_scored_oof)
    oof_logits = torch.zeros(len(oof), len(vocab.CLASSES))
    n_members = len(recipe.members)
    for (_, _, k), (logits, _) in zip(models, per_model):
        own = (oof.df["fold"] == k).to_numpy(copy=True)
        oof_logits[own] += logits[in_scored_oof][own] / n_members
    # Calibration, prior, answer, gap and referral threshold: on the calibration population's
    # out-of-fold images (splits.calibration_part); the other sources' are reported by the evaluation.
    calibrating = calibration_part(oof.df, recipe.sources)
    calibration_logits, labels = oof_logits[torch.from_numpy(calibrating)], oof.labels[torch.from_numpy(calibrating)]
    calibrated_on = ", ".join(SHORT_NAMES.get(f, f) for f in sorted(set(oof.df["folder"][calibrating])))
    frequencies = class_frequencies(labels, len(vocab.CLASSES))
    temperature, bias = fit_bias_temperature(calibration_logits, labels)
    calibrated = calibrate(calibration_logits[None], temperature, bias)
    # Every out-of-fold image's probabilities as the shipped pipeline computes them (tests check it).
    write_out_of_fold(Path(run_root) / OUT_OF_FOLD_FILE, oof.df, calibrate(oof_logits[None], temperature, bias))
    # The answer is the top class of the probabilities shown, under the prior they are stated in;
    # each prior's top class is reported (the equal prior's is the balanced decision) and has its gap.
    under = {"training": calibrated, "equal": equal_prior(calibrated, frequencies)}  # vocab.PRIOR_NAMES
    answers = answers_by_prior(under, labels)
    uncertainty = {prior: choose_gap(probs.numpy(), labels.numpy()) for prior, probs in under.items()}
    referral = referral_section(
        malignant_scores(calibrated.numpy()),
        labels.numpy(),
        chosen_on=f"pooled out-of-fold predictions ({len(labels)} images of {calibrated_on}, {recipe.folds} folds)",
        sensitivity=recipe.target_sensitivity,
    )

    # Similar cases and the out-of-domain check over every training image of every source.
    source = SourceSize(data.images.shape[-2], data.images.shape[-1], recipe.colour_constancy_p)
    in_scored_train = scored.df["split"].eq("train").to_numpy(copy=True)
    train = scored.subset(in_scored_train)
    cases = CaseIndex.build(
        features[in_scored_train],
        train.labels,
        list(train.df["dx_type"]),
        list(train.df["image_id"]),
        natural_thumbnails(train, data_dirs, source),
        [metadata_of(row) for row in train.df.itertuples()],
        list(train.df["lesion_id"]),
    )
    # The out-of-fold images are in the index: each is scored without its own lesion's images.
    in_scored_check = scored.df["split"].eq("check").to_numpy(copy=True)
    check = scored.subset(in_scored_check)
    ood_parts = {
        "out-of-fold": (features[in_scored_oof], image_statistics(oof.images), oof.df),
        "check": (features[in_scored_check], image_statistics(check.images), check.df),
    }
    outside = None
    if recipe.outlier_exposure:
        fitting = outside_images(outliers, source)
        outside = (member_embedding([f for _, f in outputs(models, fitting, views)]), image_statistics(fitting.images))
    ood_check = OodCheck.fit(image_statistics(train.images))
    # Other sources' training parts: every fold model trained on them, so they set no threshold;
    # the outlier classifier learns from them what their clinics' dermoscopy looks like.
    in_scored_other = (scored.df["split"].eq("train") & scored.df["fold"].lt(0)).to_numpy(copy=True)
    other = scored.subset(in_scored_other)
    ood = ood_check.calibrate_by_source(
        cases,
        {name: part for name, part in ood_parts.items() if len(part[2])},
        list(train.df["lesion_id"]),
        recipe.ood_pass_rate,
        outside=outside,
        also_inside=(features[in_scored_other], image_statistics(other.images), other.df) if len(other) else None,
    )
    if outside is not None:
        ood["outlier_exposure"]["outside_images_by_category"] = {
            str(c): int(n) for c, n in fitting.df["category"].value_counts().sort_index().items()
        }
        ood["outlier_exposure"]["split_rule"] = (
            "half of each category of not_dermoscopy, by a hash of the file name (splits.outlier_parts); "
            "the other half is kept aside for the evaluation and never trained on"
        )
    oof_report = classification_report(under["equal"].numpy(), labels.numpy())
    folders = sorted(set(df["folder"]))
    card = {
        "format": FORMAT,
        "name": f"skin_model multimodal ensemble ({' + '.join(SHORT_NAMES.get(f, f) for f in folders)}, cross-validated)",
        "model_version": recipe.model_version,
        "package_version": __version__,
        "created": date.today().isoformat(),
        "source": source.to_card(),
        "tta": {"views": list(views), "rule": "member logits averaged over the flipped views, one batch"},
        "vocabulary": vocab.vocabulary(),
        "members": [
            {
                "name": cfg.name,
                "architecture": cfg.arch,
                "meta_hidden": cfg.meta_hidden,
                "input": cfg.inputs.to_card(),
                "cam_layer": BACKBONES[cfg.arch].cam_layer,
                "temperature": temperature,
                "pretrained": starting_point(cfg.pretrained, k, recipe.start_from),
                "fold": k,
                "epoch": epochs[cfg.name.rsplit("_fold", 1)[0]],
                "training": asdict(cfg),
            }
            for _, cfg, k in models
        ],
        "ensemble": "softmax(mean of the fold models' logits / temperature + bias), then the prior correction",
        "temperature": temperature,
        "bias": {c: float(b) for c, b in zip(vocab.CLASSES, bias)},
        "calibration": "bias-corrected temperature scaling (one temperature, a bias per class), fitted on the "
        "pooled out-of-fold logits with test-time flips: under the training prior each class's mean "
        "probability matches its HAM10000 frequency",
        "prior": {
            "answer_rule": "the answer is the most probable class under the prior the probabilities are stated "
            "in: HAM10000's frequencies by default, the equal prior (the balanced decision) on request",
            "out_of_fold_answers": answers,
            "training_frequencies": {c: float(f) for c, f in zip(vocab.CLASSES, frequencies)},
            "equal_strength": 1.0,
            "rule": "p'(c|x) ~ p(c|x) * prior(c) / HAM10000 frequency(c): the plain Bayes correction "
            "(the bias has taken the class-weighted loss's lean out, so no strength is fitted)",
        },
        "uncertainty": {"by_prior": uncertainty},
        "referral": referral,
        "ood": ood,
        "similar_cases": {
            "source": "every training image of " + ", ".join(SHORT_NAMES.get(f, f) for f in folders),
            "count": len(cases.image_ids),
            "thumbnail": f"{THUMB_SIZE[0]}x{THUMB_SIZE[1]} JPEG, in the images' own colours",
            "file": INDEX_FILE,
            "licence": "; ".join(LICENCES[f] for f in folders if f in LICENCES),
        },
        "metadata_encoding": "age/100 and an age-missing flag, one-hot sex, one-hot site",
        "grad_cam": {
            "method": "LayerCAM (Jiang et al. 2021): activations weighed location by location by their positive "
            "gradient, averaged over the flipped views and the members",
            "layers": sorted({BACKBONES[cfg.arch].cam_layer for _, cfg, _ in models}),
            "chosen_on": "150 HAM10000 training images with lesion masks (never the test split): the share of "
            "the map's energy inside the mask (docs/model.md)",
        },
        "data": _data_section(recipe, data),
        "selection": {
            "epoch": epochs,
            "out_of_fold_balanced_accuracy_by_epoch": epoch_scores,
            "rule": "the epoch with the best pooled out-of-fold balanced accuracy (calibrated, equal prior); "
            "the ensemble is every fold model of every member",
        },
        "out_of_fold": {
            "n_images": len(labels),
            "calibrated_on": calibrated_on,
            "balanced_accuracy_equal_prior_tta": oof_report["balanced_accuracy"],
            "melanoma_recall_equal_prior_tta": oof_report["recall"]["mel"],
            "macro_auc": oof_report["macro_auc"],
            "training_prior": training_prior_report(calibrated.numpy(), labels.numpy()),
        },
        "recipe": {"file": str(recipe.path.name), "sha256": recipe.sha256, "content": recipe.raw},
        "intended_use": "Research and teaching demonstrator. Not a medical device; no substitute for a dermatologist.",
        "test_metrics": None,
    }
    if held_out:
        card["held_out_sources"] = held_out
    save_artifact(out_dir, [net for net, _, _ in models], card)
    save_index(out_dir, cases, ood_check)
    log.info("exported %d fold models to %s (T %.3f)", len(models), out_dir, temperature)
    return card


OUT_OF_FOLD_FILE = "out_of_fold.csv"  # in the run folder: each out-of-fold image's probabilities


def write_out_of_fold(path: Path, df: pd.DataFrame, probs: torch.Tensor) -> None:
    """The calibrated out-of-fold probabilities (under the training prior) with each image's id,
    fold and source: what every choice of export was made on."""
    table = df[["image_id", "fold", "source"]].reset_index(drop=True).copy()
    table[list(vocab.CLASSES)] = probs.numpy()
    table.to_csv(path, index=False, float_format="%.8f")


def _data_section(recipe: Recipe, data: Dataset) -> dict:
    df = data.df
    roles = {
        "folds (training and out-of-fold)": df["split"].eq("train") & df["fold"].ge(0),
        "in every fold's training": df["split"].eq("train") & df["fold"].lt(0),
        "check (never trained on)": df["split"].eq("check"),
        "test (scored once)": df["split"].eq("test"),
    }
    counts = {
        role: {
            "images": int(mask.sum()),
            "by_source": {s: int(n) for s, n in df[mask]["source"].value_counts().sort_index().items()},
            # Never the test split's labels: export does not read them (see the evaluation for those).
            **(
                {}
                if role.startswith("test")
                else {"per_class": {c: int(((df["label"] == i) & mask).sum()) for i, c in enumerate(vocab.CLASSES)}}
            ),
        }
        for role, mask in roles.items()
    }
    folders = sorted(set(df["folder"]))
    return {
        "dataset": " and ".join(DATASETS.get(f, f) for f in folders),
        "sources": sorted(set(df["source"])),
        "roles": {f: recipe.sources[f].to_card() for f in folders},
        "split_rule": "each data folder's role is declared in the recipe (skin_model/splits.py): lesion_file: a "
        "file of lesions gives the test split and the folds (a lesion absent from it is placed by a hash of its "
        "lesion_id); lesion_hash: every lesion in a fold by a hash of its lesion_id; own_parts: the source's "
        "published parts, each a role (train: in every fold's training; check: never trained on)",
        "label_spaces": "ISIC 2017 names 3 of the 7 diagnoses: its rows' loss is a softmax over those 3 only, so "
        "the other four are absent, not negative; its body site is 'unknown' for every row (the metadata "
        "branch sees it as a missing field, as metadata dropout trains it to)",
        "counts": counts,
        "licence": "; ".join(LICENCES[f] for f in folders if f in LICENCES) + " (non-commercial, with attribution)",
        "citation": " · ".join(CITATIONS[f] for f in folders if f in CITATIONS),
    }
