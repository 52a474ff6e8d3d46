"""The CIFAR-kind architectures (3x3 stem, no max-pool, inputs in [0, 1]), one registry table.

* ``resnet18``        ResNet-18 as in ADR's src/model/resnet.py (the paper's model).
* ``preact-resnet18`` PreActResNet-18 as in fast-AT (locuslab/fast_adversarial CIFAR10/preact_resnet.py)
                      and AWP (csdongxian/AWP AT_AWP/preactresnet.py); same parameter names, so their
                      checkpoints load as they are.
* ``wrn-34-10``       WideResNet-34-10 as in TRADES (yaodongyu/TRADES models/wideresnet.py); same
                      parameter names, minus TRADES' ``sub_block1`` (built there but never used in forward;
                      :func:`adapt_foreign_state_dict` drops its weights).

``width`` scales every architecture from its published size: each layer has ``published x width / 64``
channels (at least 1), so ``width: 64`` is the published model for all three and the smoke / test
configs shrink the 34-layer WRN with the same key (``width: 4`` = widen factor 0.625). Adaptive average
pooling makes 16x16 synthetic and 64x64 TinyImageNet inputs work (the references' fixed 4x4 / 8x8 pool
is the same operation on 32x32 inputs).
With ``normalize=(mean, std)`` the model standardises its input per channel inside ``forward``
(as ADR's src/model/resnet.py does), so attacks still work in [0, 1] pixel space.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from trades_instability.config.run import ARCHS

PUBLISHED_WIDTH = 64  # `width` of every architecture at its published size

# Per-channel (mean, std) of each dataset's training images, the values of ADR's src/model/create_model.py.
# The synthetic set has no published statistics: mid-grey with a quarter-range spread.
DATASET_STATS: dict[str, tuple[tuple[float, ...], tuple[float, ...]]] = {
    "cifar10": ((0.4914, 0.4822, 0.4465), (0.2471, 0.2435, 0.2616)),
    "cifar100": ((0.5071, 0.4865, 0.4409), (0.2673, 0.2564, 0.2762)),
    "tinyimagenet": ((0.4802, 0.4481, 0.3975), (0.2302, 0.2265, 0.2262)),
    "synthetic": ((0.5, 0.5, 0.5), (0.25, 0.25, 0.25)),
}


def _scaled(channels: int, width: int) -> int:
    return max(1, round(channels * width / PUBLISHED_WIDTH))


class _InputStandardization(nn.Module):
    """Optional per-channel (x - mean) / std at the start of forward. The buffers are not in the
    state dict (persistent=False): the checkpoint's model_meta carries them."""

    def _init_normalize(self, normalize: tuple[list[float], list[float]] | None) -> None:
        self.normalize = normalize is not None
        if normalize is not None:
            mean, std = (torch.tensor(v, dtype=torch.float32).view(1, -1, 1, 1) for v in normalize)
            self.register_buffer("input_mean", mean, persistent=False)
            self.register_buffer("input_std", std, persistent=False)

    def _standardize(self, x: torch.Tensor) -> torch.Tensor:
        return (x - self.input_mean) / self.input_std if self.normalize else x


# ------------------------------------------------------------------------------ ResNet-18 (ADR)


class BasicBlock(nn.Module):
    expansion = 1

    def __init__(self, in_planes: int, planes: int, stride: int = 1):
        super().__init__()
        self.conv1 = nn.Conv2d(in_planes, planes, 3, stride=stride, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(planes)
        self.conv2 = nn.Conv2d(planes, planes, 3, stride=1, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(planes)
        self.shortcut = nn.Sequential()
        if stride != 1 or in_planes != planes:
            self.shortcut = nn.Sequential(
                nn.Conv2d(in_planes, planes, 1, stride=stride, bias=False),
                nn.BatchNorm2d(planes),
            )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = F.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        return F.relu(out + self.shortcut(x))


class ResNet(_InputStandardization):
    """``width`` here is the number of channels of the first stage (64 in the paper)."""

    def __init__(self, num_blocks: tuple[int, ...], num_classes: int, width: int = 64,
                 normalize: tuple[list[float], list[float]] | None = None):
        super().__init__()
        self._init_normalize(normalize)
        self.in_planes = width
        self.conv1 = nn.Conv2d(3, width, 3, stride=1, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(width)
        stages = []
        for i, n in enumerate(num_blocks):
            stages.append(self._make_layer(width * 2**i, n, stride=1 if i == 0 else 2))
        self.layer1, self.layer2, self.layer3, self.layer4 = stages
        self.linear = nn.Linear(width * 8, num_classes)

    def _make_layer(self, planes: int, n: int, stride: int) -> nn.Sequential:
        layers = []
        for s in [stride] + [1] * (n - 1):
            layers.append(BasicBlock(self.in_planes, planes, s))
            self.in_planes = planes
        return nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = F.relu(self.bn1(self.conv1(self._standardize(x))))
        out = self.layer4(self.layer3(self.layer2(self.layer1(out))))
        out = F.adaptive_avg_pool2d(out, 1).flatten(1)
        return self.linear(out)


# ------------------------------------------------------------------- PreActResNet-18 (fast-AT, AWP)


class PreActBlock(nn.Module):
    """BN-ReLU before each conv; the shortcut is a bare 1x1 conv of the pre-activated input."""

    def __init__(self, in_planes: int, planes: int, stride: int = 1):
        super().__init__()
        self.bn1 = nn.BatchNorm2d(in_planes)
        self.conv1 = nn.Conv2d(in_planes, planes, 3, stride=stride, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(planes)
        self.conv2 = nn.Conv2d(planes, planes, 3, stride=1, padding=1, bias=False)
        if stride != 1 or in_planes != planes:
            self.shortcut = nn.Sequential(nn.Conv2d(in_planes, planes, 1, stride=stride, bias=False))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = F.relu(self.bn1(x))
        shortcut = self.shortcut(out) if hasattr(self, "shortcut") else x
        out = self.conv2(F.relu(self.bn2(self.conv1(out))))
        return out + shortcut


class PreActResNet(_InputStandardization):
    def __init__(self, num_blocks: tuple[int, ...], num_classes: int, width: int = 64,
                 normalize: tuple[list[float], list[float]] | None = None):
        super().__init__()
        self._init_normalize(normalize)
        planes = [_scaled(64 * 2**i, width) for i in range(len(num_blocks))]
        self.conv1 = nn.Conv2d(3, planes[0], 3, stride=1, padding=1, bias=False)
        in_planes, stages = planes[0], []
        for i, (p, n) in enumerate(zip(planes, num_blocks, strict=True)):
            blocks = []
            for s in [1 if i == 0 else 2] + [1] * (n - 1):
                blocks.append(PreActBlock(in_planes, p, s))
                in_planes = p
            stages.append(nn.Sequential(*blocks))
        self.layer1, self.layer2, self.layer3, self.layer4 = stages
        self.bn = nn.BatchNorm2d(planes[-1])
        self.linear = nn.Linear(planes[-1], num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.conv1(self._standardize(x))
        out = self.layer4(self.layer3(self.layer2(self.layer1(out))))
        out = F.relu(self.bn(out))
        return self.linear(F.adaptive_avg_pool2d(out, 1).flatten(1))


# ------------------------------------------------------------------------ WideResNet-34-10 (TRADES)


class WideBlock(nn.Module):
    """TRADES' BasicBlock (dropout 0): BN-ReLU first; when the channel count changes, the shortcut is a
    1x1 conv of the pre-activated input, otherwise the identity of the raw input."""

    def __init__(self, in_planes: int, out_planes: int, stride: int):
        super().__init__()
        self.bn1 = nn.BatchNorm2d(in_planes)
        self.conv1 = nn.Conv2d(in_planes, out_planes, 3, stride=stride, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(out_planes)
        self.conv2 = nn.Conv2d(out_planes, out_planes, 3, stride=1, padding=1, bias=False)
        self.equal_in_out = in_planes == out_planes
        self.convShortcut = (None if self.equal_in_out
                             else nn.Conv2d(in_planes, out_planes, 1, stride=stride, padding=0, bias=False))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        pre = F.relu(self.bn1(x))
        out = self.conv2(F.relu(self.bn2(self.conv1(pre))))
        return out + (x if self.equal_in_out else self.convShortcut(pre))


class NetworkBlock(nn.Module):
    def __init__(self, n: int, in_planes: int, out_planes: int, stride: int):
        super().__init__()
        self.layer = nn.Sequential(*[WideBlock(in_planes if i == 0 else out_planes, out_planes, stride if i == 0 else 1)
                                     for i in range(n)])

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.layer(x)


class WideResNet(_InputStandardization):
    def __init__(self, depth: int, widen_factor: int, num_classes: int, width: int = 64,
                 normalize: tuple[list[float], list[float]] | None = None):
        super().__init__()
        if (depth - 4) % 6:
            raise ValueError(f"WideResNet depth must be 6n+4, got {depth}")
        self._init_normalize(normalize)
        n = (depth - 4) // 6
        c = [_scaled(ch, width) for ch in (16, 16 * widen_factor, 32 * widen_factor, 64 * widen_factor)]
        self.conv1 = nn.Conv2d(3, c[0], 3, stride=1, padding=1, bias=False)
        self.block1 = NetworkBlock(n, c[0], c[1], 1)
        self.block2 = NetworkBlock(n, c[1], c[2], 2)
        self.block3 = NetworkBlock(n, c[2], c[3], 2)
        self.bn1 = nn.BatchNorm2d(c[3])
        self.fc = nn.Linear(c[3], num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.block3(self.block2(self.block1(self.conv1(self._standardize(x)))))
        out = F.relu(self.bn1(out))
        return self.fc(F.adaptive_avg_pool2d(out, 1).flatten(1))


# ------------------------------------------------------------------------------------- registry

@dataclass(frozen=True)
class Architecture:
    build: Callable[..., nn.Module]  # (num_classes, width, normalize) -> module
    source: str  # the reference code whose layer layout and parameter names it follows


ARCHITECTURES: dict[str, Architecture] = {
    "resnet18": Architecture(
        lambda num_classes, width, normalize: ResNet((2, 2, 2, 2), num_classes, width, normalize),
        "yuyuwu5/ADR src/model/resnet.py (CIFAR ResNet-18)"),
    "preact-resnet18": Architecture(
        lambda num_classes, width, normalize: PreActResNet((2, 2, 2, 2), num_classes, width, normalize),
        "locuslab/fast_adversarial CIFAR10/preact_resnet.py = csdongxian/AWP AT_AWP/preactresnet.py"),
    "wrn-34-10": Architecture(
        lambda num_classes, width, normalize: WideResNet(34, 10, num_classes, width, normalize),
        "yaodongyu/TRADES models/wideresnet.py (without its unused sub_block1)"),
}
ARCH_NAMES: tuple[str, ...] = tuple(ARCHITECTURES)
assert ARCH_NAMES == ARCHS, "config.ARCHS must list the names of models.ARCHITECTURES"


def build_model(
    arch: str = "resnet18",
    num_classes: int = 10,
    width: int = 64,
    normalize: tuple[list[float], list[float]] | None = None,
) -> nn.Module:
    """Build a model by name; the returned module takes images in [0, 1] and returns logits.
    ``normalize=(mean, std)`` (per channel) standardises the input inside the model."""
    if arch not in ARCHITECTURES:
        raise ValueError(f"unknown model arch {arch!r}; allowed: {', '.join(ARCH_NAMES)}")
    if width < 1:
        raise ValueError(f"model width must be a positive integer, got {width}")
    return ARCHITECTURES[arch].build(num_classes, width, normalize)


def adapt_foreign_state_dict(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """A state dict saved by another code base, in the names of :func:`build_model`'s modules: the
    ``module.`` prefix of nn.DataParallel goes, and so do the weights of TRADES' WRN ``sub_block1``
    (constructed in models/wideresnet.py but never called in its forward)."""
    out = {}
    for key, value in state.items():
        key = key.removeprefix("module.")
        if not key.startswith("sub_block1."):
            out[key] = value
    return out


def input_normalization(dataset: str, enabled: bool) -> tuple[list[float], list[float]] | None:
    """The ``normalize`` argument of :func:`build_model` for a run on ``dataset`` (None when off)."""
    if not enabled:
        return None
    mean, std = DATASET_STATS[dataset]
    return list(mean), list(std)
