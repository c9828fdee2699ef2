"""Image preprocessing, derived from the model card (timm-style).

Two stages, both described by the card:
1. every image is resized once to the artifact's common working size
   (``SourceSize``, 4:3 like HAM10000; training caches its images at it);
2. each member resizes that to its own input shape and normalises it
   (``InputConfig``, one per member: members may differ in size and scaling).
"""

from __future__ import annotations

import io
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


RESAMPLING = {"bilinear": Image.Resampling.BILINEAR, "bicubic": Image.Resampling.BICUBIC}


def jpeg_round_trip(img: Image.Image, quality: int) -> Image.Image:
    """The image as a JPEG at ``quality`` would decode (Pillow's 4:2:0 chroma subsampling), in memory."""
    buffer = io.BytesIO()
    img.save(buffer, "JPEG", quality=quality)
    return Image.open(io.BytesIO(buffer.getvalue())).convert("RGB")


@dataclass(frozen=True)
class SourceSize:
    """What every image becomes before any member sees it: its size, and its colour balance."""

    height: int = 150
    width: int = 200
    colour_constancy_p: int = 0  # Shades of Gray's norm; 0: colours kept as they are
    # An image of another size is brought to this one as HAM10000's 200x150 working copies were made
    # from the 600x450 originals: Pillow's bicubic resize, then a JPEG round trip at quality 75
    # (PSNR 48 dB against the copies; scripts/resize_skew.py, docs/model.md "Full-size uploads").
    resample: str = "bicubic"
    jpeg_quality: int = 75  # 0: no round trip

    @classmethod
    def for_inputs(cls, height: int, colour_constancy_p: int = 0) -> SourceSize:
        """At least 150 px high (HAM10000's working copy), 4:3, and never below a member's input."""
        h = max(150, height)
        return cls(h, round(h * 4 / 3), colour_constancy_p)

    @classmethod
    def from_card(cls, card: dict) -> SourceSize:
        source = card["source"]
        p = int(source.get("colour_constancy", {}).get("p", 0))
        if source.get("resample") not in RESAMPLING:
            raise ValueError(
                f"the card's source.resample is {source.get('resample')!r}, not one of {sorted(RESAMPLING)}"
            )
        return cls(int(source["height"]), int(source["width"]), p, source["resample"], int(source["jpeg_quality"]))

    def to_card(self) -> dict:
        card = {
            "height": self.height,
            "width": self.width,
            "resample": self.resample,
            "jpeg_quality": self.jpeg_quality,
            "resize": f"whole image resized to width x height (no crop), Pillow {self.resample}"
            + (f", then a JPEG round trip at quality {self.jpeg_quality}" if self.jpeg_quality else "")
            + ", as HAM10000's working copies were made; an image already at this size is taken as it is",
        }
        if self.colour_constancy_p:
            card["colour_constancy"] = {
                "method": "Shades of Gray (Finlayson & Trezzi 2004), after the resize",
                "p": self.colour_constancy_p,
            }
        return card

    def to_uint8(self, img: Image.Image) -> torch.Tensor:
        """An RGB PIL image at this size (and colour balance), as a uint8 tensor (3, H, W).

        NumPy work only (the tensor is a view of its array): it runs where the image is decoded,
        off the torch thread, and starts no torch thread pool there."""
        if img.size != (self.width, self.height):
            img = img.resize((self.width, self.height), RESAMPLING[self.resample])
            if self.jpeg_quality:
                img = jpeg_round_trip(img, self.jpeg_quality)
        pixels = np.array(img, dtype=np.uint8)
        if self.colour_constancy_p:
            pixels = shades_of_gray(pixels, self.colour_constancy_p)
        return torch.from_numpy(pixels).permute(2, 0, 1)


@dataclass(frozen=True)
class InputConfig:
    """One member's input: shape and normalisation."""

    height: int = 112
    width: int = 112
    mean: tuple[float, float, float] = IMAGENET_MEAN
    std: tuple[float, float, float] = IMAGENET_STD

    @classmethod
    def from_card(cls, spec: dict) -> InputConfig:
        return cls(int(spec["height"]), int(spec["width"]), tuple(spec["mean"]), tuple(spec["std"]))

    def to_card(self) -> dict:
        return {
            "height": self.height,
            "width": self.width,
            "mean": list(self.mean),
            "std": list(self.std),
            "resize": "source image squeezed to width x height (no crop), bilinear, antialiased",
        }

    def normalize(self, images: torch.Tensor) -> torch.Tensor:
        """uint8 or [0, 1] float (N, 3, H, W) at any size -> normalised float (N, 3, height, width)."""
        x = images.float().div_(255.0) if images.dtype == torch.uint8 else images.float()
        if x.shape[-2:] != (self.height, self.width):
            x = F.interpolate(x, size=(self.height, self.width), mode="bilinear", antialias=True, align_corners=False)
        mean = torch.tensor(self.mean, device=x.device).view(1, 3, 1, 1)
        std = torch.tensor(self.std, device=x.device).view(1, 3, 1, 1)
        return (x - mean) / std


def shades_of_gray(pixels: np.ndarray, p: int = 6) -> np.ndarray:
    """Colour constancy (Finlayson & Trezzi 2004): each channel is scaled so that the image's
    estimated illuminant, the p-norm mean of each channel, becomes neutral grey.

    uint8 (H, W, 3) -> uint8 (H, W, 3). Dermoscopes and cameras differ mostly in their colour
    balance (pink, yellow, grey); this removes most of it.
    """
    x = pixels.astype(np.float32)
    illuminant = np.power(np.power(x, p).mean((0, 1)), 1.0 / p)  # (3,)
    illuminant = illuminant / max(float(np.linalg.norm(illuminant)), 1e-6)
    gain = 1.0 / np.maximum(illuminant * np.float32(3**0.5), 1e-3)
    return np.clip(np.round(x * gain.astype(np.float32)), 0, 255).astype(np.uint8)
