"""Which memory format a model runs in: channels_last (NHWC) where the backend runs it correctly.

cuDNN's tensor-core kernels and oneDNN's CPU kernels both prefer NHWC (measured on CPU, width 16,
batch 128: ~1.2x per TRADES step; see tools/bench.py). But oneDNN's weight gradient of a *strided 1x1*
convolution with 2-7 input channels in channels_last corrupts the heap and kills the process
(``free(): invalid next size``, SIGABRT / SIGSEGV; torch 2.14.1 CPU, found by sweeping kernel 1/3,
stride 1/2 and 1-16 input channels: only that combination crashed). ResNet-18's downsampling
shortcuts are such convolutions at widths 2-7, which tests and smoke runs use. So on CPU a model
with such a layer runs contiguous (NCHW); every other model, and every model on CUDA, runs NHWC.
"""

from __future__ import annotations

import torch
from torch import nn

# in_channels of a strided 1x1 Conv2d for which oneDNN's channels_last weight gradient crashes
_ONEDNN_UNSAFE_IN_CHANNELS = range(2, 8)


def onednn_unsafe_layers(model: nn.Module) -> list[str]:
    """Names of the layers that oneDNN cannot differentiate in channels_last (see the module doc)."""
    return [
        name for name, m in model.named_modules()
        if isinstance(m, nn.Conv2d) and m.kernel_size == (1, 1) and m.stride != (1, 1)
        and m.in_channels in _ONEDNN_UNSAFE_IN_CHANNELS
    ]


def use_channels_last(model: nn.Module, device: torch.device | str, requested: bool = True) -> bool:
    """True when ``model`` should run in channels_last on ``device`` (and the run asked for it)."""
    if not requested:
        return False
    return torch.device(device).type != "cpu" or not onednn_unsafe_layers(model)


def compile_options(model: nn.Module, device: torch.device | str) -> dict | None:
    """``torch.compile`` options for ``model`` on ``device``. Inductor's layout optimisation turns
    convolutions to NHWC by itself, which reaches the same oneDNN crash (seen: a width-2 ResNet-18
    compiled on CPU aborts in its first backward); keep it off exactly where :func:`use_channels_last` is."""
    if use_channels_last(model, device):
        return None
    return {"layout_optimization": False}
