"""Where the Grad-CAM looks (not a unit test): the share of the heatmap's energy inside the
lesion's mask, on HAM10000's test split (never used for a choice), beside the mask's area.

    python benchmarks/gradcam_mask.py [--data ../shared/data/ham10000] [--limit N] [--targets predicted malignant]

Targets: ``predicted`` (the suggested diagnosis, the map the app shows first) and
``malignant`` (the referral's score, what the verdict reads; the selector offers it).
Each image is explained as the app explains it (``SkinClassifier.diagnose``, with its metadata),
at the mask's size. Prints the mean energy share per target, the mean mask area, and the share
of images whose energy share beats their mask's area (a map spread evenly would equal it).
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np
import pandas as pd
from PIL import Image

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))


def test_images(data_dir: Path, limit: int | None) -> pd.DataFrame:
    """The test split's images that have a mask, in a fixed order (by image id)."""
    from skin_model.training.data import read_metadata
    from skin_model.training.splits import read_lesion_split

    meta = read_metadata(data_dir / "HAM10000_metadata.csv")
    place = read_lesion_split(REPO / "splits" / "ham10000_lesions.csv").set_index("lesion_id")["split"]
    test = meta[meta["lesion_id"].map(place) == "test"].sort_values("image_id")
    test = test[[(data_dir / "masks" / f"{i}_segmentation.png").exists() for i in test["image_id"]]]
    return test.head(limit) if limit else test


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", type=Path, default=REPO.parent / "shared" / "data" / "ham10000")
    parser.add_argument("--limit", type=int, default=None, help="the first N test images (by id); default all")
    parser.add_argument("--targets", nargs="+", default=["predicted", "malignant"])
    args = parser.parse_args()
    import skin_model
    from skin_model.training.data import find_images, metadata_of

    model = skin_model.load_model()
    rows = test_images(args.data, args.limit)
    paths = find_images(args.data)
    energy = {t: [] for t in args.targets}
    area = []
    for row in rows.itertuples():
        mask = np.asarray(Image.open(args.data / "masks" / f"{row.image_id}_segmentation.png").convert("L")) > 127
        meta = metadata_of(row)
        area.append(float(mask.mean()))
        size = (mask.shape[1], mask.shape[0])
        for target in args.targets:
            _, cam = model.diagnose(
                paths[row.image_id],
                meta.age,
                meta.sex,
                meta.site,
                target=None if target == "predicted" else target,
                heatmap_size=size,
            )
            energy[target].append(float((cam.heatmap * mask).sum() / max(float(cam.heatmap.sum()), 1e-12)))
    area = np.array(area)
    report = {
        "images": len(area),
        "mean_mask_area_share": float(area.mean()),
        "targets": {
            t: {
                "mean_energy_in_mask": float(np.mean(e)),
                "median_energy_in_mask": float(np.median(e)),
                "share_of_images_energy_above_area": float((np.array(e) > area).mean()),
            }
            for t, e in energy.items()
        },
    }
    print(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
