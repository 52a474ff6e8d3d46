"""One TRADES training step on one batch, the epoch statistics it accumulates, and the optimiser it steps
(SGD with the run's Nesterov flag, the learning rate of each epoch).

Read top to bottom, :meth:`TradesStep.__call__` is the whole step:

1. Algorithm 1, line 8: Gaussian noise on the batch while the fix's noise budget lasts;
2. the inner maximisation of the run's method (core/methods.py): TPGD on the KL to the clean prediction
   (``trades``) or PGD on the cross-entropy (``modified``, ``pgd_at``, ``alp``), starts from the device generator;
3. AWP (when on this epoch): perturb the weights with the batch's loss;
4. the method's outer loss (TRADES, PGD-AT or ALP; core/losses.py), with the forwards of the run's convention,
   inside AWP's context;
5. backward: plainly, or (``log_batch_metrics``) as separate CE and pairing-term (TRADES: KL) gradients, whose
   norms are logged;
6. the optimiser step, with AWP's perturbation removed before (ADR) or after (official) it;
7. with ``log_batch_metrics``, Appendix G's cosine between the full-loss gradients before and after it.

Hot-loop policy (README "Performance"): epoch statistics stay in device tensors (no per-step
.item()/float(), so the host never waits for the accelerator); a non-finite loss or gradient is detected
every ``FINITE_CHECK_EVERY`` steps and at the end of the epoch (one host sync each), and the first
offending step is located from the per-step values. Nothing of an epoch is saved before that check, so
the run still stops with the epoch and step named and the previous epoch kept.
"""

from __future__ import annotations

import contextlib
import math
from collections.abc import Callable
from typing import Any, Protocol

import torch
from torch import nn

from trades_instability.config.run import RunConfig
from trades_instability.core.attacks import pgd, tpgd
from trades_instability.core.losses import TradesParts
from trades_instability.core.methods import method
from trades_instability.core.metrics import grad_cosine, grad_norm
from trades_instability.train.errors import Diverged

Autocast = Callable[[], contextlib.AbstractContextManager]


def precision_autocast(precision: str, device: torch.device) -> Autocast:
    """The autocast context of a run's ``precision``: bf16 autocast on ``device``, or none (fp32)."""
    if precision == "bf16":
        return lambda: torch.autocast(device.type, dtype=torch.bfloat16)
    return contextlib.nullcontext


# ------------------------------------------------------------ the optimiser: SGD, and the LR of each epoch
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


class StepCounters(Protocol):
    """What the step reads and advances of the run's state (:class:`~.checkpointing.TrainState`)."""

    step: int  # completed optimiser steps
    noise_left: int  # batches still to be noised (Algorithm 1)


class TradesStep:
    """One optimiser step of the run's method (TRADES, "Modified" TRADES, PGD-AT or ALP; with AWP or not)."""

    FINITE_CHECK_EVERY = 25  # steps between two host-side finiteness checks (without log_batch_metrics)

    def __init__(
        self,
        cfg: RunConfig,
        model: nn.Module,
        optimizer: torch.optim.Optimizer,
        generator: torch.Generator,
        *,
        forward_model: nn.Module | None = None,
        awp: Any = None,
        autocast: Autocast = contextlib.nullcontext,
    ):
        self.cfg = cfg
        self.model = model  # the parameters (and BatchNorm buffers)
        self.forward_model = model if forward_model is None else forward_model  # what runs them (compiled?)
        self.optimizer = optimizer
        self.generator = generator  # on the device: the fix's noise and the attack's random starts
        self.awp = awp  # core/awp.py: OfficialAWP | ADRAWP | None
        self.autocast = autocast
        self.params = list(model.parameters())
        self.method = method(cfg.method)  # core/methods.py: the inner maximisation and the outer loss

    def start_epoch(self, epoch: int) -> EpochStats:
        """Set the epoch's learning rate and return fresh (device-side) epoch statistics."""
        for group in self.optimizer.param_groups:
            group["lr"] = lr_at(self.cfg, epoch)
        awp_on = self.awp is not None and epoch > self.cfg.awp.warmup
        return EpochStats(epoch, self.params[0].device, awp_on)

    def __call__(self, x: torch.Tensor, y: torch.Tensor, *, batch: int, state: StepCounters,
                 stats: EpochStats) -> dict[str, Any] | None:
        """One step on batch number ``batch`` of the epoch; advances ``state`` and ``stats``. Returns the
        batch's row of batches.csv with ``log_batch_metrics``, else None."""
        cfg = self.cfg
        noised = cfg.fix.enabled and state.noise_left > 0
        if noised:  # Algorithm 1, line 8: img <- img + N(0, noise_std)
            x = self.add_noise(x)
            state.noise_left -= 1
            stats.noised_batches += 1
        with self.autocast():
            x_adv = self.inner_max(x, y)
        loss_fn = self.loss_fn(x, x_adv, y)
        awp = self.awp if stats.awp_on else None
        if awp is not None:
            with self.autocast():
                awp.perturb(loss_fn)
        self.model.train()
        with self.autocast(), (awp.loss_context() if awp is not None else contextlib.nullcontext()):
            parts = loss_fn(self.forward_model)
        step = state.step + 1
        if cfg.log_batch_metrics:
            row = self.backward_with_metrics(parts, stats.epoch, batch, step, noised)
            grads = [p.grad.detach().clone() for p in self.params]
        else:
            row = None
            self.optimizer.zero_grad(set_to_none=True)
            parts.loss.backward()
            grads = [p.grad for p in self.params]
        w_norm = grad_norm_tensor(grads)
        if row is not None:
            row["w_grad_norm"] = float(w_norm)
            if not math.isfinite(row["w_grad_norm"]):
                raise Diverged(stats.epoch, step, batch, "gradient")
        self.optimizer_step(awp)
        if row is not None:
            row["grad_cosine_similarity"] = self.grad_cosine_after(loss_fn, grads)
        state.step = step
        stats.add(batch, step, len(y), parts, y, w_norm, row)
        if row is None and stats.pending >= self.FINITE_CHECK_EVERY:
            stats.check_finite()
        return row

    # -- the parts, in the order the step runs them ----------------------------------------------
    def add_noise(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.cfg.fix.noise_std * torch.randn(x.shape, generator=self.generator, device=x.device)

    def inner_max(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        """The adversarial examples of the batch, by the method's attack: TPGD (the clean prediction computed
        once) or PGD from a uniform start in the eps-ball."""
        a = self.cfg.attack
        if self.method.attack == "tpgd":
            return tpgd(self.forward_model, x, eps=a.eps, step_size=a.step_size, steps=a.steps,
                        init_std=a.init_std, init_dist=a.init_dist, mode=a.bn_mode, generator=self.generator).x_adv
        return pgd(self.forward_model, x, y, eps=a.eps, step_size=a.step_size, steps=a.steps,
                   random_start=True, mode=a.bn_mode, generator=self.generator).x_adv

    def loss_fn(self, x: torch.Tensor, x_adv: torch.Tensor, y: torch.Tensor) -> Callable[[nn.Module], TradesParts]:
        """The method's outer loss of this batch for a given model, forwards as the convention makes them."""
        cfg, outer = self.cfg, self.method.outer
        return lambda model: outer(cfg, model, x, x_adv, y)

    def backward_with_metrics(self, parts: TradesParts, epoch: int, batch: int, step: int,
                              noised: bool) -> dict[str, Any]:
        """The gradient as the sum of the CE and the weighted pairing-term (TRADES: beta * KL) gradients, left in
        ``.grad``; the batch's row with the loss terms and both gradient norms. Checks the loss at once (the row
        needs host values anyway). PGD-AT has no pairing term: its gradient is zero."""
        if not torch.isfinite(parts.loss):
            raise Diverged(epoch, step, batch, "loss")
        row: dict[str, Any] = {"epoch": epoch, "batch": batch, "step": step,
                               "loss": parts.loss.item(), "ce": parts.ce.item(), "kl": parts.kl.item(),
                               "noised": noised}
        pair = parts.weight * parts.kl
        g_ce = torch.autograd.grad(parts.ce, self.params, retain_graph=pair.requires_grad)
        g_kl = (torch.autograd.grad(pair, self.params) if pair.requires_grad
                else tuple(torch.zeros_like(p) for p in self.params))
        for p, a, c in zip(self.params, g_ce, g_kl, strict=True):
            p.grad = a + c
        row.update(ce_norm=grad_norm(g_ce), kl_norm=grad_norm(g_kl))
        return row

    def optimizer_step(self, awp: Any) -> None:
        if awp is not None and awp.restore_before_step:  # ADR: step from w with the gradient taken at w + v
            awp.restore()
        self.optimizer.step()
        if awp is not None and not awp.restore_before_step:  # official: step at w + v, then remove v
            awp.restore()

    def grad_cosine_after(self, loss_fn: Callable[[nn.Module], TradesParts], grads_before: list[torch.Tensor]) -> float:
        """Appendix G: cosine between the full-loss gradients on the same batch (same adversarial
        examples) before and after the optimiser step. BatchNorm running statistics are restored so
        the measurement does not change training."""
        bn_buffers = {k: v.clone() for k, v in self.model.named_buffers()}
        with self.autocast():
            parts = loss_fn(self.forward_model)
        g_after = torch.autograd.grad(parts.loss, self.params)
        with torch.no_grad():
            for k, v in self.model.named_buffers():
                v.copy_(bn_buffers[k])
        return grad_cosine(grads_before, g_after)


def grad_norm_tensor(grads: list[torch.Tensor | None]) -> torch.Tensor:
    """:func:`metrics.grad_norm` (same float64 arithmetic, same bits) left on the device as a 0-d tensor."""
    sq = sum((g.double() ** 2).sum() for g in grads if g is not None)
    return torch.as_tensor(sq).sqrt()


class EpochStats:
    """Training statistics of one epoch, accumulated on the device: one host sync per finiteness
    check and one at the end of the epoch, instead of several per step. The arithmetic is that of
    host-side accumulation of ``loss.item() * batch`` in float64, so the logged numbers are unchanged."""

    def __init__(self, epoch: int, device: torch.device, awp_on: bool):
        self.epoch, self.awp_on = epoch, awp_on
        f64 = dict(dtype=torch.float64, device=device)
        self.loss = torch.zeros((), **f64)
        self.ce = torch.zeros((), **f64)
        self.kl = torch.zeros((), **f64)
        self.w = torch.zeros((), **f64)
        self.correct = torch.zeros(2, dtype=torch.int64, device=device)  # clean, adversarial
        self.n = self.nb = self.noised_batches = 0
        self.cen = self.kln = self.cos = 0.0  # host floats (only with log_batch_metrics)
        self._pending: list[tuple[int, int, torch.Tensor, torch.Tensor]] = []  # (batch, step, loss, w_norm)

    @property
    def pending(self) -> int:
        return len(self._pending)

    def add(self, b: int, step: int, bs: int, parts: TradesParts, y: torch.Tensor, w_norm: torch.Tensor,
            row: dict[str, Any] | None = None) -> None:
        loss = parts.loss.detach()
        self.loss += loss.double() * bs
        self.ce += parts.ce.detach().double() * bs
        self.kl += parts.kl.detach().double() * bs
        self.w += w_norm
        self.correct += torch.stack([(parts.logits_clean.detach().argmax(1) == y).sum(),
                                     (parts.logits_adv.detach().argmax(1) == y).sum()])
        self.n += bs
        self.nb += 1
        self._pending.append((b, step, loss, w_norm))
        if row is not None:  # log_batch_metrics: the step's host-side values
            self.cen += row["ce_norm"]
            self.kln += row["kl_norm"]
            self.cos += row["grad_cosine_similarity"]

    def check_finite(self) -> None:
        """Raise :class:`Diverged` naming the first step since the last check whose loss (or, with a
        finite loss, gradient norm) is not finite."""
        if not self._pending:
            return
        pend, self._pending = self._pending, []
        values = torch.stack([torch.stack([lo.float(), w.float()]) for _, _, lo, w in pend])  # (k, 2)
        bad = (~torch.isfinite(values)).cpu()  # the one host sync
        if bool(bad.any()):
            i = int(bad.any(1).nonzero()[0])
            b, step = pend[i][0], pend[i][1]
            raise Diverged(self.epoch, step, b, "loss" if bool(bad[i, 0]) else "gradient")

    def row(self, lr: float, batch_metrics: bool) -> dict[str, Any]:
        n, nb, nan = self.n, self.nb, float("nan")
        clean_ok, adv_ok = (int(v) for v in self.correct.cpu())
        return {
            "epoch": self.epoch, "lr": lr,
            "train_loss": float(self.loss) / n, "train_ce": float(self.ce) / n, "train_kl": float(self.kl) / n,
            "train_clean_acc": clean_ok / n, "train_adv_acc": adv_ok / n,
            "w_grad_norm": float(self.w) / nb,
            "ce_norm": self.cen / nb if batch_metrics else nan,
            "kl_norm": self.kln / nb if batch_metrics else nan,
            "grad_cosine_similarity": self.cos / nb if batch_metrics else nan,
            "noise_batches": self.noised_batches,
        }
