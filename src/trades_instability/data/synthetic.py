"""The synthetic task (tests, smoke runs): deterministic, learnable images generated from ``synthetic.seed``;
no files needed."""

from __future__ import annotations

import math

import torch

from trades_instability.data.datasets import ImageSet


def _sub_generator(seed: int, stream: int) -> torch.Generator:
    # Independent streams for templates / train / test, so e.g. changing train_size leaves the
    # class templates and the test set unchanged.
    return torch.Generator().manual_seed((int(seed) * 1_000_003 + stream * 7_919 + 12_345) % (2**63 - 1))


def make_synthetic(
    *, num_classes: int = 10, train_size: int = 512, test_size: int = 256, image_size: int = 32, seed: int = 0
) -> tuple[ImageSet, ImageSet]:
    """Deterministic, learnable synthetic images (same seed -> bit-identical tensors).

    Each class has a smooth template: a colour offset plus a few plane waves with integer
    frequencies (1-3 cycles per image, so they tile under circular shifts), normalised to unit
    std. An example is ``0.5 + 0.16 * (a * T_y + b * D + 0.8 * noise)``: the class template
    circularly shifted by up to ``image_size/4`` pixels, ``a`` a random contrast in [0.6, 1.2],
    ``D`` one of 8 distractor templates shared by all classes (independently shifted, weight
    ``b`` in [0, 0.8]) and i.i.d. Gaussian noise; clamped and quantised to uint8. Shifts,
    distractors and noise keep it from being separable by a pixel-wise rule (a nearest-class-mean
    classifier gets about 80% with 10 classes, not 100%), so the network has to learn
    shift-tolerant features and adversarial training has something to fight over, yet a small
    ResNet learns it in a few epochs. Classes are balanced (label = index mod classes, then
    shuffled). Templates, train and test use separate generator streams, so changing train_size
    leaves the templates and the test set unchanged. Vectorised: a few thousand images take well
    under a second."""
    S, K = int(image_size), int(num_classes)
    n_waves, n_distractors = 4, 8
    g = _sub_generator(seed, 0)
    coords = torch.arange(S, dtype=torch.float32) / S
    yy, xx = torch.meshgrid(coords, coords, indexing="ij")

    def templates(n: int) -> torch.Tensor:
        fx = torch.randint(-3, 4, (n, 3, n_waves, 1, 1), generator=g).float()
        fy = torch.randint(1, 4, (n, 3, n_waves, 1, 1), generator=g).float()
        swap = torch.rand(n, 3, n_waves, 1, 1, generator=g) < 0.5  # vertical or horizontal stripes
        fx, fy = torch.where(swap, fy, fx), torch.where(swap, fx, fy)
        phase = torch.rand(n, 3, n_waves, 1, 1, generator=g) * 2 * math.pi
        amp = 0.5 + 0.5 * torch.rand(n, 3, n_waves, 1, 1, generator=g)
        waves = amp * torch.cos(2 * math.pi * (fx * xx + fy * yy) + phase)
        t = waves.sum(2) / math.sqrt(n_waves)
        t = t + 0.45 * torch.randn(n, 3, 1, 1, generator=g)  # class colour
        return t / t.flatten(1).std(1).view(n, 1, 1, 1)

    class_t = templates(K)
    distract_t = templates(n_distractors)

    def sample(n: int, stream: int) -> ImageSet:
        gs = _sub_generator(seed, stream)
        labels = (torch.arange(n) % K)[torch.randperm(n, generator=gs)]
        max_shift = max(1, S // 4)
        shifts = torch.randint(-max_shift, max_shift + 1, (4, n), generator=gs)
        a = 0.6 + 0.6 * torch.rand(n, 1, 1, 1, generator=gs)
        b = 0.8 * torch.rand(n, 1, 1, 1, generator=gs)
        which = torch.randint(0, n_distractors, (n,), generator=gs)
        noise = torch.randn(n, 3, S, S, generator=gs)
        ar = torch.arange(S)
        ci = torch.arange(3)[None, :, None, None]

        def shifted(t: torch.Tensor, idx: torch.Tensor, dy: torch.Tensor, dx: torch.Tensor) -> torch.Tensor:
            rows = (ar[None, :] + dy[:, None]) % S
            cols = (ar[None, :] + dx[:, None]) % S
            return t[idx[:, None, None, None], ci, rows[:, None, :, None], cols[:, None, None, :]]

        x = a * shifted(class_t, labels, shifts[0], shifts[1]) + b * shifted(distract_t, which, shifts[2], shifts[3])
        x = 0.5 + 0.16 * (x + 0.8 * noise)
        images = (x.clamp(0, 1) * 255).round().to(torch.uint8)
        return ImageSet(images.contiguous(), labels.long())

    return sample(int(train_size), 1), sample(int(test_size), 2)
