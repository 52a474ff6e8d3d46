"""One GPU per local job: a slot-to-GPU lease that the workflow owns.

Snakemake's local executor only counts the resource ``gpu``; it never says WHICH GPU a job may use
(snakemake/snakemake#281), so every job would run on GPU 0. The rules therefore start their GPU command
through this module, verb ``gpu-slot`` of ``python -m trades_instability``:

    python -m trades_instability gpu-slot GPUS_OF_THE_JOB -- python -m trades_instability train ...

With ``$TRADES_GPU_SLOTS`` set (the Snakefile does it for local runs only) the launcher takes a free slot:
an exclusive ``flock`` on ``<dir>/gpu<i>.slot<k>.lock``, with ``jobs_per_gpu`` slots per GPU, filled
GPU-major (every GPU gets its first job before any gets its second). It then sets
``CUDA_VISIBLE_DEVICES`` to that GPU and *execs* the command, which inherits the locked descriptor: the
lease lives exactly as long as the job's process (and whatever it forks), and the kernel frees it when
the process ends in any way, ``kill -9`` included; no stale lease file can block a later job. Without
``$TRADES_GPU_SLOTS`` (a SLURM job, whose scheduler sets ``CUDA_VISIBLE_DEVICES`` itself) or for a job
that claims no GPU, the command is exec'd unchanged.

Snakemake never starts more GPU jobs than there are slots (its ``gpu`` resource is GPUs x jobs_per_gpu),
so a free slot exists; a process that outlives its job briefly (a forked worker still exiting) is waited
for, up to ``wait_s``.
"""

from __future__ import annotations

import fcntl
import json
import os
import socket
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

ENV_GPU_SLOTS = "TRADES_GPU_SLOTS"  # JSON {"dir": lock folder, "devices": ["0", "1"], "jobs_per_gpu": K}


class GpuSlotsError(RuntimeError):
    """No GPU slot could be taken, or the slot settings are unusable; the message says why and what to do."""


@dataclass
class GpuLease:
    """A held slot: the locked file's descriptor (kept open for the job's lifetime), its path and GPU."""

    fd: int
    path: Path
    device: str  # the CUDA device id the job sees as its only GPU
    gpu_index: int
    slot: int

    def release(self) -> None:
        fcntl.flock(self.fd, fcntl.LOCK_UN)
        os.close(self.fd)


def slot_order(n_gpus: int, jobs_per_gpu: int) -> list[tuple[int, int]]:
    """(gpu index, slot) pairs in the order they are taken: GPU-major, so jobs spread over the GPUs first."""
    return [(g, k) for k in range(jobs_per_gpu) for g in range(n_gpus)]


def slot_path(lock_dir: str | os.PathLike, gpu_index: int, slot: int) -> Path:
    return Path(lock_dir) / f"gpu{gpu_index}.slot{slot}.lock"


def _try_lock(path: Path) -> int | None:
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        os.close(fd)
        return None
    # for a human looking at the folder: who holds it (the lock itself is the flock, not this text)
    os.ftruncate(fd, 0)
    holder = f"pid {os.getpid()} on {socket.gethostname()} since {time.strftime('%Y-%m-%dT%H:%M:%S')}\n"
    os.pwrite(fd, holder.encode(), 0)
    return fd


def acquire(lock_dir: str | os.PathLike, devices: list[str], jobs_per_gpu: int, *, wait_s: float = 600.0,
            poll_s: float = 0.5, log: Callable[[str], None] = lambda m: None) -> GpuLease:
    """Take the first free slot (``slot_order``) of ``devices`` x ``jobs_per_gpu``; wait up to ``wait_s`` for
    one to be freed, then raise :class:`GpuSlotsError` naming the holders."""
    if not devices or jobs_per_gpu < 1:
        raise GpuSlotsError(f"no GPU slots to take (devices {devices}, jobs_per_gpu {jobs_per_gpu})")
    lock_dir = Path(lock_dir)
    lock_dir.mkdir(parents=True, exist_ok=True)
    deadline = time.monotonic() + wait_s
    waited = False
    while True:
        for g, k in slot_order(len(devices), jobs_per_gpu):
            path = slot_path(lock_dir, g, k)
            fd = _try_lock(path)
            if fd is not None:
                return GpuLease(fd=fd, path=path, device=devices[g], gpu_index=g, slot=k)
        if time.monotonic() >= deadline:
            holders = "; ".join(f"{p.name}: {p.read_text().strip() or '?'}" for p in sorted(lock_dir.glob("gpu*.lock")))
            raise GpuSlotsError(
                f"all {len(devices) * jobs_per_gpu} GPU slots in {lock_dir} stayed taken for {wait_s:.0f} s "
                f"({holders}); another workflow in this folder, or processes left over from killed jobs, hold "
                "them: end those processes (the slots free themselves when they exit)")
        if not waited:
            log(f"gpu_slots: every slot in {lock_dir} is taken; waiting for one to be freed")
            waited = True
        time.sleep(poll_s)


def settings_from_env(environ: dict[str, str] | None = None) -> dict | None:
    """The slot settings the Snakefile exported, or None (no local GPU assignment: run unchanged)."""
    text = (os.environ if environ is None else environ).get(ENV_GPU_SLOTS, "")
    if not text:
        return None
    try:
        s = json.loads(text)
        return {"dir": str(s["dir"]), "devices": [str(d) for d in s["devices"]], "jobs_per_gpu": int(s["jobs_per_gpu"])}
    except (ValueError, KeyError, TypeError):
        raise GpuSlotsError(f"${ENV_GPU_SLOTS} is not valid ({text!r}); it is set by the Snakefile, do not set it "
                            "by hand") from None


def local_settings(lock_dir: str | os.PathLike, n_gpus: int, jobs_per_gpu: int,
                   visible: str | None) -> dict:
    """The slot settings of a local run with ``n_gpus`` GPUs: device ids 0..n-1, or the first ``n_gpus``
    entries of the user's ``CUDA_VISIBLE_DEVICES`` (``visible``) when it is set."""
    if visible is not None and visible.strip():
        ids = [v.strip() for v in visible.split(",") if v.strip()]
        if len(ids) < n_gpus:
            raise GpuSlotsError(
                f"{n_gpus} GPUs requested (--resources gpu / local_gpus) but CUDA_VISIBLE_DEVICES={visible!r} "
                f"lists {len(ids)}: request at most {len(ids)} or list more devices")
        devices = ids[:n_gpus]
    else:
        devices = [str(i) for i in range(n_gpus)]
    return {"dir": str(lock_dir), "devices": devices, "jobs_per_gpu": int(jobs_per_gpu)}


def main(argv: list[str] | None = None) -> int:
    """``python -m trades_instability gpu-slot N -- COMMAND...``: exec COMMAND with a GPU of its own when
    the job claims N >= 1 GPUs and ``$TRADES_GPU_SLOTS`` is set, else unchanged."""
    argv = sys.argv[1:] if argv is None else argv
    usage = "usage: python -m trades_instability gpu-slot GPUS_OF_THE_JOB -- COMMAND [ARGS...]"
    if argv in (["-h"], ["--help"]):
        print(usage)
        return 0
    if len(argv) < 3 or argv[1] != "--" or not argv[0].isdigit():
        print(usage, file=sys.stderr)
        return 2
    n, cmd = int(argv[0]), argv[2:]
    env = dict(os.environ)
    try:
        settings = settings_from_env(env)
        if settings is not None and n >= 1:
            # one GPU per job: the trainer and the evaluation use a single device
            lease = acquire(settings["dir"], settings["devices"], settings["jobs_per_gpu"],
                            log=lambda m: print(m, file=sys.stderr, flush=True))
            os.set_inheritable(lease.fd, True)  # the exec'd job holds the lock until it exits
            env["CUDA_VISIBLE_DEVICES"] = lease.device
            print(f"gpu_slots: this job runs on GPU {lease.device} (slot {lease.slot + 1} of "
                  f"{settings['jobs_per_gpu']} on it; lease {lease.path})", file=sys.stderr, flush=True)
    except GpuSlotsError as e:
        print(f"gpu_slots: error: {e}", file=sys.stderr)
        return 1
    os.execvpe(cmd[0], cmd, env)
    return 1  # not reached


if __name__ == "__main__":
    sys.exit(main())
