"""The workflow meets the Snakemake workflow catalog's standards: `snakemake --lint` reports nothing on
the paper config and on the smoke config, and every Snakefile / .smk is formatted with snakefmt
(settings: pyproject.toml [tool.snakefmt]). Run `snakefmt Snakefile workflow/` to fix the format.
The Python sources (src/, tests/, workflow/scripts/) pass ruff (settings: pyproject.toml [tool.ruff]);
`ruff check --fix src tests workflow/scripts` fixes most of what it finds."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SMOKE = ROOT / "tests" / "configs" / "smoke.yaml"


def workflow_files() -> list[Path]:
    """Every Snakemake file of the repository: the Snakefile and workflow/**/*.smk."""
    return [ROOT / "Snakefile", *sorted((ROOT / "workflow").rglob("*.smk"))]


def test_workflow_files_found():
    names = {p.name for p in workflow_files()}
    assert {"Snakefile", "common.smk", "train.smk", "evaluate.smk", "tables.smk", "figures.smk"} <= names


@pytest.mark.parametrize("configfile", [None, SMOKE], ids=["config.yaml", "smoke.yaml"])
def test_snakemake_lint_reports_nothing(configfile, tmp_path):
    args = [sys.executable, "-m", "snakemake", "--lint", "--snakefile", str(ROOT / "Snakefile"),
            "--directory", str(tmp_path)]  # a scratch working directory: nothing is written to the repo
    if configfile is not None:
        args += ["--configfile", str(configfile)]
    r = subprocess.run(args, capture_output=True, text=True, timeout=300)
    out = r.stdout + r.stderr
    assert r.returncode == 0 and "Lints for" not in out, out[-6000:]
    assert "good condition" in out, out[-3000:]


def test_snakefmt_check():
    files = [str(p) for p in workflow_files()]
    r = subprocess.run([sys.executable, "-m", "snakefmt", "--check", "--diff",
                        "--config", str(ROOT / "pyproject.toml"), *files],
                       capture_output=True, text=True, timeout=300, cwd=ROOT)
    assert r.returncode == 0, "run `snakefmt Snakefile workflow/`:\n" + (r.stdout + r.stderr)[-6000:]


def test_ruff_check():
    r = subprocess.run([sys.executable, "-m", "ruff", "check", "--no-cache", "--config", str(ROOT / "pyproject.toml"),
                        "src", "tests", "workflow/scripts"], capture_output=True, text=True, timeout=300, cwd=ROOT)
    assert r.returncode == 0, "run `ruff check --fix src tests workflow/scripts`:\n" + (r.stdout + r.stderr)[-6000:]


def test_ruff_catches_what_it_is_configured_for(tmp_path):
    """The configuration is live: a long line, an unused import and unsorted imports fail."""
    bad = tmp_path / "bad.py"
    bad.write_text("import sys\nimport os\n\nx = '" + "a" * 130 + "'\n")
    r = subprocess.run([sys.executable, "-m", "ruff", "check", "--no-cache", "--config", str(ROOT / "pyproject.toml"),
                        "--output-format", "concise", str(bad)], capture_output=True, text=True, timeout=300)
    found = {code for code in ("E501", "F401", "I001") if code in r.stdout}
    assert r.returncode == 1 and found == {"E501", "F401", "I001"}, r.stdout + r.stderr


def test_default_target_is_rule_all(tmp_path):
    """`all` is the default target as the first rule of the Snakefile (no `default_target:` directive,
    which snakefmt cannot format): a new rule must not go above it."""
    r = subprocess.run([sys.executable, "-m", "snakemake", "-n", "--quiet", "rules", "--configfile", str(SMOKE),
                        "--snakefile", str(ROOT / "Snakefile"), "--directory", str(tmp_path)],
                       capture_output=True, text=True, timeout=300)
    out = r.stdout + r.stderr
    assert r.returncode == 0, out[-3000:]
    assert any(line.split() == ["all", "1"] for line in out.splitlines()), out[-3000:]
