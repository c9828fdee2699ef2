"""The image-quality check (``skin_model/inference/quality.py``): its thresholds and its rates.

    python -m scripts.quality_rates ../shared/data [--out runs/quality/rates.json] [--choose]

``--choose`` prints the thresholds at which no check warns on more than about 1% of the training
images of any source the model learnt from (HAM10000's folds, the test split never read; ISIC
2017's train part): each source's own quantile, the most lenient of them; to be written into
quality.py.
Then, with the thresholds in quality.py: the share of each source's real dermoscopy that gets a
warning (every source found: HAM10000 training folds, ISIC 2017, BCN20000, the full-size originals),
and the share caught of the same HAM10000 images degraded three ways (blurred, darkened, the lesion
cropped off by the frame).
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
import pandas as pd
from PIL import Image, ImageEnhance, ImageFilter

from skin_model.inference import quality
from skin_model.inference.inputs import load_image
from skin_model.training.data import find_images
from skin_model.training.splits import read_lesion_split

REPO = Path(__file__).resolve().parents[1]
DEGRADATIONS = {
    "blurred": (lambda im: im.filter(ImageFilter.GaussianBlur(radius=0.015 * im.width)), ("blurred",)),
    "darkened": (lambda im: ImageEnhance.Brightness(im).enhance(0.3), ("too_dark",)),
    # the right half only, brought back to 4:3: a centred lesion is cut by the left border
    "lesion_cropped_off": (
        lambda im: im.crop((im.width // 2, 0, im.width, im.height)).resize(im.size, Image.Resampling.BICUBIC),
        ("lesion_cut_off", "lesion_too_small"),
    ),
}


QUALITY_KEYS = ("sharpness", "brightness", "lesion_share", "off_centre")


def ham_training_folds(ham: Path) -> list[Path]:
    meta = pd.read_csv(ham / "HAM10000_metadata.csv")
    split = read_lesion_split(REPO / "splits" / "ham10000_lesions.csv").set_index("lesion_id")["split"]
    keep = meta[meta["lesion_id"].map(split).fillna("train").eq("train")]
    paths = find_images(ham)
    return [paths[i] for i in keep["image_id"] if i in paths]


def one_sided_contact(mask: np.ndarray) -> float:
    """How much more of one side of the frame a mask touches than of the opposite side (0 to 1):
    a lesion cut by the frame lies along one side; a large one fills the frame on all sides."""
    left, right = mask[:, :2].any(1).mean(), mask[:, -2:].any(1).mean()
    top, bottom = mask[:2].any(0).mean(), mask[-2:].any(0).mean()
    return float(max(abs(left - right), abs(top - bottom)))


def framing_rule(real: list[np.ndarray], cut: list[np.ndarray]) -> dict:
    """Lesion masks of real images and of their cut copies -> thresholds at the real images' 99%
    quantile: the centroid alone, and the centroid or a one-sided contact with the frame; the real
    images each warns on and the cut copies it catches."""
    real_m = np.array([(quality.off_centre(m), one_sided_contact(m)) for m in real])
    cut_m = np.array([(quality.off_centre(m), one_sided_contact(m)) for m in cut])
    centre, side = np.quantile(real_m, 0.99, axis=0)
    either = lambda m: (m[:, 0] > centre) | (m[:, 1] > side)  # noqa: E731
    return {
        "images": len(real),
        "off_centre_threshold_at_real_99pct": float(centre),
        "cut_copies_caught": float(np.mean(cut_m[:, 0] > centre)),
        "one_sided_contact_threshold_at_real_99pct": float(side),
        "off_centre_or_one_sided_contact": {
            "real_warned": float(np.mean(either(real_m))),
            "cut_copies_caught": float(np.mean(either(cut_m))),
        },
    }


def with_the_masks(ham: Path, sample: list[Path]) -> dict:
    """The cut-by-the-frame check's ceiling: the dermatologists' lesion masks in place of the
    estimate (``framing_rule``), beside the same rule on the estimate of the same images."""
    crop = DEGRADATIONS["lesion_cropped_off"][0]
    real, cut, estimated, estimated_cut = [], [], [], []
    for path in sample:
        mask_path = ham / "masks" / f"{path.stem}_segmentation.png"
        if not mask_path.exists():
            continue
        mask = Image.open(mask_path).convert("L").resize(quality.SIZE)
        real.append(np.asarray(mask) > 127)
        cut.append(np.asarray(crop(mask)) > 127)
        image = load_image(path)
        estimated.append(quality.lesion_estimate(image))
        estimated_cut.append(quality.lesion_estimate(crop(image)))
    touching = [bool(m[:, :2].any() or m[:, -2:].any() or m[:2].any() or m[-2:].any()) for m in real]
    return {
        **framing_rule(real, cut),
        "real_lesions_touching_the_frame": float(np.mean(touching)),
        "the_same_on_the_estimate": framing_rule(estimated, estimated_cut),
    }


def measures(paths: list[Path], transform=None) -> list[quality.Quality]:
    out = []
    for p in paths:
        image = load_image(p)
        out.append(quality.assess(transform(image) if transform else image))
    return out


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("data", type=Path, help="the folder holding ham10000/, isic2017/, ...")
    p.add_argument("--out", type=Path, default=None)
    p.add_argument("--choose", action="store_true")
    args = p.parse_args()
    ham = ham_training_folds(args.data / "ham10000")
    ham_q = measures(ham)
    if args.choose:
        isic = pd.read_csv(args.data / "isic2017" / "metadata.csv")
        isic_paths = find_images(args.data / "isic2017")
        train = measures([isic_paths[i] for i in isic.loc[isic["dataset"].eq("isic2017_train"), "image_id"]])
        by_source = [ham_q, train]
        values = [{k: np.array([getattr(q, k) for q in qs]) for k in QUALITY_KEYS} for qs in by_source]

        def lenient(key: str, share: float, low: bool) -> float:
            quantiles = [np.quantile(v[key], share if low else 1 - share) for v in values]
            return min(quantiles) if low else max(quantiles)

        print(f"MIN_SHARPNESS = {lenient('sharpness', 0.01, True):.4f}")
        print(f"MIN_BRIGHTNESS = {lenient('brightness', 0.005, True):.1f}")
        print(f"MAX_BRIGHTNESS = {lenient('brightness', 0.005, False):.1f}")
        print(f"MIN_LESION_SHARE = {lenient('lesion_share', 0.01, True):.4f}")
        print(f"MAX_OFF_CENTRE = {lenient('off_centre', 0.01, False):.3f}")
        return
    sources = {"ham10000 (training folds)": ham_q}
    for name in ("isic2017", "bcn20000", "ham10000_originals"):
        if (args.data / name).is_dir():
            sources[name] = measures(sorted(find_images(args.data / name).values()))
    report = {
        "thresholds": {
            k: getattr(quality, k)
            for k in ("MIN_SHARPNESS", "MIN_BRIGHTNESS", "MAX_BRIGHTNESS", "MIN_LESION_SHARE", "MAX_OFF_CENTRE")
        }
    }
    report["real_dermoscopy_warned"] = {
        name: {
            "images": len(qs),
            "any": float(np.mean([not q.good for q in qs])),
            **{c: float(np.mean([c in q.problems for q in qs])) for c in quality.CHECKS},
        }
        for name, qs in sources.items()
    }
    sample = ham[:: max(1, len(ham) // 1000)]  # about 1,000 training-fold images, degraded
    report["degraded_caught"] = {}
    for name, (transform, expected) in DEGRADATIONS.items():
        qs = measures(sample, transform)
        report["degraded_caught"][name] = {
            "images": len(qs),
            "by_its_check": float(np.mean([any(c in q.problems for c in expected) for q in qs])),
            "any": float(np.mean([not q.good for q in qs])),
        }
    if (args.data / "ham10000" / "masks").is_dir():
        report["cut_off_with_the_masks"] = with_the_masks(args.data / "ham10000", sample)
    print(json.dumps(report, indent=1))
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps(report, indent=1) + "\n")


if __name__ == "__main__":
    main()
