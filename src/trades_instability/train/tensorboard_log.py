"""A run's TensorBoard event files (config ``tensorboard``), written beside epochs.csv as it trains.

    <out>/tensorboard/epoch/   one point per epoch (step = epoch) of every column of epochs.csv but ``epoch``,
                               and the run config as text (step 0)
    <out>/tensorboard/batch/   one point per optimiser step (step = the global step of batches.csv) of every
                               column of batches.csv, with ``log_batch_metrics``

Two folders because a resume purges by step, and epochs and optimiser steps count differently. The points
of an epoch are written and flushed just before its ``last.pt`` (train/loop.py), so whatever a kill leaves
behind is at most the epoch that last.pt does not hold yet. A resumed run opens its writers with
``purge_step`` = the first epoch (step) after last.pt: TensorBoard's reader (EventAccumulator, the server)
then drops every older point at or after it, and the resumed run has no duplicated or out-of-order point.
A run that had no event files yet (tensorboard switched on mid-run, or the folder deleted) gets the epochs
of its resume state written first, so its event files always cover the whole run.

``tensorboard --logdir results/runs`` shows every run as ``<setting>/seed<seed>/state/tensorboard/epoch``.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import yaml

from trades_instability.rundir import layout
from trades_instability.rundir.records import BATCH_COLUMNS, EPOCH_COLUMNS

EPOCH_DIR, BATCH_DIR = "epoch", "batch"
FLUSH_S = 10  # a live run's points reach TensorBoard at least this often (and at every epoch end)
_GROUPS = {"train": "train", "val": "val"}  # tag section by column prefix; the rest under "epoch"


def epoch_tag(column: str) -> str:
    """TensorBoard tag of an epochs.csv column: ``train/train_loss``, ``val/val_fosc``, ``epoch/lr``."""
    return f"{_GROUPS.get(column.split('_')[0], 'epoch')}/{column}"


def batch_tag(column: str) -> str:
    """TensorBoard tag of a batches.csv column: ``batch/kl``."""
    return f"batch/{column}"


EPOCH_SCALARS = [c for c in EPOCH_COLUMNS if c != "epoch"]
BATCH_SCALARS = [c for c in BATCH_COLUMNS if c not in ("epoch", "batch", "step")]


def board_dir(out: str | Path) -> Path:
    return Path(out) / layout.TENSORBOARD


def _value(v: Any) -> float | None:
    """The scalar TensorBoard gets for a CSV cell (booleans as 0/1); None where the CSV cell is empty."""
    if v is None or v == "":
        return None
    v = float(v)
    return None if math.isnan(v) else v


def _has_events(folder: Path) -> bool:
    return folder.is_dir() and any(folder.glob("events.out.tfevents.*"))


class NoBoard:
    """``tensorboard: false``: nothing is written."""

    def epoch(self, row: dict[str, Any], batch_rows: list[dict[str, Any]]) -> None:
        pass

    def close(self) -> None:
        pass


class RunBoard:
    """The two writers of one run, opened at its (resumed) state."""

    def __init__(self, out: str | Path, config: dict[str, Any], epoch: int, step: int,
                 epoch_rows: list[dict[str, Any]], batch_rows: list[dict[str, Any]]):
        root = board_dir(out)
        # a fresh run purges from step 0, so the config text of an attempt killed before epoch 1 goes too
        self._opening = {EPOCH_DIR: (root / EPOCH_DIR, epoch + 1 if epoch else 0),
                         BATCH_DIR: (root / BATCH_DIR, step + 1)}
        self._writers: dict[str, Any] = {}
        backfill_epochs = not _has_events(root / EPOCH_DIR)
        backfill_batches = not _has_events(root / BATCH_DIR)
        if backfill_epochs or not epoch:
            text = yaml.safe_dump(config, sort_keys=True, default_flow_style=False)
            # markdown: four-space indent keeps the YAML a code block in TensorBoard's text tab
            self._writer(EPOCH_DIR).add_text("config", "".join(f"    {line}\n" for line in text.splitlines()), 0)
        if backfill_epochs:
            for r in epoch_rows:
                self._epoch_points(r)
        if backfill_batches:
            self._batch_points(batch_rows)
        self._flush()

    def _writer(self, kind: str):
        """The writer of ``kind``, opened at its first point: a resumed attempt that completes no epoch (it
        diverges, or is stopped at once) leaves the event files as they were."""
        if kind not in self._writers:
            # imported here, not at the top: it pulls in the tensorboard package (seconds)
            from torch.utils.tensorboard import SummaryWriter

            folder, purge = self._opening[kind]
            self._writers[kind] = SummaryWriter(str(folder), purge_step=purge, flush_secs=FLUSH_S)
        return self._writers[kind]

    def _epoch_points(self, row: dict[str, Any]) -> None:
        for c in EPOCH_SCALARS:
            v = _value(row.get(c))
            if v is not None:
                self._writer(EPOCH_DIR).add_scalar(epoch_tag(c), v, int(row["epoch"]))

    def _batch_points(self, rows: list[dict[str, Any]]) -> None:
        for r in rows:
            for c in BATCH_SCALARS:
                v = _value(r.get(c))
                if v is not None:
                    self._writer(BATCH_DIR).add_scalar(batch_tag(c), v, int(r["step"]))

    def _flush(self) -> None:
        for w in self._writers.values():
            w.flush()

    def epoch(self, row: dict[str, Any], batch_rows: list[dict[str, Any]]) -> None:
        """One completed epoch: its row of epochs.csv and its rows of batches.csv, on disk on return."""
        self._epoch_points(row)
        self._batch_points(batch_rows)
        self._flush()

    def close(self) -> None:
        for w in self._writers.values():
            w.close()


def open_board(cfg: Any, out: str | Path, state: Any, batch_rows: list[dict[str, Any]]) -> RunBoard | NoBoard:
    """The run's board at ``state`` (a TrainState, fresh or resumed), or :class:`NoBoard` with
    ``tensorboard: false``."""
    if not cfg.tensorboard:
        return NoBoard()
    return RunBoard(out, cfg.to_dict(), state.epoch, state.step, state.epoch_rows, batch_rows)
