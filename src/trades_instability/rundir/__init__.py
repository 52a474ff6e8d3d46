"""What a run leaves on disk.

- ``layout``: every path of a run directory, once, and its parser.
- ``atomic_io``: files written to a temporary name and renamed into place.
- ``checkpoint``: checkpoints saved atomically, loaded with ``weights_only=True``; a bad file is one error naming it.
- ``records``: epochs.csv, batches.csv and landscape.npz.
- ``lock``: one writer per run directory; waiting for a live holder.
- ``state``: the state folder between workflow steps (prepare-state, publish).
- ``log_file``: the run's own train.log, and the tail of a log read back.
- ``progress``: a run's state read from its files, for ``status``.
"""
