"""Training augmentation, on whole batches at once and on the batch's device.

Two kinds: what a lesion does not have (an up, a left, a fixed scale), and what
differs between the clinics and cameras that took the pictures (colour cast,
field of view, blur, the dermoscope's ring and vignette). The second kind is
switched on per recipe (``SourceAugmentation``), and only where the held-out-source
check says it helps.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass

import torch
import torch.nn.functional as F


@dataclass(frozen=True)
class SourceAugmentation:
    """How strongly to imitate other sources; zeros switch each piece off."""

    zoom_out: float = 0.0  # share of images zoomed out (the lesion small in a wide, padded field)
    colour_cast: float = 0.0  # per-channel gain jitter, as log-gain: 0.15 is about ±16%
    gamma: float = 0.0  # log-gamma jitter
    blur: float = 0.0  # share of images blurred (sigma 0.5-1.5 px at the input size)
    ring: float = 0.0  # share of images given a dermoscope ring and vignette
    low_res: float = 0.0  # share of images squashed to LOW_RES_SIDE square and back (BCN20000's copy)

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


def _gray(x: torch.Tensor) -> torch.Tensor:
    return (0.299 * x[:, 0] + 0.587 * x[:, 1] + 0.114 * x[:, 2]).unsqueeze(1)


def _blur(x: torch.Tensor, sigma: float) -> torch.Tensor:
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


def augment_batch(
    images: torch.Tensor,
    out_hw: tuple[int, int],
    gen: torch.Generator,
    source: SourceAugmentation = NO_SOURCE_AUGMENTATION,
) -> torch.Tensor:
    """uint8 (N, 3, H, W) -> float (N, 3, h, w) in [0, 1].

    Per image: a random crop of 35-100% of the area (aspect jitter 3:4 to 4:3), flips,
    a rotation of up to 45° for half of them, and brightness / contrast / saturation
    jitter of ±20%; then ``source``'s pieces. One ``grid_sample`` replaces a per-image
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
            x = torch.where(chosen.view(view), _blur(x, sigma), x)
    if source.ring > 0:
        chosen = (torch.rand(n, generator=gen) < source.ring).to(device)
        x = torch.where(chosen.view(view), _ring(x, uniform), x)
    return x.clamp_(0.0, 1.0)
