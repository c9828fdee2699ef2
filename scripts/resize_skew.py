"""Where a full-size upload's answer parts from its 200x150 training copy's (issue 43).

Two measures on ``ham10000_originals`` (600x450 originals, each also in ``ham10000/images``):
1. ``pixels``: each way of bringing an original to 200x150 (resampling filter, then JPEG at a
   quality, or none) against the copy, pixel by pixel (PSNR in dB; median and minimum);
2. ``answers``: the model's answer (verdict, P(malignant), suggested diagnosis, out-of-domain
   flag) for the original brought to size each way, against its answer for the copy.

    python -m scripts.resize_skew ../shared/data/ham10000_originals --copies ../shared/data/ham10000/images \
        [--model DIR] [--out runs/skew/skew.json]
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
import pandas as pd
from PIL import Image

from skin_model.inference.preprocess import jpeg_round_trip

FILTERS = {
    "nearest": Image.Resampling.NEAREST,
    "box": Image.Resampling.BOX,
    "bilinear": Image.Resampling.BILINEAR,
    "hamming": Image.Resampling.HAMMING,
    "bicubic": Image.Resampling.BICUBIC,
    "lanczos": Image.Resampling.LANCZOS,
}
QUALITIES = (None, 70, 75, 80, 90, 95)
APP_WAY = "the app now (load_image, then the card's resize: bicubic + JPEG 75)"


def psnr(a: np.ndarray, b: np.ndarray) -> float:
    mse = float(((a.astype(np.float64) - b.astype(np.float64)) ** 2).mean())
    return 10 * np.log10(255**2 / max(mse, 1e-10))


def brought_to_size(img: Image.Image, size: tuple[int, int], method: str, quality: int | None) -> Image.Image:
    small = img.resize(size, FILTERS[method])
    return small if quality is None else jpeg_round_trip(small, quality)


def pixel_table(pairs: list[tuple[Image.Image, Image.Image]]) -> list[dict]:
    rows = []
    for method in FILTERS:
        for quality in QUALITIES:
            values = [psnr(np.asarray(brought_to_size(o, c.size, method, quality)), np.asarray(c)) for o, c in pairs]
            rows.append(
                {
                    "resample": method,
                    "jpeg_quality": quality,
                    "psnr_median": float(np.median(values)),
                    "psnr_min": float(np.min(values)),
                }
            )
    return sorted(rows, key=lambda r: -r["psnr_median"])


def answer_table(pairs, metadata: pd.DataFrame, model_dir: Path | None, ways: dict) -> dict:
    """Each way of bringing the originals to size against the copies, through the model's answer."""
    import skin_model
    from skin_model.inference.inputs import load_image
    from skin_model.inference.predictor import Prepared

    model = skin_model.load_model(model_dir)

    def answers(images: list[Image.Image]) -> list:
        prepared = [
            Prepared(
                img, model.source.to_uint8(img).unsqueeze(0), model.prepare(img, r.age, r.sex, r.localization).metadata
            )
            for img, r in zip(images, metadata.itertuples())
        ]
        # in batches: each call to the model is bounded in time (torch_thread)
        return [pred for i in range(0, len(prepared), 16) for pred in model.predict_prepared(prepared[i : i + 16])]

    copies = answers([load_image(c) for _, c in pairs])
    table = {}
    for name, bring in ways.items():
        preds = answers([load_image(bring(o)) for o, _ in pairs])
        delta = np.abs([p.malignant_probability - c.malignant_probability for p, c in zip(preds, copies)])
        table[name] = {
            "mean_abs_delta_p_malignant": float(delta.mean()),
            "max_abs_delta_p_malignant": float(delta.max()),
            "verdicts_agree": float(np.mean([p.verdict == c.verdict for p, c in zip(preds, copies)])),
            "suggested_diagnoses_agree": float(np.mean([p.label == c.label for p, c in zip(preds, copies)])),
            "ood_flagged": float(np.mean([p.ood for p in preds])),
            "referred": float(np.mean([p.refer is True for p in preds])),  # cannot judge: refer is None
        }
    others = [table[name] for name in ways if name != APP_WAY]
    # How indifferent the model is to the way (issue 43's training side): the other ways, pooled.
    table["other ways, mean"] = {
        key: float(np.mean([row[key] for row in others]))
        for key in ("mean_abs_delta_p_malignant", "verdicts_agree", "suggested_diagnoses_agree", "ood_flagged")
    }
    table["copy"] = {
        "ood_flagged": float(np.mean([c.ood for c in copies])),
        "referred": float(np.mean([c.refer is True for c in copies])),
    }
    return table


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("originals", type=Path)
    parser.add_argument("--copies", type=Path, required=True)
    parser.add_argument("--model", type=Path, default=None)
    parser.add_argument("--out", type=Path, default=None)
    args = parser.parse_args(argv)
    metadata = pd.read_csv(args.originals / "metadata.csv")
    pairs = [
        (
            Image.open(args.originals / "images" / f"{i}.jpg").convert("RGB"),
            Image.open(args.copies / f"{i}.jpg").convert("RGB"),
        )
        for i in metadata["image_id"]
    ]
    ways = {
        "bilinear (the app before issue 43)": lambda o: brought_to_size(o, (200, 150), "bilinear", None),
        "bicubic": lambda o: brought_to_size(o, (200, 150), "bicubic", None),
        "lanczos": lambda o: brought_to_size(o, (200, 150), "lanczos", None),
        "box (area)": lambda o: brought_to_size(o, (200, 150), "box", None),
        "nearest": lambda o: brought_to_size(o, (200, 150), "nearest", None),
        "bilinear + JPEG 75": lambda o: brought_to_size(o, (200, 150), "bilinear", 75),
        "lanczos + JPEG 90": lambda o: brought_to_size(o, (200, 150), "lanczos", 90),
        APP_WAY: lambda o: o,
    }
    result = {
        "images": len(pairs),
        "pixels": pixel_table(pairs),
        "answers": answer_table(pairs, metadata, args.model, ways),
    }
    text = json.dumps(result, indent=2)
    print(json.dumps(result["pixels"][:6], indent=1))
    print(json.dumps(result["answers"], indent=1))
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(text + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
