"""Batch augmentation: random crop with zero padding + horizontal flip, per example, vectorised."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from trades_instability.data.augment import augment_batch, crop_flip, draw_params


def _reference(x: torch.Tensor, dy: int, dx: int, flip: bool, padding: int) -> torch.Tensor:
    """One example the plain way: F.pad, slice the window, flip the last axis."""
    h, w = x.shape[-2:]
    out = F.pad(x, (padding,) * 4)[:, dy:dy + h, dx:dx + w]
    return out.flip(-1) if flip else out


@pytest.mark.parametrize("size", [32, 64])
def test_shape_range_dtype(size):
    x = torch.rand(16, 3, size, size)
    y = augment_batch(x, generator=torch.Generator().manual_seed(0))
    assert y.shape == x.shape and y.dtype == x.dtype and y.device == x.device
    assert y.min() >= 0 and y.max() <= 1


@pytest.mark.parametrize("size", [32, 64])
def test_matches_manual_reference(size):
    x = torch.rand(12, 3, size, size)
    g = torch.Generator().manual_seed(3)
    y = augment_batch(x, padding=4, generator=g)
    dy, dx, flip = draw_params(12, 4, torch.Generator().manual_seed(3))  # the same draws
    for i in range(12):
        assert torch.equal(y[i], _reference(x[i], int(dy[i]), int(dx[i]), bool(flip[i]), 4))


def test_known_offsets_and_flip():
    x = torch.arange(2 * 3 * 8 * 8, dtype=torch.float32).reshape(2, 3, 8, 8)
    dy, dx, flip = torch.tensor([0, 4]), torch.tensor([4, 1]), torch.tensor([False, True])
    y = crop_flip(x, dy, dx, flip, padding=2)
    # dy=0 (shift down by 2: two zero rows on top), dx=4 (shift left by 2: two zero columns at the right)
    assert torch.equal(y[0, :, 2:, :6], x[0, :, :6, 2:])
    assert (y[0, :, :2] == 0).all() and (y[0, :, :, 6:] == 0).all()
    assert torch.equal(y[1], _reference(x[1], 4, 1, True, 2))
    # no padding, no offset, no flip -> identity
    assert torch.equal(crop_flip(x, torch.zeros(2, dtype=torch.long), torch.zeros(2, dtype=torch.long),
                                 torch.zeros(2, dtype=torch.bool), padding=0), x)


def test_random_per_example():
    x = torch.rand(1, 3, 32, 32).expand(64, 3, 32, 32).contiguous()  # 64 copies of one image
    y = augment_batch(x, generator=torch.Generator().manual_seed(1))
    distinct = {bytes(yi.numpy()) for yi in y}
    assert len(distinct) > 20  # 81 offsets x 2 flips: copies must come out differently
    dy, dx, flip = draw_params(64, 4, torch.Generator().manual_seed(1))
    assert 0 < flip.sum() < 64 and dy.unique().numel() > 3 and dx.unique().numel() > 3
    assert dy.min() >= 0 and dy.max() <= 8


def test_same_seed_same_output_and_generator_advances():
    x = torch.rand(8, 3, 32, 32)
    a = augment_batch(x, generator=torch.Generator().manual_seed(7))
    b = augment_batch(x, generator=torch.Generator().manual_seed(7))
    assert torch.equal(a, b)
    g = torch.Generator().manual_seed(7)
    first, second = augment_batch(x, generator=g), augment_batch(x, generator=g)
    assert torch.equal(first, a) and not torch.equal(first, second)


def test_channels_last_input():
    x = torch.rand(6, 3, 32, 32)
    xl = x.contiguous(memory_format=torch.channels_last)
    a = augment_batch(x, generator=torch.Generator().manual_seed(2))
    b = augment_batch(xl, generator=torch.Generator().manual_seed(2))
    assert torch.equal(a, b) and b.is_contiguous(memory_format=torch.channels_last)


def test_bad_input():
    with pytest.raises(ValueError):
        augment_batch(torch.rand(3, 32, 32))


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a GPU")
def test_gpu_matches_cpu():
    x = torch.rand(32, 3, 32, 32)
    a = augment_batch(x, generator=torch.Generator().manual_seed(4))
    b = augment_batch(x.cuda(), generator=torch.Generator().manual_seed(4))
    assert b.is_cuda and torch.equal(a, b.cpu())


def test_augment_batch_keeps_its_draws_and_output():
    """The one-copy device path must not change the stream: same draws (offsets, then flips) as before."""
    x = torch.rand(16, 3, 32, 32)
    out = augment_batch(x, generator=torch.Generator().manual_seed(9))
    dy, dx, flip = draw_params(16, 4, torch.Generator().manual_seed(9))
    assert torch.equal(out, crop_flip(x, dy, dx, flip, padding=4))
