"""Where a run executes and with what: device resolution, device description, library versions.
Shared by training, evaluation and the benchmark so every artifact records these the same way."""

from __future__ import annotations

import platform
from importlib import metadata

import torch

from . import __version__


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
        raise DeviceUnavailable(f"device {str(name)!r} requested but only {torch.cuda.device_count()} GPU(s) are visible")
    if dev.type == "mps" and not torch.backends.mps.is_available():
        raise DeviceUnavailable(f"device {str(name)!r} requested but MPS is not available; use --device cpu or auto")
    return dev


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
