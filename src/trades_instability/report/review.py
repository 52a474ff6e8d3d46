"""The ``review`` target (beyond the paper): the questions of the paper's ICLR 2025 reviewers (OpenReview
qx07JhIs8E) and its own open questions, answered from runs the pipeline trains and evaluates itself.

One block per question, each row pooling the runs of one or more settings (config.yaml ``review``):

1. ``seed_sources`` - which randomness makes a run Unstable: the weight initialisation, the data order and
   augmentation, or the attack's starts and the fix's noise (RunConfig ``init_seed`` / ``data_seed`` /
   ``attack_seed``)? One row per source; the block's test: do the sources differ?
2. ``beta`` - is the effect an artefact of beta = 3? P(Unstable) at beta 1 / 3 / 6, with enough beta-6 seeds
   to bound it; when 0 of n runs are Unstable, the exact one-sided 95% upper bound 1 - 0.05^(1/n)
   (the Clopper-Pearson bound for k = 0; about 3/n, the "rule of three").
3. ``methods`` - is it TRADES' logit pairing? TRADES against PGD-AT (Madry et al. 2018) and ALP (Kannan et al.
   2018): P(Unstable), Gap (PGD-10 - AutoAttack), clean accuracy and AutoAttack per method.
4. ``detectors`` - FOSC, SGCS and GradAlign (Andriushchenko & Flammarion 2020) as detectors: ROC AUC of each
   run's extreme validation value (peak FOSC and SGCS, lowest GradAlign) for Unstable vs Regular runs, with a
   bootstrap interval and the Mann-Whitney p-value (report/detection_stats.py).
5. ``noise`` - why trigger the noise by FOSC? No noise vs Algorithm 1 vs always-on noise vs TPGD started
   uniformly in the eps-ball: P(Unstable), clean accuracy and AutoAttack.
6. ``planted`` - the planted gradient-masking control (README "The planted control"), when the config has one.

P(Unstable) rows: k of n classified runs (diverged and unclassified runs left out, as in every table), the
95% Clopper-Pearson interval, and per block the exact Fisher-Freeman-Halton test (scipy.stats.fisher_exact on
the rows x {Unstable, Regular} table) of whether the rows share one P(Unstable).
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd
from scipy import stats

from trades_instability.config.pipeline import parse_entry
from trades_instability.report import comparison_stats, detection
from trades_instability.report.cells import Cell, diverged_runs, load_selection, load_summary, meanstd_cell, prob_cell
from trades_instability.report.detection_stats import MIN_RUNS, N_RESAMPLES, auc_summary
from trades_instability.report.figures import read_epochs
from trades_instability.report.latex import latex_escape, template_env, write_text

LEVEL = comparison_stats.LEVEL
PROB_BLOCKS = {  # block key -> the question it answers (table and figure titles)
    "seed_sources": "Q1. Which randomness makes a run Unstable?",
    "beta": "Q2. Is it an artefact of beta = 3?",
    "methods": "Q4. Is it TRADES' logit pairing? (PGD-AT and ALP have none of it)",
    "noise": "Q5. Why trigger the noise by FOSC?",
}
MEAN_COLUMNS = ("Clean", "AutoAttack", "Gap")  # cells.METRIC_COLUMNS names (Gap: PGD-10 - AutoAttack)
DETECTOR_TITLE = "Q3. FOSC, SGCS and GradAlign as detectors (catastrophic overfitting's alignment)"
PLANTED_TITLE = "Control: planted gradient masking"
DETECTORS = detection.DETECTORS  # the per-epoch detectors, one definition (report/detection.py)


def zero_of_n_upper_bound(n: int, level: float = LEVEL) -> float:
    """Exact one-sided upper confidence bound on P(Unstable) when 0 of n runs are Unstable: 1 - (1 - level)^(1/n)."""
    return 1.0 - (1.0 - level) ** (1.0 / n)


@dataclass
class ProbRow:
    label: str
    settings: list[str]
    k: int | None = None
    n: int = 0
    low: float | None = None
    high: float | None = None
    upper0: float | None = None  # one-sided bound, only when k == 0
    means: dict[str, Cell] = field(default_factory=dict)  # "Clean", "AutoAttack", "Gap": mean +- std cells
    note: str = ""

    @property
    def p(self) -> float | None:
        return self.k / self.n if self.n else None


@dataclass
class ProbBlock:
    key: str
    title: str
    rows: list[ProbRow] = field(default_factory=list)
    test_p: float | None = None
    test_note: str = ""


def _rows_of(summary: pd.DataFrame, entries: list[str]) -> pd.DataFrame:
    mask = pd.Series(False, index=summary.index)
    for entry in entries:
        name, seeds = parse_entry(entry)
        m = summary["setting"] == name
        mask |= m if seeds is None else m & summary["seed"].isin(seeds)
    return summary[mask]


def prob_row(summary: pd.DataFrame, selection: dict, label: str, settings: list[str]) -> ProbRow:
    """One row: the pooled runs' P(Unstable) and means. Planted runs are controls, never findings: left out
    (and named), as the comparison with the paper leaves them out."""
    rows = _rows_of(summary, settings)
    planted = rows["planted"].map(is_planted) if "planted" in rows.columns else pd.Series(False, index=rows.index)
    left_out = [f"{s}/{int(seed)}" for s, seed in zip(rows["setting"][planted], rows["seed"][planted], strict=True)]
    rows = rows[~planted]
    cell = prob_cell(rows, selection, what=", ".join(settings))
    notes = [n for n in (cell.note, f"planted runs left out: {', '.join(left_out)}" if left_out else "") if n]
    row = ProbRow(label, settings, note="; ".join(notes))
    if cell.k is not None and cell.n:
        row.k, row.n = cell.k, cell.n
        row.low, row.high = comparison_stats.proportion_interval(cell.k, cell.n)
        row.upper0 = zero_of_n_upper_bound(cell.n) if cell.k == 0 else None
    row.means = {column: meanstd_cell(rows, column, what=", ".join(settings)) for column in MEAN_COLUMNS}
    return row


def rows_differ_p(rows: list[ProbRow]) -> tuple[float | None, str]:
    """Exact test of one shared P(Unstable) across the rows (Fisher's exact test; Freeman-Halton beyond 2 rows)."""
    have = [r for r in rows if r.n]
    if len(have) < 2:
        return None, "fewer than two rows with classified runs"
    table = np.array([[r.k, r.n - r.k] for r in have])
    if (table.sum(axis=0) == 0).any():
        return 1.0, "every run in the same class"
    return float(stats.fisher_exact(table).pvalue), ""


def prob_block(key: str, groups: Mapping[str, list[str]], summary: pd.DataFrame, selection: dict) -> ProbBlock:
    block = ProbBlock(key, PROB_BLOCKS[key], [prob_row(summary, selection, str(lab), list(s))
                                              for lab, s in groups.items()])
    block.test_p, block.test_note = rows_differ_p(block.rows)
    return block


# ----------------------------------------------------------------------------------------- detectors


def is_planted(value: Any) -> bool:
    """summary.csv's ``planted`` column (empty / false for a normal run, else the planted kind or true)."""
    if value is None or (isinstance(value, float) and np.isnan(value)):
        return False
    return str(value).strip().lower() not in {"", "none", "false", "0", "nan"}


@dataclass
class RunScores:
    setting: str
    seed: int
    unstable: bool
    planted: bool
    scores: dict[str, float | None]
    epochs: pd.DataFrame | None = None


def run_scores(summary: pd.DataFrame, selection: dict, run_dirs: Mapping[tuple[str, int], Any],
               settings: list[str]) -> list[RunScores]:
    """Each classified, non-diverged run of ``settings`` with its extreme value of every detector."""
    out = []
    rows = _rows_of(summary, settings)
    for setting in dict.fromkeys(parse_entry(e)[0] for e in settings):
        part = rows[rows["setting"] == setting]
        part = part[~diverged_runs(part, selection, setting)]
        for _, r in part.iterrows():
            if r["unstable"] is None:
                continue
            ep = read_epochs(run_dirs.get((setting, int(r["seed"]))))
            scores = {name: detection.detector_value(ep, name) for name in DETECTORS}
            out.append(RunScores(setting, int(r["seed"]), bool(r["unstable"]), is_planted(r.get("planted")), scores,
                                 ep))
    return out


@dataclass
class DetectorRow:
    name: str
    n_unstable: int
    n_regular: int
    auc: float | None = None
    low: float | None = None
    high: float | None = None
    p: float | None = None
    note: str = ""


def detector_rows(runs: list[RunScores]) -> list[DetectorRow]:
    out = []
    for name in DETECTORS:
        pos = [detection.oriented(name, r.scores[name]) for r in runs if r.unstable and r.scores[name] is not None]
        neg = [detection.oriented(name, r.scores[name]) for r in runs if not r.unstable and r.scores[name] is not None]
        row = DetectorRow(name, len(pos), len(neg))
        auc = auc_summary(pos, neg)
        if auc is None:
            row.note = f"{detection.NOT_ENOUGH}: {len(pos)} Unstable, {len(neg)} Regular"
        else:
            row.auc, row.low, row.high, row.p = auc
        out.append(row)
    return out


# ----------------------------------------------------------------------------------------- the report


@dataclass
class ReviewReport:
    prob_blocks: list[ProbBlock]
    detector_setting: list[str]
    detectors: list[DetectorRow]
    runs: list[RunScores]

    @property
    def planted(self) -> list[RunScores]:
        return [r for r in self.runs if r.planted]


def build_review(review: Mapping[str, Any], summary, selection, run_dirs) -> ReviewReport:
    summary, selection = load_summary(summary), load_selection(selection)
    blocks = [prob_block(key, review[key], summary, selection) for key in PROB_BLOCKS if key in review]
    det_settings = list(review.get("detectors", {}).get("settings", []))
    runs = run_scores(summary, selection, run_dirs, det_settings)
    return ReviewReport(blocks, det_settings, detector_rows([r for r in runs if not r.planted]), runs)


def _f(v: float | None, digits: int = 2) -> str:
    return "--" if v is None else f"{v:.{digits}f}"


def table_frame(report: ReviewReport) -> pd.DataFrame:
    """Every row of every block, one CSV line each (tables/review.csv)."""
    lines = []
    for b in report.prob_blocks:
        for r in b.rows:
            lines.append({"block": b.key, "row": r.label, "settings": " ".join(r.settings), "k_unstable": r.k,
                          "n": r.n, "p_unstable": r.p, "ci_low": r.low, "ci_high": r.high, "upper95_if_zero": r.upper0,
                          **{c.lower(): r.means[c].text() for c in MEAN_COLUMNS}, "block_test_p": b.test_p,
                          "note": r.note})
    for d in report.detectors:
        lines.append({"block": "detectors", "row": d.name, "settings": " ".join(report.detector_setting),
                      "n": d.n_unstable + d.n_regular, "auc": d.auc, "ci_low": d.low, "ci_high": d.high,
                      "block_test_p": d.p, "note": d.note})
    for r in report.planted:
        lines.append({"block": "planted", "row": f"{r.setting} seed {r.seed}", "settings": r.setting,
                      "caught_unstable": r.unstable, **{f"{k.lower()}_extreme": v for k, v in r.scores.items()}})
    return pd.DataFrame(lines)


def _prob_latex(r: ProbRow) -> list[str]:
    frac = f"{r.k}/{r.n}" if r.n else "--"
    ci = f"[{r.low:.2f}, {r.high:.2f}]" if r.low is not None else "--"
    bound = f"$\\leq$ {r.upper0:.2f}" if r.upper0 is not None else ""
    return [latex_escape(r.label), latex_escape(", ".join(r.settings)), frac, _f(r.p), ci, bound,
            *(r.means[c].latex() for c in MEAN_COLUMNS)]


def render_review(review: Mapping[str, Any], summary, selection, run_dirs, out_tex: str | os.PathLike,
                  out_csv: str | os.PathLike, out_pdf: str | os.PathLike,
                  template_dir: str | os.PathLike | None = None) -> ReviewReport:
    """Write tables/review.tex (+ .csv) and figures/review.pdf (+ .png)."""
    from trades_instability.report.figures import draw_and_save

    report = build_review(review, summary, selection, run_dirs)
    blocks = [{"key": b.key, "title": latex_escape(b.title), "rows": [_prob_latex(r) for r in b.rows],
               "test": ("--" if b.test_p is None else f"{b.test_p:.3g}"), "note": latex_escape(b.test_note),
               "notes": [latex_escape(f"{r.label}: {r.note}") for r in b.rows if r.note]} for b in report.prob_blocks]
    detectors = [] if not report.detector_setting else [[d.name, str(d.n_unstable), str(d.n_regular), _f(d.auc),
                  f"[{d.low:.2f}, {d.high:.2f}]" if d.low is not None else "--", _f(d.p, 3), latex_escape(d.note)]
                 for d in report.detectors]
    planted = [[latex_escape(f"{r.setting} seed {r.seed}"), "yes" if r.unstable else "no",
                *(_f(r.scores[k], 3) for k in DETECTORS)] for r in report.planted]
    tex = template_env(template_dir).get_template("review.tex.j2").render(
        blocks=blocks, detectors=detectors, detector_title=latex_escape(DETECTOR_TITLE),
        detector_settings=latex_escape(", ".join(report.detector_setting)), planted=planted,
        planted_title=latex_escape(PLANTED_TITLE), level=int(LEVEL * 100), n_resamples=N_RESAMPLES)
    write_text(out_tex, tex)
    write_text(out_csv, table_frame(report).to_csv(index=False))
    draw_and_save(lambda: draw(report), out_pdf)
    return report


def draw(report: ReviewReport):
    """Top row: P(Unstable) with its interval, one panel per question; bottom row: FOSC, SGCS and GradAlign per
    epoch (mean over runs), Regular vs Unstable (planted runs apart), on the detector settings."""
    from trades_instability.report.figures import none_panel, pyplot

    plt = pyplot()
    fig, axes = plt.subplots(2, 4, figsize=(16, 7.5))
    for ax, key in zip(axes[0], PROB_BLOCKS, strict=True):
        block = next((b for b in report.prob_blocks if b.key == key), None)
        ax.set_title(PROB_BLOCKS[key], fontsize=9)
        rows = [r for r in (block.rows if block else []) if r.n]
        if not rows:
            none_panel(ax, "no classified run in this block")
            continue
        xs = np.arange(len(rows))
        p = np.array([r.p for r in rows])
        err = np.array([[r.p - r.low for r in rows], [r.high - r.p for r in rows]])
        ax.errorbar(xs, p, yerr=err, fmt="o", color="black", capsize=4)
        ax.set_xticks(xs, [f"{r.label}\n{r.k}/{r.n}" for r in rows], fontsize=8, rotation=20)
        ax.set_ylim(-0.05, 1.05)
        ax.set_xlim(-0.6, len(rows) - 0.4)
        ax.set_ylabel("P(Unstable), 95% CI")
        if block.test_p is not None:
            ax.text(0.02, 0.95, f"Fisher p = {block.test_p:.3g}", transform=ax.transAxes, fontsize=8, va="top")
    groups = {"Regular": (False, False, "#1f77b4"), "Unstable": (True, False, "#d62728"),
              "planted": (True, True, "#7f7f7f")}
    for ax, (name, (col, _, direction)) in zip(axes[1][:3], DETECTORS.items(), strict=True):
        ax.set_title(f"validation {name} per epoch ({'high' if direction == 'high' else 'low'} = masking?)",
                     fontsize=9)
        drawn = False
        for label, (unstable, planted, color) in groups.items():
            curves = [r.epochs.set_index("epoch")[col] for r in report.runs
                      if r.epochs is not None and col in r.epochs and r.unstable == unstable and r.planted == planted]
            if not curves:
                continue
            mean = pd.concat(curves, axis=1).apply(pd.to_numeric, errors="coerce").mean(axis=1)
            ax.plot(mean.index, mean.values, color=color, lw=1.6, label=f"{label} ({len(curves)} runs)")
            drawn = True
        if drawn:
            ax.set_xlabel("epoch")
            ax.legend(fontsize=8)
        else:
            none_panel(ax, f"no run with {col} in {', '.join(report.detector_setting) or 'no setting'}")
    ax = axes[1][3]
    ax.set_title("detector AUC (Unstable vs Regular), 95% CI", fontsize=9)
    have = [d for d in report.detectors if d.auc is not None]
    if have:
        xs = np.arange(len(have))
        ax.errorbar(xs, [d.auc for d in have], yerr=[[d.auc - d.low for d in have], [d.high - d.auc for d in have]],
                    fmt="s", color="black", capsize=4)
        ax.axhline(0.5, color="#999999", ls=":")
        ax.set_xticks(xs, [d.name for d in have])
        ax.set_ylim(-0.05, 1.05)
        ax.set_xlim(-0.6, len(have) - 0.4)
    else:
        notes = list(dict.fromkeys(d.note for d in report.detectors))  # the same note for every detector
        none_panel(ax, "\n".join(notes) + f"\n(need {MIN_RUNS} of each)" if notes else "no detector setting")
    fig.tight_layout()
    return fig
