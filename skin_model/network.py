"""The multimodal network: a torchvision image backbone and a small metadata branch."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import torch
from torch import nn
from torchvision import models

from . import vocab
from .inputs import Metadata

# Width of the encoded metadata: scaled age + missing flag, one-hot sex, one-hot site.
META_DIM = 2 + len(vocab.SEXES) + len(vocab.SITES)


@dataclass(frozen=True)
class Backbone:
    build: Callable[[bool], nn.Module]   # pretrained -> network with its classifier removed
    features: int                        # width of the pooled feature vector
    cam_layer: str                       # last convolutional block, for Grad-CAM


def _resnet18(pretrained: bool) -> nn.Module:
    net = models.resnet18(weights=models.ResNet18_Weights.IMAGENET1K_V1 if pretrained else None)
    net.fc = nn.Identity()
    return net


def _mobilenet_v2(pretrained: bool) -> nn.Module:
    net = models.mobilenet_v2(weights=models.MobileNet_V2_Weights.IMAGENET1K_V1 if pretrained else None)
    net.classifier = nn.Identity()
    return net


BACKBONES: dict[str, Backbone] = {
    "resnet18": Backbone(_resnet18, 512, "backbone.layer4"),
    "mobilenet_v2": Backbone(_mobilenet_v2, 1280, "backbone.features.18"),
}


def encode_metadata(meta: Metadata) -> torch.Tensor:
    """One metadata record as the network's input vector (length ``META_DIM``)."""
    vec = torch.zeros(META_DIM)
    if meta.age is None:
        vec[1] = 1.0
    else:
        vec[0] = meta.age / vocab.AGE_MAX
    vec[2 + vocab.SEXES.index(meta.sex)] = 1.0
    vec[2 + len(vocab.SEXES) + vocab.SITES.index(meta.site)] = 1.0
    return vec


class SkinNet(nn.Module):
    """Image features and encoded metadata, concatenated before one linear classifier."""

    def __init__(self, arch: str, pretrained: bool = False, meta_hidden: int = 32,
                 dropout: float = 0.3, num_classes: int = len(vocab.CLASSES)):
        super().__init__()
        spec = BACKBONES[arch]
        self.arch = arch
        self.backbone = spec.build(pretrained)
        self.meta = nn.Sequential(nn.Linear(META_DIM, meta_hidden), nn.ReLU(inplace=True))
        self.head = nn.Sequential(nn.Dropout(dropout), nn.Linear(spec.features + meta_hidden, num_classes))

    @property
    def cam_layer(self) -> nn.Module:
        return self.get_submodule(BACKBONES[self.arch].cam_layer)

    def classify(self, features: torch.Tensor, meta: torch.Tensor) -> torch.Tensor:
        return self.head(torch.cat([features, self.meta(meta)], dim=1))

    def forward(self, image: torch.Tensor, meta: torch.Tensor) -> torch.Tensor:
        return self.classify(self.backbone(image), meta)

    def forward_views(self, image: torch.Tensor, metas: tuple[torch.Tensor, ...]) -> torch.Tensor:
        """Logits of shape (len(metas), N, classes): one image pass, several metadata views.

        The image branch runs once; only the small metadata branch and the
        classifier run per view (e.g. fused and image-only).
        """
        features = self.backbone(image)
        return torch.stack([self.classify(features, m) for m in metas])

