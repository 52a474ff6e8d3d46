"""The run's resumable counters (saved in ``checkpoints/last.pt``, restored on resume)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any


@dataclass
class TrainState:
    epoch: int = 0  # completed epochs
    step: int = 0  # completed optimiser steps
    noise_left: int = 0  # batches still to be noised (Algorithm 1)
    best_pgd_acc: float = -1.0
    best_epoch: int = 0
    epoch_rows: list[dict[str, Any]] = field(default_factory=list)
    train_time_s: float = 0.0
