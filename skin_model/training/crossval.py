"""Cross-validated training: each member of a recipe, once per fold.

Fold k trains on the other folds' lesions and on the rows in every fold's training (a source's
own training part), and scores fold k's lesions after every epoch (its out-of-fold logits).
Pooled over the folds, those logits cover every lesion that sits in a fold once, with a model
that never saw it: every later choice (epoch, temperature, prior, thresholds) is made on them.
Who sits where is declared in the recipe (``splits``).

Run layout: ``<run>/<member>/fold<k>/`` (a ``train.Run`` each), and ``<run>/recipe.toml``
(the recipe, with its lesion files' sha256 in the card).
"""

from __future__ import annotations

import hashlib
import json
import logging
import shutil
from dataclasses import asdict
from pathlib import Path

import numpy as np
import torch

from skin_model.inference.preprocess import SourceSize
from skin_model.training.data import Dataset, find_images, read_sources
from skin_model.training.recipe import Recipe
from skin_model.training.splits import assign, fold_parts

log = logging.getLogger(__name__)


def load_sources(recipe: Recipe, data_dirs: list[Path], cache: Path | None = None) -> Dataset:
    """Every image of every source (test included: it is only ever scored), decoded once at the
    recipe's source size and colour balance, with ``split`` and ``fold`` columns."""
    return decode_sources(recipe, data_dirs, source_size(recipe), cache)


def source_size(recipe: Recipe) -> SourceSize:
    """The size and colour balance every image is decoded at for the recipe's members."""
    return SourceSize.for_inputs(max(m.height for m in recipe.members), recipe.colour_constancy_p)


def decode_sources(recipe: Recipe, data_dirs: list[Path], source: SourceSize, cache: Path | None = None) -> Dataset:
    """``load_sources`` at a given source size (the held-out-source harness decodes once for
    several variants); ``cache``: a ``.npy`` of the decoded images, reused when it matches."""
    df = assign(read_sources(data_dirs), recipe.sources, recipe.folds)
    key = cache_key(df, data_dirs, source)
    stamp = None if cache is None else cache.with_suffix(".key")
    if cache is not None and cache.exists() and stamp.exists() and stamp.read_text() == key:
        return Dataset(df, torch.from_numpy(np.load(cache, allow_pickle=False)))
    if cache is not None and cache.exists():
        log.info("%s was decoded from other images or with other settings: decoding again", cache)
    data = Dataset.load(df, data_dirs, source)
    if cache is not None:
        cache.parent.mkdir(parents=True, exist_ok=True)
        np.save(cache, data.images.numpy(), allow_pickle=False)
        stamp.write_text(key)
    return data


def cache_key(df, data_dirs: list[Path], source: SourceSize) -> str:
    """What the decoded images depend on: the preprocessing (size, colour balance, resampling)
    and each image file's id and bytes, in the data's order."""
    paths = find_images(data_dirs)
    digest = hashlib.sha256(json.dumps(asdict(source), sort_keys=True).encode())
    for image_id in df["image_id"]:
        digest.update(image_id.encode() + b"\0" + hashlib.sha256(paths[image_id].read_bytes()).digest())
    return digest.hexdigest()


def fold_dir(run_root: Path, member: str, k: int) -> Path:
    return Path(run_root) / member / f"fold{k}"


def train_folds(
    recipe: Recipe, data: Dataset, run_root: Path, resume: bool = True, dist=None, start: Path | None = None
) -> None:
    """Every (member, fold) not yet finished, in order; each resumes from its checkpoint. ``dist``:
    this process's place among the run's processes (``distributed.Distributed``; default: alone).
    ``start``: the artifact the recipe's ``start_from`` names; fold k starts from its fold k model."""
    from skin_model.training.train import ONE_PROCESS, Run, train_member

    dist = dist or ONE_PROCESS
    run_root = Path(run_root)
    if dist.main:
        run_root.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(recipe.path, run_root / "recipe.toml")
    dist.barrier()
    starts = start_weights(recipe, start)
    for cfg in recipe.members:
        for k in range(recipe.folds):
            member_dir = fold_dir(run_root, cfg.name, k)
            if (member_dir / "done.json").exists():
                continue
            train, val = fold_parts(data.df, k)
            log.info("%s fold %d: %d training images, %d out-of-fold", cfg.name, k, train.sum(), val.sum())
            run = Run(member_dir.parent)
            begin = starts.get(f"{cfg.name}_fold{k}")  # None: from ImageNet, when the recipe starts from none
            if recipe.start_from and begin is None:
                raise ValueError(f"{start} has no fold model {cfg.name}_fold{k} to start from")
            split = {"train": data.subset(train), "val": data.subset(val)}
            train_member(split, run, _named(cfg, k), resume, dist, start=begin)


def start_weights(recipe: Recipe, artifact: Path | None) -> dict[str, dict]:
    """The fold models' weights of the artifact that ``recipe.start_from`` names, by member name
    (``<member>_fold<k>``), after checking its version and weights' sha256; {} when it names none.
    A fold model of that artifact never saw its fold's lesions, so the out-of-fold logits stay so."""
    if not recipe.start_from:
        return {}
    wanted = recipe.start_from
    if artifact is None:
        raise ValueError(
            f"{recipe.path.name} starts from model {wanted['model_version']}: name its artifact folder with "
            "--start-from DIR (e.g. skin_model/model of the commit that shipped it)"
        )
    from skin_model.inference.artifact import load_artifact

    weights = Path(artifact) / "model.safetensors"
    found = hashlib.sha256(weights.read_bytes()).hexdigest() if weights.exists() else "no model.safetensors"
    if found != wanted["sha256"]:
        raise ValueError(f"{weights}: sha256 {found}, not the {wanted['sha256']} that {recipe.path.name} names")
    nets, card = load_artifact(artifact, check=False)
    if card["model_version"] != wanted["model_version"]:
        raise ValueError(f"{artifact} is model {card['model_version']}, not {wanted['model_version']}")
    return {spec["name"]: net.state_dict() for net, spec in zip(nets, card["members"])}


def _named(cfg, k: int):
    from dataclasses import replace

    return replace(cfg, name=f"fold{k}", seed=cfg.seed + k)
