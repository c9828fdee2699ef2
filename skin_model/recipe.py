"""A recipe: everything that makes one shipped model, in one TOML file (``recipes/<version>.toml``).

The model card records the recipe (and its sha256) and the split file's sha256, so that
``python -m skin_model train --recipe recipes/<version>.toml --data ... --data ...``
makes the same model again.
"""

from __future__ import annotations

import hashlib
import tomllib
from dataclasses import dataclass, field, fields
from pathlib import Path

from .config import REPO_DIR
from .train import TrainConfig


@dataclass(frozen=True)
class Recipe:
    path: Path
    model_version: str
    folds: int
    split_file: Path
    colour_constancy_p: int
    members: tuple[TrainConfig, ...]
    tta: tuple[str, ...] = ("identity", "hflip", "vflip", "hvflip")
    target_sensitivity: float = 0.90
    ood_pass_rate: float = 0.97  # of each source's out-of-fold or check images
    outlier_exposure: bool = False  # fit the out-of-domain check against images that are not dermoscopy
    raw: dict = field(default_factory=dict, compare=False)

    @property
    def sha256(self) -> str:
        return hashlib.sha256(self.path.read_bytes()).hexdigest()

    @classmethod
    def load(cls, path: Path) -> Recipe:
        path = Path(path)
        raw = tomllib.loads(path.read_text())
        known = {f.name for f in fields(TrainConfig)}
        members = []
        colour_constancy_p = int(raw.get("colour_constancy_p", 0))
        for spec in raw.get("members", []):
            unknown = set(spec) - known
            if unknown:
                raise ValueError(f"{path}: unknown member setting(s) {sorted(unknown)}")
            defaults = {**raw.get("member_defaults", {}), "colour_constancy_p": colour_constancy_p}
            members.append(TrainConfig(**{**defaults, **spec}))
        if not members:
            raise ValueError(f"{path} names no [[members]]")
        split_file = Path(raw.get("split_file", "splits/ham10000_lesions.csv"))
        return cls(
            path=path,
            model_version=str(raw["model_version"]),
            folds=int(raw.get("folds", 5)),
            split_file=split_file if split_file.is_absolute() else REPO_DIR / split_file,
            colour_constancy_p=colour_constancy_p,
            members=tuple(members),
            tta=tuple(raw.get("tta", cls.tta)),
            target_sensitivity=float(raw.get("target_sensitivity", 0.90)),
            ood_pass_rate=float(raw.get("ood_pass_rate", 0.97)),
            outlier_exposure=bool(raw.get("outlier_exposure", False)),
            raw=raw,
        )
