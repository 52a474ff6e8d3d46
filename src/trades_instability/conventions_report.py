"""Beyond the paper: does the instability depend on the implementation? ``tables/conventions.tex`` and
``figures/conventions.pdf`` (+ .png) put the same settings side by side under each code convention
(``adr``, ``official_trades``; see config.CONVENTIONS): P(Unstable) and Clean / PGD-10 / AutoAttack / Gap,
mean ± std over seeds, from summary.csv and selection.json only.

The config's ``conventions:`` section names, per row, the setting trained under each convention::

    conventions:
      rows:
        - {label: "beta 3 (default)", adr: default, official_trades: conv_official_b3}
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Mapping

import numpy as np

from .config import CONVENTION_NAMES
from .tables import (
    MEANSTD_COLUMNS,
    PROB_COLUMN,
    Panel,
    TableModel,
    _diverged,
    _write_text,
    latex_escape,
    load_selection,
    load_summary,
    meanstd_cell,
    none_cell,
    prob_cell,
    render_model,
)

NAME = "conventions"
CONVENTION_LATEX = {"adr": "ADR", "official_trades": "official TRADES"}


def convention_rows(spec: Mapping) -> list[dict[str, str]]:
    """The ``rows`` of the spec, each with a ``label`` and one setting per convention (KeyError-free:
    a malformed spec raises ValueError naming the key)."""
    rows = spec.get("rows") if isinstance(spec, Mapping) else None
    if not isinstance(rows, list) or not rows:
        raise ValueError("config key 'conventions.rows' must be a non-empty list")
    for i, row in enumerate(rows):
        missing = [k for k in ("label", *CONVENTION_NAMES) if not isinstance(row, Mapping) or k not in row]
        if missing:
            raise ValueError(f"config key 'conventions.rows[{i}]' lacks {', '.join(missing)}")
    return [dict(r) for r in rows]


def convention_settings(spec: Mapping) -> list[str]:
    """Every setting the conventions table reads, in order of appearance."""
    out: list[str] = []
    for row in convention_rows(spec):
        out += [row[c] for c in CONVENTION_NAMES if row[c] not in out]
    return out


def build_conventions(spec: Mapping, summary, selection) -> TableModel:
    summary, selection = load_summary(summary), load_selection(selection)
    ddof = int(spec.get("ddof", 1))
    columns = [PROB_COLUMN] + MEANSTD_COLUMNS
    rows, cells, headers, notes = [], {}, {}, []
    for spec_row in convention_rows(spec):
        for conv in CONVENTION_NAMES:
            setting = spec_row[conv]
            r = f"{spec_row['label']} / {conv}"
            rows.append(r)
            headers[r] = f"{latex_escape(spec_row['label'])}, {latex_escape(CONVENTION_LATEX[conv])}"
            runs = summary[summary["setting"] == setting]
            if runs.empty:
                notes.append(f"setting {setting} has no run in summary.csv")
            cells[(r, PROB_COLUMN)] = prob_cell(runs, selection, setting)
            live = runs[~_diverged(runs, selection, setting)] if not runs.empty else runs
            for col in MEANSTD_COLUMNS:
                cells[(r, col)] = (meanstd_cell(live, col, ddof, setting) if not live.empty
                                   else none_cell(f"no finished run of {setting}"))
    panel = Panel("", rows, columns, cells, row_var="convention", row_headers=headers,
                  column_headers={c: latex_escape(c) for c in columns})
    model = TableModel(NAME, [panel], notes=notes, info={"settings": convention_settings(spec), "ddof": ddof,
                                                         "threshold": selection.get("threshold")})
    return model.finalise()


def render_conventions_table(spec: Mapping, summary, selection, out_tex: str | os.PathLike,
                             template_dir: str | os.PathLike | None = None) -> TableModel:
    model = build_conventions(spec, summary, selection)
    _write_text(out_tex, render_model(model, template_dir))
    return model


def render_conventions_figure(spec: Mapping, summary, selection, out_pdf: str | os.PathLike) -> tuple[Path, Path]:
    """Left: P(Unstable) per row and convention; right: mean ± std of Clean, PGD-10, AutoAttack, Gap."""
    from .figures import _pyplot, _save, _style

    model = build_conventions(spec, summary, selection)
    plt = _pyplot()
    labels = [r["label"] for r in convention_rows(spec)]
    width = 0.8 / len(CONVENTION_NAMES)
    axes_style, context = _style()
    with axes_style, context:
        fig, (ax_p, ax_m) = plt.subplots(1, 2, figsize=(10, 3.6), gridspec_kw={"width_ratios": [1, 2]})
        x = np.arange(len(labels))
        for j, conv in enumerate(CONVENTION_NAMES):
            cells = [model.panels[0].cell(f"{lab} / {conv}", PROB_COLUMN) for lab in labels]
            probs = [np.nan if c.is_none else c.value for c in cells]
            xs = x + (j - (len(CONVENTION_NAMES) - 1) / 2) * width
            ax_p.bar(xs, probs, width, label=CONVENTION_LATEX[conv])
            for xi, p, c in zip(xs, probs, cells):  # k/n above each bar (a 0/10 bar is otherwise invisible)
                ax_p.text(xi, (0 if np.isnan(p) else p) + 0.02, c.text(), ha="center", va="bottom", fontsize=7)
        ax_p.set_xticks(x, labels)
        ax_p.set_ylim(0, 1)
        ax_p.set_ylabel("P(Unstable)")
        ax_p.legend(fontsize=8)
        groups = [(lab, conv) for lab in labels for conv in CONVENTION_NAMES]
        xm = np.arange(len(MEANSTD_COLUMNS))
        w = 0.8 / len(groups)
        for j, (lab, conv) in enumerate(groups):
            means, stds = [], []
            for col in MEANSTD_COLUMNS:
                cell = model.panels[0].cell(f"{lab} / {conv}", col)
                means.append(np.nan if cell.is_none else cell.value)
                stds.append(0.0 if cell.is_none or cell.std is None or not np.isfinite(cell.std) else cell.std)
            ax_m.bar(xm + (j - (len(groups) - 1) / 2) * w, means, w, yerr=stds, capsize=2,
                     label=f"{lab}, {CONVENTION_LATEX[conv]}")
        ax_m.set_xticks(xm, MEANSTD_COLUMNS)
        ax_m.set_ylabel("accuracy (mean ± std over seeds)")
        ax_m.legend(fontsize=7, ncol=2)
        fig.suptitle("TRADES under the ADR and the official code conventions")
        fig.tight_layout()
        try:
            return _save(fig, out_pdf)
        finally:
            plt.close(fig)


__all__ = ["build_conventions", "convention_rows", "convention_settings", "render_conventions_table",
           "render_conventions_figure", "NAME"]
