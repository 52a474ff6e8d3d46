"""Snakemake script of rule `review_report`: the review's answers (logic: trades_instability.report.review)."""
import logging
from pathlib import Path

from script_job import job

smk = snakemake  # noqa: F821  (injected by Snakemake's script: directive)
with job(smk, "review"):
    from trades_instability.report.figures import run_dirs_from_paths
    from trades_instability.report.review import render_review

    epochs = smk.input.epochs
    epochs = [epochs] if isinstance(epochs, str) else list(epochs)  # snakemake hands a 1-item list as a str
    report = render_review(dict(smk.params.spec), smk.input.summary, smk.input.selection, run_dirs_from_paths(epochs),
                           smk.output.tex, smk.output.csv, smk.output.pdf,
                           template_dir=Path(smk.input.template).parent)
    if not Path(smk.output.png).exists():
        raise RuntimeError(f"PNG not written at {smk.output.png}")
    for block in report.prob_blocks:
        logging.info("%s: %s; Fisher p %s", block.key,
                     ", ".join(f"{r.label} {r.k}/{r.n}" for r in block.rows), block.test_p)
    logging.info("detectors: %s", ", ".join(f"{d.name} AUC {d.auc}" for d in report.detectors))
