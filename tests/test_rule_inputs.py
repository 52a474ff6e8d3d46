"""Each artifact's code is an input of its rule (issue 29): a table's template, the shared templates it
extends and imports and its builder's module; a figure's builder module. So editing one reruns exactly
what it makes: shown on a fake-populated smoke workflow (every output present and up to date, written as
empty files and marked done with ``snakemake --touch``), editing a copy of the workflow so the repository's own
files are never touched."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path
from types import SimpleNamespace

import pytest

from trades_instability.config import pipeline_loading
from trades_instability.report import registry
from trades_instability.workflow.paths import WorkflowPaths

ROOT = Path(__file__).resolve().parents[1]
SMOKE = ROOT / "tests" / "configs" / "smoke.yaml"
TARGETS = ["paper", "conventions", "crossarch", "review", "results/summary.csv"]


def test_every_artifacts_code_exists_and_is_an_input():
    w = WorkflowPaths(pipeline_loading.load(SMOKE), ROOT)
    for art in registry.ARTIFACTS:
        code = w.code_of(art.name)
        files = [code["builder"], *([code["template"]] if art.template else []), *code.get("shared_templates", [])]
        assert all(Path(f).is_file() and not Path(f).is_absolute() for f in files), (art.name, files)
        assert callable(art.build())
    t3 = w.table_inputs(SimpleNamespace(table="table3"))
    assert Path(t3["template"]).resolve() == ROOT / "workflow/templates/table3.tex.j2"
    assert Path(t3["builder"]).resolve() == ROOT / "src/trades_instability/report/tables.py"
    assert [Path(f).resolve() for f in t3["shared_templates"]] == [
        ROOT / "workflow/templates" / t for t in ("_table.tex.j2", "_macros.tex.j2")]
    fig4 = w.figure_inputs(SimpleNamespace(figure="figure4"))
    assert Path(fig4["builder"]).resolve() == ROOT / "src/trades_instability/report/figures.py"
    assert "template" not in fig4


def test_shared_templates_are_what_the_templates_use():
    """The shared templates a table lists are exactly those its template extends or imports."""
    for art in registry.ARTIFACTS:
        if not art.template:
            continue
        text = (ROOT / registry.TEMPLATES_DIR / art.template).read_text()
        used = re.findall(r'<%-?\s*(?:extends|import|include|from)\s+"([^"]+)"', text)
        assert sorted(used) == sorted(art.shared_templates), art.name


def test_registry_names_each_builder_in_full():
    """grep finds the caller of each builder (no name assembled from pieces)."""
    source = (ROOT / "src/trades_instability/report/registry.py").read_text()
    for art in registry.ARTIFACTS:
        assert f'"{art.builder}"' in source, art.builder
    assert '"trades_instability.report.figures:draw_figure4"' in source


def _snakemake(repo: Path, work: Path, *args: str) -> str:
    env = {**os.environ, "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}"}
    env.pop("PYTHONPATH", None)  # the copy's Snakefile puts the copy's src/ first itself
    r = subprocess.run([sys.executable, "-m", "snakemake", *TARGETS, *args, "--snakefile", str(repo / "Snakefile"),
                        "--directory", str(work), "--configfile", str(SMOKE), "--cores", "1"],
                       capture_output=True, text=True, timeout=300, env=env)
    assert r.returncode == 0, (r.stdout + r.stderr)[-4000:]
    return r.stdout


def _pending(repo: Path, work: Path) -> set[str]:
    """Output files --summary plans to update."""
    rows = [line.split("\t") for line in _snakemake(repo, work, "--summary").splitlines()[1:]]
    return {row[0] for row in rows if len(row) >= 6 and row[5] != "no update"}


@pytest.fixture(scope="module")
def populated(tmp_path_factory) -> tuple[Path, Path]:
    """A copy of the workflow and a working directory where every output exists and is up to date."""
    repo, work = tmp_path_factory.mktemp("repo"), tmp_path_factory.mktemp("work")
    ignore = shutil.ignore_patterns("__pycache__", "*.egg-info")
    for name in ("Snakefile", "workflow", "src", "envs"):
        src = ROOT / name
        (shutil.copytree(src, repo / name, ignore=ignore) if src.is_dir() else shutil.copy2(src, repo / name))
    outputs = _pending(repo, work)
    assert any(o.endswith("table3.tex") for o in outputs) and any(o.endswith("checkpoints/best.pt") for o in outputs)
    for out in outputs:
        (work / out).parent.mkdir(parents=True, exist_ok=True)
        (work / out).write_text("")
    _snakemake(repo, work, "--touch")  # mark every job done, in the DAG's order
    assert _pending(repo, work) == set()
    return repo, work


def _edit(path: Path, line: str) -> None:
    """Change a file's content (Snakemake 9 skips an input whose checksum is the recorded one, so a bare
    touch reruns nothing) and make it newer than every output."""
    with path.open("a") as f:
        f.write(line)
    later = time.time() + 5  # whatever the file system's time resolution
    os.utime(path, (later, later))


def test_editing_a_table_template_reruns_exactly_that_table(populated):
    repo, work = populated
    before = _pending(repo, work)  # empty, unless the figures test ran first
    _edit(repo / "workflow/templates/table3.tex.j2", "<# edited by the test #>\n")
    assert _pending(repo, work) - before == {"tables/table3.tex"}


def test_editing_the_figures_module_reruns_only_the_figures(populated):
    repo, work = populated
    before = _pending(repo, work)
    _edit(repo / "src/trades_instability/report/figures.py", "# edited by the test\n")
    figures = {f"figures/figure{i}.{ext}" for i in range(1, 8) for ext in ("pdf", "png")}
    assert _pending(repo, work) - before == figures
