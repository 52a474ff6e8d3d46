"""Helpers of the Snakemake workflow: paths and input functions (``paths``), one GPU per local job
(``gpu_slots``), SLURM site checks (``slurm_site``)."""
