"""``python -m trades_instability bench`` / ``trades-bench``: how fast is this project's TRADES, measured.

In ONE process, on the same device, model, batch size and data, this times

* **reference** - a TRADES training loop written the way the official TRADES code
  (github.com/yaodongyu/TRADES, ``trades.py`` and ``train_trades_cifar10.py``) does it: per-example
  augmentation in a ``torch.utils.data.DataLoader`` with torchvision ``RandomCrop(32, padding=4)`` +
  ``RandomHorizontalFlip()`` + ``ToTensor()`` on PIL images, ``model.eval()`` during the attack, the
  clean forward ``model(x_natural)`` recomputed inside the KL at every attack step, separate forward
  passes (the clean one twice in the final loss, as the official code does), fp32,
  ``nn.KLDivLoss(size_average=False)``: :func:`official_trades_loss`;
* **project** - this project's training step, i.e. :class:`trades_instability.train.loop.Trainer`'s own
  epoch iterator and per-batch step (``Trainer.epoch_batches`` / :class:`trades_instability.train.step.TradesStep`;
  nothing is re-implemented here): dataset on the device, batch augmentation on the device, channels_last on CUDA,
  TPGD with the clean prediction computed once, statistics kept on the device; in fp32 and bf16 autocast
  (and with ``torch.compile`` when ``--compile``);

and prints one table: images/s, ms/step, ratio to the reference, peak memory (CUDA), the measured
work per image (in forward-pass equivalents, from ``torch.utils.flop_counter.FlopCounterMode``) and the
fraction of the FLOP floor reached. The floor is 27 forward passes per image per TRADES-10 step
(10 attack steps x (forward + input-gradient backward) + 1 clean forward for the attack target, then
clean + adversarial forward and their backward = 2 x 3); its time is floor FLOPs / the peak GEMM rate
measured here on the same device and dtype. The forward FLOPs of the model are measured, not assumed.

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
import warnings
from dataclasses import dataclass, field
from typing import Any, Callable

import torch
import torch.nn.functional as F
from torch import nn

from trades_instability.tools import precision_check
from trades_instability.data.datasets import to_float
from trades_instability.core.memory_format import use_channels_last
from trades_instability.runtime import device_description, resolve_device

FLOOR_FWD_PER_IMAGE = 27  # forward-pass equivalents per image of an efficient TRADES-10 step
CIFAR_TRAIN_SIZE = 50_000


# ----------------------------------------------------------------------------------------------
# The reference: official TRADES, written as its trades.py does it
# ----------------------------------------------------------------------------------------------
def official_trades_loss(
    model: nn.Module,
    x_natural: torch.Tensor,
    y: torch.Tensor,
    optimizer: torch.optim.Optimizer,
    step_size: float = 0.003,
    epsilon: float = 0.031,
    perturb_steps: int = 10,
    beta: float = 1.0,
    distance: str = "l_inf",
    generator: torch.Generator | None = None,
) -> torch.Tensor:
    """``trades_loss`` of the official TRADES code (trades.py), L-inf branch, line by line.

    Differences, none of which changes the work done: ``.cuda()`` is ``.to(x_natural.device)`` so that
    it runs on any device; ``Variable(..., requires_grad=False)`` is a plain tensor; and when a
    ``generator`` is given the start noise is drawn from it on the device (tests use this to give the
    reference and the project the same random start; the official code draws it on the CPU)."""
    if distance != "l_inf":
        raise NotImplementedError("only the l_inf branch of the official trades_loss is reproduced")
    # define KL-loss
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # size_average is deprecated (it means reduction='sum')
        criterion_kl = nn.KLDivLoss(size_average=False)
    model.eval()
    batch_size = len(x_natural)
    # generate adversarial example
    if generator is None:
        noise = torch.randn(x_natural.shape).to(x_natural.device).detach()
    else:
        noise = torch.randn(x_natural.shape, generator=generator, device=x_natural.device,
                            dtype=x_natural.dtype).detach()
    x_adv = x_natural.detach() + 0.001 * noise
    for _ in range(perturb_steps):
        x_adv.requires_grad_()
        with torch.enable_grad():
            loss_kl = criterion_kl(F.log_softmax(model(x_adv), dim=1),
                                   F.softmax(model(x_natural), dim=1))
        grad = torch.autograd.grad(loss_kl, [x_adv])[0]
        x_adv = x_adv.detach() + step_size * torch.sign(grad.detach())
        x_adv = torch.min(torch.max(x_adv, x_natural - epsilon), x_natural + epsilon)
        x_adv = torch.clamp(x_adv, 0.0, 1.0)
    model.train()
    x_adv = torch.clamp(x_adv, 0.0, 1.0).detach()  # Variable(..., requires_grad=False)
    # zero gradient
    optimizer.zero_grad()
    # calculate robust loss
    logits = model(x_natural)
    loss_natural = F.cross_entropy(logits, y)
    loss_robust = (1.0 / batch_size) * criterion_kl(F.log_softmax(model(x_adv), dim=1),
                                                    F.softmax(model(x_natural), dim=1))
    loss = loss_natural + beta * loss_robust
    return loss


class PILImageDataset(torch.utils.data.Dataset):
    """A torchvision-style dataset (like ``torchvision.datasets.CIFAR100``): uint8 HWC images kept as a
    numpy array, each turned into a PIL image and transformed per example in ``__getitem__``."""

    def __init__(self, images_nchw_uint8: torch.Tensor, labels: torch.Tensor, transform: Callable):
        self.data = images_nchw_uint8.permute(0, 2, 3, 1).contiguous().cpu().numpy()
        self.targets = [int(t) for t in labels.cpu()]
        self.transform = transform

    def __len__(self) -> int:
        return len(self.targets)

    def __getitem__(self, index: int):
        from PIL import Image

        img, target = Image.fromarray(self.data[index]), self.targets[index]
        return self.transform(img), target


def official_loader(images: torch.Tensor, labels: torch.Tensor, batch_size: int, *, device: torch.device,
                    num_workers: int = 1, seed: int = 0) -> torch.utils.data.DataLoader:
    """The official training loader: RandomCrop(32, padding=4) + RandomHorizontalFlip + ToTensor,
    shuffled, ``num_workers=1, pin_memory=True`` (pinning only on CUDA)."""
    from torchvision import transforms

    size = int(images.shape[-1])
    transform_train = transforms.Compose([
        transforms.RandomCrop(size, padding=4),
        transforms.RandomHorizontalFlip(),
        transforms.ToTensor(),
    ])
    ds = PILImageDataset(images, labels, transform_train)
    return torch.utils.data.DataLoader(
        ds, batch_size=batch_size, shuffle=True, num_workers=num_workers,
        pin_memory=device.type == "cuda", generator=torch.Generator().manual_seed(seed),
        persistent_workers=num_workers > 0,
    )


class ReferenceTrainer:
    """The official ``train()`` loop body, one batch per :meth:`step` (the loader restarts at epoch end)."""

    log_interval = 100  # the official loop reads loss.item() every log_interval batches

    def __init__(self, model: nn.Module, optimizer: torch.optim.Optimizer, loader, device: torch.device,
                 *, step_size: float, epsilon: float, num_steps: int, beta: float):
        self.model, self.optimizer, self.loader, self.device = model, optimizer, loader, device
        self.kw = dict(step_size=step_size, epsilon=epsilon, perturb_steps=num_steps, beta=beta)
        self._it = None
        self.batch_idx = 0

    def next_batch(self):
        if self._it is None:
            self._it, self.batch_idx = iter(self.loader), 0
        try:
            return next(self._it)
        except StopIteration:
            self._it, self.batch_idx = iter(self.loader), 0
            return next(self._it)

    def step(self) -> None:
        self.model.train()
        data, target = self.next_batch()
        data, target = data.to(self.device), target.to(self.device)
        self.optimizer.zero_grad()
        loss = official_trades_loss(model=self.model, x_natural=data, y=target, optimizer=self.optimizer, **self.kw)
        loss.backward()
        self.optimizer.step()
        if self.batch_idx % self.log_interval == 0:
            loss.item()
        self.batch_idx += 1


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


# ----------------------------------------------------------------------------------------------
# Measuring
# ----------------------------------------------------------------------------------------------
def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def forward_flops(model: nn.Module, image_size: int, device: torch.device, channels_last: bool) -> float:
    """FLOPs of one forward pass per image, counted by FlopCounterMode (convolutions and matmuls)."""
    from torch.utils.flop_counter import FlopCounterMode

    x = torch.rand(2, 3, image_size, image_size, device=device)
    if channels_last:
        x = x.contiguous(memory_format=torch.channels_last)
    was = model.training
    model.eval()
    with torch.no_grad(), FlopCounterMode(display=False) as counter:
        model(x)
    model.train(was)
    return counter.get_total_flops() / 2


def counted_flops(fn: Callable[[], None]) -> float:
    """Total FLOPs (forward and backward convolutions/matmuls) of ``fn()``."""
    from torch.utils.flop_counter import FlopCounterMode

    counter = FlopCounterMode(display=False)
    # Per-module attribution is not needed, and the module tracker's backward hooks make
    # torch.autograd.grad(loss, [leaf input]) (every attack step) fail: count globally only.
    counter.mod_tracker = _GlobalOnly()
    with counter:
        fn()
    return float(counter.get_total_flops())


class _GlobalOnly:
    parents = {"Global"}

    def __enter__(self):
        return self

    def __exit__(self, *exc) -> bool:
        return False


def peak_gemm_flops(device: torch.device, dtype: torch.dtype, *, n: int, reps: int = 5) -> float:
    """Peak matrix-multiply rate (FLOP/s) measured on this device: the best of ``reps`` n x n x n GEMMs
    (the best, not the median: a peak; the bench measures it again in every round and keeps the highest).
    For fp32 on CUDA the GEMM uses TF32 exactly when cuDNN convolutions do (the training policy)."""
    a = torch.randn(n, n, device=device, dtype=dtype)
    b = torch.randn(n, n, device=device, dtype=dtype)
    ctx = contextlib.nullcontext()
    if device.type == "cuda" and dtype == torch.float32:
        old = torch.backends.cuda.matmul.allow_tf32

        @contextlib.contextmanager
        def tf32_like_convs():
            torch.backends.cuda.matmul.allow_tf32 = torch.backends.cudnn.allow_tf32
            try:
                yield
            finally:
                torch.backends.cuda.matmul.allow_tf32 = old
        ctx = tf32_like_convs()
    with ctx:
        a @ b
        sync(device)
        times = []
        for _ in range(reps):
            t = time.perf_counter()
            a @ b
            sync(device)
            times.append(time.perf_counter() - t)
    return 2 * n**3 / min(times)


def precision_policy(device: torch.device) -> str:
    if device.type != "cuda":
        return "CPU: fp32 math; bf16 rows use torch.autocast(cpu, bfloat16)"
    return (f"cudnn.benchmark={torch.backends.cudnn.benchmark}, TF32 convolutions "
            f"{'on' if torch.backends.cudnn.allow_tf32 else 'off'} (cudnn.allow_tf32), TF32 matmul "
            f"{'on' if torch.backends.cuda.matmul.allow_tf32 else 'off'}; AutoAttack/reported numbers: TF32 off "
            "(evaluation.fp32_precision)")


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
    p.add_argument("--rounds", type=int, default=None, help="interleaved timing rounds; median reported (default 3; tiny 1)")
    p.add_argument("--dataset", choices=("synthetic", "cifar100"), default="synthetic",
                   help="synthetic CIFAR-shaped data from trades_instability.data.datasets (default) or CIFAR-100")
    p.add_argument("--data-root", default=None, help="where CIFAR-100 lives (with --dataset cifar100; default data); "
                   "with --checkpoint it also replaces the data_root stored in the checkpoint")
    p.add_argument("--num-classes", type=int, default=100, help="classes of the synthetic data (CIFAR-100: 100)")
    p.add_argument("--image-size", type=int, default=None, help="synthetic image size (default 32; tiny 16)")
    p.add_argument("--compile", action="store_true",
                   help="also time the project's step with torch.compile (RunConfig.compile); compile time is "
                        "spent in the warm-up steps, so give --warmup >= 2")
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
    line = lambda cells: "| " + " | ".join(c.ljust(w) if i == 0 else c.rjust(w) for i, (c, w) in enumerate(zip(cells, widths))) + " |"
    sep = "|" + "|".join("-" * (w + 2) for w in widths) + "|"
    return "\n".join([line(headers), sep, *(line(r) for r in rows)])


TRAIN_HEADERS = ["training path", "precision", "img/s", "ms/step", "x ref", "peak mem GiB",
                 "fwd-eq/img", "floor %", "50k-img epoch s"]
EVAL_HEADERS = ["evaluation", "precision", "examples", "batch", "seconds", "examples/s", "result"]


def main(argv: list[str] | None = None) -> int:
    with tempfile.TemporaryDirectory(prefix="trades-bench-") as tmp:
        return _main(argv, tmp)


def _main(argv: list[str] | None, tmp: str) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    args = build_parser().parse_args(argv)
    from trades_instability.train.loop import Trainer

    if args.threads:
        torch.set_num_threads(args.threads)
    try:
        device = resolve_device(args.device)
    except RuntimeError as e:
        print(f"trades-bench: {e}", file=sys.stderr)
        return 2
    args = _resolve(args, device)
    trained = None
    if args.checkpoint is not None and not args.no_eval:  # a bad checkpoint stops here, before any timing
        from trades_instability.evaluate.cli import CheckpointInputError, load_checkpoint_with_data

        try:
            trained = load_checkpoint_with_data(args.checkpoint, device, args.data_root)
        except CheckpointInputError as e:
            print(f"trades-bench: {e}", file=sys.stderr)
            return 2
    elif args.checkpoint is not None:
        print("trades-bench: --checkpoint is only used by the evaluation timings; drop --no-eval or --checkpoint",
              file=sys.stderr)
        return 2
    command = shlex.join(getattr(sys, "orig_argv", sys.argv))  # the process's exact command line
    out: dict[str, Any] = {"command": command, "bench_args": argv, "device": device_description(device),
                           "torch": torch.__version__}

    # ---- data (shared by every path) -------------------------------------------------------------
    from trades_instability.data.datasets import DatasetUnavailable, load_splits

    n_steps_total = args.warmup + args.steps * args.rounds + 1
    train_size = min(args.batch_size * max(4, min(n_steps_total, 40)), CIFAR_TRAIN_SIZE)
    cfg32 = _run_config(args, device, "fp32", train_size)
    try:
        splits = load_splits(cfg32)
    except DatasetUnavailable as e:
        print(f"trades-bench: {e}", file=sys.stderr)
        return 2

    def project(precision: str, compiled: bool = False) -> ProjectStepper:
        cfg = _run_config(args, device, precision, train_size)
        cfg.compile = compiled
        # the Trainer's run directory: nothing is written there when it is only stepped
        return ProjectStepper(Trainer(cfg, f"{tmp}/{precision}{'-compiled' if compiled else ''}", device=str(device),
                                      log=lambda m: None, progress=False, data=splits))

    fast32 = project("fp32")  # sets cudnn.benchmark on CUDA, as in training (the reference gets it too)
    a = cfg32.attack
    torch.manual_seed(args.seed)
    ref_model = copy.deepcopy(fast32.trainer.model).to(memory_format=torch.contiguous_format)
    ref_opt = torch.optim.SGD(ref_model.parameters(), lr=cfg32.lr, momentum=cfg32.momentum,
                              nesterov=cfg32.nesterov, weight_decay=cfg32.weight_decay)
    loader = official_loader(splits.train.images, splits.train.labels, args.batch_size, device=device,
                             num_workers=args.ref_workers, seed=args.seed)
    ref = ReferenceTrainer(ref_model, ref_opt, loader, device, step_size=a.step_size, epsilon=a.eps,
                           num_steps=a.steps, beta=cfg32.beta)
    variants = [Variant("reference (official TRADES loop)", "fp32", ref.step, args.batch_size),
                Variant("project (Trainer step)", "fp32", fast32.step, args.batch_size)]
    precisions = ["fp32"] if args.no_bf16 else ["fp32", "bf16"]
    for compiled in [False, True] if args.compile else [False]:
        for precision in precisions:
            if precision == "fp32" and not compiled:
                continue  # fast32, above
            variants.append(Variant("project (Trainer step)" + (" +compile" if compiled else ""), precision,
                                    project(precision, compiled).step, args.batch_size,
                                    flop_dtype=torch.bfloat16 if precision == "bf16" else torch.float32))

    fwd = forward_flops(fast32.trainer.model, args.image_size, device, fast32.trainer.channels_last)
    print("trades_instability bench")
    print(f"command: {command}")
    print(f"bench arguments: {shlex.join(argv) or '(none)'}")
    print(f"device: {device_description(device)}; torch {torch.__version__}")
    print(f"precision policy: {precision_policy(device)}")
    print(f"model: resnet18 width {args.width}, {splits.num_classes} classes, {args.image_size}x{args.image_size}; "
          f"batch {args.batch_size}; data {splits.name} ({len(splits.train)} train images); TRADES-{a.steps} "
          f"(eps {a.eps:.5f}, step {a.step_size:.5f}, beta {cfg32.beta}); reference DataLoader workers {args.ref_workers}")
    print(f"forward FLOPs (FlopCounterMode, measured): {fwd / 1e9:.4f} GFLOP/image; FLOP floor "
          f"{FLOOR_FWD_PER_IMAGE} forwards/image/step = {FLOOR_FWD_PER_IMAGE * fwd * args.batch_size / 1e9:.2f} GFLOP/step")
    sys.stdout.flush()

    # ---- measured work per step (one counted step per path; it also warms up) ---------------------
    n_gemm = 4096 if device.type == "cuda" else (256 if args.tiny else 1024)
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

    # ---- warm-up, then interleaved timed rounds --------------------------------------------------
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

    print("peak GEMM (measured here, %d^3, best over all rounds): %s" % (n_gemm, ", ".join(
        f"{'fp32' if d == torch.float32 else 'bf16'} {v / 1e12:.3f} TFLOP/s" for d, v in peaks.items())))
    rows, train_json = [], []
    ref_ips = None
    for v in variants:
        step_s = statistics.median(v.per_round_s) / args.steps
        ips = v.batch / step_s
        ref_ips = ref_ips or ips
        floor_s = FLOOR_FWD_PER_IMAGE * fwd * v.batch / peaks[v.flop_dtype]
        rec = {"path": v.name, "precision": v.precision, "images_per_s": ips, "ms_per_step": step_s * 1e3,
               "ratio_to_reference": ips / ref_ips, "peak_mem_gib": v.peak_mem / 2**30 if v.peak_mem else None,
               "fwd_equivalents_per_image": v.fwd_eq_per_image, "floor_fraction": floor_s / step_s,
               "epoch_50k_s": CIFAR_TRAIN_SIZE / ips, "round_seconds": v.per_round_s}
        train_json.append(rec)
        rows.append([v.name, v.precision, _fmt(ips, ".1f"), _fmt(rec["ms_per_step"], ".1f"),
                     _fmt(rec["ratio_to_reference"], ".2f"), _fmt(rec["peak_mem_gib"], ".2f"),
                     _fmt(v.fwd_eq_per_image, ".1f"), _fmt(100 * rec["floor_fraction"], ".1f"),
                     _fmt(rec["epoch_50k_s"], ".1f")])
    print()
    print(f"training: {args.steps} timed steps x {args.rounds} interleaved rounds (median), {args.warmup} warm-up steps")
    print(render_table(TRAIN_HEADERS, rows))
    print("fwd-eq/img: conv+matmul FLOPs of one step (FlopCounterMode) / (batch x forward FLOPs); "
          f"floor %: time of {FLOOR_FWD_PER_IMAGE} forwards/image at the measured peak GEMM rate / step time; "
          "50k-img epoch s: CIFAR-size epoch at this rate")
    sys.stdout.flush()
    out.update(args={k: v for k, v in vars(args).items()}, forward_gflops_per_image=fwd / 1e9,
               peak_gemm_tflops={("fp32" if d == torch.float32 else "bf16"): p / 1e12 for d, p in peaks.items()},
               train=train_json)

    # ---- evaluation timings ----------------------------------------------------------------------
    if not args.no_eval:
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
            what = f"checkpoint {args.checkpoint} (epoch {ckpt.get('epoch')}, {ckpt['model_meta']}) on its {tsplits.name} test set"
        print()
        print(f"evaluation: {what}")
        eval_rows, eval_json = _bench_eval(args, device, model, channels_last, test, num_classes)
        print(render_table(EVAL_HEADERS, eval_rows))
        print("PGD-10 validation: train.validation.validate (what the trainer runs each epoch); AutoAttack: "
              "evaluation.evaluate_model, fp32 with TF32 off; its time depends on how many examples stay robust")
        out["eval"] = eval_json
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
    if args.json:
        from trades_instability.rundir.atomic_io import write_json

        write_json(args.json, out)
        print(f"\nwrote {args.json}")
    return 0


def _bench_eval(args, device: torch.device, model: nn.Module, channels_last: bool, test, num_classes: int):
    from trades_instability.evaluate import suite as evaluation
    from trades_instability.data.datasets import ImageSet
    from trades_instability.train.validation import validate

    n = min(args.eval_n, len(test))
    xs = test.images[:n]
    ys = test.labels[:n]
    val_set = ImageSet(xs, ys).to(device)
    rows, out = [], []
    for precision in ("fp32",) if args.no_bf16 else ("fp32", "bf16"):
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
        rows.append([f"PGD-10 validation (+FOSC, SGCS)", precision, str(n), str(min(cfg.val_batch_size, n)),
                     _fmt(dt, ".2f"), _fmt(n / dt, ".1f"), res])
        out.append({"what": "pgd10_validation", "precision": precision, "n": n, "seconds": dt, "examples_per_s": n / dt, **val})
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
    rows.append([f"AutoAttack ({res.get('autoattack_version')}; {budget})", "fp32", str(n), str(suite.batch_size),
                 _fmt(dt, ".2f"), _fmt(n / dt, ".1f"),
                 f"robust {_fmt(res.get('autoattack_acc'), '.3f')} ({res.get('status')})"])
    out.append({"what": "autoattack", "precision": "fp32", "n": n, "batch_size": suite.batch_size, "seconds": dt,
                "examples_per_s": n / dt, "budget": budget, "autoattack_acc": res.get("autoattack_acc"),
                "version": res.get("autoattack_version")})
    return rows, out


def _precision_agreement(args, device: torch.device, model: nn.Module, test, num_classes: int):
    """fp32 vs bf16 autocast on the trained model: :func:`precision_check.compare` on the first eval-n
    test examples, Square at the bench's AutoAttack budget."""
    from trades_instability.evaluate import suite as evaluation

    n = min(args.eval_n, len(test))
    x = to_float(test.images[:n].to(device))
    y = test.labels[:n].to(device)
    standard = args.aa_budget == "standard"
    suite = evaluation.SuiteConfig(batch_size=args.eval_batch_size or 512, seed=args.seed,
                                   square_queries=5000 if standard else (20 if args.tiny else 200))
    print(f"precision agreement: {n} examples, PGD-{suite.pgd_steps}, Square {suite.square_queries} queries")
    sys.stdout.flush()
    rows = precision_check.compare(copy.deepcopy(model).eval(), x, y, suite, device=device, num_classes=num_classes)
    return precision_check.table_rows(rows), {"n": n, "square_queries": suite.square_queries,
                                              "rows": [r.to_dict() for r in rows]}


if __name__ == "__main__":
    sys.exit(main())
