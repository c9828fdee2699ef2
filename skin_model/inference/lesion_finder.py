"""Where the lesion is: a small segmentation network for the image-quality check's framing rule.

The quality check (``quality.py``) warns when a lesion is tiny or cut by the frame. Its first
estimate of the lesion, the darker part of the skin, also took in dark corners and shadows at the
frame's edges, and caught 30% of lesions cut by the frame. So a U-Net of ~0.4 M weights learns
HAM10000's lesion masks (training folds), and, from the same features, how much of the lesion lies
outside the photo: in training each view is a random part of the image, and the masks say how much
of the lesion the part left out. One pass of ~3.5 ms on one thread, on a lane: after the verdict
on the Analyse page, after the members' parts in ``predict`` (the API, the CLI, Batch).

Its artifact is one safetensors file (``skin_model/model/lesion_finder.safetensors``) whose header
carries everything it needs and everything it was chosen by: the input size, the network's widths,
the recipe it was made from (and its sha256), its figures on the validation fold, and the framing
thresholds chosen there, on ISIC 2017's training part and on BCN20000. It is its own artifact, not
part of the classifier's: the check must not move when the classifier is retrained, and remaking it
takes minutes, not the classifier's hours. Made by ``python -m skin_model lesion-finder --recipe
recipes/quality/lesion_finder.toml --ham ... --isic ... --bcn ...`` (``training/lesion_finder.py``).
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from importlib import resources
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from safetensors import safe_open
from safetensors.torch import load_file, save_file
from torch import nn

from skin_model.config import MODEL_PACKAGE
from skin_model.inference.network import fold_batch_norms

FILE = "lesion_finder.safetensors"
FORMAT = "skin-model-lesion-finder/1"
# What the framing rule reads of a lesion mask (quality.judge); the thresholds live in the artifact.
THRESHOLD_KEYS = ("min_share", "max_outside", "close_up_share", "close_up_margin")


def _block(cin: int, cout: int) -> nn.Sequential:
    return nn.Sequential(
        nn.Conv2d(cin, cout, 3, padding=1, bias=False),
        nn.BatchNorm2d(cout),
        nn.ReLU(inplace=True),
        nn.Conv2d(cout, cout, 3, padding=1, bias=False),
        nn.BatchNorm2d(cout),
        nn.ReLU(inplace=True),
    )


class LesionNet(nn.Module):
    """A U-Net: ``widths`` channels at 1, 1/2, ... of the input; lesion logits at half its size, and
    one logit of the share of the lesion that lies outside the photo (from the deepest features,
    where they are: a lesion cut by the frame ends along its edge)."""

    def __init__(self, widths: tuple[int, ...] = (12, 24, 48, 64, 96), input_size: tuple[int, int] = (96, 72)):
        super().__init__()
        self.widths = tuple(widths)
        self.down = nn.ModuleList(_block(cin, cout) for cin, cout in zip((3, *widths[:-1]), widths))
        # Decoders up to half the input's size: the rule needs no finer mask.
        self.up = nn.ModuleList(
            nn.Sequential(
                nn.Conv2d(widths[i + 1] + widths[i], widths[i], 3, padding=1, bias=False),
                nn.BatchNorm2d(widths[i]),
                nn.ReLU(inplace=True),
            )
            for i in range(len(widths) - 2, 0, -1)
        )
        self.head = nn.Conv2d(widths[1], 1, 1)
        deepest = [input_size[1], input_size[0]]
        for _ in widths[1:]:
            deepest = [math.ceil(d / 2) for d in deepest]
        self.outside = nn.Sequential(
            nn.Conv2d(widths[-1], 16, 1),
            nn.ReLU(inplace=True),
            nn.Flatten(),
            nn.Linear(16 * deepest[0] * deepest[1], 1),
        )

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """-> lesion logits (N, 1, h, w) and the outside share's logit (N,)."""
        skips = []
        for i, block in enumerate(self.down):
            x = block(x if i == 0 else F.max_pool2d(x, 2, ceil_mode=True))
            skips.append(x)
        x = skips.pop()
        outside = self.outside(x)[:, 0]
        for up in self.up:
            skip = skips.pop()
            x = F.interpolate(x, size=skip.shape[-2:], mode="bilinear", align_corners=False)
            x = up(torch.cat([x, skip], 1))
        return self.head(x), outside


def finder_input(images: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """uint8 images (N, 3, H, W) -> the network's input (N, 3, height, width) for ``size`` =
    (width, height): antialiased bilinear, scaled to [-1, 1]. Training and the check use this."""
    x = images.float()
    if tuple(x.shape[-2:]) != (size[1], size[0]):
        x = F.interpolate(x, size=(size[1], size[0]), mode="bilinear", antialias=True, align_corners=False)
    return x / 127.5 - 1.0


@dataclass
class LesionFinder:
    """The network and its card (``card["input_size"]``, ``card["thresholds"]``, the recipe, figures)."""

    net: LesionNet
    card: dict

    @property
    def input_size(self) -> tuple[int, int]:
        return tuple(self.card["input_size"])

    @property
    def thresholds(self) -> dict:
        return self.card["thresholds"]

    @torch.inference_mode()
    def find(self, images: torch.Tensor | list[np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
        """uint8 images, (N, 3, H, W) or a list of H x W x 3 arrays of any sizes -> boolean lesion
        masks (N, h, w) at half the input size, and the share of each lesion estimated to lie
        outside the photo (N,). Torch work: call it on the torch thread."""
        if isinstance(images, list):
            images = [torch.from_numpy(np.array(a)).permute(2, 0, 1).unsqueeze(0) for a in images]
            x = torch.cat([finder_input(a, self.input_size) for a in images])
        else:
            x = finder_input(images, self.input_size)
        lesion, outside = self.net(x.contiguous(memory_format=torch.channels_last))
        return (lesion[:, 0] > 0).numpy(), torch.sigmoid(outside).numpy()

    def save(self, path: Path) -> None:
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        tensors = {k: v.contiguous() for k, v in self.net.state_dict().items()}
        save_file(tensors, str(path), metadata={"format": FORMAT, "card": json.dumps(self.card)})

    @classmethod
    def load(cls, path: Path | None = None) -> LesionFinder:
        """The finder at ``path`` (default: the one shipped in the package); no pickle."""
        if path is None:
            path = Path(str(resources.files(MODEL_PACKAGE) / FILE))
        with safe_open(str(path), framework="pt") as f:
            meta = f.metadata() or {}
        if meta.get("format") != FORMAT:
            raise ValueError(f"{path} is not a lesion finder ({FORMAT}); its format is {meta.get('format')!r}")
        card = json.loads(meta["card"])
        missing = [k for k in THRESHOLD_KEYS if k not in card.get("thresholds", {})]
        if missing:
            raise ValueError(f"{path}: the lesion finder's card lacks the thresholds {missing}")
        net = LesionNet(tuple(card["widths"]), tuple(card["input_size"]))
        net.load_state_dict(load_file(str(path)))
        # As the classifier's members answer: batch norms folded, channels-last (5.4 -> 3.4 ms on
        # one thread, the same masks and shares). Training keeps its own unfolded network.
        net = fold_batch_norms(net.eval()).to(memory_format=torch.channels_last)
        return cls(net, card)
