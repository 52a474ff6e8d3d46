"""Evaluation of a checkpoint: the attack suites and the eval JSON (``suite``), AutoAttack through
pyautoattack (``autoattack``), foreign checkpoints (``foreign``) and the command line (``cli``)."""
