"""Training: one optimiser step (``step``), the loop with Algorithm 1's selection and run.json (``loop``),
validation (``validation``), checkpoints and resume (``checkpointing``), and the command line (``cli``)."""
