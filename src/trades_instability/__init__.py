"""Reproduction library for "Adversarial Robustness Overestimation and Instability in TRADES".

One package per stage of the pipeline: ``core`` (models, losses, attacks, metrics: maths, no I/O),
``config``, ``data``, ``rundir`` (what a run leaves on disk), ``train``, ``evaluate``, ``aggregate``,
``report`` (tables, figures, detector, comparison), ``workflow`` (Snakemake helpers) and ``tools``.
A researcher training TRADES elsewhere needs only ``core.metrics`` (FOSC, SGCS), ``core.losses`` and
``evaluate``.
"""

__version__ = "0.1.0"
