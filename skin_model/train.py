"""Training of ensemble members, then calibration and export of the artifact.

A run folder holds the split (``split.csv``), one sub-folder per member (named
by the member, so one architecture may appear several times) with its
checkpoint, best weights and per-epoch log, and the exported artifact.
"""

from __future__ import annotations

import copy
import csv
import itertools
import json
import logging
import math
import random
import time
from contextlib import nullcontext
from dataclasses import asdict, dataclass, field, fields
from datetime import date
from pathlib import Path

import numpy as np
import pandas as pd
import torch
import torch.nn.functional as F
from safetensors.torch import load_file, save_file
from tqdm import tqdm

from . import __version__, vocab
from .artifact import FORMAT, save_artifact, save_index
from .augment import SourceAugmentation, augment_batch
from .calibration import fit_temperature
from .config import INDEX_FILE
from .data import Dataset, find_metadata_csv, read_metadata, split_by_lesion
from .metrics import classification_report
from .network import BACKBONES, FLIPS, META_DIM, SkinNet, flip_views
from .ood import OodCheck, image_statistics
from .preprocess import InputConfig, SourceSize
from .priors import PRIORS, apply_prior, choose_prior_strength
from .referral import card_section as referral_section
from .referral import malignant_scores
from .similar import THUMB_SIZE, CaseIndex, member_embedding, thumbnail_jpeg
from .splits import SplitLeakError
from .uncertainty import choose_gap

log = logging.getLogger(__name__)
TTA_VIEWS = tuple(FLIPS)


@dataclass
class TrainConfig:
    arch: str = "resnet18"
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
        return SourceAugmentation(self.aug_zoom_out, self.aug_colour_cast, self.aug_gamma, self.aug_blur, self.aug_ring)

    @property
    def inputs(self) -> InputConfig:
        spec = BACKBONES[self.arch]
        return InputConfig(self.height, self.width, spec.mean, spec.std)


@dataclass
class Run:
    """Paths of one training run."""

    root: Path
    split_csv: Path = field(init=False)

    def __post_init__(self):
        self.root = Path(self.root)
        self.split_csv = self.root / "split.csv"

    def member_dir(self, name: str) -> Path:
        return self.root / name


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def prepare_split(data_dir: Path, run: Run, seed: int) -> pd.DataFrame:
    """The run's split: read back if it exists (so members share it), else made and saved."""
    df = read_metadata(find_metadata_csv(data_dir))
    if run.split_csv.exists():
        saved = pd.read_csv(run.split_csv, dtype=str).set_index("image_id")["split"]
        df["split"] = df["image_id"].map(saved)
        if df["split"].isna().any():
            raise ValueError(f"{run.split_csv} does not cover the metadata in {data_dir}")
    else:
        df["split"] = split_by_lesion(df, seed=seed)
        run.root.mkdir(parents=True, exist_ok=True)
        df[["image_id", "lesion_id", "dx", "split"]].to_csv(run.split_csv, index=False)
    leaks = int(df.groupby("lesion_id")["split"].nunique().gt(1).sum())
    if leaks:  # an exception, not an assert: `python -O` must not skip it
        raise SplitLeakError(f"{leaks} lesions span two splits in {run.split_csv}")
    return df


def load_splits(data_dir: Path, run: Run, source: SourceSize, seed: int) -> dict[str, Dataset]:
    df = prepare_split(data_dir, run, seed)
    full = Dataset.load(df, Path(data_dir), source)
    return {name: full.subset(df["split"] == name) for name in ("train", "val", "test")}


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


@torch.inference_mode()
def predict_outputs(
    net: SkinNet,
    data: Dataset,
    inputs: InputConfig,
    views: tuple[str, ...] = ("identity",),
    batch_size: int = 128,
    device: str = "cpu",
) -> tuple[torch.Tensor, torch.Tensor]:
    """Fused logits (N, classes) and pooled image features (N, F), averaged over the test-time views."""
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


def finished_members(run: Run) -> list[Path]:
    return sorted(p.parent for p in run.root.glob("*/done.json"))


def export(
    run: Run,
    data_dir: Path,
    out_dir: Path,
    model_version: str,
    names: list[str] | None = None,
    tta: tuple[str, ...] = TTA_VIEWS,
) -> dict:
    """Calibrate on the validation split and write the artifact of the finished members:
    all of them, those named in ``names``, or with ``["auto"]`` the subset that scores best
    on validation (balanced accuracy under the equal prior, with test-time augmentation)."""
    finished = finished_members(run)
    if not finished:
        raise RuntimeError(f"No finished member in {run.root}")
    candidates = [load_member(d) for d in finished]
    source = SourceSize.for_inputs(max(cfg.height for _, cfg in candidates))
    data = load_splits(data_dir, run, source, candidates[0][1].seed)
    val, train_prior = data["val"], class_frequencies(data["train"].labels)
    candidate_outputs = [predict_outputs(net, val, cfg.inputs, tta) for net, cfg in candidates]
    candidate_logits = [logits for logits, _ in candidate_outputs]

    def score(members: tuple[int, ...]) -> float:
        """Validation balanced accuracy of a subset as it would ship: calibrated, then the
        equal prior at its best strength."""
        logits = torch.stack([candidate_logits[i] for i in members]).mean(0)
        probs = torch.softmax(logits / fit_temperature(logits, val.labels), 1).double()
        return max(choose_prior_strength(probs, val.labels, train_prior)[1].values())

    subsets = [s for k in range(1, len(candidates) + 1) for s in itertools.combinations(range(len(candidates)), k)]
    label = {s: "+".join(candidates[i][1].name for i in s) for s in subsets}
    validation = {label[s]: score(s) for s in subsets}
    if names == ["auto"]:
        chosen = max(subsets, key=lambda s: (validation[label[s]], -len(s)))  # ties: fewer members
    else:
        chosen = tuple(i for i, (_, cfg) in enumerate(candidates) if names is None or cfg.name in names)
    if not chosen:
        raise ValueError(f"None of {names} has finished training in {run.root}")
    loaded = [candidates[i] for i in chosen]
    member_logits = [candidate_logits[i] for i in chosen]
    member_specs = []
    for (_, cfg), logits in zip(loaded, member_logits):
        member_specs.append(
            {
                "name": cfg.name,
                "architecture": cfg.arch,
                "meta_hidden": cfg.meta_hidden,
                "input": cfg.inputs.to_card(),
                "cam_layer": BACKBONES[cfg.arch].cam_layer,
                "temperature": fit_temperature(logits, val.labels),
                "pretrained": "ImageNet" if cfg.pretrained else "none (from scratch)",
                "training": asdict(cfg),
            }
        )
    ensemble_logits = torch.stack(member_logits).mean(0)
    ensemble_t = fit_temperature(ensemble_logits, val.labels)
    calibrated = torch.softmax(ensemble_logits / ensemble_t, 1).double()
    strength, strength_scores = choose_prior_strength(calibrated, val.labels, train_prior)
    decided = apply_prior(calibrated, train_prior, PRIORS["equal"](train_prior), strength)
    uncertainty = choose_gap(decided.numpy(), val.labels.numpy())
    # Similar cases and the out-of-domain check, in the shipped members' own feature space.
    train = data["train"]
    train_features = member_embedding([predict_outputs(net, train, cfg.inputs, tta)[1] for net, cfg in loaded])
    index = CaseIndex.build(
        train_features,
        train.labels,
        list(train.df["dx_type"]),
        list(train.df["image_id"]),
        [thumbnail_jpeg(img) for img in train.images],
    )
    ood_check = OodCheck.fit(image_statistics(train.images))
    ood = ood_check.calibrate(
        index, member_embedding([candidate_outputs[i][1] for i in chosen]), image_statistics(val.images)
    )
    counts = {
        name: {
            "images": len(d),
            "lesions": int(d.df["lesion_id"].nunique()),
            "per_class": {c: int((d.labels == i).sum()) for i, c in enumerate(vocab.CLASSES)},
        }
        for name, d in data.items()
    }
    card = {
        "format": FORMAT,
        "name": "skin_model HAM10000 multimodal ensemble",
        "model_version": model_version,
        "package_version": __version__,
        "created": date.today().isoformat(),
        "source": source.to_card(),
        "tta": {"views": list(tta), "rule": "member logits averaged over the flipped views, one batch"},
        "vocabulary": vocab.vocabulary(),
        "members": member_specs,
        "ensemble": "softmax(mean of member logits / temperature), then the prior correction",
        "temperature": ensemble_t,
        "prior": {
            "default": "equal",
            "training_frequencies": {c: float(f) for c, f in zip(vocab.CLASSES, train_prior)},
            "equal_strength": strength,
            "rule": "p'(c|x) ~ p(c|x) * (prior(c) / training frequency(c)) ** strength; "
            "strength chosen on validation balanced accuracy (1 = full Bayes correction)",
            "strength_validation_balanced_accuracy": strength_scores,
        },
        "uncertainty": uncertainty,
        "referral": referral_section(malignant_scores(calibrated.numpy()), val.labels.numpy()),
        "ood": ood,
        "similar_cases": {
            "source": "training split",
            "count": len(index.image_ids),
            "thumbnail": f"{THUMB_SIZE[0]}x{THUMB_SIZE[1]} JPEG",
            "file": INDEX_FILE,
            "licence": "CC BY-NC-SA 4.0 (HAM10000, Tschandl et al. 2018)",
        },
        "metadata_encoding": "age/100 and an age-missing flag, one-hot sex, one-hot site",
        "data": {
            "dataset": "HAM10000 (working copy: 8,499 images, 85% of the published set)",
            "split_rule": "lesion-grouped, class-stratified, seeded: no lesion_id in two splits "
            "(sklearn StratifiedGroupKFold, 1/7 test, 1/6 of the rest validation)",
            "seed": candidates[0][1].seed,
            "counts": counts,
            "licence": "CC BY-NC-SA 4.0 (non-commercial, with attribution)",
            "citation": "Tschandl P., Rosendahl C., Kittler H. The HAM10000 dataset, a large collection of "
            "multi-source dermatoscopic images of common pigmented skin lesions. "
            "Sci. Data 5, 180161 (2018). doi:10.1038/sdata.2018.161",
        },
        "calibration": "temperature scaling fitted on the validation split (per member and for the ensemble)",
        "validation_balanced_accuracy_equal_prior_tta": validation,
        "selection": (
            "the subset of finished members with the best validation balanced accuracy "
            "(equal prior, test-time flips); ties go to fewer members"
            if names == ["auto"]
            else f"members named at export: {names or 'all finished'}"
        ),
        "intended_use": "Research and teaching demonstrator. Not a medical device; no substitute for a dermatologist.",
        "test_metrics": None,
    }
    save_artifact(out_dir, [net for net, _ in loaded], card)
    save_index(out_dir, index, ood_check)
    log.info(
        "exported %s to %s (ensemble temperature %.3f, prior strength %.2f)",
        label[chosen],
        out_dir,
        ensemble_t,
        strength,
    )
    return card
