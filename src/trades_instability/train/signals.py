"""SIGTERM/SIGINT during training: remembered, so the run stops at the next batch boundary."""

from __future__ import annotations

import contextlib
import signal


class StopSignals:
    """Inside ``with stop_signals:``, SIGTERM and SIGINT set :attr:`received` instead of killing the
    process; the previous handlers come back on the way out."""

    def __init__(self) -> None:
        self.received: int | None = None  # the signal number, once one arrived

    def requested(self) -> bool:
        return self.received is not None

    def name(self) -> str:
        return signal.Signals(self.received).name if self.received else "stop request"

    @contextlib.contextmanager
    def installed(self):
        def handler(signum, _frame):
            self.received = signum
        old = {}
        for sig in (signal.SIGTERM, signal.SIGINT):
            try:
                old[sig] = signal.signal(sig, handler)
            except ValueError:  # not the main thread (e.g. called from a worker): no handler
                pass
        try:
            yield self
        finally:
            for sig, h in old.items():
                signal.signal(sig, h)
