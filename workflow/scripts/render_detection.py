"""Snakemake script of rule `detection`: FOSC as a detector (logic: trades_instability.report.detection)."""
import logging
from pathlib import Path

from script_job import job

smk = snakemake  # noqa: F821  (injected by Snakemake's script: directive)
with job(smk, "detection"):
    from trades_instability.report.detection import render_detection
    from trades_instability.report.figures import run_dirs_from_paths

    epochs = smk.input.epochs
    epochs = [epochs] if isinstance(epochs, str) else list(epochs)  # snakemake hands a 1-item list as a str
    report = render_detection(smk.input.summary, smk.input.selection, run_dirs_from_paths(epochs),
                              list(smk.params.settings), smk.output.tex, smk.output.csv, smk.output.pdf,
                              template_dir=Path(smk.input.template).parent)
    if not Path(smk.output.png).exists():
        raise RuntimeError(f"PNG not written at {smk.output.png}")
    g = report.pooled
    logging.info("%d runs (%d Unstable, %d Regular); %s", len(report.traces), g.n_unstable, g.n_regular,
                 f"AUC {g.auc:.3f}, threshold {g.threshold:.4g}" if g.enough else "not enough runs to calibrate")
    for note in report.notes:
        logging.info("%s", note)
