"""Messages that go to the terminal and are also appended to a log file (``--log-file``).

The pipeline's train rule once piped the trainer through ``tee``: on ``scancel`` SLURM signals every
process of the step, tee died first and the trainer's clean-stop line never reached the log. Writing
the file from the process itself keeps every line it prints, up to its last. The file is opened per
line in append mode (a few lines per epoch), so several attempts and processes add to one log.
"""

from __future__ import annotations

import sys
from pathlib import Path


class Echo:
    """``echo(msg)`` prints to stdout (``err=True``: stderr) and appends the line to ``path``."""

    def __init__(self, path: str | Path | None = None):
        self.path = Path(path) if path else None

    def __call__(self, msg: str, err: bool = False) -> None:
        warning = None
        if self.path is not None:  # first: the terminal (or a pipe) may be gone already
            try:
                with open(self.path, "a") as fh:
                    fh.write(f"{msg}\n")
            except OSError as e:  # the log is a copy: never stop a run for it
                warning = f"warning: could not append to {self.path}: {e}"
        for line, stream in ((msg, sys.stderr if err else sys.stdout), (warning, sys.stderr)):
            if line is None:
                continue
            try:
                print(line, file=stream, flush=True)
            except OSError:  # stdout closed (a reader that died, e.g. tee on scancel): the file has it
                if self.path is None:
                    raise


def tail_lines(path: str | Path, tail_bytes: int) -> list[str]:
    """The non-empty lines of the last ``tail_bytes`` of the log at ``path`` (a training log can be long), as
    written (undecodable bytes replaced); OSError when it cannot be read."""
    with open(path, "rb") as fh:
        fh.seek(0, 2)
        fh.seek(max(0, fh.tell() - tail_bytes))
        return [ln for ln in fh.read().decode(errors="replace").splitlines() if ln.strip()]
