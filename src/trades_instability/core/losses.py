"""The outer losses of adversarial training, each with its parts (batch means):

* :func:`trades_parts` - TRADES (Zhang et al. 2019; eq. 1 of the paper): CE(f(x), y) + beta * KL(p(x) || p(x_adv)).
* :func:`pgd_at_parts` - PGD-AT (Madry et al. 2018, eq. 2.1): CE(f(x_adv), y), no clean term and no pairing.
* :func:`alp_parts` - adversarial logit pairing (Kannan et al. 2018, Sec. 3): the mixed-minibatch CE
  0.5 CE(f(x), y) + 0.5 CE(f(x_adv), y) plus lambda * mean over examples and classes of (f(x) - f(x_adv))^2,
  as tensorflow/models research/adversarial_logit_pairing/train.py computes it (softmax CE over the concatenated
  clean + adversarial batch; tf.losses.mean_squared_error on the two logit halves, weight train_lp_weight).

Every loss returns :class:`TradesParts`: ``ce`` is the method's cross-entropy term, ``kl`` its pairing term (the
TRADES KL, the ALP logit MSE, zero for PGD-AT) and ``weight`` the factor on it (beta, lambda), so
``loss = ce + weight * kl`` for all three and the batch metrics (CE_norm, KL_norm) mean the same split.
"""

from __future__ import annotations

from typing import NamedTuple

import torch
import torch.nn.functional as F
from torch import nn


def upcast(logits: torch.Tensor) -> torch.Tensor:
    """Losses are computed in fp32 even under bf16/fp16 autocast; fp32/fp64 inputs are left alone."""
    return logits.float() if logits.dtype in (torch.float16, torch.bfloat16) else logits


class TradesParts(NamedTuple):
    loss: torch.Tensor  # ce + weight * kl
    ce: torch.Tensor  # the cross-entropy term (TRADES: CE(f(x), y)), batch mean
    kl: torch.Tensor  # the pairing term (TRADES: KL(p(x) || p(x_adv))), batch mean, *not* multiplied by weight
    logits_clean: torch.Tensor
    logits_adv: torch.Tensor
    weight: float = 1.0  # the factor on the pairing term (TRADES: beta; ALP: lambda)


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
    return TradesParts(ce + beta * kl, ce, kl, logits_clean, logits_adv, beta)


def _clean_logits_for_logging(model: nn.Module, x: torch.Tensor) -> torch.Tensor:
    """Clean logits of a loss that has no clean term (PGD-AT): no graph and eval mode, so this forward
    neither trains the model nor moves BatchNorm's running statistics; they only feed train clean accuracy."""
    was_training = model.training
    model.eval()
    try:
        with torch.no_grad():
            return upcast(model(x))
    finally:
        model.train(was_training)


def pgd_at_parts(model: nn.Module, x: torch.Tensor, x_adv: torch.Tensor, y: torch.Tensor) -> TradesParts:
    """PGD-AT's loss (Madry et al. 2018, eq. 2.1): CE on the adversarial examples only. The single training
    forward is the adversarial one (BatchNorm statistics of adversarial inputs, as in Madry's and Rice et al.'s
    code); ``kl`` is a zero constant (no pairing term)."""
    logits_adv = upcast(model(x_adv))
    ce = F.cross_entropy(logits_adv, y)
    zero = torch.zeros((), dtype=ce.dtype, device=ce.device)
    return TradesParts(ce, ce, zero, _clean_logits_for_logging(model, x), logits_adv, 0.0)


def alp_parts(
    model: nn.Module, x: torch.Tensor, x_adv: torch.Tensor, y: torch.Tensor, lam: float, *, joint_forward: bool = True
) -> TradesParts:
    """Adversarial logit pairing (Kannan et al. 2018): 0.5 CE(f(x), y) + 0.5 CE(f(x_adv), y)
    + lam * mean((f(x) - f(x_adv))^2), the mean over examples and classes (the official code's
    tf.losses.mean_squared_error). The official code forwards clean and adversarial inputs as one batch
    (``joint_forward``)."""
    if joint_forward:
        logits_clean, logits_adv = upcast(model(torch.cat([x, x_adv]))).chunk(2)
    else:
        logits_clean, logits_adv = upcast(model(x)), upcast(model(x_adv))
    ce = 0.5 * (F.cross_entropy(logits_clean, y) + F.cross_entropy(logits_adv, y))
    pair = F.mse_loss(logits_clean, logits_adv)
    return TradesParts(ce + lam * pair, ce, pair, logits_clean, logits_adv, lam)


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
