"""TinyImageNet-200: the standard extracted ``tiny-imagenet-200/`` folder; the labelled ``val`` folder is the
test set. The 110,000 JPEGs are decoded once and cached as a ``.pt`` file beside the data."""

from __future__ import annotations

import hashlib
import os
import warnings
from concurrent.futures import ThreadPoolExecutor
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
from trades_instability.data.download import SOURCES, jpeg_names, socket_timeout
from trades_instability.rundir.atomic_io import atomic_path

# where the dataset comes from and the folder it extracts to: one table (download.SOURCES)
TINY_URL = SOURCES["tinyimagenet"].url
TINY_MD5 = SOURCES["tinyimagenet"].md5
TINY_FOLDER = SOURCES["tinyimagenet"].folder
TINY_CACHE = "uint8_cache_v1.pt"
TINY_CACHE_FORMAT = "trades_instability/tinyimagenet-uint8-v1"


def _tiny_layout_problem(folder: Path) -> str | None:
    """None when the standard extracted layout is present, else what is missing."""
    for rel in SOURCES["tinyimagenet"].required:  # the one table of the layouts (data/download.py)
        if not (folder / rel).exists():
            return f"missing {folder / rel}"
    return None


def _tiny_unavailable(root: Path, problem: str, why: str) -> DatasetUnavailable:
    expect = (
        f"the extracted folder {TINY_FOLDER}/ (wnids.txt, train/<wnid>/images/*.JPEG, "
        "val/val_annotations.txt, val/images/*.JPEG)"
    )
    return DatasetUnavailable(
        unavailable_message(SOURCES["tinyimagenet"].label, root, expect, SOURCES["tinyimagenet"].filename, TINY_URL,
                             problem, why)
    )


def _tiny_index(folder: Path) -> tuple[list[str], list[Path], list[int], list[Path], list[int]]:
    """Files and labels of train and val. Labels follow the sorted wnids (torchvision ImageFolder's
    order on train/), and every list is sorted, so the index does not depend on directory order."""
    wnids = sorted({w.strip() for w in (folder / "wnids.txt").read_text().splitlines() if w.strip()})
    if not wnids:
        raise _tiny_unavailable(folder.parent, f"{folder / 'wnids.txt'} lists no classes", "")
    cls_of = {w: i for i, w in enumerate(wnids)}
    train_files: list[Path] = []
    train_labels: list[int] = []
    for w in wnids:
        d = folder / "train" / w / "images"
        if not d.is_dir():
            raise _tiny_unavailable(folder.parent, f"missing {d} (class {w} of wnids.txt)", "")
        names = sorted(jpeg_names(d))
        train_files += [d / n for n in names]
        train_labels += [cls_of[w]] * len(names)
    val_files: list[Path] = []
    val_labels: list[int] = []
    ann = folder / "val" / "val_annotations.txt"
    rows = []
    for line_no, line in enumerate(ann.read_text().splitlines(), 1):
        if not line.strip():
            continue
        parts = line.split("\t")
        if len(parts) < 2 or parts[1] not in cls_of:
            raise _tiny_unavailable(folder.parent, f"{ann} line {line_no} names no class of wnids.txt: {line[:80]!r}",
                                    "")
        rows.append((parts[0], cls_of[parts[1]]))
    for fname, label in sorted(rows):
        val_files.append(folder / "val" / "images" / fname)
        val_labels.append(label)
    if not train_files or not val_files:
        raise _tiny_unavailable(folder.parent, f"no JPEGs found under {folder / 'train'} or {folder / 'val'}", "")
    return wnids, train_files, train_labels, val_files, val_labels


def _decode_jpegs(files: list[Path], size: int = 64) -> torch.Tensor:
    """Decode JPEGs into one uint8 (N, 3, size, size) tensor; grayscale/CMYK become RGB.

    Threads, because PIL releases the GIL while decoding."""
    import numpy as np
    from PIL import Image

    out = np.empty((len(files), size, size, 3), dtype=np.uint8)

    def work(lo_hi: tuple[int, int]) -> None:
        for i in range(*lo_hi):
            with Image.open(files[i]) as im:
                im = im.convert("RGB")
                if im.size != (size, size):
                    raise DatasetUnavailable(
                        f"{files[i]} is {im.size[0]}x{im.size[1]}, expected {size}x{size}: not the standard "
                        f"TinyImageNet-200 files; re-extract tiny-imagenet-200.zip"
                    )
                out[i] = np.asarray(im)

    chunk = 512
    spans = [(lo, min(lo + chunk, len(files))) for lo in range(0, len(files), chunk)]
    with ThreadPoolExecutor(max_workers=max(1, min(16, os.cpu_count() or 1))) as pool:
        list(pool.map(work, spans))
    return torch.from_numpy(out).permute(0, 3, 1, 2).contiguous()


def _tiny_fingerprint(folder: Path, wnids: list[str], train_files: list[Path], val_files: list[Path]) -> str:
    h = hashlib.sha256()
    h.update("\n".join(wnids).encode())
    for f in train_files + val_files:
        h.update(str(f.relative_to(folder)).encode() + b"\0")
    h.update((folder / "val" / "val_annotations.txt").read_bytes())
    return h.hexdigest()


def load_tinyimagenet(root: Path, download: bool) -> tuple[ImageSet, ImageSet, int]:
    folder = root / TINY_FOLDER
    problem = _tiny_layout_problem(folder)
    why = DOWNLOAD_DISABLED
    if problem is not None and download:
        from torchvision.datasets.utils import download_and_extract_archive

        try:
            # download_url skips the network when a valid zip already sits in root.
            with socket_timeout(DOWNLOAD_SOCKET_TIMEOUT_S):
                download_and_extract_archive(TINY_URL, str(root), md5=TINY_MD5)
            why = ""
        except Exception as e:
            why = download_failed(TINY_URL, e)
        problem = _tiny_layout_problem(folder)
    if problem is not None:
        raise _tiny_unavailable(root, problem, why)

    wnids, train_files, train_labels, val_files, val_labels = _tiny_index(folder)
    fingerprint = _tiny_fingerprint(folder, wnids, train_files, val_files)
    cache = folder / TINY_CACHE
    data = _read_tiny_cache(cache, fingerprint, len(train_files), len(val_files))
    if data is None:
        data = {
            "format": TINY_CACHE_FORMAT,
            "fingerprint": fingerprint,
            "train_images": _decode_jpegs(train_files),
            "train_labels": torch.tensor(train_labels, dtype=torch.int64),
            "test_images": _decode_jpegs(val_files),
            "test_labels": torch.tensor(val_labels, dtype=torch.int64),
        }
        try:
            with atomic_path(cache) as tmp:
                torch.save(data, tmp)
        except OSError as e:  # read-only data_root: work without the cache
            warnings.warn(f"could not write the TinyImageNet cache {cache} ({e}); JPEGs will be decoded again "
                          "next time", stacklevel=2)
    train = ImageSet(data["train_images"], data["train_labels"])
    test = ImageSet(data["test_images"], data["test_labels"])
    return train, test, len(wnids)


def _read_tiny_cache(cache: Path, fingerprint: str, n_train: int, n_test: int) -> dict | None:
    """The decoded tensors if the cache is readable and matches the files on disk, else None."""
    if not cache.is_file():
        return None
    try:
        data = torch.load(cache, map_location="cpu", weights_only=True, mmap=True)
        ok = (
            isinstance(data, dict)
            and data.get("format") == TINY_CACHE_FORMAT
            and data.get("fingerprint") == fingerprint
            and data["train_images"].shape == (n_train, 3, 64, 64)
            and data["test_images"].shape == (n_test, 3, 64, 64)
            and data["train_images"].dtype == torch.uint8
            and data["test_images"].dtype == torch.uint8
            and data["train_labels"].shape == (n_train,)
            and data["test_labels"].shape == (n_test,)
        )
    except Exception as e:  # truncated / foreign file
        warnings.warn(f"TinyImageNet cache {cache} is unreadable ({type(e).__name__}); rebuilding it", stacklevel=2)
        return None
    if not ok:
        warnings.warn(f"TinyImageNet cache {cache} does not match the files on disk; rebuilding it", stacklevel=2)
        return None
    return data
