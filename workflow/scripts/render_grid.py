"""Snakemake script of rule `grid_report`: tables/{grid}.tex and figures/{grid}.pdf + .png of one side-by-side
comparison, conventions or crossarch (logic: trades_instability.report.grids)."""
import logging
import sys
import traceback
from pathlib import Path

smk = snakemake  # noqa: F821  (injected by Snakemake's script: directive)
sys.path.insert(0, str(Path(smk.scriptdir).resolve().parents[1] / "src"))  # without pip install -e
from trades_instability.report.grids import render_grid_figure, render_grid_table  # noqa: E402

logging.basicConfig(filename=smk.log[0], filemode="w", level=logging.INFO, format="%(asctime)s %(message)s")
try:
    spec, grid = dict(smk.params.spec), smk.wildcards.grid
    model = render_grid_table(spec, smk.input.summary, smk.input.selection, smk.output.tex,
                              template_dir=Path(smk.input.template).parent, grid=grid)
    for letter, note in model.footnotes:
        logging.info("footnote %s: %s", letter, note)
    render_grid_figure(spec, smk.input.summary, smk.input.selection, smk.output.pdf, grid=grid)
    logging.info("wrote %s, %s, %s", smk.output.tex, smk.output.pdf, smk.output.png)
except Exception:
    logging.error("rendering the %s table/figure failed:\n%s", smk.wildcards.grid, traceback.format_exc())
    sys.exit(1)
