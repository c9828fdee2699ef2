"""Image preprocessing, derived from the model card's ``input`` section (timm-style)."""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


@dataclass(frozen=True)
class InputConfig:
    size: int = 112
    mean: tuple[float, float, float] = IMAGENET_MEAN
    std: tuple[float, float, float] = IMAGENET_STD

    @classmethod
    def from_card(cls, card: dict) -> "InputConfig":
        cfg = card["input"]
        return cls(int(cfg["size"]), tuple(cfg["mean"]), tuple(cfg["std"]))

    def to_card(self) -> dict:
        return {"size": self.size, "mean": list(self.mean), "std": list(self.std),
                "resize": "whole image squeezed to size x size (no crop), antialiased"}

    def pil_to_uint8(self, img: Image.Image) -> torch.Tensor:
        """An RGB PIL image as a uint8 tensor of shape (3, H, W), no copy of pixels."""
        return torch.from_numpy(np.array(img, dtype=np.uint8)).permute(2, 0, 1)

    def normalize(self, images: torch.Tensor) -> torch.Tensor:
        """uint8 (N, 3, H, W) at any size -> normalised float (N, 3, size, size)."""
        x = images.float().div_(255.0)
        if x.shape[-2:] != (self.size, self.size):
            x = F.interpolate(x, size=(self.size, self.size), mode="bilinear",
                              antialias=True, align_corners=False)
        mean = torch.tensor(self.mean).view(1, 3, 1, 1)
        std = torch.tensor(self.std).view(1, 3, 1, 1)
        return (x - mean) / std

    def __call__(self, img: Image.Image) -> torch.Tensor:
        """One RGB PIL image -> a normalised batch of one."""
        return self.normalize(self.pil_to_uint8(img).unsqueeze(0))
