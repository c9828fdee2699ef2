"""Probe: how much of ../shared/data/not_dermoscopy would the image-statistics half of the
out-of-domain check flag on its own, with statistics on the images' own colours (p=0) or on
Shades-of-Gray pixels (p=6), and with the threshold passing 97% of every source or of
HAM10000's clinics only? No network runs; nothing here feeds a shipped choice.

    python -m scripts.probe_ood_statistics      # ~1 min; needs runs/3.0.0/images.npy or decodes again
"""

from pathlib import Path

import numpy as np
import torch

from skin_model.inference.inputs import load_image
from skin_model.inference.ood import OodCheck, image_statistics
from skin_model.inference.preprocess import SourceSize
from skin_model.training.crossval import load_sources
from skin_model.training.data import find_images
from skin_model.training.recipe import Recipe

DATA = [Path("../shared/data/ham10000"), Path("../shared/data/isic2017")]
NOT_DERMOSCOPY = Path("../shared/data/not_dermoscopy")


def statistics(images: list[Path], source: SourceSize) -> torch.Tensor:
    return torch.cat(
        [
            image_statistics(torch.stack([source.to_uint8(load_image(p)) for p in images[k : k + 256]]))
            for k in range(0, len(images), 256)
        ]
    )


def main() -> None:
    recipe = Recipe.load("recipes/3.0.0.toml")
    data = load_sources(recipe, DATA, cache=Path("runs/3.0.0/images.npy"))
    table = data.df[data.df["split"].isin(["train", "check"])].reset_index(drop=True)
    paths = find_images(DATA)
    outside = sorted(NOT_DERMOSCOPY.glob("*/*.jpg"))
    categories = np.array([p.parent.name for p in outside])
    for p in (0, 6):
        source = SourceSize(150, 200, p)
        stats = statistics([paths[i] for i in table["image_id"]], source)
        check = OodCheck.fit(stats[table["split"].eq("train").to_numpy()])
        distance = check.statistics_distance(stats).numpy()
        per_source = {
            s: float(np.quantile(distance[(table["source"] == s).to_numpy()], 0.97, method="higher"))
            for s in sorted(set(table["source"]))
        }
        far = check.statistics_distance(statistics(outside, source)).numpy()
        for rule, threshold in (
            ("every source", max(per_source.values())),
            ("HAM10000's clinics", max(v for s, v in per_source.items() if s != "isic2017")),
        ):
            shares = {str(c): float((far[categories == c] > threshold).mean()) for c in sorted(set(categories))}
            print(f"p={p}, 97% of {rule} pass: all {(far > threshold).mean():.2f}", shares)


if __name__ == "__main__":
    main()
