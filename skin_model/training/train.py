"""Training of one network (a fold model of a recipe's member): its settings, the loss, the
epoch loop with checkpoints, and its outputs on a dataset.

``crossval`` runs it once per fold; ``export`` turns the fold models into the artifact.
A member's folder holds its config, checkpoint, per-epoch weights, out-of-fold logits and log.
"""

from __future__ import annotations

import copy
import csv
import json
import logging
import math
import random
import time
from contextlib import nullcontext
from dataclasses import asdict, dataclass, fields
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from safetensors.torch import load_file, save_file
from tqdm import tqdm

from skin_model import vocab
from skin_model.inference.ensemble import member_outputs
from skin_model.inference.inputs import Metadata
from skin_model.inference.network import BACKBONES, FLIPS, META_AGE, META_SEX, META_SITE, SkinNet, encode_metadata
from skin_model.inference.preprocess import InputConfig
from skin_model.training.augment import SourceAugmentation, augment_batch
from skin_model.training.calibration import calibrated_balanced_accuracy
from skin_model.training.data import Dataset
from skin_model.training.distributed import Distributed, global_batch_norm
from skin_model.training.metrics import classification_report

log = logging.getLogger(__name__)
TTA_VIEWS = tuple(FLIPS)
ONE_PROCESS = Distributed()


@dataclass
class TrainConfig:
    arch: str = "mobilenet_v2"
    name: str = ""  # the member's folder and name; default: the architecture
    epochs: int = 14
    height: int = 112
    width: int = 112
    batch_size: int = 64
    lr: float = 1e-3
    weight_decay: float = 1e-4
    pretrained: bool = False
    meta_dropout: float = 0.25  # chance that each metadata field is hidden
    meta_drop_all: float = 0.0  # chance that the whole metadata vector is hidden (image-only rows)
    class_weight_power: float = 0.5  # loss weight of a class ~ (1 / frequency) ** power
    label_smoothing: float = 0.0
    ema_decay: float = 0.0  # 0: no exponential moving average of the weights
    seed: int = 0
    meta_hidden: int = 32
    colour_constancy_p: int = 0  # Shades of Gray on every image (0: off); the artifact's preprocessing
    aug_zoom_out: float = 0.0  # the source augmentations (augment.SourceAugmentation), 0: off
    aug_colour_cast: float = 0.0
    aug_gamma: float = 0.0
    aug_blur: float = 0.0
    aug_ring: float = 0.0
    aug_low_res: float = 0.0
    aug_resize: float = 0.0
    aug_jpeg: float = 0.0
    aug_sharpen: float = 0.0

    def __post_init__(self):
        self.name = self.name or self.arch

    @classmethod
    def from_json(cls, text: str) -> TrainConfig:
        raw = json.loads(text)
        if "size" in raw:  # configs written before members had a 4:3 shape
            raw.setdefault("height", raw["size"])
            raw.setdefault("width", raw.pop("size"))
        known = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in raw.items() if k in known})

    @property
    def source_augmentation(self) -> SourceAugmentation:
        return SourceAugmentation(**{f.name: getattr(self, f"aug_{f.name}") for f in fields(SourceAugmentation)})

    @property
    def inputs(self) -> InputConfig:
        spec = BACKBONES[self.arch]
        return InputConfig(self.height, self.width, spec.mean, spec.std)


@dataclass
class Run:
    """Paths of one training run: a folder per member (or per fold of a member)."""

    root: Path

    def __post_init__(self):
        self.root = Path(self.root)

    def member_dir(self, name: str) -> Path:
        return self.root / name


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def hide_metadata(meta: torch.Tensor, p: float, gen: torch.Generator, p_all: float = 0.0) -> torch.Tensor:
    """Metadata dropout: each field of each row becomes 'unknown' with chance ``p``, and the
    whole row with chance ``p_all`` (so that the image-only view is trained, not a 1.6% corner)."""
    meta = meta.clone()
    unknown = encode_metadata(Metadata.unknown())
    hide = (torch.rand((meta.shape[0], 3), generator=gen) < p) | (torch.rand((meta.shape[0], 1), generator=gen) < p_all)
    for column, part in enumerate((META_AGE, META_SEX, META_SITE)):
        meta[hide[:, column], part] = unknown[part]
    return meta


def partial_cross_entropy(
    logits: torch.Tensor,
    labels: torch.Tensor,
    allowed: torch.Tensor,
    weight: torch.Tensor,
    smoothing: float = 0.0,
    total_weight: torch.Tensor | None = None,
) -> torch.Tensor:
    """Cross-entropy over each row's own label space: a source that cannot name a diagnosis
    (ISIC 2017 has no bcc) neither rewards nor punishes it. With every class allowed and no
    smoothing it is ``F.cross_entropy(logits, labels, weight=weight)``; smoothing is spread over
    the row's own classes and weighted by the row's class (PyTorch weights each class's share)."""
    log_p = logits.float().masked_fill(~allowed, float("-inf")).log_softmax(1).masked_fill(~allowed, 0.0)
    target = allowed.float() * (smoothing / allowed.sum(1, keepdim=True))
    target.scatter_add_(1, labels[:, None], torch.full_like(target[:, :1], 1.0 - smoothing))
    w = weight[labels]
    # ``total_weight``: the whole global batch's, when these rows are one rank's share of it.
    return (w * -(target * log_p).sum(1)).sum() / (w.sum() if total_weight is None else total_weight)


def class_weights(labels: torch.Tensor, power: float) -> torch.Tensor:
    counts = torch.bincount(labels, minlength=len(vocab.CLASSES)).float().clamp(min=1)
    weights = (counts.sum() / counts) ** power
    return weights / (weights * counts).sum() * counts.sum()  # mean weight per sample = 1


class EMA:
    """Exponential moving average of a network's weights (buffers copied as they are)."""

    def __init__(self, net: SkinNet, decay: float):
        self.net = copy.deepcopy(net).eval().requires_grad_(False)
        self.decay, self.steps = decay, 0

    @torch.no_grad()
    def update(self, net: SkinNet) -> None:
        self.steps += 1
        d = min(self.decay, (1 + self.steps) / (10 + self.steps))  # short memory while young
        for avg, cur in zip(self.net.state_dict().values(), net.state_dict().values()):
            if avg.is_floating_point():
                avg.mul_(d).add_(cur.detach(), alpha=1 - d)
            else:
                avg.copy_(cur)


def _checkpoint_path(member_dir: Path) -> Path:
    return member_dir / "checkpoint.pt"


def train_member(
    data: dict[str, Dataset],
    run: Run,
    cfg: TrainConfig,
    resume: bool = False,
    dist: Distributed = ONE_PROCESS,
    start: dict[str, torch.Tensor] | None = None,
) -> Path:
    """Train one fold model; checkpoint every epoch; keep every epoch's weights and validation
    logits (``epoch_NN.safetensors``, ``val_logits_NN.safetensors``). No epoch is chosen here:
    export chooses on the pooled out-of-fold logits (``export.choose_epoch``).

    The same function in 1 or N processes (``dist``, as torchrun starts them): every rank draws the
    same order, augmentations, metadata dropout and head dropout for the whole global batch
    (``cfg.batch_size``) and computes its own share of it; batch norm uses the global batch's
    statistics (``distributed.GlobalBatchNorm2d``) and the loss is normalised by the global batch's
    weight, so the weights do not depend on N beyond floating-point noise. Rank 0 alone writes; a
    run resumes from its checkpoint whatever N it is resumed with. ``start``: weights to begin from
    instead of ImageNet's (a fold model of an earlier artifact: ``crossval.start_weights``)."""
    member_dir = run.member_dir(cfg.name)
    if dist.main:
        member_dir.mkdir(parents=True, exist_ok=True)
        (member_dir / "done.json").unlink(missing_ok=True)  # a member in training is not finished
    seed_everything(cfg.seed)
    device = torch.device(dist.device)
    inputs = cfg.inputs
    net = SkinNet(cfg.arch, pretrained=cfg.pretrained and start is None, meta_hidden=cfg.meta_hidden)
    if start is not None:
        net.load_state_dict(start)
    net = net.to(device)
    net = net.to(memory_format=torch.channels_last)  # ~10-50% faster on CPU
    ema = EMA(net, cfg.ema_decay) if cfg.ema_decay > 0 else None
    train = data["train"]
    steps_per_epoch = math.ceil(len(train) / cfg.batch_size)
    total = steps_per_epoch * cfg.epochs
    warmup = steps_per_epoch // 2
    opt = torch.optim.AdamW(net.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
    sched = torch.optim.lr_scheduler.LambdaLR(
        opt, lambda s: min(1.0, (s + 1) / max(1, warmup)) * 0.5 * (1 + math.cos(math.pi * min(s, total) / total))
    )
    gen = torch.Generator().manual_seed(cfg.seed)
    start_epoch = 0
    ckpt = _checkpoint_path(member_dir)
    if resume and ckpt.exists():
        state = torch.load(ckpt, weights_only=True, map_location=device)  # no arbitrary pickle
        net.load_state_dict(state["model"])
        opt.load_state_dict(state["optimizer"])
        sched.load_state_dict(state["scheduler"])
        gen.set_state(state["generator"].cpu())
        if ema is not None:
            ema.net.load_state_dict(state["ema"])
            ema.steps = int(state["ema_steps"])
        start_epoch = state["epoch"]
        log.info("%s: resumed after epoch %d", cfg.name, start_epoch)
    if dist.main:
        (member_dir / "config.json").write_text(json.dumps(asdict(cfg), indent=2))
    model = net
    if dist.world > 1:
        from torch.nn.parallel import DistributedDataParallel

        global_batch_norm(net)
        model = DistributedDataParallel(net, device_ids=[device.index] if device.type == "cuda" else None)
    weights = class_weights(train.labels, cfg.class_weight_power).to(device)
    # bf16 autocast on a GPU; full precision on the CPU, where autocast is slower.
    autocast = (lambda: torch.autocast("cuda", dtype=torch.bfloat16)) if device.type == "cuda" else nullcontext
    # The images stay uint8 on the device and are augmented there (on a GPU: no copy per step).
    images_on_device = train.images.to(device)
    labels_on_device = train.labels.to(device)
    allowed_on_device = train.allowed.to(device)
    log_path = member_dir / "log.csv"
    for epoch in range(start_epoch, cfg.epochs):
        model.train()
        order = torch.randperm(len(train), generator=gen)
        seen, t0 = 0, time.time()
        loss_sum = torch.zeros((), device=device)  # summed on the device: no step waits on the CPU
        bar = tqdm(
            range(0, len(train), cfg.batch_size),
            desc=f"{cfg.name} epoch {epoch + 1}/{cfg.epochs}",
            unit="batch",
            mininterval=5,
            disable=not dist.main,
        )
        for step, start in enumerate(bar):
            idx = order[start : start + cfg.batch_size]  # the global batch: every rank draws it alike
            dev_idx = idx.to(device)
            images = augment_batch(images_on_device[dev_idx], (cfg.height, cfg.width), gen, cfg.source_augmentation)
            meta = hide_metadata(train.meta[idx], cfg.meta_dropout, gen, cfg.meta_drop_all)
            keep = (torch.rand((len(idx), net.head_width), generator=gen) >= net.dropout).float() / (1 - net.dropout)
            total_weight = weights[labels_on_device[dev_idx]].sum()
            mine = dist.share(torch.arange(len(idx)))  # this rank's rows of it
            x = inputs.normalize(images[mine.to(device)]).contiguous(memory_format=torch.channels_last)
            with autocast():
                logits = model(x, meta[mine].to(device), keep[mine].to(device))
            rows = dev_idx[mine.to(device)]
            # Normalised by the global batch's weight and scaled by N: DDP's mean of the ranks'
            # gradients is then the one-process gradient of the whole batch.
            loss = dist.world * partial_cross_entropy(
                logits, labels_on_device[rows], allowed_on_device[rows], weights, cfg.label_smoothing, total_weight
            )
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            sched.step()
            if ema is not None:
                ema.update(net)
            seen += len(idx)
            loss_sum += loss.detach() * len(idx) / dist.world  # this rank's share of the batch's loss
            if dist.main and step % 20 == 0:  # a look at the loss now and then, not a wait each step
                bar.set_postfix(img_s=f"{seen / (time.time() - t0):.1f}")
        scored = ema.net if ema is not None else net
        val_data = data["val"]
        logits = validation_logits(scored, inputs, val_data, dist, device)
        if dist.world > 1:
            torch.distributed.all_reduce(loss_sum)
        train_loss = float(loss_sum) / seen
        if dist.main:
            val = classification_report(torch.softmax(logits, 1).numpy(), val_data.labels.numpy())
            row = {
                "epoch": epoch + 1,
                "train_loss": train_loss,
                "val_loss": F.cross_entropy(logits, val_data.labels).item(),
                "val_accuracy": val["accuracy"],
                "val_balanced_accuracy": val["balanced_accuracy"],
                # the epoch rule's score on this fold alone (export scores the pooled folds)
                "val_balanced_accuracy_calibrated_equal_prior": calibrated_balanced_accuracy(logits, val_data.labels),
                "val_macro_auc": val["macro_auc"],
                "lr": sched.get_last_lr()[0],
                "seconds": time.time() - t0,
                "processes": dist.world,
            }
            with log_path.open("a", newline="") as fh:
                writer = csv.DictWriter(fh, fieldnames=list(row))
                if fh.tell() == 0:
                    writer.writeheader()
                writer.writerow(row)
            log.info(
                "%s epoch %d: %s",
                cfg.name,
                epoch + 1,
                ", ".join(f"{k}={v:.4f}" for k, v in row.items() if isinstance(v, float)),
            )
            save_file(
                {k: v.detach().cpu().contiguous() for k, v in scored.state_dict().items()},
                str(member_dir / f"epoch_{epoch + 1:02d}.safetensors"),
            )
            save_file({"logits": logits.contiguous()}, str(member_dir / f"val_logits_{epoch + 1:02d}.safetensors"))
            state = {
                "model": net.state_dict(),
                "optimizer": opt.state_dict(),
                "scheduler": sched.state_dict(),
                "generator": gen.get_state(),
                "epoch": epoch + 1,
            }
            if ema is not None:
                state |= {"ema": ema.net.state_dict(), "ema_steps": ema.steps}
            torch.save(state, ckpt.with_suffix(".tmp"))
            ckpt.with_suffix(".tmp").replace(ckpt)  # whole or absent: a run stopped now resumes from it
        dist.barrier()  # every rank goes on once the epoch is on disk
    if dist.main:
        (member_dir / "done.json").write_text(json.dumps({"epochs": cfg.epochs}))
    dist.barrier()
    return member_dir


def validation_logits(net: SkinNet, inputs, val: Dataset, dist: Distributed, device) -> torch.Tensor:
    """The validation rows' fused logits (``ensemble.member_outputs``), each rank scoring its share,
    gathered on every rank in the rows' order (on the CPU)."""
    parts = torch.tensor_split(torch.arange(len(val)), dist.world)
    mine = parts[dist.rank]
    logits = member_outputs(net, inputs, val.images[mine], val.meta[mine], device=device)[0]
    return dist.gather_rows(logits.to(device), [len(p) for p in parts]).cpu()


def load_epoch(member_dir: Path, epoch: int) -> tuple[SkinNet, TrainConfig]:
    """A fold model's weights after ``epoch`` (eval mode), with its config."""
    cfg = TrainConfig.from_json((member_dir / "config.json").read_text())
    net = SkinNet(cfg.arch, meta_hidden=cfg.meta_hidden)
    net.load_state_dict(load_file(str(member_dir / f"epoch_{epoch:02d}.safetensors")))
    return net.eval(), cfg
