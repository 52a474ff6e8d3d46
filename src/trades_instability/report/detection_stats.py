"""The statistics of the FOSC detector (report/detection.py) and of the review's detector block (report/review.py):
ROC AUC = Mann-Whitney U / (n_pos n_neg), its two-sided p-value against AUC = 0.5, a percentile bootstrap interval
(each label resampled on its own, fixed seed) and the Youden's-J threshold of "flag when score > t"."""

from __future__ import annotations

import numpy as np
from scipy import stats

MIN_RUNS = 2  # a group with fewer runs of either label gets "not enough runs" instead of numbers
LEVEL = 0.95
N_RESAMPLES = 2000
BOOTSTRAP_SEED = 0


def _auc_stat(pos: np.ndarray, neg: np.ndarray, axis: int = -1) -> np.ndarray:
    """P(pos > neg) + P(pos == neg) / 2 over all pairs; vectorised over leading axes (for bootstrap)."""
    pos, neg = np.moveaxis(pos, axis, -1), np.moveaxis(neg, axis, -1)
    d = pos[..., :, None] - neg[..., None, :]
    return (d > 0).mean(axis=(-2, -1)) + 0.5 * (d == 0).mean(axis=(-2, -1))


def roc_auc(pos, neg) -> float:
    """ROC AUC of scores ``pos`` (positives) vs ``neg``: Mann-Whitney U / (n_pos n_neg)."""
    pos, neg = np.asarray(pos, float), np.asarray(neg, float)
    return float(stats.mannwhitneyu(pos, neg).statistic / (pos.size * neg.size))


def auc_p_value(pos, neg) -> float:
    """Two-sided Mann-Whitney p-value of AUC = 0.5 (exact for small samples without ties)."""
    return float(stats.mannwhitneyu(np.asarray(pos, float), np.asarray(neg, float), alternative="two-sided").pvalue)


def auc_interval(pos, neg, level: float = LEVEL, n_resamples: int = N_RESAMPLES,
                 seed: int = BOOTSTRAP_SEED) -> tuple[float, float]:
    """Percentile bootstrap interval of the AUC, each group resampled separately (fixed seed: the
    table is reproducible). Percentile, not BCa: BCa is undefined when every resample gives AUC 1."""
    res = stats.bootstrap((np.asarray(pos, float), np.asarray(neg, float)), _auc_stat, paired=False,
                          vectorized=True, confidence_level=level, n_resamples=n_resamples, method="percentile",
                          rng=np.random.default_rng(seed))
    return float(res.confidence_interval.low), float(res.confidence_interval.high)


def youden_threshold(pos, neg) -> tuple[float, float]:
    """(threshold, J) maximising TPR - FPR of "flag when score > threshold"; candidates are the midpoints
    between consecutive distinct scores, ties go to the lowest threshold."""
    pos, neg = np.asarray(pos, float), np.asarray(neg, float)
    values = np.unique(np.concatenate([pos, neg]))
    if values.size < 2:  # every score equal: no threshold separates anything
        return float(values[0]), 0.0
    cands = (values[:-1] + values[1:]) / 2
    j = (pos[None, :] > cands[:, None]).mean(1) - (neg[None, :] > cands[:, None]).mean(1)
    i = int(np.argmax(j))  # first maximum = lowest threshold
    return float(cands[i]), float(j[i])


def auc_summary(pos, neg) -> tuple[float, float, float, float] | None:
    """(AUC, interval low, high, Mann-Whitney p) of scores ``pos`` vs ``neg``; None with < MIN_RUNS of either."""
    if min(len(pos), len(neg)) < MIN_RUNS:
        return None
    return (roc_auc(pos, neg), *auc_interval(pos, neg), auc_p_value(pos, neg))
