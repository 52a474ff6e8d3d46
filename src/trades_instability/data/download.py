"""Fetch and verify the datasets: the workflow's ``download`` rule and ``python -m trades_instability download``.

    python -m trades_instability download DATASET [DATASET ...] --data-root DIR
                                          [--record FILE.json] [--no-fetch] [--timeout S]

:data:`SOURCES` is the one table of where each dataset comes from (URL, archive, md5), the folder it
extracts to below ``data_root`` and what a verified extraction looks like. The CIFAR entries are
torchvision's own published values (``torchvision.datasets.CIFAR10/CIFAR100`` attributes ``url``,
``filename``, ``tgz_md5``, ``base_folder``; tests/test_download.py pins them to torchvision) and the
CIFAR files are verified with torchvision's per-file md5 lists, i.e. exactly what its loaders (and
:mod:`trades_instability.data.cifar`) accept. TinyImageNet is the standard cs231n zip; its ``val/`` folder
(``val/images`` + ``val_annotations.txt``) is read as it is by :mod:`trades_instability.data.tinyimagenet`, so
no reorganisation is needed.

:func:`ensure` leaves a dataset verified below ``data_root``: nothing to do when the folder verifies;
otherwise the archive in ``data_root`` is used when its md5 matches (no network), else it is
downloaded (``fetch``) with torchvision's ``download_url`` under a short socket timeout. Extraction goes
into a hidden temporary folder beside the target (``.<folder>.extract-<pid>``), is verified there, and
only then renamed into place: an interrupted or corrupt extraction never leaves a folder that looks
valid. Every failure is ONE :class:`DownloadError` line naming the URL, the folder to fill by hand and
the ``download: false`` switch.

Imports nothing heavy at module load: the pipeline config (Snakemake's parse step) reads the table.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import shutil
import socket
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

# a connection that cannot be made (or stalls for this long between two packets) fails instead of
# hanging a login-node job; torchvision retries an https URL once over http, so the worst case is 2x
DOWNLOAD_TIMEOUT_S = 20.0


@dataclass(frozen=True)
class DatasetSource:
    """One dataset: where it comes from and what its extracted folder must hold."""

    name: str  # the run config's `dataset` value
    label: str
    url: str
    filename: str  # the archive, fetched into data_root
    md5: str  # of the archive
    folder: str  # what the archive extracts to, below data_root
    required: tuple[str, ...]  # paths below `folder` that must exist (the cheap presence check)
    # how the extracted folder is verified: "torchvision" = every file of that torchvision class's md5
    # lists (train_list, test_list, meta) passes check_integrity; "tinyimagenet" = the counts in `expect`
    verify: str
    torchvision_class: str | None = None
    expect: dict[str, int] = field(default_factory=dict)


SOURCES: dict[str, DatasetSource] = {
    s.name: s
    for s in (
        DatasetSource(
            "cifar10", "CIFAR-10", "https://www.cs.toronto.edu/~kriz/cifar-10-python.tar.gz",
            "cifar-10-python.tar.gz", "c58f30108f718f92721af3b95e74349a", "cifar-10-batches-py",
            ("data_batch_1", "data_batch_2", "data_batch_3", "data_batch_4", "data_batch_5", "test_batch",
             "batches.meta"),
            verify="torchvision", torchvision_class="CIFAR10",
        ),
        DatasetSource(
            "cifar100", "CIFAR-100", "https://www.cs.toronto.edu/~kriz/cifar-100-python.tar.gz",
            "cifar-100-python.tar.gz", "eb9058c3a382ffc7106e4002c42a8d85", "cifar-100-python",
            ("train", "test", "meta"),
            verify="torchvision", torchvision_class="CIFAR100",
        ),
        DatasetSource(
            "tinyimagenet", "TinyImageNet-200", "http://cs231n.stanford.edu/tiny-imagenet-200.zip",
            "tiny-imagenet-200.zip", "90528d7ca1a48142e341f4ef8d21d0de", "tiny-imagenet-200",
            ("wnids.txt", "train", "val/val_annotations.txt", "val/images"),
            verify="tinyimagenet",
            # 200 classes x 500 train JPEGs; the labelled val split (our test set) has 10,000
            expect={"classes": 200, "train_per_class": 500, "val_images": 10000},
        ),
    )
}


class DownloadError(RuntimeError):
    """A dataset could not be fetched, extracted or verified; the message is one line with the fix."""


def source(name: str) -> DatasetSource:
    if name not in SOURCES:
        raise DownloadError(f"unknown dataset {name!r}; downloadable: {', '.join(SOURCES)} "
                            "(synthetic needs no files)")
    return SOURCES[name]


# ----------------------------------------------------------------------------------- verification


def presence_problem(src: DatasetSource, root: str | Path) -> str | None:
    """None when every required path of ``src`` exists below ``root`` (no md5: cheap), else what is missing."""
    where = Path(root) / src.folder
    if not where.exists():
        return f"{where} does not exist"
    missing = [f for f in src.required if not (where / f).exists()]
    return f"{where} lacks {', '.join(missing)}" if missing else None


def torchvision_class(src: DatasetSource):
    """The torchvision dataset class of ``src`` (the CIFAR loaders: data/cifar.py)."""
    # looked up at call time, so that tests can point the class's md5 lists at tiny files
    import torchvision.datasets as tvd

    return getattr(tvd, src.torchvision_class)


def torchvision_files(cls) -> list[tuple[str, str]]:
    """(file, md5) of every file of a torchvision dataset class: its train_list, test_list and meta."""
    return [(f, m) for f, m in cls.train_list + cls.test_list] + [(cls.meta["filename"], cls.meta["md5"])]


def jpeg_names(folder: Path) -> list[str]:
    return [n for n in os.listdir(folder) if n.lower().endswith((".jpeg", ".jpg"))] if folder.is_dir() else []


def layout_problem(src: DatasetSource, root: str | Path) -> str | None:
    """None when the extracted folder below ``root`` is verified, else the first problem found."""
    problem = presence_problem(src, root)
    if problem:
        return problem
    where = Path(root) / src.folder
    if src.verify == "torchvision":
        from torchvision.datasets.utils import check_integrity

        bad = [f for f, md5 in torchvision_files(torchvision_class(src)) if not check_integrity(str(where / f), md5)]
        if bad:
            return f"{', '.join(bad)} in {where} missing or failing torchvision's md5 check"
        return None
    if src.verify == "tinyimagenet":
        e = src.expect
        wnids = [w.strip() for w in (where / "wnids.txt").read_text().splitlines() if w.strip()]
        if len(set(wnids)) != e["classes"]:
            return f"{where / 'wnids.txt'} lists {len(set(wnids))} classes, expected {e['classes']}"
        short = [w for w in wnids if len(jpeg_names(where / "train" / w / "images")) != e["train_per_class"]]
        if short:
            return (f"{len(short)} class(es) under {where / 'train'} (e.g. {short[0]}) do not hold "
                    f"{e['train_per_class']} JPEGs in <wnid>/images")
        n_val = len(jpeg_names(where / "val" / "images"))
        n_ann = sum(1 for ln in (where / "val" / "val_annotations.txt").read_text().splitlines() if ln.strip())
        if n_val != e["val_images"] or n_ann != e["val_images"]:
            return (f"{where / 'val'} holds {n_val} JPEGs and {n_ann} annotations, expected "
                    f"{e['val_images']} of each")
        return None
    raise ValueError(f"DatasetSource {src.name}: unknown verify kind {src.verify!r}")


def describe_layout(src: DatasetSource) -> str:
    if src.verify == "torchvision":
        return f"every file of torchvision.datasets.{src.torchvision_class} passes its md5 check"
    e = src.expect
    return (f"{e['classes']} classes x {e['train_per_class']} train JPEGs, {e['val_images']} annotated val "
            "JPEGs")


# --------------------------------------------------------------------------------- fetch + extract


def _hand_fix(src: DatasetSource, root: Path) -> str:
    return (f"fill {(root / src.folder).resolve()}/ by hand (extract {src.filename} from {src.url} into "
            f"{root.resolve()}, or put the archive itself there) and set 'download: false' to skip fetching")


def _md5(path: Path) -> str:
    from torchvision.datasets.utils import calculate_md5

    return calculate_md5(str(path))


@contextlib.contextmanager
def socket_timeout(seconds: float):
    """Inside, sockets time out after ``seconds``: urllib uses the global default timeout, which is None,
    so an unreachable host would hang a download instead of failing fast."""
    old = socket.getdefaulttimeout()
    socket.setdefaulttimeout(seconds)
    try:
        yield
    finally:
        socket.setdefaulttimeout(old)


def _fetch(src: DatasetSource, root: Path, timeout: float) -> None:
    """Download the archive into ``root`` with torchvision's download_url (md5-checked)."""
    from torchvision.datasets.utils import download_url

    try:
        with socket_timeout(timeout):
            download_url(src.url, str(root), filename=src.filename, md5=src.md5)
    except RuntimeError:  # torchvision: "File not found or corrupted." after the md5 check
        archive = root / src.filename
        got = _md5(archive) if archive.is_file() else "no file"
        raise DownloadError(
            f"{src.label}: {archive} downloaded from {src.url} fails the md5 check (md5 {got}, expected "
            f"{src.md5}): corrupt or incomplete, nothing was extracted; delete it and retry, or "
            + _hand_fix(src, root)) from None
    except Exception as e:  # URLError, socket timeout, HTTP error, refused connection ...
        reason = getattr(e, "reason", None) or e
        reason = " ".join(str(reason).split())[:160] or type(e).__name__
        raise DownloadError(f"{src.label}: could not download {src.url} ({type(e).__name__}: {reason}); "
                            + _hand_fix(src, root)) from None


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _remove_stale_extractions(src: DatasetSource, root: Path) -> None:
    """Temporary folders of extractions whose process is gone (killed mid-way)."""
    for tmp in root.glob(f".{src.folder}.extract-*"):
        pid = tmp.name.rsplit("-", 1)[1]
        if pid.isdigit() and int(pid) != os.getpid() and _alive(int(pid)):
            continue  # another extraction is running
        shutil.rmtree(tmp, ignore_errors=True)


def _extract(src: DatasetSource, root: Path, log) -> None:
    """Extract the (md5-verified) archive into a temporary folder, verify it there, then move it into place."""
    from torchvision.datasets.utils import extract_archive

    archive = root / src.filename
    _remove_stale_extractions(src, root)
    tmp = root / f".{src.folder}.extract-{os.getpid()}"
    try:
        tmp.mkdir()
        extract_archive(str(archive), str(tmp))
        problem = layout_problem(src, tmp)
        if problem:
            raise DownloadError(f"{src.label}: {archive} (md5 ok) does not extract to a valid {src.folder}/ "
                                f"({problem.replace(str(tmp), '<extracted>')}); " + _hand_fix(src, root))
        target = root / src.folder
        if target.exists() or target.is_symlink():
            aside = root / f"{src.folder}.invalid-{time.strftime('%Y%m%d-%H%M%S')}"
            target.rename(aside)
            log(f"moved the incomplete {target} aside to {aside}")
        (tmp / src.folder).rename(target)
    except DownloadError:
        raise
    except Exception as e:  # a broken archive, a full disk ...
        raise DownloadError(f"{src.label}: extracting {archive} failed ({type(e).__name__}: "
                            f"{' '.join(str(e).split())[:160]}); " + _hand_fix(src, root)) from None
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def ensure(src: DatasetSource, root: str | Path, *, fetch: bool = True, timeout: float = DOWNLOAD_TIMEOUT_S,
           log=lambda msg: None) -> dict[str, Any]:
    """Leave ``src`` verified below ``root`` and return its record (see module doc). ``fetch=False``
    (config ``download: false``) never touches the network: only a verified folder or a local archive
    with the right md5 is accepted."""
    t0 = time.time()
    root = Path(root)
    where = root / src.folder
    problem = layout_problem(src, root)
    action = "verified"
    if problem:
        log(f"{src.label}: {problem}")
        archive = root / src.filename
        have_archive = archive.is_file() and _md5(archive) == src.md5
        if not have_archive:
            if not fetch:
                what = (f"{archive} fails the md5 check (expected {src.md5})" if archive.is_file()
                        else f"no {src.filename} in {root.resolve()}")
                raise DownloadError(f"{src.label} is not available and download is false: {problem}; {what}. "
                                    f"Fill {where.resolve()}/ by hand (extract {src.filename} from {src.url} "
                                    f"into {root.resolve()}) or set 'download: true'")
            root.mkdir(parents=True, exist_ok=True)
            log(f"{src.label}: downloading {src.url} into {root.resolve()} (timeout {timeout:g} s)")
            _fetch(src, root, timeout)
            action = "downloaded"
        else:
            action = "extracted"
        log(f"{src.label}: extracting {archive}")
        _extract(src, root, log)
    return {
        "dataset": src.name,
        "path": str(where.resolve()),
        "url": src.url,
        "archive": src.filename,
        "md5": src.md5,
        "verified": describe_layout(src),
        "action": action,  # verified (already there), extracted (local archive) or downloaded
        "time": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "seconds": round(time.time() - t0, 1),
    }


def write_record(record: dict[str, Any], path: str | Path) -> None:
    from trades_instability.rundir.atomic_io import atomic_path

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with atomic_path(path) as tmp:
        Path(tmp).write_text(json.dumps(record, indent=2) + "\n")


# ------------------------------------------------------------------------------------------- CLI


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m trades_instability download",
                                description="Fetch (when missing) and verify datasets below a data root.")
    p.add_argument("datasets", nargs="+", metavar="DATASET", help=", ".join(SOURCES))
    p.add_argument("--data-root", required=True, help="folder that holds (or will hold) the dataset folders")
    p.add_argument("--record", default=None, help="write the verification record (JSON) here; one dataset only")
    p.add_argument("--no-fetch", action="store_true", help="never use the network (config download: false)")
    p.add_argument("--timeout", type=float, default=DOWNLOAD_TIMEOUT_S, help="socket timeout in seconds")
    args = p.parse_args(argv)
    if args.record and len(args.datasets) != 1:
        p.error("--record takes exactly one DATASET")

    def log(msg: str) -> None:
        print(msg, flush=True)

    try:
        for name in args.datasets:
            record = ensure(source(name), args.data_root, fetch=not args.no_fetch, timeout=args.timeout, log=log)
            log(f"{record['dataset']}: {record['action']} {record['path']} ({record['verified']})")
            if args.record:
                write_record(record, args.record)
    except DownloadError as e:
        print(f"download: error: {e}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
