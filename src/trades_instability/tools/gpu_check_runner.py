"""Runs gpu-check's steps (:mod:`trades_instability.tools.gpu_check`) within the time budget, one printed line
each, and keeps their results; :func:`passed` is the verdict on them."""

from __future__ import annotations

import sys
import time
import traceback
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from trades_instability.tools import device_checks


@dataclass
class StepResult:
    step: str  # a..e
    name: str
    title: str
    status: str  # passed | failed | skipped | n/a
    correctness: bool
    seconds: float = 0.0
    line: str = ""
    data: dict[str, Any] = field(default_factory=dict)


class Runner:
    """Runs steps in order within the time budget, prints each one's line as it finishes, keeps the results."""

    def __init__(self, out: Path, max_s: float | None, print_fn: Callable[[str], None] = print):
        self.out, self.max_s, self.print = out, max_s, print_fn
        self.t0 = time.monotonic()
        self.results: list[StepResult] = []

    def left_s(self) -> float | None:
        return None if self.max_s is None else self.max_s - (time.monotonic() - self.t0)

    def run(self, step: str, name: str, title: str, estimate_s: float, fn: Callable[[], dict[str, Any]], *,
            correctness: bool) -> StepResult:
        left = self.left_s()
        if left is not None and estimate_s > left:
            r = StepResult(step, name, title, "skipped", correctness,
                           line=f"skipped: needs ~{estimate_s:.0f} s, {max(left, 0):.0f} s left of --max-minutes")
        else:
            t = time.perf_counter()
            try:
                data = fn()
                r = StepResult(step, name, title, "passed", correctness, data=data, line=data.get("summary", "ok"))
            except Exception as e:  # one line here, the traceback in the output folder
                tb = self.out / "tracebacks" / f"{name}.txt"
                tb.parent.mkdir(parents=True, exist_ok=True)
                tb.write_text(traceback.format_exc())
                first = (str(e).splitlines() or [""])[0]
                r = StepResult(step, name, title, "failed", correctness,
                               line=f"{type(e).__name__}: {first} (traceback: {tb})")
            r.seconds = time.perf_counter() - t
            if torch.cuda.is_initialized():
                torch.cuda.empty_cache()
        self._say(r)
        return r

    def not_applicable(self, step: str, name: str, title: str, why: str, *, correctness: bool) -> StepResult:
        r = StepResult(step, name, title, "n/a", correctness, line=why)
        self._say(r)
        return r

    def _say(self, r: StepResult) -> None:
        self.results.append(r)
        mark = {"passed": "PASS", "failed": "FAIL", "skipped": "SKIP", "n/a": "N/A "}[r.status]
        self.print(f"[{mark}] {r.step} {r.title} ({r.seconds:.1f} s): {r.line}")
        sys.stdout.flush()


def passed(results: list[StepResult], cuda: bool) -> bool:
    """Every correctness step passed (n/a counts only for a CUDA-only check on the CPU run)."""
    return all(r.status == "passed" or (r.status == "n/a" and not cuda and r.name in _CUDA_ONLY)
               for r in results if r.correctness)


_CUDA_ONLY = {c.name for c in device_checks.CHECKS if c.cuda_only}
