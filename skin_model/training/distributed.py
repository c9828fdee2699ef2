"""Training and scoring across processes with PyTorch's own ``torch.distributed``, as ``torchrun``
launches them (gloo on the CPU, NCCL on CUDA). One process is the same code with ``world == 1``.

- ``Distributed.from_environment`` joins the group torchrun describes (``RANK``, ``WORLD_SIZE``,
  ``LOCAL_RANK``), with a timeout, so that a rank that stops answering ends the run with an error.
- ``GlobalBatchNorm2d``: batch statistics over the *global* batch, summed across the ranks. So a
  run's result does not depend on the number of processes beyond floating-point noise (per-rank
  statistics would make it depend on N), and it works on the CPU, where ``nn.SyncBatchNorm`` does
  not. It holds the same parameters and buffers as ``nn.BatchNorm2d``: checkpoints do not change.
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass
from datetime import timedelta

import torch
import torch.distributed as dist
from torch import nn

log = logging.getLogger(__name__)
TIMEOUT_S = float(os.environ.get("SKIN_MODEL_DIST_TIMEOUT", "1800"))  # a collective waiting longer fails


@dataclass(frozen=True)
class Distributed:
    """This process's place among the processes of one run."""

    rank: int = 0
    world: int = 1
    device: str = "cpu"

    @property
    def main(self) -> bool:
        """Rank 0: the one process that writes (checkpoints, logs, the card, the artifact, the CSV)."""
        return self.rank == 0

    @classmethod
    def from_environment(cls, device: str = "cpu") -> Distributed:
        """One process unless torchrun set ``WORLD_SIZE`` > 1; then the group is joined (once)."""
        world = int(os.environ.get("WORLD_SIZE", "1"))
        if world == 1:
            return cls(0, 1, device)
        local = int(os.environ.get("LOCAL_RANK", "0"))
        if device.startswith("cuda"):
            device = f"cuda:{local}"
            torch.cuda.set_device(local)
        if not dist.is_initialized():
            dist.init_process_group(
                "nccl" if device.startswith("cuda") else "gloo", timeout=timedelta(seconds=TIMEOUT_S)
            )
        rank = dist.get_rank()
        if not device.startswith("cuda"):  # the cores shared out between the processes of this machine
            per_node = int(os.environ.get("LOCAL_WORLD_SIZE", world))
            torch.set_num_threads(max(1, (os.cpu_count() or 1) // per_node))
        log.info("rank %d of %d on %s", rank, world, device)
        return cls(rank, world, device)

    def share(self, rows: torch.Tensor) -> torch.Tensor:
        """This rank's contiguous part of a global batch's rows (every rank knows the whole batch)."""
        return torch.tensor_split(rows, self.world)[self.rank] if self.world > 1 else rows

    def barrier(self) -> None:
        if self.world > 1:
            dist.barrier()

    def gather_rows(self, part: torch.Tensor, sizes: list[int]) -> torch.Tensor:
        """Each rank's rows (``sizes[r]`` of them, ``part`` here) concatenated in rank order, on every rank."""
        if self.world == 1:
            return part
        width = max(sizes)
        padded = torch.zeros((width, *part.shape[1:]), dtype=part.dtype, device=part.device)
        padded[: len(part)] = part
        pieces = [torch.empty_like(padded) for _ in range(self.world)]
        dist.all_gather(pieces, padded)
        return torch.cat([p[:n] for p, n in zip(pieces, sizes)])

    def close(self) -> None:
        if self.world > 1 and dist.is_initialized():
            dist.destroy_process_group()


class _GlobalBatchNorm(torch.autograd.Function):
    """Batch norm (training) with the mean and variance of the whole global batch: the ranks'
    sums, counts and, backwards, gradient sums are all-reduced (what ``SyncBatchNorm`` does on GPUs)."""

    @staticmethod
    def forward(ctx, x, weight, bias, eps):
        dims = (0, 2, 3)
        stats = torch.stack(
            [
                x.sum(dims, dtype=torch.float64),
                (x.double() ** 2).sum(dims),
                torch.full_like(weight, x.numel() / x.shape[1], dtype=torch.float64),
            ]
        )
        dist.all_reduce(stats)
        total, squares, count = stats
        mean = total / count
        var = (squares / count - mean**2).clamp(min=0)
        invstd = (var + eps).rsqrt()
        xhat = (x - mean.to(x.dtype)[None, :, None, None]) * invstd.to(x.dtype)[None, :, None, None]
        ctx.save_for_backward(xhat, weight, invstd.to(x.dtype), count[0].to(x.dtype))
        unbiased = var * count / (count - 1).clamp(min=1)
        ctx.mark_non_differentiable(mean, unbiased)
        return (
            xhat * weight[None, :, None, None] + bias[None, :, None, None],
            mean,
            var * count / (count - 1).clamp(min=1),
        )

    @staticmethod
    def backward(ctx, grad_y, _grad_mean, _grad_var):
        xhat, weight, invstd, count = ctx.saved_tensors
        dims = (0, 2, 3)
        local = torch.stack([grad_y.sum(dims), (grad_y * xhat).sum(dims)])
        sums = local.clone()
        dist.all_reduce(sums)
        sum_dy, sum_dy_xhat = sums
        grad_x = (weight * invstd)[None, :, None, None] * (
            grad_y - (sum_dy / count)[None, :, None, None] - xhat * (sum_dy_xhat / count)[None, :, None, None]
        )
        # This rank's share of the parameters' gradients; DDP sums (averages) them across ranks.
        return grad_x, local[1], local[0], None


class GlobalBatchNorm2d(nn.BatchNorm2d):
    """``nn.BatchNorm2d`` whose training statistics are the global batch's across the ranks."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not (self.training and dist.is_initialized() and dist.get_world_size() > 1):
            return super().forward(x)
        y, mean, unbiased_var = _GlobalBatchNorm.apply(x, self.weight, self.bias, self.eps)
        with torch.no_grad():
            self.num_batches_tracked.add_(1)
            m = self.momentum
            self.running_mean.mul_(1 - m).add_(mean.to(self.running_mean.dtype), alpha=m)
            self.running_var.mul_(1 - m).add_(unbiased_var.to(self.running_var.dtype), alpha=m)
        return y


def global_batch_norm(module: nn.Module) -> nn.Module:
    """Every ``nn.BatchNorm2d`` of ``module`` becomes a ``GlobalBatchNorm2d`` (same tensors, in place)."""
    for child in module.children():
        if type(child) is nn.BatchNorm2d:
            child.__class__ = GlobalBatchNorm2d
        else:
            global_batch_norm(child)
    return module
