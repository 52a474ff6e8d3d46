"""Tables 1-7 of the paper rendered from ``results/summary.csv`` and ``results/selection.json``.

Every table is first computed into a :class:`TableModel` (panels of labelled :class:`Cell` objects;
see :func:`build_table`) and then written as LaTeX through a jinja2 template in
``workflow/templates/`` (:func:`render_table`). :func:`render_comparison` sets each published cell
(:mod:`trades_instability.report.paper_results`) beside the reproduced one.

Rules (the same everywhere):

* accuracies are fractions printed with 4 decimals, as in the paper; mean and standard deviation are
  taken over the runs (seeds) of a row, std with ``ddof`` = ``spec["ddof"]`` (default 1, the sample
  standard deviation; the paper does not say which it uses);
* Gap = PGD-10 - AutoAttack per run (summary column ``gap_pgd_aa``; computed from the two accuracies
  where that column is empty), then averaged;
* probabilities are ``k/n``: ``k`` runs with ``unstable`` true out of the ``n`` runs of the cell that
  have a classification; diverged runs (``status == "diverged"`` or listed as diverged in
  selection.json) are left out and named in a note; ``k`` is bold when ``k > n/2``;
* Regular / Unstable rows use the seed lists of selection.json; Table 1 uses the representative
  seeds; Table 3's Fixed row takes the runs of the ``fixed`` setting whose seeds are Unstable in
  the ``regular_unstable`` setting;
* a cell with nothing to show prints ``--`` with a lettered footnote saying why; no number is invented.
"""

from __future__ import annotations

import json
import math
import os
import string
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping

import numpy as np
import pandas as pd

from trades_instability.report import comparison_stats as CS
from trades_instability.report.paper_results import TABLES, format_key, key_label, panel_vars, paper_cells

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
TABLE1_COLUMNS = ["Clean", "PGD-10", "AutoAttack", "APGD-CE", "APGD-DLR", "FAB", "Square"]
MEANSTD_COLUMNS = ["Clean", "PGD-10", "AutoAttack", "Gap"]
PROB_COLUMN = "Prob."
EMPTY_LABEL = "(none)"  # row/column label of a panel without any run

VAR_LATEX = {"beta": r"$\beta$", "batch_size": "batch size", "lr": "learning rate", "dataset": "dataset"}
DATASET_LATEX = {"cifar10": "CIFAR-10", "cifar100": "CIFAR-100", "tinyimagenet": "Tiny-ImageNet-200",
                 "synthetic": "synthetic"}

_LATEX_SPECIAL = {
    "\\": r"\textbackslash{}", "&": r"\&", "%": r"\%", "$": r"\$", "#": r"\#", "_": r"\_",
    "{": r"\{", "}": r"\}", "~": r"\textasciitilde{}", "^": r"\textasciicircum{}",
    "<": r"\textless{}", ">": r"\textgreater{}",
}


def latex_escape(text: Any) -> str:
    """Escape text for LaTeX (underscores in setting names, %, &, ...)."""
    return "".join(_LATEX_SPECIAL.get(ch, ch) for ch in str(text))


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

    def finalise(self) -> "TableModel":
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
        df["unstable"] = df["unstable"].map(_to_bool).astype(object)
    else:
        df["unstable"] = None
    if "status" not in df.columns:
        df["status"] = "complete"
    df["status"] = df["status"].fillna("").astype(str)
    return df


def load_selection(selection: Mapping | str | os.PathLike) -> dict:
    if isinstance(selection, Mapping):
        return dict(selection)
    return json.loads(Path(selection).read_text())


def _to_bool(v: Any) -> bool | None:
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


def _num(v: Any) -> float | None:
    try:
        f = float(v)
    except (TypeError, ValueError):
        return None
    return f if math.isfinite(f) else None


def _group(selection: dict, setting: str) -> dict:
    return (selection.get("groups") or {}).get(setting) or {}


def _group_seeds(selection: dict, setting: str, group: str) -> list[int]:
    return [int(s) for s in (_group(selection, setting).get(group) or [])]


def representative_seed(selection: dict, setting: str, group: str) -> int | None:
    """selection.json's representative seed of a group; the first seed of the group if none is named."""
    g = _group(selection, setting)
    rep = (g.get("representative") or {}).get(group)
    if rep is not None:
        return int(rep)
    seeds = g.get(group) or []
    return int(seeds[0]) if seeds else None


def _diverged(rows: pd.DataFrame, selection: dict, setting: str) -> pd.Series:
    listed = set(_group_seeds(selection, setting, "diverged"))
    return (rows["status"].str.lower() == "diverged") | rows["seed"].isin(listed)


def _runs(summary: pd.DataFrame, setting: str) -> pd.DataFrame:
    return summary[summary["setting"] == setting]


def _metric(row: pd.Series, column: str) -> float | None:
    """One run's value of a paper column (Gap computed from PGD-10 and AutoAttack if needed)."""
    v = _num(row.get(METRIC_COLUMNS[column]))
    if v is None and column == "Gap":
        p, a = _num(row.get("pgd10_acc")), _num(row.get("autoattack_acc"))
        v = p - a if p is not None and a is not None else None
    return v


def _seed_list(seeds: list[int]) -> str:
    return ", ".join(str(s) for s in sorted(seeds))


# --------------------------------------------------------------------------- cell builders
def meanstd_cell(rows: pd.DataFrame, column: str, ddof: int = 1, what: str = "") -> Cell:
    """Mean ± std of a paper column over the given runs; ``--`` when no run has the value."""
    vals = [(int(r["seed"]), _metric(r, column)) for _, r in rows.iterrows()]
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
        note = f"{column} missing for seed(s) {_seed_list(missing)}; mean over the others"
    return Cell("meanstd", float(arr.mean()), std, seeds=seeds, note=note)


def prob_cell(rows: pd.DataFrame, selection: dict, what: str = "") -> Cell:
    """k/n unstable over the runs that have a classification; diverged runs excluded (noted)."""
    if rows.empty:
        return none_cell(f"no run of {what}" if what else "no run")
    div = pd.Series(False, index=rows.index)
    for setting in rows["setting"].unique():
        m = rows["setting"] == setting
        div[m] = _diverged(rows[m], selection, setting)
    live = rows[~div]
    cls = live[live["unstable"].map(lambda v: v is not None)]
    notes = []
    if div.any():
        notes.append(f"diverged runs excluded: seed(s) {_seed_list(rows[div]['seed'].tolist())}")
    unclassified = live[live["unstable"].map(lambda v: v is None)]
    if not unclassified.empty:
        notes.append(f"no classification for seed(s) {_seed_list(unclassified['seed'].tolist())}")
    if cls.empty:
        return none_cell("; ".join(notes) or "no classified run")
    k = int(sum(bool(v) for v in cls["unstable"]))
    return Cell("prob", k / len(cls), k=k, n=len(cls), seeds=sorted(cls["seed"].tolist()),
                note="; ".join(notes) or None)


# --------------------------------------------------------------------------- table builders
def _require(spec: Mapping, key: str, name: str) -> Any:
    if not isinstance(spec, Mapping) or key not in spec:
        raise ValueError(f"config key 'tables.{name}.{key}' is missing (see config.yaml's tables: section)")
    return spec[key]


def _meanstd_headers() -> dict[str, str]:
    return {c: latex_escape(c) for c in MEANSTD_COLUMNS}


def _build_table1(spec, summary, selection) -> TableModel:
    setting = _require(spec, "setting", "table1")
    runs = _runs(summary, setting)
    rows, cells, headers = ["Regular", "Unstable"], {}, {}
    info = {"setting": setting, "seeds": {}}
    for label in rows:
        seed = representative_seed(selection, setting, label.lower())
        info["seeds"][label] = seed
        headers[label] = label if seed is None else f"{label} (seed {seed})"
        run = runs[runs["seed"] == seed] if seed is not None else runs.iloc[0:0]
        for col in TABLE1_COLUMNS:
            if seed is None:
                cells[(label, col)] = none_cell(f"no {label} run in {setting}")
            elif run.empty:
                cells[(label, col)] = none_cell(f"seed {seed} of {setting} missing from summary.csv")
            else:
                v = _metric(run.iloc[0], col)
                cells[(label, col)] = (Cell("value", v, seeds=[seed]) if v is not None else
                                       none_cell(f"{col} not evaluated for {setting} (suite without it)"))
    panel = Panel("", rows, list(TABLE1_COLUMNS), cells, row_headers={r: latex_escape(h) for r, h in headers.items()},
                  column_headers={c: latex_escape(c) for c in TABLE1_COLUMNS})
    return TableModel("table1", [panel], info=info)


def _group_rows(summary, selection, setting, group) -> tuple[pd.DataFrame, list[int]]:
    seeds = _group_seeds(selection, setting, group)
    runs = _runs(summary, setting)
    runs = runs[runs["seed"].isin(seeds)]
    return runs[~_diverged(runs, selection, setting)], seeds


def _build_regular_unstable(name, spec, summary, selection, third_label: str, third_key: str) -> TableModel:
    base = _require(spec, "regular_unstable", name)
    other = _require(spec, third_key, name)
    ddof = int(spec.get("ddof", 1))
    rows = ["Regular", "Unstable", third_label]
    cells: dict[tuple[str, str], Cell] = {}
    info: dict[str, Any] = {"setting": base, third_key: other, "seeds": {}}
    for label in ("Regular", "Unstable"):
        runs, seeds = _group_rows(summary, selection, base, label.lower())
        info["seeds"][label] = sorted(runs["seed"].tolist())
        for col in MEANSTD_COLUMNS:
            cells[(label, col)] = (meanstd_cell(runs, col, ddof, f"{label} of {base}") if not runs.empty
                                   else none_cell(f"no {label} run in {base}"))
    runs3 = _runs(summary, other)
    if third_label == "Fixed":
        unstable_seeds = _group_seeds(selection, base, "unstable")
        runs3 = runs3[runs3["seed"].isin(unstable_seeds)]
        if not unstable_seeds:
            empty_note = f"no Unstable run in {base}, hence no Fixed run with the same seed"
        else:
            empty_note = f"no run of {other} with an Unstable seed of {base} ({_seed_list(unstable_seeds)})"
    else:
        empty_note = f"no run of {other}"
    div = _diverged(runs3, selection, other) if not runs3.empty else pd.Series(dtype=bool)
    if not runs3.empty and div.any():
        info.setdefault("excluded", []).append(f"{other}: diverged seed(s) {_seed_list(runs3[div]['seed'].tolist())}")
        runs3 = runs3[~div]
        if runs3.empty:
            empty_note = f"all runs of {other} diverged"
    info["seeds"][third_label] = sorted(runs3["seed"].tolist())
    for col in MEANSTD_COLUMNS:
        cells[(third_label, col)] = (meanstd_cell(runs3, col, ddof, f"{third_label} ({other})") if not runs3.empty
                                     else none_cell(empty_note))
    div_base = _group_seeds(selection, base, "diverged")
    if div_base:
        info.setdefault("excluded", []).append(f"{base}: diverged seed(s) {_seed_list(div_base)}")
    panel = Panel("", rows, list(MEANSTD_COLUMNS), cells, column_headers=_meanstd_headers())
    return TableModel(name, [panel], info=info)


def _pivot_panel(title, row_var, col_var, settings, summary, selection, table) -> tuple[Panel, list[str]]:
    notes: list[str] = []
    groups: dict[tuple[str, str], list[str]] = {}
    row_vals: dict[str, Any] = {}
    col_vals: dict[str, Any] = {}
    for setting in settings:
        runs = _runs(summary, setting)
        if runs.empty:
            notes.append(f"setting {setting} has no run in summary.csv")
            continue
        for var in (row_var, col_var):
            if var not in runs.columns:
                raise ValueError(f"{table}: summary.csv has no column {var!r} to pivot on")
        rv, cv = runs.iloc[0][row_var], runs.iloc[0][col_var]
        r, c = key_label(row_var, rv), key_label(col_var, cv)
        row_vals.setdefault(r, rv)
        col_vals.setdefault(c, cv)
        groups.setdefault((r, c), []).append(setting)
    rows = sorted(row_vals, key=lambda k: _sort_key(row_vals[k]))
    cols = sorted(col_vals, key=lambda k: _sort_key(col_vals[k]))
    cells = {}
    if not rows:  # no setting of the panel has a run: one explicit empty cell
        rows, cols = [EMPTY_LABEL], [EMPTY_LABEL]
        cells[(EMPTY_LABEL, EMPTY_LABEL)] = none_cell("no run of any setting of this panel")
        row_vals[EMPTY_LABEL] = col_vals[EMPTY_LABEL] = "--"
    for r in rows:
        for c in cols:
            sets = groups.get((r, c))
            if not sets:
                cells[(r, c)] = none_cell("no setting configured for this cell")
                continue
            runs = summary[summary["setting"].isin(sets)]
            cells[(r, c)] = prob_cell(runs, selection, ", ".join(sets))
    panel = Panel(title, rows, cols, cells, row_var=row_var, col_var=col_var,
                  corner=rf"{VAR_LATEX.get(row_var, latex_escape(row_var))} $\setminus$ "
                         rf"{VAR_LATEX.get(col_var, latex_escape(col_var))}",
                  row_headers={r: _value_latex(row_var, row_vals[r]) for r in rows},
                  column_headers={c: _value_latex(col_var, col_vals[c]) for c in cols})
    return panel, notes


def _sort_key(v: Any) -> tuple:
    f = _num(v)
    return (0, f, "") if f is not None else (1, 0.0, str(v))


def _value_latex(var: str, value: Any) -> str:
    if value == "--":
        return "--"
    if var == "dataset":
        return latex_escape(DATASET_LATEX.get(str(value), str(value)))
    return latex_escape(format_key(value))


def _build_prob_pivot(name, spec, summary, selection) -> TableModel:
    panel_specs = spec.get("panels") if isinstance(spec, Mapping) and "panels" in spec else [spec]
    panels, notes = [], []
    for i, p in enumerate(panel_specs):
        row = _require(p, "row", f"{name}.panels[{i}]" if "panels" in spec else name)
        col = _require(p, "col", f"{name}.panels[{i}]" if "panels" in spec else name)
        settings = _require(p, "settings", f"{name}.panels[{i}]" if "panels" in spec else name)
        panel, n = _pivot_panel(p.get("title", ""), row, col, list(settings), summary, selection, name)
        panels.append(panel)
        notes += n
    return TableModel(name, panels, notes=notes, info={"settings": [s for p in panel_specs for s in p["settings"]]})


def _build_prob_meanstd(name, spec, summary, selection) -> TableModel:
    row_var = _require(spec, "row", name)
    settings = list(_require(spec, "settings", name))
    ddof = int(spec.get("ddof", 1))
    columns = [PROB_COLUMN] + MEANSTD_COLUMNS
    rows, cells, headers, notes, row_vals = [], {}, {}, [], {}
    for setting in settings:
        runs = _runs(summary, setting)
        if runs.empty:
            notes.append(f"setting {setting} has no run in summary.csv")
            continue
        rv = runs.iloc[0][row_var]
        r = key_label(row_var, rv)
        if r in row_vals:  # two settings with the same row value: merge them
            row_vals[r][1].append(setting)
            continue
        row_vals[r] = (rv, [setting])
    for r, (rv, sets) in sorted(row_vals.items(), key=lambda kv: _sort_key(kv[1][0])):
        rows.append(r)
        headers[r] = (rf"$\beta = {format_key(rv)}$" if row_var == "beta"
                      else f"{VAR_LATEX.get(row_var, latex_escape(row_var))} = {_value_latex(row_var, rv)}")
        runs = summary[summary["setting"].isin(sets)]
        what = ", ".join(sets)
        cells[(r, PROB_COLUMN)] = prob_cell(runs, selection, what)
        div = pd.Series(False, index=runs.index)
        for s in sets:
            m = runs["setting"] == s
            div[m] = _diverged(runs[m], selection, s)
        live = runs[~div]
        for col in MEANSTD_COLUMNS:
            cells[(r, col)] = (meanstd_cell(live, col, ddof, what) if not live.empty
                               else none_cell(f"all runs of {what} diverged"))
    if not rows:  # no setting has a run: one explicit empty row
        rows = [EMPTY_LABEL]
        headers[EMPTY_LABEL] = "--"
        for col in columns:
            cells[(EMPTY_LABEL, col)] = none_cell("no run of any configured setting")
    panel = Panel("", rows, columns, cells, row_var=row_var, row_headers=headers,
                  column_headers={c: latex_escape(c) for c in columns})
    return TableModel(name, [panel], notes=notes, info={"settings": settings})


def build_table(name: str, spec: Mapping, summary: pd.DataFrame | str | os.PathLike,
                selection: Mapping | str | os.PathLike) -> TableModel:
    """Compute table ``name`` (``table1`` .. ``table7``) from the config spec, summary and selection."""
    if name not in TABLES:
        raise ValueError(f"unknown table {name!r}; expected one of {', '.join(TABLES)}")
    if not spec:
        raise ValueError(f"config key 'tables.{name}' is missing or empty")
    summary = load_summary(summary)
    selection = load_selection(selection)
    if name == "table1":
        model = _build_table1(spec, summary, selection)
    elif name == "table3":
        model = _build_regular_unstable(name, spec, summary, selection, "Fixed", "fixed")
    elif name == "table6":
        model = _build_regular_unstable(name, spec, summary, selection, "Modified", "modified")
    elif name in ("table2", "table4"):
        model = _build_prob_pivot(name, spec, summary, selection)
    else:  # table5, table7
        model = _build_prob_meanstd(name, spec, summary, selection)
    model.info["ddof"] = int(spec.get("ddof", 1)) if isinstance(spec, Mapping) else 1
    model.info["threshold"] = selection.get("threshold")
    return model.finalise()


# --------------------------------------------------------------------------- rendering
def default_template_dir() -> Path:
    """``$TRADES_TEMPLATE_DIR`` or ``workflow/templates`` of the source checkout."""
    env = os.environ.get("TRADES_TEMPLATE_DIR")
    if env:
        return Path(env)
    here = Path(__file__).resolve()
    for parent in here.parents:
        cand = parent / "workflow" / "templates"
        if (cand / "_table.tex.j2").exists():
            return cand
    raise FileNotFoundError("workflow/templates not found; pass template_dir or set TRADES_TEMPLATE_DIR")


def _env(template_dir: str | os.PathLike | None):
    import jinja2

    env = jinja2.Environment(
        loader=jinja2.FileSystemLoader(str(template_dir or default_template_dir())),
        block_start_string="<%", block_end_string="%>",
        variable_start_string="<<", variable_end_string=">>",
        comment_start_string="<#", comment_end_string="#>",
        trim_blocks=True, lstrip_blocks=True, keep_trailing_newline=True,
        undefined=jinja2.StrictUndefined, autoescape=False,
    )
    env.filters["tex"] = latex_escape
    env.filters["seeds"] = lambda s: _seed_list(s) if s else "none"
    return env


def _write_text(path: str | os.PathLike, text: str) -> None:
    from trades_instability.rundir.atomic_io import atomic_write_text

    atomic_write_text(path, text)


def render_model(model: TableModel, template_dir: str | os.PathLike | None = None) -> str:
    """LaTeX of a computed table (template ``<name>.tex.j2``)."""
    env = _env(template_dir)
    return env.get_template(f"{model.name}.tex.j2").render(model=model, info=model.info)


def render_table(name: str, spec: Mapping, summary: pd.DataFrame | str | os.PathLike,
                 selection: Mapping | str | os.PathLike, out_tex: str | os.PathLike,
                 template_dir: str | os.PathLike | None = None) -> TableModel:
    """Compute table ``name`` and write it as a LaTeX ``table`` float (needs booktabs) to ``out_tex``."""
    model = build_table(name, spec, summary, selection)
    _write_text(out_tex, render_model(model, template_dir))
    return model


# --------------------------------------------------------------------------- comparison
COMPARISON_COLUMNS = ["table", "panel", "row", "column", "kind", "paper", "paper_std", "paper_n", "paper_text",
                      "reproduced", "reproduced_std", "reproduced_text", "difference", "n_runs", "seeds", "note",
                      "ci_low", "ci_high", "test", "p_value", "verdict", "verdict_note"]


def comparison_frame(summary, selection, specs: Mapping) -> pd.DataFrame:
    """One row per published cell of Tables 1-7 with the reproduced value beside it.

    ``paper``/``reproduced`` are the accuracy, the mean, or k/n as a fraction; ``*_std`` the stds;
    ``difference`` = reproduced - paper (empty when either is missing); ``ci_low``/``ci_high`` the 95%
    interval of ours, ``test``/``p_value``/``verdict``/``verdict_note`` the test against the paper's cell
    (:mod:`trades_instability.report.comparison_stats`)."""
    summary = load_summary(summary)
    selection = load_selection(selection)
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
                verdict = _cell_verdict(pc, cell, int(model.info.get("ddof", 1)))
            rec.update(ci_low=verdict.low, ci_high=verdict.high, test=verdict.test, p_value=verdict.p_value,
                       verdict=verdict.verdict, verdict_note=verdict.note)
            records.append(rec)
    return pd.DataFrame.from_records(records, columns=COMPARISON_COLUMNS)


def _cell_verdict(pc, cell: Cell, ddof: int) -> "CS.Verdict":
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
    f = _num(v)
    if f is None:
        return "--"
    return f"{f:+.4f}" if kind == "diff" else f"{f:.4f}"


def _fmt_p(v: Any) -> str:
    f = _num(v)
    if f is None:
        return "--"
    return f"{f:.2g}" if f >= 0.001 else f"{f:.1e}"


def _fmt_ci(low: Any, high: Any) -> str:
    lo, hi = _num(low), _num(high)
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
    df = comparison_frame(summary, selection, specs)
    lines = verdict_summary(df)
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
                         str(int(r["n_runs"])) if _num(r["n_runs"]) is not None else "0",
                         _fmt_p(r["p_value"]), verdict])
        blocks.append({"table": table, "number": table.removeprefix("table"), "rows": rows,
                       "summary": lines[i], "notes": [(lt, latex_escape(n)) for n, lt in letters.items()]})
    env = _env(template_dir)
    tex = env.get_template("comparison.tex.j2").render(blocks=blocks, overall=lines[-1], alpha=CS.ALPHA,
                                                      lines=lines)
    _write_text(out_tex, tex)
    rounded = df.copy()
    for col in ("paper", "paper_std", "reproduced", "reproduced_std", "difference", "ci_low", "ci_high"):
        rounded[col] = pd.to_numeric(rounded[col], errors="coerce").round(6)
    rounded["p_value"] = pd.to_numeric(rounded["p_value"], errors="coerce").map(
        lambda v: "" if pd.isna(v) else f"{v:.4g}")
    rounded["paper_n"] = rounded["paper_n"].map(lambda v: "" if v is None or pd.isna(v) else str(int(v)))
    _write_text(out_csv, rounded.to_csv(index=False))
    return df
