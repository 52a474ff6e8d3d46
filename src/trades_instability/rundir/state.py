"""The trainer's state folder between workflow steps (``{run_dir}/state``, :mod:`.layout`).

* :func:`prepare_state` (before training): keep the folder when it was started from the same run
  config (the trainer resumes from ``checkpoints/last.pt``), else move it aside so the trainer starts
  over instead of refusing to resume; never under a trainer that still holds the run lock.
* :func:`publish` (after training): expose the finished run's files at the run directory's contract
  paths (:data:`.layout.PUBLISHED`), hard links when possible, ``run.json`` last.

Each problem is one :class:`RunStateError` naming the folder and what to do; the command line
(:mod:`trades_instability.config.cli`: ``prepare-state``, ``publish``) prints it as ``error: ...``.
"""

from __future__ import annotations

import json
import os
import shutil
import time
from pathlib import Path

import yaml

from trades_instability.rundir import layout


class RunStateError(RuntimeError):
    """The state folder cannot be prepared or published; the message names it and the fix."""


def _same_yaml(a: str, b: str) -> bool:
    """The same run config, up to the keys that change only what a run writes beside its results."""
    from trades_instability.config.run import OUTPUT_ONLY_KEYS

    try:
        da, db = yaml.safe_load(a), yaml.safe_load(b)
    except yaml.YAMLError:
        return False
    if not (isinstance(da, dict) and isinstance(db, dict)):
        return da == db
    return ({k: v for k, v in da.items() if k not in OUTPUT_ONLY_KEYS}
            == {k: v for k, v in db.items() if k not in OUTPUT_ONLY_KEYS})


def _refuse_if_locked(state: Path) -> None:
    """Never move a state folder away under a trainer that still writes it (e.g. a job left running
    by a killed Snakemake); the trainer itself refuses a second writer (rundir/lock.py)."""
    from trades_instability.rundir import lock as run_lock

    path = state / run_lock.LOCK_NAME
    try:
        holder = json.loads(path.read_text())
    except (OSError, ValueError):
        return
    if isinstance(holder, dict) and run_lock.stale_reason(holder) is None:
        raise RunStateError(
            f"{state} is in use by {run_lock.describe(holder)}; cancel that job first (scancel / kill), then rerun")


def prepare_state(config: str | Path, state: str | Path) -> str:
    """Keep ``state`` (the trainer's resumable output folder) if it was started from the same run
    config; otherwise move it aside to ``state.stale-<time>`` so the trainer starts over instead of
    refusing to resume. Returns what was done (for the log)."""
    config, state = Path(config), Path(state)
    marker = state / layout.STATE_CONFIG
    text = config.read_text()
    _refuse_if_locked(state)
    if state.exists():
        had_marker = marker.is_file()  # before the rename below moves it away
        if had_marker and _same_yaml(marker.read_text(), text):
            if (state / layout.LAST_PT).is_file():
                return f"resuming from {state / layout.LAST_PT}"
            return f"reusing {state} (no last.pt yet)"
        if any(state.iterdir()):
            stale = state.with_name(f"{state.name}.stale-{time.strftime('%Y%m%d-%H%M%S')}")
            state.rename(stale)
            reason = "a different run config" if had_marker else "no recorded run config"
            msg = f"moved {state} (started with {reason}) to {stale}"
        else:
            msg = f"starting in empty {state}"
    else:
        msg = f"starting fresh in {state}"
    state.mkdir(parents=True, exist_ok=True)
    tmp = marker.with_name(f".{marker.name}.tmp")
    tmp.write_text(text)
    tmp.replace(marker)
    return msg


PUBLISHED = layout.PUBLISHED


def _link_or_copy(src: Path, dst: Path) -> None:
    dst.parent.mkdir(parents=True, exist_ok=True)
    tmp = dst.with_name(f".{dst.name}.publish.tmp")
    if tmp.exists():
        tmp.unlink()
    try:
        os.link(src, tmp)
    except OSError:
        shutil.copy2(src, tmp)
    tmp.replace(dst)


def publish(state: str | Path, run_dir: str | Path) -> list[str]:
    """Expose the finished run's artifacts at their contract paths in ``run_dir`` (hard links when
    possible, else copies): run.json, epochs.csv, batches.csv, checkpoints/best.pt and checkpoints/last.pt
    (the final epoch's model, evaluated beside best.pt). ``run.json`` is
    placed last. Raises RunStateError when the trainer produced no run.json or no best.pt."""
    state, run_dir = Path(state), Path(run_dir)
    info_path = state / layout.RUN_JSON
    if not info_path.is_file():
        raise RunStateError(f"{info_path} missing: the trainer did not finish")
    best = state / layout.BEST_PT
    if not best.is_file():
        status = json.loads(info_path.read_text()).get("status")
        raise RunStateError(
            f"{best} missing (run status {status!r}): the run has no validated checkpoint to evaluate "
            f"(it diverged before its first epoch completed); look at {state}")
    done = []
    for rel in PUBLISHED[1:] + PUBLISHED[:1]:
        _link_or_copy(state / rel, run_dir / rel)
        done.append(str(run_dir / rel))
    return done
