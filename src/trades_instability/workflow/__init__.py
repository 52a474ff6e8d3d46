"""Helpers of the Snakemake workflow.

- ``paths``: the rules' paths, targets and input functions, derived from the registry.
- ``gpu_slots``: one GPU per local job (``gpu-slot``).
- ``slurm_site``: the SLURM site checks at start-up.
- ``failed_jobs``: a failed job's last error line on the console.
"""
