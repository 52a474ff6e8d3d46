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

This module is the command and its set-up (the timed paths); the training timing is in
:mod:`~trades_instability.tools.bench_training`, the evaluation timing in :mod:`~trades_instability.tools.bench_eval`.
"""

from __future__ import annotations

import argparse
import copy
import shlex
import sys
import tempfile
from typing import Any

import torch
from torch import nn

from trades_instability.runtime import device_description, execution_mode, resolve_device
from trades_instability.tools.bench_eval import print_evaluation
from trades_instability.tools.bench_training import (
    CIFAR_TRAIN_SIZE,
    ProjectStepper,
    Variant,
    measured_work,
    print_training,
    run_config,
    time_rounds,
)
from trades_instability.tools.flops import FLOOR_FWD_PER_IMAGE, forward_flops, precision_policy
from trades_instability.tools.reference_trades import ReferenceTrainer, official_loader


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
                   help="synthetic CIFAR-shaped data from trades_instability.data.synthetic (default) or CIFAR-100")
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
        cfg32 = run_config(args, device, "fp32", train_size)
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
        peaks = measured_work(args, device, fast32, variants, fwd, n_gemm)
        time_rounds(args, device, variants, peaks, n_gemm)
        train_json = print_training(args, variants, peaks, n_gemm, fwd)
    out.update(args={k: v for k, v in vars(args).items()}, forward_gflops_per_image=fwd / 1e9,
               peak_gemm_tflops={("fp32" if d == torch.float32 else "bf16"): p / 1e12 for d, p in peaks.items()},
               train=train_json)
    if not args.no_eval:
        out.update(print_evaluation(args, device, fast32, splits, trained))
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
    from trades_instability.data.datasets import DatasetUnavailable
    from trades_instability.data.splits import load_splits

    try:
        return load_splits(cfg32)
    except DatasetUnavailable as e:
        raise _InputError(str(e)) from None


def _build_variants(args: argparse.Namespace, device: torch.device, cfg32, splits, train_size: int, tmp: str):
    """The project's fp32 stepper and every timed variant: the reference first, then the project's step in
    fp32, bf16 (unless --no-bf16) and, with --compile, compiled. Returns (fast32, variants)."""
    from trades_instability.train.loop import Trainer

    def project(precision: str, compiled: bool = False) -> ProjectStepper:
        cfg = run_config(args, device, precision, train_size)
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


if __name__ == "__main__":
    sys.exit(main())
