"""The files of one training run directory, kept consistent with its resume state.

``checkpoints/last.pt`` is the single source of truth: it holds the epoch log and the batch log of
every completed epoch, and the CSVs are rewritten from it. A crash between writing ``last.pt`` and
the CSVs (or a CSV edited or damaged since) is repaired on resume, with a message naming the file,
so a published CSV never silently lacks an epoch. This module also refuses a folder that holds
results but no resume state, and removes temporaries of killed writers.
"""

from __future__ import annotations

import csv
import io
import math
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from trades_instability.rundir import layout
from trades_instability.rundir.atomic_io import atomic_path, atomic_write_text, is_orphan_temporary
from trades_instability.rundir.checkpoint import CheckpointError

EPOCH_COLUMNS = [
    "epoch", "lr", "train_loss", "train_ce", "train_kl", "train_clean_acc", "train_adv_acc",
    "val_clean_acc", "val_pgd_acc", "val_fosc", "val_sgcs", "val_gradalign",
    "w_grad_norm", "ce_norm", "kl_norm", "grad_cosine_similarity",
    "noise_batches", "fosc_over_threshold", "is_best", "epoch_time_s",
]
BATCH_COLUMNS = [
    "epoch", "batch", "step", "loss", "ce", "kl",
    "w_grad_norm", "ce_norm", "kl_norm", "grad_cosine_similarity", "noised",
]


def _fmt(v: Any) -> Any:
    if v is None:
        return ""
    if isinstance(v, bool):
        return int(v)
    if isinstance(v, float):
        return "" if math.isnan(v) else repr(v)
    return v


def csv_text(columns: list[str], rows: list[dict[str, Any]]) -> str:
    buf = io.StringIO()
    w = csv.DictWriter(buf, fieldnames=columns, lineterminator="\n")
    w.writeheader()
    for r in rows:
        w.writerow({c: _fmt(r.get(c)) for c in columns})
    return buf.getvalue()


def _data_rows(path: Path) -> int:
    """Data rows of the CSV at ``path`` (-1 when it cannot be read or parsed)."""
    try:
        return _count(path.read_text())
    except (OSError, UnicodeDecodeError):
        return -1


class RunFiles:
    """Paths and log files of a run directory (``epochs.csv``, ``batches.csv``, ``checkpoints/``)."""

    def __init__(self, out: str | Path, log: Callable[[str], None] = print):
        self.out = Path(out)
        self.ckpt_dir = self.out / layout.CHECKPOINTS
        self.last = self.out / layout.LAST_PT
        self.epochs_csv = self.out / layout.EPOCHS_CSV
        self.batches_csv = self.out / layout.BATCHES_CSV
        self.log = log

    def remove_orphan_temporaries(self) -> list[Path]:
        """Delete temporaries of writers killed mid-write (call only while holding the run lock)."""
        gone = []
        for folder in (self.out, self.ckpt_dir):
            if folder.is_dir():
                for p in sorted(folder.iterdir()):
                    if is_orphan_temporary(p):
                        p.unlink()
                        gone.append(p)
        if gone:
            self.log(f"removed {len(gone)} temporary file(s) left by an interrupted writer: "
                     + ", ".join(p.name for p in gone))
        return gone

    def refuse_results_without_state(self) -> None:
        """A folder with results but no ``last.pt`` cannot be resumed; starting over would silently
        overwrite them (e.g. last.pt deleted by hand, or another tool's folder)."""
        if self.last.exists():
            return
        found = [p.name for p in (self.out / layout.RUN_JSON, self.out / layout.BEST_PT) if p.exists()]
        found += sorted(p.name for p in self.ckpt_dir.glob("epoch*.pt"))
        found += [p.name for p in (self.epochs_csv, self.batches_csv) if p.exists() and _data_rows(p) != 0]
        if found:
            raise CheckpointError(
                f"run directory {self.out} holds results ({', '.join(found)}) but no checkpoints/last.pt to resume "
                f"from; to start over, move the folder away or delete it (rm -r {self.out}), or use another --out"
            )

    def write_logs(self, epoch_rows: list[dict[str, Any]], batch_rows: list[dict[str, Any]]) -> None:
        atomic_write_text(self.epochs_csv, csv_text(EPOCH_COLUMNS, epoch_rows))
        atomic_write_text(self.batches_csv, csv_text(BATCH_COLUMNS, batch_rows))

    def reconcile_logs(self, epoch_rows: list[dict[str, Any]], batch_rows: list[dict[str, Any]], epoch: int) -> None:
        """Make the CSVs say exactly what the resume state (``last.pt``, epoch ``epoch``) holds: rewrite
        any that differ (rows of an epoch after last.pt, rows missing after a crash between last.pt and
        the CSVs, or a damaged file) and say so by name."""
        for path, columns, rows in ((self.epochs_csv, EPOCH_COLUMNS, epoch_rows),
                                    (self.batches_csv, BATCH_COLUMNS, batch_rows)):
            want = csv_text(columns, rows)
            try:
                have = path.read_text()
            except FileNotFoundError:
                have = None
            except (OSError, UnicodeDecodeError):
                have = ""
            if have == want:
                continue
            atomic_write_text(path, want)
            if have is None:
                self.log(f"{path} was missing; rewritten from {self.last} ({len(rows)} rows, epochs 1..{epoch})")
            else:
                self.log(f"{path} disagreed with {self.last} ({_count(have)} rows on "
                         f"disk, {len(rows)} in the resume state); rewritten from the resume state (epochs 1..{epoch})")


def _count(text: str) -> int:
    """Data rows of CSV ``text`` (-1 when it does not parse)."""
    try:
        return sum(1 for _ in csv.DictReader(io.StringIO(text)))
    except csv.Error:
        return -1


def batch_rows_from_csv(path: Path, epoch: int, required: bool) -> list[dict[str, Any]]:
    """Batch rows of epochs 1..``epoch`` from ``batches.csv``: for resume states written before the
    rows were kept in ``last.pt``. Refuses (naming the file) when an epoch is missing and rows are
    required, instead of resuming with a silent hole."""
    rows: list[dict[str, Any]] = []
    if path.is_file():
        with open(path, newline="") as fh:
            rows = [r for r in csv.DictReader(fh) if r.get("epoch") and int(r["epoch"]) <= epoch]
    if required:
        missing = sorted(set(range(1, epoch + 1)) - {int(r["epoch"]) for r in rows})
        if missing:
            raise CheckpointError(
                f"{path} lacks the batch rows of epoch(s) {missing[:10]} that the resume state covers (its "
                f"last.pt predates batch rows in the state); move the run folder away to start over"
            )
    return rows


# ---------------------------------------------------------------------- landscape.npz (Figure 1)
def save_landscape(path: str | Path, result: dict[str, np.ndarray], cfg: Any) -> None:
    """Atomically write Figure 1's landscape (core/landscape.py ``compute_landscape``; ``cfg`` its LandscapeConfig)
    as .npz: loss (na, nb), a (na,), b (nb,), n_images, seed (+ extras)."""
    with atomic_path(path) as tmp:
        with open(tmp, "wb") as fh:
            np.savez(
                fh,
                loss=result["loss"],
                a=result["a"],
                b=result["b"],
                n_images=np.int64(result["loss_per_image"].shape[0]),
                seed=np.int64(cfg.seed),
                loss_per_image=result["loss_per_image"],
                extent=np.float64(cfg.extent),
                clamp=np.bool_(cfg.clamp),
            )


def read_landscape(run_dir: str | Path | None) -> dict[str, np.ndarray] | None:
    """The arrays of ``<run_dir>/landscape.npz`` (see :func:`save_landscape`), None when there is none."""
    if run_dir is None:
        return None
    p = Path(run_dir) / layout.LANDSCAPE_NPZ
    if not p.exists():
        return None
    with np.load(p) as z:
        return {k: z[k] for k in z.files}
