"""``python -m trades_instability bench`` / ``trades-bench``: how fast is this project's TRADES, measured.

In ONE process, on the same device, model, batch size and data, this times

* **reference** - a TRADES training loop written the way the official TRADES code
  (github.com/yaodongyu/TRADES, ``trades.py`` and ``train_trades_cifar10.py``) does it: per-example
  augmentation in a ``torch.utils.data.DataLoader`` with torchvision ``RandomCrop(32, padding=4)`` +
  ``RandomHorizontalFlip()`` + ``ToTensor()`` on PIL images, ``model.eval()`` during the attack, the
  clean forward ``model(x_natural)`` recomputed inside the KL at every attack step, separate forward
  passes (the clean one twice in the final loss, as the official code does), fp32,
  ``nn.KLDivLoss(size_average=False)``: :mod:`trades_instability.tools.reference_trades`;
* **project** - this project's training step, i.e. :class:`trades_instability.train.loop.Trainer`'s own
  epoch iterator and per-batch step (``Trainer.epoch_batches`` / :class:`trades_instability.train.step.TradesStep`;
  nothing is re-implemented here): dataset on the device, batch augmentation on the device, channels_last on CUDA,
  TPGD with the clean prediction computed once, statistics kept on the device; in fp32 and bf16 autocast
  (and with ``torch.compile`` when ``--compile``);

and prints one table: images/s, ms/step, ratio to the reference, peak memory (CUDA), the measured
work per image (in forward-pass equivalents, from ``torch.utils.flop_counter.FlopCounterMode``) and the
fraction of the FLOP floor reached (:mod:`trades_instability.tools.flops`). The floor is 27 forward passes
per image per TRADES-10 step (10 attack steps x (forward + input-gradient backward) + 1 clean forward for
the attack target, then clean + adversarial forward and their backward = 2 x 3); its time is floor FLOPs /
the peak GEMM rate measured here on the same device and dtype. The forward FLOPs of the model are
measured, not assumed.

It then times PGD-10 validation (``train.validation.validate``, fp32 and bf16) and AutoAttack through
``trades_instability.evaluate.suite.evaluate_model`` (always fp32, as reported numbers are) on a fixed set
of examples. AutoAttack's time depends on how many examples stay robust (it only attacks points still
classified correctly), so its accuracy is printed next to its time. Without ``--checkpoint`` these run
on the bench's untrained model (few robust points: AutoAttack finishes early); with ``--checkpoint`` on
a trained one and its test set, followed by the fp32-vs-bf16 agreement table of
:mod:`trades_instability.tools.precision_check` (clean, PGD-10, Square, FOSC, SGCS).

Timing: ``--rounds`` rounds, each running every training variant for ``--steps`` steps in turn
(interleaved, so that a noisy shared machine affects all variants alike); the reported ms/step is the
median over rounds. On CUDA every timed interval ends with ``torch.cuda.synchronize()``. Numbers are
printed, never asserted.
"""

from __future__ import annotations

import argparse
import contextlib
import copy
import math
import shlex
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import nn

from trades_instability.core.memory_format import use_channels_last
from trades_instability.data.datasets import to_float
from trades_instability.runtime import device_description, execution_mode, resolve_device
from trades_instability.tools import precision_check
from trades_instability.tools.flops import (
    FLOOR_FWD_PER_IMAGE,
    counted_flops,
    forward_flops,
    peak_gemm_flops,
    precision_policy,
    sync,
)
from trades_instability.tools.reference_trades import ReferenceTrainer, official_loader

CIFAR_TRAIN_SIZE = 50_000


# ----------------------------------------------------------------------------------------------
# The project's path: the Trainer's own epoch iterator and step
# ----------------------------------------------------------------------------------------------
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



# ----------------------------------------------------------------------------------------------
# Command line
# ----------------------------------------------------------------------------------------------
def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="trades-bench",
        description="Time the official-style TRADES training loop against this project's training step "
                    "(fp32 and bf16), then PGD-10 validation and AutoAttack, in one process.",
    )
    p.add_argument("--tiny", action="store_true", help="seconds on a CPU (CI): width 4, batch 16, 16x16 images, "
                   "2 steps, 1 round, AutoAttack on 8 examples with a reduced budget")
    p.add_argument("--device", default="auto", help="auto (cuda if available), cpu, cuda, cuda:N")
    p.add_argument("--width", type=int, default=None, help="ResNet-18 width (paper: 64; tiny: 4)")
    p.add_argument("--batch-size", type=int, default=None, help="training batch size (default 256; tiny 16)")
    p.add_argument("--steps", type=int, default=None, help="timed steps per variant per round (default 20; tiny 2)")
    p.add_argument("--warmup", type=int, default=None, help="untimed steps per variant first (default 3; tiny 1)")
    p.add_argument("--rounds", type=int, default=None,
                   help="interleaved timing rounds; median reported (default 3; tiny 1)")
    p.add_argument("--dataset", choices=("synthetic", "cifar100"), default="synthetic",
                   help="synthetic CIFAR-shaped data from trades_instability.data.datasets (default) or CIFAR-100")
    p.add_argument("--data-root", default=None, help="where CIFAR-100 lives (with --dataset cifar100; default data); "
                   "with --checkpoint it also replaces the data_root stored in the checkpoint")
    p.add_argument("--num-classes", type=int, default=100, help="classes of the synthetic data (CIFAR-100: 100)")
    p.add_argument("--image-size", type=int, default=None, help="synthetic image size (default 32; tiny 16)")
    p.add_argument("--compile", action="store_true",
                   help="also time the project's step with torch.compile (RunConfig.compile); compile time is "
                        "spent in the warm-up steps, so give --warmup >= 2")
    p.add_argument("--compile-precision", choices=("all", "fp32", "bf16"), default="all",
                   help="with --compile: the precisions timed compiled (default all of the timed ones; gpu-check "
                        "times fp32 only, to spend the compile time once)")
    p.add_argument("--no-bf16", action="store_true", help="skip the project's bf16 rows")
    p.add_argument("--ref-workers", type=int, default=1, help="DataLoader workers of the reference (official: 1)")
    p.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: torch's)")
    p.add_argument("--no-eval", action="store_true", help="skip the PGD-10 / AutoAttack timings")
    p.add_argument("--eval-n", type=int, default=None, help="examples for PGD-10 and AutoAttack "
                   "(default: 1000 on CUDA, 32 on CPU, 8 tiny)")
    p.add_argument("--eval-batch-size", type=int, default=None,
                   help="PGD-10 validation batch (default 512) and AutoAttack batch (default: all --eval-n at once)")
    p.add_argument("--aa-budget", choices=("standard", "reduced"), default=None,
                   help="AutoAttack budget (default: standard on CUDA, reduced on CPU and tiny)")
    p.add_argument("--checkpoint", default=None, metavar="CKPT",
                   help="a trained checkpoint (trades-train's best.pt or last.pt): time PGD-10 and AutoAttack on "
                        "it and its own test set instead of on the untrained model, and print the fp32-vs-bf16 "
                        "agreement of clean, PGD-10, Square, FOSC and SGCS (precision_check)")
    p.add_argument("--json", metavar="OUT", default=None, help="write every number to this JSON file")
    p.add_argument("--seed", type=int, default=0)
    return p


def _resolve(args: argparse.Namespace, device: torch.device) -> argparse.Namespace:
    tiny = args.tiny
    cuda = device.type == "cuda"
    defaults = dict(width=4 if tiny else 64, batch_size=16 if tiny else 256, steps=2 if tiny else 20,
                    warmup=1 if tiny else 3, rounds=1 if tiny else 3, image_size=16 if tiny else 32,
                    eval_n=8 if tiny else (1000 if cuda else 32),
                    aa_budget="standard" if (cuda and not tiny) else "reduced")
    for k, v in defaults.items():
        if getattr(args, k) is None:
            setattr(args, k, v)
    for k in ("width", "batch_size", "steps", "rounds", "image_size", "eval_n", "num_classes"):
        if getattr(args, k) < 1:
            raise SystemExit(f"trades-bench: --{k.replace('_', '-')} must be >= 1")
    if args.warmup < 0:
        raise SystemExit("trades-bench: --warmup must be >= 0")
    if args.dataset == "cifar100":
        args.image_size, args.num_classes = 32, 100
    return args


def _run_config(args: argparse.Namespace, device: torch.device, precision: str, train_size: int):
    from trades_instability.config.run import from_dict

    return from_dict({
        "seed": args.seed, "dataset": args.dataset, "data_root": args.data_root or "data", "download": False,
        "synthetic": {"num_classes": args.num_classes, "train_size": train_size, "test_size": max(args.eval_n, 16),
                      "image_size": args.image_size, "seed": args.seed},
        "width": args.width, "batch_size": args.batch_size, "epochs": 1,
        "val_batch_size": args.eval_batch_size or 512,
        "precision": precision, "compile": False, "device": str(device),
    })


def _fmt(v: float | None, spec: str) -> str:
    return "-" if v is None or (isinstance(v, float) and math.isnan(v)) else format(v, spec)


def render_table(headers: list[str], rows: list[list[str]]) -> str:
    widths = [max(len(h), *(len(r[i]) for r in rows)) if rows else len(h) for i, h in enumerate(headers)]

    def line(cells: list[str]) -> str:
        return "| " + " | ".join(c.ljust(w) if i == 0 else c.rjust(w)
                                 for i, (c, w) in enumerate(zip(cells, widths, strict=True))) + " |"

    sep = "|" + "|".join("-" * (w + 2) for w in widths) + "|"
    return "\n".join([line(headers), sep, *(line(r) for r in rows)])


TRAIN_HEADERS = ["training path", "precision", "img/s", "ms/step", "x ref", "peak mem GiB",
                 "fwd-eq/img", "floor %", "50k-img epoch s"]
EVAL_HEADERS = ["evaluation", "precision", "examples", "batch", "seconds", "examples/s", "result"]


def main(argv: list[str] | None = None) -> int:
    with tempfile.TemporaryDirectory(prefix="trades-bench-") as tmp:
        return _main(argv, tmp)


class _InputError(Exception):
    """A problem with the bench's input (device, checkpoint, data): one line on stderr, exit status 2."""


def _main(argv: list[str] | None, tmp: str) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    args = build_parser().parse_args(argv)
    try:
        args, device, trained = _prepare(args)
        command = shlex.join(getattr(sys, "orig_argv", sys.argv))  # the process's exact command line
        out: dict[str, Any] = {"command": command, "bench_args": argv, "device": device_description(device),
                               "torch": torch.__version__}
        train_size = _train_size(args)
        cfg32 = _run_config(args, device, "fp32", train_size)
        splits = _load_splits(cfg32)
    except _InputError as e:
        print(f"trades-bench: {e}", file=sys.stderr)
        return 2

    # the backend flags of a training run (cudnn.benchmark on CUDA), restored after: the Trainer sets them in run()
    # only, and the bench steps it without run()
    with execution_mode(device, deterministic=False, log=print):
        fast32, variants = _build_variants(args, device, cfg32, splits, train_size, tmp)
        fwd = forward_flops(fast32.trainer.model, args.image_size, device, fast32.trainer.channels_last)
        _print_header(args, device, command, argv, cfg32, splits, fwd)
        n_gemm = 4096 if device.type == "cuda" else (256 if args.tiny else 1024)
        peaks = _measured_work(args, device, fast32, variants, fwd, n_gemm)
        _time_rounds(args, device, variants, peaks, n_gemm)
        train_json = _print_training(args, variants, peaks, n_gemm, fwd)
    out.update(args={k: v for k, v in vars(args).items()}, forward_gflops_per_image=fwd / 1e9,
               peak_gemm_tflops={("fp32" if d == torch.float32 else "bf16"): p / 1e12 for d, p in peaks.items()},
               train=train_json)
    if not args.no_eval:
        out.update(_print_evaluation(args, device, fast32, splits, trained))
    if args.json:
        from trades_instability.rundir.atomic_io import write_json

        write_json(args.json, out)
        print(f"\nwrote {args.json}")
    return 0


# ----------------------------------------------------------------------------------------------
# Setting up: device, checkpoint, data, the timed variants
# ----------------------------------------------------------------------------------------------
def _prepare(args: argparse.Namespace):
    """Threads, device and resolved defaults; the trained checkpoint (with its data) when --checkpoint is
    given. A bad checkpoint stops here, before any timing. Returns (args, device, trained or None)."""
    if args.threads:
        torch.set_num_threads(args.threads)
    try:
        device = resolve_device(args.device)
    except RuntimeError as e:
        raise _InputError(str(e)) from None
    args = _resolve(args, device)
    trained = None
    if args.checkpoint is not None and not args.no_eval:
        from trades_instability.evaluate.cli import CheckpointInputError, load_checkpoint_with_data

        try:
            trained = load_checkpoint_with_data(args.checkpoint, device, args.data_root)
        except CheckpointInputError as e:
            raise _InputError(str(e)) from None
    elif args.checkpoint is not None:
        raise _InputError("--checkpoint is only used by the evaluation timings; drop --no-eval or --checkpoint")
    return args, device, trained


def _train_size(args: argparse.Namespace) -> int:
    """Training images: enough for every step of the bench (at least 4 batches, at most 40), at most CIFAR's."""
    n_steps_total = args.warmup + args.steps * args.rounds + 1
    return min(args.batch_size * max(4, min(n_steps_total, 40)), CIFAR_TRAIN_SIZE)


def _load_splits(cfg32):
    """The data shared by every path."""
    from trades_instability.data.datasets import DatasetUnavailable, load_splits

    try:
        return load_splits(cfg32)
    except DatasetUnavailable as e:
        raise _InputError(str(e)) from None


def _build_variants(args: argparse.Namespace, device: torch.device, cfg32, splits, train_size: int, tmp: str):
    """The project's fp32 stepper and every timed variant: the reference first, then the project's step in
    fp32, bf16 (unless --no-bf16) and, with --compile, compiled. Returns (fast32, variants)."""
    from trades_instability.train.loop import Trainer

    def project(precision: str, compiled: bool = False) -> ProjectStepper:
        cfg = _run_config(args, device, precision, train_size)
        cfg.compile = compiled
        # the Trainer's run directory: nothing is written there when it is only stepped
        return ProjectStepper(Trainer(cfg, f"{tmp}/{precision}{'-compiled' if compiled else ''}", device=str(device),
                                      log=lambda m: None, progress=False, data=splits))

    fast32 = project("fp32")  # _main holds cudnn.benchmark on for CUDA, as in training (the reference gets it too)
    ref = _reference_trainer(args, device, cfg32, splits, fast32.trainer.model)
    variants = [Variant("reference (official TRADES loop)", "fp32", ref.step, args.batch_size),
                Variant("project (Trainer step)", "fp32", fast32.step, args.batch_size)]
    precisions = ["fp32"] if args.no_bf16 else ["fp32", "bf16"]
    for compiled in [False, True] if args.compile else [False]:
        for precision in precisions:
            if precision == "fp32" and not compiled:
                continue  # fast32, above
            if compiled and args.compile_precision not in ("all", precision):
                continue
            variants.append(Variant("project (Trainer step)" + (" +compile" if compiled else ""), precision,
                                    project(precision, compiled).step, args.batch_size,
                                    flop_dtype=torch.bfloat16 if precision == "bf16" else torch.float32))
    return fast32, variants


def _reference_trainer(args: argparse.Namespace, device: torch.device, cfg32, splits,
                       model: nn.Module) -> ReferenceTrainer:
    """The official loop on a copy of the project's initial model, with the same optimizer settings."""
    a = cfg32.attack
    torch.manual_seed(args.seed)
    ref_model = copy.deepcopy(model).to(memory_format=torch.contiguous_format)
    ref_opt = torch.optim.SGD(ref_model.parameters(), lr=cfg32.lr, momentum=cfg32.momentum,
                              nesterov=cfg32.nesterov, weight_decay=cfg32.weight_decay)
    loader = official_loader(splits.train.images, splits.train.labels, args.batch_size, device=device,
                             num_workers=args.ref_workers, seed=args.seed)
    return ReferenceTrainer(ref_model, ref_opt, loader, device, step_size=a.step_size, epsilon=a.eps,
                            num_steps=a.steps, beta=cfg32.beta)


def _print_header(args: argparse.Namespace, device: torch.device, command: str, argv: list[str], cfg32, splits,
                  fwd: float) -> None:
    a = cfg32.attack
    print("trades_instability bench")
    print(f"command: {command}")
    print(f"bench arguments: {shlex.join(argv) or '(none)'}")
    print(f"device: {device_description(device)}; torch {torch.__version__}")
    print(f"precision policy: {precision_policy(device)}")
    print(f"model: resnet18 width {args.width}, {splits.num_classes} classes, {args.image_size}x{args.image_size}; "
          f"batch {args.batch_size}; data {splits.name} ({len(splits.train)} train images); TRADES-{a.steps} "
          f"(eps {a.eps:.5f}, step {a.step_size:.5f}, beta {cfg32.beta}); reference DataLoader workers "
          f"{args.ref_workers}")
    print(f"forward FLOPs (FlopCounterMode, measured): {fwd / 1e9:.4f} GFLOP/image; FLOP floor "
          f"{FLOOR_FWD_PER_IMAGE} forwards/image/step = "
          f"{FLOOR_FWD_PER_IMAGE * fwd * args.batch_size / 1e9:.2f} GFLOP/step")
    sys.stdout.flush()


# ----------------------------------------------------------------------------------------------
# Training step timing
# ----------------------------------------------------------------------------------------------
def _measured_work(args: argparse.Namespace, device: torch.device, fast32: ProjectStepper, variants: list[Variant],
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


def _time_rounds(args: argparse.Namespace, device: torch.device, variants: list[Variant],
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


def _print_training(args: argparse.Namespace, variants: list[Variant], peaks: dict[torch.dtype, float],
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
        rows.append([v.name, v.precision, _fmt(rec["images_per_s"], ".1f"), _fmt(rec["ms_per_step"], ".1f"),
                     _fmt(rec["ratio_to_reference"], ".2f"), _fmt(rec["peak_mem_gib"], ".2f"),
                     _fmt(v.fwd_eq_per_image, ".1f"), _fmt(100 * rec["floor_fraction"], ".1f"),
                     _fmt(rec["epoch_50k_s"], ".1f")])
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


# ----------------------------------------------------------------------------------------------
# Evaluation timing and precision agreement
# ----------------------------------------------------------------------------------------------
def _print_evaluation(args: argparse.Namespace, device: torch.device, fast32: ProjectStepper, splits,
                      trained) -> dict[str, Any]:
    """The evaluation table and, with a trained checkpoint (and bf16), the precision agreement table;
    returns their JSON records ("eval", "precision_agreement")."""
    model, channels_last, test, num_classes, what = _eval_target(args, device, fast32, splits, trained)
    print()
    print(f"evaluation: {what}")
    eval_rows, eval_json = _bench_eval(args, device, model, channels_last, test, num_classes)
    print(render_table(EVAL_HEADERS, eval_rows))
    print("PGD-10 validation: train.validation.validate (what the trainer runs each epoch); AutoAttack: "
          "evaluation.evaluate_model, fp32 with TF32 off; its time depends on how many examples stay robust")
    out: dict[str, Any] = {"eval": eval_json}
    if trained is not None and not args.no_bf16:
        rows, agree_json = _precision_agreement(args, device, model, test, num_classes)
        print()
        print(render_table(precision_check.HEADERS, rows))
        print("fp32 and bf16 autocast on the same examples with the same attack seed (PGD-10 via "
              "evaluation.pgd_eval, Square via pyautoattack); 'fp32 seed+1' reruns fp32 with the next attack "
              "seed; SE: standard error of the fp32 number; 'changed ex.': examples whose flag differs; "
              "paired p: McNemar (accuracies) or paired z (FOSC, SGCS); same: unless p < 0.05 and "
              "|bf16 - fp32| >= SE/2")
        out["precision_agreement"] = agree_json
    return out


def _eval_target(args: argparse.Namespace, device: torch.device, fast32: ProjectStepper, splits, trained):
    """What the evaluation runs on: the bench's untrained model and test set, or the trained checkpoint and
    its own test set. Returns (model, channels_last, test, num_classes, description)."""
    channels_last = fast32.trainer.channels_last
    if trained is None:
        model, test, num_classes = fast32.trainer.model, splits.test, splits.num_classes
        what = "the untrained model (give --checkpoint for a trained one)"
    else:
        model, ckpt, tsplits = trained
        channels_last = use_channels_last(model, device, fast32.trainer.cfg.channels_last)
        if channels_last:
            model = model.to(memory_format=torch.channels_last)
        test, num_classes = tsplits.test, tsplits.num_classes
        what = (f"checkpoint {args.checkpoint} (epoch {ckpt.get('epoch')}, {ckpt['model_meta']}) on its "
                f"{tsplits.name} test set")
    return model, channels_last, test, num_classes, what


def _bench_eval(args, device: torch.device, model: nn.Module, channels_last: bool, test, num_classes: int):
    """PGD-10 validation (fp32, bf16) then AutoAttack (fp32) on the first eval-n test examples: table rows
    and JSON records."""
    from trades_instability.data.datasets import ImageSet

    n = min(args.eval_n, len(test))
    xs = test.images[:n]
    ys = test.labels[:n]
    val_set = ImageSet(xs, ys).to(device)
    rows, out = [], []
    for precision in ("fp32",) if args.no_bf16 else ("fp32", "bf16"):
        row, rec = _time_validation(args, device, model, channels_last, xs, ys, val_set, precision)
        rows.append(row)
        out.append(rec)
    row, rec = _time_autoattack(args, device, model, xs, ys, num_classes)
    rows.append(row)
    out.append(rec)
    return rows, out


def _time_validation(args, device: torch.device, model: nn.Module, channels_last: bool, xs: torch.Tensor,
                     ys: torch.Tensor, val_set, precision: str):
    """The trainer's PGD-10 validation (+FOSC, SGCS) in ``precision``, after a 2-example warm-up."""
    from trades_instability.data.datasets import ImageSet
    from trades_instability.train.validation import validate

    n = len(xs)
    cfg = _run_config(args, device, precision, 1)
    cfg.val_batch_size = args.eval_batch_size or 512
    ac = (lambda: torch.autocast(device.type, dtype=torch.bfloat16)) if precision == "bf16" else contextlib.nullcontext
    gen = torch.Generator().manual_seed(args.seed)  # as the trainer's validation: a CPU generator
    validate(model, ImageSet(xs[:2], ys[:2]).to(device), cfg, device, gen, ac, channels_last=channels_last)
    sync(device)
    t = time.perf_counter()
    gen = torch.Generator().manual_seed(args.seed)  # as the trainer's validation: a CPU generator
    val = validate(model, val_set, cfg, device, gen, ac, channels_last=channels_last)
    sync(device)
    dt = time.perf_counter() - t
    res = f"clean {val['clean_acc']:.3f} pgd10 {val['pgd_acc']:.3f} fosc {val['fosc']:.4f}"
    row = ["PGD-10 validation (+FOSC, SGCS)", precision, str(n), str(min(cfg.val_batch_size, n)),
           _fmt(dt, ".2f"), _fmt(n / dt, ".1f"), res]
    return row, {"what": "pgd10_validation", "precision": precision, "n": n, "seconds": dt, "examples_per_s": n / dt,
                 **val}


def _time_autoattack(args, device: torch.device, model: nn.Module, xs: torch.Tensor, ys: torch.Tensor,
                     num_classes: int):
    """AutoAttack through evaluation.evaluate_model (fp32), at the standard or the reduced budget."""
    from trades_instability.evaluate import suite as evaluation

    n = len(xs)
    standard = args.aa_budget == "standard"
    suite = evaluation.SuiteConfig(
        attacks=["autoattack"], n_examples=n, batch_size=args.eval_batch_size or n, seed=args.seed,
        aa_batch_size=None,  # a speed measurement: the largest batch that fits, not the reported suites' pin
        **({} if standard else {"apgd_iters": 5 if args.tiny else 20, "fab_iters": 5 if args.tiny else 20,
                                "n_target_classes": 3, "square_queries": 20 if args.tiny else 200}),
    )
    model_eval = copy.deepcopy(model).eval()
    t = time.perf_counter()
    res = evaluation.evaluate_model(model_eval, xs, ys, suite, device=device, num_classes=num_classes)
    sync(device)
    dt = time.perf_counter() - t
    budget = ("standard" if standard else
              f"reduced: apgd {suite.apgd_iters} it, fab {suite.fab_iters} it, {suite.n_target_classes} targets, "
              f"square {suite.square_queries} q")
    row = [f"AutoAttack ({res.get('autoattack_version')}; {budget})", "fp32", str(n), str(suite.batch_size),
           _fmt(dt, ".2f"), _fmt(n / dt, ".1f"),
           f"robust {_fmt(res.get('autoattack_acc'), '.3f')} ({res.get('status')})"]
    return row, {"what": "autoattack", "precision": "fp32", "n": n, "batch_size": suite.batch_size, "seconds": dt,
                 "examples_per_s": n / dt, "budget": budget, "autoattack_acc": res.get("autoattack_acc"),
                 "version": res.get("autoattack_version")}


def _precision_agreement(args, device: torch.device, model: nn.Module, test, num_classes: int):
    """fp32 vs bf16 autocast on the trained model: :func:`precision_check.compare` on the first eval-n
    test examples, Square at the bench's AutoAttack budget."""
    from trades_instability.evaluate import suite as evaluation

    n = min(args.eval_n, len(test))
    x = to_float(test.images[:n].to(device))
    y = test.labels[:n].to(device)
    standard = args.aa_budget == "standard"
    reduced = {} if standard else {"square_queries": 20 if args.tiny else 200}  # standard: SuiteConfig's default
    suite = evaluation.SuiteConfig(batch_size=args.eval_batch_size or 512, seed=args.seed, **reduced)
    print(f"precision agreement: {n} examples, PGD-{suite.pgd_steps}, Square {suite.square_queries} queries")
    sys.stdout.flush()
    rows = precision_check.compare(copy.deepcopy(model).eval(), x, y, suite, device=device, num_classes=num_classes)
    return precision_check.table_rows(rows), {"n": n, "square_queries": suite.square_queries,
                                              "rows": [r.to_dict() for r in rows]}


if __name__ == "__main__":
    sys.exit(main())
