"""Training.

- ``step``: TradesStep, one optimiser step readable top to bottom (EpochStats; the optimiser and its LR
  schedule).
- ``loop``: Trainer, set-up, the epochs and run.json.
- ``algorithm1``: the fix's decision after an epoch (Algorithm 1), one pure function.
- ``validation``: the per-epoch validation (clean, PGD-10, FOSC, SGCS, GradAlign).
- ``checkpointing``: TrainState, saving and resuming.
- ``tensorboard_log``: the TensorBoard event files.
- ``errors``: how a run stops early (Diverged, Interrupted).
- ``cli``: trades-train.
"""
