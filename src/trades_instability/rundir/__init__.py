"""A run directory on disk: its paths (``layout``), atomic files (``atomic_io``), checkpoints
(``checkpoint``), the CSV records and landscape.npz (``records``), the single-writer lock (``lock``), the state folder
between workflow steps (``state``: prepare-state, publish) and the log file (``log_file``)."""
