"""The checks that a device runs this project correctly: one implementation for ``tests/test_gpu.py`` (on
CUDA) and for ``python -m trades_instability gpu-check`` (on CUDA, or on the CPU with ``--tiny``).

Each check is a function ``check(out_dir, device) -> dict`` that does real work in ``out_dir`` and raises
:class:`CheckFailed` (an AssertionError, so pytest shows it as a failed assertion) naming what went wrong; the
returned dict holds what it measured, and ``summary`` a short line of it. :data:`CHECKS` lists them with how
long each takes (the gpu-check budget) and whether it means anything without CUDA.

Training is not compared across devices: TPGD steps along sign(gradient) from a start 0.001 away from x, where
the KL gradient is nearly zero, so round-off differences flip signs and runs drift apart. Evaluation is.
"""

from __future__ import annotations

import contextlib
import csv
import io
import json
import math
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from trades_instability.data.datasets import to_float
from trades_instability.data.splits import load_splits
from trades_instability.evaluate.suite_config import SuiteConfig, suite_from_dict
from trades_instability.tools.flops import peak_bytes
from trades_instability.train.errors import Interrupted

GiB = 2**30
# README "Several jobs on one GPU": what jobs_per_gpu is sized with (allocated, CUDA context and cuDNN
# workspace on top) for a CIFAR-sized job, ResNet-18 width 64, 100 classes, fp32
TRAIN_PEAK_BUDGET_GIB = 5.0  # training at batch 256 with per-step batch metrics
AA_PEAK_BUDGET_GIB = 6.0  # an AutoAttack batch of 500 (aa_batch_size)
TIMING_COLUMNS = ("epoch_time_s",)  # the only columns of epochs.csv / batches.csv that a resume may change


class CheckFailed(AssertionError):
    """A device check found wrong behaviour; the message says what."""


def require(cond: bool, message: str) -> None:
    if not cond:
        raise CheckFailed(message)


def toy_config(device: str | torch.device = "cpu", **overrides):
    """A run config small enough to train an epoch in about a second on one CPU core (the tests' tiny_run_config)."""
    from trades_instability.config.run import from_dict

    base: dict[str, Any] = {
        "dataset": "synthetic",
        "synthetic": {"num_classes": 4, "train_size": 96, "test_size": 32, "image_size": 16, "seed": 0},
        "width": 2, "epochs": 2, "batch_size": 32, "val_batch_size": 32, "attack": {"steps": 3},
        "device": str(device),
    }
    for k, v in overrides.items():
        base[k] = {**base[k], **v} if isinstance(v, dict) and isinstance(base.get(k), dict) else v
    return from_dict(base)


def read_rows(path: str | Path) -> list[dict[str, str]]:
    with open(path, newline="") as fh:
        return list(csv.DictReader(fh))


def without_timing(rows: list[dict[str, str]]) -> list[dict[str, str]]:
    return [{k: v for k, v in r.items() if k not in TIMING_COLUMNS} for r in rows]


def _quiet(_message: str) -> None:
    pass


def _run_device(out: Path) -> str:
    return json.loads((out / "run.json").read_text())["device"]


# ------------------------------------------------------------------------------------------ training
TRAINING_VARIANTS: dict[str, dict[str, Any]] = {
    "fp32": {},
    "bf16": {"precision": "bf16"},
    "awp": {"awp": {"enabled": True}},
    "modified": {"method": "modified"},
    # a threshold every epoch exceeds: the fix's noise really runs in epoch 2
    "fix": {"fix": {"enabled": True, "fosc_threshold": 1e-12, "noise_batches": 1}},
}


def training(variant: str) -> Callable[[Path, torch.device], dict[str, Any]]:
    """Train a toy run in ``variant`` on the device: finite losses and metrics in every epoch, the run recorded
    on that device, and its best checkpoint loads and runs on the CPU."""
    overrides = TRAINING_VARIANTS[variant]

    def check(out: Path, device: torch.device) -> dict[str, Any]:
        from trades_instability.rundir.checkpoint import load_model
        from trades_instability.train.loop import train

        cfg = toy_config(device, log_batch_metrics=True, **overrides)
        info = train(cfg, out, log=_quiet)
        require(info["status"] == "complete", f"{variant}: run status {info['status']!r}")
        recorded = _run_device(out)
        require(device.type in recorded.lower() or (device.type == "cpu" and "cpu" in recorded),
                f"{variant}: run.json says device {recorded!r}, asked {device}")
        rows = read_rows(out / "epochs.csv")
        for r in rows:
            for k in ("train_loss", "val_pgd_acc", "val_fosc", "val_sgcs", "w_grad_norm", "ce_norm", "kl_norm"):
                require(math.isfinite(float(r[k])), f"{variant}: epoch {r['epoch']} {k} = {r[k]!r}")
        if variant == "fix":
            require(any(int(r["noise_batches"]) > 0 for r in rows), "fix: no epoch added noise to a batch")
        model, _ = load_model(out / "checkpoints" / "best.pt", "cpu")
        require(next(model.parameters()).device.type == "cpu", f"{variant}: best.pt did not load on the CPU")
        require(tuple(model(torch.rand(2, 3, 16, 16)).shape) == (2, 4), f"{variant}: wrong output shape on the CPU")
        last = rows[-1]
        return {"epochs": len(rows), "train_loss": float(last["train_loss"]), "val_pgd_acc": float(last["val_pgd_acc"]),
                "summary": f"{len(rows)} epochs, loss {float(last['train_loss']):.3f}, finite; "
                           "best.pt loads on the CPU"}

    check.__name__ = f"training_{variant}"
    return check


def resume_after_interruption(out: Path, device: torch.device) -> dict[str, Any]:
    """Stopped after epoch 1 and rerun: it says it resumed, completes the epochs and keeps epoch 1's row."""
    from trades_instability.train.loop import Trainer

    cfg = toy_config(device, epochs=3, log_batch_metrics=True)
    try:
        Trainer(cfg, out, log=_quiet, stop_after_epoch=1).run()
        raise CheckFailed("stop_after_epoch=1 did not interrupt the run")
    except Interrupted:
        pass
    first = read_rows(out / "epochs.csv")
    messages: list[str] = []
    info = Trainer(cfg, out, log=messages.append).run()
    require(any("resumed from" in m for m in messages), "the rerun did not say it resumed")
    require(info["epochs_completed"] == 3, f"epochs_completed {info['epochs_completed']}, expected 3")
    rows = read_rows(out / "epochs.csv")
    require([int(r["epoch"]) for r in rows] == [1, 2, 3], f"epochs.csv epochs {[r['epoch'] for r in rows]}")
    require(rows[0] == first[0], "epoch 1's row changed on resume")
    batches = [int(r["epoch"]) for r in read_rows(out / "batches.csv")]
    require(batches == [1] * 3 + [2] * 3 + [3] * 3, f"batches.csv epochs {batches}")
    return {"summary": "stopped after epoch 1, resumed to 3; epoch 1 kept, 9 batch rows"}


def deterministic_resume_equals_uninterrupted(out: Path, device: torch.device) -> dict[str, Any]:
    """The bit-exact resume claim in deterministic mode (README "Determinism"): apart from timing columns,
    the resumed run's epochs.csv and batches.csv equal the uninterrupted run's."""
    from trades_instability.train.loop import Trainer, train

    cfg = toy_config(device, epochs=3, log_batch_metrics=True, deterministic=True)
    train(cfg, out / "a", log=_quiet)
    try:
        Trainer(cfg, out / "b", log=_quiet, stop_after_epoch=1).run()
    except Interrupted:
        pass
    train(cfg, out / "b", log=_quiet)
    return compare_run_logs(out / "a", out / "b")


def compare_run_logs(a: Path, b: Path) -> dict[str, Any]:
    """epochs.csv and batches.csv of two runs equal apart from :data:`TIMING_COLUMNS` (else CheckFailed)."""
    for name in ("epochs.csv", "batches.csv"):
        ra, rb = without_timing(read_rows(a / name)), without_timing(read_rows(b / name))
        if ra != rb:
            pairs = enumerate(zip(ra, rb, strict=False))
            diff = next(((i, k) for i, (x, y) in pairs for k in x if x[k] != y.get(k)), None)
            raise CheckFailed(f"{name} of the resumed run differs from the uninterrupted one "
                              f"({len(ra)} vs {len(rb)} rows; first difference row, column: {diff})")
    n = len(read_rows(a / "epochs.csv"))
    return {"epochs": n, "summary": f"resumed == uninterrupted ({n} epochs; epochs.csv, batches.csv less timing)"}


def cpu_resume_of_a_cuda_run_is_one_line(out: Path, device: torch.device) -> dict[str, Any]:
    """A run written on CUDA and resumed on the CPU stops with a CheckpointError naming the device and the fix."""
    from trades_instability.rundir.checkpoint import CheckpointError
    from trades_instability.train.loop import Trainer

    cfg = toy_config(device, epochs=2)
    try:
        Trainer(cfg, out, log=_quiet, stop_after_epoch=1).run()
    except Interrupted:
        pass
    try:
        Trainer(cfg, out, device="cpu", log=_quiet).run()
    except CheckpointError as e:
        require("written by a run on cuda" in str(e) and "--device cuda" in str(e), f"unclear message: {e}")
        return {"summary": "refused with one line naming cuda and --device cuda"}
    raise CheckFailed("resuming a CUDA run on the CPU did not stop")


def cudnn_benchmark_during_training(out: Path, device: torch.device) -> dict[str, Any]:
    """cudnn.benchmark is on while a CUDA run trains (off in deterministic mode) and restored afterwards."""
    from trades_instability.train.loop import train

    seen: list[bool] = []
    old = torch.backends.cudnn.benchmark
    torch.backends.cudnn.benchmark = False
    try:
        train(toy_config(device, epochs=1), out / "a", log=lambda m: seen.append(torch.backends.cudnn.benchmark))
        require(seen and all(seen), "cudnn.benchmark was off during a CUDA training run")
        require(torch.backends.cudnn.benchmark is False, "cudnn.benchmark was not restored after the run")
        seen.clear()
        train(toy_config(device, epochs=1, deterministic=True), out / "b",
              log=lambda m: seen.append(torch.backends.cudnn.benchmark))
        require(seen and not any(seen), "cudnn.benchmark was on in deterministic mode")
    finally:
        torch.backends.cudnn.benchmark = old
    return {"summary": "on while training, off when deterministic, restored after"}


def compile_with_awp(out: Path, device: torch.device) -> dict[str, Any]:
    """``compile: true`` with AWP (both forms) trains without falling back to eager."""
    from trades_instability.train.loop import train

    for form in ("adr", "official"):
        messages: list[str] = []
        cfg = toy_config(device, epochs=1, compile=True, awp={"enabled": True, "form": form})
        require(train(cfg, out / form, log=messages.append)["status"] == "complete", f"compile + AWP {form} failed")
        require(not any("fell back to eager" in m for m in messages), f"compile + AWP {form}: {messages}")
    return {"summary": "adr and official AWP forms compiled and trained"}


# ------------------------------------------------------------------------------------------ evaluation
def evaluation_agrees_with_cpu(out: Path, device: torch.device) -> dict[str, Any]:
    """PGD-10 and Square from fixed starts on a trained toy model, on the CPU and on the device: clean accuracy
    equal, attack accuracies within 2 examples of 64 (a borderline flag may flip with floating-point order),
    FOSC within 10 %, SGCS within 5 %."""
    from trades_instability.evaluate import suite as evaluation
    from trades_instability.rundir.checkpoint import load_model
    from trades_instability.train.loop import train

    cfg = toy_config("cpu", epochs=2, synthetic={"test_size": 64})
    train(cfg, out, log=_quiet)
    test = load_splits(cfg).test
    x, y = to_float(test.images), test.labels
    suite = SuiteConfig(attacks=["clean", "pgd10", "square"], batch_size=32, square_queries=200)
    res = {}
    for dev in ("cpu", str(device)):
        model, _ = load_model(out / "checkpoints" / "best.pt", dev)
        res[dev] = evaluation.evaluate_model(model.eval(), x, y, suite, device=dev, num_classes=4, log=_quiet)
    a, b = res["cpu"], res[str(device)]
    require(a["clean_acc"] == b["clean_acc"], f"clean accuracy cpu {a['clean_acc']} vs {device} {b['clean_acc']}")
    for k in ("pgd10_acc", "square_acc"):
        require(abs(a[k] - b[k]) <= 2 / 64, f"{k}: cpu {a[k]} vs {device} {b[k]}")
    require(_close(b["fosc"], a["fosc"], 0.1, 1e-4), f"fosc: cpu {a['fosc']} vs {device} {b['fosc']}")
    require(_close(b["sgcs"], a["sgcs"], 0.05, 1e-3), f"sgcs: cpu {a['sgcs']} vs {device} {b['sgcs']}")
    return {"cpu": {k: a[k] for k in ("clean_acc", "pgd10_acc", "square_acc", "fosc", "sgcs")},
            "device": {k: b[k] for k in ("clean_acc", "pgd10_acc", "square_acc", "fosc", "sgcs")},
            "summary": f"cpu vs {device}: pgd10 {a['pgd10_acc']:.3f}/{b['pgd10_acc']:.3f}, "
                       f"square {a['square_acc']:.3f}/{b['square_acc']:.3f}, fosc {a['fosc']:.4f}/{b['fosc']:.4f}"}


def _close(x: float, ref: float, rel: float, abs_: float) -> bool:
    return abs(x - ref) <= max(rel * abs(ref), abs_)


AA_PINNED_BATCH = 16  # the toy check's pinned AutoAttack batch: 32 examples run as two batches


def autoattack_through_eval_cli(out: Path, device: torch.device) -> dict[str, Any]:
    """``trades-eval`` with clean, PGD-10 and standard AutoAttack (pyautoattack) at a pinned ``aa_batch_size``:
    status ok, the device recorded, the batch used is the pinned one (never halved) and AutoAttack is no
    weaker than PGD-10."""
    from trades_instability.evaluate import cli as eval_cli
    from trades_instability.train.loop import train

    train(toy_config("cpu", epochs=1), out, log=_quiet)
    suites = out / "suites.yaml"
    suites.write_text(f"g: {{attacks: [clean, pgd10, autoattack], n_examples: 32, batch_size: 16, "
                      f"aa_batch_size: {AA_PINNED_BATCH}}}\n")
    doc_path = out / "eval.json"
    with contextlib.redirect_stdout(io.StringIO()) as said:  # its result line: kept in the returned dict
        rc = eval_cli.main(["--checkpoint", str(out / "checkpoints" / "best.pt"), "--suite", "g",
                            "--suites", str(suites), "--out", str(doc_path), "--device", device.type])
    require(rc == 0, f"trades-eval exited {rc}")
    doc = json.loads(doc_path.read_text())
    require(doc["status"] == "ok", f"status {doc['status']}: {doc.get('message')}")
    require(device.type in doc["device"].lower(), f"eval JSON device {doc['device']!r}")
    require(doc["aa_batch_pinned"] is True and doc["aa_batch_size"] == AA_PINNED_BATCH
            and doc["aa_batch_halvings"] == 0, f"AutoAttack batch {doc['aa_batch_size']} "
            f"(pinned {doc['aa_batch_pinned']}, halvings {doc['aa_batch_halvings']}), expected {AA_PINNED_BATCH}")
    require(doc["autoattack_acc"] is not None and doc["autoattack_acc"] <= doc["pgd10_acc"] + 1e-9,
            f"AutoAttack {doc['autoattack_acc']} above PGD-10 {doc['pgd10_acc']}")
    return {"autoattack_acc": doc["autoattack_acc"], "pgd10_acc": doc["pgd10_acc"],
            "eval_line": said.getvalue().strip(),
            "version": doc["autoattack_version"], "aa_batch_size": doc["aa_batch_size"],
            "summary": f"pyautoattack {doc['autoattack_version']} at pinned batch {AA_PINNED_BATCH}: "
                       f"AA {doc['autoattack_acc']:.3f} <= PGD-10 {doc['pgd10_acc']:.3f}"}


# ------------------------------------------------------------------------------------------ the GPU path
def to_float_bit_identical(out: Path, device: torch.device) -> dict[str, Any]:

    v = torch.arange(256, dtype=torch.uint8)
    require(torch.equal(to_float(v.to(device)).cpu(), to_float(v)), f"to_float differs on {device}")
    return {"summary": f"uint8 -> float identical on {device} and cpu"}


def attack_start_same_on_device(out: Path, device: torch.device) -> dict[str, Any]:
    """A CPU generator gives the same attack start (and the same PGD start) on the device as on the CPU."""
    from trades_instability.core import attacks

    x = torch.rand(8, 3, 16, 16)
    for dist in ("uniform", "normal"):
        cpu = attacks.start_noise(x, torch.Generator().manual_seed(5), dist)
        dev = attacks.start_noise(x.to(device), torch.Generator().manual_seed(5), dist)
        require(dev.device.type == device.type and torch.equal(dev.cpu(), cpu), f"{dist} start differs on {device}")
    model = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(3 * 16 * 16, 4))
    y = torch.zeros(8, dtype=torch.long)
    starts = [attacks.pgd(model.to(d), x.to(d), y.to(d), eps=8 / 255, step_size=2 / 255, steps=0,
                          generator=torch.Generator().manual_seed(5)).x_adv.cpu() for d in ("cpu", device)]
    require(torch.equal(*starts), f"PGD start differs on {device}")
    return {"summary": f"uniform and normal starts identical on {device} and cpu"}


def augment_one_pinned_copy(out: Path, device: torch.device) -> dict[str, Any]:
    """The batch augmentation's crop offsets and flips reach the GPU in one pinned host-to-device copy."""
    from torch.profiler import ProfilerActivity, profile

    from trades_instability.data.augment import augment_batch

    x = torch.rand(64, 3, 32, 32, device=device)
    augment_batch(x, generator=torch.Generator().manual_seed(0))  # warm-up
    torch.cuda.synchronize(device)
    with profile(activities=[ProfilerActivity.CPU, ProfilerActivity.CUDA]) as prof:
        augment_batch(x, generator=torch.Generator().manual_seed(0))
        torch.cuda.synchronize(device)
    h2d = [e.name for e in prof.events() if "Memcpy HtoD" in e.name]
    require(len(h2d) == 1 and "Pinned" in h2d[0], f"host-to-device copies per batch: {h2d}")
    return {"summary": "one pinned HtoD copy per batch"}


# ------------------------------------------------------------------------------------------ memory
@dataclass
class MemoryShape:
    """The job peak_memory measures: the README's CIFAR job (ResNet-18 width 64, batch 256, 100 classes) on CUDA."""

    width: int = 64
    batch_size: int = 256
    num_classes: int = 100
    image_size: int = 32
    train_size: int = 512
    aa_batch: int = 500


TOY_MEMORY = MemoryShape(width=8, batch_size=32, num_classes=10, image_size=16, train_size=64, aa_batch=32)


def _peak_reset(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats(device)


def peak_memory(shape: MemoryShape | None = None) -> Callable[[Path, torch.device], dict[str, Any]]:
    """A CIFAR-sized training run (fp32, per-step batch metrics, PGD-10 validation) peaks within
    :data:`TRAIN_PEAK_BUDGET_GIB` and an AutoAttack batch of ``shape.aa_batch`` within
    :data:`AA_PEAK_BUDGET_GIB` (README "Several jobs on one GPU")."""
    shape = shape or MemoryShape()

    def check(out: Path, device: torch.device) -> dict[str, Any]:
        from trades_instability.evaluate import suite as evaluation
        from trades_instability.rundir.checkpoint import load_model
        from trades_instability.train.loop import train

        s = shape
        cfg = toy_config(device, width=s.width, batch_size=s.batch_size, val_batch_size=2 * s.batch_size, epochs=1,
                         log_batch_metrics=True, attack={"steps": 10},
                         synthetic={"num_classes": s.num_classes, "train_size": s.train_size,
                                    "test_size": s.train_size, "image_size": s.image_size, "seed": 0})
        _peak_reset(device)
        train(cfg, out / "run", log=_quiet)
        train_peak = peak_bytes(device) / GiB
        model, _ = load_model(out / "run" / "checkpoints" / "best.pt", device)
        x = torch.rand(s.aa_batch, 3, s.image_size, s.image_size, device=device)
        y = torch.randint(0, s.num_classes, (s.aa_batch,), device=device)
        suite = suite_from_dict("m", {"attacks": ["autoattack"], "apgd_iters": 5, "fab_iters": 5,
                                      "n_target_classes": 2, "square_queries": 10, "aa_batch_size": s.aa_batch})
        _peak_reset(device)
        evaluation.evaluate_model(model, x, y, suite, device=device, num_classes=s.num_classes, log=_quiet)
        eval_peak = peak_bytes(device) / GiB
        what = "allocated" if device.type == "cuda" else "process peak RSS (no CPU allocator statistics)"
        require(train_peak <= TRAIN_PEAK_BUDGET_GIB, f"training peak {train_peak:.2f} GiB > {TRAIN_PEAK_BUDGET_GIB}")
        require(eval_peak <= AA_PEAK_BUDGET_GIB, f"AutoAttack peak {eval_peak:.2f} GiB > {AA_PEAK_BUDGET_GIB}")
        return {"train_peak_gib": train_peak, "autoattack_peak_gib": eval_peak, "measure": what,
                "shape": s.__dict__,
                "summary": f"training {train_peak:.2f} GiB <= {TRAIN_PEAK_BUDGET_GIB}, AutoAttack batch {s.aa_batch} "
                           f"{eval_peak:.2f} GiB <= {AA_PEAK_BUDGET_GIB} ({what}; width {s.width}, batch "
                           f"{s.batch_size}, {s.num_classes} classes, {s.image_size}x{s.image_size})"}

    check.__name__ = "peak_memory"
    return check


# ------------------------------------------------------------------------------------------ the table
@dataclass(frozen=True)
class Check:
    name: str
    fn: Callable[[Path, torch.device], dict[str, Any]]
    what: str
    cuda_only: bool = False  # meaningless without CUDA: gpu-check --tiny records it as not applicable
    in_command: bool = True  # run by gpu-check (False: tests only; the bench's compile row covers it there)
    # seconds on an H100/H200 (CUDA start-up is paid once, in gpu-check's environment step) and on one of this
    # project's 2 CPU cores (--tiny, measured: 1-8 s per toy run). A toy run on the GPU (width 2, 3 steps an epoch
    # of 10 attack steps each, PGD validation of 32) is kernel-launch bound: ~60 layers x (forward + backward) x 11
    # passes ~ 1,500 launches a step, ~0.05 s, so 1-3 epochs take well under a second; cuDNN autotuning of each new
    # shape adds ~1 s the first time. Not measured: no GPU has run this yet.
    est_cuda_s: float = 5.0
    est_cpu_s: float = 5.0


CHECKS: tuple[Check, ...] = (
    *(Check(f"training_{v}", training(v), f"training, {v}", est_cuda_s=3, est_cpu_s=4 if v != "awp" else 6)
      for v in TRAINING_VARIANTS),
    Check("resume", resume_after_interruption, "resume after an interruption", est_cuda_s=4, est_cpu_s=5),
    Check("deterministic_resume", deterministic_resume_equals_uninterrupted,
          "deterministic resume == uninterrupted", est_cuda_s=6, est_cpu_s=8),
    Check("evaluation_agreement", evaluation_agrees_with_cpu, "evaluation agrees with the CPU", est_cuda_s=6,
          est_cpu_s=8),
    Check("autoattack", autoattack_through_eval_cli, "AutoAttack via trades-eval at the pinned batch",
          est_cuda_s=8, est_cpu_s=12),
    # width 64 at batch 256 on 512 images: 2 training steps (~30 TFLOP) + PGD-10 validation of 512 (~12 TFLOP)
    # + a 5-iteration AutoAttack of 500: seconds of compute, plus cuDNN autotuning
    Check("peak_memory", peak_memory(), "peak memory within the README's per-job figures", est_cuda_s=15,
          est_cpu_s=15),
    Check("to_float", to_float_bit_identical, "uint8 -> float bit-identical", cuda_only=True, est_cuda_s=1),
    Check("attack_start", attack_start_same_on_device, "attack starts identical to the CPU's", cuda_only=True,
          est_cuda_s=1),
    Check("augment_copy", augment_one_pinned_copy, "augmentation: one pinned copy per batch", cuda_only=True,
          est_cuda_s=2),
    Check("cudnn_benchmark", cudnn_benchmark_during_training, "cudnn.benchmark while training", cuda_only=True,
          est_cuda_s=3),
    Check("cpu_resume_refused", cpu_resume_of_a_cuda_run_is_one_line, "a CUDA run resumed on the CPU: one line",
          cuda_only=True, est_cuda_s=2),
    Check("compile_awp", compile_with_awp, "compile: true with AWP", cuda_only=True, in_command=False,
          est_cuda_s=90),
)
CHECKS_BY_NAME = {c.name: c for c in CHECKS}
