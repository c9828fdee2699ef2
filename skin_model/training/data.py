"""Dermoscopy on disk (HAM10000 and other sources in its column layout): metadata, image
files, an in-memory cache. Who trains and who is scored is ``splits``' job."""

from __future__ import annotations

import logging
import re
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pandas as pd
import torch

from skin_model import vocab
from skin_model.inference.inputs import IMAGE_SUFFIXES, Metadata, load_image, parse_metadata
from skin_model.inference.network import encode_metadata
from skin_model.inference.preprocess import SourceSize

log = logging.getLogger(__name__)

METADATA_COLUMNS = ("lesion_id", "image_id", "dx", "dx_type", "age", "sex", "localization")


def find_metadata_csv(root: Path) -> Path:
    root = Path(root)
    if root.is_file():
        return root
    named = root / "HAM10000_metadata.csv"
    if named.is_file():
        return named
    found = sorted(root.glob("*.csv"))
    if not found:
        raise FileNotFoundError(f"No HAM10000 metadata CSV in {root}.")
    return found[0]


def read_metadata(csv_path: Path) -> pd.DataFrame:
    """The HAM10000 metadata table with validated age / sex / site values."""
    df = pd.read_csv(csv_path, dtype={"image_id": str, "lesion_id": str})
    missing = [c for c in METADATA_COLUMNS if c not in df.columns]
    if missing:
        raise ValueError(f"{csv_path} lacks the HAM10000 column(s): {', '.join(missing)}")
    unknown_dx = sorted(set(df["dx"]) - set(vocab.CLASSES))
    if unknown_dx:
        raise ValueError(f"{csv_path} has unknown diagnoses: {unknown_dx}")
    meta = [parse_metadata(r.age, r.sex, r.localization) for r in df.itertuples()]
    df["age"] = [m.age for m in meta]
    df["sex"] = [m.sex for m in meta]
    df["localization"] = [m.site for m in meta]
    df["label"] = df["dx"].map(vocab.CLASSES.index)
    return df.reset_index(drop=True)


def source_of(dataset: str) -> str:
    """The source (clinic or collection) of a ``dataset`` value: a challenge's own
    train / val parts are one source."""
    return re.sub(r"_(train|val|test)$", "", str(dataset))


def read_sources(data_dirs: Sequence[Path]) -> pd.DataFrame:
    """The metadata of every data folder, one table, with ``folder`` (the data folder's name, which
    the recipe's ``[sources.<folder>]`` gives a role) and ``source`` columns.

    A folder's rows keep their ``dataset`` column where they have one (HAM10000's four
    collections; ISIC 2017's parts), else the folder's name.
    """
    frames = []
    for root in data_dirs:
        df = read_metadata(find_metadata_csv(root))
        # The diagnoses this folder can tell apart: ISIC 2017 knows 3 of the 7, and its images'
        # other four are absent, not "negative" (the loss sees only the folder's own classes).
        df["label_space"] = ",".join(c for c in vocab.CLASSES if c in set(df["dx"]))
        if "dataset" not in df.columns:
            df["dataset"] = Path(root).name
        df["source"] = df["dataset"].map(source_of)
        df["folder"] = Path(root).name
        frames.append(df)
    df = pd.concat(frames, ignore_index=True)
    repeated = df["image_id"][df["image_id"].duplicated()]
    if len(repeated):
        raise ValueError(f"{len(repeated)} image ids appear in two data folders, e.g. {repeated.iloc[0]}")
    return df


def find_images(roots: Path | Sequence[Path]) -> dict[str, Path]:
    """``image_id -> path`` for every image anywhere below ``roots``."""
    roots = [roots] if isinstance(roots, (str, Path)) else roots
    return {
        p.stem: p
        for root in roots
        for p in Path(root).rglob("*")
        if p.suffix.lower() in IMAGE_SUFFIXES and not p.stem.endswith("_segmentation")
    }


def label_space_mask(df: pd.DataFrame) -> torch.Tensor:
    """(N, classes) bool: the diagnoses each row's data folder can name (all, without a ``label_space``)."""
    if "label_space" not in df.columns:
        return torch.ones((len(df), len(vocab.CLASSES)), dtype=torch.bool)
    spaces = {space: torch.tensor([c in space.split(",") for c in vocab.CLASSES]) for space in set(df["label_space"])}
    return (
        torch.stack([spaces[s] for s in df["label_space"]])
        if len(df)
        else torch.zeros((0, len(vocab.CLASSES)), dtype=torch.bool)
    )


def metadata_of(row) -> Metadata:
    return Metadata(age=None if pd.isna(row.age) else float(row.age), sex=row.sex, site=row.localization)


class Dataset:
    """Images decoded once into one uint8 tensor, with labels and encoded metadata."""

    def __init__(self, df: pd.DataFrame, images: torch.Tensor):
        self.df = df.reset_index(drop=True)
        self.images = images  # (N, 3, H, W) uint8
        self.labels = torch.tensor(self.df["label"].to_numpy(), dtype=torch.long)
        self.meta = torch.stack([encode_metadata(metadata_of(r)) for r in self.df.itertuples()])
        self.allowed = label_space_mask(self.df)

    def __len__(self) -> int:
        return len(self.df)

    def subset(self, mask) -> Dataset:
        idx = np.flatnonzero(np.asarray(mask))
        return Dataset(self.df.iloc[idx], self.images[idx])

    @classmethod
    def load(cls, df: pd.DataFrame, image_root: Path | Sequence[Path], source: SourceSize) -> Dataset:
        """Every image decoded as the app decodes it (``inputs.load_image``), at the source size."""
        paths = find_images(image_root)
        absent = [i for i in df["image_id"] if i not in paths]
        if absent:
            raise FileNotFoundError(f"{len(absent)} images are missing below {image_root}, e.g. {absent[0]}")
        images = torch.empty((len(df), 3, source.height, source.width), dtype=torch.uint8)
        log.info("decoding %d images into memory at %dx%d", len(df), source.width, source.height)
        for i, image_id in enumerate(df["image_id"]):
            images[i] = source.to_uint8(load_image(paths[image_id]))
        return cls(df, images)
