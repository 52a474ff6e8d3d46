"""The run directory's layout is stated once (rundir/layout.py); every builder and the parser agree."""

from __future__ import annotations

from pathlib import Path

from trades_instability.config import pipeline_loading
from trades_instability.rundir import layout
from trades_instability.rundir.layout import RunDir
from trades_instability.rundir.records import RunFiles
from trades_instability.rundir.state import PUBLISHED
from trades_instability.workflow.paths import WorkflowPaths

ROOT = Path(__file__).resolve().parents[1]
SMOKE = ROOT / "tests" / "configs" / "smoke.yaml"


def test_builders_agree_with_the_layout():
    cfg = pipeline_loading.load(SMOKE, overrides={"results_dir": "/scratch/r/"})
    w = WorkflowPaths(cfg, "/repo")
    assert cfg.run_dir("default", 3) == layout.run_dir("/scratch/r", "default", 3) == "/scratch/r/runs/default/seed3"
    assert w.run_file("run.json") == "/scratch/r/runs/{setting}/seed{seed}/run.json"
    assert w.run_file(layout.BEST_PT) == layout.run_file("/scratch/r", "{setting}", "{seed}", "checkpoints/best.pt")
    assert w.run_state_dir("default", 3) == "/scratch/r/runs/default/seed3/state"
    first = cfg.suites_of("default")[0]
    assert w.eval_files(["default"])[0] == f"{cfg.run_dir('default', cfg.seeds('default')[0])}/eval_{first}.json"
    assert PUBLISHED == ("run.json", "epochs.csv", "batches.csv", "checkpoints/best.pt", "checkpoints/last.pt")
    files = RunFiles("/x/run")
    assert (files.last, files.epochs_csv, files.batches_csv) == (
        Path("/x/run/checkpoints/last.pt"), Path("/x/run/epochs.csv"), Path("/x/run/batches.csv"))


def test_run_dirs_parse_back():
    d = layout.run_dir("res", "fixed", 3)
    assert RunDir.parse(d) == RunDir("fixed", 3, Path(d))
    assert RunDir.parse(f"{d}/{layout.EPOCHS_CSV}") == RunDir("fixed", 3, Path(d))
    assert RunDir.parse("res/runs/a/seed-1/run.json") == RunDir("a", -1, Path("res/runs/a/seed-1"))
    assert RunDir.parse(f"{d}/{layout.BEST_PT}") is None  # only files directly in the run directory
    assert RunDir.parse("res/runs/a/seedling/epochs.csv") is None
