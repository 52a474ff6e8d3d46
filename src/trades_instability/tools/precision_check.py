"""Does bf16 change the numbers? fp32 against bf16 autocast on one trained model, example by example.

Training and the per-epoch validation attacks may run under bf16 autocast (``precision: bf16``); the
validation FOSC is what triggers the fix. Whether that is safe is an empirical question per model, so
this module measures it with the evaluation's own building blocks (:func:`pgd_eval.pgd_eval` for
PGD-10, FOSC and SGCS; pyautoattack's Square through :mod:`autoattack_eval`) on the same examples and
with the same attack seed, once in fp32 (TF32 off, as reported numbers are) and once with the model's
forward under ``torch.autocast(bfloat16)`` (logits upcast to fp32, so the losses are fp32 as in training).

Each number comes with three yardsticks:

* its standard error (SE) on ``n`` examples (binomial for accuracies, the SEM of the per-example
  values for FOSC and SGCS): the sampling noise that any reported number carries anyway;
* a paired test of bf16 against fp32 on the same examples: the exact McNemar test on the examples
  whose flag changed (accuracies), a paired z-test on the per-example differences (FOSC, SGCS). It
  tells a systematic shift from precision noise that cancels out;
* the same fp32 evaluation with another attack seed: how much the number moves when nothing but
  the random start changes.

bf16 gives the same number unless the difference is systematic (paired p < 0.05) AND at least half
a standard error: a bias of SE/2 already adds a quarter to the number's mean squared error. The
verdict is printed, never used to switch anything on: fp32 stays the default for reported numbers.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from trades_instability.evaluate import autoattack as autoattack_eval
from trades_instability.evaluate.aa_batching import aa_call, aa_start_batch
from trades_instability.evaluate.pgd_eval import clean_flags, fp32_precision, pgd_eval
from trades_instability.evaluate.suite_config import SuiteConfig


class BF16Autocast(nn.Module):
    """``model`` with its forward under bf16 autocast; logits are returned in fp32."""

    def __init__(self, model: nn.Module):
        super().__init__()
        self.model = model

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        with torch.autocast(x.device.type, dtype=torch.bfloat16):
            out = self.model(x)
        return out.float()


SIGNIFICANCE = 0.05
MATERIAL_SE_FRACTION = 0.5


@dataclass
class Agreement:
    metric: str
    fp32: float
    bf16: float
    fp32_other_seed: float
    se: float
    changed: int | None  # examples whose robust/correct flag differs between fp32 and bf16 (accuracies)
    p_value: float  # paired test of bf16 against fp32 (see module docstring)

    @property
    def diff(self) -> float:
        return self.bf16 - self.fp32

    @property
    def seed_diff(self) -> float:
        return self.fp32_other_seed - self.fp32

    @property
    def same(self) -> bool:
        return not (self.p_value < SIGNIFICANCE and abs(self.diff) >= MATERIAL_SE_FRACTION * self.se)

    def to_dict(self) -> dict[str, Any]:
        return {"metric": self.metric, "fp32": self.fp32, "bf16": self.bf16, "bf16_minus_fp32": self.diff,
                "fp32_other_seed": self.fp32_other_seed, "seed_diff": self.seed_diff, "standard_error": self.se,
                "changed_examples": self.changed, "paired_p_value": self.p_value, "same": self.same}


def per_example(model: nn.Module, x: torch.Tensor, y: torch.Tensor, suite: SuiteConfig, *,
                device: torch.device, num_classes: int) -> dict[str, torch.Tensor]:
    """Per-example clean and PGD-k flags, FOSC, SGCS and Square flags (CPU tensors), as the evaluation
    computes them; ``suite.seed`` seeds PGD's start and Square. x is float in [0, 1] on ``device``."""
    with fp32_precision():
        clean = clean_flags(model, x, y, suite.batch_size)
        p = pgd_eval(model, x, y, eps=suite.eps, step_size=suite.pgd_step_size, steps=suite.pgd_steps,
                     batch_size=suite.batch_size, seed=suite.seed)
        used = {"aa_batch_size": aa_start_batch(suite, x.shape[0], device)}
        flags, _ = aa_call(autoattack_eval.run_individual, device, used, model=model, x=x, y=y,
                           attacks=["square"], settings=suite.aa_settings(), device=device,
                           num_classes=num_classes)
    return {"clean_acc": clean, "pgd10_acc": p["flags"], "fosc": p["fosc"], "sgcs": p["sgcs"],
            "square_acc": flags["square"]}


def _se(values: torch.Tensor) -> float:
    v = values.double()
    n = v.numel()
    if values.dtype == torch.bool:  # binomial
        p = float(v.mean())
        return math.sqrt(p * (1 - p) / n)
    return float(v.std(unbiased=True)) / math.sqrt(n) if n > 1 else float("nan")


def mcnemar_p(a: torch.Tensor, b: torch.Tensor) -> float:
    """Exact two-sided McNemar test of paired boolean flags: under "no systematic change" each of the
    k discordant examples changes either way with probability 1/2 (binomial tail, doubled)."""
    up, down = int((~a & b).sum()), int((a & ~b).sum())
    k = up + down
    if k == 0:
        return 1.0
    tail = sum(math.comb(k, i) for i in range(min(up, down) + 1)) / 2**k
    return min(1.0, 2 * tail)


def paired_z_p(a: torch.Tensor, b: torch.Tensor) -> float:
    """Two-sided p of a paired z-test on per-example differences b - a (normal approximation; n is
    hundreds to thousands here). Stdlib only: scipy would be a dependency for two lines."""
    d = (b.double() - a.double()).flatten()
    mean = float(d.mean())
    sd = float(d.std(unbiased=True)) if d.numel() > 1 else 0.0
    if sd == 0.0:
        return 1.0 if mean == 0.0 else 0.0
    z = mean / (sd / math.sqrt(d.numel()))
    return math.erfc(abs(z) / math.sqrt(2))


def compare(model: nn.Module, x: torch.Tensor, y: torch.Tensor, suite: SuiteConfig, *,
            device: torch.device, num_classes: int, other_seed: int | None = None) -> list[Agreement]:
    """fp32 vs bf16 autocast (same seed) and fp32 with ``other_seed`` (default ``suite.seed + 1``)."""
    import dataclasses

    model = model.to(device).eval()
    x = x.to(device).float()
    y = y.to(device).long()
    kw = dict(device=device, num_classes=num_classes)
    fp32 = per_example(model, x, y, suite, **kw)
    bf16 = per_example(BF16Autocast(model).eval(), x, y, suite, **kw)
    seed2 = suite.seed + 1 if other_seed is None else other_seed
    fp32_b = per_example(model, x, y, dataclasses.replace(suite, seed=seed2), **kw)
    rows = []
    for key in ("clean_acc", "pgd10_acc", "square_acc", "fosc", "sgcs"):
        a, b, c = fp32[key], bf16[key], fp32_b[key]
        is_flag = a.dtype == torch.bool
        rows.append(Agreement(
            metric=key, fp32=float(a.double().mean()), bf16=float(b.double().mean()),
            fp32_other_seed=float(c.double().mean()), se=_se(a),
            changed=int((a != b).sum()) if is_flag else None,
            p_value=mcnemar_p(a, b) if is_flag else paired_z_p(a, b),
        ))
    return rows


HEADERS = ["metric", "fp32", "bf16", "bf16 - fp32", "fp32 seed+1 - fp32", "SE (fp32)", "changed ex.", "paired p",
           "same"]


def table_rows(rows: list[Agreement]) -> list[list[str]]:
    return [[r.metric, f"{r.fp32:.4f}", f"{r.bf16:.4f}", f"{r.diff:+.4f}", f"{r.seed_diff:+.4f}", f"{r.se:.4f}",
             "-" if r.changed is None else str(r.changed), f"{r.p_value:.3g}", "yes" if r.same else "NO"]
            for r in rows]
