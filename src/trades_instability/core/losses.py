"""The TRADES loss (eq. 1 of the paper): CE(f(x), y) + beta * KL(p(x) || p(x_adv)), batch mean."""

from __future__ import annotations

from typing import NamedTuple

import torch
import torch.nn.functional as F
from torch import nn


def upcast(logits: torch.Tensor) -> torch.Tensor:
    """Losses are computed in fp32 even under bf16/fp16 autocast; fp32/fp64 inputs are left alone."""
    return logits.float() if logits.dtype in (torch.float16, torch.bfloat16) else logits


class TradesParts(NamedTuple):
    loss: torch.Tensor
    ce: torch.Tensor  # CE(f(x), y), batch mean
    kl: torch.Tensor  # KL(p(x) || p(x_adv)), batch mean, *not* multiplied by beta
    logits_clean: torch.Tensor
    logits_adv: torch.Tensor


def trades_parts(
    model: nn.Module,
    x: torch.Tensor,
    x_adv: torch.Tensor,
    y: torch.Tensor,
    beta: float,
    *,
    joint_forward: bool = False,
    repeat_clean_forward: bool = False,
) -> TradesParts:
    """TRADES loss with its parts. ``joint_forward`` pushes clean and adversarial inputs through
    one forward pass (BatchNorm statistics over both), as ADR's src/advTrainer.py does; the official
    TRADES code (trades.py) uses separate passes: clean for the CE, then adversarial and clean again
    for the KL. The repeated clean pass gives the same logits in train mode, so with
    ``repeat_clean_forward`` it runs without a graph, only to move BatchNorm's running statistics
    exactly as the official loop does."""
    if joint_forward:
        logits_clean, logits_adv = upcast(model(torch.cat([x, x_adv]))).chunk(2)
    else:
        logits_clean = upcast(model(x))
        logits_adv = upcast(model(x_adv))
        if repeat_clean_forward:
            with torch.no_grad():
                model(x)
    ce = F.cross_entropy(logits_clean, y)
    # KL(p(x) || p(x_adv)) from log-probabilities on both sides (log_target): the same value as the
    # official KLDivLoss(log_softmax(adv), softmax(clean)), but its gradient with respect to the clean
    # logits stays finite when a clean probability underflows to exactly 0 (a logit gap above ~104 in
    # fp32), where the official form's d/dp of p*log(p) is 0 * -inf = NaN and poisons every weight.
    kl = F.kl_div(
        F.log_softmax(logits_adv, dim=1), F.log_softmax(logits_clean, dim=1), reduction="batchmean", log_target=True
    )
    return TradesParts(ce + beta * kl, ce, kl, logits_clean, logits_adv)


def trades_loss(
    model: nn.Module,
    x: torch.Tensor,
    x_adv: torch.Tensor,
    y: torch.Tensor,
    beta: float,
    *,
    joint_forward: bool = False,
) -> torch.Tensor:
    """The TRADES loss of eq. 1 for given adversarial examples (batch mean, differentiable)."""
    return trades_parts(model, x, x_adv, y, beta, joint_forward=joint_forward).loss
