"""FOSC as a detector (trades_instability.report.detection) on constructed runs with known answers."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from _report_fakes import make_fake_results

from trades_instability.report import detection as D
from trades_instability.report import detection_stats as S


def trace(setting, seed, unstable, fosc, best_epoch=None, threshold=0.1):
    fosc = np.asarray(fosc, float)
    return D.RunTrace(setting, seed, unstable, best_epoch, threshold, np.arange(1, fosc.size + 1), fosc)


def test_auc_known_values():
    assert S.roc_auc([1, 3], [2, 0]) == 0.75  # pairs won: 1>0, 3>2, 3>0 of 4
    assert S.roc_auc([1.0], [1.0]) == 0.5  # a tie counts one half
    assert S.roc_auc([0, 0], [5, 6]) == 0.0


def test_perfect_separation():
    reg = [trace("s", i, False, [0.01, peak, 0.01], best_epoch=3) for i, peak in enumerate([0.01, 0.02, 0.03])]
    uns = [trace("s", 10 + i, True, [0.01, peak, 0.02], best_epoch=3) for i, peak in enumerate([0.2, 0.3, 0.4])]
    g = D.analyse("s", reg + uns)
    assert g.enough and g.auc == 1.0 and (g.auc_low, g.auc_high) == (1.0, 1.0)
    assert 0.03 < g.threshold < 0.2 and g.threshold == pytest.approx(0.115) and g.youden_j == 1.0
    assert g.auc_p == pytest.approx(0.1)  # exact Mann-Whitney, 3 vs 3 perfectly separated: 2 / C(6, 3)
    assert (g.unstable_flagged, g.unstable_early, g.regular_flagged) == (3, 3, 0)  # flagged at epoch 2 < 3


def test_identical_distributions_give_auc_near_half():
    rng = np.random.default_rng(1)
    peaks = rng.lognormal(-3, 0.5, size=(2, 200))
    traces = [trace("s", i, lab == 1, [p]) for lab in (0, 1) for i, p in enumerate(peaks[lab])]
    g = D.analyse("s", traces)
    assert abs(g.auc - 0.5) < 0.07 and g.auc_low < 0.5 < g.auc_high and g.auc_p > 0.05
    same = D.analyse("s", [trace("s", i, i % 2 == 0, [0.05]) for i in range(6)])  # all equal
    assert same.auc == 0.5 and same.youden_j == 0.0


def test_youden_ties_take_the_lowest_threshold():
    # flagging above 0.15 or above 0.35 both give J = 0.5; the lower one is chosen
    t, j = S.youden_threshold(pos=[0.2, 0.4], neg=[0.1, 0.3])
    assert (t, j) == (pytest.approx(0.15), 0.5)


def test_early_flags_and_false_alarms_per_threshold():
    uns_early = trace("s", 0, True, [0.01, 0.5, 0.5, 0.5], best_epoch=4)   # over 0.1 at epoch 2 < 4
    uns_late = trace("s", 1, True, [0.01, 0.01, 0.01, 0.5], best_epoch=3)  # over only at epoch 4 > 3
    reg_alarm = trace("s", 2, False, [0.01, 0.2, 0.01, 0.01])              # self-heals: a false alarm at 0.1
    reg_quiet = trace("s", 3, False, [0.01, 0.02, 0.01, 0.01])
    g = D.analyse("s", [uns_early, uns_late, reg_alarm, reg_quiet])
    assert (g.configured_early, g.configured_regular_flagged) == (1, 1)
    assert g.threshold == pytest.approx(0.35) and g.youden_j == 1.0  # peaks 0.5, 0.5 vs 0.2, 0.02
    assert (g.unstable_flagged, g.unstable_early, g.regular_flagged) == (2, 1, 0)
    assert uns_late.first_over(0.35) == 4 and not uns_late.flagged_early(0.35)


def test_not_enough_runs_gives_no_numbers(tmp_path):
    traces = [trace("s", 0, True, [0.3]), trace("s", 1, False, [0.01]), trace("s", 2, False, [0.02])]
    g = D.analyse("s", traces)
    assert not g.enough and g.auc is None and g.threshold is None and g.unstable_early is None
    report = D.DetectionReport(["s"], traces, [g], [])
    (row,) = D.table_rows(report)
    assert D.NOT_ENOUGH in row and "nan" not in row and "None" not in row
    assert D.runs_frame(report)["calibrated_threshold"].isna().all()


def test_render_from_fake_results(tmp_path):
    fake = make_fake_results(tmp_path / "fake")
    settings = ["default", "fixed", "b1_bs128"]
    tex, csv, pdf = tmp_path / "detection.tex", tmp_path / "detection.csv", tmp_path / "detection.pdf"
    rep = D.render_detection(fake["summary"], fake["selection"], fake["run_dirs"], settings, tex, csv, pdf)
    # default: seeds 0-2 Regular, 3-4 Unstable, 5 diverged; fixed: all trained with the fix
    assert {(t.setting, t.seed) for t in rep.traces} == {("default", s) for s in range(5)} | {
        ("b1_bs128", s) for s in range(3)}
    text = tex.read_text()
    assert "default/5" in text and "fixed/0" in text  # left-out runs are named
    pooled = rep.pooled
    assert (pooled.n_unstable, pooled.n_regular) == (4, 4) and pooled.auc == 1.0
    assert 0.012 < pooled.threshold < 0.16 and pooled.unstable_early == 4 and pooled.regular_flagged == 0
    by_name = {g.name: g for g in rep.groups}
    assert by_name["fixed"].n_unstable == by_name["fixed"].n_regular == 0 and not by_name["fixed"].enough
    assert not by_name["b1_bs128"].enough  # 2 Unstable, 1 Regular
    first, rest = text.split("tab:detection}", 1)
    others = rest.split("tab:detection-others")[0]
    assert sum(D.NOT_ENOUGH in r for r in first.splitlines() if r.endswith("\\\\")) == 2
    # SGCS and GradAlign beside FOSC on the same groups: the fake Unstable runs' GradAlign falls with their FOSC
    assert pooled.others["GradAlign"][:2] == (8, 1.0) and pooled.others["SGCS"] is not None
    assert by_name["b1_bs128"].others["GradAlign"] is None and "Lowest validation GradAlign" in others
    assert sum(D.NOT_ENOUGH in r for r in others.splitlines() if r.endswith("\\\\")) == 2
    assert r"\begin{tabular}" in text and "<<" not in text
    runs = pd.read_csv(csv)
    assert len(runs) == 8 and set(runs["label"]) == {"Regular", "Unstable"}
    assert (runs.loc[runs.label == "Unstable", "first_epoch_over_configured"] == 6).all()
    assert ",Unstable,10,0.16" in csv.read_text() and ",6,0.1,6\n" in csv.read_text()  # integer epochs
    assert pdf.read_bytes()[:5] == b"%PDF-" and pdf.with_suffix(".png").read_bytes()[:4] == b"\x89PNG"


def test_render_without_any_run(tmp_path):
    empty = pd.DataFrame(columns=["setting", "seed", "unstable", "status", "fix", "best_epoch", "fosc_threshold"])
    rep = D.render_detection(empty, {}, {}, ["default"], tmp_path / "d.tex", tmp_path / "d.csv", tmp_path / "d.pdf")
    assert not rep.pooled.enough and (tmp_path / "d.png").stat().st_size > 0
    assert D.NOT_ENOUGH in (tmp_path / "d.tex").read_text()
