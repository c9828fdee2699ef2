"""What fewer test-time views would cost: a run's fold models on their own out-of-fold images,
scored with each subset of the flips, each subset calibrated and given a referral threshold as
export does (the calibration part of the out-of-fold images; the test split is never read).

    python -m scripts.tta_cost --recipe recipes/3.1.0.toml --run ../runs/3.1.0 \
        --data ../shared/data/ham10000 --data ../shared/data/isic2017 \
        [--unseen ../shared/data/bcn20000] [--out runs/tta_cost.json]

``--unseen``: also a whole source the model never saw (one image per lesion), scored by the
ensemble of the fold models as shipped, each subset with its own out-of-fold calibration and
threshold. The fold models' epoch is the shipped card's (``--card``). Time per view: benchmarks/.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import torch

from skin_model import vocab
from skin_model.config import PACKAGE_DIR
from skin_model.inference.ensemble import calibrate, member_outputs
from skin_model.inference.network import FLIPS
from skin_model.inference.priors import class_frequencies
from skin_model.inference.referral import card_section, malignant_scores, operating_point
from skin_model.training.calibration import fit_bias_temperature
from skin_model.training.crossval import load_sources, source_size
from skin_model.training.data import Dataset, find_metadata_csv, read_metadata
from skin_model.training.export import equal_prior, load_fold_models
from skin_model.training.metrics import classification_report, source_report
from skin_model.training.recipe import Recipe
from skin_model.training.splits import calibration_part, out_of_fold

SUBSETS = (("identity",), ("identity", "hflip"), ("identity", "vflip"), tuple(FLIPS))


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--recipe", type=Path, required=True)
    p.add_argument("--run", type=Path, required=True)
    p.add_argument("--data", type=Path, action="append", required=True)
    p.add_argument("--card", type=Path, default=PACKAGE_DIR / "model" / "model_card.json")
    p.add_argument("--unseen", type=Path, default=None, help="a source the model never saw")
    p.add_argument("--out", type=Path, default=None)
    args = p.parse_args()
    recipe = Recipe.load(args.recipe)
    data = load_sources(recipe, args.data, cache=args.run / "images.npy")
    card = json.loads(args.card.read_text())
    epochs = {m["name"].rsplit("_fold", 1)[0]: int(m["epoch"]) for m in card["members"]}
    oof = data.subset(out_of_fold(data.df))
    # Each view's fused logits, each image through the fold model(s) that never saw it.
    per_view = {v: torch.zeros(len(oof), len(vocab.CLASSES)) for v in FLIPS}
    models = load_fold_models(recipe, args.run, epochs)
    unseen = unseen_views(args.unseen, source_size(recipe), models) if args.unseen else None
    for net, cfg, k in models:
        own = torch.from_numpy((oof.df["fold"] == k).to_numpy(copy=True))
        part = oof.subset(own.numpy())
        for view in FLIPS:
            logits = member_outputs(net, cfg.inputs, part.images, part.meta, (view,))[0]
            per_view[view][own] += logits / len(recipe.members)
    calibrating = torch.from_numpy(calibration_part(oof.df, recipe.sources))
    labels = oof.labels[calibrating]
    report, unseen_report = {}, {}
    for views in SUBSETS:
        logits = torch.stack([per_view[v] for v in views]).mean(0)[calibrating]
        temperature, bias = fit_bias_temperature(logits, labels)
        probs = calibrate(logits[None], temperature, bias)
        scores = malignant_scores(probs.numpy())
        referral = card_section(scores, labels.numpy(), "out of fold", recipe.target_sensitivity)
        shown = source_report(probs.numpy(), labels.numpy())  # as the shipping rule reads them
        equal = equal_prior(probs, class_frequencies(labels, len(vocab.CLASSES)))
        report["+".join(views)] = {
            "referral_sensitivity": referral["validation"]["sensitivity"],
            "referral_specificity": referral["validation"]["specificity"],
            "answer_balanced_accuracy": shown["balanced_accuracy_present"],
            "equal_prior_balanced_accuracy": classification_report(equal.numpy(), labels.numpy())["balanced_accuracy"],
            "melanoma_auc": shown["melanoma_auc"],
        }
        print("+".join(views), {k: round(v, 4) for k, v in report["+".join(views)].items()}, flush=True)
        if unseen is not None:
            scored, unseen_logits = unseen
            probs = calibrate(torch.stack([unseen_logits[v] for v in views]).mean(0)[None], temperature, bias)
            point = operating_point(malignant_scores(probs.numpy()), scored.labels.numpy(), referral["threshold"])
            shown = source_report(probs.numpy(), scored.labels.numpy())
            unseen_report["+".join(views)] = {
                "referral_sensitivity": point["sensitivity"],
                "referral_specificity": point["specificity"],
                "malignant_auc": point["auc"],
                "answer_balanced_accuracy": shown["balanced_accuracy_present"],
                "melanoma_auc": shown["melanoma_auc"],
            }
            print("  unseen:", {k: round(v, 4) for k, v in unseen_report["+".join(views)].items()}, flush=True)
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        found = {"images": int(calibrating.sum()), "by_views": report}
        if unseen is not None:
            found["unseen"] = {"source": args.unseen.name, "images": len(unseen[0]), "by_views": unseen_report}
        args.out.write_text(json.dumps(found, indent=1) + "\n")


def unseen_views(folder: Path, source, models) -> tuple[Dataset, dict[str, torch.Tensor]]:
    """A source the model never saw, one image per lesion (its first by ``image_id``), decoded as
    an upload is; each view's fused logits averaged over the fold models, as the ensemble does."""
    table = read_metadata(find_metadata_csv(folder)).sort_values("image_id").groupby("lesion_id").head(1)
    scored = Dataset.load(table, folder, source)
    per_view = {}
    for view in FLIPS:
        per_view[view] = sum(
            member_outputs(net, cfg.inputs, scored.images, scored.meta, (view,))[0] for net, cfg, _ in models
        ) / len(models)
    return scored, per_view


if __name__ == "__main__":
    main()
