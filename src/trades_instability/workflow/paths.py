"""Paths, input functions and job environment of the Snakemake workflow (workflow/rules/*.smk).

The rule files stay declarative: common.smk builds one :class:`WorkflowPaths` from the validated
pipeline config and binds its methods to short names; the rules call those. Keeping the functions here
(not beside the rules) is the Snakemake catalog's convention (``snakemake --lint``) and makes them
unit-testable without Snakemake.

:func:`export_job_env` puts the library path and the data root into the environment of every job
instead of into ``params``: params are a rerun trigger (Snakemake 9), and neither moving the clone nor
moving the data is a new experiment. Both values are still recorded: the data root in every run's
config.yaml / run.json, the library version in run.json.
"""

from __future__ import annotations

import json
import os
import re
from pathlib import Path
from typing import Any

from trades_instability.config.pipeline import PipelineConfig
from trades_instability.report import registry
from trades_instability.rundir import layout

# environment variables the shell commands of the rules read (set by export_job_env)
ENV_SRC = "TRADES_SRC"  # the library (src/), prepended to PYTHONPATH of every job
ENV_DATA_ROOT = "TRADES_DATA_ROOT"  # config data_root, for trades-eval --data-root
ENV_DATA_ROOT_YAML = "TRADES_DATA_ROOT_YAML"  # the same as a YAML scalar (JSON string), for run_config
ENV_FETCH = "TRADES_FETCH"  # "--no-fetch" when config download is false, else "" (rule download)


def export_job_env(pc: PipelineConfig, basedir: str | os.PathLike) -> dict[str, str]:
    """Set TRADES_SRC, TRADES_DATA_ROOT, TRADES_DATA_ROOT_YAML and TRADES_FETCH in ``os.environ`` (inherited by every
    local job; a SLURM job's snakemake parses the Snakefile again and sets them there). Returns them."""
    env = {
        ENV_SRC: str(Path(basedir) / "src"),
        ENV_DATA_ROOT: pc.data_root,
        ENV_DATA_ROOT_YAML: json.dumps(pc.data_root),  # a JSON string is a valid YAML scalar
        # not a param either: switching download on or off must not rerun the download rule (see data_input)
        ENV_FETCH: "" if pc.download else "--no-fetch",
    }
    os.environ.update(env)
    return env


def alternation(names) -> str:
    """Regex matching exactly one of ``names`` (longest first); never matches when empty."""
    return "|".join(re.escape(n) for n in sorted(names, key=len, reverse=True)) or "(?!)"


class WorkflowPaths:
    """Every path and input function the rules use, from the validated config ``pc``.

    ``basedir`` is the Snakefile's directory (the repository root)."""

    def __init__(self, pc: PipelineConfig, basedir: str | os.PathLike):
        self.pc = pc
        self.basedir = Path(basedir)
        self.results = pc.results_dir
        self.templates_dir = str(self.basedir / registry.TEMPLATES_DIR)
        # the report artifacts of report/registry.py the config asks for (tables / figures: numbered order)
        self.tables = [a.name for a in registry.configured(pc.raw, registry.TABLE)]
        self.figures = [a.name for a in registry.configured(pc.raw, registry.FIGURE)]
        # targets with their own aggregation (results/aggregate/{target}/). "comparison" and "detection"
        # read the settings of the paper's tables and figures only (detection: unless detection.settings
        # names others), so that `paper` never trains what only the conventions target needs
        self.grids = [a.name for a in registry.configured(pc.raw, registry.GRID)]  # conventions, crossarch
        self.reviews = [a.name for a in registry.configured(pc.raw, registry.REVIEW)]  # the review target
        self.agg_targets = (self.tables + self.figures + list(registry.names(registry.COMPARISON))
                            + list(registry.names(registry.DETECTION)) + self.grids + self.reviews)

    def artifact_names(self, kind: str) -> str:
        """Regex of every registered artifact name of ``kind`` (a rule's wildcard constraint, e.g. table1..7)."""
        return alternation(registry.names(kind))

    # -- outputs --------------------------------------------------------------------------------
    def table_file(self, name: str) -> str:
        """{tables_dir}/{name} (name may hold wildcards, e.g. "{table}.tex")."""
        return os.path.join(self.pc.tables_dir, name)

    def figure_file(self, name: str) -> str:
        """{figures_dir}/{name}."""
        return os.path.join(self.pc.figures_dir, name)

    def run_file(self, name: str) -> str:
        """Pattern results/runs/{setting}/seed{seed}/{name} with the wildcards left in."""
        return layout.run_file(self.results, "{setting}", "{seed}", name)

    def results_file(self, *parts: str) -> str:
        return os.path.join(self.results, *parts)

    def artifact_files(self, name: str, *, targets_only: bool = True) -> list[str]:
        """The files of artifact ``name`` (report/registry.py), in its rule's output order; by default only
        its target files (without e.g. the CSV beside comparison.tex)."""
        dirs = {registry.TABLES_DIR: self.table_file, registry.FIGURES_DIR: self.figure_file}
        return [dirs[d](f) for d, f in registry.get(name).files(targets_only=targets_only)]

    def grid_targets(self, grid: str) -> list[str]:
        """What target ``grid`` (conventions, crossarch) builds: its table and its figure (PDF + PNG)."""
        return self.artifact_files(registry.get(grid, registry.GRID).name)

    def paper_targets(self) -> list[str]:
        """Everything rule `paper` builds: the target files of every configured artifact of the registry that
        is `in_paper` (tables, comparison, figures as PDF + PNG, the FOSC detector)."""
        names = self.tables + [a.name for a in registry.of_kind(registry.COMPARISON) if a.in_paper]
        names += self.figures + [a.name for a in registry.of_kind(registry.DETECTION) if a.in_paper]
        return [f for name in names for f in self.artifact_files(name)]

    # -- runs -----------------------------------------------------------------------------------
    def run_dir(self, setting: str, seed: int | str) -> str:
        """results/runs/{setting}/seed{seed} (the run directory of the contract)."""
        return self.pc.run_dir(setting, seed)

    def run_state_dir(self, setting: str, seed: int | str) -> str:
        """The trainer's own folder results/runs/{setting}/seed{seed}/state (never a declared output)."""
        return layout.state_dir(self.run_dir(setting, seed))

    def run_files(self, settings, name: str) -> list[str]:
        """``name`` (e.g. epochs.csv) of every seed of every setting in ``settings``."""
        return [os.path.join(self.run_dir(s, seed), name) for s, seed in self.pc.runs(list(settings))]

    def eval_files(self, settings) -> list[str]:
        """eval_{suite}.json of every run of ``settings``, for each suite of its setting."""
        return [
            os.path.join(self.run_dir(s, seed), layout.eval_json(suite))
            for s, seed in self.pc.runs(list(settings))
            for suite in self.pc.suites_of(s)
        ]

    def landscape_files(self, settings) -> list[str]:
        """landscape.npz of every run of the settings in ``settings`` that ask for a landscape."""
        return self.run_files([s for s in settings if self.pc.has_landscape(s)], layout.LANDSCAPE_NPZ)

    def data_input(self, wildcards) -> dict[str, Any]:
        """{"data": ancient(results/datasets/<dataset>.json)} for a run on a downloadable dataset, {} for
        synthetic: the download rule's verification record, so that Snakemake fetches and verifies the data
        (once, on the login node) before the first train / evaluate / landscape job that reads it.

        Why a record under results_dir, read as ``ancient``: its path does not depend on data_root or the
        clone, so moving either changes no job's input (Snakemake's input trigger); ``ancient`` keeps the
        record's time stamp from rerunning finished runs. The download rule has no params (data_root and the
        fetch switch reach it through the environment): a rerun of it while its record exists would not
        rerun finished runs, but in Snakemake 9 it hides the jobs downstream of it from that invocation's
        planning, so nothing may trigger one. A dataset removed after its record was written is caught by the
        start-up data check, which names the fix (``python -m trades_instability download``)."""
        from snakemake.io import ancient

        dataset = self.pc.dataset(wildcards.setting)
        return {"data": ancient(self.pc.dataset_record(dataset))} if dataset in self.datasets else {}

    @property
    def datasets(self) -> list[str]:
        """Every downloadable dataset (the download rule's wildcard values)."""
        from trades_instability.data.download import SOURCES

        return list(SOURCES)

    # -- aggregation ----------------------------------------------------------------------------
    def aggregate_inputs(self, settings) -> dict[str, list[str]]:
        """Everything aggregation reads for ``settings``: run.json, epochs.csv, eval_*.json per run."""
        return {
            "runs": self.run_files(settings, layout.RUN_JSON),
            "epochs": self.run_files(settings, layout.EPOCHS_CSV),
            "evals": self.eval_files(settings),
        }

    def aggregate_runs(self, settings) -> list[dict[str, Any]]:
        """The run list handed to trades_instability.aggregate.aggregate (params: no file I/O)."""
        return [
            {"setting": s, "seed": int(seed), "run_dir": self.run_dir(s, seed), "suites": self.pc.suites_of(s)}
            for s, seed in self.pc.runs(list(settings))
        ]

    def target_settings(self, target: str) -> list[str]:
        """Settings named by tables.<target> / figures.<target>, detection.settings, `conventions:` or `crossarch:`."""
        art = registry.get(target)
        if art.kind == registry.DETECTION:
            return self.pc.detection_settings()
        if art.kind == registry.GRID:
            return self.pc.grid_settings(target)
        if art.kind == registry.REVIEW:
            return self.pc.review_settings()
        if art.kind == registry.COMPARISON:
            return self.pc.paper_settings(tables_only=True)
        return self.pc.target_settings(art.section, target)

    def summary_for(self, target: str | None = None) -> str:
        """summary.csv covering what ``target`` (table1..7, figure1..7, comparison, detection, conventions)
        needs; the global one for None. A per-target summary holds only the runs of the settings that target
        names, so that e.g. ``snakemake tables/table3.tex`` trains only `default` and `fixed`."""
        if target is None:
            return self.results_file("summary.csv")
        return self.results_file("aggregate", target, "summary.csv")

    def selection_for(self, target: str | None = None) -> str:
        """selection.json matching summary_for(target) (groups are per setting, so identical in both)."""
        if target is None:
            return self.results_file("selection.json")
        return self.results_file("aggregate", target, "selection.json")

    def aggregation_of(self, target: str | None = None) -> dict[str, str]:
        """{"summary": ..., "selection": ...} of ``target`` (input of its rendering rule)."""
        return {"summary": self.summary_for(target), "selection": self.selection_for(target)}

    # -- tables / figures -----------------------------------------------------------------------
    def spec(self, kind: str, name: str) -> dict[str, Any]:
        """config ``tables.<name>`` / ``figures.<name>``."""
        specs = self.pc.raw.get(kind) or {}
        if name not in specs:
            raise ValueError(f"config key '{kind}.{name}' is missing")
        return specs[name]

    def table_spec(self, wildcards) -> dict[str, Any]:
        return self.spec("tables", wildcards.table)

    def figure_spec(self, wildcards) -> dict[str, Any]:
        return self.spec("figures", wildcards.figure)

    def code_of(self, name: str) -> dict[str, str | list[str]]:
        """The code of artifact ``name`` as rule inputs: its builder's module, template and shared templates
        (report/registry.py Artifact.code_files). Editing one reruns exactly the artifacts made with it; the
        scripts find the templates folder from ``input.template``. Paths are relative to the working directory
        (Snakemake's, where the Snakefile is parsed), so that moving a clone that holds its results (the
        default working directory) changes no job's set of input files (a rerun trigger)."""

        def rel(f: str) -> str:
            return os.path.relpath(self.basedir / f)

        return {role: [rel(f) for f in files] if isinstance(files, list) else rel(files)
                for role, files in registry.get(name).code_files().items()}

    def report_inputs(self, name: str) -> dict[str, Any]:
        """The per-target aggregation of artifact ``name`` and its code (:meth:`code_of`)."""
        return {**self.aggregation_of(name), **self.code_of(name)}

    def table_inputs(self, wildcards) -> dict[str, Any]:
        """summary.csv + selection.json of the per-target aggregation of {table}, and the table's code."""
        return self.report_inputs(wildcards.table)

    def grid_inputs(self, wildcards) -> dict[str, Any]:
        """The same for a side-by-side comparison {grid} (conventions, crossarch)."""
        return self.report_inputs(wildcards.grid)

    def figure_inputs(self, wildcards) -> dict[str, Any]:
        """The per-target aggregation of {figure} plus its per-run files (the registry's run_files: epochs.csv,
        batches.csv, landscape.npz) of ALL seeds of the settings it names: the representative Regular /
        Unstable / self-healing seeds are only known after aggregation, the renderer picks them."""
        name = wildcards.figure
        art = registry.get(name, registry.FIGURE)
        settings = art.spec_settings(self.figure_spec(wildcards))
        runs: list[str] = []
        for f in art.run_files:
            runs += self.landscape_files(settings) if f == layout.LANDSCAPE_NPZ else self.run_files(settings, f)
        return {**self.report_inputs(name), "runs": runs}

    # -- resources ------------------------------------------------------------------------------
    def resource(self, rule: str, key: str):
        """config resources.<rule>.<key>."""
        return self.pc.resources(rule)[key]
