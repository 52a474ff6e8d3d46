"""Tables 1-7 of the paper rendered from ``results/summary.csv`` and ``results/selection.json``.

Every table is first computed into a :class:`~trades_instability.report.cells.TableModel` (panels of
labelled cells, :mod:`trades_instability.report.cells`; see :func:`build_table`) and then written as LaTeX
through its jinja2 template in ``workflow/templates/`` (:func:`render_table`,
:mod:`trades_instability.report.latex`). Which builder makes which table, and with which options, is the
table's entry in :mod:`trades_instability.report.registry`. The paper comparison is
:mod:`trades_instability.report.comparison`.

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

import os
from collections.abc import Mapping
from typing import Any

import pandas as pd

from trades_instability.config.pipeline import settings_in_spec
from trades_instability.report import registry
from trades_instability.report.cells import (
    EMPTY_LABEL,
    MEANSTD_COLUMNS,
    METRIC_COLUMNS,
    PROB_COLUMN,
    Cell,
    Panel,
    TableModel,
    as_number,
    diverged_runs,
    group_seeds,
    load_selection,
    load_summary,
    meanstd_cell,
    none_cell,
    planted_rows,
    prob_cell,
    representative_seed,
    run_metric,
    runs_of,
    to_bool,
)
from trades_instability.report.latex import default_template_dir, latex_escape, render_model, seed_list, write_text
from trades_instability.report.paper_results import format_key, key_label

# names other modules and the tests import from here (the model and inputs live in report/cells.py)
__all__ = ["METRIC_COLUMNS", "MEANSTD_COLUMNS", "PROB_COLUMN", "EMPTY_LABEL", "TABLE1_COLUMNS", "Cell", "Panel",
           "TableModel", "none_cell", "meanstd_cell", "prob_cell", "load_summary", "load_selection",
           "representative_seed", "latex_escape", "default_template_dir", "render_model", "build_table",
           "render_table", "build_single_run", "build_regular_unstable", "build_prob_pivot", "build_prob_meanstd"]

TABLE1_COLUMNS = ["Clean", "PGD-10", "AutoAttack", "APGD-CE", "APGD-DLR", "FAB", "Square"]

VAR_LATEX = {"beta": r"$\beta$", "batch_size": "batch size", "lr": "learning rate", "dataset": "dataset"}
DATASET_LATEX = {"cifar10": "CIFAR-10", "cifar100": "CIFAR-100", "tinyimagenet": "Tiny-ImageNet-200",
                 "synthetic": "synthetic"}


# --------------------------------------------------------------------------- table builders
def require(spec: Mapping, key: str, name: str) -> Any:
    """``spec[key]``, or ValueError naming the config key ``tables.<name>.<key>``."""
    if not isinstance(spec, Mapping) or key not in spec:
        raise ValueError(f"config key 'tables.{name}.{key}' is missing (see config.yaml's tables: section)")
    return spec[key]


def _meanstd_headers() -> dict[str, str]:
    return {c: latex_escape(c) for c in MEANSTD_COLUMNS}


def build_single_run(name, spec, summary, selection) -> TableModel:
    """Table 1: one run per row (the representative Regular / Unstable seed of ``setting``), every attack."""
    setting = require(spec, "setting", name)
    runs = runs_of(summary, setting)
    rows, cells, headers = ["Regular", "Unstable"], {}, {}
    info = {"setting": setting, "seeds": {}}
    for label in rows:
        seed = representative_seed(selection, setting, label.lower())
        info["seeds"][label] = seed
        run = runs[runs["seed"] == seed] if seed is not None else runs.iloc[0:0]
        planted = "planted" in run.columns and not run.empty and to_bool(run.iloc[0]["planted"]) is True
        headers[label] = label if seed is None else f"{label} (seed {seed}{', planted' if planted else ''})"
        for col in TABLE1_COLUMNS:
            if seed is None:
                cells[(label, col)] = none_cell(f"no {label} run in {setting}")
            elif run.empty:
                cells[(label, col)] = none_cell(f"seed {seed} of {setting} missing from summary.csv")
            else:
                v = run_metric(run.iloc[0], col)
                cells[(label, col)] = (Cell("value", v, seeds=[seed]) if v is not None else
                                       none_cell(f"{col} not evaluated for {setting} (suite without it)"))
    panel = Panel("", rows, list(TABLE1_COLUMNS), cells, row_headers={r: latex_escape(h) for r, h in headers.items()},
                  column_headers={c: latex_escape(c) for c in TABLE1_COLUMNS})
    return TableModel(name, [panel], info=info)


def _group_rows(summary, selection, setting, group) -> tuple[pd.DataFrame, list[int]]:
    seeds = group_seeds(selection, setting, group)
    runs = runs_of(summary, setting)
    runs = runs[runs["seed"].isin(seeds)]
    return runs[~diverged_runs(runs, selection, setting)], seeds


def build_regular_unstable(name, spec, summary, selection, *, third_label: str, third_key: str) -> TableModel:
    """Tables 3, 6: mean ± std of the Regular and Unstable runs of ``regular_unstable`` and of a third row
    (``third_label``) from the setting under spec key ``third_key`` (Fixed: only its Unstable seeds)."""
    base = require(spec, "regular_unstable", name)
    other = require(spec, third_key, name)
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
    runs3 = runs_of(summary, other)
    if third_label == "Fixed":
        unstable_seeds = group_seeds(selection, base, "unstable")
        runs3 = runs3[runs3["seed"].isin(unstable_seeds)]
        if not unstable_seeds:
            empty_note = f"no Unstable run in {base}, hence no Fixed run with the same seed"
        else:
            empty_note = f"no run of {other} with an Unstable seed of {base} ({seed_list(unstable_seeds)})"
    else:
        empty_note = f"no run of {other}"
    div = diverged_runs(runs3, selection, other) if not runs3.empty else pd.Series(dtype=bool)
    if not runs3.empty and div.any():
        info.setdefault("excluded", []).append(f"{other}: diverged seed(s) {seed_list(runs3[div]['seed'].tolist())}")
        runs3 = runs3[~div]
        if runs3.empty:
            empty_note = f"all runs of {other} diverged"
    info["seeds"][third_label] = sorted(runs3["seed"].tolist())
    for col in MEANSTD_COLUMNS:
        cells[(third_label, col)] = (meanstd_cell(runs3, col, ddof, f"{third_label} ({other})") if not runs3.empty
                                     else none_cell(empty_note))
    div_base = group_seeds(selection, base, "diverged")
    if div_base:
        info.setdefault("excluded", []).append(f"{base}: diverged seed(s) {seed_list(div_base)}")
    panel = Panel("", rows, list(MEANSTD_COLUMNS), cells, column_headers=_meanstd_headers())
    return TableModel(name, [panel], info=info)


def _pivot_panel(title, row_var, col_var, settings, summary, selection, table) -> tuple[Panel, list[str]]:
    notes: list[str] = []
    groups: dict[tuple[str, str], list[str]] = {}
    row_vals: dict[str, Any] = {}
    col_vals: dict[str, Any] = {}
    for setting in settings:
        runs = runs_of(summary, setting)
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
    f = as_number(v)
    return (0, f, "") if f is not None else (1, 0.0, str(v))


def _value_latex(var: str, value: Any) -> str:
    if value == "--":
        return "--"
    if var == "dataset":
        return latex_escape(DATASET_LATEX.get(str(value), str(value)))
    return latex_escape(format_key(value))


def build_prob_pivot(name, spec, summary, selection) -> TableModel:
    """Tables 2, 4: k/n Unstable pivoted on two run-config keys (``row`` x ``col``), one panel per ``panels`` entry."""
    panel_specs = spec.get("panels") if isinstance(spec, Mapping) and "panels" in spec else [spec]
    panels, notes = [], []
    for i, p in enumerate(panel_specs):
        row = require(p, "row", f"{name}.panels[{i}]" if "panels" in spec else name)
        col = require(p, "col", f"{name}.panels[{i}]" if "panels" in spec else name)
        settings = require(p, "settings", f"{name}.panels[{i}]" if "panels" in spec else name)
        panel, n = _pivot_panel(p.get("title", ""), row, col, list(settings), summary, selection, name)
        panels.append(panel)
        notes += n
    return TableModel(name, panels, notes=notes, info={"settings": [s for p in panel_specs for s in p["settings"]]})


def build_prob_meanstd(name, spec, summary, selection) -> TableModel:
    """Tables 5, 7: one row per value of ``row``: k/n Unstable and mean ± std of Clean, PGD-10, AutoAttack, Gap."""
    row_var = require(spec, "row", name)
    settings = list(require(spec, "settings", name))
    ddof = int(spec.get("ddof", 1))
    columns = [PROB_COLUMN] + MEANSTD_COLUMNS
    rows, cells, headers, notes, row_vals = [], {}, {}, [], {}
    for setting in settings:
        runs = runs_of(summary, setting)
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
            div[m] = diverged_runs(runs[m], selection, s)
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


def planted_note(summary: pd.DataFrame, settings: list[str]) -> str | None:
    """The note naming the planted runs (a positive control, README "Planted control") among the settings a
    table reads; None when it reads none. The comparison with the paper builds its tables without them."""
    rows = planted_rows(summary, settings)
    if rows.empty:
        return None
    runs = "; ".join(f"{r['setting']} seed {int(r['seed'])} ({r.get('plant') or 'planted'})"
                     for _, r in rows.iterrows())
    return f"Planted gradient masking, a positive control and not a finding (README: Planted control): {runs}"


def build_table(name: str, spec: Mapping, summary: pd.DataFrame | str | os.PathLike,
                selection: Mapping | str | os.PathLike) -> TableModel:
    """Compute table ``name`` (``table1`` .. ``table7``) from the config spec, summary and selection, with the
    builder and options of its registry entry."""
    try:
        art = registry.get(name, registry.TABLE)
    except ValueError:
        raise ValueError(f"unknown table {name!r}; expected one of {', '.join(registry.TABLES)}") from None
    if not spec:
        raise ValueError(f"config key 'tables.{name}' is missing or empty")
    summary = load_summary(summary)
    selection = load_selection(selection)
    model = art.build()(name, spec, summary, selection, **art.options)
    note = planted_note(summary, settings_in_spec(spec))
    if note:
        model.notes.append(note)
    model.info["ddof"] = int(spec.get("ddof", 1)) if isinstance(spec, Mapping) else 1
    model.info["threshold"] = selection.get("threshold")
    return model.finalise()


def render_table(name: str, spec: Mapping, summary: pd.DataFrame | str | os.PathLike,
                 selection: Mapping | str | os.PathLike, out_tex: str | os.PathLike,
                 template_dir: str | os.PathLike | None = None) -> TableModel:
    """Compute table ``name`` and write it as a LaTeX ``table`` float (needs booktabs) to ``out_tex``."""
    model = build_table(name, spec, summary, selection)
    write_text(out_tex, render_model(model, template_dir))
    return model
