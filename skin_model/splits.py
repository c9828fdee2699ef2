"""Who is trained on, who is scored: HAM10000's lesions in cross-validation folds and a test
split, other sources in their own roles.

The split is one file of lesions (``lesion_id,split,fold``), referenced by its sha256
in the runs and the model card, never copied. A lesion absent from it (the public
HAM10000 has 10,015 images where the working copy has 8,499) is placed by a hash of
its ``lesion_id``: deterministic, and never moving a known lesion. A lesion is never
in two places.

Roles: ``train`` rows sit in a fold (HAM10000) or in every fold's training (fold -1,
the other sources' training parts); ``check`` rows (a challenge's own validation part,
``*_val``) are scored and never trained on; ``test`` rows are scored once, at the end.
"""

from __future__ import annotations

import hashlib
from pathlib import Path

import numpy as np
import pandas as pd

from .config import REPO_DIR

SPLIT_FILE = REPO_DIR / "splits" / "ham10000_lesions.csv"
FOLDS = 5
TEST_ONE_IN = 7  # an unseen lesion goes to test with chance 1/7, as the split's own test share


class SplitLeakError(RuntimeError):
    """A lesion appears in two places."""


def file_sha256(path: Path) -> str:
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


def lesion_hash(lesion_id: str) -> int:
    return int(hashlib.sha256(str(lesion_id).encode()).hexdigest()[:12], 16)


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


def make_lesion_split(images: pd.DataFrame, folds: int = FOLDS, seed: int = 0) -> pd.DataFrame:
    """Lesion table from an image table with ``lesion_id``, ``dx`` and ``split`` (train / val /
    test): test stays test; train and val lesions are dealt into ``folds`` class-stratified folds."""
    from sklearn.model_selection import StratifiedKFold

    lesions = images.groupby("lesion_id", sort=True).agg(dx=("dx", "first"), split=("split", "first")).reset_index()
    lesions["split"] = np.where(lesions["split"] == "test", "test", "train")
    lesions["fold"] = -1
    rest = lesions.index[lesions["split"] == "train"]
    cv = StratifiedKFold(n_splits=folds, shuffle=True, random_state=seed)
    for k, (_, members) in enumerate(cv.split(rest, lesions.loc[rest, "dx"])):
        lesions.loc[rest[members], "fold"] = k
    return lesions[["lesion_id", "split", "fold"]]


def read_lesion_split(path: Path = SPLIT_FILE) -> pd.DataFrame:
    table = pd.read_csv(path, dtype={"lesion_id": str, "split": str, "fold": int})
    if table["lesion_id"].duplicated().any():
        raise SplitLeakError(f"{path} lists a lesion twice")
    return table


def assign(df: pd.DataFrame, lesions: pd.DataFrame, folds: int = FOLDS) -> pd.DataFrame:
    """``df`` (``read_sources``' table) with ``split`` and ``fold`` columns."""
    df = df.copy()
    ham = ~df["dataset"].astype(str).str.contains(r"_(?:train|val|test)$")
    known = lesions.set_index("lesion_id")
    split = df["lesion_id"].map(known["split"]).to_numpy(dtype=object, copy=True)
    fold = df["lesion_id"].map(known["fold"]).to_numpy(dtype=float, copy=True)
    unseen = ham.to_numpy() & pd.isna(split)
    hashes = np.array([lesion_hash(i) for i in df.loc[unseen, "lesion_id"]], dtype=np.int64)
    split[unseen] = np.where(hashes % TEST_ONE_IN == 0, "test", "train")
    fold[unseen] = np.where(hashes % TEST_ONE_IN == 0, -1, (hashes // TEST_ONE_IN) % folds)
    # Other sources: their training part is in every fold's training, their validation part a check.
    other = ~ham.to_numpy()
    is_check = df["dataset"].astype(str).str.endswith("_val").to_numpy()
    split[other] = np.where(is_check[other], "check", "train")
    fold[other] = -1
    df["split"], df["fold"] = split.astype(str), fold.astype(int)
    places = df[ham].groupby("lesion_id")[["split", "fold"]].nunique()
    if (places > 1).any(axis=None):
        raise SplitLeakError("a lesion is in two places")
    return df


def fold_parts(df: pd.DataFrame, k: int) -> tuple[np.ndarray, np.ndarray]:
    """Boolean masks (train, validation) of fold ``k``: train on every other fold and on the other
    sources' training parts; validate on fold ``k``'s HAM10000 lesions."""
    train = ((df["split"] == "train") & (df["fold"] != k)).to_numpy()
    val = ((df["split"] == "train") & (df["fold"] == k)).to_numpy()
    return train, val
