"""One training run: TRADES (or its "Modified" / AWP variants) with the paper's instrumentation and fix.

The run directory holds everything a later stage reads (see README "Run directory"):
``epochs.csv``, ``batches.csv``, ``checkpoints/{last,best}.pt`` (+ snapshots) and ``run.json``,
which is written last and marks the run complete (or diverged).

Crash safety: at the end of every epoch the whole resumable state (model, optimiser, epoch, fix
state, random generators, the epoch log and the batch log) goes into ``last.pt`` atomically, and the
CSVs are then rewritten from that state; on resume they are reconciled with it (rundir/records.py). One
process at a time writes a run directory (rundir/lock.py). Rerunning the same command resumes from the
last completed epoch and produces the same logs as an uninterrupted run (same device, same seed).
SIGTERM/SIGINT stop the run at the next batch boundary; the last completed epoch is already saved.
"""

from __future__ import annotations

import contextlib
import math
import signal
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import torch
import torch.nn.functional as F
from torch import nn

from trades_instability.rundir.checkpoint import CheckpointError, load_checkpoint, save_checkpoint
from trades_instability.rundir.atomic_io import write_json
from trades_instability.core.attacks import pgd, tpgd
from trades_instability.data.augment import augment_batch
from trades_instability.core.awp import build_awp
from trades_instability.config.run import RunConfig
from trades_instability.data.datasets import DataSplits, ImageSet, iterate_batches, load_splits
from trades_instability.core.losses import trades_parts, upcast
from trades_instability.core.metrics import fosc_from_grad, grad_cosine, grad_norm, sgcs
from trades_instability.core.memory_format import compile_options, use_channels_last
from trades_instability.core.models import build_model, input_normalization
from trades_instability.rundir.records import BATCH_COLUMNS, EPOCH_COLUMNS, RunFiles, batch_rows_from_csv  # noqa: F401 (columns re-exported)
from trades_instability.rundir.lock import RunLock, RunLocked
from trades_instability.runtime import (DeviceUnavailable, compile_watch, cpu_fallback_problem, device_description, execution_mode,
                      library_versions, resolve_device)


class Diverged(RuntimeError):
    """The training loss became non-finite."""

    def __init__(self, epoch: int, step: int, batch: int, what: str):
        self.epoch, self.step, self.batch = epoch, step, batch
        kept = (f"the last good state (epoch {epoch - 1}) is kept in checkpoints/last.pt" if epoch > 1 else
                "no epoch had completed, so there is no last good state (no checkpoints/last.pt)")
        super().__init__(
            f"training diverged: non-finite {what} at epoch {epoch}, batch {batch} (global step {step}); {kept}"
        )


class Interrupted(RuntimeError):
    """SIGTERM/SIGINT arrived; the last completed epoch is saved."""


def lr_at(cfg: RunConfig, epoch: int) -> float:
    """Learning rate of (1-based) ``epoch``: decayed by lr_gamma once per milestone reached, milestones
    counted as ``cfg.lr_milestone_base`` says (config.CONVENTIONS). Base 1 (official TRADES,
    ``if epoch >= m`` with 1-based epochs): the LR drops at epoch m. Base 0 (ADR): timm's
    MultiStepLRScheduler (0.6.12) stepped after every iteration t with decay_t = m * S gives iteration
    t + 1 the factor of #{d <= t + 1}, so iteration m * S, the first of 0-based epoch m, is the first
    decayed one: the LR drops at 1-based epoch m + 1, constant within each epoch."""
    completed_or_current = epoch - 1 + cfg.lr_milestone_base
    return cfg.lr * cfg.lr_gamma ** sum(completed_or_current >= m for m in cfg.lr_milestones)


def optimizer_nesterov(cfg: RunConfig) -> bool:
    """The training optimiser's Nesterov flag: ``awp.nesterov`` in AWP runs when set (ADR: plain SGD),
    else ``nesterov``."""
    if cfg.awp.enabled and cfg.awp.nesterov is not None:
        return cfg.awp.nesterov
    return cfg.nesterov


# ----------------------------------------------------------------------------------------------
# Validation: clean and PGD-10 accuracy, FOSC and SGCS from the same PGD-10 examples
# ----------------------------------------------------------------------------------------------
@torch.no_grad()
def _count_correct(logits: torch.Tensor, y: torch.Tensor) -> int:
    return int((logits.argmax(1) == y).sum())


def validate(
    model: nn.Module,
    data: ImageSet,
    cfg: RunConfig,
    device: torch.device,
    generator: torch.Generator | None,
    autocast: Callable[[], contextlib.AbstractContextManager],
    should_stop: Callable[[], bool] = lambda: False,
    channels_last: bool = False,
) -> dict[str, float]:
    model.eval()
    a = cfg.attack
    n = 0
    # sums on the device (no host sync per batch); float64 as the host-side sums they replace
    counts = torch.zeros(2, dtype=torch.int64, device=device)  # clean, robust
    sums = torch.zeros(2, dtype=torch.float64, device=device)  # fosc, sgcs
    for x, y in iterate_batches(data, cfg.val_batch_size, shuffle=False, generator=None, device=device):
        if should_stop():
            raise Interrupted()
        if channels_last:
            x = x.contiguous(memory_format=torch.channels_last)
        with autocast():
            with torch.no_grad():
                clean_correct = (model(x).argmax(1) == y).sum()
            res = pgd(model, x, y, eps=a.eps, step_size=a.step_size, steps=a.steps,
                      random_start=cfg.val_random_start, mode="eval", record_grads=True, generator=generator)
            # one more gradient at x^k: gives FOSC and the PGD-10 prediction in the same pass
            x_k = res.x_adv.requires_grad_(True)
            logits = model(x_k)
            loss = F.cross_entropy(upcast(logits), y, reduction="sum")
            (g_k,) = torch.autograd.grad(loss, x_k)
        counts += torch.stack([clean_correct, (logits.detach().argmax(1) == y).sum()])
        sums[0] += fosc_from_grad(x, x_k.detach(), g_k, a.eps).double().sum()
        if a.steps >= 2:
            sums[1] += sgcs(res.step_grads).double().sum()
        n += len(y)
    clean, robust = (int(v) for v in counts.cpu())
    fosc_sum = float(sums[0])
    sgcs_sum = float(sums[1]) if a.steps >= 2 else float("nan")
    return {"clean_acc": clean / n, "pgd_acc": robust / n, "fosc": fosc_sum / n, "sgcs": sgcs_sum / n}


# ----------------------------------------------------------------------------------------------
# The trainer
# ----------------------------------------------------------------------------------------------
@dataclass
class TrainState:
    epoch: int = 0  # completed epochs
    step: int = 0  # completed optimiser steps
    noise_left: int = 0  # batches still to be noised (Algorithm 1)
    best_pgd_acc: float = -1.0
    best_epoch: int = 0
    epoch_rows: list[dict[str, Any]] = field(default_factory=list)
    train_time_s: float = 0.0


class Trainer:
    def __init__(
        self,
        cfg: RunConfig,
        out_dir: str | Path,
        *,
        device: str | None = None,
        log: Callable[[str], None] = print,
        progress: bool | None = None,
        data: DataSplits | None = None,
        stop_after_epoch: int | None = None,
    ):
        self.cfg = cfg
        self.out = Path(out_dir)
        self.files = RunFiles(self.out, log=log)
        self.ckpt_dir = self.files.ckpt_dir
        self.device = resolve_device(device or cfg.device)
        self.log = log
        fallback = cpu_fallback_problem(device or cfg.device, self.device)
        if fallback is not None:
            message, fatal = fallback
            if fatal:
                raise DeviceUnavailable(message)
            log(message)
        self.progress = progress
        self._data = data
        self.stop_after_epoch = stop_after_epoch  # tests: simulate an interruption after this epoch
        self.lock: RunLock | None = None  # held while run() runs
        self._stop_signal: int | None = None

    # -- set-up --------------------------------------------------------------------------------
    def _setup(self) -> None:
        cfg, dev = self.cfg, self.device
        torch.manual_seed(cfg.seed)
        self.splits = self._data or load_splits(cfg)
        self.train_set = self.splits.train.to(dev)
        self.val_set = self.splits.val.to(dev)
        self.model = self._build_model().to(dev)
        # NHWC where the backend runs it correctly (core/memory_format.py: oneDNN crashes on tiny widths)
        self._channels_last = use_channels_last(self.model, dev, cfg.channels_last)
        if self._channels_last:
            self.model = self.model.to(memory_format=torch.channels_last)
        self.forward_model: nn.Module = (torch.compile(self.model, options=compile_options(self.model, dev))
                                         if cfg.compile else self.model)
        self.optimizer = torch.optim.SGD(
            self.model.parameters(), lr=cfg.lr, momentum=cfg.momentum,
            nesterov=optimizer_nesterov(cfg), weight_decay=cfg.weight_decay,
        )
        self._params = list(self.model.parameters())
        self.awp = (build_awp(cfg.awp.form, self.model, cfg.awp.gamma, cfg.awp.proxy_lr, self.forward_model)
                    if cfg.awp.enabled else None)
        # Data order and augmentation draw from a CPU generator (identical on CPU and GPU);
        # attack starts and the fix's noise from a generator on the device.
        self.gen_data = torch.Generator().manual_seed(cfg.seed)
        self.gen_dev = torch.Generator(device=dev).manual_seed(cfg.seed + 1)
        self.state = TrainState()
        self.batch_rows: list[dict[str, Any]] = []

    def _normalize(self):
        """The (mean, std) the model standardises its input with, or None (recorded in model_meta)."""
        return input_normalization(self.cfg.dataset, self.cfg.normalize_input)

    def _build_model(self) -> nn.Module:
        cfg = self.cfg
        return build_model(cfg.arch, num_classes=self.splits.num_classes, width=cfg.width, normalize=self._normalize())

    def _autocast(self) -> contextlib.AbstractContextManager:
        if self.cfg.precision == "bf16":
            return torch.autocast(self.device.type, dtype=torch.bfloat16)
        return contextlib.nullcontext()

    # -- checkpoints ---------------------------------------------------------------------------
    def _model_meta(self) -> dict[str, Any]:
        return {"arch": self.cfg.arch, "width": self.cfg.width, "num_classes": self.splits.num_classes,
                "image_size": self.splits.image_size, "convention": self.cfg.convention,
                "normalize": self._normalize()}

    def _model_payload(self, kind: str, val: dict[str, float]) -> dict[str, Any]:
        return {"model": self.model.state_dict(), "model_meta": self._model_meta(), "config": self.cfg.to_dict(),
                "epoch": self.state.epoch, "kind": kind, "val": val}

    def _save_last(self, val: dict[str, float]) -> None:
        s = self.state
        payload = self._model_payload("last", val)
        payload.update(
            optimizer=self.optimizer.state_dict(),
            train_state={"epoch": s.epoch, "step": s.step, "noise_left": s.noise_left,
                         "best_pgd_acc": s.best_pgd_acc, "best_epoch": s.best_epoch,
                         "train_time_s": s.train_time_s},
            epoch_rows=s.epoch_rows,
            batch_rows=self.batch_rows,  # the CSV is rebuilt from these: no hole if a crash follows
            rng={"data": self.gen_data.get_state(), "device": self.gen_dev.get_state(),
                 "torch": torch.get_rng_state(), "device_type": self.device.type},
        )
        if self.awp is not None:
            payload["awp_proxy_opt"] = self.awp.state_dict()
        save_checkpoint(self.ckpt_dir / "last.pt", payload)

    def _resume(self) -> None:
        path = self.ckpt_dir / "last.pt"
        if not path.exists():
            return
        ckpt = load_checkpoint(path)  # raises CheckpointError naming the file; never restart silently
        if ckpt.get("kind") != "last" or "train_state" not in ckpt:
            raise CheckpointError(f"checkpoint {path} holds no resumable training state")
        saved_cfg = dict(ckpt.get("config", {}))
        # a key added by a later version (e.g. deterministic) is, at its default, what the older run did
        defaults = RunConfig().to_dict()
        for k, v in self.cfg.to_dict().items():
            if k not in saved_cfg and v == defaults[k]:
                saved_cfg[k] = v
        if saved_cfg != self.cfg.to_dict():
            diff = sorted(k for k in set(saved_cfg) | set(self.cfg.to_dict())
                          if saved_cfg.get(k) != self.cfg.to_dict().get(k))
            raise CheckpointError(
                f"checkpoint {path} was written with a different config (keys differ: {', '.join(diff)}); "
                f"use a new output directory, or move {self.out} away to start over"
            )
        self.model.load_state_dict(ckpt["model"])
        self.optimizer.load_state_dict(ckpt["optimizer"])
        ts = ckpt["train_state"]
        self.state = TrainState(epoch=ts["epoch"], step=ts["step"], noise_left=ts["noise_left"],
                                best_pgd_acc=ts["best_pgd_acc"], best_epoch=ts["best_epoch"],
                                epoch_rows=list(ckpt["epoch_rows"]), train_time_s=ts["train_time_s"])
        self.gen_data.set_state(ckpt["rng"]["data"])
        self._restore_device_generator(path, ckpt["rng"])
        torch.set_rng_state(ckpt["rng"]["torch"])
        if self.awp is not None and "awp_proxy_opt" in ckpt:
            self.awp.load_state_dict(ckpt["awp_proxy_opt"])
        if "batch_rows" in ckpt:
            self.batch_rows = list(ckpt["batch_rows"])
        else:  # a resume state of an older version: the CSV must cover every epoch it does
            self.batch_rows = batch_rows_from_csv(self.files.batches_csv, self.state.epoch, self.cfg.log_batch_metrics)
        self.files.reconcile_logs(self.state.epoch_rows, self.batch_rows, self.state.epoch)
        self._restore_epoch_checkpoints(ckpt.get("val", {}))
        self.log(f"resumed from {path} at epoch {self.state.epoch} (step {self.state.step})")

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

    def _restore_epoch_checkpoints(self, val: dict[str, float]) -> None:
        """Write best.pt / the snapshot of the epoch saved in last.pt when a crash came before them:
        the model just loaded from last.pt is exactly that epoch's."""
        s = self.state
        best = self.ckpt_dir / "best.pt"
        if s.epoch and s.best_epoch == s.epoch and (not best.exists() or load_checkpoint(best).get("epoch") != s.epoch):
            save_checkpoint(best, self._model_payload("best", val))
            self.log(f"{best} lacked epoch {s.epoch} (the run stopped before writing it); "
                     f"rewritten from {self.files.last}")
        snap = self.ckpt_dir / f"epoch{s.epoch:03d}.pt"
        if s.epoch in self.cfg.snapshot_epochs and not snap.exists():
            save_checkpoint(snap, self._model_payload("snapshot", val))
            self.log(f"{snap} was missing (the run stopped before writing it); rewritten from {self.files.last}")

    def _write_logs(self) -> None:
        self.files.write_logs(self.state.epoch_rows, self.batch_rows)

    # -- signals -------------------------------------------------------------------------------
    @contextlib.contextmanager
    def _signals(self):
        def handler(signum, _frame):
            self._stop_signal = signum
        old = {}
        for sig in (signal.SIGTERM, signal.SIGINT):
            try:
                old[sig] = signal.signal(sig, handler)
            except ValueError:  # not the main thread (e.g. called from a worker): no handler
                pass
        try:
            yield
        finally:
            for sig, h in old.items():
                signal.signal(sig, h)

    def _should_stop(self) -> bool:
        return self._stop_signal is not None

    # -- one epoch -----------------------------------------------------------------------------
    # Hot-loop policy (README "Performance"): the dataset stays on the device and is
    # augmented there batch by batch; epoch statistics are accumulated in device tensors (no per-step
    # .item()/float(), so the host never waits for the accelerator); a non-finite loss or gradient is
    # detected every FINITE_CHECK_EVERY steps and at the end of the epoch (one host sync each), and the
    # first offending step is located from the per-step values. Nothing of an epoch is saved before that
    # check, so the run still stops with the epoch and step named and the previous epoch kept.
    FINITE_CHECK_EVERY = 25

    def _inner_max(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        cfg, a = self.cfg, self.cfg.attack
        if cfg.method == "trades":
            return tpgd(self.forward_model, x, eps=a.eps, step_size=a.step_size, steps=a.steps,
                        init_std=a.init_std, init_dist=a.init_dist, mode=a.bn_mode, generator=self.gen_dev).x_adv
        return pgd(self.forward_model, x, y, eps=a.eps, step_size=a.step_size, steps=a.steps,
                   random_start=True, mode=a.bn_mode, generator=self.gen_dev).x_adv

    def steps_per_epoch(self) -> int:
        n, bs = len(self.train_set), self.cfg.batch_size
        return n // bs if self.cfg.drop_last else math.ceil(n / bs)

    def _loss(self, x: torch.Tensor, x_adv: torch.Tensor, y: torch.Tensor):
        """The TRADES loss of this batch for a given model, forwards as the convention makes them."""
        cfg = self.cfg
        return lambda model: trades_parts(model, x, x_adv, y, cfg.beta, joint_forward=cfg.joint_forward,
                                          repeat_clean_forward=cfg.repeat_clean_forward)

    def _start_epoch(self, epoch: int) -> "_EpochStats":
        """Set the epoch's learning rate and return fresh (device-side) epoch statistics."""
        for group in self.optimizer.param_groups:
            group["lr"] = lr_at(self.cfg, epoch)
        awp_on = self.awp is not None and epoch > self.cfg.awp.warmup
        return _EpochStats(epoch, self.device, awp_on)

    def _epoch_batches(self):
        """One epoch of training batches: shuffled on the device, augmented on the device (random crop
        with zero padding + flip, per example), in channels_last when the model is."""
        cfg = self.cfg
        for x, y in iterate_batches(self.train_set, cfg.batch_size, shuffle=True, generator=self.gen_data,
                                    device=self.device, drop_last=cfg.drop_last):
            if cfg.augment:
                x = augment_batch(x, generator=self.gen_data)
            if self._channels_last:
                x = x.contiguous(memory_format=torch.channels_last)
            yield x, y

    def _train_step(self, stats: "_EpochStats", b: int, x: torch.Tensor, y: torch.Tensor) -> None:
        """One optimiser step on batch ``b`` of the epoch: TPGD (clean prediction computed once), then the
        TRADES loss with the forwards of the run's convention, optionally at AWP-perturbed weights."""
        cfg = self.cfg
        model, fmodel, params = self.model, self.forward_model, self._params
        epoch, awp_on = stats.epoch, stats.awp_on
        noised = cfg.fix.enabled and self.state.noise_left > 0
        if noised:  # Algorithm 1, line 8: img <- img + N(0, noise_std)
            x = x + cfg.fix.noise_std * torch.randn(x.shape, generator=self.gen_dev, device=x.device)
            self.state.noise_left -= 1
            stats.noised_batches += 1
        with self._autocast():
            x_adv = self._inner_max(x, y)
        loss_fn = self._loss(x, x_adv, y)
        if awp_on:
            with self._autocast():
                self.awp.perturb(loss_fn)
        model.train()
        with self._autocast(), (self.awp.loss_context() if awp_on else contextlib.nullcontext()):
            parts = loss_fn(fmodel)
        step = self.state.step + 1
        if cfg.log_batch_metrics:  # per-step rows need host values anyway: check at once
            if not torch.isfinite(parts.loss):
                raise Diverged(epoch, step, b, "loss")
            row: dict[str, Any] = {"epoch": epoch, "batch": b, "step": step,
                                   "loss": parts.loss.item(), "ce": parts.ce.item(), "kl": parts.kl.item(),
                                   "noised": noised}
            g_ce = torch.autograd.grad(parts.ce, params, retain_graph=True)
            g_kl = torch.autograd.grad(cfg.beta * parts.kl, params)
            g_full = [a + c for a, c in zip(g_ce, g_kl)]
            for p, g in zip(params, g_full):
                p.grad = g
            row.update(ce_norm=grad_norm(g_ce), kl_norm=grad_norm(g_kl))
            g_before = [p.grad.detach().clone() for p in params]
        else:
            self.optimizer.zero_grad(set_to_none=True)
            parts.loss.backward()
            g_before = [p.grad for p in params]
        w_norm = _grad_norm_tensor(g_before)
        if cfg.log_batch_metrics:
            row["w_grad_norm"] = float(w_norm)
            if not math.isfinite(row["w_grad_norm"]):
                raise Diverged(epoch, step, b, "gradient")
        if awp_on and self.awp.restore_before_step:  # ADR: step from w with the gradient taken at w + v
            self.awp.restore()
        self.optimizer.step()
        if awp_on and not self.awp.restore_before_step:  # official: step at w + v, then remove v
            self.awp.restore()
        if cfg.log_batch_metrics:
            row["grad_cosine_similarity"] = self._grad_after(x, x_adv, y, params, g_before)
        self.state.step = step
        stats.add(b, step, len(y), parts, y, w_norm)
        if cfg.log_batch_metrics:
            stats.cen += row["ce_norm"]
            stats.kln += row["kl_norm"]
            stats.cos += row["grad_cosine_similarity"]
            self.batch_rows.append(row)
        elif stats.pending >= self.FINITE_CHECK_EVERY:
            stats.check_finite()

    def _train_epoch(self, epoch: int) -> dict[str, Any]:
        cfg = self.cfg
        stats = self._start_epoch(epoch)
        n_batches = self.steps_per_epoch()
        bar = _progress(n_batches, f"epoch {epoch}/{cfg.epochs}", self.progress)
        for b, (x, y) in enumerate(self._epoch_batches()):
            if self._should_stop():
                raise Interrupted()
            self._train_step(stats, b, x, y)
            bar.update(1)
        bar.close()
        stats.check_finite()
        return stats.row(lr_at(cfg, epoch), cfg.log_batch_metrics)

    def _grad_after(self, x, x_adv, y, params, g_before) -> float:
        """Appendix G: cosine between the full-loss gradients on the same batch (same adversarial
        examples) before and after the optimiser step. BatchNorm running statistics are restored so
        the measurement does not change training."""
        bn_buffers = {k: v.clone() for k, v in self.model.named_buffers()}
        with self._autocast():
            parts = self._loss(x, x_adv, y)(self.forward_model)
        g_after = torch.autograd.grad(parts.loss, params)
        with torch.no_grad():
            for k, v in self.model.named_buffers():
                v.copy_(bn_buffers[k])
        return grad_cosine(g_before, g_after)

    # -- the run -------------------------------------------------------------------------------
    def run(self, on_diverge: str = "fail") -> dict[str, Any]:
        if on_diverge not in ("fail", "record"):
            raise ValueError("on_diverge must be 'fail' or 'record'")
        # the lock comes first: nothing in the folder is read or written by two processes, and an
        # unwritable --out fails here, before the data is loaded
        self.lock = RunLock(self.out, log=self.log)
        self.lock.acquire()
        try:
            self.files.remove_orphan_temporaries()
            self.files.refuse_results_without_state()
            self.lock.start_heartbeat()
            return self._run_locked(on_diverge)
        finally:
            self.lock.release()

    def _run_locked(self, on_diverge: str) -> dict[str, Any]:
        # backend flags (cudnn.benchmark, deterministic algorithms) hold for this run only
        with execution_mode(self.device, self.cfg.deterministic, self.log), \
                compile_watch(self.cfg.compile, self.log):
            return self._train_and_finish(on_diverge)

    def _train_and_finish(self, on_diverge: str) -> dict[str, Any]:
        self._setup()
        self._resume()
        cfg, s = self.cfg, self.state
        if s.epoch == 0:
            self._write_logs()
        self.log(f"training {cfg.method} beta={cfg.beta} on {cfg.dataset} ({len(self.train_set)} train / "
                 f"{len(self.val_set)} val) for {cfg.epochs} epochs, batch {cfg.batch_size}, device {self.device}, "
                 f"seed {cfg.seed}")
        t_run = time.perf_counter()
        diverged = None
        with self._signals():
            try:
                while s.epoch < cfg.epochs:
                    self._one_epoch(s.epoch + 1)
                    if self.stop_after_epoch is not None and s.epoch >= self.stop_after_epoch:
                        raise Interrupted()
            except Interrupted:
                what = signal.Signals(self._stop_signal).name if self._stop_signal else "stop request"
                self.log(f"{what}: stopping; epochs 1..{s.epoch} are saved in {self.ckpt_dir / 'last.pt'}; "
                         "rerun the same command to resume")
                raise
            except Diverged as e:
                self.log(f"ERROR: {e}")
                if on_diverge == "fail":
                    raise
                diverged = {"epoch": e.epoch, "step": e.step, "batch": e.batch, "message": str(e)}
        selection = "best_val_pgd_acc"
        if diverged and not (self.ckpt_dir / "best.pt").exists():
            # Diverged before any epoch was selected: keep the pipeline's contract (every finished run has a
            # best.pt) with the last good weights; run.json says diverged and aggregation leaves it out.
            selection = "diverged_last_good_state"
            self._save_last_good_as_best()
        elif not diverged and s.best_epoch == 0:
            # Algorithm 1 selects nothing when every epoch is over the FOSC threshold; evaluate the final
            # model then, and say so in run.json rather than leaving the run without a checkpoint.
            selection = "fallback_last_epoch"
            last_val = s.epoch_rows[-1]
            save_checkpoint(self.ckpt_dir / "best.pt", self._model_payload("best", {
                "clean_acc": last_val["val_clean_acc"], "pgd_acc": last_val["val_pgd_acc"],
                "fosc": last_val["val_fosc"], "sgcs": last_val["val_sgcs"]}))
            self.log("no epoch had validation FOSC under the threshold: best.pt is the final model")
        info = {
            "status": "diverged" if diverged else "complete",
            "best_selection": selection,
            "epochs_completed": s.epoch,
            "best_epoch": s.best_epoch or None,
            "best_val_pgd_acc": s.best_pgd_acc if s.best_epoch else None,
            "diverged": diverged,
            "seed": cfg.seed,
            "device": device_description(self.device),
            "versions": library_versions(),
            "timings": {
                "train_time_s": s.train_time_s,
                "mean_epoch_time_s": s.train_time_s / s.epoch if s.epoch else None,
                "this_invocation_s": time.perf_counter() - t_run,
            },
            "config": cfg.to_dict(),
        }
        write_json(self.out / "run.json", info)
        return info

    def _save_last_good_as_best(self) -> None:
        last = self.ckpt_dir / "last.pt"
        if last.exists():
            weights = load_checkpoint(last)["model"]
        else:  # diverged in epoch 1: the initial weights, rebuilt from the seed
            self.log("best.pt holds the initial weights (no epoch completed before the divergence)")
            torch.manual_seed(self.cfg.seed)
            weights = self._build_model().state_dict()
        self.model.load_state_dict(weights)
        save_checkpoint(self.ckpt_dir / "best.pt", self._model_payload("best", {}))

    def _one_epoch(self, epoch: int) -> None:
        cfg, s = self.cfg, self.state
        t0 = time.perf_counter()
        rows_before = len(self.batch_rows)
        try:
            row = self._train_epoch(epoch)
            # a CPU generator: the validation PGD starts are the same on CPU and GPU (attacks.start_noise)
            val_gen = torch.Generator().manual_seed(cfg.seed * 100_003 + epoch)
            val = validate(self.forward_model, self.val_set, cfg, self.device, val_gen, self._autocast,
                           self._should_stop, channels_last=self._channels_last)
        except (Interrupted, Diverged):
            del self.batch_rows[rows_before:]
            raise
        if not all(math.isfinite(v) for v in (val["fosc"], val["clean_acc"])):
            raise Diverged(epoch, s.step, -1, "validation output")
        over = val["fosc"] > cfg.fix.fosc_threshold
        # Algorithm 1: a checkpoint whose FOSC exceeds the threshold is never selected (only when the fix is on;
        # vanilla TRADES selects by PGD-10 accuracy alone, as in the paper's Unstable runs).
        eligible = not (cfg.fix.enabled and over)
        is_best = eligible and val["pgd_acc"] > s.best_pgd_acc
        if cfg.fix.enabled and over:
            s.noise_left = cfg.fix.noise_batches
        s.epoch = epoch
        if is_best:
            s.best_pgd_acc, s.best_epoch = val["pgd_acc"], epoch
        dt = time.perf_counter() - t0
        s.train_time_s += dt
        row.update(val_clean_acc=val["clean_acc"], val_pgd_acc=val["pgd_acc"], val_fosc=val["fosc"],
                   val_sgcs=val["sgcs"], fosc_over_threshold=over, is_best=is_best, epoch_time_s=dt)
        s.epoch_rows.append(row)
        # last.pt first: everything after it (CSVs, best.pt, snapshot) is derived from it and is redone
        # on resume if a crash interrupts this sequence (_restore_epoch_checkpoints, RunFiles.reconcile_logs)
        self._save_last(val)
        self._write_logs()
        if is_best:
            save_checkpoint(self.ckpt_dir / "best.pt", self._model_payload("best", val))
        if epoch in cfg.snapshot_epochs:
            save_checkpoint(self.ckpt_dir / f"epoch{epoch:03d}.pt", self._model_payload("snapshot", val))
        if self.lock is not None:
            self.lock.heartbeat()
            if self.lock.lost:  # another process writes this folder now: stop before mixing two runs
                raise RunLocked(f"{self.lock.lost}; stopping after epoch {epoch} (saved in {self.files.last})")
        self.log(
            f"epoch {epoch:3d}/{cfg.epochs} lr {row['lr']:.4g} loss {row['train_loss']:.4f} "
            f"(ce {row['train_ce']:.4f} kl {row['train_kl']:.4f}) train clean/adv {row['train_clean_acc']:.4f}/"
            f"{row['train_adv_acc']:.4f} | val clean {val['clean_acc']:.4f} pgd10 {val['pgd_acc']:.4f} "
            f"fosc {val['fosc']:.4f} sgcs {val['sgcs']:.4f}{' *best' if is_best else ''}"
            f"{' [noise ' + str(row['noise_batches']) + ']' if row['noise_batches'] else ''} | {dt:.1f}s"
        )


def _grad_norm_tensor(grads: list[torch.Tensor | None]) -> torch.Tensor:
    """:func:`metrics.grad_norm` (same float64 arithmetic, same bits) left on the device as a 0-d tensor."""
    sq = sum((g.double() ** 2).sum() for g in grads if g is not None)
    return torch.as_tensor(sq).sqrt()


class _EpochStats:
    """Training statistics of one epoch, accumulated on the device: one host sync per finiteness
    check and one at the end of the epoch, instead of several per step. The arithmetic is that of
    host-side accumulation of ``loss.item() * batch`` in float64, so the logged numbers are unchanged."""

    def __init__(self, epoch: int, device: torch.device, awp_on: bool):
        self.epoch, self.awp_on = epoch, awp_on
        f64 = dict(dtype=torch.float64, device=device)
        self.loss = torch.zeros((), **f64)
        self.ce = torch.zeros((), **f64)
        self.kl = torch.zeros((), **f64)
        self.w = torch.zeros((), **f64)
        self.correct = torch.zeros(2, dtype=torch.int64, device=device)  # clean, adversarial
        self.n = self.nb = self.noised_batches = 0
        self.cen = self.kln = self.cos = 0.0  # host floats (only with log_batch_metrics)
        self._pending: list[tuple[int, int, torch.Tensor, torch.Tensor]] = []  # (batch, step, loss, w_norm)

    @property
    def pending(self) -> int:
        return len(self._pending)

    def add(self, b: int, step: int, bs: int, parts, y: torch.Tensor, w_norm: torch.Tensor) -> None:
        loss = parts.loss.detach()
        self.loss += loss.double() * bs
        self.ce += parts.ce.detach().double() * bs
        self.kl += parts.kl.detach().double() * bs
        self.w += w_norm
        self.correct += torch.stack([(parts.logits_clean.detach().argmax(1) == y).sum(),
                                     (parts.logits_adv.detach().argmax(1) == y).sum()])
        self.n += bs
        self.nb += 1
        self._pending.append((b, step, loss, w_norm))

    def check_finite(self) -> None:
        """Raise :class:`Diverged` naming the first step since the last check whose loss (or, with a
        finite loss, gradient norm) is not finite."""
        if not self._pending:
            return
        pend, self._pending = self._pending, []
        values = torch.stack([torch.stack([lo.float(), w.float()]) for _, _, lo, w in pend])  # (k, 2)
        bad = (~torch.isfinite(values)).cpu()  # the one host sync
        if bool(bad.any()):
            i = int(bad.any(1).nonzero()[0])
            b, step = pend[i][0], pend[i][1]
            raise Diverged(self.epoch, step, b, "loss" if bool(bad[i, 0]) else "gradient")

    def row(self, lr: float, batch_metrics: bool) -> dict[str, Any]:
        n, nb, nan = self.n, self.nb, float("nan")
        clean_ok, adv_ok = (int(v) for v in self.correct.cpu())
        return {
            "epoch": self.epoch, "lr": lr,
            "train_loss": float(self.loss) / n, "train_ce": float(self.ce) / n, "train_kl": float(self.kl) / n,
            "train_clean_acc": clean_ok / n, "train_adv_acc": adv_ok / n,
            "w_grad_norm": float(self.w) / nb,
            "ce_norm": self.cen / nb if batch_metrics else nan,
            "kl_norm": self.kln / nb if batch_metrics else nan,
            "grad_cosine_similarity": self.cos / nb if batch_metrics else nan,
            "noise_batches": self.noised_batches,
        }


class _NoBar:
    def update(self, _n: int) -> None:
        pass

    def close(self) -> None:
        pass


def _progress(total: int, desc: str, enabled: bool | None):
    """A tqdm bar per epoch on a terminal (stderr); nothing in log files unless asked."""
    if enabled is False or (enabled is None and not sys.stderr.isatty()):
        return _NoBar()
    from tqdm import tqdm

    return tqdm(total=total, desc=desc, leave=False, dynamic_ncols=True)


def train(cfg: RunConfig, out_dir: str | Path, **kwargs) -> dict[str, Any]:
    """Train one run into ``out_dir`` (resuming if it holds a last.pt). Returns the run.json dict."""
    on_diverge = kwargs.pop("on_diverge", "fail")
    return Trainer(cfg, out_dir, **kwargs).run(on_diverge=on_diverge)
