"""Verdicts of the paper comparison (trades_instability.report.comparison_stats) against hand-computed answers."""

from __future__ import annotations

import math
from math import comb

import numpy as np
import pandas as pd
import pytest
from scipy import stats

from trades_instability.report import comparison as C
from trades_instability.report import comparison_stats as CS


def test_fisher_known_p_values():
    # 7/10 vs 4/10: hypergeometric over x = unstable runs of the first row, margins 10, 10 and 11 unstable;
    # two-sided p sums every table at most as likely as the observed one (x = 7, 4, 3, 8, 2, 9, 1, 10)
    prob = {x: comb(10, x) * comb(10, 11 - x) / comb(20, 11) for x in range(1, 11)}
    assert prob[7] == 25200 / 167960
    assert CS.fisher_p(7, 10, 4, 10) == pytest.approx(1 - prob[5] - prob[6]) == pytest.approx(62120 / 167960)
    assert CS.fisher_p(10, 10, 0, 10) == pytest.approx(2 / comb(20, 10))  # only the two extreme tables
    assert CS.fisher_p(2, 3, 10, 10) == pytest.approx(3 / 13)
    assert CS.prob_verdict(7, 10, 4, 10).verdict == "consistent"
    v = CS.prob_verdict(0, 10, 10, 10)
    assert v.verdict == "differs" and v.test == "Fisher exact" and v.p_value < 1e-4


def test_welch_from_hand_computed_stats():
    m1, s1, m2, s2, n = 0.2872, 0.02, 0.2641, 0.03, 10
    a, b = s1**2 / n, s2**2 / n
    t = (m1 - m2) / math.sqrt(a + b)
    df = (a + b) ** 2 / (a**2 / (n - 1) + b**2 / (n - 1))
    assert t == pytest.approx(2.0260, abs=1e-4) and df == pytest.approx(15.680, abs=1e-3)
    p = 2 * stats.t.sf(t, df)
    assert CS.welch_p(m1, s1, n, m2, s2, n) == pytest.approx(p) == pytest.approx(0.0602, abs=1e-3)
    assert CS.meanstd_verdict(m1, s1, n, m2, s2, n).verdict == "consistent"  # p = 0.06: just not
    assert CS.meanstd_verdict(m1, s1, 20, m2, s2, 20).verdict == "differs"  # same gap, twice the seeds
    # the same test from raw samples whose mean and sample std are those summary statistics
    x = np.array([0.25, 0.27, 0.30, 0.31])
    y = np.array([0.20, 0.22, 0.21])
    raw = stats.ttest_ind(x, y, equal_var=False).pvalue
    assert CS.welch_p(x.mean(), x.std(ddof=1), 4, y.mean(), y.std(ddof=1), 3) == pytest.approx(raw)


def test_intervals_closed_forms():
    assert CS.proportion_interval(0, 10)[1] == pytest.approx(1 - 0.025 ** (1 / 10))  # Clopper-Pearson
    assert CS.proportion_interval(10, 10)[0] == pytest.approx(0.025 ** (1 / 10))
    lo, hi = CS.mean_interval(0.5, 0.1, 4)
    half = 3.182446305 * 0.1 / 2  # t(0.975, 3) * s / sqrt(n)
    assert (lo, hi) == (pytest.approx(0.5 - half), pytest.approx(0.5 + half))
    assert CS.mean_interval(0.3, 0.0, 3) == (0.3, 0.3)
    v = CS.meanstd_verdict(0.06, 0.044, 2, 0.53, 0.002, 3, bounds=(0.0, 1.0))  # t(0.975, 1) = 12.7: clipped
    assert v.low == 0.0 and v.high == pytest.approx(0.06 + 12.7062 * 0.044 / math.sqrt(2), rel=1e-4)


def test_not_testable_cells_say_why():
    v = CS.single_run_verdict()
    assert v.verdict == "not testable" and "single run" in v.note and v.p_value is None
    v = CS.meanstd_verdict(0.5, None, 1, 0.5, 0.01, 3)
    assert v.verdict == "not testable" and "1 run" in v.note and v.low is None
    v = CS.meanstd_verdict(0.5, 0.0, 3, 0.5, 0.0, 3)  # no noise on either side: nothing to test against
    assert v.verdict == "not testable" and "0 on both sides" in v.note
    v = CS.meanstd_verdict(0.5, 0.01, 3, 0.5, 0.01, 3, paper_n_assumed=True)
    assert v.verdict == "consistent" and "assumed 3" in v.note


def test_summary_line_counts():
    counts = CS.count_verdicts(["consistent"] * 13 + ["differs"] * 2 + ["not testable"] * 3)
    assert CS.summary_line("Table 2", counts) == "Table 2: 18 cells, 13 consistent, 2 differ, 3 not testable"


def test_comparison_marks_differing_cells(tmp_path):
    """Table 2 cell beta=1 / batch 128 reproduced 0/10 (paper 10/10) differs; beta=3 / batch 256 7/10
    (paper 7/10) is consistent with p = 1; the LaTeX marks the first and counts both."""
    rows = []
    for setting, beta, bs, k in (("b1", 1.0, 128, 0), ("b3", 3.0, 256, 7)):
        for seed in range(10):
            unstable = seed < k
            rows.append({"setting": setting, "seed": seed, "dataset": "cifar100", "beta": beta, "batch_size": bs,
                         "lr": 0.1, "status": "complete", "pgd10_acc": 0.3, "square_acc": 0.1 if unstable else 0.25,
                         "unstable": unstable})
    spec = {"table2": {"panels": [{"title": "Learning Rate = 0.1", "row": "beta", "col": "batch_size",
                                   "settings": ["b1", "b3"]}]}}
    tex, csv = tmp_path / "c.tex", tmp_path / "c.csv"
    df = C.render_comparison(pd.DataFrame(rows), {}, spec, tex, csv)
    t2 = df[(df.table == "table2") & (df.panel == "Learning Rate = 0.1")].set_index(["row", "column"])
    differs = t2.loc[("beta=1", "batch_size=128")]
    assert differs.verdict == "differs" and differs.p_value == pytest.approx(2 / comb(20, 10))
    assert (differs.ci_low, differs.ci_high) == (0.0, pytest.approx(1 - 0.025 ** 0.1))
    same = t2.loc[("beta=3", "batch_size=256")]
    assert same.verdict == "consistent" and same.p_value == pytest.approx(1.0)
    text = tex.read_text()
    marked = [ln for ln in text.splitlines() if ln.endswith("\\\\") and r"\textbf{differs}" in ln]
    assert len(marked) == 1 and marked[0].startswith("Learning Rate = 0.1: beta=1 & batch\\_size=128")
    assert "Table 2: 18 cells, 1 consistent, 1 differs, 16 not testable" in text
    back = pd.read_csv(csv)
    assert set(back["verdict"]) == {"consistent", "differs", "not testable"}
    assert (back.loc[back.table == "table1", "verdict"] == "not testable").all()


@pytest.mark.parametrize("ddof", [0, 1])
def test_welch_uses_the_sample_std_whatever_the_table_ddof(tmp_path, ddof):
    clean = [0.50, 0.52, 0.57]
    rows = [{"setting": "d", "seed": s, "status": "complete", "clean_acc": c, "pgd10_acc": 0.24, "square_acc": 0.23,
             "autoattack_acc": 0.2, "unstable": False} for s, c in enumerate(clean)]
    selection = {"groups": {"d": {"regular": [0, 1, 2], "unstable": [], "diverged": []}}}
    spec = {"table3": {"regular_unstable": "d", "fixed": "d", "ddof": ddof}}
    df = C.comparison_frame(pd.DataFrame(rows), selection, spec)
    r = df[(df.table == "table3") & (df.row == "Regular") & (df.column == "Clean")].iloc[0]
    assert r.reproduced_std == pytest.approx(np.std(clean, ddof=ddof))
    assert r.paper_n == 3 and r.p_value == pytest.approx(
        stats.ttest_ind_from_stats(np.mean(clean), np.std(clean, ddof=1), 3, 0.5342, 0.0019, 3, equal_var=False).pvalue)
