"""Snakemake script of rules `aggregate` / `aggregate_target` (logic: trades_instability.aggregate)."""
import logging
import sys
import traceback
from pathlib import Path

smk = snakemake  # noqa: F821  (injected by Snakemake's script: directive)
sys.path.insert(0, str(Path(smk.scriptdir).resolve().parents[1] / "src"))
from trades_instability.aggregate import aggregate  # noqa: E402

logging.basicConfig(filename=smk.log[0], filemode="w", level=logging.INFO, format="%(asctime)s %(message)s")
try:
    summary, selection = aggregate(smk.params.runs, float(smk.params.threshold),
                                   out_csv=smk.output.summary, out_json=smk.output.selection)
    for setting, g in selection["groups"].items():
        logging.info("%s: regular %s unstable %s diverged %s self-healing %s representative %s", setting,
                     g["regular"], g["unstable"], g["diverged"], g["self_healing"], g["representative"])
    logging.info("wrote %s (%d runs) and %s", smk.output.summary, len(summary), smk.output.selection)
except Exception:
    logging.error("aggregation failed:\n%s", traceback.format_exc())
    sys.exit(1)
