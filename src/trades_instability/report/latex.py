"""LaTeX output of the report: escaping, the jinja2 environment of ``workflow/templates/*.tex.j2`` (delimiters
``<< >>``, ``<% %>``, ``<# #>`` so that LaTeX braces need no escaping) and atomic writing."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

_LATEX_SPECIAL = {
    "\\": r"\textbackslash{}", "&": r"\&", "%": r"\%", "$": r"\$", "#": r"\#", "_": r"\_",
    "{": r"\{", "}": r"\}", "~": r"\textasciitilde{}", "^": r"\textasciicircum{}",
    "<": r"\textless{}", ">": r"\textgreater{}",
}


def latex_escape(text: Any) -> str:
    """Escape text for LaTeX (underscores in setting names, %, &, ...)."""
    return "".join(_LATEX_SPECIAL.get(ch, ch) for ch in str(text))

def seed_list(seeds: list[int]) -> str:
    """``"0, 1, 3"``: sorted seeds as text (notes, captions)."""
    return ", ".join(str(s) for s in sorted(seeds))


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


def template_env(template_dir: str | os.PathLike | None):
    """The jinja2 environment of the templates (filters ``tex``: :func:`latex_escape`, ``seeds``)."""
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
    env.filters["seeds"] = lambda s: seed_list(s) if s else "none"
    return env


def write_text(path: str | os.PathLike, text: str) -> None:
    """Write ``text`` to ``path`` atomically (never a half-written table)."""
    from trades_instability.rundir.atomic_io import atomic_write_text

    atomic_write_text(path, text)


def render_model(model: Any, template_dir: str | os.PathLike | None = None, template: str | None = None) -> str:
    """LaTeX of a computed table (a :class:`~trades_instability.report.cells.TableModel`): the template of its
    registry entry (report/registry.py), ``<name>.tex.j2`` for a name not registered."""
    from trades_instability.report.registry import REGISTRY

    art = REGISTRY.get(model.name)
    template = template or (art.template if art is not None and art.template else f"{model.name}.tex.j2")
    return template_env(template_dir).get_template(template).render(model=model, info=model.info)
