"""Snakemake script of rule `table`: render one of Tables 1-7 (logic: trades_instability.report.tables)."""
import logging
import sys
import traceback
from pathlib import Path

smk = snakemake  # noqa: F821  (injected by Snakemake's script: directive)
sys.path.insert(0, str(Path(smk.scriptdir).resolve().parents[1] / "src"))  # without pip install -e
from trades_instability.report.tables import render_table  # noqa: E402

logging.basicConfig(filename=smk.log[0], filemode="w", level=logging.INFO, format="%(asctime)s %(message)s")
try:
    model = render_table(smk.wildcards.table, dict(smk.params.spec), smk.input.summary, smk.input.selection,
                         smk.output.tex, template_dir=Path(smk.input.template).parent)
    for letter, note in model.footnotes:
        logging.info("footnote %s: %s", letter, note)
    for note in model.notes:
        logging.info("note: %s", note)
    logging.info("wrote %s", smk.output.tex)
except Exception:
    logging.error("rendering %s failed:\n%s", smk.wildcards.table, traceback.format_exc())
    sys.exit(1)
