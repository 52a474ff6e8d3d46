"""report/review.py on a hand-made summary and per-run epochs.csv: every block's counts, intervals, tests,
detector AUCs and the planted rows, checked against values computed here by hand; then the rendered files."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
from scipy import stats

from trades_instability.report import review

# setting -> {seed: (unstable, clean, pgd10, autoattack, planted)}
RUNS = {
    "default": {0: (False, .50, .30, .25, ""), 1: (True, .52, .40, .20, ""), 2: (False, .51, .31, .26, ""),
                3: (True, .49, .41, .22, ""), 4: (False, .50, .29, .24, "")},
    "src_init": {1: (True, .5, .4, .2, ""), 2: (False, .5, .3, .25, ""), 3: (False, .5, .3, .25, "")},
    "src_data": {1: (False, .5, .3, .25, ""), 2: (False, .5, .3, .25, ""), 3: (False, .5, .3, .25, "")},
    "b6_t2": {0: (False, .45, .28, .25, ""), 1: (False, .45, .28, .25, "")},
    "b6_more": {2: (False, .45, .28, .25, ""), 3: (False, .45, .28, .25, ""), 4: (False, .45, .28, .25, "")},
    "pgd_at": {0: (False, .40, .25, .22, ""), 1: (False, .41, .26, .23, "")},
    "planted": {0: (True, .30, .30, .05, "quantize")},
}
REVIEW = {
    "seed_sources": {"init": ["default:0", "src_init"], "data": ["default:0", "src_data"]},
    "beta": {"3": ["default"], "6": ["b6_t2", "b6_more"]},
    "methods": {"trades": ["default"], "pgd_at": ["pgd_at"]},
    "detectors": {"settings": ["default", "planted"]},
}


def _epochs(unstable: bool, seed: int, planted: bool) -> pd.DataFrame:
    e = np.arange(1, 5)
    fosc = np.full(4, 0.0) if planted else (0.02 + 0.01 * seed + (0.3 if unstable else 0.0) * (e >= 3))
    sgcs = 0.2 + (0.4 if unstable else 0.0) * (e >= 3) + 0.001 * seed
    align = 0.0 * e if planted else 0.9 - (0.5 if unstable else 0.0) * (e >= 3) - 0.001 * seed
    return pd.DataFrame({"epoch": e, "val_fosc": fosc, "val_sgcs": sgcs, "val_gradalign": align})


@pytest.fixture
def fake(tmp_path):
    rows, run_dirs = [], {}
    for setting, seeds in RUNS.items():
        for seed, (unst, clean, pgd, aa, planted) in seeds.items():
            d = tmp_path / "runs" / setting / f"seed{seed}"
            d.mkdir(parents=True)
            _epochs(unst, seed, bool(planted)).to_csv(d / "epochs.csv", index=False)
            run_dirs[(setting, seed)] = d
            rows.append({"setting": setting, "seed": seed, "unstable": unst, "clean_acc": clean, "pgd10_acc": pgd,
                         "autoattack_acc": aa, "gap_pgd_aa": pgd - aa, "status": "complete", "planted": planted})
    selection = {"groups": {}}
    return pd.DataFrame(rows), selection, run_dirs


def _block(report, key):
    return next(b for b in report.prob_blocks if b.key == key)


def test_seed_source_rows_share_the_base_run_and_are_tested_against_each_other(fake):
    report = review.build_review(REVIEW, *fake)
    src = _block(report, "seed_sources")
    init, data = src.rows
    assert (init.k, init.n, data.k, data.n) == (1, 4, 0, 4)  # default seed 0 (Regular) counted in both
    assert (init.low, init.high) == pytest.approx(tuple(stats.binomtest(1, 4).proportion_ci(method="exact")))
    assert src.test_p == pytest.approx(stats.fisher_exact([[1, 3], [0, 4]]).pvalue)
    assert data.upper0 == pytest.approx(1 - 0.05 ** (1 / 4)) and init.upper0 is None


def test_beta_rows_pool_settings_and_bound_zero_of_n(fake):
    beta = _block(review.build_review(REVIEW, *fake), "beta")
    b3, b6 = beta.rows
    assert (b3.k, b3.n) == (2, 5) and (b6.k, b6.n) == (0, 5)
    assert b6.upper0 == pytest.approx(0.4507, abs=1e-4)  # 1 - 0.05^(1/5)
    assert beta.test_p == pytest.approx(stats.fisher_exact([[2, 3], [0, 5]]).pvalue)


def test_method_rows_report_clean_autoattack_and_gap(fake):
    trades, pgd_at = _block(review.build_review(REVIEW, *fake), "methods").rows
    assert trades.means["Clean"].value == pytest.approx(np.mean([.50, .52, .51, .49, .50]))
    assert trades.means["Clean"].std == pytest.approx(np.std([.50, .52, .51, .49, .50], ddof=1))
    assert pgd_at.means["AutoAttack"].value == pytest.approx(.225) and pgd_at.k == 0
    assert pgd_at.means["Gap"].value == pytest.approx(np.mean([.25 - .22, .26 - .23]))


def test_detector_aucs_orient_gradalign_low_and_leave_planted_runs_out(fake):
    report = review.build_review(REVIEW, *fake)
    det = {d.name: d for d in report.detectors}
    for name in ("FOSC", "SGCS", "GradAlign"):  # the fake Unstable runs are extreme on every detector
        assert (det[name].n_unstable, det[name].n_regular) == (2, 3)
        assert det[name].auc == pytest.approx(1.0)
        assert det[name].p == pytest.approx(stats.mannwhitneyu([1, 1], [0, 0, 0]).pvalue, abs=0.2)
    (planted,) = report.planted
    assert planted.unstable and planted.scores["FOSC"] == 0.0 and planted.scores["GradAlign"] == 0.0


def test_not_enough_runs_is_said_not_computed(fake):
    summary, selection, run_dirs = fake
    report = review.build_review({"detectors": {"settings": ["pgd_at"]}}, summary, selection, run_dirs)
    assert all(d.auc is None and "not enough runs" in d.note for d in report.detectors)


def test_render_writes_table_csv_and_figure(fake, tmp_path):
    out = tmp_path / "out"
    review.render_review(REVIEW, *fake, out / "review.tex", out / "review.csv", out / "review.pdf")
    tex = (out / "review.tex").read_text()
    for title in (*[review.PROB_BLOCKS[k] for k in ("seed_sources", "beta", "methods")], "GradAlign", "planted"):
        assert title.replace("_", r"\_") in tex or title in tex, title
    assert "1/4" in tex and "0/5" in tex and r"$\leq$ 0.45" in tex
    csv = pd.read_csv(out / "review.csv")
    assert set(csv["block"]) == {"seed_sources", "beta", "methods", "detectors", "planted"}
    assert (out / "review.pdf").stat().st_size > 0 and (out / "review.png").stat().st_size > 0
    json.dumps(csv.to_dict(orient="records"), default=str)
