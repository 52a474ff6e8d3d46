"""Statistical verdicts for the paper-vs-reproduction comparison: is our cell consistent with the
paper's within what the seeds allow?

Per cell kind (distributions and tests from scipy.stats):

* ``prob`` (k of n runs Unstable): 95% Clopper-Pearson interval of our k/n (exact, so its coverage holds
  at the 3-10 seeds of the paper's cells, where Wald intervals do not); two-sided Fisher's exact test of
  our k/n against the paper's k/n.
* ``meanstd`` (mean ± std over seeds): 95% t interval of our mean; two-sided Welch's t-test from both
  means, sample standard deviations and seed counts (``ttest_ind_from_stats``, unequal variances: the
  two sides are different hardware and code, nothing says their seed noise is equal).
* ``value`` (one run, Table 1): ``not testable``: one run per side says nothing about seed-to-seed
  variation, and Table 1 shows two seeds of one setting 0.10 apart in AutoAttack accuracy.

``differs`` means p < ``ALPHA``. The p-values are per cell and not corrected for multiple comparisons:
among N testable cells about ``ALPHA * N`` differ by chance alone even when everything reproduces.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from scipy import stats

ALPHA = 0.05
LEVEL = 0.95
CONSISTENT, DIFFERS, NOT_TESTABLE = "consistent", "differs", "not testable"
VERDICTS = (CONSISTENT, DIFFERS, NOT_TESTABLE)


@dataclass(frozen=True)
class Verdict:
    """Interval for our value, the test against the paper's cell, and the verdict (``note`` says why
    a cell is not testable, or what the test assumed)."""

    low: float | None
    high: float | None
    test: str
    p_value: float | None
    verdict: str
    note: str = ""


def proportion_interval(k: int, n: int, level: float = LEVEL) -> tuple[float, float]:
    """Clopper-Pearson (exact binomial) interval of k/n."""
    ci = stats.binomtest(int(k), int(n)).proportion_ci(confidence_level=level, method="exact")
    return float(ci.low), float(ci.high)


def mean_interval(mean: float, std: float, n: int, level: float = LEVEL) -> tuple[float, float]:
    """t interval of a mean over ``n`` seeds with sample standard deviation ``std`` (ddof 1)."""
    if std == 0:
        return float(mean), float(mean)
    lo, hi = stats.t.interval(level, df=n - 1, loc=mean, scale=std / math.sqrt(n))
    return float(lo), float(hi)


def fisher_p(k1: int, n1: int, k2: int, n2: int) -> float:
    """Two-sided Fisher's exact test of k1/n1 against k2/n2."""
    return float(stats.fisher_exact([[k1, n1 - k1], [k2, n2 - k2]], alternative="two-sided").pvalue)


def welch_p(mean1: float, std1: float, n1: int, mean2: float, std2: float, n2: int) -> float:
    """Two-sided Welch's t-test from summary statistics (sample stds, ddof 1). NaN when both stds are 0."""
    return float(stats.ttest_ind_from_stats(mean1, std1, n1, mean2, std2, n2, equal_var=False).pvalue)


def _call(p: float) -> str:
    return DIFFERS if p < ALPHA else CONSISTENT


def prob_verdict(k: int, n: int, paper_k: int, paper_n: int) -> Verdict:
    """Our k/n against the paper's k/n: Clopper-Pearson interval, Fisher's exact test."""
    lo, hi = proportion_interval(k, n)
    p = fisher_p(k, n, paper_k, paper_n)
    return Verdict(lo, hi, "Fisher exact", p, _call(p))


def meanstd_verdict(mean: float, std: float | None, n: int, paper_mean: float, paper_std: float,
                    paper_n: int | None, *, paper_n_assumed: bool = False,
                    bounds: tuple[float, float] | None = None) -> Verdict:
    """Our mean ± std over ``n`` seeds against the paper's: t interval (clipped to ``bounds``, e.g.
    [0, 1] for an accuracy, since 2-3 seeds give t intervals wider than the scale), Welch's t-test."""
    if n < 2 or std is None or not math.isfinite(std):
        return Verdict(None, None, "", None, NOT_TESTABLE,
                       f"{n} run{'s' if n != 1 else ''} reproduced: no standard deviation, so no interval or test")
    lo, hi = mean_interval(mean, std, n)
    if bounds is not None:
        lo, hi = max(lo, bounds[0]), min(hi, bounds[1])
    if paper_n is None or paper_n < 2:
        return Verdict(lo, hi, "", None, NOT_TESTABLE, "the paper gives no seed count of at least 2 for this cell")
    p = welch_p(mean, std, n, paper_mean, paper_std, paper_n)
    if not math.isfinite(p):  # both standard deviations 0: no noise model to test against
        return Verdict(lo, hi, "Welch t", None, NOT_TESTABLE, "standard deviation 0 on both sides")
    note = (f"paper seed count not stated; assumed {paper_n} (the seeds this project's config trains)"
            if paper_n_assumed else "")
    return Verdict(lo, hi, "Welch t", p, _call(p), note)


def single_run_verdict() -> Verdict:
    """Table 1 style cells: one run on each side."""
    return Verdict(None, None, "", None, NOT_TESTABLE,
                   "single run on each side: seed-to-seed variation unknown, so no interval or test")


def missing_verdict(why: str) -> Verdict:
    return Verdict(None, None, "", None, NOT_TESTABLE, f"not reproduced: {why}" if why else "not reproduced")


def count_verdicts(verdicts) -> dict[str, int]:
    """``{"cells": N, "consistent": .., "differs": .., "not testable": ..}``."""
    verdicts = list(verdicts)
    out = {"cells": len(verdicts)}
    out.update({v: sum(1 for x in verdicts if x == v) for v in VERDICTS})
    return out


def summary_line(label: str, counts: dict[str, int]) -> str:
    """``"Table 2: 18 cells, 13 consistent, 2 differ, 3 not testable"``."""
    return (f"{label}: {counts['cells']} cells, {counts[CONSISTENT]} consistent, {counts[DIFFERS]} "
            f"differ{'s' if counts[DIFFERS] == 1 else ''}, {counts[NOT_TESTABLE]} not testable")
