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
from _configs import smoke_with_settings

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
    from trades_instability.train.errors import Interrupted

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


def test_the_pipeline_waits_for_a_live_trainer_and_never_moves_its_folder_away(tmp_path: Path, monkeypatch):
    from trades_instability.rundir import state as run_state

    monkeypatch.setattr(run_lock, "POLL_S", 0.05)
    conf = tmp_path / "config.yaml"
    conf.write_text("beta: 6.0\n")
    state = tmp_path / "state"
    sleeper = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        _write_lock(state, pid=sleeper.pid, pid_start=run_lock._proc_start_time(sleeper.pid))  # another config
        (state / "run_config.yaml").write_text("beta: 3.0\n")
        seen: list[str] = []

        def log(m: str) -> None:  # while it waits, the folder is untouched; then the holder dies
            seen.append(m)
            assert (state / "run_config.yaml").read_text() == "beta: 3.0\n"
            sleeper.kill()

        msg = run_state.prepare_state(conf, state, log=log)
    finally:
        sleeper.kill()
        sleeper.wait()
    assert len(seen) == 1 and f"waiting for pid {sleeper.pid}" in seen[0] and "adopted" in seen[0]
    assert msg.startswith(f"pid {sleeper.pid} on host") and "ended before finishing the run: moved" in msg
    assert (state / "run_config.yaml").read_text() == "beta: 6.0\n"


def test_a_holder_whose_heartbeat_stopped_is_not_waited_for_forever(tmp_path: Path):
    from trades_instability.rundir import state as run_state

    conf = tmp_path / "config.yaml"
    conf.write_text("beta: 6.0\n")
    # alive (this process) but silent for longer than the lease: hung; the folder is left as it is
    _write_lock(tmp_path / "state", heartbeat=time.time() - run_lock.STALE_AFTER_S - 5)
    with pytest.raises(run_state.RunStateError, match=r"heartbeat stopped while its process still runs.*kill"):
        run_state.prepare_state(conf, tmp_path / "state")
    assert sorted(p.name for p in (tmp_path / "state").iterdir()) == [run_lock.LOCK_NAME]


def test_a_trainer_adopts_a_finished_run_as_it_is(tmp_path: Path, tiny_run_config):
    cfg = tiny_run_config(epochs=1)
    first = train(cfg, tmp_path, log=lambda m: None)
    before = {p: (p.stat().st_mtime_ns, p.read_bytes()) for p in tmp_path.rglob("*") if p.is_file()}
    messages: list[str] = []
    again = train(tiny_run_config(epochs=1, tensorboard=False), tmp_path, log=messages.append)  # output-only key
    assert again == first
    assert messages == [f"{tmp_path / 'run.json'} records this run as finished (complete): adopting it as it is"]
    assert {p: (p.stat().st_mtime_ns, p.read_bytes()) for p in tmp_path.rglob("*") if p.is_file()} == before
    with pytest.raises(Exception, match="different config"):  # another experiment is not adopted
        train(tiny_run_config(epochs=1, beta=1.0), tmp_path, log=lambda m: None)


# ------------------------------------------------ a rerun next to a job a killed Snakemake left running
REPO = Path(__file__).resolve().parents[1]
ORPHAN_EPOCHS = 40


def _orphan_config(tmp_path: Path) -> Path:
    import yaml

    cfg = smoke_with_settings({"a": {"seeds": [0], "suites": ["cheap"]}})
    cfg["defaults"]["synthetic"] = {"num_classes": 4, "train_size": 64, "test_size": 32, "image_size": 8, "seed": 0}
    cfg["defaults"].update(epochs=ORPHAN_EPOCHS, width=2, val_size=16, attack={"steps": 2}, tensorboard=False)
    path = tmp_path / "orphan.yaml"
    path.write_text(yaml.safe_dump(cfg))
    return path


def _snakemake(tmp_path: Path, *args: str) -> list[str]:
    return [sys.executable, "-m", "snakemake", "results/runs/a/seed0/run.json", *args, "--snakefile",
            str(REPO / "Snakefile"), "--directory", str(tmp_path / "work"), "--configfile",
            str(_orphan_config(tmp_path)), "--cores", "1"]


def _orphan(tmp_path: Path) -> tuple[Path, int]:
    """Start Snakemake, kill -9 it (only it) once its training job saved an epoch: the job goes on, an
    orphan. Returns the run directory and the orphaned trainer's pid."""
    env = {**os.environ, "TRADES_LOCK_POLL_S": "0.2"}
    first = subprocess.Popen(_snakemake(tmp_path), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=env)
    run = tmp_path / "work/results/runs/a/seed0"
    t0 = time.time()
    while not (run / "state/checkpoints/last.pt").exists():
        assert first.poll() is None and time.time() - t0 < 300, "no epoch saved in time"
        time.sleep(0.05)
    first.kill()
    first.wait()
    holder = json.loads((run / "state" / run_lock.LOCK_NAME).read_text())
    assert run_lock._pid_alive(holder["pid"])  # the trainer outlived its Snakemake
    unlock = subprocess.run(_snakemake(tmp_path, "--unlock"), capture_output=True, text=True, timeout=300,
                            check=False)
    assert unlock.returncode == 0, unlock.stdout + unlock.stderr
    return run, holder["pid"]


def _epochs(run: Path) -> list[int]:
    import csv

    with open(run / "epochs.csv", newline="") as fh:
        return [int(r["epoch"]) for r in csv.DictReader(fh)]


@pytest.mark.slow
def test_a_rerun_waits_for_a_live_orphan_and_adopts_its_result(tmp_path: Path):
    run, orphan = _orphan(tmp_path)
    env = {**os.environ, "TRADES_LOCK_POLL_S": "0.2"}
    again = subprocess.run(_snakemake(tmp_path, "--rerun-incomplete"), capture_output=True, text=True, timeout=600,
                           env=env, check=False)
    assert again.returncode == 0, again.stdout + again.stderr
    assert not run_lock._pid_alive(orphan)
    log = (run / "train.log").read_text()
    assert f"waiting for pid {orphan} on host" in log, log
    assert f"pid {orphan} on host {socket.gethostname()}" in log and "finished the run: adopting its result" in log
    assert "records this run as finished (complete): adopting it as it is" in log
    assert log.count("training trades") == 1 and "resumed from" not in log  # one trainer wrote the run
    assert _epochs(run) == list(range(1, ORPHAN_EPOCHS + 1))
    for name in ("run.json", "epochs.csv", "batches.csv", "checkpoints/best.pt", "checkpoints/last.pt"):
        assert (run / name).read_bytes() == (run / "state" / name).read_bytes(), name  # published, none deleted
    assert json.loads((run / "run.json").read_text())["status"] == "complete"


@pytest.mark.slow
def test_a_rerun_waiting_for_an_orphan_that_dies_takes_the_lock_and_resumes(tmp_path: Path):
    import signal

    run, orphan = _orphan(tmp_path)
    env = {**os.environ, "TRADES_LOCK_POLL_S": "0.2"}
    again = subprocess.Popen(_snakemake(tmp_path, "--rerun-incomplete"), stdout=subprocess.PIPE,
                             stderr=subprocess.STDOUT, text=True, env=env)
    try:
        t0 = time.time()
        while f"waiting for pid {orphan}" not in (run / "train.log").read_text():
            assert again.poll() is None and time.time() - t0 < 300, "the rerun never waited for the orphan"
            time.sleep(0.05)
        os.kill(orphan, signal.SIGKILL)  # the holder dies while the rerun waits
        out, _ = again.communicate(timeout=600)
    finally:
        if again.poll() is None:
            again.kill()
            again.wait()
    assert again.returncode == 0, out
    log = (run / "train.log").read_text()
    assert "ended before finishing the run: resuming from" in log
    assert "taking over the stale lock" in log and f"its process {orphan} on this host is gone" in log
    assert "resumed from" in log
    assert _epochs(run) == list(range(1, ORPHAN_EPOCHS + 1))
    assert json.loads((run / "run.json").read_text())["status"] == "complete"


@pytest.mark.slow
def test_a_second_evaluation_of_one_output_waits_and_adopts_the_first_one_s(tmp_path: Path, tiny_run_config):
    train(tiny_run_config(epochs=1, tensorboard=False), tmp_path / "run", log=lambda m: None)
    suites = tmp_path / "suites.yaml"  # long enough (PGD with many steps) to start a second one meanwhile
    suites.write_text("slow: {attacks: [clean, pgd10], n_examples: 32, batch_size: 32, pgd_steps: 800}\n")
    out = tmp_path / "run" / "eval_slow.json"
    best = tmp_path / "run/checkpoints/best.pt"
    cmd = [sys.executable, "-m", "trades_instability", "eval", "--checkpoint", str(best), "--suite", "slow",
           "--suites", str(suites), "--out", str(out), "--device", "cpu"]
    env = {**os.environ, "TRADES_LOCK_POLL_S": "0.1", "OMP_NUM_THREADS": "1"}
    first = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env)
    try:
        lock = tmp_path / "run" / ".eval_slow.json.lock"
        t0 = time.time()
        while not lock.exists():
            assert first.poll() is None and time.time() - t0 < 120, first.stdout.read()
            time.sleep(0.02)
        second = subprocess.run(cmd, capture_output=True, text=True, timeout=600, env=env, check=False)
        first_out, _ = first.communicate(timeout=600)
    finally:
        if first.poll() is None:
            first.kill()
            first.wait()
    assert first.returncode == 0 and f"-> {out}" in first_out, first_out
    assert second.returncode == 0, second.stdout + second.stderr
    assert f"waiting for pid {first.pid} on host" in second.stdout
    assert f"{out} was written by pid {first.pid}" in second.stdout and "adopting it as it is" in second.stdout
    assert "trades-eval: slow (epoch" not in second.stdout  # it evaluated nothing
    assert json.loads(out.read_text())["suite"] == "slow" and not lock.exists()
