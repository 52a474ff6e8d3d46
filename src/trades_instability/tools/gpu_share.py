"""The concurrent training processes of gpu-check's "sharing the GPU" step (``python -m
trades_instability.tools.gpu_share ...``, started by :mod:`trades_instability.tools.gpu_check`).

Each process builds the bench's training step (the Trainer's own,
:class:`~trades_instability.tools.bench_training.ProjectStepper`), warms it up (cuDNN autotuning, allocator) and writes
``DIR/ready<i>``. Then, for each K of ``--ks``: when its index is below K it waits for ``DIR/go<K>``, times
``--steps`` steps and writes ``DIR/job<i>-k<K>.json`` (images/s, peak memory); the others wait idle. So max(K)
processes start once and every K times the same interval with exactly K of them working."""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

import torch


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="gpu_share", description=__doc__.splitlines()[0])
    p.add_argument("--device", default="cuda")
    p.add_argument("--width", type=int, default=64)
    p.add_argument("--batch-size", type=int, default=256)
    p.add_argument("--num-classes", type=int, default=100)
    p.add_argument("--image-size", type=int, default=32)
    p.add_argument("--precision", default="fp32", choices=("fp32", "bf16"))
    p.add_argument("--warmup", type=int, default=3)
    p.add_argument("--steps", type=int, default=10)
    p.add_argument("--threads", type=int, default=None)
    p.add_argument("--dir", required=True, help="where ready<i>, go<K> and job<i>-k<K>.json live")
    p.add_argument("--index", type=int, required=True, help="this process's number, 0..max(K)-1")
    p.add_argument("--ks", default="1,2,4", help="the K of each timed round, in order")
    p.add_argument("--wait-s", type=float, default=300.0, help="give up when a go file does not appear in this time")
    return p


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    from trades_instability.config.run import from_dict
    from trades_instability.runtime import execution_mode, resolve_device
    from trades_instability.tools.bench_training import ProjectStepper
    from trades_instability.tools.flops import peak_bytes, sync
    from trades_instability.train.loop import Trainer

    device = resolve_device(args.device)
    n_train = args.batch_size * max(4, args.warmup + args.steps + 1)
    cfg = from_dict({"dataset": "synthetic", "synthetic": {"num_classes": args.num_classes, "train_size": n_train,
                                                           "test_size": 16, "image_size": args.image_size},
                     "width": args.width, "batch_size": args.batch_size, "epochs": 1, "precision": args.precision,
                     "device": str(device)})
    # a training run's backend flags (cudnn.benchmark on CUDA): the Trainer sets them in run(), not when stepped
    with tempfile.TemporaryDirectory(prefix="gpu-share-") as tmp, execution_mode(device, deterministic=False):
        stepper = ProjectStepper(Trainer(cfg, tmp, device=str(device), log=lambda m: None, progress=False))
        for _ in range(args.warmup):
            stepper.step()
        sync(device)
        folder = Path(args.dir)
        (folder / f"ready{args.index}").write_text("ready\n")
        for k in (int(v) for v in args.ks.split(",")):
            if args.index >= k:
                continue
            if not _wait_for(folder / f"go{k}", args.wait_s):
                print(f"gpu_share: {folder / f'go{k}'} did not appear within {args.wait_s:.0f} s", file=sys.stderr)
                return 1
            if device.type == "cuda":
                torch.cuda.reset_peak_memory_stats(device)
            t = time.perf_counter()
            for _ in range(args.steps):
                stepper.step()
            sync(device)
            dt = time.perf_counter() - t
            (folder / f"job{args.index}-k{k}.json").write_text(json.dumps({
                "images_per_s": args.steps * args.batch_size / dt, "seconds": dt, "steps": args.steps,
                "peak_mem_gib": peak_bytes(device) / 2**30,
                "peak_reserved_gib": torch.cuda.max_memory_reserved(device) / 2**30 if device.type == "cuda" else None,
            }))
    return 0


def _wait_for(path: Path, wait_s: float) -> bool:
    deadline = time.monotonic() + wait_s
    while not path.exists():
        if time.monotonic() > deadline:
            return False
        time.sleep(0.02)
    return True


if __name__ == "__main__":
    sys.exit(main())
