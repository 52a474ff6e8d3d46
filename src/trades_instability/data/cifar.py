"""CIFAR-10 / CIFAR-100 through torchvision's own classes (its md5 integrity checks included) under
``data_root``; converted to uint8 tensors once. A missing or corrupt folder raises :class:`DatasetUnavailable`
naming which file is wrong and where the archive goes."""

from __future__ import annotations

from pathlib import Path

import torch

from trades_instability.data.datasets import (
    DOWNLOAD_DISABLED,
    DOWNLOAD_SOCKET_TIMEOUT_S,
    DatasetUnavailable,
    ImageSet,
    download_failed,
    unavailable_message,
)
from trades_instability.data.download import SOURCES, socket_timeout, torchvision_class, torchvision_files

_CIFAR_FILES = {
    "cifar10": dict(label=SOURCES["cifar10"].label, folder=SOURCES["cifar10"].folder,
                    archive=SOURCES["cifar10"].filename,
                    files="data_batch_1..data_batch_5, test_batch, batches.meta", classes=10),
    "cifar100": dict(label=SOURCES["cifar100"].label, folder=SOURCES["cifar100"].folder,
                     archive=SOURCES["cifar100"].filename, files="train, test, meta", classes=100),
}


def _cifar_problem(cls, root: Path) -> str:
    """Describe which CIFAR file is missing or fails torchvision's md5 check."""
    from torchvision.datasets.utils import check_integrity

    folder = root / cls.base_folder
    entries = torchvision_files(cls)
    missing = [f for f, _ in entries if not (folder / f).is_file()]
    if missing:
        return f"missing {', '.join(missing)} in {folder}"
    bad = [f for f, m in entries if not check_integrity(str(folder / f), m)]
    if bad:
        return f"{', '.join(bad)} in {folder} fail(s) torchvision's md5 check (corrupt or not the official files)"
    return "unknown problem"


def load_cifar(name: str, root: Path, download: bool) -> tuple[ImageSet, ImageSet, int]:
    info = _CIFAR_FILES[name]
    cls = torchvision_class(SOURCES[name])

    def fail(why: str, err: BaseException | None = None) -> DatasetUnavailable:
        problem = _cifar_problem(cls, root)
        if problem == "unknown problem" and err is not None:
            problem = f"torchvision could not load it ({type(err).__name__}: {err})"
        expect = f"the folder {info['folder']}/ with {info['files']}"
        return DatasetUnavailable(
            unavailable_message(info["label"], root, expect, info["archive"], cls.url, problem, why)
        )

    sets = []
    for train in (True, False):
        try:
            ds = cls(str(root), train=train, download=False)
        except RuntimeError as e:  # torchvision: "Dataset not found or corrupted"
            if not download:
                raise fail(DOWNLOAD_DISABLED, e) from None
            try:
                # torchvision skips the network when a valid archive already sits in root.
                with socket_timeout(DOWNLOAD_SOCKET_TIMEOUT_S):
                    ds = cls(str(root), train=train, download=True)
            except RuntimeError as e2:
                raise fail(f"Downloading/extracting {cls.url} did not produce valid files. ", e2) from None
            except Exception as e2:  # URLError, socket timeout, HTTP error, bad archive ...
                raise fail(download_failed(cls.url, e2), e2) from None
        sets.append(ds)
    out = []
    for ds in sets:
        images = torch.from_numpy(ds.data).permute(0, 3, 1, 2).contiguous()  # NHWC -> NCHW, once
        labels = torch.as_tensor(ds.targets, dtype=torch.int64)
        out.append(ImageSet(images, labels))
    return out[0], out[1], info["classes"]
