"""The training optimiser: SGD with the run's Nesterov flag, and the learning rate of each epoch."""

from __future__ import annotations

import torch
from torch import nn

from trades_instability.config.run import RunConfig


def optimizer_nesterov(cfg: RunConfig) -> bool:
    """The training optimiser's Nesterov flag: ``awp.nesterov`` in AWP runs when set (ADR: plain SGD),
    else ``nesterov``."""
    if cfg.awp.enabled and cfg.awp.nesterov is not None:
        return cfg.awp.nesterov
    return cfg.nesterov


def build_optimizer(cfg: RunConfig, model: nn.Module) -> torch.optim.SGD:
    return torch.optim.SGD(model.parameters(), lr=cfg.lr, momentum=cfg.momentum,
                           nesterov=optimizer_nesterov(cfg), weight_decay=cfg.weight_decay)


def lr_at(cfg: RunConfig, epoch: int) -> float:
    """Learning rate of (1-based) ``epoch``: decayed by lr_gamma once per milestone reached, milestones
    counted as ``cfg.lr_milestone_base`` says (config.CONVENTIONS). Base 1 (official TRADES,
    ``if epoch >= m`` with 1-based epochs): the LR drops at epoch m. Base 0 (ADR): timm's
    MultiStepLRScheduler (0.6.12) stepped after every iteration t with decay_t = m * S gives iteration
    t + 1 the factor of #{d <= t + 1}, so iteration m * S, the first of 0-based epoch m, is the first
    decayed one: the LR drops at 1-based epoch m + 1, constant within each epoch."""
    completed_or_current = epoch - 1 + cfg.lr_milestone_base
    return cfg.lr * cfg.lr_gamma ** sum(completed_or_current >= m for m in cfg.lr_milestones)
