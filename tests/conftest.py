import os

import pytest
import torch

# The CI machine has 2 cores and several test processes may run at once: one thread each keeps
# small-model tests fast and their timings stable.
torch.set_num_threads(1)
os.environ.setdefault("OMP_NUM_THREADS", "1")


@pytest.fixture
def tiny_run_config():
    """A run config small enough to train an epoch in about a second on one CPU core: ``make(**overrides)``,
    nested mappings merged (the library's own toy config, which gpu-check trains too)."""
    from trades_instability.tools.device_checks import toy_config

    return toy_config
