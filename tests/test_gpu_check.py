"""``python -m trades_instability gpu-check``: the toy-size run on the CPU (every step, for real), the one line
without a GPU (also where nvidia-smi sees a GPU torch cannot use), the time budget and the jobs_per_gpu rule."""

from __future__ import annotations

import json
import os
import stat
import subprocess
import sys
import time
from pathlib import Path

import pytest

from trades_instability.tools import device_checks, gpu_check, gpu_check_runner, gpu_environment

ROOT = Path(__file__).resolve().parents[1]


def _env(**extra: str) -> dict[str, str]:
    return {**os.environ, "PYTHONPATH": str(ROOT / "src"), **extra}


def _gpu_check(*args: str, env: dict[str, str] | None = None, timeout: float = 900) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "trades_instability", "gpu-check", *args], capture_output=True,
                          text=True, env=env or _env(), timeout=timeout, check=False)


@pytest.mark.slow  # an end-to-end run: ~2 minutes on 2 cores (README, "Checking a GPU node")
def test_tiny_gpu_check_runs_every_step_and_writes_the_report(tmp_path):
    out = tmp_path / "gc"
    # only the library's runtime dependencies: Snakemake and jsonschema (workflow-only) cannot be imported here,
    # in this process or in the sharing step's children (they inherit PYTHONPATH)
    blocker = tmp_path / "blocker"
    blocker.mkdir()
    (blocker / "sitecustomize.py").write_text(
        "import sys\n"
        "class _Block:\n"
        "    def find_spec(self, name, path=None, target=None):\n"
        "        if name.split('.')[0] in ('snakemake', 'jsonschema'):\n"
        "            raise ImportError(f'{name} is not a runtime dependency of gpu-check')\n"
        "sys.meta_path.insert(0, _Block())\n")
    t = time.monotonic()
    p = _gpu_check("--tiny", "--out", str(out), env=_env(PYTHONPATH=f"{blocker}{os.pathsep}{ROOT / 'src'}"))
    wall = time.monotonic() - t
    print(p.stdout, p.stderr, f"wall {wall:.0f} s", sep="\n")  # the run's own lines, for the log
    assert p.returncode == 0, p.stdout + p.stderr
    assert "Traceback" not in p.stdout + p.stderr

    doc = json.loads((out / "report.json").read_text())
    steps = {s["name"]: s for s in doc["steps"]}
    checks = [c for c in device_checks.CHECKS if c.in_command]
    assert list(steps) == ["environment", *(c.name for c in checks), "speed", "short_run", "short_eval", "sharing"]
    assert [s["step"] for s in doc["steps"]] == ["a"] + ["b"] * len(checks) + ["c", "d", "d", "e"]
    for c in checks:  # the CPU run cannot check what only CUDA does; everything else ran and passed
        assert steps[c.name]["status"] == ("n/a" if c.cuda_only else "passed"), steps[c.name]
    for name in ("environment", "speed", "short_run", "short_eval", "sharing"):
        assert steps[name]["status"] == "passed", steps[name]
    assert doc["passed"] is True and doc["scale"] == "tiny" and doc["device"].startswith("cpu")

    # one printed line per step, in order, each as the step finished
    lines = [line for line in p.stdout.splitlines() if line.startswith("[")]
    assert len(lines) == len(doc["steps"])
    assert all(s["title"] in line for s, line in zip(doc["steps"], lines, strict=True))
    assert p.stdout.splitlines()[-1].startswith("gpu-check: PASSED")

    speed = steps["speed"]["data"]["rows"]
    assert [r["row"] for r in speed] == ["reference (official loop)", "project fp32", "project bf16",
                                         "compile: true (fp32)"]
    assert speed[0]["ratio_to_reference"] == 1.0 and all(r["images_per_s"] > 0 for r in speed[:3])
    assert "not_run" in speed[3]  # compile is timed on a GPU only (minutes of C++ build on 2 cores)

    run = steps["short_run"]["data"]
    assert run["epochs"] == 2 and run["train_images"] == gpu_check.SCALES["tiny"].run["synthetic"]["train_size"]
    ev = steps["short_eval"]["data"]
    assert ev["n"] == gpu_check.SCALES["tiny"].eval_n
    assert 0 <= ev["autoattack_acc"] <= ev["pgd10_acc"] <= ev["clean_acc"] <= 1
    assert set(ev["timings_s"]) >= {"pgd10", "square", "autoattack"}
    assert (out / "short_run" / "landscape.npz").is_file() and (out / "short_run" / "eval.json").is_file()

    share = steps["sharing"]["data"]
    assert [r["k"] for r in share["results"]] == [1, 2, 4]
    assert all(len(r["jobs"]) == r["k"] and r["aggregate_images_per_s"] > 0 for r in share["results"])
    assert share["jobs_per_gpu"] in (1, 2, 4)

    md = (out / "report.md").read_text()
    for heading in ("# gpu-check: PASSED", "## a. Environment", "## Steps", "## c. Speed", "## e. Sharing the GPU"):
        assert heading in md
    assert doc["date"] in md and "torch" in md and "reference (official loop)" in md


def test_without_a_gpu_it_is_one_line_and_a_nonzero_exit(tmp_path):
    p = _gpu_check("--out", str(tmp_path / "x"), env=_env(PATH="/usr/bin:/bin"))  # no nvidia-smi on this machine
    assert p.returncode == 2 and p.stdout == ""
    lines = p.stderr.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in p.stderr, p.stderr
    assert lines[0].startswith("gpu-check: no usable GPU here") and "--tiny" in lines[0]
    assert not (tmp_path / "x").exists()  # nothing written before the device is known to work


def _fake_nvidia_smi(folder: Path, driver: str) -> str:
    """A PATH whose nvidia-smi answers the queries gpu-check makes, like a real one with an H100 and ``driver``."""
    folder.mkdir(parents=True, exist_ok=True)
    smi = folder / "nvidia-smi"
    smi.write_text("#!/bin/sh\n"
                   'case "$*" in *compute_cap*) echo "0, NVIDIA H100 80GB HBM3, ' + driver + ', 81559, 9.0";; '
                   '*) echo "0, NVIDIA H100 80GB HBM3, ' + driver + ', 81559";; esac\n')
    smi.chmod(smi.stat().st_mode | stat.S_IEXEC)
    return f"{folder}:/usr/bin:/bin"


def test_a_gpu_torch_cannot_use_names_the_driver_and_the_lock_to_install(tmp_path):
    """This machine's torch (CUDA 13 build) sees no GPU; a node whose nvidia-smi shows an R535 driver gets the
    CUDA 12 lock named, in one line."""
    p = _gpu_check("--out", str(tmp_path / "x"), env=_env(PATH=_fake_nvidia_smi(tmp_path / "bin", "535.104.05")))
    assert p.returncode == 2 and p.stdout == ""
    line = p.stderr.strip()
    assert len(line.splitlines()) == 1 and "Traceback" not in line, line
    assert "NVIDIA H100 80GB HBM3" in line and "driver 535.104.05" in line
    assert "envs/requirements-cu12.lock" in line and "pip install --require-hashes --no-deps -r" in line


def test_the_lock_for_a_driver_follows_nvidias_minimum_drivers(tmp_path, monkeypatch):
    locks = gpu_environment.repo_locks()
    assert {lk["lock"]: lk["cuda_major"] for lk in locks} == {"envs/requirements-cu12.lock": 12,
                                                              "envs/requirements.lock": 13}
    pick = lambda major: (gpu_environment.matching_lock(major, locks) or {}).get("lock")  # noqa: E731
    assert pick(580) == pick(590) == "envs/requirements.lock"
    assert pick(525) == pick(535) == pick(575) == "envs/requirements-cu12.lock"
    assert pick(470) is None and pick(None) is None
    assert gpu_environment.driver_major("550.54.15") == 550 and gpu_environment.driver_major(None) is None
    monkeypatch.setenv("PATH", _fake_nvidia_smi(tmp_path / "bin", "470.239.06"))
    assert "upgrade the driver to >= 525" in gpu_environment.no_gpu_line()
    monkeypatch.setenv("PATH", _fake_nvidia_smi(tmp_path / "bin2", "580.65.06"))
    gpus = gpu_environment.nvidia_smi_gpus()
    assert gpus == [{"index": "0", "name": "NVIDIA H100 80GB HBM3", "driver": "580.65.06", "memory_mib": "81559",
                     "compute_cap": "9.0"}]
    assert "install envs/requirements.lock" in gpu_environment.no_gpu_line()


def test_max_minutes_skips_a_step_that_would_overrun_and_never_cuts_a_started_one(tmp_path):
    said: list[str] = []
    runner = gpu_check_runner.Runner(tmp_path, max_s=1.0, print_fn=said.append)
    slow = runner.run("b", "slow", "a step that overruns its estimate", 0.1,
                      lambda: (time.sleep(1.2), {"summary": "finished"})[1], correctness=True)
    late = runner.run("b", "late", "the next step", 0.1, lambda: {"summary": "ran"}, correctness=True)
    big = gpu_check_runner.Runner(tmp_path, max_s=60.0, print_fn=said.append).run(
        "c", "big", "a step larger than the budget", 61, lambda: {"summary": "ran"}, correctness=False)
    assert (slow.status, late.status, big.status) == ("passed", "skipped", "skipped")
    assert slow.seconds >= 1.2 and slow.line == "finished"
    assert said[1].startswith("[SKIP] b the next step") and "left of --max-minutes" in said[1]
    assert "needs ~61 s, 60 s left" in said[2]
    assert gpu_check_runner.passed([slow], cuda=True) and not gpu_check_runner.passed([slow, late], cuda=True)
    assert gpu_check_runner.passed([slow, big], cuda=True)  # a skipped non-correctness step is fine


def test_a_failing_step_is_one_line_with_its_traceback_kept(tmp_path):
    said: list[str] = []

    def broken():
        device_checks.require(False, "resumed run differs")

    r = gpu_check_runner.Runner(tmp_path, max_s=None, print_fn=said.append).run("b", "x", "x check", 1, broken,
                                                                               correctness=True)
    assert r.status == "failed" and said == [f"[FAIL] b x check ({r.seconds:.1f} s): CheckFailed: resumed run "
                                             f"differs (traceback: {tmp_path / 'tracebacks' / 'x.txt'})"]
    assert "Traceback" in (tmp_path / "tracebacks" / "x.txt").read_text()
    assert not gpu_check_runner.passed([r], cuda=True)


def _share(k: int, agg: float, peak: float = 3.0) -> dict:
    return {"k": k, "aggregate_images_per_s": agg, "peak_mem_gib_per_job": peak}


@pytest.mark.parametrize("aggs, total, want", [
    ((1000, 1900, 2050), 80.0, 2),  # 4 jobs add < 10 % over 2
    ((1000, 1900, 3000), 80.0, 4),
    ((1000, 1050, 1090), 80.0, 1),  # 2 add < 10 % over 1, and so do 4
    ((1000, 1050, 3000), 80.0, 4),  # 2 add < 10 %, but 4 is compared with the best so far (K=1): +200 %
    ((1000, 1900, 3000), 10.0, 2),  # memory: 10 GiB // (3 + 1 GiB context) = 2
    ((1000, 1900, 3000), None, 4),  # no card memory (CPU): the throughput rule alone
])
def test_jobs_per_gpu_recommendation(aggs, total, want):
    results = [_share(k, a) for k, a in zip((1, 2, 4), aggs, strict=True)]
    assert gpu_check.recommend_jobs_per_gpu(results, total)["jobs_per_gpu"] == want


def test_bench_compile_precision_builds_only_the_compiled_rows_asked_for(tmp_path):
    """gpu-check's speed rows: reference, project fp32 and bf16, and compile in fp32 only (one compile to pay).
    Building the variants does not compile yet (torch.compile is lazy), so this runs in seconds on a CPU."""
    from trades_instability.tools import bench, bench_training

    def rows(*flags: str) -> list[tuple[str, str]]:
        args, device, _ = bench._prepare(bench.build_parser().parse_args(["--tiny", "--threads", "1", *flags]))
        n = bench._train_size(args)
        cfg32 = bench_training.run_config(args, device, "fp32", n)
        _, variants = bench._build_variants(args, device, cfg32, bench._load_splits(cfg32), n, str(tmp_path))
        return [(v.name, v.precision) for v in variants]

    base = [("reference (official TRADES loop)", "fp32"), ("project (Trainer step)", "fp32"),
            ("project (Trainer step)", "bf16")]
    assert rows() == base
    assert rows("--compile", "--compile-precision", "fp32") == [*base, ("project (Trainer step) +compile", "fp32")]
    assert rows("--compile") == [*base, ("project (Trainer step) +compile", "fp32"),
                                 ("project (Trainer step) +compile", "bf16")]
