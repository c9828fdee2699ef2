"""The lesion finder's share outside the photo against the truth, on its validation fold.

    python -m scripts.finder_against_masks ../shared/data/ham10000 [--finder FILE]

Each image of the fold the finder never learnt is cut as ``scripts/quality_rates.py`` cuts it (the
right half kept, brought back to the photo's shape); its mask says how much of the lesion the copy
left out. Printed: where the copy leaves half the lesion outside (0.45-0.55), the median of the
network's estimate and of the share the check reads (``quality.framing``), and each one's
correlation with the truth over every copy (docs/model.md, "Image quality").
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
from PIL import Image

from scripts.quality_rates import DEGRADATIONS
from skin_model.inference import quality
from skin_model.inference.inputs import load_image
from skin_model.inference.lesion_finder import LesionFinder
from skin_model.training.data import find_images
from skin_model.training.lesion_finder import FinderRecipe, ham_parts


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("ham", type=Path, help="HAM10000's folder, with masks/")
    p.add_argument("--finder", type=Path, default=None, help="a lesion finder (default: the shipped one)")
    args = p.parse_args()
    finder = LesionFinder.load(args.finder)
    recipe = FinderRecipe(**{**finder.card["recipe"], "input_size": tuple(finder.input_size)})
    cut = DEGRADATIONS["lesion_cut_by_the_frame"][0]
    paths = find_images(args.ham)
    truth, network, read = [], [], []
    for image_id in ham_parts(args.ham, recipe)[1]:
        mask = np.asarray(Image.open(args.ham / "masks" / f"{image_id}_segmentation.png").convert("L")) > 127
        if not mask.any():
            continue
        truth.append(1 - mask[:, mask.shape[1] // 2 :].sum() / mask.sum())  # the left half is cut away
        lesions, outside = finder.find([np.asarray(quality.within_size(cut(load_image(paths[image_id]))))])
        network.append(float(outside[0]))
        read.append(quality.framing(lesions[0], outside[0], finder.thresholds["close_up_share"])[1])
    truth, network, read = map(np.array, (truth, network, read))
    half = (truth >= 0.45) & (truth <= 0.55)
    report = {"finder": finder.card["version"], "copies": len(truth), "copies_half_outside": int(half.sum())}
    for name, estimate in (("network", network), ("read_by_the_check", read)):
        report[name] = {
            "median_where_half_outside": round(float(np.median(estimate[half])), 3),
            "correlation_with_truth": round(float(np.corrcoef(truth, estimate)[0, 1]), 3),
        }
    print(json.dumps(report, indent=1))


if __name__ == "__main__":
    main()
