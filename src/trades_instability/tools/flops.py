"""How much work a step does and how fast the device could do it: FLOP counting
(``torch.utils.flop_counter.FlopCounterMode``), the peak GEMM rate measured on the device, the FLOP
floor of a TRADES-10 step, and the precision policy the numbers were measured under.

The floor is 27 forward passes per image per TRADES-10 step (10 attack steps x (forward + input-gradient
backward) + 1 clean forward for the attack target, then clean + adversarial forward and their backward
= 2 x 3); its time is floor FLOPs / the peak GEMM rate measured on the same device and dtype. The
forward FLOPs of the model are measured, not assumed.
"""

from __future__ import annotations

import contextlib
import resource
import time
from collections.abc import Callable

import torch
from torch import nn

FLOOR_FWD_PER_IMAGE = 27  # forward-pass equivalents per image of an efficient TRADES-10 step


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def peak_bytes(device: torch.device) -> int:
    """CUDA: the allocator's peak since its last reset. CPU (no allocator statistics): the process's peak RSS, an
    upper bound of what the job itself needs (it includes the interpreter and torch; Linux reports KiB)."""
    if device.type == "cuda":
        return torch.cuda.max_memory_allocated(device)
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024


def forward_flops(model: nn.Module, image_size: int, device: torch.device, channels_last: bool) -> float:
    """FLOPs of one forward pass per image, counted by FlopCounterMode (convolutions and matmuls)."""
    from torch.utils.flop_counter import FlopCounterMode

    x = torch.rand(2, 3, image_size, image_size, device=device)
    if channels_last:
        x = x.contiguous(memory_format=torch.channels_last)
    was = model.training
    model.eval()
    with torch.no_grad(), FlopCounterMode(display=False) as counter:
        model(x)
    model.train(was)
    return counter.get_total_flops() / 2


def counted_flops(fn: Callable[[], None]) -> float:
    """Total FLOPs (forward and backward convolutions/matmuls) of ``fn()``."""
    from torch.utils.flop_counter import FlopCounterMode

    counter = FlopCounterMode(display=False)
    # Per-module attribution is not needed, and the module tracker's backward hooks make
    # torch.autograd.grad(loss, [leaf input]) (every attack step) fail: count globally only.
    counter.mod_tracker = _GlobalOnly()
    with counter:
        fn()
    return float(counter.get_total_flops())


class _GlobalOnly:
    parents = {"Global"}

    def __enter__(self):
        return self

    def __exit__(self, *exc) -> bool:
        return False


def peak_gemm_flops(device: torch.device, dtype: torch.dtype, *, n: int, reps: int = 5) -> float:
    """Peak matrix-multiply rate (FLOP/s) measured on this device: the best of ``reps`` n x n x n GEMMs
    (the best, not the median: a peak; the bench measures it again in every round and keeps the highest).
    For fp32 on CUDA the GEMM uses TF32 exactly when cuDNN convolutions do (the training policy)."""
    a = torch.randn(n, n, device=device, dtype=dtype)
    b = torch.randn(n, n, device=device, dtype=dtype)
    ctx = contextlib.nullcontext()
    if device.type == "cuda" and dtype == torch.float32:
        old = torch.backends.cuda.matmul.allow_tf32

        @contextlib.contextmanager
        def tf32_like_convs():
            torch.backends.cuda.matmul.allow_tf32 = torch.backends.cudnn.allow_tf32
            try:
                yield
            finally:
                torch.backends.cuda.matmul.allow_tf32 = old
        ctx = tf32_like_convs()
    with ctx:
        a @ b
        sync(device)
        times = []
        for _ in range(reps):
            t = time.perf_counter()
            a @ b
            sync(device)
            times.append(time.perf_counter() - t)
    return 2 * n**3 / min(times)


def precision_policy(device: torch.device) -> str:
    if device.type != "cuda":
        return "CPU: fp32 math; bf16 rows use torch.autocast(cpu, bfloat16)"
    return (f"cudnn.benchmark={torch.backends.cudnn.benchmark}, TF32 convolutions "
            f"{'on' if torch.backends.cudnn.allow_tf32 else 'off'} (cudnn.allow_tf32), TF32 matmul "
            f"{'on' if torch.backends.cuda.matmul.allow_tf32 else 'off'}; AutoAttack/reported numbers: TF32 off "
            "(pgd_eval.fp32_precision)")
