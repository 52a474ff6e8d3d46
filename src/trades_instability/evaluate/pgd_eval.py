"""The white-box part of an evaluation: the clean pass and PGD-k with FOSC, SGCS and GradAlign of the same
examples (conventions: :mod:`trades_instability.evaluate.suite`), in fp32 with TF32 off (:func:`fp32_precision`).
A model whose logits are not finite raises :class:`NonFiniteLogits`, which the evaluation turns into
``status: "diverged"``.
"""

from __future__ import annotations

import contextlib

import torch
import torch.nn.functional as F
from torch import nn

from trades_instability.core import attacks, metrics


@contextlib.contextmanager
def fp32_precision():
    """fp32 matmuls and convolutions (TF32 off) for reported numbers; restores the previous flags."""
    old = (torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32, torch.get_float32_matmul_precision())
    torch.backends.cuda.matmul.allow_tf32 = False
    torch.backends.cudnn.allow_tf32 = False
    torch.set_float32_matmul_precision("highest")
    try:
        yield
    finally:
        torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32 = old[0], old[1]
        torch.set_float32_matmul_precision(old[2])


class NonFiniteLogits(RuntimeError):
    """The model produced NaN/inf logits (a diverged checkpoint)."""


def _check_finite(logits: torch.Tensor, where: str) -> None:
    if not torch.isfinite(logits).all():
        raise NonFiniteLogits(f"non-finite logits during {where}")


@torch.no_grad()
def clean_flags(model: nn.Module, x: torch.Tensor, y: torch.Tensor, batch_size: int) -> torch.Tensor:
    out = []
    for s in range(0, x.shape[0], batch_size):
        logits = model(x[s : s + batch_size])
        _check_finite(logits, "the clean forward pass")
        out.append(logits.argmax(1) == y[s : s + batch_size])
    return torch.cat(out).cpu()


def pgd_eval(
    model: nn.Module, x: torch.Tensor, y: torch.Tensor, *, eps: float, step_size: float, steps: int,
    batch_size: int, seed: int,
) -> dict[str, torch.Tensor]:
    """PGD-k (CE, random start) with per-example robust flags, FOSC and SGCS of the same examples, and GradAlign
    at the clean inputs (its noise from a generator of its own, so the PGD starts do not depend on it).

    Returns CPU tensors ``flags`` (bool), ``fosc``, ``sgcs``, ``gradalign`` and ``x_adv`` (the PGD examples)."""
    gen = torch.Generator().manual_seed(seed)  # on the CPU: the same starts on every device (attacks.start_noise)
    gen_align = torch.Generator().manual_seed(seed + metrics.GRADALIGN_STREAM)
    flags, foscs, sgcss, aligns, advs = [], [], [], [], []
    for s in range(0, x.shape[0], batch_size):
        xb, yb = x[s : s + batch_size], y[s : s + batch_size]
        res = attacks.pgd(model, xb, yb, eps=eps, step_size=step_size, steps=steps, random_start=True,
                          mode="eval", record_grads=True, generator=gen)
        x_adv = res.x_adv.detach().requires_grad_(True)
        logits = model(x_adv)
        _check_finite(logits, "PGD")
        # each example's own CE loss (sum over the batch): FOSC gradient and PGD prediction in one pass
        (grad,) = torch.autograd.grad(F.cross_entropy(logits.float(), yb, reduction="sum"), x_adv)
        foscs.append(metrics.fosc_from_grad(xb, x_adv.detach(), grad, eps).detach().cpu())
        sgcss.append(metrics.sgcs(res.step_grads).cpu())
        aligns.append(metrics.gradalign(model, xb, yb, eps, gen_align).detach().cpu())
        flags.append((logits.detach().argmax(1) == yb).cpu())
        advs.append(res.x_adv.cpu())
    return {"flags": torch.cat(flags), "fosc": torch.cat(foscs), "sgcs": torch.cat(sgcss),
            "gradalign": torch.cat(aligns), "x_adv": torch.cat(advs)}


__all__ = ["fp32_precision", "NonFiniteLogits", "clean_flags", "pgd_eval"]
