"""Image decoding and metadata validation: odd but valid inputs work, bad ones get clear errors."""

import io
import math

import numpy as np
import pytest
from PIL import Image

from skin_model.config import settings
from skin_model.inference import inputs
from skin_model.inference.inputs import load_image, parse_metadata

from .conftest import encode, synthetic_lesion
from .hostile import HOSTILE_IMAGES

BASE = synthetic_lesion("mel", seed=1, size=(120, 90))


def _exif_rotated(orientation: int) -> bytes:
    exif = Image.Exif()
    exif[0x0112] = orientation
    return encode(BASE, "JPEG", exif=exif)


def _png16() -> bytes:
    arr = np.asarray(BASE.convert("L"), dtype=np.uint16) * 257
    img = Image.fromarray(arr)
    assert img.mode == "I;16"
    return encode(img)


def _palette_with_transparency() -> bytes:
    pal = BASE.convert("P", palette=Image.ADAPTIVE, colors=16)
    pal.info["transparency"] = 0
    return encode(pal)


GOOD = {
    "jpeg": lambda: encode(BASE, "JPEG"),
    "png": lambda: encode(BASE),
    "webp": lambda: encode(BASE, "WEBP"),
    "bmp": lambda: encode(BASE, "BMP"),
    "tiff": lambda: encode(BASE, "TIFF"),
    "grayscale": lambda: encode(BASE.convert("L")),
    "rgba": lambda: encode(BASE.convert("RGBA")),
    "palette_transparent": _palette_with_transparency,
    "png16": _png16,
    "cmyk_jpeg": lambda: encode(BASE.convert("CMYK"), "JPEG"),
    "pil_image": lambda: BASE,
}


@pytest.mark.parametrize("name", sorted(GOOD))
def test_common_formats_decode_to_rgb(name):
    img = load_image(GOOD[name]())
    assert img.mode == "RGB" and img.size == BASE.size


def test_sixteen_bit_keeps_its_contrast():
    img = np.asarray(load_image(_png16()))
    assert img.max() > 150 and img.std() > 5  # not clipped to white or flattened


@pytest.mark.parametrize("orientation", [6, 8])
def test_exif_orientation_is_applied(orientation):
    assert load_image(_exif_rotated(orientation)).size == (BASE.height, BASE.width)


def test_path_and_file_object(tmp_path):
    path = tmp_path / "lesion.png"
    BASE.save(path)
    assert load_image(path).size == BASE.size
    assert load_image(str(path)).size == BASE.size
    assert load_image(io.BytesIO(path.read_bytes())).size == BASE.size


# The hostile images that must be refused, shared with the model and app tests.
BAD = {name: case for name, case in HOSTILE_IMAGES.items() if case[1] is not None}


@pytest.mark.parametrize("name", sorted(BAD))
def test_bad_images_get_clear_errors(name):
    make, error = BAD[name]
    with pytest.raises(error) as info:
        load_image(make())
    assert isinstance(info.value, ValueError)
    assert "Traceback" not in str(info.value) and len(str(info.value)) > 10


@pytest.mark.parametrize(
    "age,expected",
    [(None, None), (math.nan, None), ("", None), ("unknown", None), (0, 0.0), (45, 45.0), ("70", 70.0), (100, 100.0)],
)
def test_valid_ages(age, expected):
    assert parse_metadata(age=age).age == expected


@pytest.mark.parametrize("age", [-1, 101, "abc", True, 1e9])
def test_impossible_ages(age):
    with pytest.raises(inputs.InvalidAgeError):
        parse_metadata(age=age)


@pytest.mark.parametrize(
    "sex,expected", [(None, "unknown"), ("Female", "female"), (" male ", "male"), ("UNKNOWN", "unknown")]
)
def test_sex_is_normalised(sex, expected):
    assert parse_metadata(sex=sex).sex == expected


@pytest.mark.parametrize(
    "site,expected", [("Lower Extremity", "lower extremity"), ("upper_extremity", "upper extremity"), (" back", "back")]
)
def test_site_is_normalised(site, expected):
    assert parse_metadata(site=site).site == expected


@pytest.mark.parametrize(
    "field,value,error",
    [
        ("sex", "robot", inputs.UnknownSexError),
        ("sex", 3, inputs.UnknownSexError),
        ("site", "elbow", inputs.UnknownSiteError),
    ],
)
def test_unknown_choices(field, value, error):
    with pytest.raises(error):
        parse_metadata(**{field: value})


@pytest.mark.parametrize("fmt, size", [("PNG", (5000, 4000)), ("JPEG", (6300, 6300)), ("PNG", (3000, 200))])
def test_large_images_are_brought_to_a_bounded_working_size(fmt, size):
    """A 20 MP flat PNG or a 40 MP JPEG: everything after decoding works at <= 1024 px."""
    img = Image.new("RGB", size, (180, 120, 100))
    buf = io.BytesIO()
    img.save(buf, fmt)
    out = load_image(buf.getvalue())
    side = settings().max_working_side
    assert max(out.size) == side and out.mode == "RGB"
    assert out.size[0] / out.size[1] == pytest.approx(size[0] / size[1], rel=0.02)  # the shape is kept


def test_images_that_decode_at_full_size_have_a_lower_pixel_limit_than_jpeg(monkeypatch):
    """A PNG exists at full size while it decodes (a 131 kB flat 6300x6300 PNG is 160 MB in
    memory), a JPEG at reduced scale: past the decoded-pixel limit the PNG is refused, the
    JPEG of the same size is not."""
    monkeypatch.setenv("SKIN_MODEL_MAX_DECODED_PIXELS", "100000")
    img = Image.new("RGB", (400, 300), (180, 120, 100))
    with pytest.raises(inputs.ImageTooLargeError, match="limit is 0 megapixels for PNG"):
        load_image(encode(img, "PNG"))
    assert load_image(encode(img, "JPEG")).size == (400, 300)
    assert load_image(img).size == (400, 300)  # already decoded by the caller
    monkeypatch.setenv("SKIN_MODEL_MAX_DECODED_PIXELS", "120000")
    assert load_image(encode(img, "PNG")).size == (400, 300)


@pytest.mark.parametrize(("fmt", "limit_setting"), [("JPEG", "max_image_pixels"), ("PNG", "max_decoded_pixels")])
@pytest.mark.parametrize("as_path", [False, True])
def test_a_decompression_bomb_is_refused_with_the_limit_of_its_format(
    monkeypatch, tmp_path, fmt, limit_setting, as_path
):
    """Pillow refuses a bomb before it names the format; the refusal still names the
    limit that applies to that format (a PNG's is lower than a JPEG's)."""
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 10_000)  # Pillow raises above twice this
    data = encode(Image.new("RGB", (400, 300), (180, 120, 100)), fmt)
    source = data
    if as_path:
        source = tmp_path / f"bomb.{fmt.lower()}"
        source.write_bytes(data)
    with pytest.raises(inputs.ImageTooLargeError, match="far too large") as err:
        load_image(source)
    assert err.value.params["limit"] == getattr(settings(), limit_setting) // 1_000_000
    assert settings().max_image_pixels != settings().max_decoded_pixels  # so the two cases differ


def test_a_large_pil_image_given_by_the_caller_is_not_changed():
    img = Image.new("RGB", (2048, 1536), (10, 20, 30))
    out = load_image(img)
    assert img.size == (2048, 1536) and max(out.size) == 1024


@pytest.mark.parametrize(
    ("fmt", "size", "side"),
    [
        ("PNG", (300, 200), "1024"),
        ("JPEG", (300, 200), "1024"),
        ("JPEG", (800, 600), "100"),
        ("JPEG", (1700, 900), "200"),
    ],
)
def test_decoding_bytes_is_what_pillow_decodes_twice_over(monkeypatch, fmt, size, side):
    """The decoding's cost read from the header: the image Pillow decodes (a JPEG at its draft
    scale, as load_image asks for it), at 4 bytes a pixel, twice (the RGB copy)."""
    from skin_model.inference.inputs import decoding_bytes

    monkeypatch.setenv("SKIN_MODEL_MAX_SIDE", side)
    data = encode(Image.new("RGB", size, (120, 80, 60)), fmt)
    with Image.open(io.BytesIO(data)) as img:
        if fmt == "JPEG" and max(size) > int(side):
            img.draft("RGB", (int(side), int(side)))
        decoded = img.size
    assert decoding_bytes(data) == 2 * 4 * decoded[0] * decoded[1]
    assert decoding_bytes(b"not an image at all") == 0
