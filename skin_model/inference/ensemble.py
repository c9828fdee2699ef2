"""The ensemble's one forward pass and one calibration.

Every number the project states goes through these two functions: the predictor's answers,
training's per-epoch validation logits, export's out-of-fold choices, the evaluation and the
held-out harness. A member's logits are averaged over the test-time flips (one batch, view-major);
the ensemble's probabilities are ``softmax(mean of the members' logits / T + bias)``.
"""

from __future__ import annotations

import torch

from skin_model.inference.network import SkinNet, flip_views
from skin_model.inference.preprocess import InputConfig

# Images per forward pass when scoring a data set: on a 2-core CPU a MobileNetV2 runs 250 img/s in
# batches of up to 16 (views included) and 77 img/s in batches of 512, whose activations no longer
# fit in cache.
FORWARD_BATCH = 16


def member_views(
    net: SkinNet, inputs: InputConfig, pixels: torch.Tensor, metas: tuple[torch.Tensor, ...], views: tuple[str, ...]
) -> tuple[torch.Tensor, torch.Tensor]:
    """One member on a batch: logits (len(metas), N, classes), one per metadata view, and pooled
    image features (N, F), both averaged over the flipped ``views``. ``pixels``: uint8 (N, 3, H, W)
    at the source size; the member resizes and normalises them its own way (``inputs``)."""
    n = pixels.shape[0]
    # Channels-last, as the shipped members' weights are (artifact.load_members): a quarter faster on a CPU.
    x = flip_views(inputs.normalize(pixels), views).contiguous(memory_format=torch.channels_last)
    logits, features = net.forward_views(x, tuple(m.repeat(len(views), 1) for m in metas))
    return logits.reshape(len(metas), len(views), n, -1).mean(1), features.reshape(len(views), n, -1).mean(0)


@torch.inference_mode()
def member_outputs(
    net: SkinNet,
    inputs: InputConfig,
    pixels: torch.Tensor,
    metas: torch.Tensor,
    views: tuple[str, ...] = ("identity",),
    device: str | torch.device = "cpu",
) -> tuple[torch.Tensor, torch.Tensor]:
    """``member_views`` over a whole data set with its own metadata, in batches: fused logits
    (N, classes) and features (N, F), on the CPU."""
    batch = max(1, FORWARD_BATCH // len(views))
    net.eval().to(device)
    logits, features = [], []
    for i in range(0, len(pixels), batch):
        lg, f = member_views(net, inputs, pixels[i : i + batch].to(device), (metas[i : i + batch].to(device),), views)
        logits.append(lg[0].float().cpu())
        features.append(f.float().cpu())
    return torch.cat(logits), torch.cat(features)


def calibrate(member_logits: torch.Tensor, temperature: float, bias: torch.Tensor) -> torch.Tensor:
    """Members' logits (members, ..., classes) -> the ensemble's calibrated probabilities
    (..., classes), float64: softmax(mean / T + bias), under the calibration data's frequencies."""
    return torch.softmax(member_logits.double().mean(0) / temperature + bias.double(), dim=-1)
