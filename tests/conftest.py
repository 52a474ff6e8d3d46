import os

import pytest
import torch

# The CI machine has 2 cores and several test processes may run at once: one thread each keeps
# small-model tests fast and their timings stable.
torch.set_num_threads(1)
os.environ.setdefault("OMP_NUM_THREADS", "1")


@pytest.fixture
def tiny_run_config():
    """A run config small enough to train an epoch in about a second on one CPU core."""
    from trades_instability.config.run import from_dict

    def make(**overrides):
        base = {
            "dataset": "synthetic",
            "synthetic": {"num_classes": 4, "train_size": 96, "test_size": 32, "image_size": 16, "seed": 0},
            "width": 2,
            "epochs": 2,
            "batch_size": 32,
            "val_batch_size": 32,
            "attack": {"steps": 3},
            "device": "cpu",
        }
        for k, v in overrides.items():
            if isinstance(v, dict) and isinstance(base.get(k), dict):
                base[k] = {**base[k], **v}
            else:
                base[k] = v
        return from_dict(base)

    return make
