"""Snakemake script of rule `figure`: draw one of Figures 1-7 (logic: trades_instability.report.figures)."""
import logging

from script_job import job

smk = snakemake  # noqa: F821  (injected by Snakemake's script: directive)
with job(smk, f"rendering {smk.wildcards.figure}"):
    from trades_instability.report.figures import render_figure, run_dirs_from_paths

    runs = getattr(smk.input, "runs", [])
    runs = [runs] if isinstance(runs, str) else list(runs)  # snakemake hands a 1-item list as a str
    run_dirs = run_dirs_from_paths(runs)
    logging.info("%d run directories: %s", len(run_dirs), sorted(run_dirs))
    pdf, png = render_figure(smk.wildcards.figure, dict(smk.params.spec), smk.input.summary, smk.input.selection,
                             run_dirs, smk.output.pdf)
    if str(png) != str(smk.output.png):
        raise RuntimeError(f"PNG written to {png}, rule expects {smk.output.png}")
    logging.info("wrote %s and %s", pdf, png)
