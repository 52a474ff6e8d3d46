"""Snakemake script of rule `comparison`: paper vs reproduction for every cell of Tables 1-7."""
import logging
import sys
import traceback
from pathlib import Path

smk = snakemake  # noqa: F821  (injected by Snakemake's script: directive)
sys.path.insert(0, str(Path(smk.scriptdir).resolve().parents[1] / "src"))  # without pip install -e
from trades_instability.report.comparison import render_comparison, verdict_summary  # noqa: E402

logging.basicConfig(filename=smk.log[0], filemode="w", level=logging.INFO, format="%(asctime)s %(message)s")
try:
    df = render_comparison(smk.input.summary, smk.input.selection, dict(smk.params.specs), smk.output.tex,
                           smk.output.csv, template_dir=Path(smk.input.template).parent)
    have = int(df["reproduced"].notna().sum())
    logging.info("%d published cells, %d reproduced; wrote %s and %s", len(df), have, smk.output.tex, smk.output.csv)
    for line in verdict_summary(df):
        logging.info("%s", line)
except Exception:
    logging.error("comparison failed:\n%s", traceback.format_exc())
    sys.exit(1)
