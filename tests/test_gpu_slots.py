"""One GPU per local job (trades_instability.workflow.gpu_slots), with real processes and real file locks: concurrent
jobs get different CUDA_VISIBLE_DEVICES, jobs_per_gpu jobs share a GPU on purpose, a killed job's slot is
free again, and without the workflow's settings (SLURM) the command runs unchanged."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from trades_instability.workflow import gpu_slots

SRC = str(Path(__file__).resolve().parents[1] / "src")

# a dummy GPU job: writes the GPU it was given, then waits until told to finish
JOB = ("import os, pathlib, sys, time; d = pathlib.Path(sys.argv[1]); "
       "(d / (sys.argv[2] + '.gpu')).write_text(os.environ.get('CUDA_VISIBLE_DEVICES', '<unset>')); "
       "[time.sleep(0.05) for _ in range(2400) if not (d / (sys.argv[2] + '.done')).exists()]")


def _start(tmp_path: Path, name: str, *, gpus_of_job: int = 1, settings: dict | None, env_extra=None):
    env = {**os.environ, "PYTHONPATH": SRC}
    env.pop(gpu_slots.ENV_GPU_SLOTS, None)
    env.pop("CUDA_VISIBLE_DEVICES", None)
    if settings is not None:
        env[gpu_slots.ENV_GPU_SLOTS] = json.dumps(settings)
    env.update(env_extra or {})
    return subprocess.Popen([sys.executable, "-m", "trades_instability", "gpu-slot", str(gpus_of_job), "--",
                             sys.executable, "-c", JOB, str(tmp_path), name],
                            env=env, stderr=subprocess.PIPE, text=True)


def _gpu_of(tmp_path: Path, name: str, timeout: float = 30.0) -> str:
    f = tmp_path / f"{name}.gpu"
    end = time.monotonic() + timeout
    while not f.exists():
        assert time.monotonic() < end, f"job {name} never started"
        time.sleep(0.05)
    time.sleep(0.05)
    return f.read_text()


def _finish(tmp_path: Path, *jobs: tuple[str, subprocess.Popen]) -> None:
    for name, proc in jobs:
        (tmp_path / f"{name}.done").write_text("")
        assert proc.wait(timeout=30) == 0, proc.stderr.read()


def _settings(tmp_path: Path, devices: list[str], per_gpu: int) -> dict:
    return {"dir": str(tmp_path / "slots"), "devices": devices, "jobs_per_gpu": per_gpu}


def test_slot_order_spreads_jobs_over_the_gpus_first():
    assert gpu_slots.slot_order(2, 2) == [(0, 0), (1, 0), (0, 1), (1, 1)]
    assert gpu_slots.slot_order(3, 1) == [(0, 0), (1, 0), (2, 0)]


def test_two_concurrent_jobs_get_different_gpus_and_a_killed_jobs_gpu_is_free_again(tmp_path):
    s = _settings(tmp_path, ["0", "1"], 1)
    a, b = _start(tmp_path, "a", settings=s), _start(tmp_path, "b", settings=s)
    ga, gb = _gpu_of(tmp_path, "a"), _gpu_of(tmp_path, "b")
    assert {ga, gb} == {"0", "1"}, (ga, gb)
    # both GPUs taken: a third job waits ...
    c = _start(tmp_path, "c", settings=s)
    time.sleep(1.5)
    assert not (tmp_path / "c.gpu").exists() and c.poll() is None
    # ... until a job dies without any clean-up (kill -9): the kernel frees its lock, the third job gets its GPU
    a.send_signal(signal.SIGKILL)
    a.wait(timeout=10)
    assert _gpu_of(tmp_path, "c") == ga
    _finish(tmp_path, ("b", b), ("c", c))
    said = c.stderr.read()
    assert "waiting for one to be freed" in said and f"this job runs on GPU {ga}" in said, said


def test_jobs_per_gpu_shares_one_gpu_on_purpose(tmp_path):
    s = _settings(tmp_path, ["3"], 2)  # e.g. CUDA_VISIBLE_DEVICES=3 given by the user: ids are passed through
    a, b = _start(tmp_path, "a", settings=s), _start(tmp_path, "b", settings=s)
    assert (_gpu_of(tmp_path, "a"), _gpu_of(tmp_path, "b")) == ("3", "3")
    held = sorted(p.name for p in (tmp_path / "slots").iterdir())
    assert held == ["gpu0.slot0.lock", "gpu0.slot1.lock"]
    # a third would have to wait; the library call gives up after wait_s with the holders named
    with pytest.raises(gpu_slots.GpuSlotsError, match="2 GPU slots .* stayed taken") as e:
        gpu_slots.acquire(s["dir"], s["devices"], 2, wait_s=0.3, poll_s=0.05)
    assert f"pid {a.pid}" in str(e.value) and f"pid {b.pid}" in str(e.value)
    _finish(tmp_path, ("a", a), ("b", b))
    lease = gpu_slots.acquire(s["dir"], s["devices"], 2, wait_s=0)  # both released at exit
    assert (lease.device, lease.slot) == ("3", 0)
    lease.release()


def test_without_workflow_settings_or_without_a_gpu_claim_the_command_runs_unchanged(tmp_path):
    # SLURM: the scheduler's CUDA_VISIBLE_DEVICES is kept, no lease is taken
    a = _start(tmp_path, "a", settings=None, env_extra={"CUDA_VISIBLE_DEVICES": "7"})
    assert _gpu_of(tmp_path, "a") == "7"
    # a job that claims gpu=0 takes no slot even when the workflow assigns GPUs
    b = _start(tmp_path, "b", gpus_of_job=0, settings=_settings(tmp_path, ["0"], 1))
    assert _gpu_of(tmp_path, "b") == "<unset>"
    _finish(tmp_path, ("a", a), ("b", b))
    assert not (tmp_path / "slots").exists()


def test_local_settings_follow_the_users_visible_devices():
    assert gpu_slots.local_settings("/x", 2, 3, None)["devices"] == ["0", "1"]
    assert gpu_slots.local_settings("/x", 2, 1, "4, 6,7")["devices"] == ["4", "6"]
    with pytest.raises(gpu_slots.GpuSlotsError, match="CUDA_VISIBLE_DEVICES='5' lists 1"):
        gpu_slots.local_settings("/x", 2, 1, "5")


def test_bad_settings_and_usage_are_one_line(tmp_path, capsys):
    with pytest.raises(gpu_slots.GpuSlotsError, match="not valid"):
        gpu_slots.settings_from_env({gpu_slots.ENV_GPU_SLOTS: "{oops"})
    assert gpu_slots.main(["x", "--", "true"]) == 2
    assert "usage" in capsys.readouterr().err
    assert gpu_slots.main(["--help"]) == 0  # asked for: the usage on stdout, success
    assert capsys.readouterr().out.startswith("usage: python -m trades_instability gpu-slot")
