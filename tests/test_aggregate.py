"""summary.csv / selection.json from synthetic run directories: the documented selection rules."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pytest

from trades_instability import aggregate as agg

CONTRACT_COLUMNS = [
    "setting", "seed", "dataset", "method", "beta", "batch_size", "lr", "lr_milestones", "awp", "fix",
    "status", "best_epoch", "clean_acc", "pgd10_acc", "square_acc", "autoattack_acc", "apgd_ce_acc",
    "apgd_t_acc", "fab_t_acc", "fosc", "sgcs", "gradalign", "gap_pgd_square", "gap_pgd_aa", "unstable",
    "max_val_fosc", "noise_batches_total", "run_dir",
]


def make_run(root: Path, setting: str, seed: int, *, pgd: float | None, square: float | None,
             aa: float | None = None, fosc=(0.01, 0.02, 0.03), status="complete", fix=False,
             threshold=0.1, suites=("cheap",), extra_eval=None) -> dict:
    d = root / "runs" / setting / f"seed{seed}"
    d.mkdir(parents=True)
    cfg = {"dataset": "cifar100", "method": "trades", "beta": 3.0, "batch_size": 256, "lr": 0.1,
           "lr_milestones": [], "epochs": len(fosc), "awp": {"enabled": False},
           "fix": {"enabled": fix, "fosc_threshold": threshold}, "seed": seed}
    (d / "run.json").write_text(json.dumps({
        "status": status, "epochs_completed": len(fosc), "best_epoch": 2, "best_val_pgd_acc": 0.3,
        "config": cfg, "diverged": None if status == "complete" else {"epoch": 2}}))
    rows = [{"epoch": i + 1, "val_fosc": f, "noise_batches": 10 if fix and i else 0} for i, f in enumerate(fosc)]
    pd.DataFrame(rows).to_csv(d / "epochs.csv", index=False)
    for i, s in enumerate(suites):
        doc = {"clean_acc": 0.55, "pgd10_acc": pgd, "square_acc": square, "autoattack_acc": aa,
               "apgd_ce_acc": None, "apgd_t_acc": None, "fab_t_acc": None, "fosc": 0.02, "sgcs": 0.9,
               "status": "ok", "n_examples": 10000}
        if extra_eval and i == len(suites) - 1:
            doc.update(extra_eval)
        (d / f"eval_{s}.json").write_text(json.dumps(doc))
    return {"setting": setting, "seed": seed, "run_dir": str(d), "suites": list(suites)}


def test_classify_threshold_boundary():
    assert agg.classify(0.30, 0.22, 0.08) is True  # exactly 0.08 (0.0799999... in floats) is Unstable
    assert agg.classify(0.30, 0.2201, 0.08) is False
    assert agg.classify(0.30, None) is None and agg.classify(None, 0.2) is None


def test_self_healing_peak():
    assert agg.self_healing_peak([0.01, 0.2, 0.5, 0.05], 0.1) == 0.5
    assert agg.self_healing_peak([0.01, 0.2, 0.5], 0.1) is None  # never came back
    assert agg.self_healing_peak([0.01, 0.05], 0.1) is None  # never exceeded
    assert agg.self_healing_peak([0.2, 0.1, 0.3, 0.3], 0.1) == 0.3  # back to exactly the threshold counts


def test_groups_representatives_and_summary(tmp_path: Path):
    runs = [
        make_run(tmp_path, "default", 0, pgd=0.30, square=0.25),                      # regular gap .05
        make_run(tmp_path, "default", 1, pgd=0.30, square=0.28),                      # regular gap .02 (rep)
        make_run(tmp_path, "default", 2, pgd=0.30, square=0.10),                      # unstable gap .20 (rep)
        make_run(tmp_path, "default", 3, pgd=0.30, square=0.20),                      # unstable gap .10
        make_run(tmp_path, "default", 4, pgd=0.30, square=0.27, fosc=(0.01, 0.4, 0.02)),   # self-healing peak .4
        make_run(tmp_path, "default", 5, pgd=0.30, square=0.26, fosc=(0.3, 0.9, 0.05)),    # self-healing peak .9 (rep)
        make_run(tmp_path, "default", 6, pgd=0.30, square=0.15, fosc=(0.01, 0.9, 0.05)),   # unstable: not healing
        make_run(tmp_path, "default", 7, pgd=0.9, square=0.0, status="diverged"),          # diverged: excluded
        make_run(tmp_path, "default", 8, pgd=0.30, square=None),                      # unclassified
        make_run(tmp_path, "fixed", 2, pgd=0.25, square=0.24, aa=0.20, fosc=(0.01, 0.5, 0.02), fix=True,
                 suites=("aa",)),                                                     # fix on: never "self-healing"
    ]
    summary, sel = agg.aggregate(runs, 0.08, tmp_path / "summary.csv", tmp_path / "selection.json")
    g = sel["groups"]["default"]
    assert g["regular"] == [0, 1, 4, 5] and g["unstable"] == [2, 3, 6]
    assert g["diverged"] == [7] and g["unclassified"] == [8] and g["self_healing"] == [4, 5]
    assert g["representative"] == {"regular": 1, "unstable": 2, "self_healing": 5}
    f = sel["groups"]["fixed"]
    assert f["regular"] == [2] and f["self_healing"] == [] and f["representative"]["self_healing"] is None
    assert sel["threshold"] == 0.08 and set(agg.RULES) <= set(sel["rules"])
    assert json.loads((tmp_path / "selection.json").read_text()) == sel

    df = agg.load_summary(tmp_path / "summary.csv")
    assert list(df.columns[: len(CONTRACT_COLUMNS)]) == CONTRACT_COLUMNS
    assert len(df) == 10
    row = df[(df.setting == "default") & (df.seed == 2)].iloc[0]
    assert row["unstable"] is True and row["gap_pgd_square"] == pytest.approx(0.20)
    assert df[(df.setting == "default") & (df.seed == 8)].iloc[0]["unstable"] is None
    fx = df[df.setting == "fixed"].iloc[0]
    assert fx["fix"] is True and fx["gap_pgd_aa"] == pytest.approx(0.05) and fx["noise_batches_total"] == 20
    assert fx["max_val_fosc"] == pytest.approx(0.5) and fx["status"] == "complete"
    assert df[(df.setting == "default") & (df.seed == 5)].iloc[0]["self_healing"] is True


def test_suites_merge_in_order(tmp_path: Path):
    r = make_run(tmp_path, "s", 0, pgd=0.30, square=0.29, aa=None, suites=("cheap", "aa"),
                 extra_eval={"autoattack_acc": 0.2, "pgd10_acc": 0.31, "square_acc": None})
    summary, _ = agg.aggregate([r], 0.08)
    row = summary.iloc[0]
    # later suite's non-null numbers win; a null does not erase an earlier number
    assert row["pgd10_acc"] == 0.31 and row["square_acc"] == 0.29 and row["autoattack_acc"] == 0.2
    assert row["suites"] == "cheap aa"


def test_autoattack_flags_column_sums_the_suites(tmp_path: Path):
    """summary.csv's aa_flags: pyautoattack's flags of every suite of the run, counts summed; "" when AutoAttack
    ran without a flag; empty (null) when no suite ran AutoAttack."""
    flagged = make_run(tmp_path, "s", 0, pgd=0.5, square=0.3, aa=0.3, suites=("cheap", "aa"),
                       extra_eval={"autoattack_flags": {"zero_gradients": 3, "square_beats_whitebox": 1}})
    doc = tmp_path / "runs/s/seed0/eval_cheap.json"
    doc.write_text(json.dumps({**json.loads(doc.read_text()), "autoattack_flags": {"zero_gradients": 2}}))
    clean = make_run(tmp_path, "s", 1, pgd=0.3, square=0.3, aa=0.3, extra_eval={"autoattack_flags": {}})
    none = make_run(tmp_path, "s", 2, pgd=0.3, square=None)
    summary, _ = agg.aggregate([flagged, clean, none], 0.08)
    assert list(summary["aa_flags"][:2]) == ["square_beats_whitebox:1 zero_gradients:5", ""]
    assert pd.isna(summary["aa_flags"][2])
    out = tmp_path / "summary.csv"
    summary.to_csv(out, index=False)
    assert pd.read_csv(out, keep_default_na=False)["aa_flags"][0] == "square_beats_whitebox:1 zero_gradients:5"


def test_empty_groups_are_explicit(tmp_path: Path):
    r = make_run(tmp_path, "s", 0, pgd=0.30, square=0.29)
    _, sel = agg.aggregate([r], 0.08)
    rep = sel["groups"]["s"]["representative"]
    assert rep == {"regular": 0, "unstable": None, "self_healing": None}


def test_missing_artifact_names_the_file(tmp_path: Path):
    r = make_run(tmp_path, "s", 0, pgd=0.3, square=0.2)
    Path(r["run_dir"], "eval_cheap.json").unlink()
    with pytest.raises(agg.AggregateError, match="eval_cheap.json"):
        agg.aggregate([r], 0.08)


def test_report_helper_reads_our_summary(tmp_path: Path):
    tables = pytest.importorskip("trades_instability.report.tables")
    runs = [make_run(tmp_path, "default", 0, pgd=0.3, square=0.1), make_run(tmp_path, "default", 1, pgd=0.3,
                                                                            square=None)]
    agg.aggregate(runs, 0.08, tmp_path / "summary.csv", tmp_path / "selection.json")
    df = tables.load_summary(tmp_path / "summary.csv")
    assert list(df["unstable"]) == [True, None]


def test_last_epoch_columns_beside_the_best_ones(tmp_path: Path):
    """The eval JSON's "last" (the final epoch's checkpoint) fills the last_* columns with the same merge
    and the same Unstable rule; the best-checkpoint columns keep their names and values."""
    last = {"epoch": 3, "clean_acc": 0.6, "pgd10_acc": 0.35, "square_acc": 0.25, "autoattack_acc": None,
            "fosc": 0.2, "sgcs": 0.5, "unstable": True, "status": "ok"}
    r = make_run(tmp_path, "s", 0, pgd=0.30, square=0.29, suites=("cheap", "aa"),
                 extra_eval={"autoattack_acc": 0.2, "last": {**last, "autoattack_acc": 0.22, "square_acc": None}})
    (Path(r["run_dir"]) / "eval_cheap.json").write_text(json.dumps(
        {**json.loads((Path(r["run_dir"]) / "eval_cheap.json").read_text()), "last": last}))
    old = make_run(tmp_path, "old", 0, pgd=0.30, square=0.20)  # an eval JSON without "last"
    out = tmp_path / "summary.csv"
    summary, _ = agg.aggregate([r, old], 0.08, out_csv=out)
    row = agg.load_summary(out).iloc[0]
    assert row["unstable"] is False and row["pgd10_acc"] == 0.30  # best: 0.30 - 0.29
    assert row["last_epoch"] == 3 and row["last_pgd10_acc"] == 0.35 and row["last_square_acc"] == 0.25
    assert row["last_autoattack_acc"] == 0.22 and row["last_fosc"] == 0.2
    assert row["last_gap_pgd_square"] == pytest.approx(0.10) and row["last_gap_pgd_aa"] == pytest.approx(0.13)
    assert row["last_unstable"] is True
    assert list(summary.columns[: len(CONTRACT_COLUMNS)]) == CONTRACT_COLUMNS
    assert pd.isna(summary.iloc[1]["last_pgd10_acc"]) and summary.iloc[1]["last_unstable"] is None


def test_one_unstable_rule_for_evaluation_and_aggregation():
    """core/verdict.py is the rule; a gap of exactly the threshold in k/n counts as Unstable."""
    from trades_instability.core import verdict

    assert agg.DEFAULT_THRESHOLD == verdict.DEFAULT_UNSTABLE_THRESHOLD == 0.08
    n = 10_000
    for k in range(0, n + 1, 37):
        p = (k + 800) / n if k + 800 <= n else None
        assert agg.classify(p, k / n) == verdict.is_unstable(p, k / n) == (None if p is None else True)
        if p is not None:
            assert verdict.is_unstable((k + 799) / n, k / n) is False
    assert agg.classify("0.5", "0.42") is True and agg.classify(float("nan"), 0.1) is None
