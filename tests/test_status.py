"""`python -m trades_instability status` on a results folder that holds every state, made by real tiny runs
started the way the train rule starts them (run config, --out state/, --log-file train.log): one finished
(its FOSC above a tiny fix threshold), one diverged, one running (a live trainer), one killed with SIGKILL
(its epochs.csv then half rewritten, as a folder copied mid-write would be), one failed, one pending."""

from __future__ import annotations

import json
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from trades_instability.config.pipeline_loading import load
from trades_instability.rundir import layout
from trades_instability.rundir.progress import read_csv_rows
from trades_instability.status import main

PIPELINE = """
results_dir: {results}
data_root: {tmp}/nodata
download: false
defaults:
  dataset: synthetic
  synthetic: {{num_classes: 4, train_size: 96, test_size: 32, image_size: 16, seed: 0}}
  width: 2
  epochs: 3
  batch_size: 32
  val_batch_size: 32
  attack: {{steps: 3}}
  device: cpu
  tensorboard: false
seeds: {{one: [0], two: [0, 1]}}
settings:
  fin: {{overrides: {{fix: {{fosc_threshold: 0.0001}}}}, seeds: one, suites: [cheap]}}
  div: {{overrides: {{beta: 1.0e+40}}, seeds: one, suites: [cheap]}}
  long: {{overrides: {{epochs: 400}}, seeds: two, suites: [cheap]}}
  bad: {{overrides: {{dataset: cifar10}}, seeds: one, suites: [cheap]}}
  later: {{seeds: one, suites: [cheap]}}
resources:
  train: {{gpu: 0, threads: 1, mem_mb: 1000, minutes_base: 1, minutes_per_epoch: {{synthetic: 1.0}}}}
  evaluate: {{gpu: 0, threads: 1, mem_mb: 1000, minutes: {{default: 1}}}}
  landscape: {{gpu: 0, threads: 1, mem_mb: 1000, minutes: 1}}
"""


def _train_cmd(cfg, results: str, setting: str, seed: int) -> list[str]:
    run = Path(layout.run_dir(results, setting, seed))
    run.mkdir(parents=True, exist_ok=True)
    (run / layout.RUN_CONFIG).write_text(cfg.run_config_yaml(setting, seed))
    return [sys.executable, "-m", "trades_instability", "train", "--config", str(run / layout.RUN_CONFIG),
            "--out", layout.state_dir(str(run)), "--on-diverge", "record", "--no-progress", "--threads", "1",
            "--log-file", str(run / "train.log")]


def _epochs_done(results: str, setting: str, seed: int) -> int:
    return len(read_csv_rows(Path(layout.state_dir(layout.run_dir(results, setting, seed))) / layout.EPOCHS_CSV))


def _wait_for(cond, what: str, timeout: float = 180) -> None:
    deadline = time.time() + timeout
    while not cond():
        assert time.time() < deadline, f"timed out waiting for {what}"
        time.sleep(0.1)


@pytest.fixture(scope="module")
def sweep(tmp_path_factory):
    """The results folder, the config file and the live trainer (killed at the end)."""
    tmp = tmp_path_factory.mktemp("sweep")
    results = str(tmp / "results")
    config = tmp / "config.yaml"
    config.write_text(PIPELINE.format(results=results, tmp=tmp))
    cfg = load(config)
    killed = subprocess.Popen(_train_cmd(cfg, results, "long", 1), stdout=subprocess.DEVNULL,
                              stderr=subprocess.DEVNULL)
    running = subprocess.Popen(_train_cmd(cfg, results, "long", 0), stdout=subprocess.DEVNULL,
                               stderr=subprocess.DEVNULL)
    try:
        for setting, code in (("fin", 0), ("div", 0), ("bad", 2)):
            r = subprocess.run(_train_cmd(cfg, results, setting, 0), capture_output=True, text=True, timeout=300,
                               check=False)
            assert r.returncode == code, r.stderr
        _wait_for(lambda: _epochs_done(results, "long", 1) >= 2, "two epochs of the run to kill")
        killed.send_signal(signal.SIGKILL)
        killed.wait()
        # a half-written last line (a folder copied while the trainer rewrote it)
        with open(Path(layout.state_dir(layout.run_dir(results, "long", 1))) / layout.EPOCHS_CSV, "a") as fh:
            fh.write("3,0.1,1.23")
        _wait_for(lambda: _epochs_done(results, "long", 0) >= 1, "an epoch of the running run")
        yield results, config, running
    finally:
        for p in (killed, running):
            if p.poll() is None:
                p.kill()
            p.wait()


def _status_json(capsys, *args) -> dict:
    assert main(list(args) + ["--json"]) == 0
    return json.loads(capsys.readouterr().out)


def test_status_names_every_state_with_its_numbers(sweep, capsys):
    results, config, running = sweep
    assert running.poll() is None
    got = _status_json(capsys, "--configfile", str(config), "--results-dir", results)
    runs = {(r["setting"], r["seed"]): r for r in got["runs"]}
    assert {k: r["state"] for k, r in runs.items()} == {
        ("fin", 0): "finished", ("div", 0): "diverged", ("long", 0): "running", ("long", 1): "interrupted-resumable",
        ("bad", 0): "failed", ("later", 0): "pending"}
    # the finished run: its last epoch, flagged by its own fix threshold, the device of its run.json
    fin_rows = read_csv_rows(Path(layout.state_dir(layout.run_dir(results, "fin", 0))) / layout.EPOCHS_CSV)
    fin = runs[("fin", 0)]
    assert fin["epoch"] == fin["epochs"] == 3 and fin["eta_s"] is None
    assert fin["val_pgd_acc"] == float(fin_rows[-1]["val_pgd_acc"])
    assert fin["val_fosc"] == float(fin_rows[-1]["val_fosc"])
    assert fin["fosc_flagged"] and fin["gpu"].startswith("cpu") and fin["host"] == socket.gethostname()
    assert fin["s_per_epoch"] == pytest.approx(sum(float(r["epoch_time_s"]) for r in fin_rows) / 3)
    # the live trainer: the holder of its lock, and an ETA from its measured epochs
    live = runs[("long", 0)]
    assert live["host"] == socket.gethostname() and f"pid {running.pid}" in live["reason"]
    assert live["epochs"] == 400 and live["eta_s"] == pytest.approx((400 - live["epoch"]) * live["s_per_epoch"])
    # killed after epoch 2 (or later), then a half line appended: only complete rows count
    assert runs[("long", 1)]["epoch"] >= 2 and runs[("long", 1)]["eta_s"] > 0
    assert "trades-train: error:" in runs[("bad", 0)]["reason"] and "cifar" in runs[("bad", 0)]["reason"].lower()
    assert runs[("div", 0)]["epoch"] == 0 and "non-finite loss" in runs[("div", 0)]["reason"]
    s = got["summary"]
    assert s["states"] == {"pending": 1, "running": 1, "finished": 1, "failed": 1, "diverged": 1,
                           "interrupted-resumable": 1}
    assert [f["run"] for f in s["flagged"]] == ["fin/seed0"] + (["long/seed0"] if live["fosc_flagged"] else []) + (
        ["long/seed1"] if runs[("long", 1)]["fosc_flagged"] else [])
    spent = sum(r["spent_s"] for r in got["runs"]) / 3600
    assert s["unit"].startswith("CPU-hours") and s["spent_h"] == pytest.approx(spent)
    # remaining: each unfinished run at its own rate; `later` and `bad` (no epoch) at the mean of all
    rates = [r["s_per_epoch"] for r in got["runs"] if r["s_per_epoch"]]
    remaining = sum((r["epochs"] - r["epoch"]) * (r["s_per_epoch"] or sum(rates) / len(rates))
                    for r in got["runs"] if r["state"] not in ("finished", "diverged"))
    assert s["projected_h"] == pytest.approx(spent + remaining / 3600)


def test_the_table_flags_fosc_and_summarizes(sweep, capsys):
    results, config, _ = sweep
    assert main(["--configfile", str(config), "--results-dir", results]) == 0
    out = capsys.readouterr().out
    lines = out.splitlines()
    assert lines[0].split() == ["setting", "seed", "state", "epoch", "clean", "pgd10", "fosc", "noise", "s/epoch",
                                "eta", "host/gpu"]
    fin = next(ln for ln in lines if ln.startswith("fin "))
    assert " finished " in fin and "3/3" in fin and "!" in fin
    assert next(ln for ln in lines if ln.startswith("later ")).split()[2:4] == ["pending", "0/3"]
    assert (f"6 runs in {results}: 1 pending, 1 running, 1 finished, 1 failed, 1 diverged, "
            "1 interrupted-resumable") in out
    assert "FOSC above the fix threshold at the last epoch (!): fin/seed0 (" in out
    assert "CPU-hours (train jobs ask for no GPU): " in out and "failed bad/seed0: trades-train: error:" in out


def test_watch_refreshes_until_stopped(sweep):
    results, config, _ = sweep
    proc = subprocess.Popen([sys.executable, "-m", "trades_instability", "status", "--configfile", str(config),
                             "--results-dir", results, "--watch", "0.5", "--json"],
                            stdout=subprocess.PIPE, text=True)
    try:
        first, second = json.loads(proc.stdout.readline()), json.loads(proc.stdout.readline())
        assert second["time"] > first["time"] and len(second["runs"]) == 6
    finally:
        proc.send_signal(signal.SIGINT)
        assert proc.wait(timeout=30) == 0


def test_bad_input_is_one_line(tmp_path, capsys):
    assert main(["--configfile", str(tmp_path / "missing.yaml")]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "missing.yaml not found" in err and "--configfile" in err
    with pytest.raises(SystemExit) as e:
        main(["--watch", "0"])
    assert e.value.code == 2 and "must be > 0 seconds" in capsys.readouterr().err


def test_half_written_csv_lines_are_left_out(tmp_path):
    p = tmp_path / "epochs.csv"
    p.write_text("epoch,val_fosc\n1,0.5\n2,0.")
    assert read_csv_rows(p) == [{"epoch": "1", "val_fosc": "0.5"}]
    p.write_text("epoch,val_fosc\n1,0.5\n2\n")
    assert read_csv_rows(p) == [{"epoch": "1", "val_fosc": "0.5"}]
    assert read_csv_rows(tmp_path / "none.csv") == []
