"""AutoAttack's batch: which batch to try first (:func:`aa_start_batch`) and what a CUDA out-of-memory does
(:func:`aa_call`): a pinned ``aa_batch_size`` stops with :class:`AABatchOutOfMemory` (pyautoattack reseeds every
batch, so another batch gives other numbers); a null one is halved, logged and recorded in the eval JSON.
"""

from __future__ import annotations

from typing import Any

import torch

from trades_instability.evaluate.suite_config import SuiteConfig

AA_AUTO_START = 4096  # first AutoAttack batch tried on a GPU when aa_batch_size is null


class AABatchOutOfMemory(RuntimeError):
    """AutoAttack ran out of GPU memory at a pinned ``aa_batch_size``; halving it would change the numbers."""


def aa_call(fn, rng_device: torch.device, used: dict[str, Any], *, pinned: bool = False,
            log=lambda msg: None, **kw):
    """Run one pyautoattack call. On CUDA out-of-memory: with a ``pinned`` batch raise
    :class:`AABatchOutOfMemory` (a smaller batch gives other numbers: pyautoattack reseeds per batch);
    otherwise halve the batch, say so through ``log`` and run the call again from scratch (same seed).
    ``used["aa_batch_size"]`` keeps the batch that worked, so later calls start there;
    ``used["aa_batch_halvings"]`` counts the halvings."""
    # pyautoattack reseeds the global RNGs; keep the caller's RNG state untouched
    devices = [rng_device] if rng_device.type == "cuda" else []
    while True:
        try:
            with torch.random.fork_rng(devices=devices):
                return fn(batch_size=used["aa_batch_size"], **kw)
        except torch.cuda.OutOfMemoryError:
            bs = used["aa_batch_size"]
            if pinned:
                raise AABatchOutOfMemory(
                    f"AutoAttack ran out of GPU memory at the pinned aa_batch_size {bs}; it is not halved because "
                    "the accuracy depends on the batch (pyautoattack reseeds every batch). Free the GPU (fewer jobs "
                    "on it: jobs_per_gpu) or set the suite's aa_batch_size lower for every run of the study "
                    "(null: halve on out-of-memory, recorded in the eval JSON)"
                ) from None
            if bs == 1:
                raise
            used["aa_batch_size"] = max(1, bs // 2)
            used["aa_batch_halvings"] = used.get("aa_batch_halvings", 0) + 1
            log(f"WARNING: AutoAttack out of GPU memory at batch {bs}; retrying from scratch at batch "
                f"{used['aa_batch_size']} (aa_batch_size null: the batch, and with it the accuracy, depends on "
                "free memory; recorded in the eval JSON)")
            if torch.cuda.is_available():
                torch.cuda.empty_cache()


def aa_start_batch(suite: SuiteConfig, n: int, device: torch.device) -> int:
    """The AutoAttack batch to try first: the suite's, else the largest that may fit."""
    if suite.aa_batch_size is not None:
        return min(suite.aa_batch_size, max(n, 1))
    return min(AA_AUTO_START if device.type == "cuda" else suite.batch_size, max(n, 1))


__all__ = ["AA_AUTO_START", "AABatchOutOfMemory", "aa_call", "aa_start_batch"]
