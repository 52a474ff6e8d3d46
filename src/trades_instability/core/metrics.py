"""Gradient-masking metrics of the paper, usable outside this pipeline.

* :func:`fosc` - First-Order Stationary Condition (eq. 2, closed form of Wang et al. 2019):
  ``eps * ||g||_1 - <x_adv - x, g>`` per example, g the gradient of that example's own CE loss at x_adv.
* :func:`sgcs` - Step-wise Gradient Cosine Similarity (eq. 3): mean over ordered pairs i != j of
  cos(sign(g_i), sign(g_j)) over the k steps of an attack, per example.
* :func:`gradalign` - GradAlign's gradient alignment (Andriushchenko & Flammarion, NeurIPS 2020, eq. 6 without
  the ``1 -``): per example cos(grad_x CE(x), grad_x CE(x + eta)), eta ~ U[-eps, eps]^d; the review's third
  detector beside FOSC and SGCS (catastrophic overfitting shows as alignment falling towards 0).
* :func:`grad_norm`, :func:`grad_cosine` - the batch-level metrics of Appendix G over parameter gradients.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn

from trades_instability.core.attacks import eps_ball_start
from trades_instability.core.losses import upcast


def fosc_from_grad(x: torch.Tensor, x_adv: torch.Tensor, grad: torch.Tensor, eps: float) -> torch.Tensor:
    """FOSC per example given the input gradient ``grad`` of each example's loss at ``x_adv``."""
    g = grad.flatten(1).double()
    delta = (x_adv - x).flatten(1).double()
    return (eps * g.abs().sum(1) - (delta * g).sum(1)).to(grad.dtype)


def fosc(model: nn.Module, x: torch.Tensor, x_adv: torch.Tensor, y: torch.Tensor, eps: float) -> torch.Tensor:
    """Per-example FOSC of adversarial examples ``x_adv`` of clean inputs ``x``.

    The CE loss is summed over the batch, so each example's gradient is that of its own loss
    (not scaled by the batch size): FOSC does not depend on the batch size. Use the model in eval
    mode so that examples do not interact through BatchNorm."""
    return fosc_from_grad(x.detach(), x_adv.detach(), input_grad(model, x_adv, y), eps)


def sgcs(step_grads: Sequence[torch.Tensor]) -> torch.Tensor:
    """Per-example SGCS of an attack from its k per-step input gradients (each shaped like x).

    Uses sum_{i != j} <u_i, u_j> = ||sum_i u_i||^2 - sum_i ||u_i||^2 with u_i the unit-normalised
    sign gradients, so memory is O(batch x input) rather than O(k^2). A step whose gradient is
    exactly zero has no direction and contributes cosine 0."""
    k = len(step_grads)
    if k < 2:
        raise ValueError(f"SGCS needs at least 2 attack steps, got {k}")
    total = None
    sq_norms = None
    for g in step_grads:
        u = F.normalize(g.flatten(1).sign().double(), dim=1)
        total = u if total is None else total + u
        n2 = (u * u).sum(1)
        sq_norms = n2 if sq_norms is None else sq_norms + n2
    pair_sum = (total * total).sum(1) - sq_norms
    return (pair_sum / (k * (k - 1))).to(step_grads[0].dtype)


def input_grad(model: nn.Module, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """The input gradient of each example's own CE loss (summed over the batch: no 1/B scaling)."""
    x = x.detach().requires_grad_(True)
    (g,) = torch.autograd.grad(F.cross_entropy(upcast(model(x)), y, reduction="sum"), x)
    return g


# GradAlign's noise comes from a generator of its own, seeded this far from the seed of the PGD starts it sits
# beside (validation and evaluation), so that adding it changed no PGD-10 start
GRADALIGN_STREAM = 2**40


def gradalign(
    model: nn.Module, x: torch.Tensor, y: torch.Tensor, eps: float, generator: torch.Generator | None = None
) -> torch.Tensor:
    """Per-example cos(grad_x CE(x), grad_x CE(x + eta)) with eta ~ U[-eps, eps]^d drawn from ``generator``
    (tml-epfl/understanding-fast-adv-training: get_uniform_delta, get_input_grad; x + eta clipped to the image
    range). An example whose gradient is exactly zero at either point has no direction and reads 0, as in
    :func:`sgcs` (the official regulariser drops such examples from its mean instead; a shattered-gradient model
    would then have no value at all). Use the model in eval mode."""
    x_eta = eps_ball_start(x.detach(), eps, generator)  # x + eta, clipped
    g_x = input_grad(model, x, y).flatten(1).double()
    g_eta = input_grad(model, x_eta, y).flatten(1).double()
    return F.cosine_similarity(g_x, g_eta, dim=1, eps=1e-300).to(x.dtype)


def grad_norm(grads: Sequence[torch.Tensor | None]) -> float:
    """L2 norm of a list of parameter gradients taken as one vector (None entries are skipped)."""
    sq = sum((g.double() ** 2).sum() for g in grads if g is not None)
    return float(torch.as_tensor(sq).sqrt())


def grad_cosine(a: Sequence[torch.Tensor | None], b: Sequence[torch.Tensor | None]) -> float:
    """Cosine similarity between two parameter-gradient lists, each taken as one flat vector."""
    dot = sum((x.double() * y.double()).sum() for x, y in zip(a, b, strict=True) if x is not None and y is not None)
    denom = grad_norm(a) * grad_norm(b)
    return float(dot) / denom if denom > 0 else float("nan")
