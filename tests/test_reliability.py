"""Two Snakemake invocations on the same results folder: the second is refused by Snakemake's lock and
the first finishes unharmed (README: "What happens when things go wrong")."""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
SMOKE = REPO / "tests" / "configs" / "smoke.yaml"


def _cmd(work: Path, *args: str) -> list[str]:
    return [sys.executable, "-m", "snakemake", *args, "--snakefile", str(REPO / "Snakefile"),
            "--directory", str(work), "--configfile", str(SMOKE), "--cores", "1"]


@pytest.mark.slow
def test_second_invocation_on_the_same_folder_is_refused(tmp_path: Path):
    target = "results/runs/default/seed0/run.json"
    first = subprocess.Popen(_cmd(tmp_path, target), stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    locks = tmp_path / ".snakemake" / "locks"
    t0 = time.time()
    while not (locks.is_dir() and any(locks.iterdir())):
        assert first.poll() is None, f"first run ended before taking its lock:\n{first.stdout.read()}"
        assert time.time() - t0 < 120, "first run never took its lock"
        time.sleep(0.05)
    second = subprocess.run(_cmd(tmp_path, target), capture_output=True, text=True, timeout=300)
    assert second.returncode != 0
    assert "cannot be locked" in (second.stdout + second.stderr)
    out, _ = first.communicate(timeout=600)
    assert first.returncode == 0, out
    run = tmp_path / target
    assert run.is_file() and '"status": "complete"' in run.read_text()
