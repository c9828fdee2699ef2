"""Who is trained on, who is checked, who is tested: the one place that splits the data.

Each data folder's role is **declared** in the recipe's ``[sources.<folder>]`` table, keyed by the
``--data`` folder's name; a folder the recipe does not declare is an error, never a guess.
Three rules:

- ``lesion_file``: a file of lesions (``lesion_id,split,fold``) says where each lesion sits: a
  ``test`` lesion is scored once, at the end; a ``train`` lesion sits in one of the cross-validation
  folds. A lesion absent from the file (the public HAM10000 has 10,015 images where the working copy
  has 8,499) is placed by a hash of its ``lesion_id``: test with chance 1/7, else a fold.
- ``lesion_hash``: every lesion in a fold by a hash of its ``lesion_id``; no test part.
- ``own_parts``: the source's own published parts (its ``dataset`` column) each take a role:
  ``train`` (in every fold's training), ``check`` (scored, never trained on) or ``test``.

The result is two columns per image: ``split`` (train / check / test) and ``fold`` (the fold
whose out-of-fold part it is, or -1: in every fold's training, or not trained on at all). A
lesion is never in two places.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from skin_model.config import REPO_DIR

FOLDS = 5
TEST_ONE_IN = 7  # a lesion absent from a lesion file goes to test with chance 1/7, the file's own test share
RULES = ("lesion_file", "lesion_hash", "own_parts")
PART_ROLES = ("train", "check", "test")


class SplitLeakError(RuntimeError):
    """A lesion appears in two places."""


def file_sha256(path: Path) -> str:
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


def lesion_hash(lesion_id: str) -> int:
    return int(hashlib.sha256(str(lesion_id).encode()).hexdigest()[:12], 16)


@dataclass(frozen=True)
class SourceRoles:
    """The declared role of one data folder's rows (one ``[sources.<folder>]`` table of a recipe)."""

    folder: str
    rule: str
    lesion_file: Path | None = None  # rule lesion_file
    parts: dict[str, str] = field(default_factory=dict)  # rule own_parts: dataset value -> role

    @classmethod
    def from_toml(cls, folder: str, table: dict, base: Path = REPO_DIR) -> SourceRoles:
        allowed = {"split", "lesion_file", "parts"}
        unknown = set(table) - allowed
        if unknown:
            raise ValueError(f"[sources.{folder}]: unknown setting(s) {sorted(unknown)}; known: {sorted(allowed)}")
        rule = table.get("split")
        if rule not in RULES:
            raise ValueError(f"[sources.{folder}]: split must be one of {RULES}, not {rule!r}")
        lesion_file = table.get("lesion_file")
        parts = dict(table.get("parts", {}))
        if (rule == "lesion_file") != (lesion_file is not None):
            raise ValueError(f"[sources.{folder}]: lesion_file is given with split = 'lesion_file', and only then")
        if (rule == "own_parts") != bool(parts):
            raise ValueError(f"[sources.{folder}]: parts are given with split = 'own_parts', and only then")
        bad = {k: v for k, v in parts.items() if v not in PART_ROLES}
        if bad:
            raise ValueError(f"[sources.{folder}]: a part's role is one of {PART_ROLES}, not {bad}")
        if lesion_file is not None:
            lesion_file = Path(lesion_file)
            lesion_file = lesion_file if lesion_file.is_absolute() else base / lesion_file
        return cls(folder, rule, lesion_file, parts)

    def to_card(self) -> dict:
        card: dict = {"split": self.rule}
        if self.lesion_file is not None:
            card |= {"lesion_file": self.lesion_file.name, "lesion_file_sha256": file_sha256(self.lesion_file)}
        if self.parts:
            card["parts"] = dict(self.parts)
        return card


def outlier_parts(folder: Path) -> tuple[list[Path], list[Path]]:
    """Real images that are not dermoscopy (``<folder>/<category>/*.jpg``) in two halves per
    category, by a hash of the file name: the first trains the out-of-domain check (outlier
    exposure), the second is kept aside to check it and is never trained on."""
    fitting, kept_aside = [], []
    for category in sorted(p for p in Path(folder).iterdir() if p.is_dir()):
        files = sorted(category.glob("*.jpg"), key=lambda p: (lesion_hash(p.name), p.name))
        half = len(files) // 2
        fitting += sorted(files[:half])
        kept_aside += sorted(files[half:])
    return fitting, kept_aside


def read_lesion_split(path: Path) -> pd.DataFrame:
    table = pd.read_csv(path, dtype={"lesion_id": str, "split": str, "fold": int})
    if table["lesion_id"].duplicated().any():
        raise SplitLeakError(f"{path} lists a lesion twice")
    return table


def _by_lesion_file(df: pd.DataFrame, path: Path, folds: int) -> tuple[np.ndarray, np.ndarray]:
    known = read_lesion_split(path).set_index("lesion_id")
    if known["fold"].max() >= folds:
        raise ValueError(f"{path} deals lesions into {known['fold'].max() + 1} folds; the recipe asks for {folds}")
    split = df["lesion_id"].map(known["split"]).to_numpy(dtype=object, copy=True)
    fold = df["lesion_id"].map(known["fold"]).to_numpy(dtype=float, copy=True)
    unseen = pd.isna(split)
    hashes = np.array([lesion_hash(i) for i in df.loc[unseen, "lesion_id"]], dtype=np.int64)
    split[unseen] = np.where(hashes % TEST_ONE_IN == 0, "test", "train")
    fold[unseen] = np.where(hashes % TEST_ONE_IN == 0, -1, (hashes // TEST_ONE_IN) % folds)
    return split, fold


def _by_lesion_hash(df: pd.DataFrame, folds: int) -> tuple[np.ndarray, np.ndarray]:
    hashes = np.array([lesion_hash(i) for i in df["lesion_id"]], dtype=np.int64)
    return np.full(len(df), "train", dtype=object), (hashes % folds).astype(float)


def _by_own_parts(df: pd.DataFrame, roles: SourceRoles) -> tuple[np.ndarray, np.ndarray]:
    undeclared = sorted(set(df["dataset"].astype(str)) - set(roles.parts))
    if undeclared:
        raise ValueError(f"[sources.{roles.folder}] declares no role for its part(s) {undeclared}")
    split = df["dataset"].astype(str).map(roles.parts).to_numpy(dtype=object)
    return split, np.full(len(df), -1.0)


def assign(df: pd.DataFrame, roles: dict[str, SourceRoles], folds: int = FOLDS) -> pd.DataFrame:
    """``df`` (``data.read_sources``' table, with its ``folder`` column) with ``split`` and ``fold``."""
    undeclared = sorted(set(df["folder"]) - set(roles))
    if undeclared:
        raise ValueError(f"no role is declared for the data folder(s) {undeclared}: add [sources.<folder>] tables")
    df = df.copy()
    split = np.empty(len(df), dtype=object)
    fold = np.empty(len(df), dtype=float)
    for folder, declared in roles.items():
        rows = (df["folder"] == folder).to_numpy()
        if not rows.any():
            continue
        part = df[rows]
        if declared.rule == "lesion_file":
            split[rows], fold[rows] = _by_lesion_file(part, declared.lesion_file, folds)
        elif declared.rule == "lesion_hash":
            split[rows], fold[rows] = _by_lesion_hash(part, folds)
        else:
            split[rows], fold[rows] = _by_own_parts(part, declared)
    df["split"], df["fold"] = split.astype(str), fold.astype(int)
    places = df.groupby("lesion_id")[["split", "fold"]].nunique()
    if (places > 1).any(axis=None):
        raise SplitLeakError("a lesion is in two places")
    return df


def out_of_fold(df: pd.DataFrame) -> np.ndarray:
    """Rows that sit in a fold: each is scored by the fold model that never saw it."""
    return (df["split"].eq("train") & df["fold"].ge(0)).to_numpy(copy=True)


def calibration_part(df: pd.DataFrame, roles: dict[str, SourceRoles]) -> np.ndarray:
    """The out-of-fold rows that calibrate the model and set its thresholds: those of the sources
    split by a lesion file (HAM10000, whose test split is the one test), so that "the training
    frequencies" keep one population's meaning; every out-of-fold row when no source is. Other
    sources' out-of-fold rows (BCN20000, a hospital's referral mix) choose the epoch and are reported."""
    oof = out_of_fold(df)
    chosen = [name for name, role in roles.items() if role.rule == "lesion_file"]
    return oof & df["folder"].isin(chosen).to_numpy() if chosen else oof


def fold_parts(df: pd.DataFrame, k: int) -> tuple[np.ndarray, np.ndarray]:
    """Boolean masks (train, out-of-fold) of fold ``k``: train on every other fold and on the rows
    in every fold's training; score fold ``k``'s lesions."""
    train = (df["split"].eq("train") & df["fold"].ne(k)).to_numpy(copy=True)
    val = (df["split"].eq("train") & df["fold"].eq(k)).to_numpy(copy=True)
    return train, val
