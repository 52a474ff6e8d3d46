"""trades_instability.workflow.paths: the paths and input functions of the rules, and the job
environment (TRADES_*) through which the shell commands get the library path and the data root."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace

import yaml

from trades_instability.config import pipeline as pipeline_config
from trades_instability.config import pipeline_loading
from trades_instability.workflow.paths import (
    ENV_DATA_ROOT,
    ENV_DATA_ROOT_YAML,
    ENV_FETCH,
    ENV_SRC,
    WorkflowPaths,
    alternation,
    export_job_env,
)

ROOT = Path(__file__).resolve().parents[1]
SMOKE = ROOT / "tests" / "configs" / "smoke.yaml"
ODD_ROOT = "/data sets/it's \"here\" $HOME\\x"


def smoke_pc(**overrides):
    return pipeline_loading.load(SMOKE, overrides=overrides or None)


def test_paths_and_inputs():
    pc = smoke_pc(results_dir="res", tables_dir="tab", figures_dir="fig")
    w = WorkflowPaths(pc, "/repo")
    assert w.templates_dir == "/repo/workflow/templates"
    assert w.tables == [f"table{i}" for i in range(1, 8)] and w.figures == [f"figure{i}" for i in range(1, 8)]
    assert w.run_file("checkpoints/best.pt") == "res/runs/{setting}/seed{seed}/checkpoints/best.pt"
    assert w.table_file("{table}.tex") == "tab/{table}.tex" and w.figure_file("x.png") == "fig/x.png"
    assert w.run_files(["default"], "epochs.csv") == [f"res/runs/default/seed{s}/epochs.csv" for s in (0, 1)]
    assert w.eval_files(["default"]) == [f"res/runs/default/seed{s}/eval_full.json" for s in (0, 1)]
    assert w.landscape_files(["fixed", "default"]) == [f"res/runs/default/seed{s}/landscape.npz" for s in (0, 1)]
    assert w.summary_for() == "res/summary.csv" and w.selection_for("table3") == "res/aggregate/table3/selection.json"
    assert w.target_settings("table3") == pc.target_settings("tables", "table3")
    assert w.target_settings("detection") == pc.detection_settings()
    assert w.target_settings("comparison") == pc.paper_settings(tables_only=True)
    assert {"comparison", "detection", "table3", "figure7"} <= set(w.agg_targets)
    assert "conventions" in w.agg_targets and w.target_settings("conventions") == pc.conventions_settings()
    no_conventions = {**pc.raw}
    no_conventions.pop("conventions")
    assert "conventions" not in WorkflowPaths(pipeline_config.PipelineConfig(no_conventions), "/repo").agg_targets
    targets = w.paper_targets()
    assert len(targets) == 7 + 1 + 14 + 3 and "tab/comparison.tex" in targets and "fig/figure7.png" in targets
    # derived from report/registry.py: the list the workflow had spelt out before, in the same order
    assert targets == ([f"tab/table{i}.tex" for i in range(1, 8)] + ["tab/comparison.tex"]
                       + [f"fig/figure{i}.{e}" for i in range(1, 8) for e in ("pdf", "png")]
                       + ["tab/detection.tex", "fig/detection.pdf", "fig/detection.png"])
    assert w.grid_targets("crossarch") == ["tab/crossarch.tex", "fig/crossarch.pdf", "fig/crossarch.png"]
    assert w.artifact_files("comparison", targets_only=False) == ["tab/comparison.tex", "tab/comparison.csv"]
    import re

    assert re.fullmatch(w.artifact_names("table"), "table7") and not re.fullmatch(w.artifact_names("table"), "table8")
    fig = w.figure_inputs(SimpleNamespace(figure="figure6"))
    assert fig["summary"] == "res/aggregate/figure6/summary.csv"
    assert set(fig["runs"]) == set(w.run_files(["default", "fixed"], "epochs.csv"))
    fig4 = w.figure_inputs(SimpleNamespace(figure="figure4"))["runs"]
    assert fig4 == w.run_files(["default"], "epochs.csv") + w.run_files(["default"], "batches.csv")
    assert w.figure_inputs(SimpleNamespace(figure="figure1"))["runs"] == w.landscape_files(["default"])
    assert w.table_spec(SimpleNamespace(table="table1")) == {"setting": "default"}
    assert w.resource("train", "threads") == 1


def test_alternation():
    import re

    pat = alternation(["a", "ab", "a.b"])
    assert re.fullmatch(pat, "ab") and re.fullmatch(pat, "a.b") and not re.fullmatch(pat, "axb")
    assert not re.fullmatch(alternation([]), "")


def test_export_job_env(monkeypatch):
    for k in (ENV_SRC, ENV_DATA_ROOT, ENV_DATA_ROOT_YAML, ENV_FETCH):
        monkeypatch.delenv(k, raising=False)
    env = export_job_env(smoke_pc(data_root=ODD_ROOT), "/some/clone")
    assert os.environ[ENV_SRC] == "/some/clone/src" and os.environ[ENV_DATA_ROOT] == ODD_ROOT
    assert yaml.safe_load(f"data_root: {os.environ[ENV_DATA_ROOT_YAML]}") == {"data_root": ODD_ROOT}
    assert env == {k: os.environ[k] for k in (ENV_SRC, ENV_DATA_ROOT, ENV_DATA_ROOT_YAML, ENV_FETCH)}
    assert env[ENV_FETCH] == ""  # download defaults to true: the download rule may fetch
    assert export_job_env(smoke_pc(download=False), "/c")[ENV_FETCH] == "--no-fetch"


def test_data_input_is_the_ancient_download_record():
    """Runs on a real dataset read the download rule's record (ancient: its time never reruns a finished
    run; its path does not depend on data_root); synthetic runs need none."""
    pc = smoke_pc(results_dir="res", data_root="/elsewhere")
    raw = {**pc.raw, "settings": {**pc.raw["settings"], "c100": {"overrides": {"dataset": "cifar100"},
                                                                 "seeds": [0], "suites": ["cheap"]}}}
    w = WorkflowPaths(pipeline_loading.validate(raw), "/repo")
    data = w.data_input(SimpleNamespace(setting="c100"))["data"]
    assert data == "res/datasets/cifar100.json" and data.flags.get("ancient")
    assert w.data_input(SimpleNamespace(setting="default")) == {}
    assert w.datasets == ["cifar10", "cifar100", "tinyimagenet"]


def test_run_config_rule_records_the_data_root(tmp_path):
    """Rule run_config appends data_root from $TRADES_DATA_ROOT_YAML: the file equals the library's
    run_config_yaml (with data_root), whatever characters the data root holds."""
    r = subprocess.run([sys.executable, "-m", "snakemake", "results/runs/default/seed1/config.yaml", "--cores", "1",
                        "--configfile", str(SMOKE), "--config", f"data_root={ODD_ROOT}",
                        "--snakefile", str(ROOT / "Snakefile"), "--directory", str(tmp_path)],
                       capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, (r.stdout + r.stderr)[-3000:]
    text = (tmp_path / "results/runs/default/seed1/config.yaml").read_text()
    assert text == smoke_pc(data_root=ODD_ROOT).run_config_yaml("default", 1)
    assert yaml.safe_load(text)["data_root"] == ODD_ROOT
