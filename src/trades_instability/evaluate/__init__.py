"""Evaluation of a checkpoint: the suites (``suite_config``), clean and PGD-10 with FOSC/SGCS in fp32 (``pgd_eval``),
AutoAttack through pyautoattack (``autoattack``) and its batch on out-of-memory (``aa_batching``), running a suite
and writing the eval JSON (``suite``), foreign checkpoints (``foreign``) and the command line (``cli``)."""
