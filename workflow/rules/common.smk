# Shared by every rule file: the validated pipeline config (PC) and path helpers.
# The Snakefile has already validated `config` into PC (trades_instability.pipeline_config) before
# this file is included. Paths are relative to the working directory (--directory).
import json as _json
import re as _re

R = PC.results_dir  # results/ by default
SRC = str(Path(workflow.basedir) / "src")  # the library, put on PYTHONPATH of every job
ENV = "../../envs/trades.yaml"  # conda env of the jobs that run the library (--sdm conda)
SETTINGS = list(PC.settings)
SUITES = PC.suite_names
LANDSCAPE_SUITE = PC.landscape_suite
DATA_ROOT = PC.data_root
DATA_ROOT_LINE = "data_root: " + _json.dumps(PC.data_root)  # JSON string = valid YAML scalar
# SRC, DATA_ROOT and DATA_ROOT_LINE are used in shell commands as globals, NOT as params: params are a
# rerun trigger, and neither moving the clone nor moving the data is a new experiment.
TABLES = sorted(config.get("tables") or {}, key=lambda n: int(n.removeprefix("table")))
FIGURES = sorted(config.get("figures") or {}, key=lambda n: int(n.removeprefix("figure")))
# "comparison" and "detection" read the settings of the paper's tables and figures only (detection: unless
# detection.settings names others), so that `paper` never trains what only the conventions target needs
AGG_TARGETS = TABLES + FIGURES + ["comparison", "detection"] + (["conventions"] if config.get("conventions") else [])


def _alternation(names):
    return "|".join(_re.escape(n) for n in sorted(names, key=len, reverse=True)) or "(?!)"


wildcard_constraints:
    setting=_alternation(SETTINGS),
    seed=r"\d+",
    suite=_alternation(SUITES),
    target=_alternation(AGG_TARGETS),


def run_dir(setting, seed):
    """results/runs/{setting}/seed{seed} (the run directory of the contract)."""
    return PC.run_dir(setting, seed)


def run_files(settings, name):
    """`name` (e.g. epochs.csv) of every seed of every setting in `settings`."""
    return [f"{run_dir(s, seed)}/{name}" for s, seed in PC.runs(list(settings))]


def eval_files(settings):
    """eval_{suite}.json of every run of `settings`, for each suite of its setting."""
    return [f"{run_dir(s, seed)}/eval_{suite}.json" for s, seed in PC.runs(list(settings))
            for suite in PC.suites_of(s)]


def landscape_files(settings):
    """landscape.npz of every run of the settings in `settings` that ask for a landscape."""
    return [f"{run_dir(s, seed)}/landscape.npz" for s, seed in PC.runs([s for s in settings if PC.has_landscape(s)])]


def aggregate_inputs(settings):
    """Everything aggregation reads for `settings`: run.json, epochs.csv, eval_*.json per run."""
    return {
        "runs": run_files(settings, "run.json"),
        "epochs": run_files(settings, "epochs.csv"),
        "evals": eval_files(settings),
    }


def aggregate_runs(settings):
    """The run list handed to trades_instability.aggregate.aggregate (params: no file I/O)."""
    return [{"setting": s, "seed": int(seed), "run_dir": run_dir(s, seed), "suites": PC.suites_of(s)}
            for s, seed in PC.runs(list(settings))]


def target_settings(target):
    """Settings named by tables.<target> / figures.<target>, detection.settings or `conventions:`."""
    if target == "detection":
        return PC.detection_settings()
    if target == "conventions":
        return PC.conventions_settings()
    if target == "comparison":
        return PC.paper_settings(tables_only=True)
    kind = "tables" if target.startswith("table") else "figures"
    return PC.target_settings(kind, target)


def summary_for(target=None):
    """summary.csv covering what `target` (table1..7, figure1..7) needs; the global one for None.
    A per-target summary holds only the runs of the settings that target names, so that e.g.
    `snakemake tables/table3.tex` trains only `default` and `fixed`."""
    return f"{R}/summary.csv" if target is None else f"{R}/aggregate/{target}/summary.csv"


def selection_for(target=None):
    """selection.json matching summary_for(target) (groups are per setting, so identical in both)."""
    return f"{R}/selection.json" if target is None else f"{R}/aggregate/{target}/selection.json"


def train_resource(key):
    return PC.resources("train")[key]


def stage_resource(rule, key):
    return PC.resources(rule)[key]

