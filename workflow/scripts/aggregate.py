"""Snakemake script of rules `aggregate` / `aggregate_target` (logic: trades_instability.aggregate)."""
import logging

from script_job import job

smk = snakemake  # noqa: F821  (injected by Snakemake's script: directive)
with job(smk, "aggregation"):
    from trades_instability.aggregate import aggregate

    summary, selection = aggregate(smk.params.runs, float(smk.params.threshold),
                                   out_csv=smk.output.summary, out_json=smk.output.selection)
    for setting, g in selection["groups"].items():
        logging.info("%s: regular %s unstable %s diverged %s self-healing %s representative %s", setting,
                     g["regular"], g["unstable"], g["diverged"], g["self_healing"], g["representative"])
    logging.info("wrote %s (%d runs) and %s", smk.output.summary, len(summary), smk.output.selection)
