"""Is resolution a shortcut? The held-out proxies of ``scripts.holdout_proxy`` trained with
BCN20000 (84x84 images of a hospital mix about half malignant), with and without the 84-px
augmentation, and without BCN20000 (the control), each scored on its own held-out source twice:
as the clinic made the images, and squashed to 84x84 and back as BCN20000's copy was made. A
model that learnt "blurry means Barcelona means malignant" raises P(malignant) on the squashed
copies of the same lesions more than the control does.

    python -m scripts.lowres_shortcut --data ../shared/data/ham10000 --data ../shared/data/isic2017 \
        --data ../shared/data/bcn20000

Writes <out>/lowres_shortcut.json and prints a markdown table.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
import torch
from safetensors.torch import load_file
from sklearn.metrics import roc_auc_score

from skin_model.inference.ensemble import calibrate, member_outputs
from skin_model.inference.network import SkinNet
from skin_model.inference.preprocess import SourceSize
from skin_model.inference.referral import MEL, is_malignant, malignant_scores
from skin_model.training.augment import squash_to_low_res
from skin_model.training.data import Dataset
from skin_model.training.holdout import load_all
from skin_model.training.recipe import Recipe
from skin_model.training.train import TTA_VIEWS, TrainConfig

RECIPES = Path(__file__).resolve().parents[1] / "recipes"


def squashed(data: Dataset) -> Dataset:
    """The same images squashed to 84x84 and back (``augment.squash_to_low_res``, as training does it)."""
    out = torch.empty_like(data.images)
    for start in range(0, len(data), 256):
        x = data.images[start : start + 256].float() / 255
        out[start : start + 256] = (squash_to_low_res(x) * 255).round().clamp(0, 255).to(torch.uint8)
    return Dataset(data.df, out)


def load_proxy(folder: Path) -> tuple[SkinNet, TrainConfig]:
    """A proxy run of issue 33 (made before the one epoch rule: its ``best.safetensors``)."""
    cfg = TrainConfig.from_json((folder / "config.json").read_text())
    net = SkinNet(cfg.arch, meta_hidden=cfg.meta_hidden)
    net.load_state_dict(load_file(str(folder / "best.safetensors")))
    return net.eval(), cfg


def score(net, cfg, data: Dataset) -> dict:
    """The fold model's own probabilities (temperature 1, no bias): the shift is the network's."""
    logits = member_outputs(net, cfg.inputs, data.images, data.meta, TTA_VIEWS)[0]
    probs = calibrate(logits[None], 1.0, torch.zeros(logits.shape[1])).numpy()
    labels = data.labels.numpy()
    malignant = malignant_scores(probs)
    return {
        "mean_p_malignant": float(malignant.mean()),
        "mean_p_melanoma": float(probs[:, MEL].mean()),
        "melanoma_auc": float(roc_auc_score(labels == MEL, probs[:, MEL])),
        "malignant_auc": float(roc_auc_score(is_malignant(labels), malignant)),
    }


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--data", type=Path, action="append", required=True)
    p.add_argument("--recipe", type=Path, default=RECIPES / "4.0.0.toml")
    p.add_argument("--out", type=Path, default=Path("runs/holdout"))
    p.add_argument("--variants", nargs="+", default=["sog", "sog_bcn", "sog_bcn_lowres"])
    p.add_argument("--sources", nargs="+", default=["isic2017", "rosendahl", "vidir_modern"])
    args = p.parse_args()
    torch.set_num_threads(2)
    data = load_all(Recipe.load(args.recipe), args.data, SourceSize(colour_constancy_p=6), args.out / "images_p6.npy")
    rows = []
    for source in args.sources:
        held_out = data.subset(data.df["source"].eq(source).to_numpy())
        low = squashed(held_out)
        for variant in args.variants:
            net, cfg = load_proxy(args.out / variant / f"without_{source}" / "proxy")
            native, small = score(net, cfg, held_out), score(net, cfg, low)
            rows.append({"variant": variant, "source": source, "native": native, "squashed": small})
            print(variant, source, native, small, flush=True)
    (args.out / "lowres_shortcut.json").write_text(json.dumps(rows, indent=2))
    print("| variant | held-out source | mean P(malignant) as made → squashed | melanoma AUC as made → squashed |")
    print("|---|---|---|---|")
    for r in rows:
        a, b = r["native"], r["squashed"]
        print(
            f"| {r['variant']} | {r['source']} | {a['mean_p_malignant']:.3f} → {b['mean_p_malignant']:.3f} "
            f"| {a['melanoma_auc']:.3f} → {b['melanoma_auc']:.3f} |"
        )
    for v in args.variants:
        mine = [r for r in rows if r["variant"] == v]
        shift = np.mean([r["squashed"]["mean_p_malignant"] - r["native"]["mean_p_malignant"] for r in mine])
        auc = np.mean([r["squashed"]["melanoma_auc"] for r in mine])
        print(f"{v}: mean shift of P(malignant) {shift:+.3f}, mean melanoma AUC squashed {auc:.3f}")


if __name__ == "__main__":
    main()
