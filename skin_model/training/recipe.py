"""A recipe: everything that makes one shipped model, in one TOML file (``recipes/<version>.toml``).

The model card records the recipe (and its sha256) and each lesion file's sha256, so that
``python -m skin_model train --recipe recipes/<version>.toml --data ... --data ...``
makes the same model again. A recipe is strict: an unknown key is an error that names it, and
every key changes what is trained or exported (``tests/test_recipe.py`` changes each one).
"""

from __future__ import annotations

import hashlib
import tomllib
from dataclasses import dataclass, field, fields
from pathlib import Path

from skin_model.config import REPO_DIR
from skin_model.inference.card import RECIPE_KEYS
from skin_model.inference.ood import PASS_RATE
from skin_model.inference.referral import TARGET_SENSITIVITY
from skin_model.training.splits import FOLDS, SourceRoles
from skin_model.training.train import TrainConfig

HELD_OUT_KEYS = {"results", "variant"}
START_FROM_KEYS = {"model_version", "sha256"}


@dataclass(frozen=True)
class Recipe:
    path: Path
    model_version: str
    folds: int  # default: splits.FOLDS
    sources: dict[str, SourceRoles]  # data folder name -> its declared role (``splits``)
    colour_constancy_p: int
    members: tuple[TrainConfig, ...]
    tta: tuple[str, ...] = ("identity", "hflip", "vflip", "hvflip")
    target_sensitivity: float = TARGET_SENSITIVITY  # of the referral threshold, chosen out of fold
    ood_pass_rate: float = PASS_RATE  # of each source's out-of-fold or check images
    outlier_exposure: bool = False  # fit the out-of-domain check against images that are not dermoscopy
    # The design's evidence on held-out sources (``scripts.holdout_proxy``): its results file and
    # variant, reported in the card; None: the card reports none.
    held_out: dict | None = None
    # Each fold model starts from the same fold's model of an earlier artifact (its version and
    # its model.safetensors' sha256), not from ImageNet; None: from ImageNet (``pretrained``).
    start_from: dict | None = None
    raw: dict = field(default_factory=dict, compare=False)
    sha256: str = ""  # of the bytes ``raw`` was read from (the file may change while a run trains)

    @classmethod
    def load(cls, path: Path) -> Recipe:
        path = Path(path)
        content = path.read_bytes()
        raw = tomllib.loads(content.decode())
        unknown = set(raw) - RECIPE_KEYS
        if unknown:
            raise ValueError(f"{path}: unknown recipe key(s) {sorted(unknown)}; known: {sorted(RECIPE_KEYS)}")
        for key in ("model_version", "sources"):
            if key not in raw:
                raise ValueError(f"{path}: the recipe must set {key!r}")
        # colour_constancy_p is the artifact's preprocessing, one for every member: set at the top only.
        known = {f.name for f in fields(TrainConfig)} - {"colour_constancy_p"}
        defaults = raw.get("member_defaults", {})
        unknown = set(defaults) - known
        if unknown:
            raise ValueError(f"{path}: unknown member setting(s) {sorted(unknown)} in [member_defaults]")
        colour_constancy_p = int(raw.get("colour_constancy_p", 0))
        members = []
        for spec in raw.get("members", []):
            unknown = set(spec) - known
            if unknown:
                raise ValueError(f"{path}: unknown member setting(s) {sorted(unknown)}")
            members.append(TrainConfig(**{**defaults, "colour_constancy_p": colour_constancy_p, **spec}))
        if not members:
            raise ValueError(f"{path} names no [[members]]")
        from skin_model.inference.network import FLIPS

        tta = tuple(raw.get("tta", cls.tta))
        if not tta or set(tta) - set(FLIPS):
            raise ValueError(f"{path}: tta views are some of {list(FLIPS)}, not {list(tta)}")
        target = float(raw.get("target_sensitivity", TARGET_SENSITIVITY))
        if not 0 < target < 1:
            raise ValueError(f"{path}: target_sensitivity is a share in (0, 1), not {target}")
        held_out = raw.get("held_out")
        if held_out is not None:
            if set(held_out) != HELD_OUT_KEYS:
                raise ValueError(f"{path}: [held_out] sets exactly {sorted(HELD_OUT_KEYS)}, not {sorted(held_out)}")
            held_out = {"results": REPO_DIR / held_out["results"], "variant": str(held_out["variant"])}
        start_from = raw.get("start_from")
        if start_from is not None and set(start_from) != START_FROM_KEYS:
            raise ValueError(f"{path}: start_from sets exactly {sorted(START_FROM_KEYS)}, not {sorted(start_from)}")
        return cls(
            path=path,
            model_version=str(raw["model_version"]),
            folds=int(raw.get("folds", FOLDS)),
            sources={name: SourceRoles.from_toml(name, table, REPO_DIR) for name, table in raw["sources"].items()},
            colour_constancy_p=colour_constancy_p,
            members=tuple(members),
            tta=tta,
            target_sensitivity=target,
            ood_pass_rate=float(raw.get("ood_pass_rate", PASS_RATE)),
            outlier_exposure=bool(raw.get("outlier_exposure", False)),
            held_out=held_out,
            start_from=None if start_from is None else {k: str(v) for k, v in start_from.items()},
            raw=raw,
            sha256=hashlib.sha256(content).hexdigest(),
        )
