"""Reproduction library for "Adversarial Robustness Overestimation and Instability in TRADES".

One package per stage of the pipeline, each package's docstring the list of its modules:

- ``core``: the maths, no file I/O (models, losses, attacks, metrics, the Unstable rule).
- ``config``: the run config and its conventions; config.yaml, its checks and its runs.
- ``data``: the datasets, on-device batches and augmentation, downloads.
- ``rundir``: what a run leaves on disk.
- ``train``, ``evaluate``: the two jobs per run (trades-train, trades-eval).
- ``aggregate``: runs -> results/summary.csv + selection.json (Regular / Unstable / diverged).
- ``report``: tables, figures, the FOSC detector, the grids, the review and the comparison with the paper.
- ``workflow``: helpers of the Snakemake rules.
- ``tools``: the speed benchmark, the precision check and gpu-check.
- ``status``: the sweep's table of runs (``python -m trades_instability status``).
- ``runtime``: device resolution, execution mode and library versions (shared by train, evaluate, tools).
- ``one_line_parser``: the command lines' argument parser whose errors are one line.
- ``__main__``: every command-line verb; the rules' shell lines call only these, so moving a module changes no rule.

A researcher training TRADES elsewhere needs only ``core.metrics`` (FOSC, SGCS), ``core.losses`` and
``evaluate``.
"""

__version__ = "0.1.0"
