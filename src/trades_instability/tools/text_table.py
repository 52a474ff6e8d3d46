"""The tools' printed tables (bench's console tables, gpu-check's report.md): numbers formatted, Markdown
columns padded to their width."""

from __future__ import annotations

import math


def fmt(v: float | None, spec: str) -> str:
    """``v`` formatted with ``spec``; "-" for a missing or NaN value."""
    return "-" if v is None or (isinstance(v, float) and math.isnan(v)) else format(v, spec)


def render_table(headers: list[str], rows: list[list[str]], *, right_align: bool = True) -> str:
    """A Markdown table; with ``right_align`` every column after the first is right-aligned (numbers)."""
    widths = [max(len(h), *(len(r[i]) for r in rows)) if rows else len(h) for i, h in enumerate(headers)]

    def line(cells: list[str]) -> str:
        return "| " + " | ".join(c.rjust(w) if right_align and i > 0 else c.ljust(w)
                                 for i, (c, w) in enumerate(zip(cells, widths, strict=True))) + " |"

    sep = "|" + "|".join("-" * (w + 2) for w in widths) + "|"
    return "\n".join([line(headers), sep, *(line(r) for r in rows)])
