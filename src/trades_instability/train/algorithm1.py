"""The paper's fix (Algorithm 1) as one pure function of an epoch's validation result.

After each epoch, Algorithm 1 compares the validation FOSC with the threshold. Above it, the first
``noise_batches`` batches of the next epoch get N(0, noise_std) noise (line 8, applied by train/step.py), and
the epoch's checkpoint may not be selected, however high its PGD-10 accuracy. Selection is otherwise by the
best validation PGD-10 accuracy (Appendix B). Without the fix, selection is by PGD-10 alone, as in the paper's
Unstable runs.

``fix.mode: always`` (the review's variant) noises the first ``noise_batches`` batches of every epoch, the
first included, whatever FOSC reads; the selection rule is the same, so the two modes differ in the trigger only.
"""

from __future__ import annotations

from typing import NamedTuple

from trades_instability.config.run import FixConfig


class EpochDecision(NamedTuple):
    over: bool  # validation FOSC above the threshold (logged as fosc_over_threshold, fix or not)
    is_best: bool  # this epoch's checkpoint becomes best.pt
    noise_next: int  # batches to noise from the start of the next epoch


def initial_noise_budget(fix: FixConfig) -> int:
    """Batches noised from the start of epoch 1: none for Algorithm 1, ``noise_batches`` when always on."""
    return fix.noise_batches if fix.enabled and fix.mode == "always" else 0


def decide(fix: FixConfig, *, fosc: float, pgd_acc: float, best_pgd_acc: float, noise_left: int) -> EpochDecision:
    """Algorithm 1 after one epoch. ``best_pgd_acc`` is the best selected PGD-10 accuracy so far; ``noise_left``
    the noise budget this epoch did not spend (an epoch shorter than the budget carries the rest over)."""
    over = fosc > fix.fosc_threshold
    eligible = not (fix.enabled and over)
    if not fix.enabled:
        noise_next = noise_left
    elif fix.mode == "always" or over:
        noise_next = fix.noise_batches
    else:
        noise_next = noise_left
    return EpochDecision(over, eligible and pgd_acc > best_pgd_acc, noise_next)
