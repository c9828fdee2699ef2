"""Fold 0 of a recipe, trained by ``train.train_member`` in this process or, under torchrun, in
all of them: what ``test_distributed.py`` compares. Not a test module.

    [torchrun --standalone --nproc_per_node=N] python tests/ddp_fold.py RECIPE RUN LIMIT DATA [DATA ...]

LIMIT: train on fold 0's first LIMIT training images only (0: all of them), so that an epoch is a
known number of steps.
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np

from skin_model.training.crossval import load_sources
from skin_model.training.distributed import Distributed
from skin_model.training.recipe import Recipe
from skin_model.training.splits import fold_parts
from skin_model.training.train import Run, train_member


def main(recipe_path: str, run: str, limit: str, *data_dirs: str) -> None:
    recipe = Recipe.load(Path(recipe_path))
    dist = Distributed.from_environment("cpu")
    data = load_sources(recipe, [Path(d) for d in data_dirs])
    train, val = fold_parts(data.df, 0)
    if int(limit):
        train[np.flatnonzero(train)[int(limit) :]] = False
    cfg = recipe.members[0]
    try:
        train_member({"train": data.subset(train), "val": data.subset(val)}, Run(Path(run)), cfg, True, dist)
    finally:
        dist.close()


if __name__ == "__main__":
    main(*sys.argv[1:])
