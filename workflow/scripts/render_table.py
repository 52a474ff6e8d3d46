"""Snakemake script of rule `table`: render one of Tables 1-7 (logic: trades_instability.report.tables)."""
import logging
from pathlib import Path

from script_job import job

smk = snakemake  # noqa: F821  (injected by Snakemake's script: directive)
with job(smk, f"rendering {smk.wildcards.table}"):
    from trades_instability.report.tables import render_table

    model = render_table(smk.wildcards.table, dict(smk.params.spec), smk.input.summary, smk.input.selection,
                         smk.output.tex, template_dir=Path(smk.input.template).parent)
    for letter, note in model.footnotes:
        logging.info("footnote %s: %s", letter, note)
    for note in model.notes:
        logging.info("note: %s", note)
    logging.info("wrote %s", smk.output.tex)
