"""Training augmentation: the pieces that imitate how an upload was brought to size (issue 43)."""

from __future__ import annotations

from dataclasses import fields, replace

import pytest
import torch

from skin_model.training.augment import (
    RESIZE_FILTERS,
    SourceAugmentation,
    augment_batch,
    bring_to_size_otherwise,
    jpeg_round_trip,
    resize_again,
    sharpen,
)
from skin_model.training.train import TrainConfig


def _smooth_images(n: int = 6, h: int = 60, w: int = 80) -> torch.Tensor:
    """Float images in [0, 1] with broad shapes and some fine texture, like a lesion on skin."""
    g = torch.Generator().manual_seed(1)
    ys, xs = torch.meshgrid(torch.linspace(-1, 1, h), torch.linspace(-1, 1, w), indexing="ij")
    blob = torch.exp(-(xs**2 + ys**2) * 3)
    texture = 0.05 * torch.rand((n, 3, h, w), generator=g)
    base = torch.stack([0.8 - 0.5 * blob, 0.6 - 0.4 * blob, 0.5 - 0.3 * blob])
    return (base.unsqueeze(0) + texture).clamp(0, 1)


def _psnr(a: torch.Tensor, b: torch.Tensor) -> float:
    return float(10 * torch.log10(1 / ((a - b) ** 2).mean()))


def _detail(x: torch.Tensor) -> float:
    """High-frequency energy: the mean squared difference between neighbouring pixels."""
    return float(((x[..., 1:] - x[..., :-1]) ** 2).mean())


@pytest.mark.parametrize("down", RESIZE_FILTERS, ids=lambda f: f"{f[0]}{'-aa' if f[1] else ''}")
@pytest.mark.parametrize("scale", [0.5, 1.7, 2.6])  # (an odd whole scale samples the pixels themselves)
def test_resizing_again_keeps_the_size_and_changes_the_texture_not_the_picture(down, scale):
    x = _smooth_images()
    y = resize_again(x, scale, down, ("bicubic", True))
    assert y.shape == x.shape and 0 <= float(y.min()) and float(y.max()) <= 1
    assert not torch.equal(y, x)
    assert _psnr(x, y) > 20  # the same lesion, another texture


def test_a_jpeg_round_trip_loses_more_at_a_lower_quality():
    x = _smooth_images()
    high, low = jpeg_round_trip(x, [95] * len(x)), jpeg_round_trip(x, [30] * len(x))
    assert high.shape == x.shape and high.dtype == x.dtype
    assert _psnr(x, high) > _psnr(x, low) > 20


def test_sharpening_adds_detail_and_an_amount_of_zero_changes_nothing():
    x = _smooth_images()
    assert torch.allclose(sharpen(x, torch.zeros(len(x))), x, atol=1e-6)
    assert _detail(sharpen(x, torch.full((len(x),), 1.0))) > 1.2 * _detail(x)


@pytest.mark.parametrize("piece", ["resize", "jpeg", "sharpen"])
def test_each_piece_touches_its_share_of_the_batch_and_only_it(piece):
    x = _smooth_images(n=32)
    changed = lambda share: [  # noqa: E731
        not torch.equal(a, b)
        for a, b in zip(x, bring_to_size_otherwise(x, replace(SourceAugmentation(), **{piece: share}), _gen()))
    ]
    assert not any(changed(0.0))
    assert all(changed(1.0))
    assert 4 <= sum(changed(0.5)) <= 28


def test_the_same_seed_draws_the_same_batch():
    images = (_smooth_images(n=8) * 255).to(torch.uint8)
    source = SourceAugmentation(resize=0.5, jpeg=0.5, sharpen=0.5, blur=0.2)
    a, b = (augment_batch(images, (48, 64), _gen(), source) for _ in range(2))
    assert torch.equal(a, b) and a.shape == (8, 3, 48, 64)


def test_without_those_pieces_the_batch_is_what_it_was_before_them():
    """Switched off, the new pieces draw nothing: older recipes train exactly as they did."""
    images = (_smooth_images(n=8) * 255).to(torch.uint8)
    before = augment_batch(images, (48, 64), _gen(), SourceAugmentation(blur=0.5))
    after = augment_batch(images, (48, 64), _gen(), SourceAugmentation(blur=0.5, resize=0.0, jpeg=0.0))
    assert torch.equal(before, after)


def test_every_source_augmentation_is_a_training_setting():
    cfg = TrainConfig(**{f"aug_{f.name}": 0.1 * (i + 1) for i, f in enumerate(fields(SourceAugmentation))})
    assert cfg.source_augmentation == SourceAugmentation(
        **{f.name: 0.1 * (i + 1) for i, f in enumerate(fields(SourceAugmentation))}
    )


def _gen() -> torch.Generator:
    return torch.Generator().manual_seed(7)
