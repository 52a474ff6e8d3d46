"""The SLURM profile (workflow/profiles/slurm) on a real scheduler.

A single-node SLURM cluster (munged, slurmctld, slurmd; tests/slurm/cluster.py) is started
on this host for the session and stopped afterwards. It has no accounting storage (job status
must come from squeue: the toy workflow says so on the command line, the pipeline runs find it
out at start-up or read TRADES_SLURM_STATUS_COMMAND), its slurm.conf sits in a temporary folder
(SLURM_CONF), and it has two fake GPUs, so GPU jobs are submitted and scheduled with their real
``--gpus`` request. The pipeline runs use the real clients, not the harness's wrappers.

Without slurm-wlm/munge (or without root) the scheduler tests are skipped; with
``REQUIRE_SLURM=1`` (CI) they fail instead. Install with ``.ci/install-slurm.sh``.
``test_paper_train_job_sbatch_options`` needs no scheduler.
"""

from __future__ import annotations

import csv
import json
import os
import re
import shlex
import signal
import subprocess
import sys
import time
from pathlib import Path
from types import SimpleNamespace

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))
from slurm.cluster import SlurmCluster, unavailable_reason  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
PROFILE = REPO / "workflow" / "profiles" / "slurm"
SNAKEFILE = REPO / "Snakefile"
CONFIG = REPO / "tests" / "configs" / "slurm.yaml"  # one setting (b1), one seed, 12 epochs, CPU
TABLE = "tables/table4.tex"
RUN = "results/runs/b1/seed0"
EPOCHS = 12  # epochs of 0.2-0.5 s: Ctrl-C after an epoch of attempt 2 leaves the others as margin

# Scalar options on the command line (they win over the profile; blocks like
# --set-resources would replace the profile's, so the tests never pass those).
SLURM_ARGS = [
    "--workflow-profile", str(PROFILE),
    "--slurm-init-seconds-before-status-checks", "2",  # default 40 s: keep the tests short
    "--verbose",                                       # logs every sbatch call and status query
]
# no accounting storage on the test cluster: the toy workflow (no onstart check) names squeue here,
# the pipeline runs find it themselves (workflow/slurm_site.py) or through TRADES_SLURM_STATUS_COMMAND
SQUEUE = ("--slurm-status-command", "squeue")


# --------------------------------------------------------------------------------- fixtures
def _require_slurm() -> None:
    reason = unavailable_reason()
    if reason:
        if os.environ.get("REQUIRE_SLURM") == "1":
            pytest.fail(f"REQUIRE_SLURM=1 but no SLURM test cluster can run here: {reason}")
        pytest.skip(reason)


@pytest.fixture(scope="session")
def cluster(tmp_path_factory):
    _require_slurm()
    c = SlurmCluster(tmp_path_factory.mktemp("slurm-cluster"), gpus=2)
    c.start()
    try:
        yield c
    finally:
        c.stop()


def _base_env() -> dict:
    env = {k: v for k, v in os.environ.items() if not k.startswith("TRADES_SLURM_")}
    env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', os.defpath)}"
    return env


def _slurm_env(cluster: SlurmCluster, wrappers: bool = True, **extra: str) -> dict:
    """Environment of a client on the login node: SLURM_CONF names the cluster's (non-default) slurm.conf.
    wrappers=False leaves out the harness's client wrappers that pin SLURM_CONF, as on a real site."""
    env = {k: v for k, v in cluster.env.items() if not k.startswith("TRADES_SLURM_")}
    path = [p for p in env["PATH"].split(os.pathsep) if p != str(cluster.root / "bin")]
    env["PATH"] = os.pathsep.join(([str(cluster.root / "bin")] if wrappers else []) + [str(Path(sys.executable).parent)]
                                  + path)
    env["TRADES_SLURM_PARTITION"] = cluster.partition  # the profile reads the partition from here
    env.update(extra)
    return env


def _snakemake(workdir: Path, *targets: str, slurm: bool, extra: tuple = (), configfile: Path | None = CONFIG,
               snakefile: Path = SNAKEFILE) -> list[str]:
    # targets first, --configfile (nargs +) last: README "Running the pipeline": targets before --config / --resources
    cmd = [sys.executable, "-m", "snakemake", *targets, "--snakefile", str(snakefile), "--directory", str(workdir)]
    cmd += SLURM_ARGS if slurm else ["--cores", "2", "--resources", "gpu=1"]
    cmd += list(extra)
    if configfile is not None:
        cmd += ["--configfile", str(configfile)]
    return cmd


def _run(cmd: list[str], env: dict, log: Path, timeout: float) -> subprocess.CompletedProcess:
    log.parent.mkdir(parents=True, exist_ok=True)
    with open(log, "w") as fh:
        fh.write("$ " + shlex.join(cmd) + "\n")
        fh.flush()
        p = subprocess.run(cmd, env=env, stdout=fh, stderr=subprocess.STDOUT, timeout=timeout, cwd=REPO)
    return p


def _tail(path: Path, n: int = 60) -> str:
    lines = path.read_text(errors="replace").splitlines() if path.exists() else []
    return "\n".join(lines[-n:])


def _sbatch_calls(log: Path) -> list[str]:
    return [line.split("sbatch call: ", 1)[1] for line in log.read_text(errors="replace").splitlines()
            if "sbatch call: " in line]


def _slurm_logs(workdir: Path) -> dict[str, list[Path]]:
    """rule name -> the SLURM job logs the executor kept (.snakemake/slurm_logs/rule_<name>/<wc>/<jobid>.log)."""
    out: dict[str, list[Path]] = {}
    for p in sorted((workdir / ".snakemake" / "slurm_logs").rglob("*.log")):
        rule_dir = next(part for part in p.relative_to(workdir / ".snakemake" / "slurm_logs").parts)
        out.setdefault(rule_dir.removeprefix("rule_"), []).append(p)
    return out


def _epochs_without_time(path: Path) -> list[dict]:
    with open(path, newline="") as fh:
        rows = list(csv.DictReader(fh))
    for r in rows:
        r.pop("epoch_time_s", None)
    return rows


def _have_pipeline() -> None:
    if not SNAKEFILE.exists() or not CONFIG.exists():
        pytest.fail(f"pipeline files missing: {SNAKEFILE} / {CONFIG}")


@pytest.fixture(scope="session")
def local_reference(tmp_path_factory):
    """The same config run locally (no SLURM): the reference outputs."""
    _require_slurm()  # only the scheduler tests use it: do not pay for it when they skip
    _have_pipeline()
    wd = tmp_path_factory.mktemp("local-reference")
    log = wd / "snakemake-local.log"
    p = _run(_snakemake(wd, TABLE, slurm=False), _base_env(), log, timeout=600)
    assert p.returncode == 0, f"local reference run failed:\n{_tail(log)}"
    return wd


# ------------------------------------------------------------------------ scheduler sanity
@pytest.mark.slurm
def test_cluster_runs_a_batch_job(cluster, tmp_path):
    out = tmp_path / "hostname.out"
    jobid = cluster.run("sbatch", "--parsable", "-o", str(out), "--wrap", "hostname; echo gpus=$CUDA_VISIBLE_DEVICES",
                        "--gpus=1").stdout.strip()
    assert cluster.wait_job(jobid) == "COMPLETED"
    text = out.read_text()
    assert cluster.hostname in text and "gpus=0" in text
    # no accounting storage: sacct cannot answer, hence --slurm-status-command squeue
    assert cluster.run("sacct", "-j", jobid, check=False).returncode != 0


@pytest.mark.slurm
def test_srun_wrapper_brings_slurm_conf_into_the_job_step(cluster, tmp_path):
    """What the SLURM executor's job step does (drop SLURM_*, then `srun`) fails with this cluster's
    slurm.conf at a non-default path; through the profile's bin/srun (slurm_site.pass_slurm_conf) it
    works. Real clients only: the harness's wrappers are not on PATH."""
    env = _slurm_env(cluster, wrappers=False)
    ss_env = dict(env)
    from trades_instability.workflow.slurm_site import pass_slurm_conf

    assert pass_slurm_conf(PROFILE / "bin", ss_env)
    step = "env -u SLURM_CONF srun -n1 echo step-ran"  # as the job step calls it: no SLURM_CONF
    for name, job_env, ok in (("plain", env, False), ("wrapped", ss_env, True)):
        out = tmp_path / f"{name}.out"
        jobid = subprocess.run(["sbatch", "--parsable", "-o", str(out), "--wrap", step], env=job_env,
                               capture_output=True, text=True, check=True).stdout.strip()
        cluster.wait_job(jobid)
        text = out.read_text()
        assert ("step-ran" in text) == ok, (name, text)
        if not ok:
            assert "Could not establish a configuration source" in text, text


TOY_SNAKEFILE = r'''
localrules: table

rule all:
    input: "tables/toy.tex"

rule train:
    output: "runs/seed{seed}.txt"
    threads: 1
    resources: gpu=1, mem_mb=500, runtime=5
    shell: "echo job=$SLURM_JOB_ID cuda=$CUDA_VISIBLE_DEVICES > {output}"

rule flaky:
    # fails at the first attempt, succeeds at the second: the profile's retries
    output: "flaky.txt"
    threads: 1
    shell: "if [ -e flaky.first ]; then echo job=$SLURM_JOB_ID > {output}; else touch flaky.first; exit 1; fi"

rule table:
    input: expand("runs/seed{seed}.txt", seed=[0, 1]), "flaky.txt"
    output: "tables/toy.tex"
    shell: "cat {input} > {output}; echo local=${{SLURM_JOB_ID:-none}} >> {output}"
'''


@pytest.mark.slurm
def test_profile_toy_workflow(cluster, tmp_path):
    """The real profile with a toy Snakefile: GPU request, partition from the environment,
    retries with a longer runtime, localrules stay local, job logs kept."""
    wd = tmp_path / "toy"
    wd.mkdir()
    (wd / "Snakefile").write_text(TOY_SNAKEFILE)
    log = tmp_path / "snakemake-toy.log"
    t0 = time.monotonic()
    p = _run(_snakemake(wd, "all", slurm=True, configfile=None, snakefile=wd / "Snakefile", extra=SQUEUE),
             _slurm_env(cluster), log, timeout=240)
    assert p.returncode == 0, _tail(log)
    print(f"toy workflow through SLURM: {time.monotonic() - t0:.1f}s")

    calls = _sbatch_calls(log)
    train = [c for c in calls if "--comment rule_train" in c]
    flaky = [c for c in calls if "--comment rule_flaky" in c]
    assert len(train) == 2 and all("--gpus=1" in c and f"-p {cluster.partition}" in c for c in train), calls
    assert all("-t 5 " in c and "--mem 500" in c for c in train), train
    # first attempt 60 min (profile default-resources: 60 * attempt), the retry 120 min
    assert [re.search(r" -t (\d+) ", c).group(1) for c in flaky] == ["60", "120"], flaky
    assert all("--gpus" not in c for c in flaky)
    assert not any("rule_table" in c or "rule_all" in c for c in calls), "localrules must not be submitted"

    logs = _slurm_logs(wd)
    assert set(logs) == {"train", "flaky"}, logs  # kept (slurm-keep-successful-logs), one per SLURM job
    states = {j["jobid"]: j for j in cluster.jobs()}
    for rule, paths in logs.items():
        for path in paths:
            assert states[path.stem]["comment"].startswith(f"rule_{rule}"), (path, states.get(path.stem))
    train_ids = {p.stem for p in logs["train"]}
    assert all(states[i]["state"] == "COMPLETED" for i in train_ids)
    outputs = sorted((wd / "runs").glob("*.txt"))
    assert {o.read_text().split()[0].removeprefix("job=") for o in outputs} == train_ids
    assert all("cuda=0" in o.read_text() or "cuda=1" in o.read_text() for o in outputs)
    assert (wd / "tables" / "toy.tex").read_text().strip().endswith("local=none")


# ------------------------------------------------------------------- the pipeline on SLURM
def _data_rows(path: Path) -> int:
    try:
        return max(0, len(path.read_text().strip().splitlines()) - 1)
    except FileNotFoundError:
        return 0


EPOCH_LINE = re.compile(r"^epoch\s+(\d+)/\d+", flags=re.M)
RESUME_LINE = re.compile(r"resumed from \S*last\.pt at epoch (\d+)")
STOP_LINE = re.compile(r"^SIG\w+: stopping; epochs 1\.\.(\d+) are saved", flags=re.M)


def _running_train_job(cluster: SlurmCluster) -> str | None:
    return next((j["jobid"] for j in cluster.jobs()
                 if j["comment"].startswith("rule_train_") and j["state"] == "RUNNING"), None)


def _wait_until(cond, proc: subprocess.Popen, log: Path, what: str, timeout: float = 300):
    """Poll cond() (a value or None) while snakemake runs; the cancel windows follow the trainer's
    log, not the clock, so a slow machine only makes the test slower."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and proc.poll() is None:
        value = cond()
        if value is not None:
            return value
        time.sleep(0.2)
    raise AssertionError(f"{what}: not reached (snakemake rc={proc.poll()}):\n{_tail(log)}")


@pytest.fixture(scope="session")
def slurm_pipeline(cluster, local_reference, tmp_path_factory):
    """`snakemake tables/table4.tex` through the SLURM profile as on a site: without the harness's
    client wrappers (so SLURM_CONF, at a non-default path, must reach the job step by itself), with no
    status command and no account given (the cluster has no accounting).

    Run 1: the training job is scancel'ed once its log shows epoch 1; the profile resubmits it by
    itself (retries), and the new attempt resumes; once that attempt has logged an epoch, Ctrl-C
    (SIGINT) to snakemake cancels it. Run 2: the same command, with TRADES_SLURM_STATUS_COMMAND=squeue
    in the environment, resumes and completes. (One run serves the pipeline tests: two trainings on
    2 cores would double their time.)"""
    base = tmp_path_factory.mktemp("slurm-pipeline")
    wd = base / "work"
    env = _slurm_env(cluster, wrappers=False)
    train_log = wd / RUN / "train.log"

    def text() -> str:
        return train_log.read_text() if train_log.exists() else ""

    t0 = time.monotonic()
    log1 = base / "snakemake-1.log"
    cmd = _snakemake(wd, TABLE, slurm=True)
    with open(log1, "w") as fh:
        fh.write("$ " + shlex.join(cmd) + "\n")
        fh.flush()
        proc = subprocess.Popen(cmd, env=env, stdout=fh, stderr=subprocess.STDOUT, cwd=REPO)
        try:
            first = _wait_until(lambda: _running_train_job(cluster) if EPOCH_LINE.search(text()) else None,
                                proc, log1, "attempt 1 at epoch 1")
            cluster.run("scancel", first)
            first_state = cluster.wait_job(first, timeout=60)

            def second_attempt_trained():
                t = text()
                resumed = t.rfind("resumed from")
                jobid = _running_train_job(cluster)
                if resumed >= 0 and EPOCH_LINE.search(t, resumed) and jobid not in (None, first):
                    return jobid
                return None

            second = _wait_until(second_attempt_trained, proc, log1, "the resubmitted attempt trained an epoch")
            proc.send_signal(signal.SIGINT)  # Ctrl-C
            proc.wait(timeout=120)
            second_state = cluster.wait_job(second, timeout=60)
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
    run1 = SimpleNamespace(returncode=proc.returncode, cancelled=(first, second), states=(first_state, second_state),
                           log_text=text(), run_json_after=(wd / RUN / "run.json").exists(),
                           last_pt_after=(wd / RUN / "state" / "checkpoints" / "last.pt").exists(),
                           seconds=time.monotonic() - t0)

    log2 = base / "snakemake-2.log"
    t1 = time.monotonic()
    p = _run(_snakemake(wd, TABLE, slurm=True), {**env, "TRADES_SLURM_STATUS_COMMAND": "squeue"}, log2, timeout=600)
    assert p.returncode == 0, _tail(log2)
    print(f"\n{TABLE} through SLURM: interrupted run {run1.seconds:.0f}s, rerun {time.monotonic() - t1:.0f}s")
    return SimpleNamespace(wd=wd, log1=log1, log2=log2, run1=run1, jobs={j["jobid"]: j for j in cluster.jobs()})


@pytest.mark.slurm
@pytest.mark.slow
def test_pipeline_on_slurm_matches_local_run(slurm_pipeline, local_reference, cluster):
    sp, wd = slurm_pipeline, slurm_pipeline.wd

    # the GPU stages went to SLURM with the config's resources and the profile's mapping
    calls1, calls2 = _sbatch_calls(sp.log1), _sbatch_calls(sp.log2)
    train1 = [c for c in calls1 if "--comment rule_train_" in c]
    train2 = [c for c in calls2 if "--comment rule_train_" in c]
    evaluate = [c for c in calls2 if "--comment rule_evaluate_" in c]
    assert len(train1) == 2 and len(train2) == 1 and len(evaluate) == 1, calls1 + calls2
    for c in train1 + train2 + evaluate:
        assert "--gpus=1" in c and f"-p {cluster.partition}" in c and "--mem 2000" in c, c
        assert "--cpus-per-task=1" in c, c
    # runtime: minutes_base 5 + 1.0 min/epoch x EPOCHS (tests/configs/slurm.yaml), x attempt: the
    # profile's own resubmission after scancel asks for twice the time; a new snakemake starts at 1
    minutes = 5 + EPOCHS
    limits = [int(re.search(r" -t (\d+) ", c).group(1)) for c in train1 + train2]
    assert limits == [minutes, 2 * minutes, minutes], train1 + train2
    submitted = {m.group(1) for c in calls1 + calls2 for m in [re.search(r"--comment rule_(\w+?)_wildcards", c)] if m}
    assert submitted == {"train", "evaluate"}, f"only the GPU rules go to SLURM, got {submitted}"

    # ... and ran there: the SLURM job logs the executor kept, the jobs in slurmctld's table
    logs = _slurm_logs(wd)
    assert set(logs) == {"train", "evaluate"} and len(logs["train"]) == 3 and len(logs["evaluate"]) == 1, logs
    for rule, paths in logs.items():
        for path in paths:
            job = sp.jobs[path.stem]
            assert job["comment"].startswith(f"rule_{rule}_"), job
            expected = "CANCELLED" if path.stem in sp.run1.cancelled else "COMPLETED"
            assert job["state"] == expected, job
            assert "srun" in path.read_text(), "the rule runs as a job step inside the SLURM job"
            assert "Could not establish a configuration source" not in path.read_text()

    # rendered output and the numbers behind it equal those of the local run
    ref = local_reference
    assert (wd / TABLE).read_text() == (ref / TABLE).read_text()
    keys = ("clean_acc", "pgd10_acc", "square_acc", "fosc", "sgcs", "gap_pgd_square", "unstable", "epoch")
    ev, ev_ref = (json.loads((d / RUN / "eval_cheap.json").read_text()) for d in (wd, ref))
    assert {k: ev.get(k) for k in keys} == {k: ev_ref.get(k) for k in keys}


@pytest.mark.slurm
@pytest.mark.slow
def test_scancel_resubmits_and_ctrl_c_then_rerun_resume_training(slurm_pipeline, local_reference):
    """scancel of the training job: the profile resubmits it and it resumes from its checkpoint;
    Ctrl-C cancels the running attempt; the same command again resumes and ends with the epochs.csv
    of an uninterrupted run. Every stop leaves its clean-stop line in train.log."""
    sp, wd = slurm_pipeline, slurm_pipeline.wd
    r1 = sp.run1
    assert r1.states == ("CANCELLED", "CANCELLED"), r1.states
    assert r1.returncode != 0, "an interrupted snakemake does not report success"
    assert not r1.run_json_after and r1.last_pt_after, "interrupted: no run.json, but a resumable last.pt"

    log = (wd / RUN / "train.log").read_text()  # every attempt's messages, appended
    stops = [int(n) for n in STOP_LINE.findall(log)]
    resumes = [int(n) for n in RESUME_LINE.findall(log)]
    assert len(stops) == 2 and stops == [int(n) for n in STOP_LINE.findall(r1.log_text)], log[-3000:]
    # each stop saved its epochs, each next attempt resumed exactly there and went on
    assert resumes == stops and 1 <= stops[0] < stops[1] < EPOCHS, (stops, resumes)
    trained = [int(e) for e in EPOCH_LINE.findall(log)]
    assert trained == list(range(1, EPOCHS + 1)), f"each epoch trained once across the attempts: {trained}"
    last = (wd / "logs" / "train" / "b1" / "seed0.log").read_text()  # {log}: the last attempt only
    assert RESUME_LINE.search(last).group(1) == str(stops[1]) and "published" in last
    assert json.loads((wd / RUN / "run.json").read_text())["epochs_completed"] == EPOCHS
    ours, ref = (_epochs_without_time(d / RUN / "epochs.csv") for d in (wd, local_reference))
    assert len(ours) == EPOCHS and ours == ref


@pytest.mark.slurm
@pytest.mark.slow
def test_startup_checks_on_a_cluster_without_accounting(slurm_pipeline):
    """No status command given: one line says squeue is used (sacct cannot answer here) and the run
    goes through; given through TRADES_SLURM_STATUS_COMMAND: no such line, squeue all the same.
    No account given: no account-guessing noise, at most one line of ours."""
    from trades_instability.workflow.slurm_site import AccountNoiseFilter

    sp = slurm_pipeline
    for log, switch_lines in ((sp.log1, 1), (sp.log2, 0)):
        text = log.read_text(errors="replace")
        assert text.count("SLURM job accounting is disabled here") == switch_lines, (log, text[-3000:])
        queries = re.findall(r"Status query timing \(cycle\): command=(\w+)", text)
        assert queries and set(queries) == {"squeue"}, (log, queries)
        assert "No account was given" not in text and "trying to guess" not in text, log
        assert text.count(AccountNoiseFilter.LINE) <= 1, log


@pytest.mark.slurm
def test_no_accounting_and_too_short_min_job_age_stops_at_once(cluster, tmp_path):
    """Where squeue would forget finished jobs before the plugin asks (MinJobAge 900 s here < 3 x the
    first status interval) and sacct cannot answer, the run stops before submitting anything, with
    the fix, instead of waiting forever."""
    log = tmp_path / "snakemake.log"
    t0 = time.monotonic()
    p = _run(_snakemake(tmp_path / "work", TABLE, slurm=True, extra=("--slurm-init-seconds-before-status-checks",
                                                                     "400")),
             _slurm_env(cluster, wrappers=False), log, timeout=180)
    text = log.read_text(errors="replace")
    assert p.returncode != 0, text[-3000:]
    assert "accounting is disabled" in text and "MinJobAge=1200" in text and "slurm.conf" in text, text[-3000:]
    assert not _sbatch_calls(log), "nothing may be submitted"
    assert time.monotonic() - t0 < 120


# ------------------------------------------------------- the paper config: sbatch options
def _dry_run_resources(workdir: Path, target: str, env: dict, rule: str) -> tuple[dict, int]:
    # --cores: a dry run caps threads at its core count (1 by default); the SLURM executor
    # does not (cores are unlimited for cluster submission), so lift the cap to match.
    cmd = [sys.executable, "-m", "snakemake", target, "-n", "--cores", "1024", "--snakefile", str(SNAKEFILE),
           "--directory", str(workdir), "--workflow-profile", str(PROFILE)]
    p = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=300, cwd=REPO)
    assert p.returncode == 0, p.stdout[-3000:] + p.stderr[-3000:]
    text = p.stdout + p.stderr
    block = re.search(rf"^rule {rule}:\n(.*?)(?:\n\n|\Z)", text, flags=re.M | re.S)
    assert block, text[-3000:]
    res_line = re.search(r"^\s+resources: (.*)$", block.group(1), flags=re.M).group(1)
    threads = re.search(r"^\s+threads: (\d+)$", block.group(1), flags=re.M)
    res = {}
    for item in res_line.split(", "):
        k, v = item.split("=", 1)
        res[k] = int(v) if v.isdigit() else v
    return res, int(threads.group(1)) if threads else 1


class _Resources(dict):
    def __getattr__(self, name):
        return self[name]


def _sbatch_for(resources: dict, threads: int) -> str:
    """The sbatch command the installed plugin builds for a job with these resources."""
    from snakemake_executor_plugin_slurm.submit_string import get_submit_command
    from snakemake_executor_plugin_slurm.utils import set_gres_string

    job = SimpleNamespace(resources=_Resources(resources), threads=threads, name="train", is_group=lambda: False)
    params = {"run_uuid": "trades_test", "slurm_logfile": "/tmp/%j.log", "comment_str": "rule_train",
              "account": "", "workdir": "/work",
              "partition": f" -p {resources['slurm_partition']}" if resources.get("slurm_partition") else ""}
    settings = SimpleNamespace(requeue=False, no_requeue=False, qos=None, reservation=None)
    return get_submit_command(job, params, settings=settings) + set_gres_string(job)


def test_paper_train_job_sbatch_options(tmp_path):
    """A training job of the paper config (config.yaml) asks SLURM for one GPU (of the model
    named in the environment), the runtime of 200 epochs and the configured memory."""
    pytest.importorskip("snakemake_executor_plugin_slurm")
    _have_pipeline()
    import yaml

    paper = yaml.safe_load((REPO / "config.yaml").read_text())
    train_cfg = paper["resources"]["train"]
    env = _base_env()
    env.update(TRADES_SLURM_PARTITION="gpu", TRADES_SLURM_GPU_MODEL="h100", TRADES_SLURM_CPU_PARTITION="cpu")
    res, threads = _dry_run_resources(tmp_path / "paper", "results/runs/default/seed0/run.json", env, "train")
    call = _sbatch_for(res, threads)
    print(call)
    assert "--gpus=h100:1" in call
    assert " -p gpu" in call
    assert f"--mem {train_cfg['mem_mb']}" in call
    assert f"--cpus-per-task={train_cfg['threads']}" in call
    minutes = int(re.search(r" -t (\d+)", call).group(1))
    epochs = int(paper["defaults"].get("epochs", 200))
    assert minutes >= epochs * 1.0, f"{minutes} min for {epochs} epochs"

    # without site variables: a plain one-GPU request, the cluster's default partition
    res, threads = _dry_run_resources(tmp_path / "paper2", "results/runs/default/seed0/run.json", _base_env(), "train")
    call = _sbatch_for(res, threads)
    assert "--gpus=1" in call and " -p " not in call


# ------------------------------------- kill -9 of snakemake: a rerun next to the orphaned SLURM job
@pytest.mark.slurm
@pytest.mark.slow
def test_a_rerun_next_to_an_orphaned_training_job_waits_and_adopts_its_result(cluster, tmp_path):
    """kill -9 of snakemake while its training job runs on SLURM: the job goes on, an orphan. After
    `--unlock`, the same command's training job finds the run held by the orphan's live SLURM job, waits
    for it, adopts its result and succeeds: nothing the orphan published is deleted, every epoch is
    trained once, and no second trainer ever wrote the run."""
    import yaml

    epochs = 60  # long enough for the rerun to be submitted and started while the orphan trains
    cfg = yaml.safe_load(CONFIG.read_text())
    cfg["defaults"]["epochs"] = epochs
    config = tmp_path / "slurm-orphan.yaml"
    config.write_text(yaml.safe_dump(cfg))
    wd = tmp_path / "work"
    target = f"{RUN}/run.json"
    env = _slurm_env(cluster, wrappers=False, TRADES_SLURM_STATUS_COMMAND="squeue", TRADES_LOCK_POLL_S="0.5")
    train_log = wd / RUN / "train.log"

    def text() -> str:
        return train_log.read_text() if train_log.exists() else ""

    cmd = _snakemake(wd, target, slurm=True, configfile=config)
    log1 = tmp_path / "snakemake-1.log"
    with open(log1, "w") as fh:
        proc = subprocess.Popen(cmd, env=env, stdout=fh, stderr=subprocess.STDOUT, cwd=REPO)
        try:
            orphan = _wait_until(lambda: _running_train_job(cluster) if EPOCH_LINE.search(text()) else None,
                                 proc, log1, "the training job at epoch 1")
            proc.kill()  # kill -9 of snakemake alone: its SLURM job runs on
            proc.wait()
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
    assert any(j["jobid"] == orphan and j["state"] == "RUNNING" for j in cluster.jobs())
    # the status command on the login node sees the orphan train (no snakemake needed)
    status = subprocess.run([sys.executable, "-m", "trades_instability", "status", "--configfile", str(config),
                             "--results-dir", str(wd / "results"), "--json"], capture_output=True, text=True,
                            env={**env, "PYTHONPATH": os.pathsep.join(filter(None, [str(REPO / "src"),
                                                                                    env.get("PYTHONPATH")]))},
                            timeout=120, check=False)
    assert status.returncode == 0, status.stderr
    (row,) = json.loads(status.stdout)["runs"]
    assert row["state"] == "running" and row["slurm_job_id"] == orphan and row["epoch"] >= 1, row
    unlock = _run(_snakemake(wd, target, slurm=True, extra=("--unlock",), configfile=config), env,
                  tmp_path / "unlock.log", timeout=300)
    assert unlock.returncode == 0, _tail(tmp_path / "unlock.log")
    log2 = tmp_path / "snakemake-2.log"
    rerun = _run(cmd, env, log2, timeout=900)
    assert rerun.returncode == 0, _tail(log2)
    assert cluster.wait_job(orphan, timeout=120) in ("COMPLETED", "GONE")  # ended by itself, not cancelled
    log = text()
    assert "waiting for pid " in log and f"SLURM job {orphan}" in log, log[-3000:]
    assert "finished the run: adopting its result" in log and "adopting it as it is" in log, log[-3000:]
    assert [int(e) for e in EPOCH_LINE.findall(log)] == list(range(1, epochs + 1)), "each epoch trained once"
    assert log.count("training trades") == 1 and "resumed from" not in log
    assert "Removing output files of failed job" not in log2.read_text(errors="replace")
    for name in ("run.json", "epochs.csv", "batches.csv", "checkpoints/best.pt", "checkpoints/last.pt"):
        assert (wd / RUN / name).read_bytes() == (wd / RUN / "state" / name).read_bytes(), name
    assert json.loads((wd / RUN / "run.json").read_text())["status"] == "complete"
