"""``python -m trades_instability gpu-check --out DIR``: prove a GPU node in one command, in minutes.

Steps, each printing its one-line result as soon as it finishes (a run cut off still says what passed):

a. environment: torch, CUDA runtime, driver, cuDNN, GPU, memory, compute capability, bf16, the lock of this
   repository that matches the driver;
b. correctness on the device: :data:`trades_instability.tools.device_checks.CHECKS` (the same functions
   ``tests/test_gpu.py`` calls);
c. speed, side by side in one process: :mod:`trades_instability.tools.bench` at the paper's scale (reference
   loop, project fp32, bf16, ``compile: true``);
d. a real short run: 2 epochs on the synthetic CIFAR-100-shaped set, the same run stopped after epoch 1 and
   resumed (identical logs apart from timing columns), then PGD-10, Square, standard AutoAttack on 1,000
   examples, timed, and the loss landscape;
e. sharing the GPU: K = 1, 2, 4 concurrent training processes (:mod:`trades_instability.tools.gpu_share`),
   aggregate images/s, peak memory per job, a recommended ``jobs_per_gpu``;
f. ``DIR/report.md`` and ``DIR/report.json``. Exit 0 only when every correctness check passed.

``--max-minutes M`` skips, with a line, a step whose estimate does not fit in what is left (a started step
is never cut). ``--tiny`` runs the same steps at toy size on the CPU (CI). Without a usable GPU and without
``--tiny``: one line naming why (and, when nvidia-smi sees a GPU torch cannot use, the lock to install), exit 2.
Only the library's runtime dependencies are needed.

Step a's probes live in :mod:`~trades_instability.tools.gpu_environment`, the runner of the steps and the verdict
in :mod:`~trades_instability.tools.gpu_check_runner`, step f's report in
:mod:`~trades_instability.tools.gpu_check_report`.
"""

from __future__ import annotations

import argparse
import contextlib
import datetime as dt
import json
import os
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

# The deterministic resume checks need cuBLAS's fixed workspace, which cuBLAS reads when CUDA starts: set it
# before torch touches the GPU (README "Determinism"; it only bounds cuBLAS's workspace size).
os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")

import torch

import trades_instability
from trades_instability.tools import device_checks
from trades_instability.tools.gpu_check_report import write_report
from trades_instability.tools.gpu_check_runner import Runner, StepResult, passed
from trades_instability.tools.gpu_environment import cuda_available, environment, environment_line, no_gpu_line

CONTEXT_GIB = 1.0  # README "Several jobs on one GPU": CUDA context and cuDNN workspace per job, on top
SHARE_GAIN = 1.10  # a larger K is recommended only when it adds at least 10 % aggregate throughput


# ------------------------------------------------------------------------------------------ sizes
@dataclass(frozen=True)
class Scale:
    """How big each step is. ``gpu``: the paper's scale on an H100/H200, 6 minutes in all; ``tiny``: toy size
    on the CPU, under 3 minutes on 2 cores. Estimates are seconds (used by --max-minutes)."""

    name: str
    bench_args: tuple[str, ...]
    bench_compile: bool
    run: dict[str, Any]  # the short run's config keys
    eval_n: int
    eval_suite: dict[str, Any]  # SuiteConfig keys of the short run's evaluation
    share: dict[str, Any]  # gpu_share arguments
    share_ks: tuple[int, ...] = (1, 2, 4)
    memory: device_checks.MemoryShape = field(default_factory=device_checks.MemoryShape)
    est: dict[str, float] = field(default_factory=dict)


SCALES: dict[str, Scale] = {
    "gpu": Scale(
        name="gpu",
        # a project step is 27 forwards x 1.11 GFLOP x 256 = 7.7 TFLOP (~0.1 s at TF32 rates), the reference's 39;
        # 4 rows x (2 warm-up + 2 x 5 timed + 1 counted) steps ~ 10 s; torch.compile of the training step and the
        # attack's graphs (inductor, cold cache) ~ 60-90 s; peak-GEMM probes seconds
        bench_args=("--width", "64", "--batch-size", "256", "--num-classes", "100",
                    "--warmup", "2", "--steps", "5", "--rounds", "2", "--no-eval"),
        bench_compile=True,
        # 12,800 images at batch 256: 50 steps/epoch; 4 epochs in all (uninterrupted 2, stopped 1 + resumed 1),
        # deterministic fp32 with batch metrics (~1.5 x 1.3 the plain step, ~0.08 s at the README's 15 s target
        # for a 195-step epoch): ~200 x 0.16 s = 32 s, plus 4 PGD-10 validations of 1,000 (12 TFLOP each, ~1 s)
        run={"dataset": "synthetic", "synthetic": {"num_classes": 100, "train_size": 12_800, "test_size": 1_000,
                                                   "image_size": 32, "seed": 0},
             "width": 64, "batch_size": 256, "val_batch_size": 500, "epochs": 2, "log_batch_metrics": True,
             "deterministic": True, "device": "cuda"},
        eval_n=1_000,
        # standard budget (5000 Square queries, 100 APGD/FAB iterations, 9 targets), fp32 without TF32 (~60 TFLOP/s
        # peak on H100/H200 CUDA cores, ~30 achieved). Only still-robust points are attacked: at 10 % robust
        # (2 epochs), Square alone 0.1 x 1000 x 5000 x 1.11 GFLOP = 0.55 PFLOP (~20 s) and the ensemble (APGD-CE on
        # the clean-correct, APGD-T and FAB-T 9 targets x 100 iterations on the robust, Square) ~1.3 PFLOP (~45 s);
        # at 30 % robust about three times that, and --max-minutes would skip what no longer fits
        eval_suite={"attacks": ["clean", "pgd10", "square", "autoattack"], "batch_size": 500, "aa_batch_size": 500},
        # each process: start-up (~5 s: import, CUDA context) + 3 warm-up + 10 timed steps (~0.1 s each x K)
        share={"width": 64, "batch_size": 256, "num_classes": 100, "image_size": 32,
               "warmup": 3, "steps": 10},
        # in all ~5.8 min with the checks' ~63 s (device_checks.CHECKS)
        est={"environment": 10, "bench": 100, "short_run": 40, "short_eval": 90, "sharing": 45},
    ),
    "tiny": Scale(
        name="tiny",
        bench_args=("--tiny", "--threads", "1", "--no-eval"),
        bench_compile=False,  # inductor's C++ build of even the width-4 step took > 2 min on 2 cores
        run={"dataset": "synthetic", "synthetic": {"num_classes": 10, "train_size": 128, "test_size": 64,
                                                   "image_size": 16, "seed": 0},
             "width": 4, "batch_size": 32, "val_batch_size": 64, "epochs": 2, "log_batch_metrics": True,
             "deterministic": True, "device": "cpu", "attack": {"steps": 3}},
        eval_n=64,
        eval_suite={"attacks": ["clean", "pgd10", "square", "autoattack"], "batch_size": 64, "aa_batch_size": 64,
                    "apgd_iters": 5, "fab_iters": 5, "n_target_classes": 2, "square_queries": 50},
        share={"width": 4, "batch_size": 16, "num_classes": 10, "image_size": 16, "warmup": 1,
               "steps": 2, "threads": 1},
        memory=device_checks.TOY_MEMORY,
        est={"environment": 1, "bench": 30, "short_run": 20, "short_eval": 6, "sharing": 30},
    ),
}


# ------------------------------------------------------------------------------------------ c: speed
def speed(scale: Scale, out: Path, device: torch.device) -> dict[str, Any]:
    """The bench's training table (reference, fp32, bf16, compile fp32) in this process; its own printout goes
    to ``out/bench.log``. Should the compiled row break the bench, the other rows are timed again without it and
    the compile row says why (it is the least proven part of a new node's stack)."""
    argv = [*scale.bench_args, "--device", str(device), "--json", str(out / "bench.json")]
    compile_problem = None
    if scale.bench_compile:
        try:
            doc = _bench(argv + ["--compile", "--compile-precision", "fp32"], out)
            argv += ["--compile", "--compile-precision", "fp32"]
        except Exception as e:  # noqa: BLE001 - reported in the row, the other rows still measured
            compile_problem = f"FAILED: {type(e).__name__}: {(str(e).splitlines() or [''])[0]}"
    if not scale.bench_compile or compile_problem:
        doc = _bench(argv, out)
    rows = [{"row": _bench_row_name(r), **{k: r.get(k) for k in (
        "images_per_s", "ms_per_step", "ratio_to_reference", "peak_mem_gib", "floor_fraction", "epoch_50k_s")}}
        for r in doc["train"]]
    if not scale.bench_compile:
        rows.append({"row": "compile: true (fp32)", "not_run": "torch.compile's C++ build takes minutes on 2 CPU "
                     "cores; timed on a GPU only"})
    elif compile_problem:
        rows.append({"row": "compile: true (fp32)", "not_run": compile_problem})
    by = {r["row"]: r for r in rows}
    fp32 = by.get("project fp32", {})
    summary = ", ".join(f"{r['row']} {r['images_per_s']:.0f} img/s" for r in rows if "images_per_s" in r)
    return {"rows": rows, "bench_args": argv, "forward_gflops_per_image": doc["forward_gflops_per_image"],
            "peak_gemm_tflops": doc["peak_gemm_tflops"], "compile_problem": compile_problem,
            "summary": f"{summary}; 50k-image epoch {fp32.get('epoch_50k_s', float('nan')):.1f} s in fp32"
                       + (f"; compile {compile_problem}" if compile_problem else "")}


def _bench(argv: list[str], out: Path) -> dict[str, Any]:
    """``bench.main(argv)`` with its printout appended to ``out/bench.log``; returns its JSON."""
    from trades_instability.tools import bench

    with open(out / "bench.log", "a") as log, contextlib.redirect_stdout(log):
        rc = bench.main(argv)
    device_checks.require(rc == 0, f"bench exited {rc} (see {out / 'bench.log'})")
    return json.loads((out / "bench.json").read_text())


def _bench_row_name(rec: dict[str, Any]) -> str:
    if rec["path"].startswith("reference"):
        return "reference (official loop)"
    return ("compile: true (" + rec["precision"] + ")") if "compile" in rec["path"] else f"project {rec['precision']}"


# ------------------------------------------------------------------------------------------ d: a short run
def short_run(scale: Scale, out: Path, device: torch.device) -> dict[str, Any]:
    """2 epochs uninterrupted, and the same run stopped after epoch 1 and resumed: identical logs apart from the
    timing columns (deterministic mode)."""
    from trades_instability.config.run import from_dict
    from trades_instability.train.errors import Interrupted
    from trades_instability.train.loop import Trainer, train

    cfg = from_dict({**scale.run, "device": str(device)})
    t = time.perf_counter()
    info = train(cfg, out / "run", log=lambda m: None, progress=False)
    t_full = time.perf_counter() - t
    device_checks.require(info["status"] == "complete", f"short run status {info['status']}")
    t = time.perf_counter()
    try:
        Trainer(cfg, out / "resumed", log=lambda m: None, progress=False, stop_after_epoch=1).run()
    except Interrupted:
        pass
    train(cfg, out / "resumed", log=lambda m: None, progress=False)
    t_resumed = time.perf_counter() - t
    same = device_checks.compare_run_logs(out / "run", out / "resumed")
    rows = device_checks.read_rows(out / "run" / "epochs.csv")
    n_img = cfg.synthetic.train_size
    epoch_s = [float(r["epoch_time_s"]) for r in rows]
    return {"train_images": n_img, "epochs": len(rows), "seconds_uninterrupted": t_full, "seconds_resumed": t_resumed,
            "epoch_time_s": epoch_s, "val_pgd_acc": [float(r["val_pgd_acc"]) for r in rows],
            "summary": f"2 epochs of {n_img} images in {t_full:.1f} s "
                       f"(epochs {', '.join(f'{s:.1f}' for s in epoch_s)} s); "
                       f"{same['summary']}"}


def short_eval(scale: Scale, out: Path, device: torch.device) -> dict[str, Any]:
    """PGD-10, Square and AutoAttack on the short run's best checkpoint, the first ``eval_n`` test examples,
    timed, with the loss landscape (evaluate_checkpoint, as trades-eval runs it)."""
    from trades_instability.evaluate import suite as evaluation
    from trades_instability.evaluate.cli import load_checkpoint_with_data
    from trades_instability.evaluate.suite_config import suite_from_dict

    model, ckpt, splits = load_checkpoint_with_data(out / "run" / "checkpoints" / "best.pt", device)
    suite = suite_from_dict("gpu-check", {**scale.eval_suite, "n_examples": scale.eval_n})
    t = time.perf_counter()
    doc = evaluation.evaluate_checkpoint(model, ckpt, splits.test.images, splits.test.labels, suite,
                                         suite_name="gpu-check",
                                         checkpoint_path=out / "run" / "checkpoints" / "best.pt",
                                         out=out / "eval.json", device=device, num_classes=splits.num_classes,
                                         landscape_out=out / "landscape.npz")
    wall = time.perf_counter() - t
    device_checks.require(doc["status"] == "ok", f"evaluation status {doc['status']}: {doc.get('message')}")
    tm = doc["timings_s"]
    return {"n": doc["n_examples"], "wall_s": wall, "timings_s": tm, "autoattack_version": doc["autoattack_version"],
            **{k: doc[k] for k in ("clean_acc", "pgd10_acc", "square_acc", "autoattack_acc", "aa_batch_size")},
            "summary": f"{doc['n_examples']} examples in {wall:.1f} s: PGD-10 {doc['pgd10_acc']:.3f} "
                       f"({tm.get('pgd10', 0):.1f} s), Square {doc['square_acc']:.3f} ({tm.get('square', 0):.1f} s), "
                       f"AutoAttack {doc['autoattack_version']} {doc['autoattack_acc']:.3f} "
                       f"({tm.get('autoattack', 0):.1f} s), landscape written"}


# ------------------------------------------------------------------------------------------ e: sharing
def sharing(scale: Scale, out: Path, device: torch.device, total_gib: float | None) -> dict[str, Any]:
    """K concurrent training processes for each K of ``scale.share_ks`` (max(K) processes started once, exactly K
    of them stepping in round K: :mod:`~trades_instability.tools.gpu_share`); aggregate images/s, peak per job and
    the recommended jobs_per_gpu (:func:`recommend_jobs_per_gpu`)."""
    src = str(Path(trades_instability.__file__).resolve().parents[1])
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([src, *filter(None, [os.environ.get("PYTHONPATH")])])}
    out.mkdir(parents=True, exist_ok=True)
    ks, n = scale.share_ks, max(scale.share_ks)
    procs = []
    for i in range(n):
        cmd = [sys.executable, "-m", "trades_instability.tools.gpu_share", "--dir", str(out), "--index", str(i),
               "--ks", ",".join(map(str, ks))]
        for key, v in {**scale.share, "device": str(device)}.items():
            cmd += [f"--{key.replace('_', '-')}", str(v)]
        with open(out / f"job{i}.log", "w") as log:
            procs.append(subprocess.Popen(cmd, env=env, stdout=log, stderr=subprocess.STDOUT))
    try:
        _wait_files(procs, [out / f"ready{i}" for i in range(n)], out)
        results = []
        for k in ks:
            (out / f"go{k}").write_text("go\n")
            files = [out / f"job{i}-k{k}.json" for i in range(k)]
            _wait_files(procs, files, out)
            jobs = [json.loads(f.read_text()) for f in files]
            results.append({"k": k, "aggregate_images_per_s": sum(j["images_per_s"] for j in jobs),
                            "peak_mem_gib_per_job": max(j["peak_mem_gib"] for j in jobs), "jobs": jobs})
        codes = [p.wait(timeout=120) for p in procs]
        device_checks.require(all(c == 0 for c in codes), f"share jobs exited {codes} (see {out}/job*.log)")
    finally:
        for p in procs:
            if p.poll() is None:
                p.kill()
    rec = recommend_jobs_per_gpu(results, total_gib)
    line = "; ".join(f"K={r['k']} {r['aggregate_images_per_s']:.0f} img/s, {r['peak_mem_gib_per_job']:.2f} GiB/job"
                     for r in results)
    return {"results": results, **rec, "summary": f"{line}; recommend jobs_per_gpu: {rec['jobs_per_gpu']} "
                                                  f"({rec['why']})"}


def _wait_files(procs: list[subprocess.Popen], files: list[Path], out: Path) -> None:
    """Until every file exists; a process that exits meanwhile without having written its file is a failure."""
    while not all(f.exists() for f in files):
        dead = [(i, p.returncode) for i, p in enumerate(procs) if p.poll() is not None and p.returncode != 0]
        if dead:
            raise device_checks.CheckFailed(f"share job {dead[0][0]} exited {dead[0][1]} "
                                            f"(see {out / f'job{dead[0][0]}.log'})")
        time.sleep(0.05)


def recommend_jobs_per_gpu(results: list[dict[str, Any]], total_gib: float | None) -> dict[str, Any]:
    """The fewest concurrent jobs whose aggregate throughput is within :data:`SHARE_GAIN` of the next larger K
    tried, capped by memory: K x (peak per job + :data:`CONTEXT_GIB`) <= the card's memory. Without a card
    (CPU) only the throughput rule applies."""
    best = results[0]
    for r in results[1:]:
        if r["aggregate_images_per_s"] >= SHARE_GAIN * best["aggregate_images_per_s"]:
            best = r
    k = best["k"]
    why = f"aggregate img/s gains < {SHARE_GAIN - 1:.0%} beyond it"
    if total_gib is not None:
        per_job = max(r["peak_mem_gib_per_job"] for r in results) + CONTEXT_GIB
        fit = int(total_gib // per_job)
        if fit < k:
            k, why = max(fit, 1), f"memory: {per_job:.1f} GiB per job with context on {total_gib:.0f} GiB"
    return {"jobs_per_gpu": k, "why": why}


# ------------------------------------------------------------------------------------------ running the steps
def run_all(args: argparse.Namespace, out: Path, device: torch.device, scale: Scale) -> list[StepResult]:
    max_s = None if args.max_minutes is None else 60 * args.max_minutes
    runner = Runner(out, max_s)
    checks = sum((c.est_cuda_s if device.type == "cuda" else c.est_cpu_s) for c in device_checks.CHECKS
                 if c.in_command and (device.type == "cuda" or not c.cuda_only))
    est = {"a": scale.est["environment"], "b": checks, "c": scale.est["bench"],
           "d": scale.est["short_run"] + scale.est["short_eval"], "e": scale.est["sharing"]}
    print(f"estimates: {', '.join(f'{k} ~{v:.0f} s' for k, v in est.items())}; "
          f"~{sum(est.values()) / 60:.1f} min in all"
          + (f" (--max-minutes {args.max_minutes:g})" if args.max_minutes is not None else ""))
    env_r = runner.run("a", "environment", "environment", scale.est["environment"], lambda: _with_line(
        environment(device), environment_line), correctness=False)
    total_gib = env_r.data.get("memory_gib")
    for c in device_checks.CHECKS:
        if not c.in_command:
            continue
        if c.cuda_only and device.type != "cuda":
            runner.not_applicable("b", c.name, c.what, "needs CUDA (not applicable to the CPU run)", correctness=True)
            continue
        fn = device_checks.peak_memory(scale.memory) if c.name == "peak_memory" else c.fn
        d = out / "checks" / c.name
        d.mkdir(parents=True, exist_ok=True)
        runner.run("b", c.name, c.what, c.est_cuda_s if device.type == "cuda" else c.est_cpu_s,
                   lambda fn=fn, d=d: fn(d, device), correctness=True)
    runner.run("c", "speed", "speed, side by side", scale.est["bench"], lambda: speed(scale, out, device),
               correctness=False)
    run_r = runner.run("d", "short_run", "short run + resume", scale.est["short_run"],
                       lambda: short_run(scale, out / "short_run", device), correctness=True)
    if run_r.status == "passed":
        runner.run("d", "short_eval", "short run's evaluation", scale.est["short_eval"],
                   lambda: short_eval(scale, out / "short_run", device), correctness=True)
    else:
        runner.not_applicable("d", "short_eval", "short run's evaluation",
                              f"no checkpoint: the short run {run_r.status}",
                              correctness=True)
    runner.run("e", "sharing", "sharing the GPU", scale.est["sharing"],
               lambda: sharing(scale, out / "sharing", device, total_gib), correctness=False)
    return runner.results


def _with_line(data: dict[str, Any], line: Callable[[dict[str, Any]], str]) -> dict[str, Any]:
    return {**data, "summary": line(data)}


# ------------------------------------------------------------------------------------------ command line
def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m trades_instability gpu-check",
                                description="Prove a GPU node in minutes: environment, correctness, speed, a short "
                                            "run with resume and AutoAttack, jobs per GPU; writes DIR/report.md/json.")
    p.add_argument("--out", required=True, help="output folder (report.md, report.json, the runs, bench.log)")
    p.add_argument("--tiny", action="store_true", help="the same steps at toy size on the CPU (CI; under 3 minutes)")
    p.add_argument("--max-minutes", type=float, default=None,
                   help="skip (with a line) any step whose estimate does not fit in what is left; a started step "
                        "always finishes")
    p.add_argument("--device", default="cuda", help="the GPU to check (cuda, cuda:N; default cuda)")
    return p


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if args.max_minutes is not None and args.max_minutes <= 0:
        print("gpu-check: --max-minutes must be > 0", file=sys.stderr)
        return 2
    if args.tiny:
        device, scale = torch.device("cpu"), SCALES["tiny"]
        torch.set_num_threads(1)
    else:
        if not cuda_available():
            print(no_gpu_line(), file=sys.stderr)
            return 2
        from trades_instability.runtime import DeviceUnavailable, resolve_device

        try:
            device = resolve_device(args.device)
        except DeviceUnavailable as e:
            print(f"gpu-check: {e}", file=sys.stderr)
            return 2
        if device.type != "cuda":
            print(f"gpu-check: --device {args.device} is not a CUDA device (use --tiny for the CPU run)",
                  file=sys.stderr)
            return 2
        if device.index is None:
            device = torch.device("cuda", torch.cuda.current_device())
        torch.cuda.set_device(device)
        scale = SCALES["gpu"]
    out = Path(args.out)
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        print(f"gpu-check: cannot create --out {out}: {e}", file=sys.stderr)
        return 2
    from trades_instability.runtime import device_description

    command = " ".join(getattr(sys, "orig_argv", sys.argv))
    print(f"gpu-check ({scale.name}) on {device_description(device)}; torch {torch.__version__}; writing {out}")
    t = time.perf_counter()
    results = run_all(args, out, device, scale)
    meta = {"date": dt.datetime.now(dt.UTC).strftime("%Y-%m-%d %H:%M UTC"), "device": device_description(device),
            "scale": scale.name, "cuda": device.type == "cuda", "command": command, "wall_s": time.perf_counter() - t,
            "max_minutes": args.max_minutes}
    write_report(out, results, meta)
    ok = passed(results, meta["cuda"])
    print(f"gpu-check: {'PASSED' if ok else 'NOT PASSED'} in {meta['wall_s']:.0f} s; {out / 'report.md'}")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
