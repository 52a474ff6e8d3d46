"""Where one training run stands, read from the files it already writes (never written to, never locked).

Safe while the run writes: epochs.csv and run.json are replaced atomically by the trainer, and a file that
is half written anyway (a results folder copied mid-write, another tool) is read up to its last complete
line. The state of a run, first match wins:

    finished / diverged      state/run.json (else the published run.json) says so
    running                  state/run.lock is held by a live process (rundir/lock.py: pid on this host,
                             squeue for a SLURM job elsewhere, else a fresh heartbeat)
    failed                   the last line of train.log is an error (the trainer's or prepare-state's)
    interrupted-resumable    state/checkpoints/last.pt exists: rerunning resumes from it
    pending                  nothing of the run yet
"""

from __future__ import annotations

import csv
import io
import json
import re
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from trades_instability.rundir import layout
from trades_instability.rundir import lock as run_lock
from trades_instability.rundir.log_file import tail_lines

STATES = ("pending", "running", "finished", "failed", "diverged", "interrupted-resumable")
TRAIN_LOG = "train.log"  # in the run directory: every attempt's messages (train rule, --log-file)
_ERROR = re.compile(r"^([\w.-]+: )?error: ")


@dataclass
class RunProgress:
    setting: str
    seed: int
    state: str = "pending"
    epoch: int = 0  # completed epochs
    epochs: int | None = None  # of the run config
    val_clean_acc: float | None = None  # last epoch
    val_pgd_acc: float | None = None
    val_fosc: float | None = None
    fosc_threshold: float | None = None
    fosc_flagged: bool = False  # last FOSC above the fix's threshold
    noise_injections: int = 0  # epochs whose first batches got the fix's noise
    s_per_epoch: float | None = None  # mean measured epoch time
    spent_s: float = 0.0  # sum of the measured epoch times
    eta_s: float | None = None  # remaining epochs x s_per_epoch (unfinished runs)
    host: str | None = None  # running: the lock holder; finished: where run.json was written
    gpu: str | None = None  # running: CUDA_VISIBLE_DEVICES of the holder; finished: run.json's device
    slurm_job_id: str | None = None
    reason: str | None = None  # failed: the error line; running: the holder
    extra: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d.pop("extra")
        return {**d, **self.extra}


def read_csv_rows(path: Path) -> list[dict[str, str]]:
    """The complete rows of a CSV that may be being written: a last line without its newline, or with
    too few fields, is left out. [] when the file is missing or unreadable."""
    try:
        text = path.read_text()
    except (OSError, UnicodeDecodeError):
        return []
    if not text.endswith("\n"):
        text = text[: text.rfind("\n") + 1]
    try:
        reader = csv.DictReader(io.StringIO(text))
        return [r for r in reader if None not in r.values() and None not in r]
    except csv.Error:
        return []


def _read_json(path: Path) -> dict[str, Any] | None:
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) else None


def _float(text: str | None) -> float | None:
    try:
        return float(text) if text not in (None, "") else None
    except ValueError:
        return None


def _last_line(path: Path, tail_bytes: int = 8192) -> str | None:
    try:
        lines = tail_lines(path, tail_bytes)
    except OSError:
        return None
    return lines[-1] if lines else None


def live_holder(state: Path, stale: Callable[[dict[str, Any]], str | None] = run_lock.stale_reason
                ) -> dict[str, Any] | None:
    """The holder of ``state``'s run lock while it is alive (rundir/lock.py's rule), else None."""
    holder = _read_json(state / run_lock.LOCK_NAME)
    if holder is None or stale(holder) is not None:
        return None
    return holder


def read_progress(run_dir: str | Path, setting: str, seed: int, *, epochs: int | None = None,
                  fosc_threshold: float | None = None,
                  stale: Callable[[dict[str, Any]], str | None] = run_lock.stale_reason) -> RunProgress:
    """The progress of the run in ``run_dir`` (its trainer writes ``run_dir/state``)."""
    run_dir = Path(run_dir)
    state = Path(layout.state_dir(str(run_dir)))
    p = RunProgress(setting, seed, epochs=epochs, fosc_threshold=fosc_threshold)
    rows = read_csv_rows(state / layout.EPOCHS_CSV) or read_csv_rows(run_dir / layout.EPOCHS_CSV)
    if rows:
        last = rows[-1]
        p.epoch = int(last["epoch"])
        p.val_clean_acc, p.val_pgd_acc, p.val_fosc = (_float(last.get(k)) for k in
                                                      ("val_clean_acc", "val_pgd_acc", "val_fosc"))
        p.noise_injections = sum(1 for r in rows if (_float(r.get("noise_batches")) or 0) > 0)
        times = [t for t in (_float(r.get("epoch_time_s")) for r in rows) if t is not None]
        if times:
            p.spent_s = sum(times)
            p.s_per_epoch = p.spent_s / len(times)
    p.fosc_flagged = p.val_fosc is not None and fosc_threshold is not None and p.val_fosc > fosc_threshold

    info = _read_json(state / layout.RUN_JSON)
    holder = None if info else live_holder(state, stale)
    last_line = _last_line(run_dir / TRAIN_LOG)
    if info is None and holder is None and not (state / layout.LAST_PT).is_file():
        info = _read_json(run_dir / layout.RUN_JSON)  # only the published files (a copied results folder)
    if info is not None:
        p.state = "diverged" if info.get("status") == "diverged" else "finished"
        p.gpu = info.get("device")
        p.host = info.get("host")
        if info.get("diverged"):
            p.reason = (info["diverged"] or {}).get("message")
    elif holder is not None:
        p.state = "running"
        p.host, p.slurm_job_id = holder.get("host"), holder.get("slurm_job_id")
        p.gpu = holder.get("cuda_visible_devices")
        p.reason = run_lock.describe(holder)
    elif last_line is not None and _ERROR.match(last_line):
        p.state, p.reason = "failed", last_line
    elif (state / layout.LAST_PT).is_file():
        p.state = "interrupted-resumable"
    if p.state in ("running", "interrupted-resumable", "failed") and epochs and p.s_per_epoch:
        p.eta_s = max(0, epochs - p.epoch) * p.s_per_epoch
    return p
