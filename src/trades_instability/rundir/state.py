"""The trainer's state folder between workflow steps (``{run_dir}/state``, :mod:`.layout`).

* :func:`prepare_state` (before training): keep the folder when it was started from the same run
  config (the trainer resumes from ``checkpoints/last.pt``), else move it aside so the trainer starts
  over instead of refusing to resume; never under a trainer that still holds the run lock: that one is
  waited for, and its finished result adopted (a rerun next to a job orphaned by a killed Snakemake).
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
    try:
        da, db = yaml.safe_load(a), yaml.safe_load(b)
    except yaml.YAMLError:
        return False
    if not (isinstance(da, dict) and isinstance(db, dict)):
        return da == db
    return layout.without_output_only(da) == layout.without_output_only(db)


def _wait_for_holder(state: Path, log) -> dict | None:
    """Never touch a state folder under a trainer that still writes it (e.g. a job left running by a killed
    Snakemake): wait for it (rundir/lock.py's wait, which follows its heartbeat) and return it; its finished
    result is then adopted by the caller, or, if it died, the run resumes from its last.pt."""
    from trades_instability.rundir import lock as run_lock

    try:
        return run_lock.wait_while_held(state, log)
    except run_lock.RunLocked as e:
        raise RunStateError(str(e)) from None


def prepare_state(config: str | Path, state: str | Path, log=print) -> str:
    """Keep ``state`` (the trainer's resumable output folder) if it was started from the same run
    config; otherwise move it aside to ``state.stale-<time>`` so the trainer starts over instead of
    refusing to resume. A live trainer holding it is waited for first (``log`` says so). Returns what
    was done (for the log)."""
    config, state = Path(config), Path(state)
    text = config.read_text()
    waited = _wait_for_holder(state, log)
    msg = _prepare(text, state)
    if waited is None:
        return msg
    from trades_instability.rundir.lock import describe

    if msg.startswith(("resuming", "reusing")) and (state / layout.RUN_JSON).is_file():
        # the trainer then finds the finished run.json and adopts it as it is (train/loop.py)
        return f"{describe(waited)} finished the run: adopting its result ({state / layout.RUN_JSON})"
    return f"{describe(waited)} ended before finishing the run: {msg}"


def _prepare(text: str, state: Path) -> str:
    marker = state / layout.STATE_CONFIG
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


def finished_result(out: str | Path, config: dict) -> dict | None:
    """The run.json in ``out`` when it records a finished run (complete or diverged) of ``config`` (the output-only
    keys aside), else None: a trainer started on it adopts it instead of touching the folder."""
    try:
        info = json.loads((Path(out) / layout.RUN_JSON).read_text())
    except (OSError, ValueError):
        return None
    if not isinstance(info, dict) or info.get("status") not in ("complete", "diverged"):
        return None
    same = layout.without_output_only(info.get("config") or {}) == layout.without_output_only(config)
    return info if same else None


def _link_or_copy(src: Path, dst: Path) -> None:
    dst.parent.mkdir(parents=True, exist_ok=True)
    # one temporary per process: an orphaned job and the rerun that adopted its result may publish at once
    tmp = dst.with_name(f".{dst.name}.publish.{os.getpid()}.tmp")
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
