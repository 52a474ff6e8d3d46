"""The repository's top level is fixed by the design (DESIGN.md, "Layout"): nothing beyond its list is
tracked there. Only tracked files count (git ls-files), so a user's local .venv/, results/ or data/
(all git-ignored) never trip it."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
ALLOWED = {"Snakefile", "workflow", "envs", "config.yaml", "src", "figures", "tables", "tests", "README.md",
           "pyproject.toml", ".ci", ".gitignore"}


def tracked_top_level() -> set[str]:
    """The first path component of every file git tracks in this checkout (the index, so a staged new
    file counts before it is committed)."""
    r = subprocess.run(["git", "ls-files", "-z"], cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, r.stderr
    return {p.split("/", 1)[0] for p in r.stdout.split("\0") if p}


@pytest.mark.skipif(shutil.which("git") is None or not (ROOT / ".git").exists(), reason="not a git checkout")
def test_top_level_holds_only_the_designed_entries():
    names = tracked_top_level()
    assert "src" in names and "Snakefile" in names  # the listing itself works
    extra = sorted(names - ALLOWED)
    assert not extra, (f"tracked at the top level but not in the design's layout: {', '.join(extra)}; "
                       "move them under src/, workflow/ or tests/, or remove them (git rm)")
