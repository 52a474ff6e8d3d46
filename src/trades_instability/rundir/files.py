"""Crash-safe artifact I/O.

Every file is written to a temporary name in the same folder, flushed, fsynced and then renamed
into place, so a process killed at any moment never leaves a truncated file under the final name.
Checkpoints are loaded with ``torch.load(weights_only=True)`` and any failure names the file.
"""

from __future__ import annotations

import io
import json
import os
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # torch is imported where needed: the report stages read JSON/CSV only
    import torch

CHECKPOINT_FORMAT = "trades_instability/checkpoint-v1"


class CheckpointError(RuntimeError):
    """A checkpoint file is missing, truncated, foreign or does not fit the requested model."""


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


def save_checkpoint(path: str | os.PathLike, payload: dict) -> None:
    """Atomically save a checkpoint dict (tensors, containers and plain Python values only)."""
    import torch

    buf = io.BytesIO()
    torch.save({"format": CHECKPOINT_FORMAT, **payload}, buf)
    atomic_write_bytes(path, buf.getvalue())


def load_checkpoint(path: str | os.PathLike, map_location: "str | torch.device" = "cpu") -> dict:
    """Load a checkpoint written by :func:`save_checkpoint` with ``weights_only=True``.

    Raises :class:`CheckpointError` naming the file when it is missing, truncated, or not one of ours."""
    import torch

    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"checkpoint {path} does not exist")
    if path.stat().st_size == 0:
        raise CheckpointError(f"checkpoint {path} is empty (0 bytes); delete it (and rerun) to start over")
    try:
        ckpt = torch.load(path, map_location=map_location, weights_only=True)
    except Exception as e:  # truncated zip, pickle of foreign objects, random bytes ...
        first_line = (str(e).splitlines() or [""])[0][:200]  # some errors have an empty message
        raise CheckpointError(
            f"checkpoint {path} cannot be read ({type(e).__name__}: {first_line}); "
            "it is truncated or not a trades_instability checkpoint. Delete it (and rerun) only if you "
            "are sure it holds nothing you need."
        ) from None
    if not isinstance(ckpt, dict) or ckpt.get("format") != CHECKPOINT_FORMAT:
        raise CheckpointError(
            f"checkpoint {path} is not a trades_instability checkpoint (expected format "
            f"{CHECKPOINT_FORMAT!r}); pass a file written by trades-train"
        )
    return ckpt


def load_model(path: str | os.PathLike, device: "str | torch.device" = "cpu"):
    """Rebuild the model stored in a checkpoint; returns ``(model, checkpoint_dict)`` in eval mode.

    A checkpoint whose weights do not fit the architecture it declares raises CheckpointError."""
    from trades_instability.core.models import build_model

    ckpt = load_checkpoint(path, map_location="cpu")
    meta = ckpt.get("model_meta")
    if not isinstance(meta, dict) or "model" not in ckpt:
        raise CheckpointError(f"checkpoint {path} holds no model (keys: {sorted(ckpt)})")
    # "normalize" ([mean, std] or null) is what the model does to its input; older checkpoints lack it
    model = build_model(meta["arch"], num_classes=meta["num_classes"], width=meta["width"],
                        normalize=meta.get("normalize"))
    try:
        model.load_state_dict(ckpt["model"])
    except RuntimeError as e:
        raise CheckpointError(
            f"checkpoint {path} does not match the architecture it declares ({meta}): {str(e).splitlines()[0]}"
        ) from None
    return model.to(device).eval(), ckpt
