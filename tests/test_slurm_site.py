"""Start-up checks of the SLURM runs (trades_instability.workflow.slurm_site) and the profile's srun wrapper,
with scripted sacct / scontrol answers; tests/test_slurm.py runs them on the real scheduler."""

from __future__ import annotations

import logging
import os
import subprocess
from pathlib import Path
from types import SimpleNamespace

import pytest

from trades_instability.workflow import slurm_site as ss

REPO = Path(__file__).resolve().parents[1]
WRAPPER_DIR = REPO / "workflow" / "profiles" / "slurm" / "bin"
DISABLED = "Slurm accounting storage is disabled"


def _fake_run(sacct_rc=1, sacct_err=DISABLED + "\n", min_job_age="300 sec"):
    calls = []

    def run(argv):
        calls.append(argv[0])
        if argv[0] == "sacct":
            return subprocess.CompletedProcess(argv, sacct_rc, "", sacct_err)
        return subprocess.CompletedProcess(argv, 0, f"AccountingStorageType   = accounting_storage/none\n"
                                                    f"MinJobAge               = {min_job_age}\n", "")
    run.calls = calls
    return run


def test_probes_read_sacct_and_scontrol():
    assert ss.accounting_error(_fake_run()) == DISABLED
    assert ss.accounting_error(_fake_run(sacct_rc=0, sacct_err="")) is None
    assert ss.accounting_error(_fake_run(sacct_err="sacct: error: slurmdbd not responding")) is None

    def missing(argv):
        raise FileNotFoundError(argv[0])
    assert ss.accounting_error(missing) is None and ss.min_job_age(missing) is None
    assert ss.min_job_age(_fake_run(min_job_age="900 sec")) == 900


@pytest.mark.parametrize("configured", ["sacct", "squeue", None])
def test_status_command_kept_where_accounting_works(configured):
    assert ss.choose_status_command(configured, None, None) == (configured, None)


def test_no_accounting_switches_to_squeue_with_one_line():
    cmd, line = ss.choose_status_command("sacct", DISABLED, 300, init_seconds=40)
    assert cmd == "squeue" and DISABLED in line and "TRADES_SLURM_STATUS_COMMAND=squeue" in line
    assert "\n" not in line
    assert ss.choose_status_command("squeue", DISABLED, 300, init_seconds=40) == ("squeue", None)


@pytest.mark.parametrize("configured", ["sacct", "squeue"])
@pytest.mark.parametrize("age", [60, None])
def test_no_accounting_and_short_min_job_age_stops_with_the_fix(configured, age):
    # the plugin itself falls back from squeue to sacct below 3 x 40 s: that would hang too
    with pytest.raises(ss.SlurmSiteError, match=r"MinJobAge=300 .*slurm\.conf"):
        ss.choose_status_command(configured, DISABLED, age, init_seconds=40)
    assert ss.choose_status_command(configured, DISABLED, 60, init_seconds=20)[0] == "squeue"


def _plugin_noise(logger: logging.Logger) -> None:
    # the three warnings snakemake-executor-plugin-slurm 2.8 logs when it guesses an account
    logger.warning("No SLURM account given, trying to guess.")
    logger.warning("No account was given, not able to get a SLURM account via sacct: sacct: invalid option -- '1'\n"
                   "Try \"sacct --help\" for more information")
    logger.warning("Unable to guess SLURM account. Trying to proceed without.")


def test_account_noise_becomes_one_line(caplog):
    logger = logging.getLogger("test_slurm_site.noise")
    logger.addFilter(ss.AccountNoiseFilter())
    with caplog.at_level(logging.INFO, logger=logger.name):
        for _ in range(3):  # several submissions
            _plugin_noise(logger)
        logger.warning("Guessed SLURM account: proj")  # informative: kept
    messages = [r.getMessage() for r in caplog.records]
    assert messages == [ss.AccountNoiseFilter.LINE, "Guessed SLURM account: proj"]


def test_pass_slurm_conf_exports_it_for_the_job_step():
    env = {"PATH": "/usr/bin:/bin", "SLURM_CONF": "/site/etc/slurm.conf"}
    assert ss.pass_slurm_conf(WRAPPER_DIR, env)
    assert env["TRADES_SLURM_CONF"] == "/site/etc/slurm.conf"
    assert env["PATH"] == f"{WRAPPER_DIR}:/usr/bin:/bin"
    ss.pass_slurm_conf(WRAPPER_DIR, env)
    assert env["PATH"].count(str(WRAPPER_DIR)) == 1
    default = {"PATH": "/usr/bin"}
    assert not ss.pass_slurm_conf(WRAPPER_DIR, default) and default == {"PATH": "/usr/bin"}


def _workflow(name="slurm", status="sacct"):  # the registry's name of the plugin
    settings = SimpleNamespace(status_command=status, init_seconds_before_status_checks=40)
    return SimpleNamespace(executor_plugin=SimpleNamespace(name=name), executor_settings=settings)


def test_on_start_switches_the_executor_setting_and_filters_account_noise(caplog):
    wf, logger = _workflow(), logging.getLogger("test_slurm_site.on_start")
    env = {"PATH": "/usr/bin", "SLURM_CONF": "/site/slurm.conf"}
    with caplog.at_level(logging.INFO, logger=logger.name):
        ss.on_start(wf, logger, WRAPPER_DIR, environ=env, run=_fake_run())
        ss.on_start(wf, logger, WRAPPER_DIR, environ=env, run=_fake_run())  # idempotent
        _plugin_noise(logger)
    assert wf.executor_settings.status_command == "squeue"
    assert env["TRADES_SLURM_CONF"] == "/site/slurm.conf"
    assert sum(isinstance(f, ss.AccountNoiseFilter) for f in logger.filters) == 1
    assert [r.getMessage() for r in caplog.records].count(ss.AccountNoiseFilter.LINE) == 1

    with pytest.raises(ss.SlurmSiteError):
        ss.on_start(_workflow(), logger, WRAPPER_DIR, environ={}, run=_fake_run(min_job_age="30 sec"))
    # with an account configured the plugin's own messages stay
    other = logging.getLogger("test_slurm_site.account")
    ss.on_start(_workflow(), other, WRAPPER_DIR, environ={"TRADES_SLURM_ACCOUNT": "proj"}, run=_fake_run())
    assert not other.filters


def test_on_start_leaves_other_executors_alone():
    run = _fake_run()
    for wf in (_workflow(name="slurm-jobstep"), _workflow(name="local"),
               SimpleNamespace(executor_plugin=None)):
        env = {"SLURM_CONF": "/x"}
        ss.on_start(wf, logging.getLogger("test_slurm_site.other"), WRAPPER_DIR, environ=env, run=run)
        assert env == {"SLURM_CONF": "/x"}
    assert run.calls == []


def test_srun_wrapper_restores_slurm_conf_and_runs_the_real_srun(tmp_path):
    real = tmp_path / "real"
    real.mkdir()
    (real / "srun").write_text('#!/bin/sh\necho "conf=${SLURM_CONF:-unset} args=$*"\n')
    os.chmod(real / "srun", 0o755)
    env = {"PATH": f"{WRAPPER_DIR}:{real}:/usr/bin:/bin", "TRADES_SLURM_CONF": "/site/slurm.conf"}
    # called by name through PATH, as the job step's `srun -n1 ...` is
    out = subprocess.run(["srun", "-n1", "hostname"], env=env, capture_output=True, text=True, check=True).stdout
    assert out.strip() == "conf=/site/slurm.conf args=-n1 hostname"
    env["SLURM_CONF"] = "/explicit.conf"  # one that is set wins
    out = subprocess.run(["srun"], env=env, capture_output=True, text=True, check=True).stdout
    assert out.startswith("conf=/explicit.conf")
    p = subprocess.run([str(WRAPPER_DIR / "srun")], env={"PATH": f"{WRAPPER_DIR}:/nonexistent"},
                       capture_output=True, text=True)
    assert p.returncode == 127 and "no srun on PATH" in p.stderr
