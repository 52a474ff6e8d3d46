"""Where a run executes and with what: device resolution, device description, library versions.
Shared by training, evaluation and the benchmark so every artifact records these the same way."""

from __future__ import annotations

import contextlib
import logging
import os
import platform
from importlib import metadata

import torch

from trades_instability import __version__


class DeviceUnavailable(RuntimeError):
    """The requested device does not exist here or is not a device name; the message says what to use."""


def resolve_device(name: str | torch.device = "auto") -> torch.device:
    """``auto`` is CUDA when available, else CPU; asking for a device that is not there is a clear error."""
    if str(name) == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        dev = torch.device(name)
    except RuntimeError:
        raise DeviceUnavailable(f"device {str(name)!r} is not a device name; use auto, cpu, cuda or cuda:N") from None
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise DeviceUnavailable(f"device {str(name)!r} requested but CUDA is not available; use --device cpu or auto")
    if dev.type == "cuda" and dev.index is not None and dev.index >= torch.cuda.device_count():
        raise DeviceUnavailable(f"device {str(name)!r} requested but only {torch.cuda.device_count()} GPU(s) are "
                                "visible")
    if dev.type == "mps" and not torch.backends.mps.is_available():
        raise DeviceUnavailable(f"device {str(name)!r} requested but MPS is not available; use --device cpu or auto")
    return dev


EXPECT_GPU_ENV = "TRADES_EXPECT_GPU"  # =1: a job given a GPU; finding none is an error, not a CPU run


def cpu_fallback_problem(requested: str, resolved: torch.device) -> tuple[str, bool] | None:
    """``device: auto`` found no GPU: ``(message, fatal)`` when the job looks like a GPU job, else None.

    ``TRADES_EXPECT_GPU=1`` (set it where a job is given a GPU) makes it an error: a 200-epoch run on
    the CPU would otherwise burn its whole time limit. A non-empty ``CUDA_VISIBLE_DEVICES`` (set by SLURM
    and by GPU launchers) only warns: it is also set on machines where CPU runs are intended."""
    if str(requested) != "auto" or resolved.type != "cpu":
        return None
    if os.environ.get(EXPECT_GPU_ENV, "") not in ("", "0"):
        return (f"{EXPECT_GPU_ENV}={os.environ[EXPECT_GPU_ENV]} but no CUDA GPU is usable here "
                f"(torch.cuda.is_available() is False, torch {torch.__version__}); check the job's GPU "
                f"allocation and the CUDA build of torch, or unset {EXPECT_GPU_ENV} to train on the CPU", True)
    visible = os.environ.get("CUDA_VISIBLE_DEVICES", "")
    if visible not in ("", "-1"):
        return (f"WARNING: device auto found no usable CUDA GPU although CUDA_VISIBLE_DEVICES={visible}: "
                "TRAINING ON THE CPU (orders of magnitude slower); check the CUDA build of torch and the driver, "
                f"or set {EXPECT_GPU_ENV}=1 to make this an error", False)
    return None


@contextlib.contextmanager
def execution_mode(device: torch.device, deterministic: bool, log=print):
    """Backend flags for one training run, restored afterwards (evaluation runs under its own).

    cudnn.benchmark autotunes convolutions per input shape: on for a CUDA training run (a few fixed
    batch shapes), off in deterministic mode, whose algorithm choice must not depend on timings.
    ``deterministic``: torch.use_deterministic_algorithms(True) (an op without a deterministic kernel
    raises, naming itself) and CUBLAS_WORKSPACE_CONFIG=:4096:8, which cuBLAS reads when it starts."""
    cudnn = torch.backends.cudnn
    old = (cudnn.benchmark, cudnn.deterministic, torch.are_deterministic_algorithms_enabled(),
           torch.is_deterministic_algorithms_warn_only_enabled())
    if deterministic and "CUBLAS_WORKSPACE_CONFIG" not in os.environ:
        if device.type == "cuda" and torch.cuda.is_initialized():
            log("WARNING: deterministic: CUDA was initialised before CUBLAS_WORKSPACE_CONFIG could be set; "
                "export CUBLAS_WORKSPACE_CONFIG=:4096:8 before starting Python")
        os.environ["CUBLAS_WORKSPACE_CONFIG"] = ":4096:8"
    cudnn.benchmark = device.type == "cuda" and not deterministic
    cudnn.deterministic = deterministic or old[1]
    if deterministic:
        torch.use_deterministic_algorithms(True)
    try:
        yield
    finally:
        cudnn.benchmark, cudnn.deterministic = old[0], old[1]
        torch.use_deterministic_algorithms(old[2], warn_only=old[3])


@contextlib.contextmanager
def cudnn_benchmark_off():
    """Evaluation: every attack batch size would be a new autotuning run (AutoAttack shrinks its batch
    to the still-robust examples); restores the previous flag."""
    old = torch.backends.cudnn.benchmark
    torch.backends.cudnn.benchmark = False
    try:
        yield
    finally:
        torch.backends.cudnn.benchmark = old


COMPILE_RECOMPILE_LIMIT = 64  # torch's default, 8, is below the forward variants of one training run


def recompile_limit_key() -> str:
    """dynamo's name for the recompile limit: ``recompile_limit`` (torch >= 2.6), ``cache_size_limit`` before."""
    import torch._dynamo

    return "recompile_limit" if hasattr(torch._dynamo.config, "recompile_limit") else "cache_size_limit"


class _RecompileLimitHit(logging.Handler):
    def __init__(self, log):
        super().__init__(logging.WARNING)
        self.report, self.hits = log, 0

    def emit(self, record: logging.LogRecord) -> None:
        msg = record.getMessage()
        if "hit config." in msg and ("recompile_limit" in msg or "cache_size_limit" in msg):
            self.hits += 1
            if self.hits == 1:
                first = msg.splitlines()[0]
                self.report(f"WARNING: torch.compile fell back to eager for part of the model ({first.strip()}); "
                            "this run is not compiled there; run with TORCH_LOGS=recompiles to see why")


@contextlib.contextmanager
def compile_watch(enabled: bool, log=print):
    """For ``compile: true``: raise dynamo's recompile limit for the run and say in the run's log (one line)
    if it is reached anyway, where torch would fall back to eager with only a logging warning.

    One model forward legitimately has more than 8 guard variants in a run: train/eval mode (attack,
    loss, validation), grad on/off, BatchNorm running statistics frozen (AWP), the batch sizes (batch,
    2x batch for the joint forward, validation and its last partial batch)."""
    if not enabled:
        yield None
        return
    import torch._dynamo

    handler = _RecompileLimitHit(log)
    logger = logging.getLogger("torch._dynamo.convert_frame")
    logger.addHandler(handler)
    try:
        key = recompile_limit_key()
        with torch._dynamo.config.patch(**{key: max(COMPILE_RECOMPILE_LIMIT, getattr(torch._dynamo.config, key))}):
            yield handler
    finally:
        logger.removeHandler(handler)


def device_description(dev: torch.device) -> str:
    if dev.type == "cuda":
        return f"{torch.cuda.get_device_name(dev)} ({dev})"
    return f"cpu ({platform.processor() or platform.machine()}, {torch.get_num_threads()} torch threads)"


def library_versions() -> dict[str, str | None]:
    out: dict[str, str | None] = {"python": platform.python_version(), "trades_instability": __version__,
                                  "torch": torch.__version__}
    for pkg in ("torchvision", "pyautoattack", "numpy"):
        try:
            out[pkg] = metadata.version(pkg)
        except metadata.PackageNotFoundError:
            out[pkg] = None
    return out
