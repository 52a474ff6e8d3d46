"""What every script of workflow/scripts/ shares: the library on sys.path (also without ``pip install -e .``),
the job's log file, and, when the work fails, the traceback in that log and exit status 1.

Snakemake puts a local script's folder on sys.path, so each script starts with ``from script_job import job``
and does its work inside ``with job(snakemake, "what it does"):``."""

from __future__ import annotations

import contextlib
import logging
import sys
import traceback
from collections.abc import Iterator
from pathlib import Path

SRC = Path(__file__).resolve().parents[2] / "src"


@contextlib.contextmanager
def job(smk, what: str) -> Iterator[None]:
    """Log to the rule's ``log:`` file; an exception inside becomes ``<what> failed:`` + traceback, exit 1."""
    if str(SRC) not in sys.path:
        sys.path.insert(0, str(SRC))
    logging.basicConfig(filename=smk.log[0], filemode="w", level=logging.INFO, format="%(asctime)s %(message)s")
    try:
        yield
    except Exception:
        logging.error("%s failed:\n%s", what, traceback.format_exc())
        sys.exit(1)
