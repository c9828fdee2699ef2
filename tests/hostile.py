"""Hostile inputs shared by the API and app tests: name -> (bytes, expected error or None)."""

import io

import numpy as np
from PIL import Image

from skin_model.inference import inputs

from .conftest import encode, synthetic_lesion

BASE = synthetic_lesion("mel", seed=11, size=(160, 120))


def _truncate(data: bytes) -> bytes:
    return data[: len(data) * 2 // 3]


def _bad_header_crc() -> bytes:
    data = bytearray(encode(BASE))
    data[29] ^= 0xFF  # the IHDR chunk's CRC
    return bytes(data)


def _png16() -> bytes:
    return encode(Image.fromarray(np.asarray(BASE.convert("L"), dtype=np.uint16) * 257))


def _palette_transparent() -> bytes:
    pal = BASE.convert("P", palette=Image.ADAPTIVE, colors=32)
    pal.info["transparency"] = 0
    return encode(pal)


def _animated_gif() -> bytes:
    frames = [BASE.convert("P"), synthetic_lesion("nv", 12, (160, 120)).convert("P")]
    buf = io.BytesIO()
    frames[0].save(buf, "GIF", save_all=True, append_images=frames[1:], duration=100, loop=0)
    return buf.getvalue()


def _multipage_tiff() -> bytes:
    buf = io.BytesIO()
    BASE.save(buf, "TIFF", save_all=True, append_images=[synthetic_lesion("df", 13, (160, 120))])
    return buf.getvalue()


def _exif(orientation: int) -> bytes:
    exif = Image.Exif()
    exif[0x0112] = orientation
    return encode(BASE, "JPEG", exif=exif)


SVG = (
    b'<?xml version="1.0"?><svg xmlns="http://www.w3.org/2000/svg" width="100" height="100">'
    b'<circle cx="50" cy="50" r="40" fill="brown"/></svg>'
)
HEIC = b"\x00\x00\x00\x18ftypheic\x00\x00\x00\x00mif1heic" + b"\x00" * 200  # no HEIF plugin in Pillow

# name -> (bytes, the error it must raise, or None when it is a readable image)
HOSTILE_IMAGES = {
    "empty": (lambda: b"", inputs.NotAnImageError),
    "random_bytes": (lambda: np.random.default_rng(1).bytes(10_000), inputs.NotAnImageError),
    "text_named_jpg": (lambda: b"Patient notes: lesion on the back\n" * 50, inputs.NotAnImageError),
    "truncated_jpeg": (lambda: _truncate(encode(BASE, "JPEG")), inputs.TruncatedImageError),
    "truncated_png": (lambda: _truncate(encode(BASE)), inputs.TruncatedImageError),
    "missing_path": (lambda: "/nonexistent/lesion.jpg", inputs.NotAnImageError),
    "png_bad_crc": (_bad_header_crc, inputs.NotAnImageError),
    "one_pixel": (lambda: encode(Image.new("RGB", (1, 1))), inputs.ImageTooSmallError),
    "bomb_20000": (lambda: encode(Image.new("1", (20000, 20000))), inputs.ImageTooLargeError),
    "svg": (lambda: SVG, inputs.NotAnImageError),
    "heic": (lambda: HEIC, inputs.NotAnImageError),
    "png16_gray": (_png16, None),
    "cmyk_jpeg": (lambda: encode(BASE.convert("CMYK"), "JPEG"), None),
    "palette_transparent": (_palette_transparent, None),
    "animated_gif": (_animated_gif, None),
    "multipage_tiff": (_multipage_tiff, None),
    "exif_6": (lambda: _exif(6), None),
    "exif_8": (lambda: _exif(8), None),
    "avif": (lambda: encode(BASE, "AVIF"), None),
    "all_black": (lambda: encode(Image.new("RGB", (160, 120))), None),
    "all_white": (lambda: encode(Image.new("RGB", (160, 120), (255, 255, 255))), None),
}

# (age, sex, site) -> the error it must raise, or None when it is accepted
HOSTILE_METADATA = [
    ((-1, None, None), inputs.InvalidAgeError),
    ((101, None, None), inputs.InvalidAgeError),
    (("abc", None, None), inputs.InvalidAgeError),
    ((float("nan"), None, None), None),
    ((None, None, None), None),
    ((None, "robot", None), inputs.UnknownSexError),
    ((None, "FEMALE", None), None),
    ((None, "  male\t", None), None),
    ((None, None, "elbow"), inputs.UnknownSiteError),
    ((None, None, "LOWER EXTREMITY"), None),
    ((None, None, " back "), None),
    ((None, None, "../../etc/passwd"), inputs.UnknownSiteError),
]

HOSTILE_CSVS = {
    "missing_image_id": (b"age,sex\n50,male\n", inputs.InvalidInputError),
    "extra_columns": (b"image_id,age,sex,localization,notes,dx\nimg0,50,male,back,hello,mel\n", None),
    "duplicate_image_id": (b"image_id,age\nimg0,50\nimg0,60\n", inputs.InvalidInputError),
    "path_characters": (b"image_id,age\n../../etc/passwd,50\nimg0,40\n", None),
    "junk_10mb": (np.random.default_rng(2).bytes(10 * 2**20), inputs.InvalidInputError),
    "empty": (b"", inputs.InvalidInputError),
}
