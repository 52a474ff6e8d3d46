"""The Unstable rule of the paper (Tables 2, 4; the seed selection of every figure), stated once.

A run is *Unstable* when its PGD-10 accuracy exceeds its Square accuracy by at least the threshold
(paper: :data:`DEFAULT_UNSTABLE_THRESHOLD` = 0.08), *Regular* when the gap is below it, unclassified
(None) without both numbers. The evaluation writes this verdict into each eval JSON
(:func:`trades_instability.evaluate.suite.classify`) and aggregation recomputes it from the merged numbers
(:func:`trades_instability.aggregate.classify`); both call :func:`is_unstable`.

Tolerance: accuracies are k/n fractions, so a gap that equals 0.08 mathematically may come out as
0.0799999... in floating point and must still count. :data:`TOLERANCE` = 1e-9 absorbs that round-off
and the rounding of numbers read back from text (summary.csv keeps 10 significant digits: errors up to
~1e-11, more than the 1e-12 the evaluation once used), while a real difference is never hidden: for
0.08 = 2/25 a gap k/n that is not exactly 0.08 lies at least 1/(25 n) away, > 1e-9 for any n below
4e7 examples (a test set has at most 10,000).
"""

from __future__ import annotations

DEFAULT_UNSTABLE_THRESHOLD = 0.08
TOLERANCE = 1e-9


def is_unstable(pgd10_acc: float | None, square_acc: float | None,
                threshold: float = DEFAULT_UNSTABLE_THRESHOLD) -> bool | None:
    """PGD-10 accuracy - Square accuracy >= ``threshold`` (up to :data:`TOLERANCE`); None without both."""
    if pgd10_acc is None or square_acc is None:
        return None
    return bool(pgd10_acc - square_acc >= threshold - TOLERANCE)
