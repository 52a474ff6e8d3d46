"""Snakemake script of rule `grid_report`: tables/{grid}.tex and figures/{grid}.pdf + .png of one side-by-side
comparison, conventions or crossarch (logic: trades_instability.report.grids)."""
import logging
from pathlib import Path

from script_job import job

smk = snakemake  # noqa: F821  (injected by Snakemake's script: directive)
with job(smk, f"rendering the {smk.wildcards.grid} table/figure"):
    from trades_instability.report.grids import render_grid_figure, render_grid_table

    spec, grid = dict(smk.params.spec), smk.wildcards.grid
    model = render_grid_table(spec, smk.input.summary, smk.input.selection, smk.output.tex,
                              template_dir=Path(smk.input.template).parent, grid=grid)
    for letter, note in model.footnotes:
        logging.info("footnote %s: %s", letter, note)
    render_grid_figure(spec, smk.input.summary, smk.input.selection, smk.output.pdf, grid=grid)
    logging.info("wrote %s, %s, %s", smk.output.tex, smk.output.pdf, smk.output.png)
