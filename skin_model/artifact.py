"""The self-describing model artifact: safetensors weights plus a JSON model card.

The card carries everything needed to rebuild and feed the network: members
and their architectures, input size and normalisation, class order, metadata
vocabulary and temperatures. Weights load without pickle.
"""
from __future__ import annotations

import json
import logging
from contextlib import ExitStack
from importlib import resources
from pathlib import Path

from safetensors import SafetensorError
from safetensors.torch import load_file, save_file

from . import vocab
from .config import CARD_FILE, MODEL_PACKAGE, WEIGHTS_FILE, settings
from .network import SkinNet

log = logging.getLogger(__name__)
FORMAT = "skin_model-artifact/1"


class ModelArtifactError(RuntimeError):
    """The model artifact is missing, corrupted or does not match its card."""


def save_artifact(out_dir: Path, members: list[SkinNet], card: dict) -> None:
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    tensors = {}
    for i, net in enumerate(members):
        for key, value in net.state_dict().items():
            # fp16 storage halves the file; computation runs in fp32 after loading.
            value = value.half() if value.is_floating_point() else value
            tensors[f"members.{i}.{key}"] = value.contiguous()
    save_file(tensors, str(out_dir / WEIGHTS_FILE), metadata={"format": FORMAT})
    write_card(out_dir, card)


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


def load_members(model_dir: Path, card: dict) -> list[SkinNet]:
    path = Path(model_dir) / WEIGHTS_FILE
    try:
        tensors = load_file(str(path))
    except FileNotFoundError as err:
        raise ModelArtifactError(f"The model weights {path} are missing.") from err
    except (SafetensorError, OSError, ValueError) as err:
        raise ModelArtifactError(f"The model weights {path} are corrupted: {err}") from err
    members = []
    for i, spec in enumerate(card["members"]):
        net = SkinNet(spec["architecture"], meta_hidden=spec["meta_hidden"])
        prefix = f"members.{i}."
        state = {k[len(prefix):]: v.float() if v.is_floating_point() else v
                 for k, v in tensors.items() if k.startswith(prefix)}
        try:
            net.load_state_dict(state, strict=True)
        except RuntimeError as err:
            raise ModelArtifactError(
                f"The weights in {path} do not match member {i} ({spec['architecture']}) "
                f"of the model card: {str(err).splitlines()[0]}") from err
        members.append(net.eval())
    if len(tensors) != sum(len(m.state_dict()) for m in members):
        raise ModelArtifactError(f"{path} holds tensors that the model card does not describe.")
    return members


def read_card_of_shipped() -> dict:
    """The shipped model card (or the one at ``SKIN_MODEL_DIR``)."""
    model_dir = settings().model_dir
    if model_dir is not None:
        return read_card(model_dir)
    with resources.as_file(resources.files(MODEL_PACKAGE)) as path:
        return read_card(path)


def load_artifact(model_dir: Path | None = None) -> tuple[list[SkinNet], dict]:
    """Members (eval mode, fp32) and card; the shipped artifact unless told otherwise."""
    model_dir = model_dir or settings().model_dir
    with ExitStack() as stack:
        if model_dir is None:
            model_dir = stack.enter_context(resources.as_file(resources.files(MODEL_PACKAGE)))
        card = read_card(model_dir)
        members = load_members(model_dir, card)
    log.info("loaded model %s (%s) from %s", card["model_version"],
             "+".join(m["architecture"] for m in card["members"]), model_dir)
    return members, card
