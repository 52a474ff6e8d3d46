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
import socket
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
from torch import nn

from trades_instability.config.run import SEED_SOURCES, RunConfig
from trades_instability.core import masking
from trades_instability.core.awp import build_awp
from trades_instability.core.memory_format import compile_options, use_channels_last
from trades_instability.core.metrics import GRADALIGN_STREAM
from trades_instability.core.models import build_model, input_normalization
from trades_instability.data.augment import augment_batch
from trades_instability.data.datasets import DataSplits, iterate_batches
from trades_instability.data.splits import load_splits
from trades_instability.rundir import layout
from trades_instability.rundir.atomic_io import write_json
from trades_instability.rundir.checkpoint import load_checkpoint
from trades_instability.rundir.lock import RunLock, RunLocked
from trades_instability.rundir.records import RunFiles
from trades_instability.rundir.state import finished_result
from trades_instability.runtime import (
    DeviceUnavailable,
    compile_watch,
    cpu_fallback_problem,
    device_description,
    execution_mode,
    library_versions,
    resolve_device,
)
from trades_instability.train import algorithm1
from trades_instability.train.checkpointing import Checkpoints, TrainState, model_meta
from trades_instability.train.errors import Diverged, Interrupted
from trades_instability.train.step import EpochStats, TradesStep, build_optimizer, lr_at, precision_autocast
from trades_instability.train.tensorboard_log import NoBoard, open_board
from trades_instability.train.validation import validate


class StopSignals:
    """SIGTERM/SIGINT during training, remembered so that the run stops at the next batch boundary.

    Inside ``with stop_signals:``, SIGTERM and SIGINT set :attr:`received` instead of killing the
    process; the previous handlers come back on the way out."""

    def __init__(self) -> None:
        self.received: int | None = None  # the signal number, once one arrived

    def requested(self) -> bool:
        return self.received is not None

    def name(self) -> str:
        return signal.Signals(self.received).name if self.received else "stop request"

    @contextlib.contextmanager
    def installed(self):
        def handler(signum, _frame):
            self.received = signum
        old = {}
        for sig in (signal.SIGTERM, signal.SIGINT):
            try:
                old[sig] = signal.signal(sig, handler)
            except ValueError:  # not the main thread (e.g. called from a worker): no handler
                pass
        try:
            yield self
        finally:
            for sig, h in old.items():
                signal.signal(sig, h)


class Trainer:
    """One run into ``out_dir``: :meth:`run` sets up, resumes, trains epoch by epoch (a
    :class:`~.step.TradesStep` per batch, then :func:`~.validation.validate`), selects the checkpoint as
    Algorithm 1 does and writes run.json. :meth:`setup` alone builds the pieces without training."""

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
        wait_for_holder: bool = False,
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
        self.wait_for_holder = wait_for_holder  # a live holder of the lock: wait for it (rundir/lock.py), not refuse
        self.lock: RunLock | None = None  # held while run() runs
        self.signals = StopSignals()
        self.board = NoBoard()  # TensorBoard event files (train/tensorboard_log.py), opened at the resumed state

    # -- set-up --------------------------------------------------------------------------------
    def setup(self) -> None:
        """Data on the device, model, optimiser, AWP, generators, a fresh state; the step and the
        checkpoints built on them. Nothing is written."""
        cfg, dev = self.cfg, self.device
        seeds = cfg.seeds()  # config/run.py SEED_SOURCES: which generator each source drives
        torch.manual_seed(seeds["init"])
        self.splits = self._data or load_splits(cfg)
        self.train_set = self.splits.train.to(dev)
        self.val_set = self.splits.val.to(dev)
        self.model = self.build_model().to(dev)
        # NHWC where the backend runs it correctly (core/memory_format.py: oneDNN crashes on tiny widths)
        self.channels_last = use_channels_last(self.model, dev, cfg.channels_last)
        if self.channels_last:
            self.model = self.model.to(memory_format=torch.channels_last)
        self.forward_model: nn.Module = (torch.compile(self.model, options=compile_options(self.model, dev))
                                         if cfg.compile else self.model)
        # a planted run (a positive control, core/masking.py): every forward goes through the masking wrapper;
        # self.model (the weights, the state dict) is untouched
        self.forward_model = masking.plant(self.forward_model, cfg.plant_masking, cfg.seed)
        self.optimizer = build_optimizer(cfg, self.model)
        self.awp = (build_awp(cfg.awp.form, self.model, cfg.awp.gamma, cfg.awp.proxy_lr, self.forward_model)
                    if cfg.awp.enabled else None)
        # Data order and augmentation draw from a CPU generator (identical on CPU and GPU);
        # attack starts and the fix's noise from a generator on the device.
        self.gen_data = torch.Generator().manual_seed(seeds["data"])
        self.gen_dev = torch.Generator(device=dev).manual_seed(seeds["attack"] + 1)
        self.state = TrainState(noise_left=algorithm1.initial_noise_budget(cfg.fix))
        self.batch_rows: list[dict[str, Any]] = []
        self.step = TradesStep(cfg, self.model, self.optimizer, self.gen_dev, forward_model=self.forward_model,
                               awp=self.awp, autocast=self.autocast)
        self.checkpoints = Checkpoints(self.files, cfg, model_meta(cfg, self.splits), model=self.model,
                                       optimizer=self.optimizer, awp=self.awp, gen_data=self.gen_data,
                                       gen_dev=self.gen_dev, device=dev, log=self.log)

    def build_model(self) -> nn.Module:
        cfg = self.cfg
        return build_model(cfg.arch, num_classes=self.splits.num_classes, width=cfg.width,
                           normalize=input_normalization(cfg.dataset, cfg.normalize_input))

    def autocast(self):
        """The run's autocast context (bf16 autocast, or none)."""
        return precision_autocast(self.cfg.precision, self.device)()

    # -- one epoch -----------------------------------------------------------------------------
    def steps_per_epoch(self) -> int:
        n, bs = len(self.train_set), self.cfg.batch_size
        return n // bs if self.cfg.drop_last else math.ceil(n / bs)

    def epoch_batches(self):
        """One epoch of training batches: shuffled on the device, augmented on the device (random crop
        with zero padding + flip, per example), in channels_last when the model is."""
        cfg = self.cfg
        for x, y in iterate_batches(self.train_set, cfg.batch_size, shuffle=True, generator=self.gen_data,
                                    device=self.device, drop_last=cfg.drop_last):
            if cfg.augment:
                x = augment_batch(x, generator=self.gen_data)
            if self.channels_last:
                x = x.contiguous(memory_format=torch.channels_last)
            yield x, y

    def train_epoch(self, epoch: int) -> dict[str, Any]:
        """Train one epoch; its row of epochs.csv (training columns)."""
        cfg = self.cfg
        stats: EpochStats = self.step.start_epoch(epoch)
        bar = _progress(self.steps_per_epoch(), f"epoch {epoch}/{cfg.epochs}", self.progress)
        for b, (x, y) in enumerate(self.epoch_batches()):
            if self.signals.requested():
                raise Interrupted()
            row = self.step(x, y, batch=b, state=self.state, stats=stats)
            if row is not None:
                self.batch_rows.append(row)
            bar.update(1)
        bar.close()
        stats.check_finite()
        return stats.row(lr_at(cfg, epoch), cfg.log_batch_metrics)

    # -- the run -------------------------------------------------------------------------------
    def run(self, on_diverge: str = "fail") -> dict[str, Any]:
        if on_diverge not in ("fail", "record"):
            raise ValueError("on_diverge must be 'fail' or 'record'")
        # the lock comes first: nothing in the folder is read or written by two processes, and an
        # unwritable --out fails here, before the data is loaded
        self.lock = RunLock(self.out, log=self.log)
        self.lock.acquire(wait=self.wait_for_holder)
        try:
            self.files.remove_orphan_temporaries()
            done = finished_result(self.out, self.cfg.to_dict())
            if done is not None and (done["status"] == "complete" or on_diverge == "record"):
                # e.g. finished by a job a killed Snakemake left running: never redone
                self.log(f"{self.out / layout.RUN_JSON} records this run as finished ({done['status']}): "
                         "adopting it as it is")
                return done
            self.files.refuse_results_without_state()
            self.lock.start_heartbeat()
            # backend flags (cudnn.benchmark, deterministic algorithms) hold for this run only
            with execution_mode(self.device, self.cfg.deterministic, self.log), \
                    compile_watch(self.cfg.compile, self.log):
                return self._train_and_finish(on_diverge)
        finally:
            self.lock.release()

    def _train_and_finish(self, on_diverge: str) -> dict[str, Any]:
        self.setup()
        resumed = self.checkpoints.resume()
        if resumed is not None:
            self.state, self.batch_rows = resumed
        cfg, s = self.cfg, self.state
        if s.epoch == 0:
            self._write_logs()
        self.log(f"training {cfg.method} beta={cfg.beta} on {cfg.dataset} ({len(self.train_set)} train / "
                 f"{len(self.val_set)} val) for {cfg.epochs} epochs, batch {cfg.batch_size}, device {self.device}, "
                 f"seed {cfg.seed} (init/data/attack {'/'.join(str(v) for v in cfg.seeds().values())})")
        t_run = time.perf_counter()
        diverged = None
        self.board = open_board(cfg, self.out, s, self.batch_rows)
        with self.signals.installed():
            try:
                while s.epoch < cfg.epochs:
                    self._one_epoch(s.epoch + 1)
                    if self.stop_after_epoch is not None and s.epoch >= self.stop_after_epoch:
                        raise Interrupted()
            except Interrupted:
                self.log(f"{self.signals.name()}: stopping; epochs 1..{s.epoch} are saved in "
                         f"{self.ckpt_dir / 'last.pt'}; rerun the same command to resume")
                raise
            except Diverged as e:
                self.log(f"ERROR: {e}")
                if on_diverge == "fail":
                    raise
                diverged = {"epoch": e.epoch, "step": e.step, "batch": e.batch, "message": str(e)}
            finally:
                self.board.close()
        selection = self._final_selection(diverged)
        info = {
            "status": "diverged" if diverged else "complete",
            "best_selection": selection,
            "epochs_completed": s.epoch,
            "best_epoch": s.best_epoch or None,
            "best_val_pgd_acc": s.best_pgd_acc if s.best_epoch else None,
            "diverged": diverged,
            "seed": cfg.seed,
            "seed_sources": {k: {"seed": v, "drives": SEED_SOURCES[k]} for k, v in cfg.seeds().items()},
            "device": device_description(self.device),
            "host": socket.gethostname(),  # with device: where the run trained (the status command shows both)
            "versions": library_versions(),
            "timings": {
                "train_time_s": s.train_time_s,
                "mean_epoch_time_s": s.train_time_s / s.epoch if s.epoch else None,
                "this_invocation_s": time.perf_counter() - t_run,
            },
            "config": cfg.to_dict(),
        }
        write_json(self.out / layout.RUN_JSON, info)
        return info

    def _one_epoch(self, epoch: int) -> None:
        """Train and validate one epoch, apply Algorithm 1 (selection, noise budget), save and log it."""
        cfg, s = self.cfg, self.state
        t0 = time.perf_counter()
        rows_before = len(self.batch_rows)
        masking.set_epoch(self.forward_model, epoch)  # a planted window: masking on in its epochs only
        try:
            row = self.train_epoch(epoch)
            # a CPU generator: the validation PGD starts are the same on CPU and GPU (attacks.start_noise)
            val_seed = cfg.seeds()["attack"] * 100_003 + epoch
            val = validate(self.forward_model, self.val_set, cfg, self.device, torch.Generator().manual_seed(val_seed),
                           self.autocast, self.signals.requested, channels_last=self.channels_last,
                           gradalign_generator=torch.Generator().manual_seed(val_seed + GRADALIGN_STREAM))
        except (Interrupted, Diverged):
            del self.batch_rows[rows_before:]
            raise
        if not all(math.isfinite(v) for v in (val["fosc"], val["clean_acc"])):
            raise Diverged(epoch, s.step, -1, "validation output")
        over, is_best, s.noise_left = algorithm1.decide(cfg.fix, fosc=val["fosc"], pgd_acc=val["pgd_acc"],
                                                        best_pgd_acc=s.best_pgd_acc, noise_left=s.noise_left)
        s.epoch = epoch
        if is_best:
            s.best_pgd_acc, s.best_epoch = val["pgd_acc"], epoch
        dt = time.perf_counter() - t0
        s.train_time_s += dt
        row.update(val_clean_acc=val["clean_acc"], val_pgd_acc=val["pgd_acc"], val_fosc=val["fosc"],
                   val_sgcs=val["sgcs"], val_gradalign=val["gradalign"], fosc_over_threshold=over, is_best=is_best,
                   epoch_time_s=dt)
        s.epoch_rows.append(row)
        self.board.epoch(row, self.batch_rows[rows_before:])  # before last.pt: a resume purges what it lacks
        # last.pt first: everything after it (CSVs, best.pt, snapshot) is derived from it and is redone
        # on resume if a crash interrupts this sequence (Checkpoints.resume, RunFiles.reconcile_logs)
        self.checkpoints.save_last(s, self.batch_rows, val)
        self._write_logs()
        if is_best:
            self.checkpoints.save_best(epoch, val)
        if epoch in cfg.snapshot_epochs:
            self.checkpoints.save_snapshot(epoch, val)
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

    def _final_selection(self, diverged: dict[str, Any] | None) -> str:
        """Make sure best.pt exists and say how it was chosen (run.json's ``best_selection``)."""
        s = self.state
        if diverged and not (self.ckpt_dir / layout.BEST).exists():
            # Diverged before any epoch was selected: keep the pipeline's contract (every finished run has a
            # best.pt) with the last good weights; run.json says diverged and aggregation leaves it out.
            self._save_last_good_as_best()
            return "diverged_last_good_state"
        if not diverged and s.best_epoch == 0:
            # Algorithm 1 selects nothing when every epoch is over the FOSC threshold; evaluate the final
            # model then, and say so in run.json rather than leaving the run without a checkpoint.
            last_val = s.epoch_rows[-1]
            self.checkpoints.save_best(s.epoch, {
                "clean_acc": last_val["val_clean_acc"], "pgd_acc": last_val["val_pgd_acc"],
                "fosc": last_val["val_fosc"], "sgcs": last_val["val_sgcs"], "gradalign": last_val["val_gradalign"]})
            self.log("no epoch had validation FOSC under the threshold: best.pt is the final model")
            return "fallback_last_epoch"
        return "best_val_pgd_acc"

    def _save_last_good_as_best(self) -> None:
        last = self.ckpt_dir / layout.LAST
        if last.exists():
            weights = load_checkpoint(last)["model"]
        else:  # diverged in epoch 1: the initial weights, rebuilt from the seed
            self.log("best.pt holds the initial weights (no epoch completed before the divergence)")
            torch.manual_seed(self.cfg.seeds()["init"])
            weights = self.build_model().state_dict()
        self.model.load_state_dict(weights)
        self.checkpoints.save_best(self.state.epoch, {})

    def _write_logs(self) -> None:
        self.files.write_logs(self.state.epoch_rows, self.batch_rows)


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
