"""White-box L-inf attacks used for training and validation.

* :func:`tpgd`  - TRADES' inner maximisation: maximise KL(p(x) || p(x_adv)), start at x + 0.001 N(0, 1)
  (official trades.py) or x + 0.001 U[0, 1) (ADR's src/util/trades_attack.py), or (``init_dist="eps_ball"``,
  the review's variant) uniformly in the eps-ball as PGD starts.
* :func:`pgd`   - PGD on the cross-entropy w.r.t. the labels, uniform random start (validation PGD-10 and
  the inner maximisation of the "Modified" variant, Table 6).

Both losses are summed over the batch, so with the model in eval mode the input gradient of every
example is the gradient of that example's own loss (no 1/B scaling). Both can record the per-step
input gradients, from which :func:`trades_instability.core.metrics.sgcs` is computed. The random start is drawn
on the generator's device (:func:`start_noise`): evaluation and validation pass a CPU generator, so their
starts are the same on CPU and GPU.

Precision is the caller's business: wrap the call in ``torch.autocast`` for bf16 attacks.
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass, field

import torch
import torch.nn.functional as F
from torch import nn

from trades_instability.core.losses import upcast

BN_MODES = ("eval", "train")


@dataclass
class AttackResult:
    x_adv: torch.Tensor
    # input gradients of the attack loss at x^0 .. x^{k-1}; empty unless record_grads=True
    step_grads: list[torch.Tensor] = field(default_factory=list)


@contextlib.contextmanager
def bn_mode(model: nn.Module, mode: str):
    """Temporarily put the model in eval or train mode (BatchNorm behaviour during an attack)."""
    if mode not in BN_MODES:
        raise ValueError(f"bn mode must be one of {BN_MODES}, got {mode!r}")
    was_training = model.training
    model.train(mode == "train")
    try:
        yield
    finally:
        model.train(was_training)


def _project(x_adv: torch.Tensor, x: torch.Tensor, eps: float) -> torch.Tensor:
    return torch.clamp(torch.min(torch.max(x_adv, x - eps), x + eps), 0.0, 1.0)


_SAMPLERS = {"normal": torch.randn, "uniform": torch.rand}


def start_noise(x: torch.Tensor, generator: torch.Generator | None, dist: str = "uniform") -> torch.Tensor:
    """N(0, 1) or U[0, 1) noise of ``x``'s shape and dtype on ``x``'s device, drawn on the generator's
    device. A CPU generator gives the same start on every device (CUDA's Philox and the CPU's mt19937
    draw different numbers from one seed); the draw then goes to the GPU in one non-blocking copy."""
    if dist not in _SAMPLERS:
        raise ValueError(f"init_dist must be 'normal' or 'uniform', got {dist!r}")
    where = generator.device if generator is not None else x.device
    if where.type == x.device.type:
        return _SAMPLERS[dist](x.shape, generator=generator, device=x.device, dtype=x.dtype)
    noise = _SAMPLERS[dist](x.shape, generator=generator, device=where, dtype=x.dtype,
                            pin_memory=x.is_cuda and where.type == "cpu")
    return noise.to(x.device, non_blocking=True)


def eps_ball_start(x: torch.Tensor, eps: float, generator: torch.Generator | None) -> torch.Tensor:
    """PGD's random start (Madry et al. 2018): x + U[-eps, eps]^d, clipped to the image range."""
    return torch.clamp(x + (2 * start_noise(x, generator) - 1) * eps, 0.0, 1.0)


def tpgd(
    model: nn.Module,
    x: torch.Tensor,
    *,
    eps: float,
    step_size: float,
    steps: int,
    init_std: float = 0.001,
    init_dist: str = "normal",
    mode: str = "eval",
    logits_clean: torch.Tensor | None = None,
    record_grads: bool = False,
    generator: torch.Generator | None = None,
) -> AttackResult:
    """TRADES' PGD (TPGD). The clean prediction p(x) does not change during the attack, so it is
    computed once (or passed in as ``logits_clean``) rather than at every step as the official code does."""
    x = x.detach()
    with bn_mode(model, mode):
        if logits_clean is None:
            with torch.no_grad():
                logits_clean = model(x)
        p_clean = F.softmax(upcast(logits_clean.detach()), dim=1)
        if init_dist == "eps_ball":
            x_adv = eps_ball_start(x, eps, generator)
        else:
            x_adv = x + init_std * start_noise(x, generator, init_dist)
        grads: list[torch.Tensor] = []
        for _ in range(steps):
            x_adv.requires_grad_(True)
            log_p_adv = F.log_softmax(upcast(model(x_adv)), dim=1)
            loss = F.kl_div(log_p_adv, p_clean, reduction="sum")
            (grad,) = torch.autograd.grad(loss, x_adv)
            if record_grads:
                grads.append(grad.detach())
            x_adv = _project(x_adv.detach() + step_size * grad.sign(), x, eps)
    return AttackResult(x_adv.detach(), grads)


def pgd(
    model: nn.Module,
    x: torch.Tensor,
    y: torch.Tensor,
    *,
    eps: float,
    step_size: float,
    steps: int,
    random_start: bool = True,
    mode: str = "eval",
    record_grads: bool = False,
    generator: torch.Generator | None = None,
) -> AttackResult:
    """PGD-k on the cross-entropy w.r.t. the labels, with a uniform random start in the eps-ball."""
    x = x.detach()
    with bn_mode(model, mode):
        x_adv = x.clone()
        if random_start:
            x_adv = eps_ball_start(x, eps, generator)
        grads: list[torch.Tensor] = []
        for _ in range(steps):
            x_adv.requires_grad_(True)
            loss = F.cross_entropy(upcast(model(x_adv)), y, reduction="sum")
            (grad,) = torch.autograd.grad(loss, x_adv)
            if record_grads:
                grads.append(grad.detach())
            x_adv = _project(x_adv.detach() + step_size * grad.sign(), x, eps)
    return AttackResult(x_adv.detach(), grads)
