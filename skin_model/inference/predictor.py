"""The loaded model: calibrated prediction and Grad-CAM for one image plus metadata."""

from __future__ import annotations

import functools
from contextlib import ExitStack
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from skin_model import vocab
from skin_model.config import settings
from skin_model.inference.artifact import load_artifact, load_index
from skin_model.inference.card import ModelArtifactError, model_folder
from skin_model.inference.gradcam import LayerCAM, upsample
from skin_model.inference.inputs import ImageSource, Metadata, load_image, parse_metadata
from skin_model.inference.network import SkinNet, encode_metadata, flip_views, unflip
from skin_model.inference.ood import OodCheck, image_statistics
from skin_model.inference.preprocess import InputConfig, SourceSize
from skin_model.inference.priors import DEFAULT_PRIOR, PRIORS, apply_prior
from skin_model.inference.referral import (
    CAM_TARGETS,
    MALIGNANT,
    MALIGNANT_INDEX,
    MALIGNANT_OR_PREMALIGNANT,
    NOT_SUSPICIOUS,
    borderline_band,
    verdict,
)
from skin_model.inference.similar import CaseIndex, Neighbour, member_embedding
from skin_model.inference.torch_thread import on_torch_thread
from skin_model.inference.uncertainty import uncertain_pair

FUSED, IMAGE_ONLY = 0, 1  # the two metadata views computed for every image


def _torch_work(method):
    """Marks a method whose torch work must run on the torch thread."""

    @functools.wraps(method)
    def run(*args, **kwargs):
        return on_torch_thread(method, *args, **kwargs)

    return run


@dataclass(frozen=True)
class Prediction:
    # The suggested diagnosis: the top class under the card's answer prior (``prior.default``,
    # chosen out of fold), whatever prior the probabilities are stated under.
    label: str
    probabilities: dict[str, float]  # calibrated, with the metadata given, under ``prior``
    image_only: dict[str, float]  # the same with all metadata unknown
    metadata: Metadata
    model_version: str
    prior: str = DEFAULT_PRIOR
    uncertain_between: tuple[str, str] | None = None  # the answer's top two, when they are too close to call
    ood: bool = True  # the image does not look like the dermoscopy the model learnt from (default: fail closed)
    ood_score: float = float("nan")  # higher: less like the training images (see ood.py)
    neighbours: tuple[Neighbour, ...] = ()  # the most similar training images, with confirmed diagnoses
    # The referral rule's input: P(malignant or pre-malignant) under the training prior, whatever
    # ``prior`` is. Not a number by default: a Prediction built without them is "cannot judge".
    referral_probability: float = float("nan")
    refer_threshold: float = float("nan")
    borderline: bool = False  # the referral probability lies in the card's borderline band around the threshold
    # What the image suggests before base rates (every diagnosis as likely beforehand, the "equal"
    # prior), with the metadata: a view for teaching, never the probability of this lesion.
    before_base_rates: dict[str, float] = field(default_factory=dict)

    @property
    def verdict(self) -> str:
        """``suspicious`` (a dermatologist should see it), ``not_suspicious`` or ``cannot_judge`` (out of domain)."""
        return verdict(self.referral_probability, self.refer_threshold, self.ood)

    @property
    def refer(self) -> bool:
        """Should a dermatologist see this lesion? Yes unless the model can judge it and finds it
        not suspicious."""
        return self.verdict != NOT_SUSPICIOUS

    @property
    def confidence(self) -> float:
        """The suggested diagnosis's probability (under ``prior``)."""
        return self.probabilities[self.label]

    @property
    def most_probable(self) -> str:
        """The class with the highest probability under ``prior``; when it is not ``label``, the
        suggested diagnosis is a rarer class that the image favours beyond its base rate."""
        return max(self.probabilities, key=self.probabilities.get)

    @property
    def malignant_probability(self) -> float:
        """P(melanoma, basal cell carcinoma or actinic keratosis / Bowen's), the question asked first:
        the referral's number, the one malignancy number (calibrated, HAM10000's frequencies),
        whatever ``prior`` the seven ``probabilities`` are stated under."""
        return self.referral_probability

    def as_dict(self) -> dict:
        return {
            "verdict": self.verdict,
            "refer": self.refer,
            "referral_probability": self.referral_probability,
            "refer_threshold": self.refer_threshold,
            "borderline": self.borderline,
            "prediction": self.label,
            "confidence": self.confidence,
            "most_probable": self.most_probable,
            "prior": self.prior,
            "uncertain_between": list(self.uncertain_between) if self.uncertain_between else None,
            "ood": self.ood,
            "ood_score": self.ood_score,
            "similar_cases": [n.as_dict() for n in self.neighbours],
            "malignant_probability": self.malignant_probability,
            "probabilities": self.probabilities,
            "image_only_probabilities": self.image_only,
            "before_base_rates": self.before_base_rates,
            "metadata": self.metadata.as_dict(),
            "model_version": self.model_version,
        }


@dataclass(frozen=True)
class Explanation:
    target: str  # the class code explained
    heatmap: np.ndarray  # float32 (H, W) in [0, 1], aligned with the input image


@dataclass(frozen=True)
class Prepared:
    """Validated inputs, decoded off the torch thread: what the network needs of one image."""

    image: Image.Image  # upright RGB, at a bounded working size (see inputs.load_image)
    pixels: torch.Tensor  # uint8 (1, 3, H, W) at the artifact's source size
    metadata: Metadata = field(default_factory=Metadata.unknown)


def _probs_dict(probs: torch.Tensor) -> dict[str, float]:
    return {c: float(p) for c, p in zip(vocab.CLASSES, probs)}


class SkinClassifier:
    """An ensemble of multimodal members, calibrated by temperature, decided under a prior.

    Safe to share between threads: its network work runs on the one torch thread
    (see ``torch_thread``), one call at a time; decoding runs on the caller's thread.
    """

    def __init__(self, members: list[SkinNet], card: dict, cases: CaseIndex, ood: OodCheck, device: str | None = None):
        self.device = torch.device(device or settings().device)
        self.members = [m.eval().requires_grad_(False).to(self.device) for m in members]
        self.card = card
        self.source = SourceSize.from_card(card)
        self.member_inputs = [InputConfig.from_card(m["input"]) for m in card["members"]]
        self.views = tuple(card["tta"]["views"])
        self.temperature = float(card["temperature"])
        # Per-class bias of bias-corrected temperature scaling (zeros in artifacts before 3.0).
        self.bias = torch.tensor([card.get("bias", {}).get(c, 0.0) for c in vocab.CLASSES], dtype=torch.float64)
        self.member_temperatures = [float(m["temperature"]) for m in card["members"]]
        self.train_prior = torch.tensor(
            [card["prior"]["training_frequencies"][c] for c in vocab.CLASSES], dtype=torch.float64
        )
        self.prior_strength = float(card["prior"]["equal_strength"])
        self.answer_prior = card["prior"]["default"]  # the suggested diagnosis is the top class under it
        if self.answer_prior not in PRIORS:
            raise ModelArtifactError(f"The model card's answer prior {self.answer_prior!r} is unknown.")
        self.uncertainty_gap = float(card["uncertainty"]["gap"])
        threshold = (card.get("referral") or {}).get("threshold")
        if threshold is None:  # never answer "not suspicious" without the rule that says so
            raise ModelArtifactError("The model card has no referral threshold: export the model again.")
        self.refer_threshold = float(threshold)
        self.borderline_band = borderline_band(card["referral"])
        self.version = card["model_version"]
        self._unknown = encode_metadata(Metadata.unknown())
        self.cases, self.ood = cases, ood

    @classmethod
    @_torch_work
    def load(cls, model_dir: Path | None = None) -> SkinClassifier:
        threads = settings().num_threads
        if threads:
            torch.set_num_threads(threads)
        members, card = load_artifact(model_dir)
        with model_folder(model_dir) as folder:
            cases, ood = load_index(folder)
        return cls(members, card, cases, ood)

    # -- batch logits, shared by prediction and evaluation ---------------------------------
    def _member_views(
        self, member: SkinNet, x: torch.Tensor, metas: torch.Tensor, views: tuple[str, ...]
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """One member's logits (metadata views, N, classes) and pooled image features (N, F) for
        its normalised input ``x``, both averaged over the flipped views (one batch)."""
        unknown = self._unknown.to(self.device).expand(len(metas), -1)
        logits, features = member.forward_views(
            flip_views(x, views), (metas.repeat(len(views), 1), unknown.repeat(len(views), 1))
        )
        n = len(metas)
        return (logits.reshape(2, len(views), n, -1).mean(1), features.reshape(len(views), n, -1).mean(0))

    @_torch_work
    def member_outputs(
        self, pixels: torch.Tensor, metas: torch.Tensor, tta: bool = True, members: list[int] | None = None
    ) -> tuple[torch.Tensor, list[torch.Tensor]]:
        """Raw logits (members, metadata views, N, classes) and each member's image features
        (N, F) for uint8 images at the source size; metadata views = fused, image-only;
        averaged over the test-time flips unless ``tta`` is off; ``members``: only these (by
        position in the card), e.g. the fold model that never saw an image."""
        views = self.views if tta else ("identity",)
        pixels, metas = pixels.to(self.device), metas.to(self.device)
        chosen = range(len(self.members)) if members is None else members
        with torch.inference_mode():
            outputs = [
                self._member_views(self.members[i], self.member_inputs[i].normalize(pixels), metas, views)
                for i in chosen
            ]
        return torch.stack([lg for lg, _ in outputs]).cpu(), [f.cpu() for _, f in outputs]

    def member_logits(self, pixels: torch.Tensor, metas: torch.Tensor, tta: bool = True) -> torch.Tensor:
        """The logits of ``member_outputs``."""
        return self.member_outputs(pixels, metas, tta)[0]

    def calibrate(self, member_logits: torch.Tensor, prior: str = DEFAULT_PRIOR) -> torch.Tensor:
        """Ensemble probabilities from member logits (members first): softmax(mean / T + bias), under ``prior``."""
        calibrated = torch.softmax(member_logits.double().mean(0) / self.temperature + self.bias, dim=-1)
        return self.under_prior(calibrated, prior)

    def under_prior(self, probs: torch.Tensor, prior: str) -> torch.Tensor:
        """Calibrated probabilities (under the training prior) -> the same under ``prior``."""
        if prior not in PRIORS:
            raise ValueError(f"Unknown prior {prior!r}; expected one of {', '.join(PRIORS)}")
        if prior == "training":
            return probs
        return apply_prior(probs, self.train_prior, PRIORS[prior](self.train_prior), self.prior_strength)

    # -- one image ---------------------------------------------------------------------------
    def prepare(self, image: ImageSource, age=None, sex=None, site=None) -> Prepared:
        """Validate and decode, on the caller's thread; raises an ``InvalidInputError`` subclass
        for anything unusable."""
        meta = parse_metadata(age, sex, site)
        pil = load_image(image)
        return Prepared(pil, self.source.to_uint8(pil).unsqueeze(0), meta)

    def _prediction(
        self, calibrated: torch.Tensor, features: list[torch.Tensor], pixels: torch.Tensor, meta: Metadata, prior: str
    ) -> Prediction:
        """One image's prediction from its calibrated probabilities under the training prior
        (views, 1, classes), member features and pixels."""
        probs = self.under_prior(calibrated, prior)
        fused = _probs_dict(probs[FUSED, 0])
        balanced = _probs_dict(self.under_prior(calibrated, "equal")[FUSED, 0])
        answer = _probs_dict(self.under_prior(calibrated, self.answer_prior)[FUSED, 0])
        referral = float(sum(calibrated[FUSED, 0, vocab.CLASSES.index(c)] for c in MALIGNANT_OR_PREMALIGNANT))
        embedded = self.cases.embed(member_embedding(features))
        sims = self.cases.similarities_of(embedded)  # one matrix product
        ood_scores = self.ood.scores(embedded, sims, image_statistics(pixels))
        return Prediction(
            label=max(answer, key=answer.get),
            probabilities=fused,
            image_only=_probs_dict(probs[IMAGE_ONLY, 0]),
            before_base_rates=balanced,
            metadata=meta,
            model_version=self.version,
            prior=prior,
            uncertain_between=uncertain_pair(answer, self.uncertainty_gap),
            ood=bool(self.ood.flags(ood_scores)[0]),
            ood_score=float(ood_scores[0]),
            neighbours=tuple(self.cases.neighbours(sims[0])),
            referral_probability=referral,
            refer_threshold=self.refer_threshold,
            borderline=self.borderline_band["low"] <= referral <= self.borderline_band["high"],
        )

    def predict(self, image: ImageSource, age=None, sex=None, site=None, prior: str = DEFAULT_PRIOR) -> Prediction:
        """The suggested diagnosis and the calibrated 7-class probabilities under ``prior``
        ("training" or "equal"), with and without the metadata."""
        return self.predict_prepared([self.prepare(image, age, sex, site)], prior)[0]

    @_torch_work
    def predict_prepared(self, prepared: list[Prepared], prior: str = DEFAULT_PRIOR) -> list[Prediction]:
        """Predictions for already prepared inputs (see ``prepare``), as one batch: all of it on the
        torch thread (network, calibration, embedding, similar cases, out-of-domain score)."""
        pixels = torch.cat([p.pixels for p in prepared])
        metas = torch.stack([encode_metadata(p.metadata) for p in prepared])
        logits, features = self.member_outputs(pixels, metas)
        calibrated = self.calibrate(logits, "training")
        return [
            self._prediction(calibrated[:, i : i + 1], [f[i : i + 1] for f in features], p.pixels, p.metadata, prior)
            for i, p in enumerate(prepared)
        ]

    def diagnose(
        self,
        image: ImageSource,
        age=None,
        sex=None,
        site=None,
        target: str | None = None,
        prior: str = DEFAULT_PRIOR,
        heatmap_size: tuple[int, int] | None = None,
    ) -> tuple[Prediction, Explanation]:
        """Prediction and Grad-CAM from one forward and one backward pass over the view set.

        ``target`` is the class to explain, or ``"malignant"`` (the referral's score, the log of
        exp(mel) + exp(bcc) + exp(akiec) of the logits); by default the suggested diagnosis. The heatmap has the
        image's size unless ``heatmap_size`` = (width, height) asks for another (a display's:
        a camera photo's full-size map would be tens of megabytes nobody sees).
        """
        if target is not None and target not in CAM_TARGETS:
            raise ValueError(f"Unknown class {target!r}; expected one of {', '.join(CAM_TARGETS)}")
        return self.diagnose_prepared(self.prepare(image, age, sex, site), target, prior, heatmap_size)

    @_torch_work
    def diagnose_prepared(
        self,
        prepared: Prepared,
        target: str | None = None,
        prior: str = DEFAULT_PRIOR,
        heatmap_size: tuple[int, int] | None = None,
    ) -> tuple[Prediction, Explanation]:
        pixels = prepared.pixels.to(self.device)
        meta = encode_metadata(prepared.metadata).unsqueeze(0).to(self.device)
        with ExitStack() as stack:
            cams = [stack.enter_context(LayerCAM(m.cam_layer)) for m in self.members]
            # Weights are frozen and the input needs no gradient: the graph starts at each
            # member's Grad-CAM layer (see LayerCAM), so the backward pass and the memory it
            # keeps cover only the few layers after it.
            outputs = [
                self._member_views(m, inp.normalize(pixels), meta, self.views)
                for m, inp in zip(self.members, self.member_inputs)
            ]
            logits = torch.stack([lg for lg, _ in outputs])  # (members, 2, 1, C)
            prediction = self._prediction(
                self.calibrate(logits.detach().cpu(), "training"),
                [f.detach().cpu() for _, f in outputs],
                prepared.pixels,
                prepared.metadata,
                prior,
            )
            target = target or prediction.label
            # Members share no weights, so one backward of their summed scores gives each
            # member the gradient of its own (view-averaged) score.
            fused = logits[:, FUSED, 0]
            score = (
                fused[:, MALIGNANT_INDEX].logsumexp(-1)
                if target == MALIGNANT
                else fused[:, vocab.CLASSES.index(target)]
            )
            score.sum().backward()
            # Each view's map is flipped back onto the image before averaging.
            maps = [unflip(cam.maps(), self.views).mean(0)[0].cpu() for cam in cams]
        heat = np.mean([upsample(m, heatmap_size or prepared.image.size) for m in maps], axis=0)
        explanation = Explanation(target, (heat / max(float(heat.max()), 1e-12)).astype(np.float32))
        return prediction, explanation

    def explain(self, image: ImageSource, target: str | None = None, age=None, sex=None, site=None) -> Explanation:
        """Grad-CAM of ``target`` (default: the suggested diagnosis) through the fused model."""
        return self.diagnose(image, age, sex, site, target=target)[1]
