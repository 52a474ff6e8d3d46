"""The training methods, one row each: the inner maximisation that makes a batch's adversarial examples and
the outer loss trained on them. The run config's ``method`` key names a row (config/run.py's METHODS repeats
the names so that validating a config does not import torch; this module checks that both agree).

=========  =======================================  ====================================================
method     inner maximisation                       outer loss (core/losses.py)
=========  =======================================  ====================================================
trades     TPGD: KL to the clean prediction, start   TRADES (Zhang et al. 2019; eq. 1 of the paper)
           x + attack.init_std * noise
modified   PGD on the CE w.r.t. the labels,          TRADES (the paper's Table 6, "Modified")
           uniform start in the eps-ball
pgd_at     PGD as ``modified``                       CE on the adversarial examples (Madry et al. 2018)
alp        PGD as ``modified``                       ALP: mixed CE + lambda * logit MSE (Kannan et al. 2018)
=========  =======================================  ====================================================

PGD-AT and ALP are the review's controls without TRADES' KL pairing (README "Beyond the paper"). Madry et al.
and Kannan et al. both train on PGD from a random start in the eps-ball; here it has the run's eps, step and
steps, so the controls differ from ``modified`` in the outer loss alone. (Kannan et al.'s ImageNet runs used a
targeted least-likely-class PGD; their MNIST and SVHN runs, the closest to CIFAR, Madry's untargeted PGD.)
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch import nn

from trades_instability.config.run import METHODS as CONFIG_METHODS
from trades_instability.config.run import RunConfig
from trades_instability.core.losses import TradesParts, alp_parts, pgd_at_parts, trades_parts

Outer = Callable[[RunConfig, nn.Module, torch.Tensor, torch.Tensor, torch.Tensor], TradesParts]


def _trades(cfg: RunConfig, model: nn.Module, x: torch.Tensor, x_adv: torch.Tensor, y: torch.Tensor) -> TradesParts:
    return trades_parts(model, x, x_adv, y, cfg.beta, joint_forward=cfg.joint_forward,
                        repeat_clean_forward=cfg.repeat_clean_forward)


def _pgd_at(cfg: RunConfig, model: nn.Module, x: torch.Tensor, x_adv: torch.Tensor, y: torch.Tensor) -> TradesParts:
    return pgd_at_parts(model, x, x_adv, y)


def _alp(cfg: RunConfig, model: nn.Module, x: torch.Tensor, x_adv: torch.Tensor, y: torch.Tensor) -> TradesParts:
    return alp_parts(model, x, x_adv, y, cfg.alp_lambda, joint_forward=cfg.joint_forward)


@dataclass(frozen=True)
class Method:
    attack: str  # "tpgd" | "pgd": core/attacks.py's tpgd or pgd
    outer: Outer
    source: str


METHODS: dict[str, Method] = {
    "trades": Method("tpgd", _trades, "Zhang et al. 2019, TRADES; eq. 1 of the paper"),
    "modified": Method("pgd", _trades, "the paper, Sec. 5.1 and Table 6"),
    "pgd_at": Method("pgd", _pgd_at, "Madry et al. 2018, eq. 2.1"),
    "alp": Method("pgd", _alp, "Kannan et al. 2018, Sec. 3; tensorflow/models research/adversarial_logit_pairing"),
}
assert tuple(METHODS) == CONFIG_METHODS, "config.run.METHODS must list the names of methods.METHODS"


def method(name: str) -> Method:
    if name not in METHODS:
        raise ValueError(f"unknown method {name!r}; known: {', '.join(METHODS)}")
    return METHODS[name]
