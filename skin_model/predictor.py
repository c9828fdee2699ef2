"""The loaded model: calibrated prediction and Grad-CAM for one image plus metadata."""
from __future__ import annotations

import functools
import threading
from concurrent.futures import ThreadPoolExecutor
from contextlib import ExitStack
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from . import vocab
from .artifact import load_artifact
from .config import settings
from .inputs import ImageSource, Metadata, load_image, parse_metadata
from .gradcam import GradCAM, upsample
from .network import SkinNet, encode_metadata
from .preprocess import InputConfig

FUSED, IMAGE_ONLY = 0, 1  # the two metadata views computed for every image

# All of the predictor's torch work runs on one thread per process. torch keeps an
# OpenMP thread pool per calling thread: Streamlit runs every script run on a new
# thread, each of which used to bring its own pool (up to ~50 MB more memory), and on
# 2 cores two live pools throttle each other (a forward pass ran ~4x slower). Calls
# queue on this thread, which also keeps one call's Grad-CAM hooks from another's.
_TORCH_THREAD = "skin-model-torch"
_torch_executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix=_TORCH_THREAD)


def on_torch_thread(fn, *args, **kwargs):
    """``fn(*args, **kwargs)``, run on the predictor's torch thread (directly if already there)."""
    if threading.current_thread().name.startswith(_TORCH_THREAD):
        return fn(*args, **kwargs)
    return _torch_executor.submit(fn, *args, **kwargs).result()


def _torch_work(method):
    """Marks a method whose torch work must run on the torch thread."""
    @functools.wraps(method)
    def run(*args, **kwargs):
        return on_torch_thread(method, *args, **kwargs)
    return run


@dataclass(frozen=True)
class Prediction:
    label: str                        # most likely class code
    probabilities: dict[str, float]   # calibrated, with the metadata given
    image_only: dict[str, float]      # calibrated, with all metadata unknown
    metadata: Metadata
    model_version: str

    @property
    def confidence(self) -> float:
        return self.probabilities[self.label]

    def as_dict(self) -> dict:
        return {"prediction": self.label, "confidence": self.confidence,
                "probabilities": self.probabilities, "image_only_probabilities": self.image_only,
                "metadata": self.metadata.as_dict(), "model_version": self.model_version}


@dataclass(frozen=True)
class Explanation:
    target: str           # the class code explained
    heatmap: np.ndarray   # float32 (H, W) in [0, 1], aligned with the input image


def _probs_dict(probs: torch.Tensor) -> dict[str, float]:
    return {c: float(p) for c, p in zip(vocab.CLASSES, probs)}


class SkinClassifier:
    """An ensemble of multimodal members, calibrated by temperature.

    Safe to share between threads: its work runs on the one torch thread (see
    ``on_torch_thread``), one call at a time.
    """

    def __init__(self, members: list[SkinNet], card: dict, device: str | None = None):
        self.device = torch.device(device or settings().device)
        self.members = [m.eval().requires_grad_(False).to(self.device) for m in members]
        self.card = card
        self.inputs = InputConfig.from_card(card)
        self.temperature = float(card["temperature"])
        self.member_temperatures = [float(m["temperature"]) for m in card["members"]]
        self.version = card["model_version"]
        self._unknown = encode_metadata(Metadata.unknown())

    @classmethod
    @_torch_work
    def load(cls, model_dir: Path | None = None) -> "SkinClassifier":
        threads = settings().num_threads
        if threads:
            torch.set_num_threads(threads)
        members, card = load_artifact(model_dir)
        return cls(members, card)

    # -- batch logits, shared by prediction and evaluation ---------------------------------
    @_torch_work
    def member_logits(self, images: torch.Tensor, metas: torch.Tensor) -> torch.Tensor:
        """Raw logits (members, views, N, classes) for normalised images; views = fused, image-only."""
        images, metas = images.to(self.device), metas.to(self.device)
        unknown = self._unknown.to(self.device).expand(len(images), -1)
        with torch.inference_mode():
            return torch.stack([m.forward_views(images, (metas, unknown)) for m in self.members]).cpu()

    def calibrate(self, member_logits: torch.Tensor) -> torch.Tensor:
        """Ensemble probabilities from member logits (members first): softmax(mean / T)."""
        return torch.softmax(member_logits.mean(0) / self.temperature, dim=-1)

    # -- one image ---------------------------------------------------------------------------
    @_torch_work
    def prepare(self, image: ImageSource, age=None, sex=None, site=None) -> tuple[Image.Image, torch.Tensor, Metadata]:
        """Validate the inputs; raises an ``InvalidInputError`` subclass for anything unusable."""
        meta = parse_metadata(age, sex, site)
        pil = load_image(image)
        return pil, self.inputs(pil), meta

    def _prediction(self, probs: torch.Tensor, meta: Metadata) -> Prediction:
        fused = _probs_dict(probs[FUSED, 0])
        return Prediction(label=max(fused, key=fused.get), probabilities=fused,
                          image_only=_probs_dict(probs[IMAGE_ONLY, 0]), metadata=meta,
                          model_version=self.version)

    @_torch_work
    def predict(self, image: ImageSource, age=None, sex=None, site=None) -> Prediction:
        """The calibrated 7-class prediction, with and without the metadata."""
        _, x, meta = self.prepare(image, age, sex, site)
        probs = self.calibrate(self.member_logits(x, encode_metadata(meta).unsqueeze(0)))
        return self._prediction(probs, meta)

    @_torch_work
    def predict_prepared(self, images: list[torch.Tensor], metas: list[Metadata]) -> list[Prediction]:
        """Predictions for already prepared inputs (see ``prepare``), as one batch."""
        probs = self.calibrate(self.member_logits(torch.cat(images), torch.stack([encode_metadata(m) for m in metas])))
        return [self._prediction(probs[:, i:i + 1], m) for i, m in enumerate(metas)]

    @_torch_work
    def diagnose(self, image: ImageSource, age=None, sex=None, site=None,
                 target: str | None = None) -> tuple[Prediction, Explanation]:
        """Prediction and Grad-CAM from one forward and one backward pass.

        ``target`` is the class to explain; by default the predicted one.
        """
        if target is not None and target not in vocab.CLASSES:
            raise ValueError(f"Unknown class {target!r}; expected one of {', '.join(vocab.CLASSES)}")
        pil, x, meta = self.prepare(image, age, sex, site)
        # Weights are frozen; gradients flow from the input, so the backward pass
        # computes only what Grad-CAM needs (no weight gradients).
        x = x.to(self.device).requires_grad_(True)
        views = (encode_metadata(meta).unsqueeze(0).to(self.device), self._unknown.unsqueeze(0).to(self.device))
        with ExitStack() as stack:
            cams = [stack.enter_context(GradCAM(m.cam_layer)) for m in self.members]
            logits = torch.stack([m.forward_views(x, views) for m in self.members])  # (members, views, 1, classes)
            prediction = self._prediction(self.calibrate(logits.detach().cpu()), meta)
            target = target or prediction.label
            # Members share no weights, so one backward of their summed scores
            # gives each member the gradient of its own score.
            logits[:, FUSED, 0, vocab.CLASSES.index(target)].sum().backward()
            maps = [cam.maps()[0].cpu() for cam in cams]
        heat = np.mean([upsample(m, pil.size) for m in maps], axis=0)
        return prediction, Explanation(target, (heat / max(float(heat.max()), 1e-12)).astype(np.float32))

    def explain(self, image: ImageSource, target: str | None = None, age=None, sex=None, site=None) -> Explanation:
        """Grad-CAM of ``target`` (default: the predicted class) through the fused model."""
        return self.diagnose(image, age, sex, site, target=target)[1]
