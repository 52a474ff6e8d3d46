"""Checkpoints: saved atomically (:mod:`.atomic_io`) in our own format, loaded with
``torch.load(weights_only=True)``; any failure is one :class:`CheckpointError` that names the file.
torch is imported where needed: the report stages read JSON/CSV only.
"""

from __future__ import annotations

import io
import os
from pathlib import Path
from typing import TYPE_CHECKING

from trades_instability.rundir.atomic_io import atomic_write_bytes

if TYPE_CHECKING:
    import torch

CHECKPOINT_FORMAT = "trades_instability/checkpoint-v1"


class CheckpointError(RuntimeError):
    """A checkpoint file is missing, truncated, foreign or does not fit the requested model."""


def save_checkpoint(path: str | os.PathLike, payload: dict) -> None:
    """Atomically save a checkpoint dict (tensors, containers and plain Python values only)."""
    import torch

    buf = io.BytesIO()
    torch.save({"format": CHECKPOINT_FORMAT, **payload}, buf)
    atomic_write_bytes(path, buf.getvalue())


def load_checkpoint(path: str | os.PathLike, map_location: str | torch.device = "cpu") -> dict:
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


def load_model(path: str | os.PathLike, device: str | torch.device = "cpu"):
    """Rebuild the model stored in a checkpoint; returns ``(model, checkpoint_dict)`` in eval mode (a
    planted checkpoint's model behind its masking, :class:`~trades_instability.core.masking.PlantedModel`).

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
    # a planted checkpoint (core/masking.py) is evaluated behind its masking as the finished run has it (on, or
    # off after a window). "planted" is absent in older checkpoints and None in unplanted ones.
    if meta.get("planted"):
        from trades_instability.core import masking

        cfg = ckpt.get("config") or {}
        model = masking.for_checkpoint(model, meta["planted"], int(cfg.get("epochs", ckpt.get("epoch") or 1)),
                                       int(cfg.get("seed", 0)))
    return model.to(device).eval(), ckpt
