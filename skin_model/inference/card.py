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


def write_card(out_dir: Path, card: dict) -> None:
    (Path(out_dir) / CARD_FILE).write_text(json.dumps(card, indent=2, ensure_ascii=False) + "\n")


def read_card(model_dir: Path) -> dict:
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
