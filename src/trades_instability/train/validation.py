"""The per-epoch validation pass: clean and PGD-10 accuracy, FOSC and SGCS from the same PGD-10 examples, and
GradAlign (core/metrics.py) at the clean inputs, its noise from a generator of its own so that the PGD-10 starts
are those of a validation without it."""

from __future__ import annotations

import contextlib
from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch import nn

from trades_instability.config.run import RunConfig
from trades_instability.core.attacks import pgd
from trades_instability.core.losses import upcast
from trades_instability.core.metrics import fosc_from_grad, gradalign, sgcs
from trades_instability.data.datasets import ImageSet, iterate_batches
from trades_instability.train.errors import Interrupted


def validate(
    model: nn.Module,
    data: ImageSet,
    cfg: RunConfig,
    device: torch.device,
    generator: torch.Generator | None,
    autocast: Callable[[], contextlib.AbstractContextManager],
    should_stop: Callable[[], bool] = lambda: False,
    channels_last: bool = False,
    gradalign_generator: torch.Generator | None = None,
) -> dict[str, float]:
    model.eval()
    a = cfg.attack
    n = 0
    # sums on the device (no host sync per batch); float64 as the host-side sums they replace
    counts = torch.zeros(2, dtype=torch.int64, device=device)  # clean, robust
    sums = torch.zeros(3, dtype=torch.float64, device=device)  # fosc, sgcs, gradalign
    for x, y in iterate_batches(data, cfg.val_batch_size, shuffle=False, generator=None, device=device):
        if should_stop():
            raise Interrupted()
        if channels_last:
            x = x.contiguous(memory_format=torch.channels_last)
        with autocast():
            with torch.no_grad():
                clean_correct = (model(x).argmax(1) == y).sum()
            res = pgd(model, x, y, eps=a.eps, step_size=a.step_size, steps=a.steps,
                      random_start=cfg.val_random_start, mode="eval", record_grads=True, generator=generator)
            # one more gradient at x^k: gives FOSC and the PGD-10 prediction in the same pass
            x_k = res.x_adv.requires_grad_(True)
            logits = model(x_k)
            loss = F.cross_entropy(upcast(logits), y, reduction="sum")
            (g_k,) = torch.autograd.grad(loss, x_k)
            align = gradalign(model, x, y, a.eps, gradalign_generator)
        counts += torch.stack([clean_correct, (logits.detach().argmax(1) == y).sum()])
        sums[0] += fosc_from_grad(x, x_k.detach(), g_k, a.eps).double().sum()
        if a.steps >= 2:
            sums[1] += sgcs(res.step_grads).double().sum()
        sums[2] += align.double().sum()
        n += len(y)
    clean, robust = (int(v) for v in counts.cpu())
    fosc_sum = float(sums[0])
    sgcs_sum = float(sums[1]) if a.steps >= 2 else float("nan")
    return {"clean_acc": clean / n, "pgd_acc": robust / n, "fosc": fosc_sum / n, "sgcs": sgcs_sum / n,
            "gradalign": float(sums[2]) / n}
