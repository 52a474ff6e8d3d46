"""A run's ``checkpoints/``: what each file holds, writing it, and resuming from ``last.pt``.

``last.pt`` holds the whole resumable state of the last completed epoch (model, optimiser, the run's
counters, the epoch and batch logs, every random generator, AWP's proxy optimiser); ``best.pt`` and the
``epochNNN.pt`` snapshots hold a model with what rebuilds it (``model_meta``) and its validation numbers.
Everything after ``last.pt`` in an epoch's saving sequence is derived from it and redone on resume if a
crash came first (:meth:`Checkpoints.resume`).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn

from trades_instability.config.run import RunConfig
from trades_instability.core import masking
from trades_instability.core.models import input_normalization
from trades_instability.data.datasets import DataSplits
from trades_instability.rundir import layout
from trades_instability.rundir.checkpoint import CheckpointError, load_checkpoint, save_checkpoint
from trades_instability.rundir.layout import without_output_only
from trades_instability.rundir.records import RunFiles, batch_rows_from_csv


@dataclass
class TrainState:
    """The run's resumable counters (saved in ``checkpoints/last.pt``, restored on resume)."""

    epoch: int = 0  # completed epochs
    step: int = 0  # completed optimiser steps
    noise_left: int = 0  # batches still to be noised (Algorithm 1)
    best_pgd_acc: float = -1.0
    best_epoch: int = 0
    epoch_rows: list[dict[str, Any]] = field(default_factory=list)
    train_time_s: float = 0.0


def model_meta(cfg: RunConfig, splits: DataSplits) -> dict[str, Any]:
    """What rebuilds the model of a checkpoint (evaluation reads it)."""
    return {"arch": cfg.arch, "width": cfg.width, "num_classes": splits.num_classes,
            "image_size": splits.image_size, "convention": cfg.convention,
            "normalize": input_normalization(cfg.dataset, cfg.normalize_input),
            "planted": masking.meta(cfg.plant_masking)}  # how the model was planted (None: it was not)


class Checkpoints:
    def __init__(
        self,
        files: RunFiles,
        cfg: RunConfig,
        meta: dict[str, Any],
        *,
        model: nn.Module,
        optimizer: torch.optim.Optimizer,
        awp: Any,
        gen_data: torch.Generator,
        gen_dev: torch.Generator,
        device: torch.device,
        log: Callable[[str], None],
    ):
        self.files, self.cfg, self.meta = files, cfg, meta
        self.dir = files.ckpt_dir
        self.model, self.optimizer, self.awp = model, optimizer, awp
        self.gen_data, self.gen_dev, self.device = gen_data, gen_dev, device
        self.log = log

    # -- writing -------------------------------------------------------------------------------
    def model_payload(self, kind: str, epoch: int, val: dict[str, float]) -> dict[str, Any]:
        return {"model": self.model.state_dict(), "model_meta": self.meta, "config": self.cfg.to_dict(),
                "epoch": epoch, "kind": kind, "val": val}

    def save_best(self, epoch: int, val: dict[str, float]) -> None:
        save_checkpoint(self.dir / layout.BEST, self.model_payload("best", epoch, val))

    def save_snapshot(self, epoch: int, val: dict[str, float]) -> None:
        save_checkpoint(self.dir / f"epoch{epoch:03d}.pt", self.model_payload("snapshot", epoch, val))

    def save_last(self, state: TrainState, batch_rows: list[dict[str, Any]], val: dict[str, float]) -> None:
        s = state
        payload = self.model_payload("last", s.epoch, val)
        payload.update(
            optimizer=self.optimizer.state_dict(),
            train_state={"epoch": s.epoch, "step": s.step, "noise_left": s.noise_left,
                         "best_pgd_acc": s.best_pgd_acc, "best_epoch": s.best_epoch,
                         "train_time_s": s.train_time_s},
            epoch_rows=s.epoch_rows,
            batch_rows=batch_rows,  # the CSV is rebuilt from these: no hole if a crash follows
            rng={"data": self.gen_data.get_state(), "device": self.gen_dev.get_state(),
                 "torch": torch.get_rng_state(), "device_type": self.device.type},
        )
        if self.awp is not None:
            payload["awp_proxy_opt"] = self.awp.state_dict()
        save_checkpoint(self.dir / layout.LAST, payload)

    # -- resuming ------------------------------------------------------------------------------
    def resume(self) -> tuple[TrainState, list[dict[str, Any]]] | None:
        """Load ``last.pt`` into the model, optimiser, generators and AWP; reconcile the CSVs and the
        epoch's checkpoints with it. Returns the run's state and batch log, or None without a last.pt."""
        path = self.dir / layout.LAST
        if not path.exists():
            return None
        ckpt = load_checkpoint(path)  # raises CheckpointError naming the file; never restart silently
        if ckpt.get("kind") != "last" or "train_state" not in ckpt:
            raise CheckpointError(f"checkpoint {path} holds no resumable training state")
        self._check_config(path, ckpt.get("config", {}))
        self.model.load_state_dict(ckpt["model"])
        self.optimizer.load_state_dict(ckpt["optimizer"])
        ts = ckpt["train_state"]
        state = TrainState(epoch=ts["epoch"], step=ts["step"], noise_left=ts["noise_left"],
                           best_pgd_acc=ts["best_pgd_acc"], best_epoch=ts["best_epoch"],
                           epoch_rows=list(ckpt["epoch_rows"]), train_time_s=ts["train_time_s"])
        self.gen_data.set_state(ckpt["rng"]["data"])
        self._restore_device_generator(path, ckpt["rng"])
        torch.set_rng_state(ckpt["rng"]["torch"])
        if self.awp is not None and "awp_proxy_opt" in ckpt:
            self.awp.load_state_dict(ckpt["awp_proxy_opt"])
        if "batch_rows" in ckpt:
            batch_rows = list(ckpt["batch_rows"])
        else:  # a resume state of an older version: the CSV must cover every epoch it does
            batch_rows = batch_rows_from_csv(self.files.batches_csv, state.epoch, self.cfg.log_batch_metrics)
        self.files.reconcile_logs(state.epoch_rows, batch_rows, state.epoch)
        self._restore_epoch_checkpoints(state, ckpt.get("val", {}))
        self.log(f"resumed from {path} at epoch {state.epoch} (step {state.step})")
        return state, batch_rows

    def _check_config(self, path: Path, saved: dict[str, Any]) -> None:
        # what a run writes beside its results (tensorboard) may change on resume: the same run goes on
        saved_cfg, now = without_output_only(saved), without_output_only(self.cfg.to_dict())
        # a key added by a later version (e.g. deterministic, fix.mode) is, at its default, what the older run did
        saved_cfg = _with_new_defaults(saved_cfg, now, RunConfig().to_dict())
        if saved_cfg != now:
            diff = sorted(k for k in set(saved_cfg) | set(now) if saved_cfg.get(k) != now.get(k))
            raise CheckpointError(
                f"checkpoint {path} was written with a different config (keys differ: {', '.join(diff)}); "
                f"use a new output directory, or move {self.files.out} away to start over"
            )

    def _restore_device_generator(self, path: Path, rng: dict[str, Any]) -> None:
        """The attack/noise generator lives on the run's device; its state does not move across device
        types (a CUDA Philox state is 16 bytes, a CPU mt19937 state 5056), nor would the run continue
        the same random stream. One line naming the checkpoint, where it was written and what to do."""
        here = self.device.type
        written = rng.get("device_type")  # absent in checkpoints of older versions: try the state itself
        if written is None:
            try:
                self.gen_dev.set_state(rng["device"])
                return
            except RuntimeError:
                written = "cuda" if here == "cpu" else "cpu"
        if written != here:
            raise CheckpointError(
                f"checkpoint {path} was written by a run on {written}, this run is on {here}: its random generator "
                f"state cannot be resumed on another device type; resume with --device {written} "
                f"(or device: {written} in the run config), or train into a new output directory")
        self.gen_dev.set_state(rng["device"])

    def _restore_epoch_checkpoints(self, state: TrainState, val: dict[str, float]) -> None:
        """Write best.pt / the snapshot of the epoch saved in last.pt when a crash came before them:
        the model just loaded from last.pt is exactly that epoch's."""
        s = state
        best = self.dir / layout.BEST
        if s.epoch and s.best_epoch == s.epoch and (not best.exists() or load_checkpoint(best).get("epoch") != s.epoch):
            self.save_best(s.epoch, val)
            self.log(f"{best} lacked epoch {s.epoch} (the run stopped before writing it); "
                     f"rewritten from {self.files.last}")
        snap = self.dir / f"epoch{s.epoch:03d}.pt"
        if s.epoch in self.cfg.snapshot_epochs and not snap.exists():
            self.save_snapshot(s.epoch, val)
            self.log(f"{snap} was missing (the run stopped before writing it); rewritten from {self.files.last}")


def _with_new_defaults(saved: dict[str, Any], now: dict[str, Any], defaults: dict[str, Any]) -> dict[str, Any]:
    """``saved`` with every key it lacks (at any depth) taken from ``now`` where ``now`` holds the default."""
    out = dict(saved)
    for k, v in now.items():
        if k not in out:
            if v == defaults.get(k):
                out[k] = v
        elif isinstance(v, dict) and isinstance(out[k], dict) and isinstance(defaults.get(k), dict):
            out[k] = _with_new_defaults(out[k], v, defaults[k])
    return out
