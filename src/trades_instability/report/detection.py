"""FOSC as a detector of Unstable runs (beyond the paper): how well does per-epoch validation FOSC
separate runs that end Unstable from Regular ones, and which ``fix.fosc_threshold`` would do it best?

Per run the score is its peak validation FOSC over all epochs (``val_fosc`` of epochs.csv); the label is
the pipeline's Unstable call (PGD-10 - Square >= the selection threshold, from summary.csv). For the
pooled runs of the configured settings and for each setting on its own (the statistics: report/detection_stats.py):

* ROC AUC of the peak FOSC (Unstable = positive) = U / (n_U n_R) of the Mann-Whitney U test, with a
  percentile bootstrap interval (each label resampled on its own) and the test's two-sided p-value
  against AUC = 0.5: the interval collapses to [1, 1] when the groups separate perfectly, the p-value
  still says how much a handful of seeds can show (3 vs 3 separated perfectly: p = 0.1);
* the Youden's-J threshold: among the midpoints between consecutive distinct peak values, the one
  maximising TPR - FPR of the rule "flag when FOSC > t" (ties: the lowest, i.e. the most sensitive, since
  the fix only adds noise to a few batches while a missed Unstable run reports overestimated robustness);
* the Unstable runs it flags strictly before their best checkpoint's epoch (the fix adds noise in the
  epoch AFTER a flag, so only an earlier flag can change the checkpoint that is reported), and the
  Regular runs it flags at any epoch (false alarms); the same two counts for each run's configured
  ``fix.fosc_threshold``.

Runs are left out (and named) when diverged, unclassified, or trained with the fix on: the fix reacts to
the very FOSC signal evaluated here and turns would-be Unstable runs Regular. A group with fewer than
``MIN_RUNS`` runs of either label gets "not enough runs" instead of numbers.

Planted runs (a setting's ``plant_masking``: masking known to be there, core/masking.py) get a block of their
own (:func:`planted_runs`), the Fixed run of a planted seed included: was each caught by the Unstable rule,
and what the validation FOSC (its peak) and SGCS (its range) and the test evaluation's FOSC and SGCS read on it.
On shattered
gradients (``quantize``) every input gradient is zero, so FOSC and SGCS read 0: a FOSC detector, and the
fix that listens to it, are blind to that masking; the block shows it rather than hiding it.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from trades_instability.report import registry
from trades_instability.report.cells import diverged_runs, load_selection, load_summary
from trades_instability.report.detection_stats import (
    LEVEL,
    MIN_RUNS,
    N_RESAMPLES,
    auc_summary,
    youden_threshold,
)
from trades_instability.report.figures import DEFAULT_FOSC_THRESHOLD, read_epochs
from trades_instability.report.latex import latex_escape, template_env, write_text

POOLED = "all"
# Every per-epoch detector: epochs.csv column, the run's score (its most extreme epoch) and the direction that
# signals masking. FOSC (eq. 2) is the calibrated one; SGCS (eq. 3) and GradAlign (Andriushchenko & Flammarion
# 2020, core/metrics.py) are evaluated beside it by AUC alone (the review's Q3; report/review.py reads this too).
DETECTORS = {
    "FOSC": ("val_fosc", "max", "high"),
    "SGCS": ("val_sgcs", "max", "high"),
    "GradAlign": ("val_gradalign", "min", "low"),
}
OTHER_DETECTORS = ("SGCS", "GradAlign")


@dataclass
class RunTrace:
    """One classified run: its label, best epoch, configured threshold and FOSC per epoch."""

    setting: str
    seed: int
    unstable: bool
    best_epoch: int | None
    fosc_threshold: float
    epochs: np.ndarray
    fosc: np.ndarray
    # the run's score of each other detector (DETECTORS), oriented so that higher means "masking"; None: not logged
    others: dict[str, float | None] = field(default_factory=dict)

    @property
    def peak(self) -> float:
        return float(np.nanmax(self.fosc))

    @property
    def peak_epoch(self) -> int:
        return int(self.epochs[int(np.nanargmax(self.fosc))])

    def first_over(self, threshold: float) -> int | None:
        """First epoch whose FOSC exceeds ``threshold`` (the fix's rule: strictly greater)."""
        over = np.flatnonzero(self.fosc > threshold)
        return int(self.epochs[over[0]]) if over.size else None

    def flagged_early(self, threshold: float) -> bool:
        e = self.first_over(threshold)
        return e is not None and self.best_epoch is not None and e < self.best_epoch


@dataclass
class GroupResult:
    """Detector numbers of one group of runs (``enough`` False: only the counts are filled in)."""

    name: str
    n_unstable: int
    n_regular: int
    enough: bool
    auc: float | None = None
    auc_low: float | None = None
    auc_high: float | None = None
    auc_p: float | None = None
    threshold: float | None = None
    youden_j: float | None = None
    unstable_flagged: int | None = None
    unstable_early: int | None = None
    regular_flagged: int | None = None
    configured_early: int | None = None
    configured_regular_flagged: int | None = None
    configured_thresholds: list[float] = field(default_factory=list)
    # the other detectors: name -> (n with a score, AUC, interval low, high, p); None when not enough runs
    others: dict[str, tuple[int, float, float, float, float] | None] = field(default_factory=dict)


# --------------------------------------------------------------------------- analysis
def analyse(name: str, traces: list[RunTrace]) -> GroupResult:
    """Detector numbers of one group of runs."""
    uns = [t for t in traces if t.unstable]
    reg = [t for t in traces if not t.unstable]
    res = GroupResult(name, len(uns), len(reg), enough=len(uns) >= MIN_RUNS and len(reg) >= MIN_RUNS)
    res.configured_thresholds = sorted({t.fosc_threshold for t in traces})
    # the configured threshold needs no calibration: its counts are shown whatever the group size
    res.configured_early = sum(t.flagged_early(t.fosc_threshold) for t in uns)
    res.configured_regular_flagged = sum(t.first_over(t.fosc_threshold) is not None for t in reg)
    for name in OTHER_DETECTORS:  # SGCS and GradAlign: AUC alone, each with its own count of scored runs
        p = [t.others.get(name) for t in uns if t.others.get(name) is not None]
        q = [t.others.get(name) for t in reg if t.others.get(name) is not None]
        auc = auc_summary(p, q)
        res.others[name] = None if auc is None else (len(p) + len(q), *auc)
    if not res.enough:
        return res
    pos, neg = [t.peak for t in uns], [t.peak for t in reg]
    res.auc, res.auc_low, res.auc_high, res.auc_p = auc_summary(pos, neg)
    res.threshold, res.youden_j = youden_threshold(pos, neg)
    res.unstable_flagged = sum(t.peak > res.threshold for t in uns)
    res.unstable_early = sum(t.flagged_early(res.threshold) for t in uns)
    res.regular_flagged = sum(t.peak > res.threshold for t in reg)
    return res


def detector_value(epochs: pd.DataFrame | None, name: str) -> float | None:
    """A run's extreme value of detector ``name`` (DETECTORS: peak FOSC and SGCS, lowest GradAlign) from its
    epochs.csv; None when the column is missing or empty."""
    col, how, _ = DETECTORS[name]
    if epochs is None or col not in epochs.columns:
        return None
    vals = pd.to_numeric(epochs[col], errors="coerce").dropna()
    return None if vals.empty else float(getattr(vals, how)())


def oriented(name: str, v: float) -> float:
    """Detector ``name``'s value oriented so that higher means "masking" (GradAlign's lowest value enters negated)."""
    return v if DETECTORS[name][2] == "high" else -v


def detector_score(epochs: pd.DataFrame | None, name: str) -> float | None:
    """:func:`detector_value`, :func:`oriented`."""
    v = detector_value(epochs, name)
    return None if v is None else oriented(name, v)


# --------------------------------------------------------------------------- inputs
def _num(v: Any) -> float | None:
    try:
        f = float(v)
    except (TypeError, ValueError):
        return None
    return f if np.isfinite(f) else None


def load_traces(summary, selection, run_dirs: Mapping[tuple[str, int], str | os.PathLike],
                settings: list[str]) -> tuple[list[RunTrace], list[str]]:
    """Classified runs of ``settings`` with their FOSC series (epochs.csv), and notes naming every run
    left out and why."""
    summary, selection = load_summary(summary), load_selection(selection)
    traces, left_out = [], {}
    for setting in settings:
        rows = summary[summary["setting"] == setting]
        div = diverged_runs(rows, selection, setting)
        for (_, r), diverged in zip(rows.iterrows(), div, strict=True):
            seed = int(r["seed"])
            why = ("diverged" if diverged else "unclassified" if r["unstable"] is None
                   else "trained with the fix" if str(r.get("fix", "")).strip().lower() in ("true", "1") else None)
            path = run_dirs.get((setting, seed))
            epochs = None
            if why is None:
                epochs = read_epochs(path)
                if epochs is None or "val_fosc" not in epochs.columns or epochs["val_fosc"].notna().sum() == 0:
                    why = "no validation FOSC logged"
            if why is not None:
                left_out.setdefault(why, []).append(f"{setting}/{seed}")
                continue
            e = epochs.dropna(subset=["val_fosc"]).sort_values("epoch")
            thr = _num(r.get("fosc_threshold"))
            best = _num(r.get("best_epoch"))
            traces.append(RunTrace(setting, seed, bool(r["unstable"]), None if best is None else int(best),
                                   DEFAULT_FOSC_THRESHOLD if thr is None else thr,
                                   e["epoch"].to_numpy(int), pd.to_numeric(e["val_fosc"]).to_numpy(float),
                                   {name: detector_score(e, name) for name in OTHER_DETECTORS}))
    notes = [f"left out ({why}): {', '.join(runs)}" for why, runs in left_out.items()]
    return traces, notes


@dataclass
class PlantedRun:
    """A planted run (a positive control, README "Planted control"): was it caught, what did the detectors read."""

    setting: str
    seed: int
    plant: str
    fix: bool
    unstable: bool | None  # the Unstable rule's call on it (True: caught)
    gap: float | None  # PGD-10 - Square of its evaluated checkpoint
    peak_fosc: float | None  # peak per-epoch validation FOSC
    peak_fosc_epoch: int | None
    min_sgcs: float | None  # lowest and highest per-epoch validation SGCS (masking by random draws lowers it)
    peak_sgcs: float | None
    min_gradalign: float | None  # lowest per-epoch validation GradAlign (zero gradients read 0)
    test_fosc: float | None  # FOSC and SGCS of the evaluation's PGD-10 on the test examples
    test_sgcs: float | None
    fosc_threshold: float

    @property
    def flagged(self) -> bool:
        """Whether its configured FOSC threshold fired in any epoch (what the fix would react to)."""
        return self.peak_fosc is not None and self.peak_fosc > self.fosc_threshold


def planted_runs(summary, run_dirs: Mapping[tuple[str, int], str | os.PathLike],
                 settings: list[str]) -> list[PlantedRun]:
    """The planted runs of ``settings`` (with the fix too: the Fixed run of a planted seed), in summary order."""
    summary = load_summary(summary)
    if "planted" not in summary.columns:
        return []
    out = []
    for _, r in summary[summary["setting"].isin(settings)].iterrows():
        if str(r.get("planted", "")).strip().lower() not in ("true", "1"):
            continue
        e = read_epochs(run_dirs.get((r["setting"], int(r["seed"]))))
        fosc = pd.to_numeric(e["val_fosc"], errors="coerce") if e is not None and "val_fosc" in e else None
        sgcs = pd.to_numeric(e["val_sgcs"], errors="coerce") if e is not None and "val_sgcs" in e else None
        have = fosc is not None and fosc.notna().any()
        thr = _num(r.get("fosc_threshold"))
        out.append(PlantedRun(
            r["setting"], int(r["seed"]), str(r.get("plant") or "planted"),
            str(r.get("fix", "")).strip().lower() in ("true", "1"), r["unstable"], _num(r.get("gap_pgd_square")),
            float(fosc.max()) if have else None, int(e["epoch"][fosc.idxmax()]) if have else None,
            *((float(sgcs.min()), float(sgcs.max())) if sgcs is not None and sgcs.notna().any() else (None, None)),
            detector_value(e, "GradAlign"),
            _num(r.get("fosc")), _num(r.get("sgcs")), DEFAULT_FOSC_THRESHOLD if thr is None else thr))
    return out


def _cell(v: float | None, fmt: str = ".4f") -> str:
    return "--" if v is None else format(v, fmt)


def planted_rows(report: DetectionReport) -> list[str]:
    """LaTeX rows of the planted block: one per planted run."""
    rows = []
    for p in report.planted:
        caught = {True: "yes", False: "no", None: "--"}[p.unstable]
        rows.append(" & ".join([
            f"{latex_escape(p.setting)}/{p.seed}" + (" (fix)" if p.fix else ""), latex_escape(p.plant), caught,
            _cell(p.gap, "+.4f"), _cell(p.peak_fosc) + (f" (ep. {p.peak_fosc_epoch})" if p.peak_fosc_epoch else ""),
            "yes" if p.flagged else "no", f"{_cell(p.min_sgcs, '.3f')}--{_cell(p.peak_sgcs, '.3f')}",
            _cell(p.min_gradalign, ".3f"),
            _cell(p.test_fosc), _cell(p.test_sgcs, ".3f"),
        ]))
    return rows


@dataclass
class DetectionReport:
    settings: list[str]
    traces: list[RunTrace]
    groups: list[GroupResult]  # pooled first, then one per setting
    notes: list[str]
    planted: list[PlantedRun] = field(default_factory=list)  # the positive control's runs, if any

    @property
    def pooled(self) -> GroupResult:
        return self.groups[0]


def build_detection(summary, selection, run_dirs, settings: list[str]) -> DetectionReport:
    traces, notes = load_traces(summary, selection, run_dirs, settings)
    groups = [analyse(POOLED, traces)]
    groups += [analyse(s, [t for t in traces if t.setting == s]) for s in settings]
    planted = planted_runs(summary, run_dirs, settings)
    keys = {(p.setting, p.seed) for p in planted}
    among = [f"{t.setting}/{t.seed}" for t in traces if (t.setting, t.seed) in keys]
    if among:  # they are classified runs like any other; said so, never hidden
        notes.append(f"planted (a positive control, see the planted block): {', '.join(among)}")
    return DetectionReport(list(settings), traces, groups, notes, planted)


# --------------------------------------------------------------------------- outputs
NOT_ENOUGH = "not enough runs"


def _frac(k: int | None, n: int) -> str:
    return "--" if k is None else f"{k}/{n}"


def table_rows(report: DetectionReport) -> list[list[str]]:
    """LaTeX cells of the detection table, one row per group."""
    rows = []
    for g in report.groups:
        cfg = (f"{_frac(g.configured_early, g.n_unstable)} & {_frac(g.configured_regular_flagged, g.n_regular)}")
        label = r"\textit{all settings}" if g.name == POOLED else latex_escape(g.name)
        head = f"{label} & {g.n_unstable} & {g.n_regular}"
        if not g.enough:
            rows.append(f"{head} & \\multicolumn{{5}}{{c}}{{{NOT_ENOUGH} (need {MIN_RUNS} of each label)}} & {cfg}")
            continue
        rows.append(f"{head} & {g.auc:.2f} [{g.auc_low:.2f}, {g.auc_high:.2f}] & {g.auc_p:.2g} & {g.threshold:.4g} & "
                    f"{_frac(g.unstable_early, g.n_unstable)} & {_frac(g.regular_flagged, g.n_regular)} & {cfg}")
    return rows


def other_rows(report: DetectionReport) -> list[str]:
    """LaTeX rows of the other detectors (SGCS, GradAlign): one per group, AUC [interval] and p of each."""
    rows = []
    for g in report.groups:
        label = r"\textit{all settings}" if g.name == POOLED else latex_escape(g.name)
        cells = []
        for name in OTHER_DETECTORS:
            o = g.others.get(name)
            cells += ([f"{o[1]:.2f} [{o[2]:.2f}, {o[3]:.2f}]", f"{o[4]:.2g}"] if o else
                      [f"\\multicolumn{{2}}{{c}}{{{NOT_ENOUGH}}}"])
        rows.append(" & ".join([label, str(g.n_unstable), str(g.n_regular), *cells]))
    return rows


def runs_frame(report: DetectionReport) -> pd.DataFrame:
    """One row per run: label, peak FOSC, first epoch over the calibrated / configured threshold."""
    t_cal = report.pooled.threshold
    recs = []
    for t in report.traces:
        recs.append({
            "setting": t.setting, "seed": t.seed, "label": "Unstable" if t.unstable else "Regular",
            "best_epoch": t.best_epoch, "peak_val_fosc": round(t.peak, 6), "peak_epoch": t.peak_epoch,
            "calibrated_threshold": None if t_cal is None else round(t_cal, 6),
            "first_epoch_over_calibrated": None if t_cal is None else t.first_over(t_cal),
            "configured_threshold": t.fosc_threshold,
            "first_epoch_over_configured": t.first_over(t.fosc_threshold),
        })
    cols = ["setting", "seed", "label", "best_epoch", "peak_val_fosc", "peak_epoch", "calibrated_threshold",
            "first_epoch_over_calibrated", "configured_threshold", "first_epoch_over_configured"]
    return pd.DataFrame(recs, columns=cols, dtype=object)  # object: epochs stay integers beside empty cells


def draw(report: DetectionReport):
    """(a) every run's FOSC per epoch coloured by label, with the calibrated and configured thresholds;
    (b) the ROC curve of the peak FOSC, or a "not enough runs" panel."""
    from trades_instability.report.figures import none_panel, pyplot

    plt = pyplot()
    fig, (ax, ax_roc) = plt.subplots(1, 2, figsize=(12, 4.5), gridspec_kw={"width_ratios": [1.6, 1]})
    colors = {True: "#d62728", False: "#1f77b4"}
    g = report.pooled
    if not report.traces:
        none_panel(ax, "no classified run (without the fix) in the configured settings")
    else:
        for lab in (False, True):
            for i, t in enumerate(x for x in report.traces if x.unstable is lab):
                ax.plot(t.epochs, t.fosc, color=colors[lab], lw=1.0, alpha=0.7,
                        label=(f"{'Unstable' if lab else 'Regular'} ({g.n_unstable if lab else g.n_regular} runs)"
                               if i == 0 else None))
        for thr in g.configured_thresholds:
            ax.axhline(thr, color="#555555", ls=":", lw=1.2, label=f"configured fix.fosc_threshold = {thr:g}")
        if g.threshold is not None:
            ax.axhline(g.threshold, color="black", ls="--", lw=1.2,
                       label=f"calibrated (Youden's J) = {g.threshold:.4g}")
        ax.set_xlabel("epoch")
        ax.set_ylabel("validation FOSC")
        ax.legend(loc="best", frameon=True, fontsize=8)
    ax.set_title("(a) validation FOSC per epoch")
    if not g.enough:
        none_panel(ax_roc, f"{NOT_ENOUGH} to calibrate: {g.n_unstable} Unstable, {g.n_regular} Regular "
                            f"(need {MIN_RUNS} of each)")
    else:
        pos = np.array([t.peak for t in report.traces if t.unstable])
        neg = np.array([t.peak for t in report.traces if not t.unstable])
        cuts = np.concatenate([[np.inf], np.unique(np.concatenate([pos, neg]))[::-1], [-np.inf]])
        tpr = [(pos >= c).mean() for c in cuts]
        fpr = [(neg >= c).mean() for c in cuts]
        ax_roc.plot(fpr, tpr, color="black", lw=1.6, drawstyle="steps-post",
                    label=f"peak FOSC, AUC {g.auc:.2f} [{g.auc_low:.2f}, {g.auc_high:.2f}]")
        ax_roc.plot([0, 1], [0, 1], color="#999999", ls=":", lw=1)
        ax_roc.plot([g.regular_flagged / g.n_regular], [g.unstable_flagged / g.n_unstable], "o", color="black",
                    label=f"threshold {g.threshold:.4g}")
        ax_roc.set_xlabel("false-positive rate (Regular flagged)")
        ax_roc.set_ylabel("true-positive rate (Unstable flagged)")
        ax_roc.set_xlim(-0.02, 1.02)
        ax_roc.set_ylim(-0.02, 1.02)
        ax_roc.legend(loc="lower right", frameon=True, fontsize=8)
    ax_roc.set_title("(b) ROC of peak validation FOSC")
    fig.tight_layout()
    return fig


def render_detection(summary, selection, run_dirs, settings: list[str], out_tex: str | os.PathLike,
                     out_csv: str | os.PathLike, out_pdf: str | os.PathLike,
                     template_dir: str | os.PathLike | None = None) -> DetectionReport:
    """Write tables/detection.tex (+ the per-run CSV) and figures/detection.pdf (+ PNG)."""
    from trades_instability.report.figures import draw_and_save

    report = build_detection(summary, selection, run_dirs, settings)
    tex = template_env(template_dir).get_template(registry.REGISTRY["detection"].template).render(
        rows=table_rows(report), notes=[latex_escape(n) for n in report.notes], min_runs=MIN_RUNS,
        planted=planted_rows(report), others=other_rows(report),
        settings=", ".join(latex_escape(s) for s in settings), level=int(LEVEL * 100), n_resamples=N_RESAMPLES)
    write_text(out_tex, tex)
    write_text(out_csv, runs_frame(report).to_csv(index=False))
    draw_and_save(lambda: draw(report), out_pdf)
    return report
