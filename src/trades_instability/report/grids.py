"""Beyond the paper: the same settings side by side under each value of one run-config key, from
summary.csv and selection.json only: P(Unstable) and Clean / PGD-10 / AutoAttack / Gap, mean ± std over seeds.
One table of comparisons (:data:`GRIDS`), each a target, a config section, ``tables/<name>.tex`` and
``figures/<name>.pdf`` (+ .png):

* ``conventions`` - the code conventions (``adr``, ``official_trades``; see config.CONVENTIONS): does the
  instability depend on the implementation?
* ``crossarch`` - the architectures (``resnet18``, ``preact-resnet18``, ``wrn-34-10``; models.ARCHITECTURES):
  does it depend on the model (the paper's own listed next check)?

The config section names, per row, the setting trained with each value::

    conventions:
      rows:
        - {label: "beta 3 (default)", adr: default, official_trades: conv_official_b3}
    crossarch:
      rows:
        - {label: "default", resnet18: default, preact-resnet18: arch_preact_default, wrn-34-10: arch_wrn_default}
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from trades_instability.report import registry
from trades_instability.report.cells import (
    MEANSTD_COLUMNS,
    PROB_COLUMN,
    Panel,
    TableModel,
    diverged_runs,
    load_selection,
    load_summary,
    meanstd_cell,
    none_cell,
    prob_cell,
)
from trades_instability.report.latex import latex_escape, render_model, write_text

NAME = "conventions"
CONVENTION_LATEX = {"adr": "ADR", "official_trades": "official TRADES"}


@dataclass(frozen=True)
class Grid:
    """One side-by-side comparison: each row names a setting per value of run-config key ``run_key``."""

    name: str  # target, config section, template <name>.tex.j2, output file stem
    run_key: str  # run-config key whose value each column fixes (checked by pipeline_config)
    values: tuple[str, ...]
    latex: dict[str, str]
    title: str


_LOOK = {  # LaTeX of each column value, figure title (the columns themselves: the registry's GRID entries)
    "conventions": (CONVENTION_LATEX, "TRADES under the ADR and the official code conventions"),
    "crossarch": ({"resnet18": "ResNet-18", "preact-resnet18": "PreActResNet-18", "wrn-34-10": "WRN-34-10"},
                  "TRADES on three architectures (default setting)"),
}
GRIDS: dict[str, Grid] = {a.name: Grid(a.name, a.grid_key, a.grid_values, *_LOOK[a.name])
                          for a in registry.of_kind(registry.GRID)}


def grid_rows(spec: Mapping, grid: str = NAME) -> list[dict[str, str]]:
    """The ``rows`` of the spec, each with a ``label`` and one setting per value of the grid (KeyError-free:
    a malformed spec raises ValueError naming the key)."""
    return registry.get(grid, registry.GRID).grid_rows(spec)


def grid_settings(spec: Mapping, grid: str = NAME) -> list[str]:
    """Every setting the grid's table reads, in order of appearance."""
    return registry.get(grid, registry.GRID).grid_settings(spec)


def build_grid(spec: Mapping, summary, selection, grid: str = NAME) -> TableModel:
    g = GRIDS[grid]
    summary, selection = load_summary(summary), load_selection(selection)
    ddof = int(spec.get("ddof", 1))
    columns = [PROB_COLUMN] + MEANSTD_COLUMNS
    rows, cells, headers, notes = [], {}, {}, []
    for spec_row in grid_rows(spec, grid):
        for value in g.values:
            setting = spec_row[value]
            r = f"{spec_row['label']} / {value}"
            rows.append(r)
            headers[r] = f"{latex_escape(spec_row['label'])}, {latex_escape(g.latex[value])}"
            runs = summary[summary["setting"] == setting]
            if runs.empty:
                notes.append(f"setting {setting} has no run in summary.csv")
            cells[(r, PROB_COLUMN)] = prob_cell(runs, selection, setting)
            live = runs[~diverged_runs(runs, selection, setting)] if not runs.empty else runs
            for col in MEANSTD_COLUMNS:
                cells[(r, col)] = (meanstd_cell(live, col, ddof, setting) if not live.empty
                                   else none_cell(f"no finished run of {setting}"))
    from trades_instability.report.tables import planted_note

    planted = planted_note(summary, grid_settings(spec, grid))
    if planted:  # a planted setting (the smoke default) stays in the grid, and is named as a control
        notes.append(planted)
    panel = Panel("", rows, columns, cells, row_var=g.run_key, row_headers=headers,
                  column_headers={c: latex_escape(c) for c in columns})
    model = TableModel(g.name, [panel], notes=notes, info={"settings": grid_settings(spec, grid), "ddof": ddof,
                                                           "threshold": selection.get("threshold")})
    return model.finalise()


def render_grid_table(spec: Mapping, summary, selection, out_tex: str | os.PathLike,
                      template_dir: str | os.PathLike | None = None, grid: str = NAME) -> TableModel:
    model = build_grid(spec, summary, selection, grid)
    write_text(out_tex, render_model(model, template_dir))
    return model


def render_grid_figure(spec: Mapping, summary, selection, out_pdf: str | os.PathLike,
                       grid: str = NAME) -> tuple[Path, Path]:
    """Left: P(Unstable) per row and grid value; right: mean ± std of Clean, PGD-10, AutoAttack, Gap."""
    from trades_instability.report.figures import plot_style, pyplot, save_figure

    g = GRIDS[grid]
    model = build_grid(spec, summary, selection, grid)
    plt = pyplot()
    labels = [r["label"] for r in grid_rows(spec, grid)]
    width = 0.8 / len(g.values)
    axes_style, context = plot_style()
    with axes_style, context:
        fig, (ax_p, ax_m) = plt.subplots(1, 2, figsize=(10, 3.6), gridspec_kw={"width_ratios": [1, 2]})
        x = np.arange(len(labels))
        for j, conv in enumerate(g.values):
            cells = [model.panels[0].cell(f"{lab} / {conv}", PROB_COLUMN) for lab in labels]
            probs = [np.nan if c.is_none else c.value for c in cells]
            xs = x + (j - (len(g.values) - 1) / 2) * width
            ax_p.bar(xs, probs, width, label=g.latex[conv])
            # k/n above each bar (a 0/10 bar is otherwise invisible)
            for xi, p, c in zip(xs, probs, cells, strict=True):
                ax_p.text(xi, (0 if np.isnan(p) else p) + 0.02, c.text(), ha="center", va="bottom", fontsize=7)
        ax_p.set_xticks(x, labels)
        ax_p.set_ylim(0, 1)
        ax_p.set_ylabel("P(Unstable)")
        ax_p.legend(fontsize=8)
        groups = [(lab, conv) for lab in labels for conv in g.values]
        xm = np.arange(len(MEANSTD_COLUMNS))
        w = 0.8 / len(groups)
        for j, (lab, conv) in enumerate(groups):
            means, stds = [], []
            for col in MEANSTD_COLUMNS:
                cell = model.panels[0].cell(f"{lab} / {conv}", col)
                means.append(np.nan if cell.is_none else cell.value)
                stds.append(0.0 if cell.is_none or cell.std is None or not np.isfinite(cell.std) else cell.std)
            ax_m.bar(xm + (j - (len(groups) - 1) / 2) * w, means, w, yerr=stds, capsize=2,
                     label=f"{lab}, {g.latex[conv]}")
        ax_m.set_xticks(xm, MEANSTD_COLUMNS)
        ax_m.set_ylabel("accuracy (mean ± std over seeds)")
        ax_m.legend(fontsize=7, ncol=2)
        fig.suptitle(g.title)
        fig.tight_layout()
        try:
            return save_figure(fig, out_pdf)
        finally:
            plt.close(fig)


# the conventions target's names (tests, pipeline_config)
def convention_rows(spec: Mapping) -> list[dict[str, str]]:
    return grid_rows(spec, "conventions")


def convention_settings(spec: Mapping) -> list[str]:
    return grid_settings(spec, "conventions")


def build_conventions(spec: Mapping, summary, selection) -> TableModel:
    return build_grid(spec, summary, selection, "conventions")


def render_conventions_table(spec: Mapping, summary, selection, out_tex: str | os.PathLike,
                             template_dir: str | os.PathLike | None = None) -> TableModel:
    return render_grid_table(spec, summary, selection, out_tex, template_dir, "conventions")


def render_conventions_figure(spec: Mapping, summary, selection, out_pdf: str | os.PathLike) -> tuple[Path, Path]:
    return render_grid_figure(spec, summary, selection, out_pdf, "conventions")


__all__ = ["GRIDS", "Grid", "grid_rows", "grid_settings", "build_grid", "render_grid_table", "render_grid_figure",
           "build_conventions", "convention_rows", "convention_settings", "render_conventions_table",
           "render_conventions_figure", "NAME"]
