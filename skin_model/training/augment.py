"""Training augmentation, on whole batches at once and on the batch's device.

Two kinds: what a lesion does not have (an up, a left, a fixed scale), and what
differs between the clinics and cameras that took the pictures (colour cast,
field of view, blur, the dermoscope's ring and vignette, and how an upload was brought
to the working size: its resampling filter, an intermediate size, JPEG re-compression,
sharpening). The second kind is switched on per recipe (``SourceAugmentation``).
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image

from skin_model.inference.preprocess import jpeg_round_trip as saved_as_jpeg


@dataclass(frozen=True)
class SourceAugmentation:
    """How strongly to imitate other sources; zeros switch each piece off."""

    zoom_out: float = 0.0  # share of images zoomed out (the lesion small in a wide, padded field)
    colour_cast: float = 0.0  # per-channel gain jitter, as log-gain: 0.15 is about ±16%
    gamma: float = 0.0  # log-gamma jitter
    blur: float = 0.0  # share of images blurred (sigma 0.5-1.5 px at the input size)
    ring: float = 0.0  # share of images given a dermoscope ring and vignette
    low_res: float = 0.0  # share of images squashed to LOW_RES_SIDE square and back (BCN20000's copy)
    # How an upload reached the working size (issue 43): the copies trained on were all made one
    # way (Pillow bicubic, JPEG quality 75), so without these the model learns that way's texture.
    resize: float = 0.0  # share of images brought to size again: another filter, via another size
    jpeg: float = 0.0  # share of images re-compressed as JPEG at a random quality (JPEG_QUALITIES)
    sharpen: float = 0.0  # share of images sharpened (an unsharp mask, as cameras and viewers do)

    @property
    def active(self) -> bool:
        return any(v > 0 for v in asdict(self).values())

    @classmethod
    def strong(cls) -> SourceAugmentation:
        return cls(zoom_out=0.3, colour_cast=0.15, gamma=0.2, blur=0.25, ring=0.25)


NO_SOURCE_AUGMENTATION = SourceAugmentation()
# BCN20000's only reachable copy is 84x84, squashed from the originals: images of the other
# sources made the same way at random keep "blurry" from meaning "Barcelona".
LOW_RES_SIDE = 84
# (mode, antialias) of F.interpolate: the filters image libraries resize with.
RESIZE_FILTERS = (("nearest", False), ("bilinear", False), ("bilinear", True), ("bicubic", True), ("area", False))
RESIZE_SCALES = (0.5, 3.0)  # the intermediate size, as a share of the image's own (log-uniform)
JPEG_QUALITIES = (30, 95)  # inclusive
SHARPEN_AMOUNTS = (0.3, 1.0)


def _gray(x: torch.Tensor) -> torch.Tensor:
    return (0.299 * x[:, 0] + 0.587 * x[:, 1] + 0.114 * x[:, 2]).unsqueeze(1)


def gaussian_blur(x: torch.Tensor, sigma: float) -> torch.Tensor:
    """A separable Gaussian blur of 3-channel images (edges replicated)."""
    radius = max(1, math.ceil(2 * sigma))
    t = torch.arange(-radius, radius + 1, device=x.device, dtype=x.dtype)
    k = torch.exp(-(t**2) / (2 * sigma**2))
    k = (k / k.sum()).view(1, 1, 1, -1).repeat(3, 1, 1, 1)
    x = F.conv2d(F.pad(x, (radius, radius, 0, 0), mode="replicate"), k, groups=3)
    return F.conv2d(F.pad(x, (0, 0, radius, radius), mode="replicate"), k.transpose(-1, -2), groups=3)


def _ring(x: torch.Tensor, uniform) -> torch.Tensor:
    """A dark disc outside a circle (the dermoscope's ring) and a radial fall-off (vignette)."""
    n, _, h, w = x.shape
    ys = torch.linspace(-h / 2, h / 2, h, device=x.device).view(1, h, 1)
    xs = torch.linspace(-w / 2, w / 2, w, device=x.device).view(1, 1, w)
    half_diagonal = math.hypot(h, w) / 2
    d = torch.sqrt(xs**2 + ys**2) / half_diagonal  # 0 at the centre, 1 at the corners
    radius = uniform(0.65, 1.0).view(n, 1, 1)
    inside = torch.sigmoid((radius - d) / 0.02)
    vignette = 1 - uniform(0.0, 0.5).view(n, 1, 1) * d**2
    return x * (inside * vignette).unsqueeze(1)


def squash_to_low_res(x: torch.Tensor) -> torch.Tensor:
    """Down to LOW_RES_SIDE x LOW_RES_SIDE (antialiased, aspect ignored) and back to the input size."""
    small = F.interpolate(x, size=(LOW_RES_SIDE, LOW_RES_SIDE), mode="bilinear", antialias=True, align_corners=False)
    return F.interpolate(small, size=x.shape[-2:], mode="bilinear", align_corners=False)


def _interpolate(x: torch.Tensor, size: tuple[int, int], mode: str, antialias: bool) -> torch.Tensor:
    corners = None if mode in ("nearest", "area") else False
    antialias = antialias and (size[0] < x.shape[-2])  # antialiasing only matters when shrinking
    return F.interpolate(x, size=size, mode=mode, align_corners=corners, antialias=antialias)


def resize_again(x: torch.Tensor, scale: float, down: tuple[str, bool], up: tuple[str, bool]) -> torch.Tensor:
    """Each image to ``scale`` times its size with ``up`` (or ``down`` when it shrinks) and back
    with the other: what a viewer, a browser or another app does to a file before it is uploaded."""
    h, w = x.shape[-2:]
    mid = (max(8, round(h * scale)), max(8, round(w * scale)))
    first, second = (up, down) if scale >= 1 else (down, up)
    return _interpolate(_interpolate(x, mid, *first), (h, w), *second).clamp(0.0, 1.0)


def jpeg_round_trip(x: torch.Tensor, qualities: list[int]) -> torch.Tensor:
    """Each image saved as a JPEG at its quality and read again, by Pillow (as the copies were made)."""
    pixels = x.mul(255).round_().clamp_(0, 255).to("cpu", torch.uint8).permute(0, 2, 3, 1).numpy()
    out = [np.asarray(saved_as_jpeg(Image.fromarray(img), int(q))) for img, q in zip(pixels, qualities)]
    return torch.from_numpy(np.stack(out)).permute(0, 3, 1, 2).to(x.device, x.dtype).div_(255.0)


def sharpen(x: torch.Tensor, amount: torch.Tensor) -> torch.Tensor:
    """An unsharp mask: ``amount`` (one per image) times the detail a 1 px blur removes, added."""
    return (x + amount.view(-1, 1, 1, 1) * (x - gaussian_blur(x, 1.0))).clamp(0.0, 1.0)


def bring_to_size_otherwise(x: torch.Tensor, source: SourceAugmentation, gen: torch.Generator) -> torch.Tensor:
    """``source``'s resize, sharpen and JPEG pieces on float images at their own (source) size,
    each on a random share of the batch (only those rows are computed). One filter pair and
    intermediate size per batch, like ``blur``'s sigma; an amount and a quality per image."""
    n = x.shape[0]
    draws = torch.rand((3, n), generator=gen)
    lo, hi = (math.log(s) for s in RESIZE_SCALES)
    scale = math.exp(float(torch.rand(1, generator=gen)) * (hi - lo) + lo)
    down, up = (RESIZE_FILTERS[int(i)] for i in torch.randint(len(RESIZE_FILTERS), (2,), generator=gen))
    amount = torch.rand(n, generator=gen) * (SHARPEN_AMOUNTS[1] - SHARPEN_AMOUNTS[0]) + SHARPEN_AMOUNTS[0]
    qualities = torch.randint(JPEG_QUALITIES[0], JPEG_QUALITIES[1] + 1, (n,), generator=gen)
    x = x.clone()
    for share, draw, piece in (
        (source.resize, draws[0], lambda rows: resize_again(x[rows], scale, down, up)),
        (source.sharpen, draws[1], lambda rows: sharpen(x[rows], amount[rows].to(x.device))),
        # last, as a file is saved after it was resized
        (source.jpeg, draws[2], lambda rows: jpeg_round_trip(x[rows], qualities[rows].tolist())),
    ):
        rows = (draw < share).nonzero().view(-1)  # none where the share is 0
        if len(rows):
            x[rows.to(x.device)] = piece(rows.to(x.device))
    return x


def augment_batch(
    images: torch.Tensor,
    out_hw: tuple[int, int],
    gen: torch.Generator,
    source: SourceAugmentation = NO_SOURCE_AUGMENTATION,
) -> torch.Tensor:
    """uint8 (N, 3, H, W) -> float (N, 3, h, w) in [0, 1].

    Per image: a random crop of 35-100% of the area (aspect jitter 3:4 to 4:3), flips,
    a rotation of up to 45° for half of them, and brightness / contrast / saturation
    jitter of ±20%; ``source``'s pieces (those of the upload's path at the source size, first). One ``grid_sample`` replaces a per-image
    pipeline that would starve a GPU.
    """
    n, device = images.shape[0], images.device

    def uniform(lo, hi):
        return (torch.rand(n, generator=gen) * (hi - lo) + lo).to(device)

    area, log_ratio = uniform(0.35, 1.0), uniform(math.log(3 / 4), math.log(4 / 3))
    if source.zoom_out > 0:  # up to 2x the field: the lesion at half its size, padded with black
        area = torch.where(uniform(0, 1) < source.zoom_out, uniform(1.0, 4.0), area)
    sx = torch.sqrt(area * log_ratio.exp())  # half-extent of the sampled window, in [-1, 1] units
    sy = torch.sqrt(area / log_ratio.exp())
    if source.zoom_out <= 0:
        sx, sy = sx.clamp(max=1.0), sy.clamp(max=1.0)
    tx, ty = uniform(-1, 1) * (1 - sx), uniform(-1, 1) * (1 - sy)
    flip_x = torch.where(uniform(0, 1) < 0.5, -1.0, 1.0)
    flip_y = torch.where(uniform(0, 1) < 0.5, -1.0, 1.0)
    angle = torch.where(uniform(0, 1) < 0.5, uniform(-math.pi / 4, math.pi / 4), torch.zeros(n, device=device))
    cos, sin = angle.cos(), angle.sin()
    theta = torch.stack(
        [
            torch.stack([cos * sx * flip_x, -sin * sy * flip_y, tx], 1),
            torch.stack([sin * sx * flip_x, cos * sy * flip_y, ty], 1),
        ],
        1,
    )
    grid = F.affine_grid(theta, (n, 3, *out_hw), align_corners=False)
    x = images.float().div_(255.0)
    if source.low_res > 0:
        chosen = (torch.rand(n, generator=gen) < source.low_res).to(device)
        if chosen.any():
            x = torch.where(chosen.view(n, 1, 1, 1), squash_to_low_res(x), x)
    if source.resize > 0 or source.jpeg > 0 or source.sharpen > 0:
        x = bring_to_size_otherwise(x, source, gen)
    # Downscale first so bilinear sampling does not alias.
    scale = min(1.0, out_hw[0] / x.shape[-2])
    if scale < 0.75:
        x = F.interpolate(x, scale_factor=scale / 0.75, mode="bilinear", antialias=True, align_corners=False)
    padding = "zeros" if source.zoom_out > 0 else "reflection"
    x = F.grid_sample(x, grid, mode="bilinear", padding_mode=padding, align_corners=False)
    view = (n, 1, 1, 1)
    x = x * uniform(0.8, 1.2).view(view)  # brightness
    mean = _gray(x).mean((2, 3), keepdim=True)
    x = (x - mean) * uniform(0.8, 1.2).view(view) + mean  # contrast
    gray = _gray(x)
    x = gray + (x - gray) * uniform(0.8, 1.2).view(view)  # saturation
    if source.colour_cast > 0:  # the illuminant's colour: each channel its own gain
        c = source.colour_cast
        gains = torch.exp(torch.rand((n, 3), generator=gen) * 2 * c - c).to(device)
        x = x * gains.view(n, 3, 1, 1)
    if source.gamma > 0:
        x = x.clamp(0.0, 1.0).pow(torch.exp(uniform(-source.gamma, source.gamma)).view(view))
    if source.blur > 0:  # one sigma per batch, applied to a random share of it
        chosen = (torch.rand(n, generator=gen) < source.blur).to(device)
        sigma = float(torch.rand(1, generator=gen)) + 0.5
        if chosen.any():
            x = torch.where(chosen.view(view), gaussian_blur(x, sigma), x)
    if source.ring > 0:
        chosen = (torch.rand(n, generator=gen) < source.ring).to(device)
        x = torch.where(chosen.view(view), _ring(x, uniform), x)
    return x.clamp_(0.0, 1.0)
