"""The reference the bench compares against: TRADES training written the way the official TRADES code
(github.com/yaodongyu/TRADES, ``trades.py`` and ``train_trades_cifar10.py``) does it.

* :func:`official_trades_loss` - ``trades_loss`` of ``trades.py`` (L-inf branch), line by line:
  ``model.eval()`` during the attack, the clean forward ``model(x_natural)`` recomputed inside the KL at
  every attack step, separate forward passes (the clean one twice in the final loss), fp32,
  ``nn.KLDivLoss(size_average=False)``;
* :class:`PILImageDataset` and :func:`official_loader` - the training loader of ``train_trades_cifar10.py``:
  per-example torchvision ``RandomCrop(32, padding=4)`` + ``RandomHorizontalFlip()`` + ``ToTensor()`` on
  PIL images in a ``torch.utils.data.DataLoader``;
* :class:`ReferenceTrainer` - the body of ``train()`` in ``train_trades_cifar10.py``, one batch at a time.

Used by :mod:`trades_instability.tools.bench` (the "reference" row) and by the tests that check the
project's step against the official one.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch import nn


def official_trades_loss(
    model: nn.Module,
    x_natural: torch.Tensor,
    y: torch.Tensor,
    optimizer: torch.optim.Optimizer,
    step_size: float = 0.003,
    epsilon: float = 0.031,
    perturb_steps: int = 10,
    beta: float = 1.0,
    distance: str = "l_inf",
    generator: torch.Generator | None = None,
) -> torch.Tensor:
    """``trades_loss`` of the official TRADES code (trades.py), L-inf branch, line by line.

    Differences, none of which changes the work done: ``.cuda()`` is ``.to(x_natural.device)`` so that
    it runs on any device; ``Variable(..., requires_grad=False)`` is a plain tensor; and when a
    ``generator`` is given the start noise is drawn from it on the device (tests use this to give the
    reference and the project the same random start; the official code draws it on the CPU)."""
    if distance != "l_inf":
        raise NotImplementedError("only the l_inf branch of the official trades_loss is reproduced")
    # define KL-loss
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # size_average is deprecated (it means reduction='sum')
        criterion_kl = nn.KLDivLoss(size_average=False)
    model.eval()
    batch_size = len(x_natural)
    # generate adversarial example
    if generator is None:
        noise = torch.randn(x_natural.shape).to(x_natural.device).detach()
    else:
        noise = torch.randn(x_natural.shape, generator=generator, device=x_natural.device,
                            dtype=x_natural.dtype).detach()
    x_adv = x_natural.detach() + 0.001 * noise
    for _ in range(perturb_steps):
        x_adv.requires_grad_()
        with torch.enable_grad():
            loss_kl = criterion_kl(F.log_softmax(model(x_adv), dim=1),
                                   F.softmax(model(x_natural), dim=1))
        grad = torch.autograd.grad(loss_kl, [x_adv])[0]
        x_adv = x_adv.detach() + step_size * torch.sign(grad.detach())
        x_adv = torch.min(torch.max(x_adv, x_natural - epsilon), x_natural + epsilon)
        x_adv = torch.clamp(x_adv, 0.0, 1.0)
    model.train()
    x_adv = torch.clamp(x_adv, 0.0, 1.0).detach()  # Variable(..., requires_grad=False)
    # zero gradient
    optimizer.zero_grad()
    # calculate robust loss
    logits = model(x_natural)
    loss_natural = F.cross_entropy(logits, y)
    loss_robust = (1.0 / batch_size) * criterion_kl(F.log_softmax(model(x_adv), dim=1),
                                                    F.softmax(model(x_natural), dim=1))
    loss = loss_natural + beta * loss_robust
    return loss


class PILImageDataset(torch.utils.data.Dataset):
    """A torchvision-style dataset (like ``torchvision.datasets.CIFAR100``): uint8 HWC images kept as a
    numpy array, each turned into a PIL image and transformed per example in ``__getitem__``."""

    def __init__(self, images_nchw_uint8: torch.Tensor, labels: torch.Tensor, transform: Callable):
        self.data = images_nchw_uint8.permute(0, 2, 3, 1).contiguous().cpu().numpy()
        self.targets = [int(t) for t in labels.cpu()]
        self.transform = transform

    def __len__(self) -> int:
        return len(self.targets)

    def __getitem__(self, index: int):
        from PIL import Image

        img, target = Image.fromarray(self.data[index]), self.targets[index]
        return self.transform(img), target


def official_loader(images: torch.Tensor, labels: torch.Tensor, batch_size: int, *, device: torch.device,
                    num_workers: int = 1, seed: int = 0) -> torch.utils.data.DataLoader:
    """The official training loader: RandomCrop(32, padding=4) + RandomHorizontalFlip + ToTensor,
    shuffled, ``num_workers=1, pin_memory=True`` (pinning only on CUDA)."""
    from torchvision import transforms

    size = int(images.shape[-1])
    transform_train = transforms.Compose([
        transforms.RandomCrop(size, padding=4),
        transforms.RandomHorizontalFlip(),
        transforms.ToTensor(),
    ])
    ds = PILImageDataset(images, labels, transform_train)
    return torch.utils.data.DataLoader(
        ds, batch_size=batch_size, shuffle=True, num_workers=num_workers,
        pin_memory=device.type == "cuda", generator=torch.Generator().manual_seed(seed),
        persistent_workers=num_workers > 0,
    )


class ReferenceTrainer:
    """The official ``train()`` loop body, one batch per :meth:`step` (the loader restarts at epoch end)."""

    log_interval = 100  # the official loop reads loss.item() every log_interval batches

    def __init__(self, model: nn.Module, optimizer: torch.optim.Optimizer, loader, device: torch.device,
                 *, step_size: float, epsilon: float, num_steps: int, beta: float):
        self.model, self.optimizer, self.loader, self.device = model, optimizer, loader, device
        self.kw = dict(step_size=step_size, epsilon=epsilon, perturb_steps=num_steps, beta=beta)
        self._it = None
        self.batch_idx = 0

    def next_batch(self):
        if self._it is None:
            self._it, self.batch_idx = iter(self.loader), 0
        try:
            return next(self._it)
        except StopIteration:
            self._it, self.batch_idx = iter(self.loader), 0
            return next(self._it)

    def step(self) -> None:
        self.model.train()
        data, target = self.next_batch()
        data, target = data.to(self.device), target.to(self.device)
        self.optimizer.zero_grad()
        loss = official_trades_loss(model=self.model, x_natural=data, y=target, optimizer=self.optimizer, **self.kw)
        loss.backward()
        self.optimizer.step()
        if self.batch_idx % self.log_interval == 0:
            loss.item()
        self.batch_idx += 1
