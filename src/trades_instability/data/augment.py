"""Batch augmentation on the device: random crop with zero padding + random horizontal flip.

This is the paper's (and the official TRADES code's) ``RandomCrop(32, padding=4)`` +
``RandomHorizontalFlip()``, applied to a whole batch at once so that the dataset can stay on the
GPU and no per-image Python runs in the training loop. Every example gets its own crop offset and
flip. The random numbers are drawn on the CPU from ``generator`` and only then moved to
``x.device`` (one pinned, non-blocking copy per batch), so a given generator state gives
bit-identical augmentations on CPU and GPU (and the trainer can checkpoint/restore one CPU generator for exact resume).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F


def draw_params(
    batch: int, padding: int, generator: torch.Generator | None = None
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Draw the per-example crop offsets and flips on the CPU.

    Returns ``(dy, dx, flip)``: offsets in ``[0, 2*padding]`` into the padded image (int64, (B,))
    and a bool (B,) flip mask. The order of draws (offsets first, then flips) is part of the
    reproducibility contract: changing it changes every run's augmentation stream."""
    offsets = torch.randint(0, 2 * padding + 1, (2, batch), generator=generator, device="cpu")
    flip = torch.randint(0, 2, (batch,), generator=generator, device="cpu").bool()
    return offsets[0], offsets[1], flip


def crop_flip(x: torch.Tensor, dy: torch.Tensor, dx: torch.Tensor, flip: torch.Tensor, padding: int) -> torch.Tensor:
    """Apply given per-example crops/flips (deterministic part of :func:`augment_batch`).

    Pads once with zeros, then gathers every example's window with one advanced-indexing call:
    row index ``dy[b] + i`` and column index ``dx[b] + j`` (or ``dx[b] + W-1-j`` when flipped, which
    is the horizontal flip of the cropped window)."""
    b, c, h, w = x.shape
    dev = x.device
    dy, dx, flip = dy.to(dev), dx.to(dev), flip.to(dev)
    padded = F.pad(x, (padding, padding, padding, padding)) if padding > 0 else x
    ar_h = torch.arange(h, device=dev)
    ar_w = torch.arange(w, device=dev)
    rows = dy[:, None] + ar_h[None, :]  # (B, H)
    cols = dx[:, None] + torch.where(flip[:, None], (w - 1) - ar_w[None, :], ar_w[None, :])  # (B, W)
    bi = torch.arange(b, device=dev)[:, None, None, None]
    ci = torch.arange(c, device=dev)[None, :, None, None]
    out = padded[bi, ci, rows[:, None, :, None], cols[:, None, None, :]]
    if x.dim() == 4 and x.is_contiguous(memory_format=torch.channels_last) and not x.is_contiguous():
        out = out.contiguous(memory_format=torch.channels_last)
    else:
        out = out.contiguous()
    return out


def augment_batch(x: torch.Tensor, *, padding: int = 4, generator: torch.Generator | None = None) -> torch.Tensor:
    """Random crop (zero padding of ``padding`` pixels) + random horizontal flip, per example.

    ``x`` is (B, C, H, W) on any device, any float dtype (values stay in the input range since the
    output only copies input pixels or zeros); works for 32x32 and 64x64 and for channels_last
    input (the output keeps that memory format). ``generator`` is a CPU generator (None: torch's
    default CPU generator)."""
    if x.dim() != 4:
        raise ValueError(f"augment_batch expects a (B, C, H, W) batch, got shape {tuple(x.shape)}")
    if padding < 0:
        raise ValueError(f"padding must be >= 0, got {padding}")
    dy, dx, flip = draw_params(x.shape[0], padding, generator)
    if x.device.type != "cpu":
        # one non-blocking copy of all three (pinned: the host does not wait for the device)
        params = torch.stack([dy, dx, flip.long()])
        params = params.pin_memory() if x.is_cuda else params
        dy, dx, flip = params.to(x.device, non_blocking=True).unbind(0)
        flip = flip.bool()
    return crop_flip(x, dy, dx, flip, padding)
