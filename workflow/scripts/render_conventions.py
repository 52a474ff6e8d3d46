"""Snakemake script of rule `conventions`: tables/conventions.tex and figures/conventions.pdf + .png
(logic: trades_instability.conventions_report)."""
import logging
import sys
import traceback
from pathlib import Path

smk = snakemake  # noqa: F821  (injected by Snakemake's script: directive)
sys.path.insert(0, str(Path(smk.scriptdir).resolve().parents[1] / "src"))  # without pip install -e
from trades_instability.conventions_report import render_conventions_figure, render_conventions_table  # noqa: E402

logging.basicConfig(filename=smk.log[0], filemode="w", level=logging.INFO, format="%(asctime)s %(message)s")
try:
    spec = dict(smk.params.spec)
    model = render_conventions_table(spec, smk.input.summary, smk.input.selection, smk.output.tex,
                                     template_dir=smk.params.template_dir)
    for letter, note in model.footnotes:
        logging.info("footnote %s: %s", letter, note)
    render_conventions_figure(spec, smk.input.summary, smk.input.selection, smk.output.pdf)
    logging.info("wrote %s, %s, %s", smk.output.tex, smk.output.pdf, smk.output.png)
except Exception:
    logging.error("rendering the conventions table/figure failed:\n%s", traceback.format_exc())
    sys.exit(1)
