"""ResNet-18 of the CIFAR kind: 3x3 stem, no max-pool, inputs in [0, 1].

``width`` is the number of channels of the first stage (64 in the paper); tests and
smoke runs use a small one. Adaptive average pooling makes 64x64 TinyImageNet inputs work.
With ``normalize=(mean, std)`` the model standardises its input per channel inside ``forward``
(as ADR's src/model/resnet.py does), so attacks still work in [0, 1] pixel space.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

ARCHITECTURES = ("resnet18",)

# Per-channel (mean, std) of each dataset's training images, the values of ADR's src/model/create_model.py.
# The synthetic set has no published statistics: mid-grey with a quarter-range spread.
DATASET_STATS: dict[str, tuple[tuple[float, ...], tuple[float, ...]]] = {
    "cifar10": ((0.4914, 0.4822, 0.4465), (0.2471, 0.2435, 0.2616)),
    "cifar100": ((0.5071, 0.4865, 0.4409), (0.2673, 0.2564, 0.2762)),
    "tinyimagenet": ((0.4802, 0.4481, 0.3975), (0.2302, 0.2265, 0.2262)),
    "synthetic": ((0.5, 0.5, 0.5), (0.25, 0.25, 0.25)),
}


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


class ResNet(nn.Module):
    def __init__(self, num_blocks: tuple[int, ...], num_classes: int, width: int = 64,
                 normalize: tuple[list[float], list[float]] | None = None):
        super().__init__()
        # not in the state dict (persistent=False): the checkpoint's model_meta carries them
        self.normalize = normalize is not None
        if normalize is not None:
            mean, std = (torch.tensor(v, dtype=torch.float32).view(1, -1, 1, 1) for v in normalize)
            self.register_buffer("input_mean", mean, persistent=False)
            self.register_buffer("input_std", std, persistent=False)
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
        if self.normalize:
            x = (x - self.input_mean) / self.input_std
        out = F.relu(self.bn1(self.conv1(x)))
        out = self.layer4(self.layer3(self.layer2(self.layer1(out))))
        out = F.adaptive_avg_pool2d(out, 1).flatten(1)
        return self.linear(out)


def build_model(
    arch: str = "resnet18",
    num_classes: int = 10,
    width: int = 64,
    normalize: tuple[list[float], list[float]] | None = None,
) -> nn.Module:
    """Build a model by name; the returned module takes images in [0, 1] and returns logits.
    ``normalize=(mean, std)`` (per channel) standardises the input inside the model."""
    if arch != "resnet18":
        raise ValueError(f"unknown model arch {arch!r}; allowed: {', '.join(ARCHITECTURES)}")
    if width < 1:
        raise ValueError(f"model width must be a positive integer, got {width}")
    return ResNet((2, 2, 2, 2), num_classes=num_classes, width=width, normalize=normalize)


def input_normalization(dataset: str, enabled: bool) -> tuple[list[float], list[float]] | None:
    """The ``normalize`` argument of :func:`build_model` for a run on ``dataset`` (None when off)."""
    if not enabled:
        return None
    mean, std = DATASET_STATS[dataset]
    return list(mean), list(std)
