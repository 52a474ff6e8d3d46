"""A throw-away single-node SLURM cluster on this host, for tests.

Writes its own munge key, ``slurm.conf``, and ``gres.conf`` (no ``cgroup.conf``: no cgroup plugins) into a
temporary folder and starts ``munged``, ``slurmctld`` and ``slurmd`` in the foreground
with ``subprocess.Popen``; :meth:`SlurmCluster.stop` cancels every job and stops the
daemons by process id (SIGTERM, then SIGKILL). Nothing is installed or written outside
the folder. Clients (``sbatch``, ``squeue``, snakemake's SLURM executor) find the cluster
through ``SLURM_CONF``: use :attr:`SlurmCluster.env` for their environment.

Design choices that make the cluster work without system services:

* no accounting storage (``accounting_storage/none``): ``sacct`` does not work, so job
  status must come from ``squeue`` -- ``MinJobAge`` is large so finished jobs stay
  visible to ``squeue`` (the SLURM executor plugin needs >= 3x its first status interval);
* ``proctrack/linuxproc`` + ``task/none``: no cgroups needed;
* ``select/cons_tres`` with ``CR_Core_Memory``, the node's CPUs and memory from
  ``slurmd -C`` (memory a bit less than physical);
* *fake* GPUs (``GresTypes=gpu``, ``Name=gpu File=/dev/null`` ...), so a
  job that asks for ``--gpus=1`` / ``--gres=gpu:1`` is accepted and scheduled exactly as
  on a real GPU cluster (the job itself simply sees no CUDA device);
* random free ports, so a system slurmctld on 6817/6818 does not collide.

Requires root (SlurmUser=root; slurmd must be able to start jobs); :func:`unavailable_reason`
says why a cluster cannot be started here (used for pytest skips).
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from pathlib import Path

DAEMONS = ("munged", "slurmctld", "slurmd")
CLIENTS = ("sbatch", "squeue", "scancel", "sinfo", "scontrol", "srun")
# client commands that get a wrapper in <root>/bin pinning SLURM_CONF (see write_config)
WRAPPED = CLIENTS + ("sacct", "sacctmgr", "sshare", "salloc", "sstat")


def _which(name: str) -> str | None:
    found = shutil.which(name)
    if found:
        return found
    for d in ("/usr/sbin", "/sbin", "/usr/local/sbin"):
        p = Path(d) / name
        if p.is_file() and os.access(p, os.X_OK):
            return str(p)
    return None


def unavailable_reason() -> str | None:
    """None when a cluster can be started here, else a human-readable reason."""
    missing = [b for b in DAEMONS + CLIENTS if _which(b) is None]
    if missing:
        return (
            "SLURM/munge not installed (missing: " + ", ".join(missing) + "); "
            "run .ci/install-slurm.sh (Debian packages slurm-wlm and munge)"
        )
    if os.geteuid() != 0:
        return "the single-node test cluster runs its daemons as root (SlurmUser=root); not root"
    return None


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _node_hardware() -> dict:
    """CPUs/sockets/cores/threads/memory of this host as slurmd sees them."""
    out = subprocess.run([_which("slurmd"), "-C"], capture_output=True, text=True, check=True).stdout
    first = out.splitlines()[0]
    fields = dict(kv.split("=", 1) for kv in first.split() if "=" in kv)
    return fields


def _set_child_subreaper(on: bool) -> bool:
    """Make this process adopt orphaned descendants (Linux prctl), so that the
    slurmstepd processes slurmd double-forks are reaped by us instead of lingering
    as zombies under a PID 1 that does not reap (containers, sandboxes)."""
    try:
        import ctypes

        libc = ctypes.CDLL(None, use_errno=True)
        PR_SET_CHILD_SUBREAPER = 36
        return libc.prctl(PR_SET_CHILD_SUBREAPER, 1 if on else 0, 0, 0, 0) == 0
    except Exception:
        return False


def _reap_adopted(names=("slurmstepd",)) -> None:
    """Reap zombie children of this process whose command is one of ``names``."""
    me = os.getpid()
    for d in Path("/proc").iterdir():
        if not d.name.isdigit():
            continue
        try:
            stat = (d / "stat").read_text()
        except OSError:
            continue
        comm = stat[stat.find("(") + 1: stat.rfind(")")]
        fields = stat[stat.rfind(")") + 2:].split()
        if fields[0] == "Z" and int(fields[1]) == me and comm in names:
            try:
                os.waitpid(int(d.name), os.WNOHANG)
            except ChildProcessError:
                pass


class SlurmClusterError(RuntimeError):
    pass


class SlurmCluster:
    """Single-node SLURM cluster rooted in ``root`` (created if missing)."""

    def __init__(self, root: str | os.PathLike | None = None, *, partition: str = "debug",
                 gpus: int = 1, min_job_age: int = 900, kill_wait: int = 5):
        self.root = Path(root or tempfile.mkdtemp(prefix="slurm-test-"))
        self.partition = partition
        self.gpus = gpus
        self.min_job_age = min_job_age
        self.kill_wait = kill_wait
        self.procs: dict[str, subprocess.Popen] = {}
        self._logs: dict[str, object] = {}
        self.hostname = socket.gethostname().split(".")[0]
        # A short private folder for the munge socket: unix socket paths are limited
        # to ~107 characters and munged refuses world-writable socket folders.
        self._sockdir = Path(tempfile.mkdtemp(prefix="munge-"))
        self.munge_socket = self._sockdir / "munge.socket"
        self.conf = self.root / "etc" / "slurm.conf"

    # ------------------------------------------------------------------ config
    @property
    def env(self) -> dict:
        """Environment for clients and snakemake: os.environ + SLURM_CONF, minus job vars."""
        env = {k: v for k, v in os.environ.items()
               if not (k.startswith("SLURM_") or k.startswith("SBATCH_") or k.startswith("SALLOC_"))}
        env["SLURM_CONF"] = str(self.conf)
        env["PATH"] = f"{self.root / 'bin'}{os.pathsep}{env.get('PATH', os.defpath)}"
        return env

    def write_config(self) -> None:
        r = self.root
        for d in ("etc", "state", "spool", "log", "run", "munge", "bin"):
            (r / d).mkdir(parents=True, exist_ok=True)
        # Client wrappers that pin SLURM_CONF, for the harness's own commands (self.run) and
        # the toy workflow. The SLURM executor's job step (snakemake-executor-plugin-slurm-
        # jobstep) strips every SLURM_* variable before its nested `srun`; the pipeline
        # passes SLURM_CONF through itself (profile bin/srun), and its tests run without these.
        for name in WRAPPED:
            real = _which(name)
            if real is None:
                continue
            w = r / "bin" / name
            w.write_text(f'#!/bin/sh\nSLURM_CONF="{self.conf}"\nexport SLURM_CONF\nexec "{real}" "$@"\n')
            os.chmod(w, 0o755)
        os.chmod(r / "munge", 0o700)
        os.chmod(self._sockdir, 0o755)
        key = r / "munge" / "munge.key"
        if not key.exists():
            key.write_bytes(os.urandom(1024))
        os.chmod(key, 0o400)

        hw = _node_hardware()
        cpus = int(hw.get("CPUs", os.cpu_count() or 1))
        real_mem = int(hw.get("RealMemory", 2048))
        mem = max(256, int(real_mem * 0.9))
        self.cpus, self.memory_mb = cpus, mem
        node = (
            f"NodeName={self.hostname} NodeAddr=127.0.0.1 CPUs={cpus} "
            f"Boards={hw.get('Boards', 1)} SocketsPerBoard={hw.get('SocketsPerBoard', 1)} "
            f"CoresPerSocket={hw.get('CoresPerSocket', cpus)} ThreadsPerCore={hw.get('ThreadsPerCore', 1)} "
            f"RealMemory={mem} State=UNKNOWN"
        )
        if self.gpus:
            node += f" Gres=gpu:{self.gpus}"
        self.ctld_port, self.slurmd_port = _free_port(), _free_port()
        lines = [
            "# written by tests/slurm/cluster.py -- single-node test cluster",
            "ClusterName=trades-test",
            f"SlurmctldHost={self.hostname}(127.0.0.1)",
            f"SlurmctldPort={self.ctld_port}",
            f"SlurmdPort={self.slurmd_port}",
            "SlurmUser=root",
            "SlurmdUser=root",
            "AuthType=auth/munge",
            "CredType=cred/munge",
            f"AuthInfo=socket={self.munge_socket}",
            f"StateSaveLocation={r / 'state'}",
            f"SlurmdSpoolDir={r / 'spool'}",
            f"SlurmctldPidFile={r / 'run' / 'slurmctld.pid'}",
            f"SlurmdPidFile={r / 'run' / 'slurmd.pid'}",
            f"SlurmctldLogFile={r / 'log' / 'slurmctld.log'}",
            f"SlurmdLogFile={r / 'log' / 'slurmd.log'}",
            "SlurmctldDebug=info",
            "SlurmdDebug=info",
            "ProctrackType=proctrack/linuxproc",
            "TaskPlugin=task/none",
            "MpiDefault=none",
            "SwitchType=switch/none",
            "LaunchParameters=use_interactive_step",
            "SchedulerType=sched/backfill",
            "SelectType=select/cons_tres",
            "SelectTypeParameters=CR_Core_Memory",
            "AccountingStorageType=accounting_storage/none",
            "JobAcctGatherType=jobacct_gather/none",
            "JobCompType=jobcomp/none",
            f"MinJobAge={self.min_job_age}",
            f"KillWait={self.kill_wait}",
            "ReturnToService=2",
            "SlurmdTimeout=300",
            "InactiveLimit=0",
            "Waittime=0",
            f"PlugStackConfig={r / 'etc' / 'plugstack.conf'}",
            "GresTypes=gpu" if self.gpus else "",
            node,
            f"PartitionName={self.partition} Nodes={self.hostname} Default=YES MaxTime=INFINITE State=UP",
            "",
        ]
        self.conf.write_text("\n".join(line for line in lines if line is not None))
        (r / "etc" / "plugstack.conf").write_text("")
        # Fake GPUs: gres/gpu wants one distinct device file per GPU; harmless character
        # devices stand in, so jobs get CUDA_VISIBLE_DEVICES=<index> as on a GPU node.
        fake = ["/dev/null", "/dev/zero", "/dev/full"]
        if self.gpus > len(fake):
            raise SlurmClusterError(f"at most {len(fake)} fake GPUs")
        gres = "".join(f"NodeName={self.hostname} Name=gpu File={f}\n" for f in fake[: self.gpus])
        (r / "etc" / "gres.conf").write_text(gres)

    # ----------------------------------------------------------------- daemons
    def _spawn(self, name: str, argv: list[str]) -> subprocess.Popen:
        log = open(self.root / "log" / f"{name}.stdout", "ab")
        self._logs[name] = log
        proc = subprocess.Popen(argv, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                env=self.env, start_new_session=True)
        self.procs[name] = proc
        return proc

    def _check_alive(self, name: str) -> None:
        proc = self.procs[name]
        if proc.poll() is not None:
            raise SlurmClusterError(f"{name} exited with {proc.returncode}:\n{self.log_tail(name)}")

    def log_tail(self, name: str, n: int = 40) -> str:
        text = ""
        for f in (self.root / "log" / f"{name}.stdout", self.root / "log" / f"{name}.log",
                  self.root / "log" / "munged.log"):
            if f.exists() and (name in f.name):
                text += f"--- {f}\n" + "\n".join(f.read_text(errors="replace").splitlines()[-n:]) + "\n"
        return text

    def start(self, timeout: float = 60.0) -> SlurmCluster:
        reason = unavailable_reason()
        if reason:
            raise SlurmClusterError(reason)
        self.write_config()
        self._subreaper = _set_child_subreaper(True)
        r = self.root
        try:
            self._spawn("munged", [
                _which("munged"), "--foreground", "--force",
                f"--socket={self.munge_socket}", f"--key-file={r / 'munge' / 'munge.key'}",
                f"--pid-file={r / 'run' / 'munged.pid'}", f"--log-file={r / 'log' / 'munged.log'}",
                f"--seed-file={r / 'munge' / 'munged.seed'}",
            ])
            self._wait(lambda: self.munge_socket.exists(), timeout, "munged socket", "munged")
            self._spawn("slurmctld", [_which("slurmctld"), "-D", "-c", "-i", "-f", str(self.conf)])
            self._wait(self._ctld_up, timeout, "slurmctld to answer", "slurmctld")
            self._spawn("slurmd", [_which("slurmd"), "-D", "-f", str(self.conf), "-N", self.hostname])
            self._wait(self._node_ready, timeout, "node to become idle", "slurmd")
        except BaseException:
            self.stop()
            raise
        return self

    def _wait(self, cond, timeout: float, what: str, daemon: str) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            self._check_alive(daemon)
            if cond():
                return
            time.sleep(0.3)
        raise SlurmClusterError(f"timed out waiting for {what}:\n{self.log_tail(daemon)}")

    def run(self, *argv: str, check: bool = True, timeout: float = 30) -> subprocess.CompletedProcess:
        """Run a SLURM client command against this cluster."""
        return subprocess.run([str(self.root / "bin" / argv[0]), *argv[1:]], env=self.env, capture_output=True,
                              text=True, check=check, timeout=timeout)

    def _ctld_up(self) -> bool:
        return self.run("scontrol", "ping", check=False).returncode == 0

    def _node_ready(self) -> bool:
        out = self.run("sinfo", "-h", "-N", "-o", "%T", check=False).stdout.strip().lower()
        if out.startswith("idle") or out.startswith("mixed") or out.startswith("alloc"):
            return True
        if out.startswith(("down", "drain")):
            self.run("scontrol", "update", f"NodeName={self.hostname}", "State=RESUME", check=False)
        return False

    # -------------------------------------------------------------- job helpers
    def jobs(self) -> list[dict]:
        """Every job slurmctld still knows (finished ones for MinJobAge seconds)."""
        out = self.run("squeue", "--states=all", "-h", "-o", "%i|%T|%j|%k").stdout
        rows = []
        for line in out.splitlines():
            jobid, state, name, comment = (line.split("|", 3) + ["", "", ""])[:4]
            rows.append({"jobid": jobid, "state": state, "name": name, "comment": comment})
        return rows

    def wait_job(self, jobid: str, timeout: float = 60) -> str:
        """Wait until a job leaves PENDING/RUNNING/COMPLETING; return its final state."""
        deadline = time.monotonic() + timeout
        state = "?"
        while time.monotonic() < deadline:
            state = next((j["state"] for j in self.jobs() if j["jobid"] == jobid), "GONE")
            if state not in ("PENDING", "CONFIGURING", "RUNNING", "COMPLETING"):
                return state
            time.sleep(0.5)
        raise SlurmClusterError(f"job {jobid} still {state} after {timeout}s")

    # ------------------------------------------------------------------- stop
    def cancel_all(self, timeout: float = 30) -> None:
        if "slurmctld" not in self.procs or self.procs["slurmctld"].poll() is not None:
            return
        self.run("scancel", "--full", "-u", "root", check=False)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                active = [j for j in self.jobs()
                          if j["state"] in ("PENDING", "CONFIGURING", "RUNNING", "COMPLETING", "SUSPENDED")]
            except Exception:
                return
            if not active:
                return
            time.sleep(0.5)

    def stop(self) -> None:
        """Cancel all jobs, then stop slurmd, slurmctld, munged by PID. Idempotent."""
        try:
            self.cancel_all()
        finally:
            for name in ("slurmd", "slurmctld", "munged"):
                proc = self.procs.get(name)
                if proc is None or proc.poll() is not None:
                    continue
                proc.send_signal(signal.SIGTERM)
                try:
                    proc.wait(timeout=20)
                except subprocess.TimeoutExpired:
                    proc.kill()
                    proc.wait(timeout=10)
            if getattr(self, "_subreaper", False):
                time.sleep(0.5)
                _reap_adopted()
                _set_child_subreaper(False)
                self._subreaper = False
            for log in self._logs.values():
                log.close()
            self._logs.clear()
            shutil.rmtree(self._sockdir, ignore_errors=True)

    def __enter__(self) -> SlurmCluster:
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()


if __name__ == "__main__":  # manual check: python tests/slurm/cluster.py
    with SlurmCluster() as c:
        print("cluster up in", c.root)
        out = c.run("sbatch", "--parsable", "--wrap", "hostname", "-o", str(c.root / "job-%j.out")).stdout.strip()
        print("job", out, "->", c.wait_job(out))
        print((c.root / f"job-{out}.out").read_text())
