"""One writer per run directory: a lease file ``run.lock`` naming its holder.

Two ``trades-train`` processes on the same ``--out`` would interleave checkpoints and logs of two runs
without any error, so the trainer takes this lock before it reads or writes anything in the folder.

Why a lease file and not ``fcntl``/``filelock``: run folders live on cluster filesystems (NFS, Lustre)
where advisory locks are unreliable or not shared between nodes, and a lock must outlive questions
like "is the job on the other node still running?". The file is created with ``O_CREAT | O_EXCL``
(atomic on NFSv3+ and local filesystems) and holds the holder's host, pid, process start time and
SLURM job id, plus a heartbeat the holder refreshes every ``HEARTBEAT_S`` seconds. A lock is stale,
and is taken over with a message, when

- it was taken on this host and its process is gone (pid not alive, or reused by another process);
- it was taken on another host and SLURM reports its job finished (``squeue``, when available);
- otherwise, when its heartbeat is older than ``STALE_AFTER_S`` (another host without SLURM, or SLURM
  unreachable).

While the holder is alive the lock is refused with one line naming it and what to do.
"""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import threading
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

LOCK_NAME = "run.lock"
HEARTBEAT_S = float(os.environ.get("TRADES_LOCK_HEARTBEAT_S", "30"))
# ten missed heartbeats: long enough for a stalled filesystem, short enough for a requeued job
STALE_AFTER_S = float(os.environ.get("TRADES_LOCK_STALE_AFTER_S", "600"))


# how often a job waiting for a live holder (wait_while_held) looks at the lock again
POLL_S = float(os.environ.get("TRADES_LOCK_POLL_S", "10"))


class RunLocked(RuntimeError):
    """Another live process holds the run directory; the message names it and what to do."""


def _proc_start_time(pid: int) -> str | None:
    """Kernel start time of ``pid`` (Linux), which tells a live holder from a reused pid."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    return stat.rsplit(")", 1)[1].split()[19]  # field 22, counted after the "(comm)" field


def _proc_state(pid: int) -> str | None:
    """Kernel state letter of ``pid`` (Linux: R, S, D, Z, ...), None when unknown."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (OSError, IndexError):
        return None


def _pid_alive(pid: int) -> bool:
    if pid <= 0:  # os.kill(0 or -1, ...) would address process groups, not a pid
        return False
    # A killed trainer stays a zombie until its parent reaps it, and where the parent was killed too
    # (kill -9 of the Snakemake tree) that is up to PID 1, which in containers often never reaps.
    # os.kill(pid, 0) succeeds on a zombie, but it can no longer write anything: it is gone.
    if _proc_state(pid) in ("Z", "X"):
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # exists, owned by someone else
        return True
    return True


def slurm_job_state(job_id: str) -> str | None:
    """SLURM's state of ``job_id`` ("RUNNING", "PENDING", ...), "" when SLURM no longer lists it,
    None when SLURM cannot be asked (no squeue here, or it failed)."""
    if not shutil.which("squeue"):
        return None
    try:
        r = subprocess.run(["squeue", "-h", "-j", str(job_id), "-o", "%T"], capture_output=True, text=True, timeout=30)
    except (OSError, subprocess.SubprocessError):
        return None
    if r.returncode != 0:
        # squeue exits 1 with "Invalid job id specified" for a job that left the queue
        return "" if "Invalid job id" in r.stderr else None
    return r.stdout.strip().splitlines()[0] if r.stdout.strip() else ""


def slurm_job_states() -> dict[str, str] | None:
    """SLURM's state of every job it lists ({job id: state}) in one squeue call (the status command asks
    about many runs at once); None when SLURM cannot be asked."""
    if not shutil.which("squeue"):
        return None
    try:
        r = subprocess.run(["squeue", "-h", "-o", "%i %T"], capture_output=True, text=True, timeout=60, check=False)
    except (OSError, subprocess.SubprocessError):
        return None
    if r.returncode != 0:
        return None
    return dict(line.split(None, 1) for line in r.stdout.splitlines() if len(line.split()) == 2)


def _me() -> dict[str, Any]:
    pid = os.getpid()
    # CUDA_VISIBLE_DEVICES: which GPU of the host the run uses (set per job by SLURM or workflow/gpu_slots)
    return {"host": socket.gethostname(), "pid": pid, "pid_start": _proc_start_time(pid),
            "slurm_job_id": os.environ.get("SLURM_JOB_ID") or None, "token": uuid.uuid4().hex,
            "cuda_visible_devices": os.environ.get("CUDA_VISIBLE_DEVICES"),
            "started": time.time(), "heartbeat": time.time()}


def describe(holder: dict[str, Any]) -> str:
    job = f", SLURM job {holder['slurm_job_id']}" if holder.get("slurm_job_id") else ""
    age = time.time() - float(holder.get("heartbeat", 0))
    return f"pid {holder.get('pid')} on host {holder.get('host')}{job}, last heartbeat {age:.0f} s ago"


def stale_reason(holder: dict[str, Any], *, now: float | None = None,
                 job_state: Callable[[str], str | None] | None = None) -> str | None:
    """Why the lock of ``holder`` may be taken over, or None while its holder may still be running.
    ``job_state`` answers as :func:`slurm_job_state` does (default: that)."""
    now = time.time() if now is None else now
    if holder.get("host") == socket.gethostname():
        pid = int(holder.get("pid", -1))
        if not _pid_alive(pid):
            return f"its process {pid} on this host is gone"
        start = _proc_start_time(pid)
        if holder.get("pid_start") and start and start != holder["pid_start"]:
            return f"pid {pid} now belongs to another process"
        return None
    job = holder.get("slurm_job_id")
    if job:
        state = (job_state or slurm_job_state)(job)
        if state == "" or state in ("COMPLETED", "CANCELLED", "FAILED", "TIMEOUT", "NODE_FAIL", "PREEMPTED",
                                    "OUT_OF_MEMORY", "BOOT_FAIL", "DEADLINE"):
            return f"SLURM job {job} has ended ({state or 'no longer listed by squeue'})"
        if state is not None:
            return None  # SLURM says the job still runs: trust that over the heartbeat
    age = now - float(holder.get("heartbeat", 0))
    if age > STALE_AFTER_S:
        return f"its heartbeat is {age:.0f} s old (stale after {STALE_AFTER_S:.0f} s)"
    return None


def read_holder(path: Path) -> dict[str, Any] | None:
    """The holder recorded in the lock file ``path``; None when there is none; a lock being written or
    unreadable is judged by the file's age (as :meth:`RunLock.acquire` does)."""
    try:
        data = json.loads(path.read_text())
    except FileNotFoundError:
        return None
    except (OSError, ValueError):
        try:
            return {"heartbeat": path.stat().st_mtime, "host": "?", "pid": "?"}
        except FileNotFoundError:
            return None
    return data if isinstance(data, dict) else {"heartbeat": path.stat().st_mtime, "host": "?", "pid": "?"}


def wait_while_held(run_dir: str | os.PathLike, log: Callable[[str], None] = print, *, poll_s: float | None = None,
                    report_every_s: float = 600.0, name: str = LOCK_NAME) -> dict[str, Any] | None:
    """Block while a live process holds ``run_dir``'s lock (a job left running by a killed Snakemake, say):
    return the holder waited for once the lock is free or stale (None: nobody held it). The wait follows the
    holder's heartbeat: it ends with :class:`RunLocked` when the heartbeat has not moved for ``STALE_AFTER_S``
    while its process still runs (hung), so a job never waits on a writer that makes no progress."""
    path = Path(run_dir) / name
    poll_s = POLL_S if poll_s is None else poll_s
    waited: dict[str, Any] | None = None
    reported = 0.0
    while True:
        holder = read_holder(path)
        if holder is None or stale_reason(holder) is not None:
            return waited
        age = time.time() - float(holder.get("heartbeat", 0))
        if age > STALE_AFTER_S:
            raise RunLocked(
                f"run directory {run_dir} is held by {describe(holder)}, whose heartbeat stopped while its process "
                f"still runs (hung?); stop it (kill the pid / scancel the SLURM job), then rerun")
        if waited is None or holder.get("token") != waited.get("token"):
            log(f"waiting for {describe(holder)}, which holds {path} (a job left running, e.g. by a killed "
                f"Snakemake): its finished result will be adopted; if it dies, this job resumes the run")
            reported = time.time()
        elif time.time() - reported >= report_every_s:
            log(f"still waiting for {describe(holder)}")
            reported = time.time()
        waited = holder
        time.sleep(poll_s)


class RunLock:
    """The lease on one run directory. ``acquire`` before touching the folder, ``release`` at the end
    (also a context manager). A heartbeat thread keeps the lease fresh while training runs."""

    def __init__(self, run_dir: str | os.PathLike, log: Callable[[str], None] = print, name: str = LOCK_NAME):
        self.dir = Path(run_dir)
        self.path = self.dir / name  # another name: a lock on one file of the folder (evaluate/cli.py)
        self.log = log
        self.me: dict[str, Any] | None = None
        self._stop = threading.Event()
        self._beat = threading.Lock()  # the thread and the epoch end both beat; one rename at a time
        self._thread: threading.Thread | None = None
        self.lost: str | None = None  # set by the heartbeat when someone else took the lock

    def _read(self) -> dict[str, Any] | None:
        try:
            data = json.loads(self.path.read_text())
        except FileNotFoundError:
            return None
        except (OSError, ValueError):
            return {}  # being written or garbage: judged by its age below
        return data if isinstance(data, dict) else {}

    def _create(self) -> bool:
        try:
            fd = os.open(self.path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
        except FileExistsError:
            return False
        with os.fdopen(fd, "w") as fh:
            json.dump(self.me, fh)
        return True

    def acquire(self, wait: bool = False) -> dict[str, Any] | None:
        """Take the lock or raise :class:`RunLocked`; an OSError (folder not writable) names the file.
        ``wait``: first wait for a live holder to end (:func:`wait_while_held`); returns that holder."""
        waited = wait_while_held(self.dir, self.log, name=self.path.name) if wait else None
        self.me = _me()
        for _ in range(3):
            try:
                self.dir.mkdir(parents=True, exist_ok=True)
                if self._create():
                    return waited
            except OSError as e:  # read-only, a file in the way, ...: the first write of the run, named
                raise type(e)(e.errno, f"cannot write the run directory --out ({e.strerror})", str(self.path)) from None
            holder = self._read()
            if holder is None:
                continue  # released in between: try again
            if holder == {}:  # unreadable: give a writer a moment, then judge by the file's age
                try:
                    holder = {"heartbeat": self.path.stat().st_mtime, "host": "?", "pid": "?"}
                except FileNotFoundError:
                    continue
            why = stale_reason(holder)
            if why is None:
                raise RunLocked(
                    f"run directory {self.dir} is in use by {describe(holder)}; wait for it to finish or stop "
                    f"it (scancel the SLURM job / kill the pid), then rerun. If you are sure no process uses "
                    f"the folder, delete {self.path}"
                )
            self.log(f"taking over the stale lock {self.path} of {describe(holder)}: {why}")
            try:
                self.path.unlink()
            except FileNotFoundError:
                pass
        raise RunLocked(f"could not take the lock {self.path}: other processes keep taking it; "
                        "rerun when they are done")

    def _owned(self) -> bool:
        return bool(self.me) and (self._read() or {}).get("token") == self.me["token"]

    def heartbeat(self) -> None:
        """Refresh the lease (atomic rewrite); notes in ``lost`` when another process took it over."""
        with self._beat:
            if not self.me or self.lost:
                return
            if not self._owned():
                self.lost = f"the lock {self.path} was taken over by {describe(self._read() or {})}"
                return
            self.me["heartbeat"] = time.time()
            tmp = self.path.with_name(f".{self.path.name}.{os.getpid()}.tmp")
            tmp.write_text(json.dumps(self.me))
            os.replace(tmp, self.path)

    def start_heartbeat(self, every_s: float = HEARTBEAT_S) -> None:
        def beat():
            while not self._stop.wait(every_s):
                try:
                    self.heartbeat()
                except OSError:  # a filesystem hiccup: the next beat tries again, the lease has slack
                    pass
        self._thread = threading.Thread(target=beat, name="run-lock-heartbeat", daemon=True)
        self._thread.start()

    def release(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=5)
            self._thread = None
        if self.me and self._owned():
            try:
                self.path.unlink()
            except FileNotFoundError:
                pass
        self.me = None

    def __enter__(self) -> RunLock:
        self.acquire()
        return self

    def __exit__(self, *exc) -> None:
        self.release()
