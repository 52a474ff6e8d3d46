"""Crash-safe file writing.

Every file is written to a temporary name in the same folder, flushed, fsynced and then renamed
into place, so a process killed at any moment never leaves a truncated file under the final name;
the final file gets the mode a plain ``open(path, "w")`` would give (the umask). Any OSError names
the final file. JSON is read back with an error that names the file and the fix.
"""

from __future__ import annotations

import json
import os
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any


def _umask() -> int:
    """The process umask (read without changing it where Linux allows; os.umask is process-wide)."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("Umask:"):
                return int(line.split()[1], 8)
    except OSError:
        pass
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def _named(e: OSError, path: Path) -> OSError:
    """The same OSError naming the final file (ENOSPC from write/fsync names no file at all)."""
    return type(e)(e.errno, e.strerror or str(e), str(path)) if e.errno is not None else OSError(f"{path}: {e}")


@contextmanager
def atomic_path(path: str | os.PathLike) -> Iterator[Path]:
    """Yield a temporary path next to ``path``; on success it is renamed onto ``path``.

    For writers that insist on a file name (``savefig``, ``np.savez``). The temporary keeps the
    final suffix so format detection by extension still works. The final file gets the mode a plain
    ``open(path, "w")`` would give (0666 minus the umask): mkstemp creates it 0600, which would hide
    results from the rest of a group on a shared filesystem. An OSError names ``path``."""
    path = Path(path)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.stem}.", suffix=f".tmp{path.suffix}")
        os.close(fd)
    except OSError as e:
        raise _named(e, path) from None
    tmp_path = Path(tmp)
    try:
        yield tmp_path
        with open(tmp_path, "rb+") as fh:
            os.fsync(fh.fileno())
        os.chmod(tmp_path, 0o666 & ~_umask())
        os.replace(tmp_path, path)
    except OSError as e:
        raise _named(e, path) from None
    finally:
        if tmp_path.exists():
            tmp_path.unlink()


def is_orphan_temporary(path: Path) -> bool:
    """A temporary left by :func:`atomic_path` of a killed process (``.<stem>.<random>.tmp<suffix>``)."""
    return path.name.startswith(".") and ".tmp" in path.name and path.is_file()


def check_writable_output(path: str | os.PathLike, what: str) -> None:
    """Raise OSError naming ``path`` unless a file can be created there (the folder is made if needed).

    Called before expensive work so that a typo'd or read-only output fails in a second, not after hours."""
    path = Path(path)
    if path.is_dir():
        raise IsADirectoryError(21, f"{what} is a folder, expected a file name", str(path))
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, probe = tempfile.mkstemp(dir=path.parent, prefix=f".{path.stem}.", suffix=".tmp-probe")
        os.close(fd)
        os.unlink(probe)
    except OSError as e:
        raise type(e)(e.errno, f"{what} cannot be written ({e.strerror or e})", str(path)) from None


def atomic_write_bytes(path: str | os.PathLike, data: bytes) -> None:
    with atomic_path(path) as tmp:
        tmp.write_bytes(data)


def atomic_write_text(path: str | os.PathLike, text: str) -> None:
    atomic_write_bytes(path, text.encode("utf-8"))


def write_json(path: str | os.PathLike, obj: Any) -> None:
    atomic_write_text(path, json.dumps(obj, indent=2, sort_keys=False, default=_json_default) + "\n")


def _json_default(o: Any) -> Any:
    if hasattr(o, "tolist") and getattr(o, "ndim", 0) > 0:  # tensors and arrays
        return o.tolist()
    if isinstance(o, Path):
        return str(o)
    if hasattr(o, "item"):
        return o.item()
    raise TypeError(f"not JSON serialisable: {type(o).__name__}")


def read_json(path: str | os.PathLike) -> Any:
    path = Path(path)
    try:
        return json.loads(path.read_text())
    except FileNotFoundError:
        raise FileNotFoundError(f"{path}: file not found") from None
    except json.JSONDecodeError as e:
        raise ValueError(f"{path}: not valid JSON ({e}); delete it and rerun the step that makes it") from None
