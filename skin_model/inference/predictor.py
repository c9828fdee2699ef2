"""The loaded model: calibrated prediction and Grad-CAM for one image plus metadata."""

from __future__ import annotations

import functools
from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from skin_model import vocab
from skin_model.config import settings
from skin_model.inference.artifact import load_artifact, load_index
from skin_model.inference.card import ModelArtifactError, model_folder
from skin_model.inference.ensemble import Part, calibrate, join_parts, lane_parts, member_views
from skin_model.inference.gradcam import LayerCAM, upsample
from skin_model.inference.inputs import ImageSource, Metadata, load_image, parse_metadata
from skin_model.inference.lesion_finder import LesionFinder
from skin_model.inference.network import SkinNet, encode_metadata, fold_batch_norms, unflip
from skin_model.inference.ood import OodCheck, image_statistics
from skin_model.inference.preprocess import InputConfig, SourceSize
from skin_model.inference.priors import DEFAULT_PRIOR, PRIORS, apply_prior
from skin_model.inference.quality import Quality, check_photos, measure
from skin_model.inference.referral import (
    CAM_TARGETS,
    CANNOT_JUDGE,
    MALIGNANT,
    MALIGNANT_INDEX,
    SUSPICIOUS,
    borderline_band,
    malignant_scores,
    verdict,
)
from skin_model.inference.similar import CaseIndex, Neighbour, member_embedding
from skin_model.inference.torch_thread import (
    lane_count,
    map_lanes,
    on_lane,
    on_torch_thread,
    on_torch_thread_to_the_end,
)
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
    # The answer: the most probable class of ``probabilities``, under the prior they are stated in.
    label: str
    probabilities: dict[str, float]  # calibrated, with the metadata given, under ``prior``
    image_only: dict[str, float]  # the same with all metadata unknown
    metadata: Metadata
    model_version: str
    prior: str = DEFAULT_PRIOR
    uncertain_between: tuple[str, str] | None = None  # the top two of ``probabilities``, when too close to call
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
    # An image the model cannot judge is answered only when asked for anyway (``anyway()``).
    answered_anyway: bool = False
    # The photo's blur, exposure and framing: advice to retake it, never a refusal. None until
    # checked: the page checks it after the verdict is on the screen (``with_quality``).
    quality: Quality | None = None

    @property
    def verdict(self) -> str:
        """``suspicious`` (a dermatologist should see it), ``not_suspicious`` or ``cannot_judge`` (out of domain)."""
        return verdict(self.referral_probability, self.refer_threshold, self.ood)

    @property
    def judged(self) -> bool:
        """Whether the answer's numbers may be shown: the image can be judged, or they were asked for anyway."""
        return self.verdict != CANNOT_JUDGE or self.answered_anyway

    @property
    def refer(self) -> bool | None:
        """Should a dermatologist see this lesion? None when the model cannot judge the image: it
        decides nothing then (the person does: retake the photo, or have it seen)."""
        return None if self.verdict == CANNOT_JUDGE else self.verdict == SUSPICIOUS

    @property
    def confidence(self) -> float:
        """The answer's probability (under ``prior``)."""
        return self.probabilities[self.label]

    @property
    def malignant_probability(self) -> float:
        """P(melanoma, basal cell carcinoma or actinic keratosis / Bowen's), the question asked first:
        the referral's number, the one malignancy number (calibrated, HAM10000's frequencies),
        whatever ``prior`` the seven ``probabilities`` are stated under."""
        return self.referral_probability

    def anyway(self) -> Prediction:
        """The same answer, asked for although the image cannot be judged (marked as such)."""
        return replace(self, answered_anyway=self.verdict == CANNOT_JUDGE)

    def with_quality(self, quality: Quality) -> Prediction:
        """The same answer with its photo's quality check (``SkinClassifier.check_quality``)."""
        return replace(self, quality=quality)

    def as_dict(self) -> dict:
        """The answer as the API, the CLI's JSON and the page's download give it (``schema.ANSWER_FIELDS``
        says what each key means). An image that cannot be judged has no number, threshold, diagnosis
        or similar case, unless they were asked for anyway."""
        shown = self.judged
        return {
            "verdict": self.verdict,
            "refer": self.refer,
            "answered_anyway": self.answered_anyway,
            "referral_probability": self.referral_probability if shown else None,
            "refer_threshold": self.refer_threshold if shown else None,
            "borderline": self.borderline if shown else None,
            "prediction": self.label if shown else None,
            "confidence": self.confidence if shown else None,
            "prior": self.prior,
            "uncertain_between": list(self.uncertain_between) if shown and self.uncertain_between else None,
            "ood": self.ood,
            "ood_score": self.ood_score,
            "similar_cases": [n.as_dict() for n in self.neighbours] if shown else [],
            "malignant_probability": self.malignant_probability if shown else None,
            "probabilities": self.probabilities if shown else {},
            "image_only_probabilities": self.image_only if shown else {},
            "before_base_rates": self.before_base_rates if shown else {},
            "image_quality": self.quality.as_dict() if self.quality else None,
            "metadata": self.metadata.as_dict(),
            "model_version": self.model_version,
        }


@dataclass(frozen=True)
class Explanation:
    target: str  # the class code explained
    heatmap: np.ndarray  # float32 (H, W) in [0, 1], aligned with the input image


class Attention:
    """One image's forward pass through the members, recorded at their Grad-CAM layers
    (``SkinClassifier.answer_prepared``): each class's heatmap is then one backward pass."""

    def __init__(
        self,
        views: tuple[str, ...],
        parts: list[Part],
        scores: list[torch.Tensor],
        cams: list[LayerCAM],
        size: tuple[int, int],
    ):
        self.views, self.parts, self.size = views, parts, size  # size: the image's (width, height)
        # Per part of the pass (``ensemble.lane_parts``): fused logits (classes,) with their graph.
        self._scores, self._cams = scores, cams

    @_torch_work
    def heatmap(self, target: str, size: tuple[int, int] | None = None) -> Explanation:
        """LayerCAM of ``target`` (a class or ``"malignant"``: the referral's score, the log of
        exp(mel) + exp(bcc) + exp(akiec) of the logits), at the image's size unless ``size`` =
        (width, height) asks for another (a display's: a camera photo's full-size map would be tens
        of megabytes nobody sees). The members' maps are min-max scaled, then averaged."""
        if target not in CAM_TARGETS:
            raise ValueError(f"Unknown class {target!r}; expected one of {', '.join(CAM_TARGETS)}")

        # Members share no weights: each member's backward of its own score gives its map, beside
        # the others'. A member cut into parts scores its parts' logits weighed by their share of
        # its views (their average, as ``join_parts``), so that one backward reaches every part.
        # The graph is kept for the next class asked for.
        def member_map(positions: list[int]) -> np.ndarray:
            logits = sum(self._scores[k] * (len(self.parts[k][1]) / len(self.views)) for k in positions)
            score = (
                logits[MALIGNANT_INDEX].logsumexp(-1) if target == MALIGNANT else logits[vocab.CLASSES.index(target)]
            )
            score.backward(retain_graph=True)
            # Each view's map is flipped back onto the image before averaging.
            maps = torch.cat([unflip(self._cams[k].maps(), self.parts[k][1]) for k in positions])
            return upsample(maps.mean(0)[0].cpu(), size or self.size)

        positions: dict[int, list[int]] = {}  # each member's parts
        for k, (member, _) in enumerate(self.parts):
            positions.setdefault(member, []).append(k)
        heat = np.mean(map_lanes(member_map, positions.values()), axis=0)
        return Explanation(target, (heat / max(float(heat.max()), 1e-12)).astype(np.float32))


@dataclass(frozen=True)
class Prepared:
    """Validated inputs, decoded off the torch thread: what the network needs of one image."""

    image: Image.Image  # upright RGB, at a bounded working size (see inputs.load_image)
    pixels: torch.Tensor  # uint8 (1, 3, H, W) at the artifact's source size
    metadata: Metadata = field(default_factory=Metadata.unknown)


def _required(card: dict, section: str, key: str) -> float:
    """A number the model cannot answer without: missing or not finite fails at load, naming it."""
    value = (card.get(section) or {}).get(key)
    try:
        number = float(value)
    except (TypeError, ValueError):
        number = float("nan")
    if not np.isfinite(number):
        raise ModelArtifactError(f"The model card has no {section}.{key}: export the model again.")
    return number


def _probs_dict(probs: torch.Tensor) -> dict[str, float]:
    return {c: float(p) for c, p in zip(vocab.CLASSES, probs)}


class SkinClassifier:
    """An ensemble of multimodal members, calibrated by temperature, decided under a prior.

    Safe to share between threads: its network work runs on the one torch thread
    (see ``torch_thread``), one call at a time; decoding runs on the caller's thread.
    """

    def __init__(
        self,
        members: list[SkinNet],
        card: dict,
        cases: CaseIndex,
        ood: OodCheck,
        device: str | None = None,
        lesion_finder: LesionFinder | None = None,
    ):
        self.device = torch.device(device or settings().device)
        self.members = [m.eval().requires_grad_(False).to(self.device) for m in members]
        self.card = card
        self.source = SourceSize.from_card(card)
        self.member_inputs = [InputConfig.from_card(m["input"]) for m in card["members"]]
        self.views = tuple(card["tta"]["views"])
        self.temperature = float(card["temperature"])
        self.bias = torch.tensor([_required(card, "bias", c) for c in vocab.CLASSES], dtype=torch.float64)
        self.member_temperatures = [float(m["temperature"]) for m in card["members"]]
        self.train_prior = torch.tensor(
            [card["prior"]["training_frequencies"][c] for c in vocab.CLASSES], dtype=torch.float64
        )
        self.prior_strength = float(card["prior"]["equal_strength"])
        # The gap under which the top two of the probabilities shown are too close to call, per prior.
        gaps = (card.get("uncertainty") or {}).get("by_prior") or {}
        if set(gaps) != set(PRIORS):
            raise ModelArtifactError("The model card has no uncertainty.by_prior gap for each prior: export it again.")
        self.uncertainty_gaps = {prior: float(g["gap"]) for prior, g in gaps.items()}
        # Never answer "not suspicious" without the rule that says so.
        self.refer_threshold = _required(card, "referral", "threshold")
        # The index's threshold is the one used, the card's the one shown: they must be one number.
        shown = _required(card, "ood", "threshold")
        if ood.threshold is None or not np.isfinite(ood.threshold):
            raise ModelArtifactError("The out-of-domain check in the index has no threshold (field 'threshold').")
        if not np.isclose(ood.threshold, shown, rtol=0, atol=1e-9):
            raise ModelArtifactError(
                f"The out-of-domain threshold in the index ({ood.threshold}) is not the card's ood.threshold ({shown})."
            )
        self.borderline_band = borderline_band(card["referral"])
        self.version = card["model_version"]
        self._unknown = encode_metadata(Metadata.unknown())
        self.cases, self.ood = cases, ood
        # The quality check's own artifact (default: the shipped one), not the classifier's.
        self.lesion_finder = lesion_finder or LesionFinder.load()

    @classmethod
    def load(cls, model_dir: Path | None = None) -> SkinClassifier:
        """The artifact in ``model_dir`` (default: the shipped one), loaded on the torch thread
        without the per-call timeout: a slow cold start finishes rather than being asked again.
        Anything missing or inconsistent raises ``ModelArtifactError`` here, naming the field."""
        return on_torch_thread_to_the_end(cls._load, model_dir)

    @classmethod
    def _load(cls, model_dir: Path | None) -> SkinClassifier:
        threads = settings().num_threads
        if threads:
            torch.set_num_threads(threads)
        members, card = load_artifact(model_dir)
        # Folded here only: training's warm start and re-export read the artifact's own layers.
        members = [fold_batch_norms(m).to(memory_format=torch.channels_last) for m in members]
        with model_folder(model_dir) as folder:
            cases, ood = load_index(folder)
        return cls(members, card, cases, ood)

    # -- batch logits, shared by prediction and evaluation ---------------------------------
    @_torch_work
    def member_outputs(
        self, pixels: torch.Tensor, metas: torch.Tensor, tta: bool = True, members: list[int] | None = None
    ) -> tuple[torch.Tensor, list[torch.Tensor]]:
        """Raw logits (members, metadata views, N, classes) and each member's image features
        (N, F) for uint8 images at the source size; metadata views = fused, image-only;
        averaged over the test-time flips unless ``tta`` is off; ``members``: only these (by
        position in the card), e.g. the fold model that never saw an image."""
        views = self.views if tta else ("identity",)
        parts = self._parts(views, members)
        outputs = join_parts(parts, map_lanes(lambda part: self._member_views(*part, pixels, metas), parts), len(views))
        return torch.stack([lg for lg, _ in outputs]).cpu(), [f.cpu() for _, f in outputs]

    def _parts(self, views: tuple[str, ...], members: list[int] | None = None) -> list[Part]:
        """The pass of ``members`` (default: all, each once) over ``views``, as parts for the lanes
        (``lane_parts``). One member alone is not cut: it runs whole on the torch thread's own pool
        (a data set through the fold model that never saw it)."""
        chosen = list(range(len(self.members)) if members is None else members)
        if len(set(chosen)) != len(chosen):
            raise ValueError(f"members {chosen} name a member twice")
        lanes = lane_count() if len(chosen) > 1 else 1
        return [(chosen[i], part) for i, part in lane_parts(len(chosen), views, lanes)]

    @torch.inference_mode()
    def _member_views(
        self, i: int, views: tuple[str, ...], pixels: torch.Tensor, metas: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Member ``i``'s ``member_views`` with and without the metadata (on a lane)."""
        metas = metas.to(self.device)
        unknown = self._unknown.to(self.device).expand(len(metas), -1)
        return member_views(self.members[i], self.member_inputs[i], pixels.to(self.device), (metas, unknown), views)

    def member_logits(self, pixels: torch.Tensor, metas: torch.Tensor, tta: bool = True) -> torch.Tensor:
        """The logits of ``member_outputs``."""
        return self.member_outputs(pixels, metas, tta)[0]

    def calibrate(self, member_logits: torch.Tensor, prior: str = DEFAULT_PRIOR) -> torch.Tensor:
        """Ensemble probabilities from member logits (members first), under ``prior`` (``ensemble.calibrate``)."""
        return self.under_prior(calibrate(member_logits, self.temperature, self.bias), prior)

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

    def _qualities(self, prepared: list[Prepared]) -> list[Quality]:
        """The quality check of each prepared photo: its sharpness and exposure, then the lesion
        finder (torch work, on a lane)."""
        return check_photos([measure(p.image) for p in prepared], self.lesion_finder)

    @_torch_work
    def check_quality(self, prepared: Prepared) -> Quality:
        """The photo's quality check alone: what ``answer_prepared`` leaves for after the verdict
        (on a lane, as beside the members in ``predict_prepared``)."""
        return on_lane(self._qualities, [prepared])[0]

    def _prediction(
        self,
        calibrated: torch.Tensor,
        features: list[torch.Tensor],
        prepared: Prepared,
        prior: str,
        quality: Quality | None,
    ) -> Prediction:
        """One image's prediction from its calibrated probabilities under the training prior
        (views, 1, classes), member features and prepared inputs."""
        pixels, meta = prepared.pixels, prepared.metadata
        probs = self.under_prior(calibrated, prior)
        fused = _probs_dict(probs[FUSED, 0])
        balanced = _probs_dict(self.under_prior(calibrated, "equal")[FUSED, 0])
        referral = float(malignant_scores(calibrated[FUSED].numpy())[0])
        embedded = self.cases.embed(member_embedding(features))
        sims = self.cases.similarities_of(embedded)  # one matrix product
        ood_scores = self.ood.scores(embedded, sims, image_statistics(pixels))
        return Prediction(
            label=max(fused, key=fused.get),
            probabilities=fused,
            image_only=_probs_dict(probs[IMAGE_ONLY, 0]),
            before_base_rates=balanced,
            metadata=meta,
            model_version=self.version,
            prior=prior,
            uncertain_between=uncertain_pair(fused, self.uncertainty_gaps[prior]),
            ood=bool(self.ood.flags(ood_scores)[0]),
            ood_score=float(ood_scores[0]),
            neighbours=tuple(self.cases.neighbours(sims[0])),
            referral_probability=referral,
            refer_threshold=self.refer_threshold,
            borderline=self.borderline_band["low"] <= referral <= self.borderline_band["high"],
            quality=quality,
        )

    def predict(self, image: ImageSource, age=None, sex=None, site=None, prior: str = DEFAULT_PRIOR) -> Prediction:
        """The answer (the most probable class) and the calibrated 7-class probabilities under ``prior``
        ("training" or "equal"), with and without the metadata."""
        return self.predict_prepared([self.prepare(image, age, sex, site)], prior)[0]

    @_torch_work
    def predict_prepared(self, prepared: list[Prepared], prior: str = DEFAULT_PRIOR) -> list[Prediction]:
        """Predictions for already prepared inputs (see ``prepare``), as one batch: all of it on the
        torch thread (network, calibration, embedding, similar cases, out-of-domain score)."""
        pixels = torch.cat([p.pixels for p in prepared])
        metas = torch.stack([encode_metadata(p.metadata) for p in prepared])
        parts = self._parts(self.views)
        # The members' parts on the lanes (member_outputs), then the quality check on whichever
        # lane is free first.
        outputs = map_lanes(
            lambda k: self._qualities(prepared) if k == len(parts) else self._member_views(*parts[k], pixels, metas),
            range(len(parts) + 1),
        )
        qualities = outputs.pop()
        outputs = join_parts(parts, outputs, len(self.views))
        logits, features = torch.stack([lg for lg, _ in outputs]).cpu(), [f.cpu() for _, f in outputs]
        calibrated = self.calibrate(logits, "training")
        return [
            self._prediction(calibrated[:, i : i + 1], [f[i : i + 1] for f in features], p, prior, q)
            for i, (p, q) in enumerate(zip(prepared, qualities))
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
        exp(mel) + exp(bcc) + exp(akiec) of the logits); by default the answer (the most probable class). The heatmap has the
        image's size unless ``heatmap_size`` = (width, height) asks for another (a display's:
        a camera photo's full-size map would be tens of megabytes nobody sees).
        """
        if target is not None and target not in CAM_TARGETS:
            raise ValueError(f"Unknown class {target!r}; expected one of {', '.join(CAM_TARGETS)}")
        return self.diagnose_prepared(self.prepare(image, age, sex, site), target, prior, heatmap_size)

    @_torch_work
    def answer_prepared(self, prepared: Prepared, prior: str = DEFAULT_PRIOR) -> tuple[Prediction, Attention]:
        """The prediction, from one forward pass over the view set that also records what any
        class's heatmap needs (``Attention``): the page shows the verdict before a heatmap is made,
        and a heatmap never runs the image through the network again. Nothing the verdict does not
        need: the photo's quality is left unchecked (``quality`` None) for ``check_quality``, after
        the verdict is on the screen."""
        pixels = prepared.pixels.to(self.device)
        meta = encode_metadata(prepared.metadata).unsqueeze(0).to(self.device)
        unknown = self._unknown.to(self.device).unsqueeze(0)
        parts = self._parts(self.views)
        cams = [LayerCAM(self.members[i].cam_layer) for i, _ in parts]

        # Weights are frozen and the input needs no gradient: the graph starts at each member's
        # Grad-CAM layer (see LayerCAM), so the backward pass and the memory it keeps cover only
        # the few layers after it. The parts side by side on the lanes (map_lanes).
        def forward(k: int):
            i, views = parts[k]
            with torch.enable_grad(), cams[k]:
                return member_views(self.members[i], self.member_inputs[i], pixels, (meta, unknown), views)

        outputs = map_lanes(forward, range(len(parts)))
        joined = join_parts(parts, [(lg.detach(), f.detach()) for lg, f in outputs], len(self.views))
        prediction = self._prediction(
            self.calibrate(torch.stack([lg for lg, _ in joined]).cpu(), "training"),
            [f.cpu() for _, f in joined],
            prepared,
            prior,
            None,
        )
        scores = [lg[FUSED, 0] for lg, _ in outputs]
        return prediction, Attention(self.views, parts, scores, cams, prepared.image.size)

    @_torch_work
    def diagnose_prepared(
        self,
        prepared: Prepared,
        target: str | None = None,
        prior: str = DEFAULT_PRIOR,
        heatmap_size: tuple[int, int] | None = None,
    ) -> tuple[Prediction, Explanation]:
        """``answer_prepared`` with the photo's quality check, then the heatmap of ``target``
        (default: the answer)."""
        prediction, attention = self.answer_prepared(prepared, prior)
        prediction = prediction.with_quality(self.check_quality(prepared))
        return prediction, attention.heatmap(target or prediction.label, heatmap_size)

    def explain(self, image: ImageSource, target: str | None = None, age=None, sex=None, site=None) -> Explanation:
        """Grad-CAM of ``target`` (default: the most probable class) through the fused model."""
        return self.diagnose(image, age, sex, site, target=target)[1]
