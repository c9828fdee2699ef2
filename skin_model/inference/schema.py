"""What each key of an answer means: the one description of ``Prediction.as_dict``.

The API's OpenAPI document is generated from it (``serving/api.py``), and the tests check that an
answer holds exactly these keys. Torch-free, so the API can describe itself before the model loads.
"""

from __future__ import annotations

from skin_model import vocab
from skin_model.inference.quality import CHECKS

_NUMBER = {"type": "number", "minimum": 0, "maximum": 1}
_PROBABILITIES = {"type": "object", "properties": {c: _NUMBER for c in vocab.CLASSES}}


def _field(schema: dict, description: str) -> dict:
    return schema | {"description": description}


def _or_null(schema: dict) -> dict:
    """A field that is null (or empty) when the image cannot be judged and no answer was asked for anyway."""
    kind = schema["type"]
    return schema | {"type": [kind, "null"]} if kind in ("number", "string", "boolean") else schema


_UNJUDGED = " Null (empty) when the verdict is cannot_judge, unless answer_anyway was asked for."

# key -> JSON schema with its meaning, in the order ``Prediction.as_dict`` gives them.
ANSWER_FIELDS: dict[str, dict] = {
    "verdict": _field(
        {"type": "string", "enum": ["suspicious", "not_suspicious", "cannot_judge"]},
        "Should a dermatologist see the lesion: suspicious (referral_probability at or above refer_threshold), "
        "not_suspicious, or cannot_judge (the image is unlike the dermoscopy the model learnt from: no number "
        "is given, see answered_anyway)",
    ),
    "refer": _field(
        {"type": ["boolean", "null"]}, "true when suspicious, false when not suspicious, null when cannot_judge"
    ),
    "answered_anyway": _field(
        {"type": "boolean"},
        "true: the image cannot be judged and its numbers were given because the request asked for them anyway "
        "(answer_anyway); they do not mean what they say on dermoscopy",
    ),
    "referral_probability": _field(
        _or_null(_NUMBER),
        "P(mel + bcc + akiec), calibrated under HAM10000's frequencies: the number the verdict reads." + _UNJUDGED,
    ),
    "refer_threshold": _field(
        _or_null(_NUMBER), "the referral rule's threshold, chosen out of fold for 90% sensitivity." + _UNJUDGED
    ),
    "borderline": _field(
        {"type": ["boolean", "null"]}, "referral_probability lies near refer_threshold (the card's band)." + _UNJUDGED
    ),
    "prediction": _field(
        {"type": ["string", "null"], "enum": [*vocab.CLASSES, None]},
        "the most probable class of probabilities (under prior)." + _UNJUDGED,
    ),
    "confidence": _field(_or_null(_NUMBER), "the prediction's probability, under prior." + _UNJUDGED),
    "prior": _field(
        {"type": "string", "enum": list(vocab.PRIOR_NAMES)},
        "the prior the probabilities are stated under: training (HAM10000's frequencies) or equal",
    ),
    "uncertain_between": _field(
        {"type": ["array", "null"], "items": {"type": "string", "enum": list(vocab.CLASSES)}},
        "the two most probable classes of probabilities when they are too close to call, else null",
    ),
    "ood": _field({"type": "boolean"}, "true: the image does not look like the dermoscopy the model learnt from"),
    "ood_score": _field({"type": "number"}, "the out-of-domain score; above the card's ood threshold: ood"),
    "similar_cases": _field(
        {
            "type": "array",
            "items": {
                "type": "object",
                "properties": {
                    "image_id": {"type": "string"},
                    "dx": {"type": "string", "enum": list(vocab.CLASSES)},
                    "dx_type": {"type": "string"},
                    "similarity": {"type": "number", "description": "cosine similarity of image features"},
                    "age": {"type": ["number", "null"]},
                    "sex": {"type": "string"},
                    "site": {"type": "string"},
                },
            },
        },
        "the most similar confirmed training images, one per lesion." + _UNJUDGED,
    ),
    "malignant_probability": _field(
        _or_null(_NUMBER),
        "the same number as referral_probability (HAM10000's frequencies), whatever prior is asked for." + _UNJUDGED,
    ),
    "probabilities": _field(
        _PROBABILITIES, "the seven calibrated probabilities with the metadata given, under prior." + _UNJUDGED
    ),
    "image_only_probabilities": _field(_PROBABILITIES, "the same with every metadata field unknown." + _UNJUDGED),
    "before_base_rates": _field(
        _PROBABILITIES,
        "what the image suggests with every diagnosis as likely beforehand (the equal prior): a teaching view, "
        "not the probability of this lesion." + _UNJUDGED,
    ),
    "image_quality": _field(
        {
            "type": ["object", "null"],
            "properties": {
                "problems": {
                    "type": "array",
                    "items": {"type": "string", "enum": list(CHECKS)},
                },
                "sharpness": {"type": "number"},
                "brightness": {"type": "number"},
                "lesion_share": {"type": "number"},
                "lesion_outside": {"type": "number"},
            },
        },
        "the photo's quality: problems found (advice to retake it; the answer is still given) and the measures",
    ),
    "metadata": _field(
        {
            "type": "object",
            "properties": {"age": {"type": ["number", "null"]}, "sex": {"type": "string"}, "site": {"type": "string"}},
        },
        "the patient information as read (unknown where not given)",
    ),
    "model_version": _field({"type": "string"}, "the model that answered"),
}
