"""A failed job says why on the console (workflow/failed_jobs.py, the Snakefile's onerror): a real Snakemake
run whose download job cannot reach the network prints that job's last error line, naming the URL and the
folder to fill by hand, not only "check log file(s) for error details"."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from pathlib import Path

import yaml
from _configs import smoke_with_settings

from trades_instability.data import download as DL
from trades_instability.workflow import failed_jobs

ROOT = Path(__file__).resolve().parents[1]


def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]  # closed again on return: connecting is refused at once


def test_a_download_without_network_says_the_url_and_the_folder_on_the_console(tmp_path: Path):
    cfg = smoke_with_settings({"a": {"overrides": {"dataset": "cifar100", "epochs": 1}, "seeds": [0],
                                     "suites": ["cheap"]}})
    conf = tmp_path / "c100.yaml"
    conf.write_text(yaml.safe_dump(cfg))
    work = tmp_path / "work"
    work.mkdir()
    # no network, whatever the machine has: every HTTP(S) request goes to a proxy port that refuses it
    proxy = f"http://127.0.0.1:{_closed_port()}"
    env = {k: v for k, v in os.environ.items() if k.lower() not in ("no_proxy", "http_proxy", "https_proxy")}
    env.update(http_proxy=proxy, https_proxy=proxy, HTTP_PROXY=proxy, HTTPS_PROXY=proxy,
               PATH=f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}")
    r = subprocess.run([sys.executable, "-m", "snakemake", "results/datasets/cifar100.json", "--cores", "1",
                        "--snakefile", str(ROOT / "Snakefile"), "--directory", str(work), "--configfile", str(conf)],
                       capture_output=True, text=True, env=env, timeout=300, check=False)
    console = r.stdout + r.stderr
    assert r.returncode != 0
    src = DL.source("cifar100")
    why = [ln for ln in console.splitlines() if ln.strip().startswith("download (dataset=cifar100): ")]
    assert len(why) == 1, console[-3000:]
    assert "download: error:" in why[0] and src.url in why[0] and str(work / "data") in why[0], why[0]
    assert why[0].rstrip().endswith("[logs/download/cifar100.log]")
    assert "Why the failed jobs failed" in console


def test_the_last_error_line_of_a_log(tmp_path: Path):
    log = tmp_path / "train.log"
    log.write_text("epoch 1/2 ...\nTraceback (most recent call last):\n  File x\nRuntimeError: CUDA out of memory\n"
                   "srun: error: node1: task 0: Exited with exit code 1\n\n")
    assert failed_jobs.last_error_line(log) == "srun: error: node1: task 0: Exited with exit code 1"
    log.write_text("wrote a\nwrote b\n")
    assert failed_jobs.last_error_line(log) == "wrote b"  # no error line: the last line
    log.write_text("")
    assert failed_jobs.last_error_line(log) == "(empty log)"
    assert "no log file" in failed_jobs.last_error_line(tmp_path / "missing.log")


def test_the_fallback_reads_the_logs_named_in_snakemake_s_own_log(tmp_path: Path):
    job_log = tmp_path / "logs" / "evaluate.log"
    job_log.parent.mkdir()
    job_log.write_text("clean ...\ntrades-eval: error: checkpoint x.pt is truncated\n")
    main_log = tmp_path / "snakemake.log"
    main_log.write_text(f"Error in rule evaluate:\n    jobid: 3\n    log: {job_log} (check log file(s) for error "
                        "details)\n")
    assert failed_jobs.lines_from_snakemake_log(main_log) == [
        f"trades-eval: error: checkpoint x.pt is truncated  [{job_log}]"]
