"""The shipped model on a whole source it never saw, as a user's CLI run would score it.

    python -m scripts.unseen_source prepare ../shared/data/bcn20000 /tmp/bcn     # one image per lesion
    python -m skin_model predict /tmp/bcn/images --metadata /tmp/bcn/metadata.csv --out /tmp/bcn/pred.csv
    python -m scripts.unseen_source score /tmp/bcn/metadata.csv /tmp/bcn/pred.csv [--out FILE.json]

``prepare`` keeps each lesion's first image by ``image_id`` (a source with many images of one
lesion would otherwise weigh it many times) and links them into ``<out>/images``. ``score``
prints what the CLI's answers are worth there: the suggested diagnosis (``prediction``), the
ranking of the calibrated probabilities, the referral as the CLI states it (``refer``, which
includes the images it cannot judge), and the share flagged out of domain.
"""

from __future__ import annotations

import argparse
import json
import os
from pathlib import Path

import pandas as pd
from sklearn.metrics import roc_auc_score

from skin_model.inference.referral import MALIGNANT_OR_PREMALIGNANT


def prepare(data_dir: Path, out: Path) -> None:
    table = pd.read_csv(data_dir / "metadata.csv", dtype={"image_id": str})
    one = table.sort_values("image_id").groupby("lesion_id").head(1)
    files = {p.stem: p for p in (data_dir / "images").iterdir()}
    (out / "images").mkdir(parents=True, exist_ok=True)
    for image_id in one["image_id"]:
        link = out / "images" / files[image_id].name
        if not link.exists():
            os.symlink(files[image_id].resolve(), link)
    one.to_csv(out / "metadata.csv", index=False)
    print(f"{len(one)} lesions of {len(table)} images: {out}")


def score(metadata: Path, predictions: Path) -> dict:
    truth = pd.read_csv(metadata, dtype={"image_id": str})[["image_id", "dx"]]
    answers = pd.read_csv(predictions, dtype={"image_id": str})  # ids: file names without extension
    d = answers.merge(truth, on="image_id", validate="one_to_one")
    if len(d) != len(truth):
        raise SystemExit(f"{len(truth) - len(d)} images of {metadata} have no answer in {predictions}")
    unread = d["prediction"].isna() | d["malignant_probability"].isna()
    if unread.any():
        raise SystemExit(f"{unread.sum()} images could not be read by the CLI (see its 'error' column)")
    if set(d["prior"]) != {"training"}:  # the ranking is the calibrated probabilities', not the equal view
        raise SystemExit("score the CLI's default answers (--prior training)")
    mel, malignant = d["dx"].eq("mel"), d["dx"].isin(MALIGNANT_OR_PREMALIGNANT)
    recalls = [d["prediction"][d["dx"] == c].eq(c).mean() for c in sorted(d["dx"].unique())]
    return {
        "lesions (one image each)": len(d),
        "melanomas": int(mel.sum()),
        "melanoma AUC": roc_auc_score(mel, d["mel"]),
        "P(malignant) AUC": roc_auc_score(malignant, d["malignant_probability"]),
        "balanced accuracy (classes present)": sum(recalls) / len(recalls),
        "melanoma recall": d["prediction"][mel].eq("mel").mean(),
        "referred: malignant and pre-malignant": d["refer"][malignant].mean(),
        "referred: melanomas": d["refer"][mel].mean(),
        "not referred: benign": 1 - d["refer"][~malignant].mean(),
        "mean P(malignant)": d["malignant_probability"].mean(),
        "malignant share": malignant.mean(),
        "flagged out of domain": d["ood"].mean(),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="step", required=True)
    p = sub.add_parser("prepare")
    p.add_argument("data_dir", type=Path)
    p.add_argument("out", type=Path)
    s = sub.add_parser("score")
    s.add_argument("metadata", type=Path)
    s.add_argument("predictions", type=Path)
    s.add_argument("--out", type=Path, default=None, help="also write the figures here as JSON")
    args = parser.parse_args()
    if args.step == "prepare":
        prepare(args.data_dir, args.out)
    else:
        figures = score(args.metadata, args.predictions)
        for name, value in figures.items():
            print(f"{name}: {value:.3f}" if isinstance(value, float) else f"{name}: {value}")
        if args.out:
            args.out.parent.mkdir(parents=True, exist_ok=True)
            args.out.write_text(
                json.dumps({k: v if isinstance(v, int) else float(v) for k, v in figures.items()}, indent=1) + "\n"
            )


if __name__ == "__main__":
    main()
