"""The ensemble's one forward pass and one calibration.

Every number the project states goes through these two functions: the predictor's answers,
training's per-epoch validation logits, export's out-of-fold choices, the evaluation and the
held-out harness. A member's logits are averaged over the test-time flips (one batch, view-major;
on the predictor's lanes a member's views may be cut into runs, weighed back by ``join_parts``); the
ensemble's probabilities are ``softmax(mean of the members' logits / T + bias)``.
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


Part = tuple[int, tuple[str, ...]]  # a member (its position) and the views of its pass


def lane_parts(members: int, views: tuple[str, ...], lanes: int) -> list[Part]:
    """A forward pass (one image's, or a batch's) as work for ``lanes`` lanes: whole members while
    they fill every lane, then the members of the last, partial round cut into contiguous runs of
    views, so that no lane waits while another passes a whole member (5 members on 2 lanes: 4
    whole, then the fifth's views as two halves, one per lane). Parts come in member order."""
    if not views:
        raise ValueError("a pass needs at least one view")
    if lanes < 2 or members % lanes == 0:
        return [(i, views) for i in range(members)]
    whole = members - members % lanes
    cuts = min(len(views), -(-lanes // (members - whole)))  # pieces per remaining member
    pieces = [views[len(views) * k // cuts : len(views) * (k + 1) // cuts] for k in range(cuts)]
    return [(i, views) for i in range(whole)] + [(i, piece) for i in range(whole, members) for piece in pieces]


def join_parts(
    parts: list[Part], outputs: list[tuple[torch.Tensor, torch.Tensor]], views: int
) -> list[tuple[torch.Tensor, torch.Tensor]]:
    """Each member's ``member_views`` outputs (logits, features) from its parts', in the parts'
    order of members: the parts' averages weighed by their share of the ``views`` views."""
    joined: dict[int, list] = {}
    for (member, part_views), (logits, features) in zip(parts, outputs):
        share = len(part_views) / views
        if member in joined:
            joined[member][0] = joined[member][0] + share * logits
            joined[member][1] = joined[member][1] + share * features
        else:
            joined[member] = [logits, features] if share == 1 else [share * logits, share * features]
    return [tuple(outputs) for outputs in joined.values()]


def calibrate(member_logits: torch.Tensor, temperature: float, bias: torch.Tensor) -> torch.Tensor:
    """Members' logits (members, ..., classes) -> the ensemble's calibrated probabilities
    (..., classes), float64: softmax(mean / T + bias), under the calibration data's frequencies."""
    return torch.softmax(member_logits.double().mean(0) / temperature + bias.double(), dim=-1)
