"""Data loss landscape of Figure 1.

Following the setting the paper cites (Engstrom et al. 2018; Chen et al. 2021; Wu et al. 2024):

    z(a, b) = CE(f(x + a * r1 + b * r2), y),   r1 = sign(grad_x CE(f(x), y)),   r2 ~ Rademacher(0.5)

i.e. r2 has i.i.d. entries +1 / -1 with probability 1/2 each, drawn once per image from ``seed``.
Because both directions are sign vectors, ``a`` and ``b`` are L-inf magnitudes in input units
([0, 1] pixel scale): eps = 8/255 ~ 0.031, so the default extent 0.1 shows the threat model and
about three times its radius around it.

The cited setting perturbs the input directly, so by default the perturbed images are NOT clamped
to [0, 1] (``clamp=False``); ``clamp=True`` restricts the surface to valid images. The surface is
the mean over the first ``n_images`` test images of the per-image loss; the per-image surfaces are
saved too. All grid points of all images are evaluated in large batches (no per-point Python loop).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn


@dataclass
class LandscapeConfig:
    grid_size: int = 21  # points per axis (na = nb = grid_size); odd so that (0, 0) is a grid point
    extent: float = 0.1  # a, b in [-extent, extent] (L-inf magnitude in [0, 1] pixel units)
    n_images: int = 1  # first n test images (the cited works plot single images); loss is their mean
    seed: int = 0  # Rademacher direction r2
    clamp: bool = False  # clamp x + a r1 + b r2 to [0, 1]
    batch_size: int = 512  # perturbed images per forward pass

    def to_dict(self) -> dict:
        return asdict(self)


def grid_axes(cfg: LandscapeConfig) -> tuple[np.ndarray, np.ndarray]:
    a = np.linspace(-cfg.extent, cfg.extent, cfg.grid_size)
    return a, a.copy()


def compute_landscape(
    model: nn.Module, x: torch.Tensor, y: torch.Tensor, cfg: LandscapeConfig | None = None
) -> dict[str, np.ndarray]:
    """Loss surface over the (a, b) grid for images ``x`` (float in [0, 1], on the model's device).

    Returns ``{"loss": (na, nb) mean over images, "loss_per_image": (n, na, nb), "a": (na,), "b": (nb,)}``
    with ``loss[i, j]`` the loss at ``a[i] * r1 + b[j] * r2``. The model should be in eval mode; ``cfg`` None:
    the defaults of :class:`LandscapeConfig`."""
    cfg = LandscapeConfig() if cfg is None else cfg
    device = x.device
    x = x.detach().float()
    n = x.shape[0]
    # r1: sign of each image's own CE input gradient (loss summed, so no 1/n scaling; sign is unaffected anyway)
    xg = x.clone().requires_grad_(True)
    (grad,) = torch.autograd.grad(F.cross_entropy(model(xg).float(), y, reduction="sum"), xg)
    r1 = grad.sign()
    gen = torch.Generator().manual_seed(cfg.seed)
    r2 = (torch.randint(0, 2, x.shape, generator=gen, dtype=torch.int8).float() * 2 - 1).to(device)
    a_np, b_np = grid_axes(cfg)
    a = torch.as_tensor(a_np, dtype=torch.float32, device=device)
    b = torch.as_tensor(b_np, dtype=torch.float32, device=device)
    na, nb = len(a_np), len(b_np)
    # enumerate (image, i, j) in one flat index and evaluate in chunks of batch_size
    total = n * na * nb
    idx = torch.arange(total, device=device)
    img, ij = idx // (na * nb), idx % (na * nb)
    ia, ib = ij // nb, ij % nb
    losses = torch.empty(total, device=device, dtype=torch.float32)
    with torch.no_grad():
        for s in range(0, total, cfg.batch_size):
            sl = slice(s, min(s + cfg.batch_size, total))
            k = img[sl]
            xp = x[k] + a[ia[sl]].view(-1, 1, 1, 1) * r1[k] + b[ib[sl]].view(-1, 1, 1, 1) * r2[k]
            if cfg.clamp:
                xp = xp.clamp(0.0, 1.0)
            losses[sl] = F.cross_entropy(model(xp).float(), y[k], reduction="none")
    per_image = losses.view(n, na, nb).double().cpu().numpy()
    return {"loss": per_image.mean(0), "loss_per_image": per_image, "a": a_np, "b": b_np}
