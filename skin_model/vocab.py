"""The one source of truth for diagnoses and metadata values.

Every other module, the model card and the app take the class list, the
class names (English and French), the malignancy groups and the metadata
vocabulary from here.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Diagnosis:
    code: str
    name_en: str
    name_fr: str
    group: str  # "malignant", "premalignant" or "benign"

    def name(self, lang: str = "en") -> str:
        return self.name_fr if lang == "fr" else self.name_en


# HAM10000 order (alphabetical by code); the network's outputs follow it.
DIAGNOSES: tuple[Diagnosis, ...] = (
    Diagnosis(
        "akiec",
        "Actinic keratosis / intraepithelial carcinoma (Bowen's disease)",
        "Kératose actinique / carcinome intra-épidermique (maladie de Bowen)",
        "premalignant",
    ),
    Diagnosis("bcc", "Basal cell carcinoma", "Carcinome basocellulaire", "malignant"),
    Diagnosis("bkl", "Benign keratosis-like lesion", "Lésion kératosique bénigne", "benign"),
    Diagnosis("df", "Dermatofibroma", "Dermatofibrome", "benign"),
    Diagnosis("mel", "Melanoma", "Mélanome", "malignant"),
    Diagnosis("nv", "Melanocytic nevus", "Nævus mélanocytaire", "benign"),
    Diagnosis("vasc", "Vascular lesion", "Lésion vasculaire", "benign"),
)
CLASSES: tuple[str, ...] = tuple(d.code for d in DIAGNOSES)
BY_CODE: dict[str, Diagnosis] = {d.code: d for d in DIAGNOSES}
GROUPS: tuple[str, ...] = ("malignant", "premalignant", "benign")

UNKNOWN = "unknown"
AGE_MIN, AGE_MAX = 0, 100
# value -> (English, French) name as the app shows it.
SEX_NAMES: dict[str, tuple[str, str]] = {
    "female": ("female", "femme"),
    "male": ("male", "homme"),
    UNKNOWN: ("unknown", "inconnu"),
}
SEXES: tuple[str, ...] = tuple(SEX_NAMES)
# The 15 HAM10000 `localization` values, in the dataset's own spelling.
SITE_NAMES: dict[str, tuple[str, str]] = {
    "abdomen": ("abdomen", "abdomen"),
    "acral": ("acral", "acral"),
    "back": ("back", "dos"),
    "chest": ("chest", "poitrine"),
    "ear": ("ear", "oreille"),
    "face": ("face", "visage"),
    "foot": ("foot", "pied"),
    "genital": ("genital", "génital"),
    "hand": ("hand", "main"),
    "lower extremity": ("lower extremity", "membre inférieur"),
    "neck": ("neck", "cou"),
    "scalp": ("scalp", "cuir chevelu"),
    "trunk": ("trunk", "tronc"),
    UNKNOWN: ("unknown", "inconnue"),
    "upper extremity": ("upper extremity", "membre supérieur"),
}
SITES: tuple[str, ...] = tuple(SITE_NAMES)
# Other spellings that metadata files use for the same values (matched without case or
# accents), beside the values and their French names above.
SEX_SPELLINGS: dict[str, str] = {
    "f": "female",
    "w": "female",
    "woman": "female",
    "feminin": "female",
    "feminine": "female",
    "m": "male",
    "h": "male",
    "man": "male",
    "masculin": "male",
    "masculine": "male",
    "u": UNKNOWN,
    "?": UNKNOWN,
    "inconnue": UNKNOWN,
}
SITE_SPELLINGS: dict[str, str] = {
    "leg": "lower extremity",
    "lower limb": "lower extremity",
    "jambe": "lower extremity",
    "arm": "upper extremity",
    "upper limb": "upper extremity",
    "bras": "upper extremity",
    "palms/soles": "acral",
    "posterior torso": "back",
    "inconnu": UNKNOWN,
}

# Priors under which the probabilities are stated (see priors.py). "training", the default:
# the training images' own frequencies, the calibrated probabilities whose mel + bcc + akiec
# is the referral's number (one malignancy number everywhere), and a better melanoma ranking
# on other clinics' images (docs/model.md). "equal": every diagnosis as likely before the image
# is seen, a view of the image's evidence before base rates, never called a probability.
# The answer (``prediction``) is the most probable class under the prior the probabilities are
# stated in: with "equal", the balanced decision (the card reports both priors' figures).
PRIOR_NAMES: tuple[str, ...] = ("training", "equal")
DEFAULT_PRIOR = "training"


def vocabulary() -> dict:
    """The vocabulary as plain data, as written into the model card."""
    return {"classes": list(CLASSES), "sex": list(SEXES), "site": list(SITES), "age": {"min": AGE_MIN, "max": AGE_MAX}}
