"""Turning what a user gives (an image, age, sex, site) into validated values.

Every refusal is a ``ValueError`` subclass whose message a person understands.
"""

from __future__ import annotations

import io
import math
import unicodedata
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

from skin_model import vocab
from skin_model.config import settings


class InvalidInputError(ValueError):
    """Base class of every input the model refuses.

    ``str(err)`` is a plain English sentence (the API and the command line show it); the
    app words it in its own language from the class name, or ``key`` where one class has
    several messages, and the ``params`` (see ``i18n.error_text``).
    """

    def __init__(self, message: str, key: str | None = None, **params):
        super().__init__(message)
        self.key = key or type(self).__name__
        self.params = params


class NotAnImageError(InvalidInputError):
    pass


class TruncatedImageError(InvalidInputError):
    pass


class ImageTooSmallError(InvalidInputError):
    pass


class ImageTooLargeError(InvalidInputError):
    pass


class MetadataError(InvalidInputError):
    """A metadata field that cannot be read; ``field`` and ``value`` say which and what."""

    field = ""

    def __init__(self, message: str, value=None):
        super().__init__(message, value=value)
        self.value = value


class MetadataFileError(InvalidInputError):
    """A metadata table (CSV) that cannot be used as a whole."""


class InvalidAgeError(MetadataError):
    field = "age"


class UnknownSexError(MetadataError):
    field = "sex"


class UnknownSiteError(MetadataError):
    field = "site"


ImageSource = Image.Image | bytes | bytearray | str | Path | BinaryIO
# File types offered for upload and picked up in folders (Pillow reads more).
IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".webp", ".bmp", ".tif", ".tiff")


def _open(source: ImageSource) -> Image.Image:
    if isinstance(source, Image.Image):
        return source
    if isinstance(source, (bytes, bytearray)):
        if not source:
            raise NotAnImageError("The file is empty.")
        source = io.BytesIO(source)
    elif isinstance(source, (str, Path)):
        source = Path(source)
        if not source.is_file():
            raise NotAnImageError(f"No image file at {source}.")
    elif hasattr(source, "seek"):
        source.seek(0)  # a file object (an upload) is read from its start, however often it is read
    try:
        # Pillow warns above its own pixel limit and raises above twice that;
        # both are turned into our own, size-based refusal below.
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            return Image.open(source)
    except Image.DecompressionBombError as err:
        # Pillow refuses before it names the format; a JPEG starts with the bytes FF D8.
        raise _too_large("The image is far too large", full_size_decode=not _starts_like_jpeg(source)) from err
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError) as err:
        raise NotAnImageError("This file is not an image that can be read (use JPEG, PNG, WebP, BMP or TIFF).") from err


def _starts_like_jpeg(source: io.BytesIO | Path | BinaryIO) -> bool:
    if isinstance(source, Path):
        with source.open("rb") as file:
            return file.read(2) == b"\xff\xd8"
    position = source.tell()
    try:
        source.seek(0)
        return source.read(2) == b"\xff\xd8"
    finally:
        source.seek(position)


def _pixel_limit(full_size_decode: bool) -> int:
    """JPEGs decode at reduced scale, so their limit is higher than that of formats that
    exist at full size while they decode."""
    cfg = settings()
    return cfg.max_decoded_pixels if full_size_decode else cfg.max_image_pixels


def _too_large(what: str, full_size_decode: bool, format_name: str | None = None) -> ImageTooLargeError:
    """The refusal of an image over its pixel limit, naming the limit of its format."""
    cfg = settings()
    limit = _pixel_limit(full_size_decode) // 1_000_000
    if full_size_decode:
        detail = f" for {format_name or 'formats other than JPEG'} (JPEG: {cfg.max_image_pixels // 1_000_000})."
    else:
        detail = "."
    return ImageTooLargeError(f"{what}; the limit is {limit} megapixels{detail}", limit=limit)


def _to_rgb(img: Image.Image) -> Image.Image:
    if img.mode in ("I;16", "I;16L", "I;16B", "I;16N", "I", "F"):
        # 16-bit or float grayscale: Pillow's own conversion clips, so rescale.
        arr = np.asarray(img, dtype=np.float64)
        top = 65535.0 if img.mode.startswith("I;16") else max(float(arr.max()), 1.0)
        arr = np.clip(arr / top * 255.0, 0, 255).astype(np.uint8)
        return Image.fromarray(arr).convert("RGB")
    if img.mode == "P" and "transparency" in img.info:
        img = img.convert("RGBA")
    if img.mode in ("RGBA", "LA", "PA"):
        # Transparent parts become black, like the vignette of a dermoscope.
        background = Image.new("RGB", img.size, (0, 0, 0))
        background.paste(img.convert("RGBA"), mask=img.convert("RGBA").getchannel("A"))
        return background
    return img if img.mode == "RGB" else img.convert("RGB")


def _shrink(img: Image.Image, side: int) -> Image.Image:
    """A copy whose longest side is at most ``side`` (the caller's image is never changed);
    done before any other copy (EXIF rotation, colour conversion) is made."""
    if max(img.size) <= side:
        return img
    scale = side / max(img.size)
    size = (max(1, round(img.width * scale)), max(1, round(img.height * scale)))
    if img.mode not in ("RGB", "RGBA", "L", "LA", "P", "I", "F", "I;16"):
        img = _to_rgb(img)
    return img.resize(size, Image.Resampling.BILINEAR, reducing_gap=2.0)


def _draft(img: Image.Image, side: int) -> None:
    """A JPEG over ``side`` is set to decode at reduced scale (DCT scaling: 1/2, 1/4 or 1/8, never
    below ``side``); nothing is decoded yet, and its ``size`` becomes the decoded one."""
    if img.format == "JPEG" and max(img.size) > side:
        img.draft("RGB", (side, side))


def decoding_bytes(data: bytes | bytearray) -> int:
    """The memory that ``load_image`` holds at most to decode these encoded bytes, read from their
    header alone: the decoded image and its copy on the way to RGB, at Pillow's 4 bytes a pixel,
    a JPEG at the scale ``draft`` decodes it. 0 where the header cannot be read (``load_image``
    then refuses the file before it decodes anything)."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            with Image.open(io.BytesIO(data)) as img:  # reads the header only
                _draft(img, settings().max_working_side)
                width, height = img.size
    except Exception:  # any unreadable header: load_image says why
        return 0
    return 2 * 4 * width * height


def load_image(source: ImageSource) -> Image.Image:
    """Decode any common image into an upright RGB ``PIL.Image`` of bounded size.

    Accepts a PIL image, encoded bytes, a path or a binary file object.
    Animated and multi-page files give their first frame. The result's longest
    side is at most ``max_working_side`` (1024 px): everything after decoding
    (the network, Grad-CAM, the overlay) then costs the same for a camera photo
    as for a dermoscope's image. JPEGs are decoded at reduced scale directly
    (``Image.draft``), so a 24-megapixel photo never exists at full size.
    """
    cfg = settings()
    img = _open(source)
    width, height = img.size
    # A JPEG is decoded at reduced scale; any other format exists at full size for a moment
    # (4 bytes a pixel in Pillow), so its limit is what an upload may cost in memory. A PIL
    # image given by the caller is already decoded: only the JPEG limit guards it.
    full_size_decode = img.format not in (None, "JPEG")
    if width * height > _pixel_limit(full_size_decode):
        raise _too_large(f"The image is too large ({width}×{height} pixels)", full_size_decode, img.format)
    if min(width, height) < cfg.min_image_side:
        raise ImageTooSmallError(
            f"The image is too small ({width}×{height} pixels); at least "
            f"{cfg.min_image_side} pixels on each side are needed.",
            width=width,
            height=height,
            side=cfg.min_image_side,
        )
    side = cfg.max_working_side
    try:
        img.seek(0)
        _draft(img, side)
        img.load()
        img = ImageOps.exif_transpose(_shrink(img, side))
    except (OSError, SyntaxError, ValueError, EOFError) as err:
        if "truncated" in str(err).lower() or isinstance(err, EOFError):
            raise TruncatedImageError("The image file is incomplete (truncated).") from err
        raise NotAnImageError("The image file is damaged and cannot be read.") from err
    return _to_rgb(img)


@dataclass(frozen=True)
class Metadata:
    """Validated clinical metadata; ``None`` / ``"unknown"`` mean not given."""

    age: float | None = None
    sex: str = vocab.UNKNOWN
    site: str = vocab.UNKNOWN

    @classmethod
    def unknown(cls) -> Metadata:
        return cls()

    def as_dict(self) -> dict:
        return {"age": self.age, "sex": self.sex, "site": self.site}


def _is_missing(value) -> bool:
    if value is None:
        return True
    if isinstance(value, float) and math.isnan(value):
        return True
    return isinstance(value, str) and _spelling_key(value) in (
        "",
        vocab.UNKNOWN,
        "nan",
        "none",
        "na",
        "n/a",
        "?",
        "inconnu",
        "inconnue",
    )


def _spelling_key(value: str) -> str:
    """Lower case, no accents, single spaces: how spellings are matched."""
    text = unicodedata.normalize("NFKD", value).encode("ascii", "ignore").decode()
    return " ".join(text.lower().replace("_", " ").split())


def _spellings(names: dict[str, tuple[str, str]], others: dict[str, str]) -> dict[str, str]:
    table = {_spelling_key(spelling): value for spelling, value in others.items()}
    for value, (english, french) in names.items():
        table |= {_spelling_key(value): value, _spelling_key(english): value, _spelling_key(french): value}
    return table


_SEX_SPELLINGS = _spellings(vocab.SEX_NAMES, vocab.SEX_SPELLINGS)
_SITE_SPELLINGS = _spellings(vocab.SITE_NAMES, vocab.SITE_SPELLINGS)


def parse_age(value) -> float | None:
    if _is_missing(value):
        return None
    if isinstance(value, bool):
        raise InvalidAgeError("The age must be a number of years between 0 and 100.", value)
    try:
        # "45,5": a decimal comma, as French writes it
        age = float(value.strip().replace(",", ".") if isinstance(value, str) else value)
    except (TypeError, ValueError) as err:
        raise InvalidAgeError(f"The age {value!r} is not a number of years.", value) from err
    if not vocab.AGE_MIN <= age <= vocab.AGE_MAX:
        raise InvalidAgeError(
            f"The age must be between {vocab.AGE_MIN} and {vocab.AGE_MAX} years (got {value}).", value
        )
    return age


def _parse_choice(
    value, spellings: dict[str, str], allowed: tuple[str, ...], error: type[MetadataError], what: str
) -> str:
    if _is_missing(value):
        return vocab.UNKNOWN
    if not isinstance(value, str):
        raise error(f"The {what} must be one of: {', '.join(allowed)}.", value)
    try:
        return spellings[_spelling_key(value)]
    except KeyError:
        raise error(f"Unknown {what} {value!r}; expected one of: {', '.join(allowed)}.", value) from None


def parse_sex(value) -> str:
    return _parse_choice(value, _SEX_SPELLINGS, vocab.SEXES, UnknownSexError, "sex")


def parse_site(value) -> str:
    return _parse_choice(value, _SITE_SPELLINGS, vocab.SITES, UnknownSiteError, "anatomical site")


def parse_metadata(age=None, sex=None, site=None) -> Metadata:
    """Validated metadata; raises a ``MetadataError`` for a field it cannot read. Besides the
    vocabulary's values, common spellings are understood (M/F, homme/femme, French site names)."""
    return Metadata(age=parse_age(age), sex=parse_sex(sex), site=parse_site(site))


def parse_metadata_leniently(age=None, sex=None, site=None) -> tuple[Metadata, tuple[MetadataError, ...]]:
    """The batch rule: a field that cannot be read becomes unknown, and its error is returned
    so that the row can carry a warning; the image is still analysed."""
    unread: list[MetadataError] = []

    def read(parse, value, unknown):
        try:
            return parse(value)
        except MetadataError as err:
            unread.append(err)
            return unknown

    meta = Metadata(
        age=read(parse_age, age, None),
        sex=read(parse_sex, sex, vocab.UNKNOWN),
        site=read(parse_site, site, vocab.UNKNOWN),
    )
    return meta, tuple(unread)
