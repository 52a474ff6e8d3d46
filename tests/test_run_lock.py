"""One writer per run directory (rundir/lock.py): a second trainer on the same --out refuses at once with
one line naming the holder; a stale lock (dead pid here, ended SLURM job or silent heartbeat elsewhere)
is taken over; a lock taken over behind a trainer's back stops it."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from trades_instability.rundir import lock as run_lock
from trades_instability.rundir.lock import RunLock, RunLocked
from trades_instability.train.loop import Trainer, train


def _write_lock(run: Path, **holder) -> Path:
    run.mkdir(parents=True, exist_ok=True)
    base = {"host": socket.gethostname(), "pid": os.getpid(), "pid_start": run_lock._proc_start_time(os.getpid()),
            "slurm_job_id": None, "token": "theirs", "started": time.time(), "heartbeat": time.time()}
    path = run / run_lock.LOCK_NAME
    path.write_text(json.dumps({**base, **holder}))
    return path


def _cfg(tmp_path: Path) -> Path:
    cfg = tmp_path / "run.yaml"
    cfg.write_text("dataset: synthetic\nsynthetic: {num_classes: 4, train_size: 64, test_size: 32, image_size: 16}\n"
                   "width: 2\nepochs: 1\nbatch_size: 32\nval_batch_size: 32\nattack: {steps: 3}\ndevice: cpu\n")
    return cfg


def test_a_live_holder_on_this_host_is_refused_in_one_line_and_a_dead_one_is_taken_over(tmp_path: Path, capsys):
    from trades_instability.train.cli import main

    sleeper = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        run = tmp_path / "run"
        lock = _write_lock(run, pid=sleeper.pid, pid_start=run_lock._proc_start_time(sleeper.pid), slurm_job_id="4242")
        assert main(["--config", str(_cfg(tmp_path)), "--out", str(run)]) == 2
        err = capsys.readouterr().err
        assert err.count("\n") == 1 and "Traceback" not in err
        assert f"in use by pid {sleeper.pid} on host {socket.gethostname()}, SLURM job 4242" in err
        assert sorted(p.name for p in run.iterdir()) == [run_lock.LOCK_NAME]  # nothing else touched
        assert json.loads(lock.read_text())["token"] == "theirs"
    finally:
        sleeper.kill()
        sleeper.wait()
    assert main(["--config", str(_cfg(tmp_path)), "--out", str(run)]) == 0  # kill -9 left the lock: stale
    out = capsys.readouterr().out
    assert f"taking over the stale lock {lock}" in out and f"its process {sleeper.pid} on this host is gone" in out
    assert not lock.exists() and (run / "run.json").is_file()


def test_a_zombie_holder_is_gone(tmp_path: Path):
    # a trainer killed with its parent stays a zombie until someone reaps it (in a container PID 1 may
    # never do so); os.kill(pid, 0) still succeeds on it, but the lock must count it as gone
    child = subprocess.Popen([sys.executable, "-c", "pass"])
    try:
        for _ in range(200):  # exited, not reaped yet
            if run_lock._proc_state(child.pid) == "Z":
                break
            time.sleep(0.05)
        assert run_lock._proc_state(child.pid) == "Z"
        os.kill(child.pid, 0)  # the plain liveness check would call it alive
        _write_lock(tmp_path, pid=child.pid, pid_start=run_lock._proc_start_time(child.pid))
        assert "is gone" in run_lock.stale_reason(json.loads((tmp_path / run_lock.LOCK_NAME).read_text()))
    finally:
        child.wait()


def test_a_reused_pid_does_not_keep_a_lock_alive(tmp_path: Path):
    # the recorded pid is alive (this test) but started at another time: a different process
    _write_lock(tmp_path, pid_start="1")
    with RunLock(tmp_path, log=lambda m: None) as lock:
        assert lock._owned()


@pytest.mark.parametrize(
    ("slurm_state", "heartbeat_age", "taken"),
    [
        (None, 5, False),        # no scheduler to ask, fresh heartbeat: the other node is training
        (None, 10_000, True),    # no scheduler, heartbeat long silent: stale
        ("RUNNING", 10_000, False),  # the scheduler says the job runs: trust it over the heartbeat
        ("", 5, True),           # the scheduler no longer lists the job: it ended
        ("CANCELLED", 5, True),
    ],
)
def test_a_lock_from_another_node_follows_the_scheduler_then_the_heartbeat(tmp_path: Path, monkeypatch, slurm_state,
                                                                           heartbeat_age, taken):
    monkeypatch.setattr(run_lock, "slurm_job_state", lambda job: slurm_state)
    _write_lock(tmp_path, host="node-elsewhere", pid=123, slurm_job_id="777", heartbeat=time.time() - heartbeat_age)
    messages: list[str] = []
    lock = RunLock(tmp_path, log=messages.append)
    if taken:
        lock.acquire()
        assert lock._owned() and any("taking over the stale lock" in m for m in messages)
        lock.release()
        assert not (tmp_path / run_lock.LOCK_NAME).exists()
    else:
        with pytest.raises(RunLocked, match=r"in use by pid 123 on host node-elsewhere, SLURM job 777.*scancel"):
            lock.acquire()


def test_the_heartbeat_refreshes_the_lease_and_a_takeover_stops_the_trainer(tmp_path: Path, tiny_run_config):
    lock = RunLock(tmp_path / "a", log=lambda m: None)
    lock.acquire()
    first = json.loads(lock.path.read_text())["heartbeat"]
    time.sleep(0.01)
    lock.heartbeat()
    assert json.loads(lock.path.read_text())["heartbeat"] > first
    lock.release()

    out = tmp_path / "b"

    def log(m: str) -> None:  # after epoch 1, another process takes the lock (e.g. it judged it stale)
        if m.startswith("epoch   1/"):
            _write_lock(out, host="node-elsewhere", token="intruder")

    with pytest.raises(RunLocked, match="taken over by pid .* on host node-elsewhere.*stopping after epoch 2"):
        train(tiny_run_config(epochs=3), out, log=log)
    assert json.loads((out / run_lock.LOCK_NAME).read_text())["token"] == "intruder"  # theirs is left alone


def test_the_lock_is_released_when_training_stops(tmp_path: Path, tiny_run_config):
    from trades_instability.train.loop import Interrupted

    with pytest.raises(Interrupted):
        Trainer(tiny_run_config(epochs=2), tmp_path, log=lambda m: None, stop_after_epoch=1).run()
    assert not (tmp_path / run_lock.LOCK_NAME).exists()


@pytest.mark.slow
def test_two_trainers_on_the_same_folder_one_refuses_at_once(tmp_path: Path):
    cfg = tmp_path / "run.yaml"
    cfg.write_text("dataset: synthetic\nsynthetic: {num_classes: 4, train_size: 192, test_size: 32, image_size: 16}\n"
                   "width: 2\nepochs: 4\nbatch_size: 32\nval_batch_size: 32\nattack: {steps: 3}\ndevice: cpu\n")
    cmd = [sys.executable, "-m", "trades_instability", "train", "--config", str(cfg), "--out", str(tmp_path / "run"),
           "--threads", "1"]
    first = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    t0 = time.time()
    while not (tmp_path / "run" / run_lock.LOCK_NAME).exists():
        assert first.poll() is None and time.time() - t0 < 60
        time.sleep(0.05)
    t1 = time.time()
    second = subprocess.run(cmd, capture_output=True, text=True, timeout=120)
    assert second.returncode == 2 and f"in use by pid {first.pid}" in second.stderr, second.stderr
    assert time.time() - t1 < 30  # refused before loading data or training
    out, _ = first.communicate(timeout=300)
    assert first.returncode == 0, out
    assert json.loads((tmp_path / "run" / "run.json").read_text())["status"] == "complete"


def test_the_pipeline_never_moves_a_state_folder_away_under_a_live_trainer(tmp_path: Path):
    from trades_instability.rundir import state as run_state

    conf = tmp_path / "config.yaml"
    conf.write_text("beta: 6.0\n")
    state = tmp_path / "state"
    _write_lock(state)  # held by this (live) process, started with another config
    (state / "run_config.yaml").write_text("beta: 3.0\n")
    with pytest.raises(run_state.RunStateError, match=f"{state} is in use by pid {os.getpid()}.*cancel that job"):
        run_state.prepare_state(conf, state)
    assert (state / "run_config.yaml").read_text() == "beta: 3.0\n"
