"""The self-describing model artifact: safetensors weights plus a JSON model card.

The card (``card.py``) carries everything needed to rebuild and feed the
network: members and their architectures, each member's input shape and
normalisation, the test-time views, class order, metadata vocabulary,
temperatures and the training class frequencies behind the prior correction.
Beside them, ``index.safetensors`` holds the similar-cases index and the out-of-domain
check. Everything loads without pickle.
"""

from __future__ import annotations

import logging
from pathlib import Path

import torch
from safetensors import SafetensorError, safe_open
from safetensors.torch import load_file, save_file

from skin_model.config import INDEX_FILE, WEIGHTS_FILE
from skin_model.inference.card import FORMAT, ModelArtifactError, model_folder, read_card, write_card
from skin_model.inference.network import SkinNet
from skin_model.inference.ood import OodCheck
from skin_model.inference.similar import CaseIndex

log = logging.getLogger(__name__)
__all__ = [
    "FORMAT",
    "ModelArtifactError",
    "as_stored",
    "save_artifact",
    "load_members",
    "load_artifact",
    "read_card",
    "save_index",
    "load_index",
]


def as_stored(net: SkinNet) -> SkinNet:
    """The network with its weights rounded as the artifact stores them (fp16 storage halves the
    file; computation runs in fp32): export computes every figure on the weights that answer."""
    state = {k: v.half().float() if v.is_floating_point() else v for k, v in net.state_dict().items()}
    net.load_state_dict(state)
    return net


def save_artifact(out_dir: Path, members: list[SkinNet], card: dict) -> None:
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    tensors = {}
    for i, net in enumerate(members):
        for key, value in net.state_dict().items():
            value = value.half() if value.is_floating_point() else value  # see as_stored
            tensors[f"members.{i}.{key}"] = value.contiguous()
    save_file(tensors, str(out_dir / WEIGHTS_FILE), metadata={"format": FORMAT})
    write_card(out_dir, card)


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
        net = SkinNet(spec["architecture"], meta_hidden=spec["meta_hidden"], cam_layer=spec.get("cam_layer"))
        prefix = f"members.{i}."
        state = {
            k[len(prefix) :]: v.float() if v.is_floating_point() else v
            for k, v in tensors.items()
            if k.startswith(prefix)
        }
        try:
            net.load_state_dict(state, strict=True)
        except RuntimeError as err:
            raise ModelArtifactError(
                f"The weights in {path} do not match member {i} ({spec['architecture']}) "
                f"of the model card: {str(err).splitlines()[0]}"
            ) from err
        try:
            net.cam_layer  # noqa: B018 (the card's Grad-CAM block must exist)
        except AttributeError as err:
            raise ModelArtifactError(f"Member {i} of the model card names no block {spec.get('cam_layer')!r}") from err
        # Channels-last weights: the ensemble's forward pass takes 0.20 s instead of 0.27 s on 2 cores
        # (docs/performance.md); the logits move by less than 1e-6.
        members.append(net.to(memory_format=torch.channels_last).eval())
    if len(tensors) != sum(len(m.state_dict()) for m in members):
        raise ModelArtifactError(f"{path} holds tensors that the model card does not describe.")
    return members


def load_artifact(model_dir: Path | None = None, check: bool = True) -> tuple[list[SkinNet], dict]:
    """Members (eval mode, fp32) and card; the shipped artifact unless told otherwise. ``check``:
    refuse a card the current code did not make (``card.read_card``); off only to re-export one."""
    with model_folder(model_dir) as model_dir:
        card = read_card(model_dir, check=check)
        members = load_members(model_dir, card)
    log.info(
        "loaded model %s (%s) from %s", card["model_version"], "+".join(m["name"] for m in card["members"]), model_dir
    )
    return members, card


def save_index(out_dir: Path, cases: CaseIndex, ood: OodCheck) -> None:
    """The similar-cases index and the out-of-domain check, in one safetensors file."""
    case_tensors, case_meta = cases.to_tensors()
    ood_tensors, ood_meta = ood.to_tensors()
    save_file({**case_tensors, **ood_tensors}, str(Path(out_dir) / INDEX_FILE), metadata={**case_meta, **ood_meta})


def load_index(model_dir: Path) -> tuple[CaseIndex, OodCheck]:
    path = Path(model_dir) / INDEX_FILE
    try:
        tensors = load_file(str(path))
        with safe_open(str(path), "pt") as f:
            metadata = f.metadata()
        return CaseIndex.from_tensors(tensors, metadata), OodCheck.from_tensors(tensors, metadata)
    except Exception as err:  # missing or damaged: name the file, as for the weights
        raise ModelArtifactError(f"The similar-cases index {path} cannot be read: {err}") from err
