"""The CUDA code path: training (fp32, bf16, AWP, Modified, the fix), resume (also bit-exact in deterministic
mode), checkpoints that load on a CPU, evaluation (PGD-10, Square, FOSC/SGCS) agreeing with the CPU path,
AutoAttack through trades-eval at a pinned batch, peak memory within the README's per-job figures, and the
GPU-only details (bit-identical data conversion and attack starts, one pinned copy per augmented batch,
cudnn.benchmark, a CUDA run refused on the CPU, compile with AWP). Skipped without a GPU.

The checks themselves live in :mod:`trades_instability.tools.device_checks`, which ``python -m
trades_instability gpu-check`` runs too: one implementation, so the command and the tests cannot disagree."""

from __future__ import annotations

import os

# cuBLAS reads its workspace setting when CUDA starts: before any test touches the GPU (deterministic resume)
os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")

import pytest  # noqa: E402
import torch  # noqa: E402

from trades_instability.tools import device_checks  # noqa: E402

pytestmark = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a GPU")


@pytest.mark.parametrize("check", device_checks.CHECKS, ids=[c.name for c in device_checks.CHECKS])
def test_device_check_on_cuda(tmp_path, check):
    result = check.fn(tmp_path, torch.device("cuda"))
    print(f"{check.name}: {result['summary']}")  # the measured numbers, for the log
