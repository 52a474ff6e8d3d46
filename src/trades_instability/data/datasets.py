"""Datasets, train/validation/test splits and the batch iterator.

Every split is held as one uint8 tensor (N, 3, H, W) plus int64 labels: 50,000 CIFAR images are
150 MB in uint8, small enough to keep on the GPU, and conversion to float happens per batch on
the device (:func:`iterate_batches`). Datasets:

* ``cifar10`` / ``cifar100``: torchvision's own classes (its md5 integrity checks included) under
  ``data_root``; converted to tensors once.
* ``tinyimagenet``: the standard extracted ``tiny-imagenet-200/`` folder; the labelled ``val``
  folder is the test set. The 110,000 JPEGs are decoded once and cached as a ``.pt`` file beside
  the data.
* ``synthetic``: deterministic, learnable images generated from ``synthetic.seed`` (tests, smoke
  runs); no files needed.

Missing data never hangs or falls through to a stack trace: :class:`DatasetUnavailable` says which
archive/folder to place where.
"""

from __future__ import annotations

import hashlib
import math
import os
import socket
import warnings
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import torch

from trades_instability.config.run import RunConfig
from trades_instability.data.download import SOURCES
from trades_instability.rundir.atomic_io import atomic_path

# Fixed seeds of the split permutations. They are constants on purpose: the holdout set and the
# validation subset must be the same for every run seed, or runs would not be comparable.
HOLDOUT_PERM_SEED = 20241010
VAL_SUBSET_PERM_SEED = 7675

# where the datasets come from and the folders they extract to: one table (download.SOURCES)
TINY_URL = SOURCES["tinyimagenet"].url
TINY_MD5 = SOURCES["tinyimagenet"].md5
TINY_FOLDER = SOURCES["tinyimagenet"].folder
TINY_CACHE = "uint8_cache_v1.pt"
TINY_CACHE_FORMAT = "trades_instability/tinyimagenet-uint8-v1"

DOWNLOAD_SOCKET_TIMEOUT_S = 30.0


class DatasetUnavailable(RuntimeError):
    """The dataset's files are missing or corrupt and could not be downloaded; the message says
    which archive/folder to put where."""


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


# --------------------------------------------------------------------------------------- loading


def load_splits(cfg: RunConfig) -> DataSplits:
    """Load ``cfg.dataset`` and build train / val / test as the config asks.

    ``val_split: test`` validates on the test set and trains on the whole train set (as the paper:
    50,000 CIFAR images); ``holdout`` removes the last ``holdout_size`` examples of a fixed
    permutation of train and validates on them. ``val_size`` then takes a fixed subset of the
    validation split. The test split is always the full test set."""
    name = cfg.dataset
    if name in ("cifar10", "cifar100"):
        train, test, num_classes = _load_cifar(name, Path(cfg.data_root), cfg.download)
    elif name == "tinyimagenet":
        train, test, num_classes = _load_tinyimagenet(Path(cfg.data_root), cfg.download)
    elif name == "synthetic":
        s = cfg.synthetic
        train, test = make_synthetic(
            num_classes=s.num_classes, train_size=s.train_size, test_size=s.test_size,
            image_size=s.image_size, seed=s.seed,
        )
        num_classes = s.num_classes
    else:
        raise ValueError(f"config key 'dataset': unknown dataset {name!r}")

    train, val = make_val_split(train, test, val_split=cfg.val_split, holdout_size=cfg.holdout_size,
                                val_size=cfg.val_size, dataset=name)
    return DataSplits(train=train, val=val, test=test, num_classes=num_classes,
                      image_size=int(train.images.shape[-1]), name=name)


def make_val_split(
    train: ImageSet, test: ImageSet, *, val_split: str, holdout_size: int, val_size: int | None,
    dataset: str = "dataset",
) -> tuple[ImageSet, ImageSet]:
    """Return ``(train, val)`` for a validation policy (see :func:`load_splits`)."""
    if val_split == "test":
        val = test
    elif val_split == "holdout":
        n = len(train)
        if not 0 < holdout_size < n:
            raise ValueError(
                f"config key 'holdout_size' must be in 1..{n - 1} (the {dataset} train set has {n} examples), "
                f"got {holdout_size}"
            )
        perm = torch.randperm(n, generator=torch.Generator().manual_seed(HOLDOUT_PERM_SEED))
        keep, _ = torch.sort(perm[: n - holdout_size])  # remaining train keeps its original order
        val = train.subset(perm[n - holdout_size:])
        train = train.subset(keep)
    else:
        raise ValueError(f"config key 'val_split' must be 'test' or 'holdout', got {val_split!r}")
    if val_size is not None:
        n = len(val)
        if not 0 < val_size <= n:
            raise ValueError(
                f"config key 'val_size' must be in 1..{n} (the {val_split!r} validation split of {dataset} "
                f"has {n} examples) or null, got {val_size}"
            )
        if val_size < n:
            perm = torch.randperm(n, generator=torch.Generator().manual_seed(VAL_SUBSET_PERM_SEED))
            val = val.subset(torch.sort(perm[:val_size]).values)
    return train, val


# ----------------------------------------------------------------------------------------- CIFAR

_CIFAR_FILES = {
    "cifar10": dict(label=SOURCES["cifar10"].label, folder=SOURCES["cifar10"].folder,
                    archive=SOURCES["cifar10"].filename,
                    files="data_batch_1..data_batch_5, test_batch, batches.meta", classes=10),
    "cifar100": dict(label=SOURCES["cifar100"].label, folder=SOURCES["cifar100"].folder,
                     archive=SOURCES["cifar100"].filename, files="train, test, meta", classes=100),
}


def _cifar_class(name: str):
    # Looked up at call time (not imported at module load) so that tests can patch the class's
    # md5 lists and the real loader still runs.
    import torchvision.datasets as tvd

    return tvd.CIFAR10 if name == "cifar10" else tvd.CIFAR100


def _cifar_problem(cls, root: Path) -> str:
    """Describe which CIFAR file is missing or fails torchvision's md5 check."""
    from torchvision.datasets.utils import check_integrity

    folder = root / cls.base_folder
    entries = [(f, m) for f, m in cls.train_list + cls.test_list] + [(cls.meta["filename"], cls.meta["md5"])]
    missing = [f for f, _ in entries if not (folder / f).is_file()]
    if missing:
        return f"missing {', '.join(missing)} in {folder}"
    bad = [f for f, m in entries if not check_integrity(str(folder / f), m)]
    if bad:
        return f"{', '.join(bad)} in {folder} fail(s) torchvision's md5 check (corrupt or not the official files)"
    return "unknown problem"


def _unavailable_message(label: str, root: Path, expect: str, archive: str, url: str, problem: str, why: str) -> str:
    return (
        f"{label} is not available: {problem}. {why}"
        f"Place {expect} under data_root={str(root)!r} (absolute: {root.resolve()}), i.e. extract {archive} "
        f"({url}) into that folder, or put the archive itself at {root.resolve() / archive} and set "
        f"'download: true' so it is verified and extracted without network. Set the config key 'data_root' "
        f"(trades-eval: --data-root) to the folder that holds it; 'download: false' skips any download attempt."
    )


def _with_socket_timeout(fn, *args, **kwargs):
    """Run a torchvision download with a socket timeout so an unreachable host fails fast
    instead of hanging (urllib uses the global default timeout, which is None)."""
    old = socket.getdefaulttimeout()
    socket.setdefaulttimeout(DOWNLOAD_SOCKET_TIMEOUT_S)
    try:
        return fn(*args, **kwargs)
    finally:
        socket.setdefaulttimeout(old)


def _load_cifar(name: str, root: Path, download: bool) -> tuple[ImageSet, ImageSet, int]:
    info = _CIFAR_FILES[name]
    cls = _cifar_class(name)

    def fail(why: str, err: BaseException | None = None) -> DatasetUnavailable:
        problem = _cifar_problem(cls, root)
        if problem == "unknown problem" and err is not None:
            problem = f"torchvision could not load it ({type(err).__name__}: {err})"
        expect = f"the folder {info['folder']}/ with {info['files']}"
        return DatasetUnavailable(
            _unavailable_message(info["label"], root, expect, info["archive"], cls.url, problem, why)
        )

    sets = []
    for train in (True, False):
        try:
            ds = cls(str(root), train=train, download=False)
        except RuntimeError as e:  # torchvision: "Dataset not found or corrupted"
            if not download:
                raise fail("Download is disabled (download: false). ", e) from None
            try:
                # torchvision skips the network when a valid archive already sits in root.
                ds = _with_socket_timeout(cls, str(root), train=train, download=True)
            except RuntimeError as e2:
                raise fail(f"Downloading/extracting {cls.url} did not produce valid files. ", e2) from None
            except Exception as e2:  # URLError, socket timeout, HTTP error, bad archive ...
                msg = str(e2).splitlines()[0][:200] if str(e2) else ""
                raise fail(f"Downloading {cls.url} failed ({type(e2).__name__}: {msg}). ", e2) from None
        sets.append(ds)
    out = []
    for ds in sets:
        images = torch.from_numpy(ds.data).permute(0, 3, 1, 2).contiguous()  # NHWC -> NCHW, once
        labels = torch.as_tensor(ds.targets, dtype=torch.int64)
        out.append(ImageSet(images, labels))
    return out[0], out[1], info["classes"]


# ---------------------------------------------------------------------------------- TinyImageNet


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
        _unavailable_message(SOURCES["tinyimagenet"].label, root, expect, SOURCES["tinyimagenet"].filename, TINY_URL,
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
        names = sorted(n for n in os.listdir(d) if n.lower().endswith((".jpeg", ".jpg")))
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


def _load_tinyimagenet(root: Path, download: bool) -> tuple[ImageSet, ImageSet, int]:
    folder = root / TINY_FOLDER
    problem = _tiny_layout_problem(folder)
    why = "Download is disabled (download: false). "
    if problem is not None and download:
        from torchvision.datasets.utils import download_and_extract_archive

        try:
            # download_url skips the network when a valid zip already sits in root.
            _with_socket_timeout(download_and_extract_archive, TINY_URL, str(root), md5=TINY_MD5)
            why = ""
        except Exception as e:
            msg = str(e).splitlines()[0][:200] if str(e) else ""
            why = f"Downloading {TINY_URL} failed ({type(e).__name__}: {msg}). "
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


# ------------------------------------------------------------------------------------- synthetic


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
