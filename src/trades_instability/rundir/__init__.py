"""A run directory on disk: atomic files and checkpoints (``files``), the CSV records (``records``), the
single-writer lock (``lock``), the log file (``log_file``)."""
