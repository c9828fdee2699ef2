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
from skin_model.inference.network import BACKBONES, FLIPS, META_DIM, SkinNet, flip_views
from skin_model.inference.preprocess import InputConfig
from skin_model.inference.priors import PRIORS, apply_prior
from skin_model.training.augment import SourceAugmentation, augment_batch
from skin_model.training.data import Dataset
from skin_model.training.metrics import classification_report

log = logging.getLogger(__name__)
TTA_VIEWS = tuple(FLIPS)


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
    device: str = "cpu"

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
        return SourceAugmentation(
            self.aug_zoom_out, self.aug_colour_cast, self.aug_gamma, self.aug_blur, self.aug_ring, self.aug_low_res
        )

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


STRENGTHS = tuple(round(0.1 * i, 1) for i in range(11))  # 0, 0.1, ..., 1


def choose_prior_strength(
    probs: torch.Tensor, labels: torch.Tensor, train_prior: torch.Tensor, grid: tuple[float, ...] = STRENGTHS
) -> tuple[float, dict]:
    """The strength of the ``equal`` correction with the best validation balanced accuracy
    (ties: the weakest), and the score of each strength tried."""
    equal = PRIORS["equal"](train_prior)
    scores = {}
    for s in grid:
        corrected = apply_prior(probs, train_prior, equal, float(s))
        scores[f"{s:.1f}"] = classification_report(corrected.numpy(), labels.numpy())["balanced_accuracy"]
    best = max(scores, key=lambda k: (round(scores[k], 6), -float(k)))
    return float(best), scores


def hide_metadata(meta: torch.Tensor, p: float, gen: torch.Generator, p_all: float = 0.0) -> torch.Tensor:
    """Metadata dropout: each field of each row becomes 'unknown' with chance ``p``, and the
    whole row with chance ``p_all`` (so that the image-only view is trained, not a 1.6% corner)."""
    meta = meta.clone()
    n = meta.shape[0]
    n_sex = len(vocab.SEXES)
    sex = slice(2, 2 + n_sex)
    site = slice(2 + n_sex, META_DIM)
    unknown_sex = torch.zeros(n_sex)
    unknown_sex[vocab.SEXES.index(vocab.UNKNOWN)] = 1
    unknown_site = torch.zeros(META_DIM - 2 - n_sex)
    unknown_site[vocab.SITES.index(vocab.UNKNOWN)] = 1
    hide = (torch.rand((n, 3), generator=gen) < p) | (torch.rand((n, 1), generator=gen) < p_all)
    meta[hide[:, 0], 0] = 0.0
    meta[hide[:, 0], 1] = 1.0
    meta[hide[:, 1], sex] = unknown_sex
    meta[hide[:, 2], site] = unknown_site
    return meta


def partial_cross_entropy(
    logits: torch.Tensor, labels: torch.Tensor, allowed: torch.Tensor, weight: torch.Tensor, smoothing: float = 0.0
) -> torch.Tensor:
    """Cross-entropy over each row's own label space: a source that cannot name a diagnosis
    (ISIC 2017 has no bcc) neither rewards nor punishes it. With every class allowed and no
    smoothing it is ``F.cross_entropy(logits, labels, weight=weight)``; smoothing is spread over
    the row's own classes and weighted by the row's class (PyTorch weights each class's share)."""
    log_p = logits.float().masked_fill(~allowed, float("-inf")).log_softmax(1).masked_fill(~allowed, 0.0)
    target = allowed.float() * (smoothing / allowed.sum(1, keepdim=True))
    target.scatter_add_(1, labels[:, None], torch.full_like(target[:, :1], 1.0 - smoothing))
    w = weight[labels]
    return (w * -(target * log_p).sum(1)).sum() / w.sum()


def class_weights(labels: torch.Tensor, power: float) -> torch.Tensor:
    counts = torch.bincount(labels, minlength=len(vocab.CLASSES)).float().clamp(min=1)
    weights = (counts.sum() / counts) ** power
    return weights / (weights * counts).sum() * counts.sum()  # mean weight per sample = 1


def class_frequencies(labels: torch.Tensor) -> torch.Tensor:
    counts = torch.bincount(labels, minlength=len(vocab.CLASSES)).double()
    return counts / counts.sum()


# Images per forward pass: on a 2-core CPU a MobileNetV2 runs 250 img/s in batches of up to 16
# (views included) and 77 img/s in batches of 512, whose activations no longer fit in cache.
FORWARD_BATCH = 16


@torch.inference_mode()
def predict_outputs(
    net: SkinNet,
    data: Dataset,
    inputs: InputConfig,
    views: tuple[str, ...] = ("identity",),
    batch_size: int | None = None,
    device: str = "cpu",
) -> tuple[torch.Tensor, torch.Tensor]:
    """Fused logits (N, classes) and pooled image features (N, F), averaged over the test-time
    views; ``batch_size`` images (default: ``FORWARD_BATCH`` forward passes, views included) at once."""
    batch_size = batch_size or max(1, FORWARD_BATCH // len(views))
    net.eval().to(device)
    logits, features = [], []
    for i in range(0, len(data), batch_size):
        x = flip_views(inputs.normalize(data.images[i : i + batch_size].to(device)), views)
        meta = data.meta[i : i + batch_size].to(device).repeat(len(views), 1)
        fused, f = net.forward_views(x, (meta,))
        logits.append(fused[0].reshape(len(views), -1, len(vocab.CLASSES)).mean(0).float().cpu())
        features.append(f.reshape(len(views), -1, f.shape[-1]).mean(0).float().cpu())
    return torch.cat(logits), torch.cat(features)


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
    data: dict[str, Dataset], run: Run, cfg: TrainConfig, resume: bool = False, keep_epochs: bool = False
) -> Path:
    """Train one member; checkpoint every epoch; keep the best epoch by validation balanced
    accuracy under the ``equal`` prior at its best strength (the decision rule the app uses).

    ``keep_epochs`` also keeps every epoch's weights and validation logits (a fold of a
    cross-validation: the epoch is then chosen on the pooled out-of-fold logits)."""
    member_dir = run.member_dir(cfg.name)
    member_dir.mkdir(parents=True, exist_ok=True)
    (member_dir / "done.json").unlink(missing_ok=True)  # a member in training is not finished
    seed_everything(cfg.seed)
    device = torch.device(cfg.device)
    inputs = cfg.inputs
    net = SkinNet(cfg.arch, pretrained=cfg.pretrained, meta_hidden=cfg.meta_hidden).to(device)
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
    start_epoch, best = 0, -1.0
    ckpt = _checkpoint_path(member_dir)
    if resume and ckpt.exists():
        state = torch.load(ckpt, weights_only=True, map_location=device)  # no arbitrary pickle
        net.load_state_dict(state["model"])
        opt.load_state_dict(state["optimizer"])
        sched.load_state_dict(state["scheduler"])
        gen.set_state(state["generator"].cpu())
        torch.set_rng_state(state["torch_rng"].cpu())
        if ema is not None:
            ema.net.load_state_dict(state["ema"])
            ema.steps = int(state["ema_steps"])
        start_epoch, best = state["epoch"], state["best"]
        log.info("%s: resumed after epoch %d (best val balanced accuracy %.4f)", cfg.name, start_epoch, best)
    (member_dir / "config.json").write_text(json.dumps(asdict(cfg), indent=2))
    weights = class_weights(train.labels, cfg.class_weight_power).to(device)
    train_prior = class_frequencies(train.labels).float()
    # bf16 autocast on a GPU; full precision on the CPU, where autocast is slower.
    autocast = (lambda: torch.autocast("cuda", dtype=torch.bfloat16)) if device.type == "cuda" else nullcontext
    images_on_device = train.images.to(device)
    labels_on_device = train.labels.to(device)
    allowed_on_device = train.allowed.to(device)
    log_path = member_dir / "log.csv"
    for epoch in range(start_epoch, cfg.epochs):
        net.train()
        order = torch.randperm(len(train), generator=gen)
        seen, loss_sum, t0 = 0, 0.0, time.time()
        bar = tqdm(
            range(0, len(train), cfg.batch_size),
            desc=f"{cfg.name} epoch {epoch + 1}/{cfg.epochs}",
            unit="batch",
            mininterval=5,
        )
        for start in bar:
            idx = order[start : start + cfg.batch_size]
            dev_idx = idx.to(device)
            images = augment_batch(images_on_device[dev_idx], (cfg.height, cfg.width), gen, cfg.source_augmentation)
            x = inputs.normalize(images).contiguous(memory_format=torch.channels_last)
            meta = hide_metadata(train.meta[idx], cfg.meta_dropout, gen, cfg.meta_drop_all).to(device)
            with autocast():
                logits = net(x, meta)
            loss = partial_cross_entropy(
                logits, labels_on_device[dev_idx], allowed_on_device[dev_idx], weights, cfg.label_smoothing
            )
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            sched.step()
            if ema is not None:
                ema.update(net)
            seen += len(idx)
            loss_sum += loss.item() * len(idx)
            bar.set_postfix(loss=f"{loss_sum / seen:.3f}", img_s=f"{seen / (time.time() - t0):.1f}")
        scored = ema.net if ema is not None else net
        logits = predict_outputs(scored, data["val"], inputs, device=cfg.device)[0]
        probs = torch.softmax(logits, 1)
        val = classification_report(probs.numpy(), data["val"].labels.numpy())
        # Scored as export will use it: the equal prior at its best strength (a class-weighted
        # loss already leans towards rare classes, so the full correction over-corrects).
        strength, strength_scores = choose_prior_strength(probs, data["val"].labels, train_prior)
        val_equal = strength_scores[f"{strength:.1f}"]
        row = {
            "epoch": epoch + 1,
            "train_loss": loss_sum / seen,
            "val_loss": F.cross_entropy(logits, data["val"].labels).item(),
            "val_accuracy": val["accuracy"],
            "val_balanced_accuracy": val["balanced_accuracy"],
            "val_balanced_accuracy_equal_prior": val_equal,
            "equal_prior_strength": strength,
            "val_macro_auc": val["macro_auc"],
            "lr": sched.get_last_lr()[0],
            "seconds": time.time() - t0,
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
        if keep_epochs:
            save_file(
                {k: v.detach().cpu().contiguous() for k, v in scored.state_dict().items()},
                str(member_dir / f"epoch_{epoch + 1:02d}.safetensors"),
            )
            save_file({"logits": logits.contiguous()}, str(member_dir / f"val_logits_{epoch + 1:02d}.safetensors"))
        if val_equal > best:
            best = val_equal
            save_file(
                {k: v.detach().cpu().contiguous() for k, v in scored.state_dict().items()},
                str(member_dir / "best.safetensors"),
            )
        state = {
            "model": net.state_dict(),
            "optimizer": opt.state_dict(),
            "scheduler": sched.state_dict(),
            "generator": gen.get_state(),
            "torch_rng": torch.get_rng_state(),
            "epoch": epoch + 1,
            "best": best,
        }
        if ema is not None:
            state |= {"ema": ema.net.state_dict(), "ema_steps": ema.steps}
        torch.save(state, ckpt)
    (member_dir / "done.json").write_text(
        json.dumps({"epochs": cfg.epochs, "best_val_balanced_accuracy_equal_prior": best})
    )
    return member_dir


def load_member(member_dir: Path) -> tuple[SkinNet, TrainConfig]:
    cfg = TrainConfig.from_json((member_dir / "config.json").read_text())
    net = SkinNet(cfg.arch, meta_hidden=cfg.meta_hidden)
    net.load_state_dict(load_file(str(member_dir / "best.safetensors")))
    return net.eval(), cfg
