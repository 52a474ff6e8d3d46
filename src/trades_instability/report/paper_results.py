"""The paper's published numbers (Tables 1-7 of arXiv 2410.07675) as typed data.

The numbers live in ``report/paper_results.yaml`` (package data) and are transcribed exactly from
the paper. This module flattens them into :class:`PaperCell` records keyed the same way as the
reproduced tables of :mod:`trades_instability.report.tables`, so the two can be compared cell by cell:

* ``table``: ``"table1"`` .. ``"table7"``
* ``panel``: the panel title (Table 2 has two panels; every other table has one, title ``""``)
* ``row`` / ``column``: canonical labels. Named rows keep their name (``"Regular"``); rows and
  columns that are values of a hyper-parameter read ``"<var>=<value>"`` with the value written by
  :func:`format_key` (``"beta=1"``, ``"batch_size=128"``, ``"lr=0.01"``, ``"dataset=cifar100"``).

Example::

    >>> from trades_instability import paper_results as pr
    >>> pr.paper_cell("table1", "Unstable", "Square").value
    0.1215
    >>> c = pr.paper_cell("table2", "beta=3", "batch_size=256"); (c.k, c.n)
    (7, 10)
"""

from __future__ import annotations

import functools
import importlib.resources
import math
from dataclasses import dataclass
from typing import Any

import yaml

TABLES = ("table1", "table2", "table3", "table4", "table5", "table6", "table7")
CELL_KINDS = ("value", "meanstd", "prob")
PROB = "Prob."  # the k/n column of Tables 5 and 7


def format_key(value: Any) -> str:
    """Canonical text of a hyper-parameter value: ``1.0 -> "1"``, ``0.01 -> "0.01"``, ``"cifar10"``."""
    if isinstance(value, bool):
        return str(value).lower()
    if isinstance(value, (int,)):
        return str(value)
    if isinstance(value, float):
        if math.isnan(value):
            return "nan"
        return f"{value:g}"
    try:  # numpy scalars
        import numpy as np

        if isinstance(value, np.integer):
            return str(int(value))
        if isinstance(value, np.floating):
            return format_key(float(value))
    except ImportError:  # pragma: no cover
        pass
    text = str(value).strip()
    try:  # numbers that arrive as text ("256", "0.10")
        return format_key(float(text)) if text and text.lower() not in {"nan", "inf", "-inf"} else text
    except ValueError:
        return text


def key_label(var: str | None, value: Any) -> str:
    """``key_label("beta", 1.0) -> "beta=1"``; without a variable the formatted value itself."""
    return f"{var}={format_key(value)}" if var else format_key(value)


@dataclass(frozen=True)
class PaperCell:
    """One published cell.

    kind ``value``: ``value`` is an accuracy; ``meanstd``: ``value`` is the mean and ``std`` the
    standard deviation over ``n`` seeds (``n_assumed``: the paper does not state ``n``); ``prob``:
    ``k`` of ``n`` instances unstable, ``value = k / n``.
    """

    table: str
    panel: str
    row: str
    column: str
    kind: str
    value: float
    std: float | None = None
    k: int | None = None
    n: int | None = None
    bold: bool = False
    n_assumed: bool = False

    @property
    def text(self) -> str:
        """The cell as printed in the paper (without bold): ``0.5342 ± 0.0019``, ``7/10``, ``0.1215``."""
        if self.kind == "prob":
            return f"{self.k}/{self.n}"
        if self.kind == "meanstd":
            return f"{self.value:.4f} ± {self.std:.4f}"
        return f"{self.value:.4f}"


@functools.lru_cache(maxsize=1)
def _raw() -> dict:
    text = importlib.resources.files("trades_instability.report").joinpath("paper_results.yaml").read_text("utf-8")
    return yaml.safe_load(text)


def load_paper_results() -> dict:
    """The YAML document as nested dicts/lists (a deep copy: safe to modify)."""
    import copy

    return copy.deepcopy(_raw())


def table_spec(table: str) -> dict:
    """The raw YAML block of one table (deep copy)."""
    raw = load_paper_results()
    if table not in raw:
        raise KeyError(f"no published table {table!r}; known: {', '.join(TABLES)}")
    return raw[table]


def _bold_set(block: dict) -> set[tuple[str, str]]:
    return {(format_key(r), format_key(c)) for r, c in block.get("bold", []) or []}


def _num(x: Any) -> float:
    return float(x)


@functools.lru_cache(maxsize=1)
def _all_cells() -> tuple[PaperCell, ...]:
    raw = _raw()
    cells: list[PaperCell] = []
    for table in TABLES:
        block = raw[table]
        kind = block["kind"]
        if kind == "values":
            bold = _bold_set(block)
            for row, values in block["rows"].items():
                for col in block["columns"]:
                    cells.append(PaperCell(table, "", row, col, "value", _num(values[col]),
                                           bold=(row, col) in bold))
        elif kind == "meanstd":
            bold = _bold_set(block)
            seeds, assumed = block.get("seeds") or {}, set(block.get("seeds_assumed") or [])
            for row, values in block["rows"].items():
                for col in block["columns"]:
                    mean, std = values[col]
                    n = seeds.get(row)
                    cells.append(PaperCell(table, "", row, col, "meanstd", _num(mean), _num(std),
                                           n=None if n is None else int(n), bold=(row, col) in bold,
                                           n_assumed=row in assumed))
        elif kind == "prob_pivot":
            for panel in block["panels"]:
                bold = _bold_set(panel)
                for r in panel["rows"]:
                    for c in panel["columns"]:
                        k, n = panel["cells"][r][c]
                        cells.append(PaperCell(
                            table, panel.get("title", "") or "", key_label(panel["row"], r), key_label(panel["col"], c),
                            "prob", k / n, k=int(k), n=int(n), bold=(format_key(r), format_key(c)) in bold))
        elif kind == "prob_meanstd":
            bold = _bold_set(block)
            for r in block["rows"]:
                for col in block["columns"]:
                    v = block["cells"][r][col]
                    is_bold = (format_key(r), col) in bold
                    if col == "Prob.":
                        k, n = v
                        cells.append(PaperCell(table, "", key_label(block["row"], r), col, "prob", k / n,
                                               k=int(k), n=int(n), bold=is_bold))
                    else:  # mean/std over the seeds of the row's Prob. column
                        mean, std = v
                        cells.append(PaperCell(table, "", key_label(block["row"], r), col, "meanstd",
                                               _num(mean), _num(std), n=int(block["cells"][r][PROB][1]),
                                               bold=is_bold))
        else:  # pragma: no cover - guarded by test_paper_results
            raise ValueError(f"paper_results.yaml: {table}.kind {kind!r} unknown")
    return tuple(cells)


def paper_cells(table: str | None = None) -> list[PaperCell]:
    """All published cells in table order (one table when ``table`` is given)."""
    if table is not None and table not in TABLES:
        raise KeyError(f"no published table {table!r}; known: {', '.join(TABLES)}")
    return [c for c in _all_cells() if table is None or c.table == table]


def paper_cell(table: str, row: str, column: str, panel: str | None = None) -> PaperCell:
    """One published cell by canonical labels; ``panel`` only needed where rows/columns repeat."""
    hits = [c for c in paper_cells(table) if c.row == row and c.column == column
            and (panel is None or c.panel == panel)]
    if len(hits) != 1:
        raise KeyError(f"{table}: {len(hits)} published cells match row={row!r} column={column!r} panel={panel!r}")
    return hits[0]


def panel_vars(table: str) -> list[tuple[str, str | None, str | None]]:
    """``[(title, row_var, col_var)]`` of the published panels of a table (one entry for plain tables)."""
    block = _raw()[table]
    if block["kind"] == "prob_pivot":
        return [(p.get("title", "") or "", p["row"], p["col"]) for p in block["panels"]]
    if block["kind"] == "prob_meanstd":
        return [("", block["row"], None)]
    return [("", None, None)]
