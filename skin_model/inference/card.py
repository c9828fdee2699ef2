"""The model card: the JSON half of the artifact, readable without torch.

``python -m skin_model --version`` and the app's start-up read it without
importing torch; ``artifact`` adds the weights.
"""

from __future__ import annotations

import json
from contextlib import contextmanager
from importlib import resources
from pathlib import Path

from skin_model import vocab
from skin_model.config import CARD_FILE, MODEL_PACKAGE, settings

FORMAT = "skin_model-artifact/2"


class ModelArtifactError(RuntimeError):
    """The model artifact is missing, corrupted or does not match its card."""


# A recipe's top-level keys (``training/recipe.py`` reads them; a card records the recipe it was
# made from, and a card whose recipe has another key was made by code that no longer exists).
RECIPE_KEYS = frozenset(
    {
        "model_version",
        "folds",
        "colour_constancy_p",
        "tta",
        "target_sensitivity",
        "ood_pass_rate",
        "outlier_exposure",
        "sources",
        "member_defaults",
        "members",
        "held_out",
        "start_from",
    }
)


def write_card(out_dir: Path, card: dict) -> None:
    (Path(out_dir) / CARD_FILE).write_text(json.dumps(card, indent=2, ensure_ascii=False) + "\n")


def read_card(model_dir: Path, check: bool = True) -> dict:
    path = Path(model_dir) / CARD_FILE
    try:
        card = json.loads(path.read_text())
    except FileNotFoundError as err:
        raise ModelArtifactError(f"The model card {path} is missing.") from err
    except (OSError, json.JSONDecodeError) as err:
        raise ModelArtifactError(f"The model card {path} cannot be read: {err}") from err
    if card.get("format") != FORMAT:
        raise ModelArtifactError(f"{path} is not a {FORMAT} model card.")
    if card["vocabulary"] != vocab.vocabulary():
        raise ModelArtifactError(f"{path} was made for another class or metadata vocabulary.")
    if not check:
        return card
    recipe = (card.get("recipe") or {}).get("content") or {}
    refused = sorted(set(recipe) - RECIPE_KEYS)
    if refused or "sources" not in recipe:
        raise ModelArtifactError(
            f"{path}: its recipe (field 'recipe.content') "
            + (f"has keys the code refuses: {refused}" if refused else "declares no 'sources'")
            + "; export the model again with the current code."
        )
    if "roles" not in (card.get("data") or {}):
        raise ModelArtifactError(f"{path} has no 'data.roles': export the model again with the current code.")
    return card


@contextmanager
def model_folder(model_dir: Path | None = None):
    """The artifact's folder: ``model_dir``, else ``SKIN_MODEL_DIR``, else the one shipped in the package.

    The one place that decides where the model is (loading, ``--version`` and
    the evaluation that writes into the card all use it).
    """
    model_dir = model_dir or settings().model_dir
    if model_dir is not None:
        yield Path(model_dir)
        return
    with resources.as_file(resources.files(MODEL_PACKAGE)) as path:
        yield Path(path)


def read_card_of_shipped() -> dict:
    """The shipped model card (or the one at ``SKIN_MODEL_DIR``)."""
    with model_folder() as path:
        return read_card(path)
