"""Every file in tests/configs/bad/ must be refused with ONE message naming the faulty key.

Each file is a delta over tests/configs/smoke.yaml (see tests/configs/bad/README.md); the header
comments give the expected message fragments.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from trades_instability.config import pipeline as pc
from trades_instability.config import pipeline_loading

ROOT = Path(__file__).resolve().parents[1]
BASE = ROOT / "tests" / "configs" / "smoke.yaml"
BAD_DIR = ROOT / "tests" / "configs" / "bad"
BAD = sorted(BAD_DIR.glob("*.yaml"))


def _header(path: Path) -> tuple[list[str], bool]:
    expect, check_data = [], False
    for line in path.read_text().splitlines():
        if not line.startswith("#"):
            break
        body = line.lstrip("#").strip()
        if body.startswith("expect:"):
            expect.append(body.removeprefix("expect:").strip())
        elif body.replace(" ", "") == "check_data:true":
            check_data = True
    return expect, check_data


def merged(path: Path) -> dict:
    return pc.deep_merge(yaml.safe_load(BASE.read_text()), yaml.safe_load(path.read_text()) or {})


def test_base_config_is_valid():
    pipeline_loading.validate(yaml.safe_load(BASE.read_text()), check_data=True)  # synthetic only: no data needed


def test_there_are_enough_bad_configs():
    names = {p.stem for p in BAD}
    required = {"unknown_top_level_key", "typo_runconfig_key", "wrong_type", "eps_nonpositive",
                "step_size_nonpositive", "batch_size_zero", "epochs_negative", "beta_negative",
                "unknown_dataset", "unknown_method", "unknown_suite", "seeds_not_integers",
                "table_missing_setting", "figure_missing_setting", "data_root_missing"}
    assert required <= names, sorted(required - names)
    for p in BAD:
        assert _header(p)[0], f"{p.name} has no '# expect:' line"


@pytest.mark.parametrize("path", BAD, ids=[p.stem for p in BAD])
def test_bad_config_is_refused(path: Path):
    expect, check_data = _header(path)
    with pytest.raises(pc.PipelineConfigError) as info:
        pipeline_loading.validate(merged(path), source=path.name, check_data=check_data)
    msg = str(info.value)
    assert "\n" not in msg, f"one-line message expected, got: {msg}"
    assert msg.startswith(f"invalid pipeline config {path.name}: ")
    for fragment in expect:
        assert fragment in msg, f"{fragment!r} not in: {msg}"


def test_data_root_check_is_skipped_without_check_data():
    # the same config is fine for a dry run (no data needed to plan the jobs)
    pipeline_loading.validate(merged(BAD_DIR / "data_root_missing.yaml"), check_data=False)


def test_cli_validate_reports_one_line(tmp_path: Path):
    bad = tmp_path / "bad.yaml"
    bad.write_text(yaml.safe_dump(merged(BAD_DIR / "typo_runconfig_key.yaml")))
    r = subprocess.run([sys.executable, "-m", "trades_instability", "pipeline", "validate", str(bad)],
                       capture_output=True, text=True, cwd=ROOT)
    assert r.returncode == 1
    assert r.stderr.count("\n") == 1 and "settings.default.overrides.bta" in r.stderr
    assert "Traceback" not in r.stderr


@pytest.mark.slow
def test_snakemake_refuses_bad_config_before_any_job(tmp_path: Path):
    bad = tmp_path / "bad.yaml"
    bad.write_text(yaml.safe_dump(merged(BAD_DIR / "typo_runconfig_key.yaml")))
    work = tmp_path / "work"
    work.mkdir()
    env = {**os.environ, "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}"}
    r = subprocess.run(
        [sys.executable, "-m", "snakemake", "paper", "-n", "--snakefile", str(ROOT / "Snakefile"),
         "--directory", str(work), "--configfile", str(bad)],
        capture_output=True, text=True, env=env, timeout=300,
    )
    out = r.stdout + r.stderr
    assert r.returncode != 0, out
    assert "settings.default.overrides.bta" in out, out
    assert "Building DAG" not in out and "Job stats" not in out, out
    assert "Traceback" not in out, out
    assert not (work / "results").exists()
