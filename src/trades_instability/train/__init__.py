"""Training: one optimiser step and the optimiser it steps (``step``), the loop with Algorithm 1's selection and
run.json (``loop``), validation (``validation``), checkpoints and resume (``checkpointing``), how a run stops early
(``errors``), and the command line (``cli``)."""
