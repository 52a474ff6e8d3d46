"""How a training run stops early: divergence (a non-finite loss or gradient) or a stop request."""

from __future__ import annotations


class Diverged(RuntimeError):
    """The training loss became non-finite."""

    def __init__(self, epoch: int, step: int, batch: int, what: str):
        self.epoch, self.step, self.batch = epoch, step, batch
        kept = (f"the last good state (epoch {epoch - 1}) is kept in checkpoints/last.pt" if epoch > 1 else
                "no epoch had completed, so there is no last good state (no checkpoints/last.pt)")
        super().__init__(
            f"training diverged: non-finite {what} at epoch {epoch}, batch {batch} (global step {step}); {kept}"
        )


class Interrupted(RuntimeError):
    """SIGTERM/SIGINT arrived; the last completed epoch is saved."""
