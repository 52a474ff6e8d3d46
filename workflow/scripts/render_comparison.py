"""Snakemake script of rule `comparison`: paper vs reproduction for every cell of Tables 1-7."""
import logging
from pathlib import Path

from script_job import job

smk = snakemake  # noqa: F821  (injected by Snakemake's script: directive)
with job(smk, "comparison"):
    from trades_instability.report.comparison import render_comparison, verdict_summary

    df = render_comparison(smk.input.summary, smk.input.selection, dict(smk.params.specs), smk.output.tex,
                           smk.output.csv, template_dir=Path(smk.input.template).parent)
    have = int(df["reproduced"].notna().sum())
    logging.info("%d published cells, %d reproduced; wrote %s and %s", len(df), have, smk.output.tex, smk.output.csv)
    for line in verdict_summary(df):
        logging.info("%s", line)
