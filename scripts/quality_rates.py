"""The image-quality check (``skin_model/inference/quality.py``): its thresholds and its rates.

    python -m scripts.quality_rates ../shared/data [--finder FILE] [--out runs/quality/rates.json] [--choose]

``--choose`` prints the sharpness and exposure thresholds at which neither warns on more than about
1% of the training images of any source the model learnt from (HAM10000's folds, the test split
never read; ISIC 2017's train part): each source's own quantile, the most lenient of them; to be
written into quality.py. (The framing thresholds are the lesion finder's, chosen by its export.)
Then, with the check as shipped (or ``--finder``): the share of each source's real dermoscopy that
gets a warning, and the share caught of the same images degraded three ways (blurred, darkened, the
lesion cut by the frame), on every source found:
HAM10000's images are the lesion finder's validation fold (it learnt the other folds' masks).
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
from skin_model.inference.lesion_finder import LesionFinder
from skin_model.training.data import find_images
from skin_model.training.lesion_finder import FinderRecipe, ham_parts
from skin_model.training.splits import read_lesion_split

REPO = Path(__file__).resolve().parents[1]
DEGRADATIONS = {
    "blurred": (lambda im: im.filter(ImageFilter.GaussianBlur(radius=0.015 * im.width)), ("blurred",)),
    "darkened": (lambda im: ImageEnhance.Brightness(im).enhance(0.3), ("too_dark",)),
    # the right half only, brought back to the photo's shape: a centred lesion is cut by the left border
    "lesion_cut_by_the_frame": (
        lambda im: im.crop((im.width // 2, 0, im.width, im.height)).resize(im.size, Image.Resampling.BICUBIC),
        ("lesion_cut_off", "lesion_too_small"),
    ),
}
EVERY = {"bcn20000": 4}  # BCN20000's 11,886 images: every 4th one for the degraded copies


def ham_training_folds(ham: Path) -> list[Path]:
    meta = pd.read_csv(ham / "HAM10000_metadata.csv")
    split = read_lesion_split(REPO / "splits" / "ham10000_lesions.csv").set_index("lesion_id")["split"]
    keep = meta[meta["lesion_id"].map(split).fillna("train").eq("train")]
    paths = find_images(ham)
    return [paths[i] for i in keep["image_id"] if i in paths]


def checked(paths: list[Path], finder: LesionFinder, transform=None, batch: int = 64) -> list[quality.Quality]:
    """``quality.check`` of each photo (``transform``ed), the finder run on a batch at a time."""
    out = []
    for i in range(0, len(paths), batch):
        images = [load_image(p) for p in paths[i : i + batch]]
        out.extend(quality.check_photos([quality.measure(transform(im) if transform else im) for im in images], finder))
    return out


def choose(data: Path, ham: list[Path]) -> None:
    isic = pd.read_csv(data / "isic2017" / "metadata.csv")
    isic_paths = find_images(data / "isic2017")
    train = [isic_paths[i] for i in isic.loc[isic["dataset"].eq("isic2017_train"), "image_id"]]
    values = [
        np.array([(m.sharpness, m.brightness) for m in map(quality.measure, map(load_image, ps))])
        for ps in (ham, train)
    ]
    print(f"MIN_SHARPNESS = {min(np.quantile(v[:, 0], 0.01) for v in values):.4f}")
    print(f"MIN_BRIGHTNESS = {min(np.quantile(v[:, 1], 0.005) for v in values):.1f}")
    print(f"MAX_BRIGHTNESS = {max(np.quantile(v[:, 1], 0.995) for v in values):.1f}")


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("data", type=Path, help="the folder holding ham10000/, isic2017/, ...")
    p.add_argument("--finder", type=Path, default=None, help="a lesion finder (default: the shipped one)")
    p.add_argument("--out", type=Path, default=None)
    p.add_argument("--choose", action="store_true")
    args = p.parse_args()
    if args.choose:
        choose(args.data, ham_training_folds(args.data / "ham10000"))
        return
    finder = LesionFinder.load(args.finder)
    recipe = FinderRecipe(**{**finder.card["recipe"], "input_size": tuple(finder.input_size)})
    ham = args.data / "ham10000"
    _, validation = ham_parts(ham, recipe)
    ham_paths = find_images(ham)
    sources = {"ham10000 (the lesion finder's validation fold)": [ham_paths[i] for i in validation]}
    for name in ("isic2017", "bcn20000", "ham10000_originals"):
        if (args.data / name).is_dir():
            sources[name] = sorted(find_images(args.data / name).values())
    report = {
        "thresholds": {
            **{k: getattr(quality, k) for k in ("MIN_SHARPNESS", "MIN_BRIGHTNESS", "MAX_BRIGHTNESS")},
            **finder.thresholds,
        },
        "lesion_finder": {k: finder.card[k] for k in ("version", "recipe_sha256", "trained_on")},
        "real_dermoscopy_warned": {},
        "degraded_caught": {},
    }
    for name, paths in sources.items():
        qs = checked(paths, finder)
        report["real_dermoscopy_warned"][name] = {
            "images": len(qs),
            "any": float(np.mean([not q.good for q in qs])),
            **{c: float(np.mean([c in q.problems for q in qs])) for c in quality.CHECKS},
        }
        sample = paths[:: EVERY.get(name, 1)]
        report["degraded_caught"][name] = {}
        for degradation, (transform, expected) in DEGRADATIONS.items():
            dq = checked(sample, finder, transform)
            report["degraded_caught"][name][degradation] = {
                "images": len(dq),
                "by_its_check": float(np.mean([any(c in q.problems for c in expected) for q in dq])),
                "any": float(np.mean([not q.good for q in dq])),
            }
        print(name, json.dumps(report["real_dermoscopy_warned"][name]), json.dumps(report["degraded_caught"][name]))
    print(json.dumps(report, indent=1))
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps(report, indent=1) + "\n")


if __name__ == "__main__":
    main()
