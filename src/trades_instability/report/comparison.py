"""Paper vs reproduction: every published cell of Tables 1-7 (:mod:`trades_instability.report.paper_results`)
beside the reproduced one (:func:`trades_instability.report.tables.build_table`), with the 95% interval of ours,
the test against the paper's cell and a verdict (:mod:`trades_instability.report.comparison_stats`), as LaTeX
(``comparison.tex.j2``) and CSV."""

from __future__ import annotations

import math
import os
import string
from collections.abc import Mapping
from typing import Any

import pandas as pd

from trades_instability.report import comparison_stats as CS
from trades_instability.report.cells import Cell, as_number, load_selection, load_summary
from trades_instability.report.latex import latex_escape, template_env, write_text
from trades_instability.report.paper_results import TABLES, panel_vars, paper_cells
from trades_instability.report.tables import build_table

COMPARISON_COLUMNS = ["table", "panel", "row", "column", "kind", "paper", "paper_std", "paper_n", "paper_text",
                      "reproduced", "reproduced_std", "reproduced_text", "difference", "n_runs", "seeds", "note",
                      "ci_low", "ci_high", "test", "p_value", "verdict", "verdict_note"]


def without_planted(summary: pd.DataFrame, selection: dict) -> tuple[pd.DataFrame, dict, list[str]]:
    """The summary and selection the comparison reads: planted runs (summary.csv ``planted``; a positive
    control, README "Planted control") left out, and every group of selection.json chosen again by the same
    rules (aggregate.select) from the runs that remain, so no paper cell holds a planted run, not even as
    a representative or through the Fixed row's seed. Also returns ``setting/seed`` of the runs left out."""
    from trades_instability import aggregate
    from trades_instability.report.cells import to_bool

    if "planted" not in summary.columns:
        return summary, selection, []
    planted = summary["planted"].map(lambda v: to_bool(v) is True)
    if not planted.any():
        return summary, selection, []
    kept = summary[~planted].copy()
    for c in ("fix", "self_healing"):
        if c in kept.columns:
            kept[c] = kept[c].map(to_bool).astype(object)
    # a self-healing run's peak is its max validation FOSC (aggregate.self_healing_peak)
    peaks = {(r["setting"], int(r["seed"])): as_number(r.get("max_val_fosc"))
             for _, r in kept.iterrows() if r.get("self_healing") is True}
    threshold = selection.get("threshold", aggregate.DEFAULT_THRESHOLD)
    chosen = aggregate.select(kept, peaks, threshold) if not kept.empty else {"groups": {}}
    out = {**selection, "groups": chosen["groups"]}
    left = [f"{r['setting']}/{int(r['seed'])}" for _, r in summary[planted].iterrows()]
    return kept, out, left


def comparison_frame(summary, selection, specs: Mapping) -> pd.DataFrame:
    """One row per published cell of Tables 1-7 with the reproduced value beside it.

    ``paper``/``reproduced`` are the accuracy, the mean, or k/n as a fraction; ``*_std`` the stds;
    ``difference`` = reproduced - paper (empty when either is missing); ``ci_low``/``ci_high`` the 95%
    interval of ours, ``test``/``p_value``/``verdict``/``verdict_note`` the test against the paper's cell
    (:mod:`trades_instability.report.comparison_stats`)."""
    summary, selection, _left = without_planted(load_summary(summary), load_selection(selection))
    records = []
    for table in TABLES:
        spec = (specs or {}).get(table)
        model, err = None, None
        if spec:
            try:
                model = build_table(table, spec, summary, selection)
            except (ValueError, KeyError) as e:  # a broken spec must not hide the other tables
                err = f"table not built: {e}"
        else:
            err = f"config key 'tables.{table}' missing: not reproduced"
        pvars = {title: (rv, cv) for title, rv, cv in panel_vars(table)}
        for pc in paper_cells(table):
            cell = None
            if model is not None:
                rv, cv = pvars[pc.panel]
                cell = model.find(pc.row, pc.column, row_var=rv if cv else None, col_var=cv)
            rec = {"table": table, "panel": pc.panel, "row": pc.row, "column": pc.column, "kind": pc.kind,
                   "paper": pc.value, "paper_std": pc.std, "paper_n": pc.n, "paper_text": pc.text}
            if cell is None or cell.is_none or cell.value is None:
                note = err or (cell.note if cell is not None else "not in the reproduced table")
                rec.update(reproduced=None, reproduced_std=None, reproduced_text="--", difference=None,
                           n_runs=(0 if cell is None else len(cell.seeds)), seeds="", note=note)
                verdict = CS.missing_verdict(note)
            else:
                std = cell.std if cell.std is not None and math.isfinite(cell.std) else None
                rec.update(reproduced=cell.value, reproduced_std=std, reproduced_text=cell.text(),
                           difference=cell.value - pc.value,
                           n_runs=(cell.n if cell.kind == "prob" else len(cell.seeds)),
                           seeds=" ".join(str(s) for s in cell.seeds), note=cell.note or "")
                verdict = cell_verdict(pc, cell, int(model.info.get("ddof", 1)))
            rec.update(ci_low=verdict.low, ci_high=verdict.high, test=verdict.test, p_value=verdict.p_value,
                       verdict=verdict.verdict, verdict_note=verdict.note)
            records.append(rec)
    return pd.DataFrame.from_records(records, columns=COMPARISON_COLUMNS)


def cell_verdict(pc, cell: Cell, ddof: int) -> CS.Verdict:
    """Interval + test of one reproduced cell against its published cell."""
    if pc.kind == "value" or cell.kind == "value":
        return CS.single_run_verdict()
    if pc.kind == "prob":
        return CS.prob_verdict(cell.k, cell.n, pc.k, pc.n)
    n = len(cell.seeds)
    std = cell.std
    if std is not None and math.isfinite(std) and ddof == 0 and n > 1:  # the tests want the sample std
        std = std * math.sqrt(n / (n - 1))
    bounds = (-1.0, 1.0) if pc.column == "Gap" else (0.0, 1.0)  # a gap of accuracies, or an accuracy
    return CS.meanstd_verdict(cell.value, std, n, pc.value, pc.std, pc.n, paper_n_assumed=pc.n_assumed,
                              bounds=bounds)


def _fmt_num(v: Any, kind: str) -> str:
    f = as_number(v)
    if f is None:
        return "--"
    return f"{f:+.4f}" if kind == "diff" else f"{f:.4f}"


def _fmt_p(v: Any) -> str:
    f = as_number(v)
    if f is None:
        return "--"
    return f"{f:.2g}" if f >= 0.001 else f"{f:.1e}"


def _fmt_ci(low: Any, high: Any) -> str:
    lo, hi = as_number(low), as_number(high)
    return "--" if lo is None or hi is None else f"[{lo:.4f}, {hi:.4f}]"


def verdict_summary(df: pd.DataFrame) -> list[str]:
    """One line per table (``Table 2: 18 cells, 13 consistent, 2 differ, 3 not testable``) and one for all."""
    lines = [CS.summary_line(f"Table {t.removeprefix('table')}", CS.count_verdicts(df.loc[df["table"] == t, "verdict"]))
             for t in TABLES]
    return lines + [CS.summary_line("All tables", CS.count_verdicts(df["verdict"]))]


def render_comparison(summary, selection, specs: Mapping, out_tex: str | os.PathLike, out_csv: str | os.PathLike,
                      template_dir: str | os.PathLike | None = None) -> pd.DataFrame:
    """Write the paper-vs-reproduced comparison of every cell of Tables 1-7, with intervals, tests and
    verdicts, as LaTeX and CSV."""
    summary, selection, left = without_planted(load_summary(summary), load_selection(selection))
    df = comparison_frame(summary, selection, specs)  # its own without_planted finds nothing left to drop
    lines = verdict_summary(df)
    if left:  # said once, in the header comments (README "Planted control")
        lines_shown = lines + [f"Planted runs (a positive control) left out of every cell: {', '.join(left)}"]
    else:
        lines_shown = lines
    blocks = []
    for i, table in enumerate(TABLES):
        sub = df[df["table"] == table]
        rows, letters = [], {}
        for _, r in sub.iterrows():
            diff = _fmt_num(r["difference"], "diff")
            paper = r["paper_text"].replace("±", r"$\pm$")
            repro = r["reproduced_text"].replace("±", r"$\pm$")
            verdict = r["verdict"]
            if verdict == CS.DIFFERS:  # the cells a reader must look at
                verdict = r"\textbf{differs}"
            note = r["verdict_note"]
            if note:
                letter = letters.setdefault(note, string.ascii_lowercase[len(letters) % 26] * (1 + len(letters) // 26))
                verdict += rf"\textsuperscript{{{letter}}}"
            row_label = r["row"] if not r["panel"] else f"{r['panel']}: {r['row']}"
            rows.append([latex_escape(row_label), latex_escape(r["column"]), paper, repro, diff,
                         _fmt_ci(r["ci_low"], r["ci_high"]),
                         str(int(r["n_runs"])) if as_number(r["n_runs"]) is not None else "0",
                         _fmt_p(r["p_value"]), verdict])
        blocks.append({"table": table, "number": table.removeprefix("table"), "rows": rows,
                       "summary": lines[i], "notes": [(lt, latex_escape(n)) for n, lt in letters.items()]})
    env = template_env(template_dir)
    tex = env.get_template("comparison.tex.j2").render(blocks=blocks, overall=lines[-1], alpha=CS.ALPHA,
                                                      lines=lines_shown)
    write_text(out_tex, tex)
    rounded = df.copy()
    for col in ("paper", "paper_std", "reproduced", "reproduced_std", "difference", "ci_low", "ci_high"):
        rounded[col] = pd.to_numeric(rounded[col], errors="coerce").round(6)
    rounded["p_value"] = pd.to_numeric(rounded["p_value"], errors="coerce").map(
        lambda v: "" if pd.isna(v) else f"{v:.4g}")
    rounded["paper_n"] = rounded["paper_n"].map(lambda v: "" if v is None or pd.isna(v) else str(int(v)))
    write_text(out_csv, rounded.to_csv(index=False))
    return df
