"""The reproduced-table model and its cells, computed from ``results/summary.csv`` and ``selection.json``.

A table is a :class:`TableModel`: panels (:class:`Panel`) of labelled :class:`Cell` objects. The cells
follow the same rules everywhere (see report/tables.py): mean ± std over the runs of a row
(:func:`meanstd_cell`), ``k/n`` Unstable over the classified runs (:func:`prob_cell`), diverged runs left out
and named, ``--`` with a note where there is nothing to show. The input helpers (:func:`load_summary`,
:func:`load_selection`, :func:`representative_seed`, :func:`diverged_runs`, ...) are shared by the tables, the
figures, the grids and the FOSC detector.
"""

from __future__ import annotations

import json
import math
import os
import string
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from trades_instability.report.latex import latex_escape, seed_list

# Paper column -> summary.csv column
METRIC_COLUMNS = {
    "Clean": "clean_acc",
    "PGD-10": "pgd10_acc",
    "AutoAttack": "autoattack_acc",
    "APGD-CE": "apgd_ce_acc",
    "APGD-DLR": "apgd_t_acc",
    "FAB": "fab_t_acc",
    "Square": "square_acc",
    "Gap": "gap_pgd_aa",
}
MEANSTD_COLUMNS = ["Clean", "PGD-10", "AutoAttack", "Gap"]
PROB_COLUMN = "Prob."
EMPTY_LABEL = "(none)"  # row/column label of a panel without any run


# --------------------------------------------------------------------------- cells and models
@dataclass
class Cell:
    """One reproduced cell.

    kind: ``value`` (one run's accuracy), ``meanstd`` (mean/std over runs), ``prob`` (k of n runs
    unstable) or ``none`` (nothing to show; ``note`` says why). ``value`` is the accuracy, the mean
    or ``k / n``. ``seeds`` are the runs behind the cell.
    """

    kind: str
    value: float | None = None
    std: float | None = None
    k: int | None = None
    n: int | None = None
    seeds: list[int] = field(default_factory=list)
    note: str | None = None
    marker: str | None = None  # footnote letter, set when the model is finalised

    @property
    def is_none(self) -> bool:
        return self.kind == "none"

    def text(self) -> str:
        """Plain text (CSV / comparison): ``0.5342 ± 0.0019``, ``7/10``, ``0.1215``, ``--``."""
        return self._render(pm="±", mark="", bold=False)

    def latex(self) -> str:
        mark = rf"\textsuperscript{{{self.marker}}}" if self.marker else ""
        return self._render(pm=r"$\pm$", mark=mark, bold=True)

    def _render(self, *, pm: str, mark: str, bold: bool) -> str:
        if self.kind == "none" or self.value is None:
            return "--" + mark
        if self.kind == "prob":
            majority = bold and self.k is not None and self.n and self.k > self.n / 2
            k = rf"\textbf{{{self.k}}}" if majority else str(self.k)
            return f"{k}/{self.n}{mark}"
        if self.kind == "meanstd" and self.std is not None and math.isfinite(self.std):
            return f"{self.value:.4f} {pm} {self.std:.4f}{mark}"
        return f"{self.value:.4f}{mark}"


def none_cell(note: str) -> Cell:
    return Cell("none", note=note)


@dataclass
class Panel:
    """A grid of cells. ``rows``/``columns`` are canonical labels (``"Regular"``, ``"beta=1"``,
    ``"batch_size=128"``, ``"Clean"``); ``*_headers`` the LaTeX shown for them."""

    title: str
    rows: list[str]
    columns: list[str]
    cells: dict[tuple[str, str], Cell]
    row_var: str | None = None
    col_var: str | None = None
    corner: str = ""
    row_headers: dict[str, str] = field(default_factory=dict)
    column_headers: dict[str, str] = field(default_factory=dict)

    def cell(self, row: str, column: str) -> Cell:
        return self.cells[(row, column)]

    def latex_rows(self) -> list[list[str]]:
        return [[self.row_headers.get(r, latex_escape(r))] + [self.cells[(r, c)].latex() for c in self.columns]
                for r in self.rows]

    def latex_header(self) -> list[str]:
        return [self.corner] + [self.column_headers.get(c, latex_escape(c)) for c in self.columns]


@dataclass
class TableModel:
    name: str
    panels: list[Panel]
    notes: list[str] = field(default_factory=list)  # general notes (no marker)
    info: dict[str, Any] = field(default_factory=dict)  # facts for the caption (settings, seeds, ...)
    footnotes: list[tuple[str, str]] = field(default_factory=list)  # (letter, text), set by finalise()

    def finalise(self) -> TableModel:
        """Give every distinct cell note a footnote letter."""
        letters: dict[str, str] = {}
        pool = list(string.ascii_lowercase)
        for panel in self.panels:
            for r in panel.rows:
                for c in panel.columns:
                    cell = panel.cells[(r, c)]
                    if cell.note:
                        if cell.note not in letters:
                            letters[cell.note] = pool[len(letters) % len(pool)] * (1 + len(letters) // len(pool))
                        cell.marker = letters[cell.note]
        self.footnotes = [(letter, note) for note, letter in letters.items()]
        self.notes = list(dict.fromkeys(self.notes))
        self.info.setdefault("excluded", [])
        return self

    def find(self, row: str, column: str, *, row_var: str | None = None, col_var: str | None = None) -> Cell | None:
        for panel in self.panels:
            if (row_var is None or panel.row_var == row_var) and (col_var is None or panel.col_var == col_var):
                if (row, column) in panel.cells:
                    return panel.cells[(row, column)]
        return None


# --------------------------------------------------------------------------- inputs
def load_summary(summary: pd.DataFrame | str | os.PathLike) -> pd.DataFrame:
    """summary.csv as a DataFrame with ``seed`` int, ``unstable`` as True/False/None, ``status`` str."""
    df = summary.copy() if isinstance(summary, pd.DataFrame) else pd.read_csv(summary)
    if "setting" not in df.columns or "seed" not in df.columns:
        raise ValueError("summary needs the columns 'setting' and 'seed' (the summary.csv columns of aggregate.py)")
    df["setting"] = df["setting"].astype(str)
    df["seed"] = pd.to_numeric(df["seed"], errors="raise").astype(int)
    if "unstable" in df.columns:
        df["unstable"] = df["unstable"].map(to_bool).astype(object)
    else:
        df["unstable"] = None
    if "status" not in df.columns:
        df["status"] = "complete"
    df["status"] = df["status"].fillna("").astype(str)
    return df


def load_selection(selection: Mapping | str | os.PathLike) -> dict:
    """selection.json (a path or an already loaded mapping) as a dict."""
    if isinstance(selection, Mapping):
        return dict(selection)
    return json.loads(Path(selection).read_text())


def to_bool(v: Any) -> bool | None:
    """A summary.csv ``unstable`` value as True / False / None (empty, NaN, unreadable)."""
    if v is None:
        return None
    if isinstance(v, (bool, np.bool_)):
        return bool(v)
    if isinstance(v, (int, float, np.integer, np.floating)):
        return None if isinstance(v, float) and math.isnan(v) else bool(v)
    s = str(v).strip().lower()
    if s in {"true", "1", "yes", "t"}:
        return True
    if s in {"false", "0", "no", "f"}:
        return False
    return None


def planted_rows(summary: pd.DataFrame, settings: list[str]) -> pd.DataFrame:
    """The planted runs (a positive control, README "Planted control") of ``settings``, in summary order; none
    when summary.csv has no ``planted`` column (an older one)."""
    if "planted" not in summary.columns:
        return summary.iloc[0:0]
    return summary[summary["setting"].isin(settings) & summary["planted"].map(to_bool).eq(True)]


def as_number(v: Any) -> float | None:
    """A finite float, or None (empty, NaN, inf, not a number)."""
    try:
        f = float(v)
    except (TypeError, ValueError):
        return None
    return f if math.isfinite(f) else None


def group_of(selection: dict, setting: str) -> dict:
    """selection.json's groups of one setting (``regular``, ``unstable``, ``diverged``, ``representative``, ...)."""
    return (selection.get("groups") or {}).get(setting) or {}


def group_seeds(selection: dict, setting: str, group: str) -> list[int]:
    """Seeds of one group of a setting (empty when none)."""
    return [int(s) for s in (group_of(selection, setting).get(group) or [])]


def representative_seed(selection: dict, setting: str, group: str) -> int | None:
    """selection.json's representative seed of a group; the first seed of the group if none is named."""
    g = group_of(selection, setting)
    rep = (g.get("representative") or {}).get(group)
    if rep is not None:
        return int(rep)
    seeds = g.get(group) or []
    return int(seeds[0]) if seeds else None


def diverged_runs(rows: pd.DataFrame, selection: dict, setting: str) -> pd.Series:
    """Mask of the ``rows`` (runs of ``setting``) that diverged: status ``diverged`` or listed in selection.json."""
    listed = set(group_seeds(selection, setting, "diverged"))
    return (rows["status"].str.lower() == "diverged") | rows["seed"].isin(listed)


def runs_of(summary: pd.DataFrame, setting: str) -> pd.DataFrame:
    """The summary rows of one setting."""
    return summary[summary["setting"] == setting]


def run_metric(row: pd.Series, column: str) -> float | None:
    """One run's value of a paper column (Gap computed from PGD-10 and AutoAttack if needed)."""
    v = as_number(row.get(METRIC_COLUMNS[column]))
    if v is None and column == "Gap":
        p, a = as_number(row.get("pgd10_acc")), as_number(row.get("autoattack_acc"))
        v = p - a if p is not None and a is not None else None
    return v


# --------------------------------------------------------------------------- cell builders
def meanstd_cell(rows: pd.DataFrame, column: str, ddof: int = 1, what: str = "") -> Cell:
    """Mean ± std of a paper column over the given runs; ``--`` when no run has the value."""
    vals = [(int(r["seed"]), run_metric(r, column)) for _, r in rows.iterrows()]
    have = [(s, v) for s, v in vals if v is not None]
    if not vals:
        return none_cell(f"no run{(' in ' + what) if what else ''}")
    if not have:
        return none_cell(f"{column} not evaluated for {what or 'these runs'} (summary column "
                         f"{METRIC_COLUMNS[column]} empty)")
    seeds = [s for s, _ in have]
    arr = np.array([v for _, v in have], dtype=float)
    std = float(arr.std(ddof=ddof)) if len(arr) > ddof else float("nan")
    note = None
    if len(arr) <= ddof:
        note = f"single run (seed {seeds[0]}): no standard deviation"
    missing = [s for s, v in vals if v is None]
    if missing:
        note = f"{column} missing for seed(s) {seed_list(missing)}; mean over the others"
    return Cell("meanstd", float(arr.mean()), std, seeds=seeds, note=note)


def prob_cell(rows: pd.DataFrame, selection: dict, what: str = "") -> Cell:
    """k/n unstable over the runs that have a classification; diverged runs excluded (noted)."""
    if rows.empty:
        return none_cell(f"no run of {what}" if what else "no run")
    div = pd.Series(False, index=rows.index)
    for setting in rows["setting"].unique():
        m = rows["setting"] == setting
        div[m] = diverged_runs(rows[m], selection, setting)
    live = rows[~div]
    cls = live[live["unstable"].map(lambda v: v is not None)]
    notes = []
    if div.any():
        notes.append(f"diverged runs excluded: seed(s) {seed_list(rows[div]['seed'].tolist())}")
    unclassified = live[live["unstable"].map(lambda v: v is None)]
    if not unclassified.empty:
        notes.append(f"no classification for seed(s) {seed_list(unclassified['seed'].tolist())}")
    if cls.empty:
        return none_cell("; ".join(notes) or "no classified run")
    k = int(sum(bool(v) for v in cls["unstable"]))
    return Cell("prob", k / len(cls), k=k, n=len(cls), seeds=sorted(cls["seed"].tolist()),
                note="; ".join(notes) or None)
