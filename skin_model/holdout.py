"""Held-out-source evaluation: train without one source (a clinic or a collection), score it.

The best guide there is to how the model will do on dermoscopy from a clinic it has
never seen. HAM10000's test split is never read: its lesions are dropped from every
part before anything else happens.
"""

from __future__ import annotations

import json
import logging
from dataclasses import asdict
from pathlib import Path

import numpy as np
import pandas as pd
import torch

from .data import Dataset, read_sources
from .metrics import source_report
from .preprocess import SourceSize, shades_of_gray
from .priors import PRIORS, apply_prior, choose_prior_strength

log = logging.getLogger(__name__)


def assign_splits(df: pd.DataFrame, split_csv: Path) -> pd.Series:
    """HAM10000 rows take the run's lesion-grouped split; a challenge's rows their own parts
    (``isic2017_train`` -> train, ``isic2017_val`` -> val)."""
    saved = pd.read_csv(split_csv, dtype=str).set_index("image_id")["split"]
    split = df["image_id"].map(saved)
    own = df["dataset"].str.extract(r"_(train|val)$")[0]
    return split.fillna(own)


def load_all(data_dirs: list[Path], split_csv: Path, colour_constancy_p: int, cache: Path | None) -> Dataset:
    """Every non-test image of every source, decoded once (cached as .npy between runs)."""
    df = read_sources(data_dirs)
    df["split"] = assign_splits(df, split_csv)
    if df["split"].isna().any():
        raise ValueError(f"{int(df['split'].isna().sum())} images have no split in {split_csv}")
    df = df[df["split"] != "test"].reset_index(drop=True)
    source = SourceSize()
    if cache is not None and cache.exists():
        images = torch.from_numpy(np.load(cache))
        if len(images) != len(df):
            raise ValueError(f"{cache} holds {len(images)} images, not {len(df)}: delete it")
        data = Dataset(df, images)
    else:
        data = Dataset.load(df, data_dirs, source)
        if cache is not None:
            np.save(cache, data.images.numpy())
    if colour_constancy_p:
        data.images = torch.cat([shades_of_gray(b, colour_constancy_p) for b in data.images.split(512)])
    return data


def run_holdout(data: Dataset, holdout: str, cfg, run_root: Path) -> dict:
    """Train ``cfg`` on every source but ``holdout`` (best epoch by the other sources'
    validation), then score the held-out source's images under the equal prior."""
    from .train import TTA_VIEWS, Run, class_frequencies, load_member, predict_outputs, train_member

    sources = data.df["source"]
    if holdout not in set(sources):
        raise ValueError(f"unknown source {holdout!r}; the data has {sorted(set(sources))}")
    parts = {
        "train": data.subset((sources != holdout) & (data.df["split"] == "train")),
        "val": data.subset((sources != holdout) & (data.df["split"] == "val")),
    }
    held_out = data.subset(sources == holdout)
    run = Run(run_root / f"without_{holdout}")
    member_dir = run.member_dir(cfg.name)
    if not (member_dir / "done.json").exists():
        train_member(parts, run, cfg, resume=True)
    net, cfg = load_member(member_dir)
    train_prior = class_frequencies(parts["train"].labels)
    equal = PRIORS["equal"](train_prior)
    val_logits, val_features = predict_outputs(net, parts["val"], cfg.inputs, TTA_VIEWS)
    val_probs = torch.softmax(val_logits, 1).double()
    strength, _ = choose_prior_strength(val_probs, parts["val"].labels, train_prior)
    held_logits, held_features = predict_outputs(net, held_out, cfg.inputs, TTA_VIEWS)
    probs = torch.softmax(held_logits, 1).double()
    decided = apply_prior(probs, train_prior, equal, strength).numpy()
    report = source_report(decided, held_out.labels.numpy())
    report["ood_flagged"] = ood_share(net, cfg, parts, val_features, held_out, held_features)
    report |= {"holdout": holdout, "equal_prior_strength": strength, "member": asdict(cfg)}
    (member_dir / "holdout.json").write_text(json.dumps(report, indent=2))
    return report


def ood_share(
    net, cfg, parts: dict, val_features: torch.Tensor, held_out: Dataset, held_features: torch.Tensor
) -> float:
    """Share of the held-out source flagged by the out-of-domain check built as export builds it:
    an index of the training images, its threshold passing 97% of each validation source."""
    from .ood import OodCheck, image_statistics
    from .similar import CaseIndex, member_embedding
    from .train import TTA_VIEWS, predict_outputs

    train = parts["train"]
    train_features = predict_outputs(net, train, cfg.inputs, TTA_VIEWS)[1]
    index = CaseIndex.build(
        member_embedding([train_features]),
        train.labels,
        list(train.df["dx_type"]),
        list(train.df["image_id"]),
        [b""] * len(train),
    )
    val = parts["val"]
    check = OodCheck.fit(image_statistics(train.images))
    check.calibrate_by_source(
        index,
        {"validation": (member_embedding([val_features]), image_statistics(val.images), val.df)},
        list(train.df["lesion_id"]),
    )
    scores = check.score_features(index, member_embedding([held_features]), image_statistics(held_out.images))
    return float((scores > check.threshold).double().mean())
