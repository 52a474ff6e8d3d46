"""The bench's training-step timing (:mod:`trades_instability.tools.bench`): the RunConfig of every timed path,
the stepper that drives the trainer one step at a time, the measured work per step, interleaved timed rounds and
the training table."""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import torch

from trades_instability.tools.flops import FLOOR_FWD_PER_IMAGE, counted_flops, peak_gemm_flops, sync
from trades_instability.tools.text_table import fmt, render_table

CIFAR_TRAIN_SIZE = 50_000


class ProjectStepper:
    """Drives :class:`~trades_instability.train.loop.Trainer` one training step at a time, exactly as
    ``Trainer.train_epoch`` does (same batch iterator, same :class:`~trades_instability.train.step.TradesStep`,
    same epoch statistics)."""

    def __init__(self, trainer):
        self.trainer = trainer
        trainer.setup()
        self.epoch = 0
        self._new_epoch()

    def _new_epoch(self) -> None:
        self.epoch += 1
        self.stats = self.trainer.step.start_epoch(self.epoch)
        self._it = enumerate(self.trainer.epoch_batches())

    def step(self) -> None:
        try:
            b, (x, y) = next(self._it)
        except StopIteration:
            self.stats.check_finite()
            self._new_epoch()
            b, (x, y) = next(self._it)
        self.trainer.step(x, y, batch=b, state=self.trainer.state, stats=self.stats)



@dataclass
class Variant:
    name: str
    precision: str
    step: Callable[[], None]
    batch: int
    per_round_s: list[float] = field(default_factory=list)
    peak_mem: int | None = None
    fwd_eq_per_image: float | None = None
    flop_dtype: torch.dtype = torch.float32


def run_config(args: argparse.Namespace, device: torch.device, precision: str, train_size: int):
    from trades_instability.config.run import from_dict

    return from_dict({
        "seed": args.seed, "dataset": args.dataset, "data_root": args.data_root or "data", "download": False,
        "synthetic": {"num_classes": args.num_classes, "train_size": train_size, "test_size": max(args.eval_n, 16),
                      "image_size": args.image_size, "seed": args.seed},
        "width": args.width, "batch_size": args.batch_size, "epochs": 1,
        "val_batch_size": args.eval_batch_size or 512,
        "precision": precision, "compile": False, "device": str(device),
    })


TRAIN_HEADERS = ["training path", "precision", "img/s", "ms/step", "x ref", "peak mem GiB",
                 "fwd-eq/img", "floor %", "50k-img epoch s"]


def measured_work(args: argparse.Namespace, device: torch.device, fast32: ProjectStepper, variants: list[Variant],
                  fwd: float, n_gemm: int) -> dict[torch.dtype, float]:
    """The first peak GEMM rates, then the measured work per step: one counted step per path (it also warms
    up); sets each variant's ``fwd_eq_per_image``. Returns the peak rates by dtype."""
    peaks = {torch.float32: peak_gemm_flops(device, torch.float32, n=n_gemm)}
    if not args.no_bf16:
        peaks[torch.bfloat16] = peak_gemm_flops(device, torch.bfloat16, n=n_gemm)
    fm = fast32.trainer.forward_model
    fast32.trainer.forward_model = fast32.trainer.model  # count the eager ops (a compiled graph hides them)
    try:
        for v in variants[:2]:
            v.fwd_eq_per_image = counted_flops(v.step) / (fwd * v.batch)
    except Exception as e:  # counting is informative only; never fail the timing for it
        print(f"(FLOP counting failed: {type(e).__name__}: {e})")
    finally:
        fast32.trainer.forward_model = fm
    for v in variants[2:]:
        v.fwd_eq_per_image = variants[1].fwd_eq_per_image  # the same step (other dtype / compiled)
    return peaks


def time_rounds(args: argparse.Namespace, device: torch.device, variants: list[Variant],
                peaks: dict[torch.dtype, float], n_gemm: int) -> None:
    """Warm-up, then interleaved timed rounds: appends to each variant's ``per_round_s`` and keeps its peak
    memory (CUDA); the peak GEMM rates are measured again in every round and the highest kept."""
    for v in variants:
        for _ in range(args.warmup):
            v.step()
        sync(device)
    for _ in range(args.rounds):
        for d in peaks:
            peaks[d] = max(peaks[d], peak_gemm_flops(device, d, n=n_gemm, reps=3))
        for v in variants:
            if device.type == "cuda":
                torch.cuda.reset_peak_memory_stats(device)
            sync(device)
            t = time.perf_counter()
            for _ in range(args.steps):
                v.step()
            sync(device)
            v.per_round_s.append(time.perf_counter() - t)
            if device.type == "cuda":
                v.peak_mem = max(v.peak_mem or 0, torch.cuda.max_memory_allocated(device))


def print_training(args: argparse.Namespace, variants: list[Variant], peaks: dict[torch.dtype, float],
                   n_gemm: int, fwd: float) -> list[dict[str, Any]]:
    """The peak GEMM line and the training table (with the 50k-image epoch estimate); returns its records."""
    peak = ", ".join(f"{'fp32' if d == torch.float32 else 'bf16'} {v / 1e12:.3f} TFLOP/s" for d, v in peaks.items())
    print(f"peak GEMM (measured here, {n_gemm:d}^3, best over all rounds): {peak}")
    rows, train_json = [], []
    ref_ips = None
    for v in variants:
        rec = _training_record(args, v, peaks, fwd, ref_ips)
        ref_ips = ref_ips or rec["images_per_s"]
        train_json.append(rec)
        rows.append([v.name, v.precision, fmt(rec["images_per_s"], ".1f"), fmt(rec["ms_per_step"], ".1f"),
                     fmt(rec["ratio_to_reference"], ".2f"), fmt(rec["peak_mem_gib"], ".2f"),
                     fmt(v.fwd_eq_per_image, ".1f"), fmt(100 * rec["floor_fraction"], ".1f"),
                     fmt(rec["epoch_50k_s"], ".1f")])
    print()
    print(f"training: {args.steps} timed steps x {args.rounds} interleaved rounds (median), {args.warmup} warm-up "
          "steps")
    print(render_table(TRAIN_HEADERS, rows))
    print("fwd-eq/img: conv+matmul FLOPs of one step (FlopCounterMode) / (batch x forward FLOPs); "
          f"floor %: time of {FLOOR_FWD_PER_IMAGE} forwards/image at the measured peak GEMM rate / step time; "
          "50k-img epoch s: CIFAR-size epoch at this rate")
    sys.stdout.flush()
    return train_json


def _training_record(args: argparse.Namespace, v: Variant, peaks: dict[torch.dtype, float], fwd: float,
                     ref_ips: float | None) -> dict[str, Any]:
    """One variant's numbers: median step time, images/s, ratio to the reference (``ref_ips``; None for the
    reference itself), floor fraction and the CIFAR-size (50k images) epoch estimate."""
    step_s = statistics.median(v.per_round_s) / args.steps
    ips = v.batch / step_s
    ref_ips = ref_ips or ips
    floor_s = FLOOR_FWD_PER_IMAGE * fwd * v.batch / peaks[v.flop_dtype]
    return {"path": v.name, "precision": v.precision, "images_per_s": ips, "ms_per_step": step_s * 1e3,
            "ratio_to_reference": ips / ref_ips, "peak_mem_gib": v.peak_mem / 2**30 if v.peak_mem else None,
            "fwd_equivalents_per_image": v.fwd_eq_per_image, "floor_fraction": floor_s / step_s,
            "epoch_50k_s": CIFAR_TRAIN_SIZE / ips, "round_seconds": v.per_round_s}
