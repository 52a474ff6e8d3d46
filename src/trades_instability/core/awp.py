"""Adversarial weight perturbation (Wu et al. 2020) for TRADES, in the two forms of the two code lineages.

Both perturb the weights before the training loss is computed and take the optimiser step with the
gradient at the perturbed weights; they differ in how the perturbation is found and removed:

* :class:`OfficialAWP` (csdongxian/AWP, ``utils_awp.py`` with the TRADES loss): a proxy copy takes one
  SGD ascent step on the TRADES loss; every conv/linear weight w moves by gamma * ||w|| * d / ||d||,
  d the proxy's weight change. The optimiser steps at w + v, then v is subtracted again.
* :class:`ADRAWP` (yuyuwu5/ADR, ``src/util/awp.py`` + the TRADES branch of ``src/advTrainer.py``): a
  SAM-like two-step form. Step 1: the TRADES loss at w (a normal train-mode forward: BatchNorm running
  statistics move), every parameter moves by gamma * ||p|| * g / ||g||, g its loss gradient. Step 2: the
  loss at w + v with BatchNorm running statistics frozen (ADR's ``disable_running_stats``); the weights go
  back to w and the optimiser steps with the step-2 gradient.

The trainer calls ``perturb``, computes the loss inside ``loss_context()``, then ``restore`` either before
(``restore_before_step``) or after the optimiser step.
"""

from __future__ import annotations

import contextlib
import copy
from collections.abc import Callable

import torch
from torch import nn

from trades_instability.core.losses import TradesParts

LossFn = Callable[[nn.Module], TradesParts]  # the TRADES loss of the current batch for a given model


@contextlib.contextmanager
def running_stats_frozen(model: nn.Module):
    """Train-mode BatchNorm inside the block normalises with batch statistics but leaves its running
    statistics (and batch counter) untouched, the effect of ADR's ``disable_running_stats``."""
    bns = [m for m in model.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm) and m.track_running_stats]
    for m in bns:
        m.track_running_stats = False
    try:
        yield
    finally:
        for m in bns:
            m.track_running_stats = True


class OfficialAWP:
    restore_before_step = False

    def __init__(self, model: nn.Module, gamma: float, proxy_lr: float):
        self.model = model
        self.gamma = gamma
        self.proxy = copy.deepcopy(model)
        self.proxy_opt = torch.optim.SGD(self.proxy.parameters(), lr=proxy_lr)
        self.diff: dict[str, torch.Tensor] = {}

    @staticmethod
    def _weights(module: nn.Module) -> dict[str, torch.Tensor]:
        return {n: p for n, p in module.named_parameters() if p.dim() > 1}

    def perturb(self, loss_fn: LossFn) -> None:
        self.proxy.load_state_dict(self.model.state_dict())
        self.proxy.train()
        self.proxy_opt.zero_grad(set_to_none=True)
        (-loss_fn(self.proxy).loss).backward()
        self.proxy_opt.step()
        w_proxy = self._weights(self.proxy)
        with torch.no_grad():
            self.diff = {}
            for n, w in self._weights(self.model).items():
                d = w_proxy[n] - w
                self.diff[n] = self.gamma * w.norm() / (d.norm() + 1e-20) * d
                w.add_(self.diff[n])

    def loss_context(self) -> contextlib.AbstractContextManager:
        return contextlib.nullcontext()

    @torch.no_grad()
    def restore(self) -> None:
        for n, w in self._weights(self.model).items():
            w.sub_(self.diff[n])
        self.diff = {}

    def state_dict(self) -> dict:
        return self.proxy_opt.state_dict()

    def load_state_dict(self, state: dict) -> None:
        self.proxy_opt.load_state_dict(state)


class ADRAWP:
    restore_before_step = True

    def __init__(self, model: nn.Module, gamma: float, forward_model: nn.Module | None = None):
        self.model = model
        # e.g. the torch.compile'd model; `is None`, not `or`: a compiled module refuses len()/bool()
        self.forward_model = model if forward_model is None else forward_model
        self.gamma = gamma
        self.old: list[torch.Tensor] = []

    def perturb(self, loss_fn: LossFn) -> None:
        params = [p for p in self.model.parameters() if p.requires_grad]
        self.model.train()
        grads = torch.autograd.grad(loss_fn(self.forward_model).loss, params)
        with torch.no_grad():
            self.old = [p.detach().clone() for p in params]
            for p, g in zip(params, grads, strict=True):
                p.add_(g * (self.gamma * p.norm() / (g.norm() + 1e-20)))

    def loss_context(self) -> contextlib.AbstractContextManager:
        return running_stats_frozen(self.model)

    @torch.no_grad()
    def restore(self) -> None:
        for p, old in zip((p for p in self.model.parameters() if p.requires_grad), self.old, strict=True):
            p.copy_(old)
        self.old = []

    def state_dict(self) -> dict:
        return {}

    def load_state_dict(self, state: dict) -> None:
        pass


def build_awp(form: str, model: nn.Module, gamma: float, proxy_lr: float,
              forward_model: nn.Module | None = None) -> OfficialAWP | ADRAWP:
    if form == "adr":
        return ADRAWP(model, gamma, forward_model)
    if form == "official":
        return OfficialAWP(model, gamma, proxy_lr)
    raise ValueError(f"awp form must be 'adr' or 'official', got {form!r}")
