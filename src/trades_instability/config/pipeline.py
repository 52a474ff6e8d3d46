"""The pipeline config (``config.yaml``): its expansion into settings, seeds and runs.

A *setting* is one unique set of run-config overrides; it is trained once per seed, whatever number
of tables and figures read it. A *run* is one (setting, seed) pair; its resolved run config is

    RunConfig defaults  <-  config ``defaults:``  <-  ``data_root``  <-  setting ``overrides:``  <-  seed

(deep-merged, later wins). A :class:`PipelineConfig` is built only by
:func:`trades_instability.config.pipeline_loading.validate` (through its ``load``): the JSON schema, then semantic
checks, stopping at the first problem with ONE :class:`PipelineConfigError` whose message names the key path and
what is allowed.

A setting's ``plant_masking:`` (a positive control, README "Planted control") puts gradient masking on the
seeds it lists: those runs get ``plant_masking`` in their run config (:meth:`PipelineConfig.plant_of`), the
others none; ``{same_as: <setting>}`` plants a setting's shared seeds as another does (the Fixed setting).

Around it: loading, validation and the dataset check (:mod:`trades_instability.config.pipeline_loading`), the schema
(:mod:`trades_instability.config.schema`), the built-in suites (:mod:`trades_instability.config.suites`), the run
directory's paths (:mod:`trades_instability.rundir.layout`) and the command line (:mod:`trades_instability.config.cli`,
run as ``python -m trades_instability pipeline``).
"""

from __future__ import annotations

import copy
import json
from dataclasses import dataclass
from typing import Any

import yaml

from trades_instability.config import run as run_config_mod
from trades_instability.config.suites import BUILTIN_SUITES, builtin_attacks
from trades_instability.rundir import layout


class PipelineConfigError(ValueError):
    """The pipeline config is invalid; the message names the key path and the allowed values."""


# ------------------------------------------------------------------------------------------ helpers


def deep_merge(base: dict[str, Any], over: dict[str, Any]) -> dict[str, Any]:
    """Return ``base`` updated by ``over``; nested mappings merge, everything else is replaced."""
    out = copy.deepcopy(base)
    for k, v in over.items():
        if isinstance(v, dict) and isinstance(out.get(k), dict):
            out[k] = deep_merge(out[k], v)
        else:
            out[k] = copy.deepcopy(v)
    return out


# ------------------------------------------------------------------------------------ the config


@dataclass
class PipelineConfig:
    """A validated pipeline config (``raw`` is the dict as loaded, with defaults filled in)."""

    raw: dict[str, Any]
    source: str = "<config>"

    # -- paths ------------------------------------------------------------------------------
    @property
    def results_dir(self) -> str:
        return str(self.raw["results_dir"]).rstrip("/")

    @property
    def tables_dir(self) -> str:
        return str(self.raw["tables_dir"]).rstrip("/")

    @property
    def figures_dir(self) -> str:
        return str(self.raw["figures_dir"]).rstrip("/")

    @property
    def data_root(self) -> str:
        return str(self.raw["data_root"])

    @property
    def download(self) -> bool:
        """Top-level ``download``: the download rule may fetch a missing dataset (else it only verifies)."""
        return bool(self.raw["download"])

    def dataset_record(self, dataset: str) -> str:
        """{results_dir}/datasets/{dataset}.json: the download rule's verification record."""
        return f"{self.results_dir}/datasets/{dataset}.json"

    # -- settings / runs --------------------------------------------------------------------
    @property
    def settings(self) -> dict[str, dict[str, Any]]:
        return self.raw["settings"]

    def seeds(self, setting: str) -> list[int]:
        s = self.settings[setting]["seeds"]
        return list(self.raw["seeds"][s]) if isinstance(s, str) else list(s)

    def suites_of(self, setting: str) -> list[str]:
        return list(self.settings[setting]["suites"])

    def has_landscape(self, setting: str) -> bool:
        return bool(self.settings[setting].get("landscape", False))

    def runs(self, settings: list[str] | None = None) -> list[tuple[str, int]]:
        names = list(self.settings) if settings is None else settings
        return [(s, seed) for s in names for seed in self.seeds(s)]

    def run_dir(self, setting: str, seed: int | str) -> str:
        return layout.run_dir(self.results_dir, setting, seed)

    # -- planted control (core/masking.py; README "Planted control") ---------------------------
    def plant_entries(self, setting: str) -> list[dict[str, Any]]:
        """The setting's ``plant_masking:`` entries (each with its ``seeds``), ``same_as`` followed (restricted
        to this setting's seeds); [] when it plants nothing."""
        spec = self.settings[setting].get("plant_masking")
        if not spec:
            return []
        if isinstance(spec, dict) and "same_as" in spec:
            mine = set(self.seeds(setting))
            out = []
            for e in self.plant_entries(spec["same_as"]):
                seeds = [x for x in e["seeds"] if x in mine]
                if seeds:
                    out.append({**e, "seeds": seeds})
            return out
        return [dict(e) for e in (spec if isinstance(spec, list) else [spec])]

    def plant_of(self, setting: str, seed: int | str) -> dict[str, Any] | None:
        """The run-config ``plant_masking`` mapping of one run (None: the run is not planted)."""
        for e in self.plant_entries(setting):
            if int(seed) in e["seeds"]:
                return {k: v for k, v in e.items() if k != "seeds"}
        return None

    def run_config(self, setting: str, seed: int | str) -> dict[str, Any]:
        """The fully resolved run config (every RunConfig key) of one run, as a plain dict."""
        cache = self.__dict__.setdefault("_resolved", {})
        plant = self.plant_of(setting, seed)
        key = (setting, json.dumps(plant, sort_keys=True))
        if key not in cache:
            merged = self._merged(setting)
            if plant is not None:
                merged = deep_merge(merged, {"plant_masking": plant})
            cache[key] = run_config_mod.from_dict(merged).to_dict()
        out = copy.deepcopy(cache[key])
        out["seed"] = int(seed)
        return out

    def run_config_yaml(self, setting: str, seed: int | str, *, with_data_root: bool = True) -> str:
        """The run config as deterministic YAML text (what the run_config rule writes; without
        ``data_root`` the rule appends that line itself). Block YAML with sorted keys; ``seed`` and
        ``data_root`` are the last lines; a planted run's text says so in its header."""
        cache = self.__dict__.setdefault("_yaml", {})
        plant = self.plant_of(setting, seed)
        key = (setting, json.dumps(plant, sort_keys=True))
        if key not in cache:
            cfg = self.run_config(setting, seed)
            cfg.pop("seed")
            cfg.pop("data_root")
            cache[key] = yaml.safe_dump(cfg, sort_keys=True, default_flow_style=False)
        header = (f"# resolved run config of setting '{setting}', seed {seed}: written by the workflow (rule\n"
                  "# run_config) from the pipeline config; edit that, not this file\n")
        if plant is not None:
            header += "# PLANTED gradient masking (a positive control, not a finding; README 'Planted control')\n"
        text = header + cache[key] + f"seed: {int(seed)}\n"
        if with_data_root:
            text += "data_root: " + json.dumps(self.data_root) + "\n"
        return text

    def suite_yaml(self, suite: str) -> str:
        """The suite file of the suite_file rule ({suite: keys}; a builtin suite may have no keys)."""
        return ("# evaluation suite written by the workflow (rule suite_file) from the pipeline config\n"
                + yaml.safe_dump(self.suite_spec(suite), sort_keys=True, default_flow_style=False))

    def _merged(self, setting: str) -> dict[str, Any]:
        # download: false in every run config: jobs (compute nodes, often without network) never
        # download; the workflow's download rule has fetched and verified the data before them
        base = deep_merge(self.raw.get("defaults") or {}, {"data_root": self.data_root, "download": False})
        return deep_merge(base, self.settings[setting].get("overrides") or {})

    def dataset(self, setting: str) -> str:
        return self.run_config(setting, 0)["dataset"]

    # -- suites -----------------------------------------------------------------------------
    @property
    def suite_names(self) -> list[str]:
        return sorted(set(BUILTIN_SUITES) | set(self.raw.get("suites") or {}))

    def suite_spec(self, suite: str) -> dict[str, Any]:
        """The YAML mapping written to the suite file ({suite: overrides}); builtins may be empty."""
        return {suite: copy.deepcopy((self.raw.get("suites") or {}).get(suite) or {})}

    def suite_attacks(self, suite: str) -> list[str] | None:
        spec = (self.raw.get("suites") or {}).get(suite) or {}
        if "attacks" in spec:
            return list(spec["attacks"])
        return builtin_attacks(suite)

    def setting_attacks(self, setting: str) -> set[str]:
        out: set[str] = set()
        for s in self.suites_of(setting):
            out |= set(self.suite_attacks(s) or [])
        return out

    @property
    def landscape_suite(self) -> str:
        return str(self.raw["landscape_suite"])

    # -- tables / figures -------------------------------------------------------------------
    def conventions_settings(self) -> list[str]:
        """Settings named by ``conventions:`` (the conventions table and figure)."""
        return self.grid_settings("conventions")

    def grid_settings(self, grid: str) -> list[str]:
        """Settings named by the side-by-side section ``grid`` (conventions, crossarch; report/registry.py)."""
        from trades_instability.report import registry

        return registry.get(grid, registry.GRID).grid_settings(self.raw.get(grid) or {})

    def target_settings(self, kind: str, name: str) -> list[str]:
        """Settings named by ``tables.<name>`` or ``figures.<name>``, in order of appearance."""
        return settings_in_spec(self.raw[kind][name])

    def paper_settings(self, tables_only: bool = False) -> list[str]:
        """Settings read by the paper's tables (and figures), in order of appearance: what `paper` trains."""
        kinds = ("tables",) if tables_only else ("tables", "figures")
        return list(dict.fromkeys(s for kind in kinds for name in self.raw.get(kind) or {}
                                  for s in self.target_settings(kind, name)))

    def detection_settings(self) -> list[str]:
        """Settings whose runs the FOSC detector (tables/detection.tex) reads: ``detection.settings``;
        when absent or ``all``, every setting the paper's tables and figures read (the detector only
        analyses runs that `paper` trains anyway; name others, e.g. the conventions settings, to add them)."""
        named = (self.raw.get("detection") or {}).get("settings", "all")
        return self.paper_settings() if named == "all" else list(dict.fromkeys(named))

    def review_entries(self) -> list[tuple[str, str, str]]:
        """(key path, setting, entry) of every run entry of config ``review:`` (:func:`parse_entry` reads one)."""
        review = self.raw.get("review") or {}
        out = [(f"review.{block}.{label}[{i}]", parse_entry(e)[0], e)
               for block, rows in review.items() if isinstance(rows, dict) and block != "detectors"
               for label, entries in rows.items() for i, e in enumerate(entries)]
        out += [(f"review.detectors.settings[{i}]", s, s)
                for i, s in enumerate((review.get("detectors") or {}).get("settings", []))]
        return out

    def review_settings(self) -> list[str]:
        """Settings the review target reads (its per-target aggregation and epochs.csv files)."""
        return list(dict.fromkeys(s for _, s, _ in self.review_entries()))

    def selection_threshold(self) -> float:
        return float(self.raw["selection"]["unstable_threshold"])

    # -- resources --------------------------------------------------------------------------
    def resources(self, rule: str) -> dict[str, Any]:
        return dict(self.raw["resources"][rule])

    def train_runtime_min(self, setting: str) -> int:
        r = self.raw["resources"]["train"]
        cfg = self.run_config(setting, 0)
        per_epoch = float(r["minutes_per_epoch"].get(cfg["dataset"], r["minutes_per_epoch"].get("default", 2.0)))
        factor = 1.0
        if cfg["awp"]["enabled"]:
            factor *= float(r.get("awp_factor", 1.0))
        factor *= float((r.get("arch_factor") or {}).get(cfg["arch"], 1.0))  # WRN-34-10: ~4x ResNet-18's FLOPs
        if cfg["log_batch_metrics"]:
            factor *= float(r.get("batch_metrics_factor", 1.0))
        if cfg["batch_size"] < 256:
            factor *= float(r.get("small_batch_factor", 1.0))
        return int(r["minutes_base"] + per_epoch * factor * cfg["epochs"] + 0.999)

    def eval_runtime_min(self, setting: str, suite: str) -> int:
        r = self.raw["resources"]["evaluate"]
        ds = self.run_config(setting, 0)["dataset"]
        mins = r["minutes"].get(suite, r["minutes"].get("default", 60))
        mins *= 2  # the rule evaluates two checkpoints: best.pt and last.pt (the config sizes one)
        return int(mins * float(r.get("dataset_factor", {}).get(ds, 1.0)) + 0.999)


def settings_in_spec(spec: Any) -> list[str]:
    """Every setting a table/figure spec names, in order of appearance, each once."""
    return list(dict.fromkeys(s for _, s in spec_refs(spec, "") if isinstance(s, str)))


def parse_entry(entry: str) -> tuple[str, list[int] | None]:
    """A row's run entry: ``setting`` (all its seeds) or ``setting:0,3`` (those seeds only: the seed-sources
    rows share the base setting's seed-0 run, whose three seeds are all 0, instead of training it three times)."""
    name, _, seeds = str(entry).partition(":")
    return name, ([int(s) for s in seeds.split(",")] if seeds else None)


def spec_refs(spec: Any, prefix: str) -> list[tuple[str, str]]:
    """(key path, setting name) of every setting a table/figure spec names: its ``settings:`` list, its
    ``panels:`` (recursively) and the keys that name one setting each (report/registry.py SETTING_KEYS)."""
    from trades_instability.report.registry import SETTING_KEYS

    refs: list[tuple[str, str]] = []
    if not isinstance(spec, dict):
        return refs
    for k, v in spec.items():
        if k == "settings" and isinstance(v, list):
            refs += [(f"{prefix}.settings[{i}]", x) for i, x in enumerate(v)]
        elif k == "panels" and isinstance(v, list):
            for i, p in enumerate(v):
                refs += spec_refs(p, f"{prefix}.panels[{i}]")
        elif k in SETTING_KEYS and isinstance(v, str):
            refs.append((f"{prefix}.{k}", v))
    return refs
