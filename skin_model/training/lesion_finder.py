"""Train and export the lesion finder (``inference/lesion_finder.py``) from its recipe.

    python -m skin_model lesion-finder --recipe recipes/quality/lesion_finder.toml \\
        --ham ../shared/data/ham10000 --isic ../shared/data/isic2017 --bcn ../shared/data/bcn20000 [--out FILE]

It learns HAM10000's lesion masks on the training folds but one (the recipe's
``validation_fold``); the test split is never read. Each training view is the photo on one side of
a straight cut through the lesion (``cut_p``) or a random part of it (so that it sees lesions cut
by the frame with their masks cut alike), flipped, its colours
and exposure moved, and at times blurred or brought down to a BCN20000-like 84 px and back. What
other clinics' photos hold and HAM10000's rarely do is drawn in at times: a calibration sticker at
the frame, a scale bar, the dermoscope's round field in a black surround.
Export then finds the lesions of the validation fold, of ISIC 2017's training part and of
BCN20000 (real images; no masks there) and chooses the framing thresholds: each source's own
quantile of each measure (``real_quantile``, ``cut_quantile``), the most lenient of them. They,
the recipe, its sha256 and the validation figures go into the artifact's card.
"""

from __future__ import annotations

import hashlib
import logging
import math
import time
import tomllib
from dataclasses import asdict, dataclass, fields
from pathlib import Path

import numpy as np
import pandas as pd
import torch
import torch.nn.functional as F
from PIL import Image

from skin_model.config import REPO_DIR
from skin_model.inference import quality
from skin_model.inference.inputs import load_image
from skin_model.inference.lesion_finder import LesionFinder, LesionNet, finder_input
from skin_model.training.augment import gaussian_blur
from skin_model.training.data import find_images
from skin_model.training.splits import read_lesion_split

log = logging.getLogger(__name__)
WORKING = quality.SIZE  # images are held at the quality check's working size, 200x150


@dataclass(frozen=True)
class FinderRecipe:
    """Every setting of one lesion finder; an unknown key is an error that names it."""

    version: str
    lesion_file: str = "splits/ham10000_lesions.csv"
    validation_fold: int = 0
    input_size: tuple[int, int] = (96, 72)
    widths: tuple[int, ...] = (12, 24, 48, 64, 96)
    epochs: int = 12
    batch_size: int = 32
    lr: float = 3e-3
    weight_decay: float = 1e-4
    seed: int = 0
    crop_p: float = 0.7  # share of the views not cut through (cut_p) that are a random part of the image
    crop_min_area: float = 0.25
    # each part's shape, as a factor of the photo's (log-uniform in [1/x, x]): every input is brought
    # to the network's 4:3, so a square or portrait photo is stretched as much
    crop_max_stretch: float = 2.0
    # share of views cut straight through the lesion, one side kept (``cut_through``): what a photo
    # that cuts the lesion off looks like, which a random part shows too seldom
    cut_p: float = 0.0
    # the outside share's loss against the mask's (finder_loss): the framing rule reads that share
    outside_weight: float = 1.0
    blur_p: float = 0.2
    low_res_p: float = 0.2
    # ISIC 2017's photos carry coloured calibration stickers and scale bars that HAM10000's do not;
    # a first finder took a sticker at the frame for a lesion cut by it. Views get them at times.
    sticker_p: float = 0.0
    ruler_p: float = 0.0
    # Many BCN20000 photos show the dermoscope's round field in a black surround, which HAM10000's
    # rarely do; a view cut from such a photo must still say how much of its lesion is cut off.
    field_p: float = 0.0
    real_quantile: float = 0.99  # of real images, at which the "lesion too small" threshold is set
    # A lesion over this share of the photo is a close-up, whose frame often cuts it by design
    # (BCN20000 has many): its share outside is read less close_up_margin (quality.cut_score), where
    # its threshold is chosen as where it is judged; 1 = never called cut off.
    close_up_share: float = 1.0
    close_up_margin: float = 1.0
    # ... and the "cut by the frame" one. Lower, where the frame cuts many real photos' lesions (BCN20000's
    # close-ups): the share of real photos this check alone may warn on is 1 - cut_quantile.
    cut_quantile: float = 0.99
    sha256: str = ""

    @classmethod
    def load(cls, path: Path) -> FinderRecipe:
        content = Path(path).read_bytes()
        raw = tomllib.loads(content.decode())
        known = {f.name for f in fields(cls)} - {"sha256"}
        unknown = set(raw) - known
        if unknown:
            raise ValueError(f"{path}: unknown lesion-finder recipe key(s) {sorted(unknown)}; known: {sorted(known)}")
        if "version" not in raw:
            raise ValueError(f"{path}: the recipe must set 'version'")
        for key in ("input_size", "widths"):
            if key in raw:
                raw[key] = tuple(raw[key])
        recipe = cls(**raw, sha256=hashlib.sha256(content).hexdigest())
        if not 0 < recipe.crop_min_area <= 1:
            raise ValueError(f"{path}: crop_min_area must be in (0, 1]")
        if not 0 < recipe.close_up_share <= 1:
            raise ValueError(f"{path}: close_up_share must be in (0, 1], a share of the photo")
        if not 0 <= recipe.close_up_margin <= 1:
            raise ValueError(f"{path}: close_up_margin must be in [0, 1], a share of the lesion")
        for key in ("real_quantile", "cut_quantile"):
            if not 0.5 < getattr(recipe, key) < 1:
                raise ValueError(f"{path}: {key} must be in (0.5, 1), a quantile of real photos")
        if recipe.outside_weight <= 0:
            raise ValueError(f"{path}: outside_weight must be positive")
        for key in ("crop_p", "cut_p", "blur_p", "low_res_p", "sticker_p", "ruler_p", "field_p"):
            if not 0 <= getattr(recipe, key) <= 1:
                raise ValueError(f"{path}: {key} must be in [0, 1], a share of the training views")
        return recipe


def _at_working_size(image: Image.Image, resample=Image.Resampling.BILINEAR) -> torch.Tensor:
    small = image.resize(WORKING, resample) if image.size != WORKING else image
    arr = np.asarray(small)
    return torch.from_numpy(arr.copy()).permute(2, 0, 1) if arr.ndim == 3 else torch.from_numpy(arr.copy())


def ham_parts(ham: Path, recipe: FinderRecipe) -> tuple[list[str], list[str]]:
    """The image ids of the training folds but the validation one, and of the validation fold."""
    meta = pd.read_csv(ham / "HAM10000_metadata.csv", dtype=str)
    split = read_lesion_split(REPO_DIR / recipe.lesion_file).set_index("lesion_id")
    meta = meta[meta["lesion_id"].isin(split.index)]
    row = split.loc[meta["lesion_id"]]
    training = (row["split"] == "train").to_numpy()  # the test split is never read
    fold = row["fold"].to_numpy().astype(int)
    ids = meta["image_id"].to_numpy()
    return list(ids[training & (fold != recipe.validation_fold)]), list(
        ids[training & (fold == recipe.validation_fold)]
    )


def read_images(paths: list[Path]) -> torch.Tensor:
    return torch.stack([_at_working_size(load_image(p)) for p in paths])


def read_masks(ham: Path, ids: list[str]) -> torch.Tensor:
    masks = [
        _at_working_size(Image.open(ham / "masks" / f"{i}_segmentation.png").convert("L"), Image.Resampling.NEAREST)
        for i in ids
    ]
    return (torch.stack(masks) > 127).float().unsqueeze(1)


def random_views(
    images: torch.Tensor, masks: torch.Tensor, recipe: FinderRecipe, g: torch.Generator
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """uint8 images (B, 3, 150, 200) and their masks -> the network's inputs, soft masks at its
    output size, and the share of each lesion the view leaves out; each view a random part, flip,
    exposure, blur or resolution (the module's docstring)."""
    width, height = recipe.input_size
    out_size = (math.ceil(height / 2), math.ceil(width / 2))
    rand = lambda *shape: torch.rand(*shape, generator=g)  # noqa: E731
    xs, ys, outside = [], [], []
    H, W = images.shape[-2:]
    for img, mask in zip(images, masks):
        img = img.float().unsqueeze(0)
        mask = mask.unsqueeze(0)
        whole = float(mask.sum())
        if recipe.field_p and rand(1) < recipe.field_p:  # before the crop: a view is part of such a photo
            img, mask = in_round_field(img, mask, rand)
        if recipe.cut_p and whole and rand(1) < recipe.cut_p:
            img, mask = cut_through(img, mask, rand)
        elif rand(1) < recipe.crop_p:
            area = recipe.crop_min_area + (1 - recipe.crop_min_area) * float(rand(1))
            aspect = math.exp((float(rand(1)) - 0.5) * 2 * math.log(recipe.crop_max_stretch))
            cw = min(W, round(W * math.sqrt(area * aspect)))
            ch = min(H, round(H * math.sqrt(area / aspect)))
            x0, y0 = int(rand(1) * (W - cw + 1)), int(rand(1) * (H - ch + 1))
            img, mask = img[..., y0 : y0 + ch, x0 : x0 + cw], mask[..., y0 : y0 + ch, x0 : x0 + cw]
        outside.append(1 - float(mask.sum()) / whole if whole else 0.0)
        if rand(1) < recipe.low_res_p:  # an 84 px image (BCN20000), brought up again
            side = 60 + int(rand(1) * 40)
            small = (max(8, round(img.shape[-2] * side / img.shape[-1])), side)
            img = F.interpolate(img, size=small, mode="bilinear", antialias=True, align_corners=False)
        x = finder_input(img, recipe.input_size)
        y = F.interpolate(mask, size=out_size, mode="area")
        if recipe.sticker_p and rand(1) < recipe.sticker_p:
            x, y = with_sticker(x, y, rand)
        if recipe.ruler_p and rand(1) < recipe.ruler_p:
            x = with_ruler(x, rand)
        if rand(1) < 0.5:
            x, y = x.flip(-1), y.flip(-1)
        if rand(1) < 0.5:
            x, y = x.flip(-2), y.flip(-2)
        # Exposure and white balance: gamma, then a gain per channel, in [0, 1] and back.
        unit = ((x + 1) / 2).clamp(0, 1) ** (0.7 + 0.6 * float(rand(1)))
        unit = unit * (0.6 + 0.7 * float(rand(1))) * (0.85 + 0.3 * rand(1, 3, 1, 1))
        x = unit.clamp(0, 1) * 2 - 1
        if rand(1) < recipe.blur_p:
            x = gaussian_blur(x, 0.5 + 1.5 * float(rand(1)))
        xs.append(x)
        ys.append(y)
    return torch.cat(xs), torch.cat(ys), torch.tensor(outside)


def cut_through(img: torch.Tensor, mask: torch.Tensor, rand) -> tuple[torch.Tensor, torch.Tensor]:
    """One photo (1, C, H, W) and its 0/1 mask (1, 1, H, W) -> the part on one side of a straight cut
    a fifth to four fifths across the lesion: the lesion cut off by the frame. At least a quarter
    of the photo (rounded down) is kept along the cut's axis, so a lesion near the frame may be
    kept whole, and a lesion a pixel or two across all or nothing; the share outside is counted
    from the kept mask all the same. Brought to the network's 4:3, the part is stretched up to 4x."""
    h, w = img.shape[-2:]
    ys, xs = torch.nonzero(mask[0, 0] > 0.5, as_tuple=True)
    if len(xs) == 0:
        return img, mask
    side = int(rand(1) * 4)  # one draw for both: right, left, lower or upper part kept
    upright, keep_far_part = side >= 2, side % 2 == 0
    lo, hi, n = (ys.min(), ys.max() + 1, h) if upright else (xs.min(), xs.max() + 1, w)
    at = int(lo + (0.2 + 0.6 * float(rand(1))) * (hi - lo))
    keep = slice(min(at, n - n // 4), n) if keep_far_part else slice(0, max(at, n // 4))
    if upright:
        return img[..., keep, :], mask[..., keep, :]
    return img[..., keep], mask[..., keep]


def in_round_field(img: torch.Tensor, mask: torch.Tensor, rand) -> tuple[torch.Tensor, torch.Tensor]:
    """The photo seen through a dermoscope's round field (an ellipse once squashed to 4:3, at
    times wider than the photo), its surround near black. The lesion under the surround is lost and
    counts as outside the photo: the field cuts it off as the frame does (a sticker, which lies on
    the skin inside the photo, hides but does not cut)."""
    h, w = img.shape[-2:]
    ax, ay = w / 2 * (0.75 + 0.45 * float(rand(1))), h / 2 * (0.75 + 0.45 * float(rand(1)))
    cx, cy = w / 2 + (float(rand(1)) - 0.5) * 0.1 * w, h / 2 + (float(rand(1)) - 0.5) * 0.1 * h
    yy, xx = torch.meshgrid(torch.arange(h) + 0.5, torch.arange(w) + 0.5, indexing="ij")
    radius = (((xx - cx) / ax) ** 2 + ((yy - cy) / ay) ** 2).sqrt()
    field = torch.sigmoid((1 - radius) * 30)  # a soft edge, a few pixels wide
    surround = 25 * float(rand(1))  # darker than the check's own field (quality.FIELD_MIN), as BCN20000's is
    return img * field + surround * (1 - field), mask * (field > 0.5)


# Colours like ISIC's calibration stickers (blue, orange, green, yellow, red, lilac, white), as network input.
STICKER_COLOURS = finder_input(
    torch.tensor(
        [
            [40, 120, 220],
            [245, 140, 30],
            [40, 170, 90],
            [245, 220, 40],
            [230, 40, 60],
            [200, 190, 235],
            [250, 250, 250],
        ],
        dtype=torch.uint8,
    ).view(-1, 3, 1, 1),
    (1, 1),
).view(-1, 3)


def _disc(shape: tuple[int, int], cx: float, cy: float, r: float) -> torch.Tensor:
    """A boolean disc on an (h, w) grid, its centre and radius in units of the grid's height."""
    h, w = shape
    yy = (torch.arange(h) + 0.5) / h
    xx = (torch.arange(w) + 0.5) / h
    return ((xx[None, :] - cx) ** 2 + (yy[:, None] - cy) ** 2) < r**2


def with_sticker(x: torch.Tensor, y: torch.Tensor, rand) -> tuple[torch.Tensor, torch.Tensor]:
    """A coloured disc, at times with a ring of another colour, centred near the view's frame
    (often partly outside it); no lesion under it."""
    h, w = x.shape[-2:]
    aspect = w / h
    r = 0.15 + 0.3 * float(rand(1))
    side = int(rand(1) * 4)  # which edge the sticker sits on
    along, depth = float(rand(1)), (float(rand(1)) - 0.5) * r  # centre within half a radius of the edge
    cx, cy = [(along * aspect, depth), (along * aspect, 1 - depth), (depth, along), (aspect - depth, along)][side]
    first, second = (int(rand(1) * len(STICKER_COLOURS)) for _ in range(2))
    x = x.clone()
    for radius, colour in ((r, first), (r * (0.4 + 0.3 * float(rand(1))), second)):
        disc = _disc((h, w), cx, cy, radius)
        x[..., disc] = STICKER_COLOURS[colour].view(3, 1) + 0.05 * (rand(3, 1) - 0.5)
        if rand(1) < 0.5:  # a plain disc as often as a ringed one
            break
    covered = _disc(tuple(y.shape[-2:]), cx, cy, r)
    y = y.clone()
    y[..., covered] = 0
    return x, y


def with_ruler(x: torch.Tensor, rand) -> torch.Tensor:
    """A thin dark scale bar with ticks, lying or upright, somewhere in the view (ISIC's rulers)."""
    upright = rand(1) < 0.5
    x = x.transpose(-1, -2).clone() if upright else x.clone()  # draw it lying, then turn it back
    h, w = x.shape[-2:]
    row = int(h * (0.1 + 0.8 * float(rand(1))))
    x0 = int(w * 0.6 * float(rand(1)))
    x1 = min(w, x0 + int(w * (0.2 + 0.3 * float(rand(1)))))
    dark = -1 + 0.4 * float(rand(1))
    x[..., row, x0:x1] = dark
    for tick in range(x0, x1, max(2, (x1 - x0) // 10)):
        x[..., max(0, row - 2) : row, tick] = dark
    return x.transpose(-1, -2) if upright else x


def finder_loss(
    found: tuple[torch.Tensor, torch.Tensor], target: torch.Tensor, outside: torch.Tensor, outside_weight: float = 1.0
) -> torch.Tensor:
    """The mask's binary cross-entropy plus soft Dice (the lesion is often a small part of the
    image), and the outside share's cross-entropy (a soft target in [0, 1]) times ``outside_weight``."""
    logits, outside_logit = found
    p = torch.sigmoid(logits)
    dice = 1 - (2 * (p * target).sum((1, 2, 3)) + 1) / (p.sum((1, 2, 3)) + target.sum((1, 2, 3)) + 1)
    return (
        F.binary_cross_entropy_with_logits(logits, target)
        + dice.mean()
        + outside_weight * F.binary_cross_entropy_with_logits(outside_logit, outside)
    )


def iou(finder: LesionFinder, images: torch.Tensor, masks: torch.Tensor, batch: int = 128) -> float:
    """Mean intersection over union of the found lesions with the masks, at the finder's output size."""
    scores = []
    for i in range(0, len(images), batch):
        found = torch.from_numpy(finder.find(images[i : i + batch])[0])
        truth = F.interpolate(masks[i : i + batch], size=found.shape[-2:], mode="area")[:, 0] > 0.5
        inter = (found & truth).sum((1, 2)).float()
        union = (found | truth).sum((1, 2)).float()
        scores.append(torch.where(union > 0, inter / union.clamp(min=1), torch.ones_like(union)))
    return float(torch.cat(scores).mean())


def framing(finder: LesionFinder, paths: list[Path], close_up_share: float, batch: int = 128) -> np.ndarray:
    """Photos -> (N, 2): the found lesion's share of the photo, and its estimated share outside,
    read as the quality check reads them (``quality.within_size``: brought down, never up, the
    photo's own shape; ``quality.framing``), so that the thresholds are chosen on what it measures."""
    rows = []
    for i in range(0, len(paths), batch):
        photos = [np.asarray(quality.within_size(load_image(p))) for p in paths[i : i + batch]]
        masks, outside = finder.find(photos)
        rows.extend(quality.framing(mask, out, close_up_share) for mask, out in zip(masks, outside))
    return np.array(rows, dtype=float).reshape(-1, 2)


def choose_thresholds(
    measures: list[np.ndarray], small_q: float, cut_q: float, close_up_share: float = 1.0, close_up_margin: float = 1.0
) -> dict:
    """Each source's own quantile of each framing measure (share: the low one; the share outside as
    ``quality.cut_score`` reads it, a close-up's less the margin), the most lenient."""
    return {
        "min_share": float(min(np.quantile(m[:, 0], 1 - small_q) for m in measures)),
        "max_outside": float(
            max(
                np.quantile(quality.cut_score(m[:, 0], m[:, 1], close_up_share, close_up_margin), cut_q)
                for m in measures
            )
        ),
        "close_up_share": close_up_share,
        "close_up_margin": close_up_margin,
    }


def train_lesion_finder(
    recipe: FinderRecipe,
    ham: Path,
    isic: Path | None,
    out: Path,
    threads: int | None = None,
    bcn: Path | None = None,
) -> LesionFinder:
    if threads:
        torch.set_num_threads(threads)
    torch.manual_seed(recipe.seed)
    g = torch.Generator().manual_seed(recipe.seed)
    train_ids, val_ids = ham_parts(ham, recipe)
    paths = find_images(ham)
    started = time.time()
    train_x, val_x = read_images([paths[i] for i in train_ids]), read_images([paths[i] for i in val_ids])
    train_y, val_y = read_masks(ham, train_ids), read_masks(ham, val_ids)
    log.info("read %d + %d images in %.0f s", len(train_x), len(val_x), time.time() - started)

    net = LesionNet(recipe.widths, recipe.input_size)
    finder = LesionFinder(net, {"input_size": list(recipe.input_size), "widths": list(recipe.widths)})
    steps = recipe.epochs * math.ceil(len(train_x) / recipe.batch_size)
    opt = torch.optim.AdamW(net.parameters(), lr=recipe.lr, weight_decay=recipe.weight_decay)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=recipe.lr, total_steps=steps, pct_start=0.1)
    history = []
    for epoch in range(recipe.epochs):
        net.train()
        order = torch.randperm(len(train_x), generator=g)
        total, started = 0.0, time.time()
        for i in range(0, len(order), recipe.batch_size):
            idx = order[i : i + recipe.batch_size]
            x, y, outside = random_views(train_x[idx], train_y[idx], recipe, g)
            loss = finder_loss(net(x), y, outside, recipe.outside_weight)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            sched.step()
            total += loss.item() * len(idx)
        net.eval()
        history.append({"epoch": epoch + 1, "loss": total / len(train_x), "validation_iou": iou(finder, val_x, val_y)})
        log.info(
            "epoch %d: loss %.4f, validation IoU %.3f (%.0f s)",
            epoch + 1,
            history[-1]["loss"],
            history[-1]["validation_iou"],
            time.time() - started,
        )

    measures = {"ham10000 validation fold": framing(finder, [paths[i] for i in val_ids], recipe.close_up_share)}
    if isic is not None:
        isic_meta = pd.read_csv(isic / "metadata.csv", dtype=str)
        isic_paths = find_images(isic)
        train_part = isic_meta.loc[isic_meta["dataset"].eq("isic2017_train"), "image_id"]
        measures["isic2017 training part"] = framing(finder, [isic_paths[i] for i in train_part], recipe.close_up_share)
    if bcn is not None:  # every image: none of it is learnt, and the classifier's figures never use this choice
        measures["bcn20000"] = framing(finder, sorted(find_images(bcn).values()), recipe.close_up_share)
    finder.card.update(
        {
            "version": recipe.version,
            "recipe": {k: list(v) if isinstance(v, tuple) else v for k, v in asdict(recipe).items() if k != "sha256"},
            "recipe_sha256": recipe.sha256,
            "lesion_file_sha256": hashlib.sha256((REPO_DIR / recipe.lesion_file).read_bytes()).hexdigest(),
            "trained_on": f"HAM10000 training folds but fold {recipe.validation_fold}: {len(train_x)} images with masks",
            "validation": {"images": len(val_x), "iou": history[-1]["validation_iou"], "history": history},
            "thresholds": choose_thresholds(
                list(measures.values()),
                recipe.real_quantile,
                recipe.cut_quantile,
                recipe.close_up_share,
                recipe.close_up_margin,
            ),
            "thresholds_chosen_on": {k: len(v) for k, v in measures.items()},
        }
    )
    finder.save(out)
    log.info("wrote %s: %s", out, finder.card["thresholds"])
    return finder
