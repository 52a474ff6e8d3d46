"""Images as the library holds them, and the batch iterator.

Every split is held as one uint8 tensor (N, 3, H, W) plus int64 labels (:class:`ImageSet`): 50,000 CIFAR
images are 150 MB in uint8, small enough to keep on the GPU, and conversion to float happens per batch on
the device (:func:`iterate_batches`, :func:`to_float`). The datasets are loaded by one module each, and
:func:`trades_instability.data.splits.load_splits` dispatches to them and builds the splits:

* ``cifar10`` / ``cifar100`` (:mod:`trades_instability.data.cifar`): torchvision's own classes (its md5
  integrity checks included) under ``data_root``; converted to tensors once.
* ``tinyimagenet`` (:mod:`trades_instability.data.tinyimagenet`): the standard extracted
  ``tiny-imagenet-200/`` folder; the labelled ``val`` folder is the test set. The 110,000 JPEGs are
  decoded once and cached as a ``.pt`` file beside the data.
* ``synthetic`` (:mod:`trades_instability.data.synthetic`): deterministic, learnable images generated
  from ``synthetic.seed`` (tests, smoke runs); no files needed.

Missing data never hangs or falls through to a stack trace: :class:`DatasetUnavailable` says which
archive/folder to place where.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import torch

# the loaders' own download (``download: true`` when the download rule has not fetched the data first)
DOWNLOAD_SOCKET_TIMEOUT_S = 30.0
DOWNLOAD_DISABLED = "Download is disabled (download: false). "


class DatasetUnavailable(RuntimeError):
    """The dataset's files are missing or corrupt and could not be downloaded; the message says
    which archive/folder to put where."""


def unavailable_message(label: str, root: Path, expect: str, archive: str, url: str, problem: str, why: str) -> str:
    return (
        f"{label} is not available: {problem}. {why}"
        f"Place {expect} under data_root={str(root)!r} (absolute: {root.resolve()}), i.e. extract {archive} "
        f"({url}) into that folder, or put the archive itself at {root.resolve() / archive} and set "
        f"'download: true' so it is verified and extracted without network. Set the config key 'data_root' "
        f"(trades-eval: --data-root) to the folder that holds it; 'download: false' skips any download attempt."
    )


def download_failed(url: str, e: BaseException) -> str:
    """The ``why`` of :func:`unavailable_message` after a failed download: the error's first line, cut short."""
    msg = str(e).splitlines()[0][:200] if str(e) else ""
    return f"Downloading {url} failed ({type(e).__name__}: {msg}). "


@dataclass
class ImageSet:
    """One split, kept as uint8 (N, 3, H, W) to save memory; convert per batch with :func:`to_float`."""

    images: torch.Tensor  # uint8, (N, 3, H, W)
    labels: torch.Tensor  # int64, (N,)

    def __post_init__(self) -> None:
        if self.images.dim() != 4 or self.images.shape[1] != 3:
            raise ValueError(f"ImageSet.images must be (N, 3, H, W), got {tuple(self.images.shape)}")
        if self.images.dtype != torch.uint8:
            raise ValueError(f"ImageSet.images must be uint8, got {self.images.dtype}")
        if self.labels.shape != (self.images.shape[0],):
            raise ValueError(
                f"ImageSet.labels must be ({self.images.shape[0]},), got {tuple(self.labels.shape)}"
            )
        if self.labels.dtype != torch.int64:
            self.labels = self.labels.long()

    def __len__(self) -> int:
        return int(self.images.shape[0])

    @property
    def device(self) -> torch.device:
        return self.images.device

    def to(self, device: str | torch.device) -> ImageSet:
        """The same split on ``device`` (a new ImageSet; no copy when already there)."""
        return ImageSet(self.images.to(device), self.labels.to(device))

    def subset(self, index: torch.Tensor) -> ImageSet:
        index = index.to(self.images.device)
        return ImageSet(self.images[index].contiguous(), self.labels[index].contiguous())


@dataclass
class DataSplits:
    train: ImageSet
    val: ImageSet
    test: ImageSet
    num_classes: int
    image_size: int
    name: str


# v / 255 for every byte value, divided once on the CPU (correctly rounded IEEE division). CUDA divides a
# tensor by a scalar as a multiplication with the reciprocal, 1 ulp off for 126 of the 256 values, so
# every device looks the values up here instead: CPU and GPU inputs are bit-identical.
_BYTE_TO_FLOAT = torch.arange(256, dtype=torch.float32) / 255.0
_LUT_ON: dict[torch.device, torch.Tensor] = {}


def _byte_lut(device: torch.device) -> torch.Tensor:
    if device not in _LUT_ON:
        _LUT_ON[device] = _BYTE_TO_FLOAT.to(device)
    return _LUT_ON[device]


def to_float(images: torch.Tensor) -> torch.Tensor:
    """uint8 images -> float32 in [0, 1] (on the images' device), bit-identical on every device.

    A table lookup (int32 indices: a uint8 index would be read as a mask), not a division; the result
    is contiguous."""
    if images.dtype != torch.uint8:
        raise ValueError(f"to_float expects uint8 images, got {images.dtype}")
    lut = _byte_lut(images.device)
    return lut.index_select(0, images.reshape(-1).to(torch.int32)).view(images.shape)


# ------------------------------------------------------------------------------------- batching


def iterate_batches(
    s: ImageSet,
    batch_size: int,
    *,
    shuffle: bool,
    generator: torch.Generator | None,
    device: str | torch.device,
    drop_last: bool = False,
    channels_last: bool = False,
) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
    """Yield ``(x float32 in [0,1], y int64)`` batches on ``device``.

    The permutation comes from ``torch.randperm(n, generator=generator)`` on the CPU (so it is
    identical on every device and restorable from the generator state); index batches go to where
    the uint8 images live (keep the ImageSet on the GPU via :meth:`ImageSet.to` to avoid host
    copies), and the uint8 -> float conversion happens on ``device``. ``channels_last`` returns
    x in that memory format (what a channels_last model wants)."""
    if batch_size <= 0:
        raise ValueError(f"batch_size must be > 0, got {batch_size}")
    n = len(s)
    device = torch.device(device)
    if shuffle:
        order = torch.randperm(n, generator=generator)
    else:
        order = torch.arange(n)
    src = s.images.device
    order = order.to(src)
    stop = n - n % batch_size if drop_last else n
    for lo in range(0, stop, batch_size):
        idx = order[lo:lo + batch_size]
        xb = s.images.index_select(0, idx).to(device, non_blocking=True)
        yb = s.labels.index_select(0, idx).to(device, non_blocking=True)
        x = to_float(xb)
        if channels_last:
            x = x.contiguous(memory_format=torch.channels_last)
        yield x, yb
