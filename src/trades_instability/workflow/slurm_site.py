"""Start-up checks of a Snakemake run through the SLURM profile (the Snakefile's ``onstart``).

snakemake-executor-plugin-slurm (2.8) has three rough edges on real clusters that this module
smooths over before the first job is submitted:

* Job status. The plugin asks ``sacct`` by default. On a cluster without accounting storage sacct
  answers "Slurm accounting storage is disabled", the status query fails every time and Snakemake
  waits forever for jobs that finished long ago. It also silently falls back from ``squeue`` to
  ``sacct`` when MinJobAge < 3 x the first status interval. :func:`choose_status_command` switches to
  squeue (one line says so) where that works, and stops with the fix where nothing works.
* Account guessing. Without an account the plugin guesses one with a broken sacct call and logs
  several warnings (with sacct's usage text); :class:`AccountNoiseFilter` replaces them with one line.
* SLURM_CONF. The job-step plugin drops every SLURM_* variable (SLURM_CONF too) before its inner
  ``srun``, which then cannot find a slurm.conf at a non-default path. :func:`pass_slurm_conf` keeps
  it in TRADES_SLURM_CONF and puts the profile's ``srun`` wrapper (which restores it) first on PATH;
  sbatch exports both into the job.
"""

from __future__ import annotations

import logging
import os
import re
import subprocess
from pathlib import Path

ACCOUNTING_DISABLED = "accounting storage is disabled"
DEFAULT_INIT_SECONDS = 40  # the plugin's default --slurm-init-seconds-before-status-checks


class SlurmSiteError(RuntimeError):
    """The run cannot work on this cluster as configured; the message says what to change."""


def _run(argv: list[str]) -> subprocess.CompletedProcess:
    return subprocess.run(argv, capture_output=True, text=True, timeout=30)


def accounting_error(run=_run) -> str | None:
    """sacct's complaint when it cannot answer job queries (accounting disabled), else None."""
    try:
        p = run(["sacct", "--noheader", "-X", "--format=JobIdRaw", "--jobs", "1"])
    except (OSError, subprocess.TimeoutExpired):
        return None  # no sacct at all: the plugin itself uses squeue then
    text = " ".join((p.stderr or "").split())
    if p.returncode != 0 and ACCOUNTING_DISABLED in text.lower():
        return text
    return None


def min_job_age(run=_run) -> int | None:
    """slurmctld's MinJobAge in seconds (how long squeue still shows a finished job), or None."""
    try:
        p = run(["scontrol", "show", "config"])
    except (OSError, subprocess.TimeoutExpired):
        return None
    m = re.search(r"^\s*MinJobAge\s*=\s*(\d+)", p.stdout or "", flags=re.M)
    return int(m.group(1)) if m else None


def choose_status_command(configured: str | None, sacct_error: str | None, job_age: int | None,
                          init_seconds: int = DEFAULT_INIT_SECONDS) -> tuple[str | None, str | None]:
    """(status command to use, one line for the user or None). Raises SlurmSiteError where
    Snakemake would never see a job finish."""
    if sacct_error is None:
        return configured, None  # accounting works: either command does
    need = 3 * init_seconds  # the plugin falls back to sacct below this MinJobAge
    if job_age is None or job_age < need:
        age = "unknown" if job_age is None else f"{job_age} s"
        raise SlurmSiteError(
            f"SLURM job accounting is disabled on this cluster ({sacct_error}) and MinJobAge is {age}: "
            f"squeue forgets finished jobs before Snakemake asks, so it would wait forever. Fix: set "
            f"MinJobAge={max(need, 300)} (or more) in slurm.conf and `scontrol reconfigure`, or lower "
            f"--slurm-init-seconds-before-status-checks to {max(1, (job_age or 0) // 3)} or less")
    if configured == "squeue":
        return configured, None
    return "squeue", (f"SLURM job accounting is disabled here ({sacct_error}): job status comes from "
                      f"squeue (MinJobAge {job_age} s); export TRADES_SLURM_STATUS_COMMAND=squeue to say so")


class AccountNoiseFilter(logging.Filter):
    """Drops the plugin's account-guessing warnings (logged when no account is given); the first one
    becomes a single line of ours."""

    NOISE = ("No SLURM account given, trying to guess", "No account was given, not able to get a SLURM account",
             "Unable to guess SLURM account")
    LINE = ("no SLURM account configured (TRADES_SLURM_ACCOUNT is unset): jobs are submitted without -A, "
            "i.e. under the cluster's default account")

    def __init__(self):
        super().__init__()
        self.said = False

    def filter(self, record: logging.LogRecord) -> bool:
        msg = str(record.msg)
        if not msg.startswith(self.NOISE):
            return True
        if self.said:
            return False
        self.said = True
        record.msg, record.args, record.levelno, record.levelname = self.LINE, (), logging.INFO, "INFO"
        return True


def pass_slurm_conf(wrapper_dir: str | Path, environ=os.environ) -> bool:
    """Let the job step's inner srun find a slurm.conf given by SLURM_CONF (see module doc).
    Changes ``environ`` of this (submitting) process; True when something was done."""
    conf = environ.get("SLURM_CONF", "").strip()
    if not conf:
        return False  # default path or configless: srun finds it by itself
    environ["TRADES_SLURM_CONF"] = conf
    wrapper_dir = str(wrapper_dir)
    path = environ.get("PATH", os.defpath).split(os.pathsep)
    if wrapper_dir not in path:
        environ["PATH"] = os.pathsep.join([wrapper_dir, *path])
    return True


def on_start(workflow, logger: logging.Logger, wrapper_dir: str | Path, environ=os.environ, run=_run) -> None:
    """Everything above, for a Snakemake run with the slurm executor (nothing for other executors)."""
    plugin = getattr(workflow, "executor_plugin", None)
    if plugin is None or plugin.name.removeprefix("snakemake-executor-plugin-") != "slurm":
        return
    settings = workflow.executor_settings
    init = getattr(settings, "init_seconds_before_status_checks", None) or DEFAULT_INIT_SECONDS
    configured = getattr(settings, "status_command", None)
    sacct_error = accounting_error(run)
    command, line = choose_status_command(configured, sacct_error, min_job_age(run) if sacct_error else None, init)
    if command != configured:
        settings.status_command = command  # read by the plugin at every status check
    if line:
        logger.warning(line)
    if not environ.get("TRADES_SLURM_ACCOUNT", "").strip() and not any(
            isinstance(f, AccountNoiseFilter) for f in logger.filters):
        logger.addFilter(AccountNoiseFilter())
    pass_slurm_conf(wrapper_dir, environ)
