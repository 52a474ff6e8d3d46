"""A failed job says why on the console: the Snakefile's ``onerror`` prints, for every failed job of every
rule, the last error line of its log (e.g. the download rule's URL and the folder to fill by hand).

Snakemake itself prints only ``Error in rule ... (check log file(s) for error details)``; ``--show-failed-logs``
prints whole logs (a training log holds every epoch), and it would have to be set in every profile: the
SLURM profile is a ``--workflow-profile`` and a ``profiles/default/`` would replace it. ``onerror`` runs in
the main Snakemake process whatever the executor and profile (once, when the run ends with a failure; with
``--keep-going`` after every other job), and reads the logs, which every rule writes to the shared file system.

The failed jobs come from Snakemake's scheduler (``workflow.scheduler.failed``, Snakemake 9); should that
attribute go away, from the ``log: ... (check log file(s) ...)`` lines of Snakemake's own log file.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from trades_instability.rundir.log_file import tail_lines

# what an error line looks like in the logs of this workflow's commands: "<prog>: error: ...", Python's
# last traceback line ("FooError: ..."), the trainer's "ERROR: ...", and the shell's / SLURM's own words
ERROR_LINE = re.compile(r"(?i)\berror\b|exception|traceback|fatal|killed|cancelled|not found|no such file|denied")
_SNAKEMAKE_LOG_LINE = re.compile(r"^\s*log: (.+?) \(check log file\(s\) for error details\)\s*$")
TAIL_BYTES = 65536  # only the end of a log is read (a training log can be long)


def last_error_line(path: str | Path) -> str:
    """The last line of the log at ``path`` that reads as an error, else its last line; or why there is none."""
    try:
        lines = [ln.strip() for ln in tail_lines(path, TAIL_BYTES)]
    except FileNotFoundError:
        return "(no log file: the job failed before its command wrote one)"
    except OSError as e:
        return f"(log unreadable: {e.strerror})"
    if not lines:
        return "(empty log)"
    for line in reversed(lines):
        if ERROR_LINE.search(line):
            return line
    return lines[-1]


def _jobs(failed: Iterable[Any]) -> list[Any]:
    out = []
    for job in failed:  # a group job fails as one: report each of its jobs
        out.extend(getattr(job, "jobs", None) or [job])
    return out


def lines_for_jobs(failed: Iterable[Any]) -> list[str]:
    """One line per log of each failed job: rule, wildcards, the error line and the log's path."""
    lines = []
    for job in sorted(_jobs(failed), key=lambda j: (j.rule.name, str(getattr(j, "wildcards_dict", "")))):
        wildcards = ", ".join(f"{k}={v}" for k, v in (getattr(job, "wildcards_dict", None) or {}).items())
        name = f"{job.rule.name}" + (f" ({wildcards})" if wildcards else "")
        logs = [str(f) for f in (job.log or [])]
        if not logs:
            lines.append(f"{name}: failed (the rule declares no log)")
        for log in logs:
            lines.append(f"{name}: {last_error_line(log)}  [{log}]")
    return lines


def lines_from_snakemake_log(snakemake_log: str | Path | None) -> list[str]:
    """The same from the log files named in Snakemake's own log (``log: ... (check log file(s) ...)``)."""
    try:
        text = Path(snakemake_log).read_text(errors="replace") if snakemake_log else ""
    except OSError:
        return []
    logs = []
    for line in text.splitlines():
        m = _SNAKEMAKE_LOG_LINE.match(line)
        if m:
            logs.extend(p.strip() for p in m.group(1).split(", ") if p.strip() not in logs)
    return [f"{last_error_line(p)}  [{p}]" for p in logs]


def report(workflow: Any, logger: Any, snakemake_log: str | Path | None = None) -> list[str]:
    """Log the why of every failed job (the Snakefile's ``onerror``); returns the lines."""
    failed = getattr(getattr(workflow, "scheduler", None), "failed", None)
    lines = lines_for_jobs(failed) if failed else lines_from_snakemake_log(snakemake_log)
    if lines:
        logger.error("Why the failed jobs failed (the last error line of each log):\n"
                     + "\n".join(f"    {ln}" for ln in lines))
    return lines
