"""The pipeline config (``config.yaml``): loading, validation and expansion into runs.

A *setting* is one unique set of run-config overrides; it is trained once per seed, whatever number
of tables and figures read it. A *run* is one (setting, seed) pair; its resolved run config is

    RunConfig defaults  <-  config ``defaults:``  <-  ``data_root``  <-  setting ``overrides:``  <-  seed

(deep-merged, later wins). Validation happens in two steps and stops at the first problem with ONE
:class:`PipelineConfigError` whose message names the key path and what is allowed:

1. JSON schema (``workflow/schemas/config.schema.yaml``; ``additionalProperties: false`` everywhere,
   so a typo in a pipeline key fails);
2. semantic checks: every setting's resolved run config passes :func:`trades_instability.config.run.from_dict`
   (unknown RunConfig keys, wrong types, impossible values, named as ``settings.<name>.overrides.<key>``
   or ``defaults.<key>``), seeds, suites (builtin ``cheap``/``aa``/``full``/``landscape`` plus the ``suites:`` section,
   checked by :func:`trades_instability.config.suites.spec_problem`), the settings named by every table
   and figure (and that they produce what the table/figure reads), and, only when asked
   (``check_data=True``), that the datasets are on disk.

A setting's ``plant_masking:`` (a positive control, README "Planted control") puts gradient masking on the
seeds it lists: those runs get ``plant_masking`` in their run config (:meth:`PipelineConfig.plant_of`), the
others none; ``{same_as: <setting>}`` plants a setting's shared seeds as another does (the Fixed setting).

The data check is separate on purpose: ``snakemake -n`` must work on a machine without the datasets;
the Snakefile runs :func:`check_data_available` in its ``onstart`` hook (real runs only, before any job
starts) for the settings the scheduled jobs need. With the top-level ``download: true`` (the default) a
missing dataset is not an error there: the workflow's ``download`` rule (:mod:`trades_instability.data.download`)
fetches and verifies it before the first job that reads it; every run config gets ``download: false``.

Around it: the schema and its error lines (:mod:`trades_instability.config.schema`), the built-in
suites (:mod:`trades_instability.config.suites`), the run directory's paths
(:mod:`trades_instability.rundir.layout`), the dataset check (:mod:`trades_instability.data.availability`)
and the command line (:mod:`trades_instability.config.cli`, run as ``python -m trades_instability pipeline``).
"""

from __future__ import annotations

import copy
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from trades_instability.config import run as run_config_mod
from trades_instability.config import suites as suites_mod
from trades_instability.config.run import ConfigError
from trades_instability.config.schema import YAML_LOADER, has_path, schema_error, split_config_error, top_level_defaults
from trades_instability.config.suites import BUILTIN_SUITES, builtin_attacks
from trades_instability.data.availability import missing_data
from trades_instability.rundir import layout

FORBIDDEN_RUN_KEYS = {
    "seed": "seeds come from the setting's 'seeds:' list",
    "data_root": "set the top-level 'data_root' instead",
    "download": "set the top-level 'download' instead: jobs never download, the workflow's download rule "
                "fetches and verifies the data before any job needs it",
    "plant_masking": "a planted control applies to chosen seeds: use the setting's 'plant_masking:' key "
                     "({kind: ..., seeds: [...]}, README 'Planted control')",
}
# Targets that compare a run with the run of the SAME seed in another setting (Table 3's Fixed row, Figure 6):
# (first setting key, second setting key). A planted seed must be planted alike in both settings.
SEED_PAIRED = {("tables", "table3"): ("regular_unstable", "fixed"), ("figures", "figure6"): ("unstable", "fixed")}


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

    def planted_seeds(self, setting: str) -> list[int]:
        return sorted(x for e in self.plant_entries(setting) for x in e["seeds"])

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
        return _settings_in_spec(self.raw[kind][name])

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
        """(key path, setting, entry) of every run entry of config ``review:`` (report/review.py parses them)."""
        review = self.raw.get("review") or {}
        out = [(f"review.{block}.{label}[{i}]", e.partition(":")[0], e)
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


def _settings_in_spec(spec: Any) -> list[str]:
    """Every setting a table/figure spec names, in order of appearance, each once."""
    return list(dict.fromkeys(s for _, s in _spec_refs(spec, "") if isinstance(s, str)))


def _spec_refs(spec: Any, prefix: str) -> list[tuple[str, str]]:
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
                refs += _spec_refs(p, f"{prefix}.panels[{i}]")
        elif k in SETTING_KEYS and isinstance(v, str):
            refs.append((f"{prefix}.{k}", v))
    return refs


# ------------------------------------------------------------------------------- validation


DEFAULTS_TOP = top_level_defaults()  # the schema's `default:` values (the Snakefile fills them into `config`)


def validate(raw: Any, *, source: str = "<config>", check_data: bool = False) -> PipelineConfig:
    """Validate a pipeline config dict; return a :class:`PipelineConfig` or raise PipelineConfigError."""

    def fail(msg: str) -> None:
        raise PipelineConfigError(f"invalid pipeline config {source}: {msg}")

    if not isinstance(raw, dict):
        fail("the top level must be a mapping")
    err = schema_error(raw)
    if err:
        fail(err)
    raw = deep_merge(DEFAULTS_TOP, raw)
    raw.setdefault("suites", {})
    raw.setdefault("defaults", {})
    cfg = PipelineConfig(raw=raw, source=source)

    # defaults: RunConfig keys
    for k, why in FORBIDDEN_RUN_KEYS.items():
        if k in raw["defaults"]:
            fail(f"defaults.{k}: not allowed here ({why})")
    try:
        run_config_mod.from_dict(deep_merge(raw["defaults"], {"data_root": cfg.data_root, "download": False}))
    except ConfigError as e:
        key, detail = split_config_error(str(e))
        fail(f"defaults.{key}: {detail}" if key else f"defaults: {detail}")

    # suites: the values each suite ends up with (config/suites.py, the same check the eval CLI makes
    # before it attacks anything; types are the schema's)
    for name, spec in (raw.get("suites") or {}).items():
        problem = suites_mod.spec_problem(name, spec)
        if problem:
            fail(f"suites.{name}.{problem[0]}: {problem[1]}")
    if cfg.landscape_suite not in cfg.suite_names:
        fail(f"landscape_suite: unknown suite {cfg.landscape_suite!r}; allowed: {', '.join(cfg.suite_names)}")

    # settings
    for name, st in raw["settings"].items():
        where = f"settings.{name}"
        seeds = st["seeds"]
        if isinstance(seeds, str):
            if seeds not in raw.get("seeds", {}):
                fail(f"{where}.seeds: unknown seed list {seeds!r}; allowed: a list of integers or one of "
                     f"{', '.join(sorted(raw.get('seeds', {}))) or '(no named lists under seeds:)'}")
            seed_list = raw["seeds"][seeds]
        else:
            seed_list = seeds
        if len(set(seed_list)) != len(seed_list):
            fail(f"{where}.seeds: seeds must be unique, got {seed_list}")
        for i, s in enumerate(st["suites"]):
            if s not in cfg.suite_names:
                fail(f"{where}.suites[{i}]: unknown suite {s!r}; allowed: {', '.join(cfg.suite_names)}")
        if len(set(st["suites"])) != len(st["suites"]):
            fail(f"{where}.suites: suites must be unique, got {st['suites']}")
        overrides = st.get("overrides") or {}
        for k, why in FORBIDDEN_RUN_KEYS.items():
            if k in overrides:
                fail(f"{where}.overrides.{k}: not allowed here ({why})")
        try:
            run_config_mod.from_dict(cfg._merged(name))
        except ConfigError as e:
            key, detail = split_config_error(str(e))
            if key is None:
                fail(f"{where}: {detail}")
            if has_path(overrides, key):
                fail(f"{where}.overrides.{key}: {detail}")
            if has_path(raw["defaults"], key):
                fail(f"defaults.{key} (as merged into {where}): {detail}")
            fail(f"{where}.overrides.{key}: {detail}")

    _check_plants(cfg, fail)

    # no run trained twice: two runs with the same identity (resolved config, seed sources filled in) would
    # train the same model. A setting may extend another with more seeds (review: beta 6) or vary one seed
    # source of it (review: seed sources) as long as no run coincides.
    seen: dict[str, tuple[str, int]] = {}
    for name in raw["settings"]:
        for seed in cfg.seeds(name):
            key = json.dumps(run_config_mod.run_identity(cfg.run_config(name, seed)), sort_keys=True)
            if key in seen:
                other, other_seed = seen[key]
                if other == name:
                    fail(f"settings.{name}: seeds {other_seed} and {seed} train the same run (the setting fixes "
                         f"init_seed, data_seed and attack_seed; vary one of them with the seed)")
                why = ("a setting is a unique set of overrides; name the shared setting in both tables instead"
                       if other_seed == seed else
                       f"its seed {seed} trains the same run as seed {other_seed} there; drop that seed")
                fail(f"settings.{name}: same run config as settings.{other} ({why})")
            seen[key] = (name, seed)

    # tables / figures name existing settings that produce what they read
    names = list(raw["settings"])
    for kind in ("tables", "figures"):
        for tname, spec in (raw.get(kind) or {}).items():
            for path, s in _spec_refs(spec, f"{kind}.{tname}"):
                if s not in raw["settings"]:
                    fail(f"{path}: unknown setting {s!r}; allowed: {', '.join(names)}")
    named = (raw.get("detection") or {}).get("settings", "all")
    if isinstance(named, str) and named != "all":
        fail(f"detection.settings: {named!r} is not allowed; use 'all' or a list of setting names")
    for i, s in enumerate([] if named == "all" else named):
        if s not in raw["settings"]:
            fail(f"detection.settings[{i}]: unknown setting {s!r}; allowed: all, {', '.join(names)}")
    _check_target_needs(cfg, fail)

    if check_data:
        check_data_available(cfg, fail=fail)
    return cfg


def _check_plants(cfg: PipelineConfig, fail) -> None:
    """Each setting's ``plant_masking:`` (its shape is in the schema): seeds of the setting, each seed planted
    once, only the keys its kind reads, values the run config accepts; ``same_as`` names a setting that plants
    explicitly; and a seed compared with itself across settings (SEED_PAIRED) is planted alike in both."""
    kinds = run_config_mod.PLANT_KINDS
    settings = cfg.raw["settings"]
    for name, st in settings.items():
        spec = st.get("plant_masking")
        if not spec:
            continue
        where = f"settings.{name}.plant_masking"
        if isinstance(spec, dict) and "same_as" in spec:
            other = spec["same_as"]
            if other not in settings or other == name:
                fail(f"{where}.same_as: {other!r} is not another setting; allowed: "
                     f"{', '.join(s for s in settings if s != name)}")
            o = settings[other].get("plant_masking")
            if not o or (isinstance(o, dict) and "same_as" in o):
                fail(f"{where}.same_as: setting {other!r} plants nothing itself (same_as must name a setting "
                     f"with its own plant_masking entries)")
            continue
        entries = spec if isinstance(spec, list) else [spec]
        mine, taken = cfg.seeds(name), {}
        for i, e in enumerate(entries):
            at = f"{where}[{i}]" if isinstance(spec, list) else where
            for k in e:
                if k not in ("kind", "seeds", "epochs") and k not in kinds[e["kind"]]:
                    fail(f"{at}.{k}: kind {e['kind']!r} does not read it (it reads: "
                         f"{', '.join(kinds[e['kind']]) or 'nothing'}, epochs, seeds)")
            for x in e["seeds"]:
                if x not in mine:
                    fail(f"{at}.seeds: seed {x} is not a seed of setting {name!r} ({mine})")
                if x in taken:
                    fail(f"{at}.seeds: seed {x} is already planted by {taken[x]}")
                taken[x] = at
            plant = {k: v for k, v in e.items() if k != "seeds"}
            try:
                run_config_mod.from_dict(deep_merge(cfg._merged(name), {"plant_masking": plant}))
            except ConfigError as err:
                key, detail = split_config_error(str(err))
                fail(f"{at}.{key.removeprefix('plant_masking.')}: {detail}" if key and key.startswith("plant_masking")
                     else f"{at}: {detail}")
    for (section, target), (k1, k2) in SEED_PAIRED.items():
        spec = (cfg.raw.get(section) or {}).get(target)
        if not spec or k1 not in spec or k2 not in spec:
            continue
        a, b = spec[k1], spec[k2]
        if a not in settings or b not in settings:  # named and refused by the target checks
            continue
        for x in sorted(set(cfg.seeds(a)) & set(cfg.seeds(b))):
            pa, pb = cfg.plant_of(a, x), cfg.plant_of(b, x)
            if pa != pb:
                fail(f"settings.{b}.plant_masking: seed {x} is planted as {pa} in {a!r} but as {pb} in {b!r}; "
                     f"{section}.{target} compares the two runs of that seed, so plant them alike "
                     f"(plant_masking: {{same_as: {a}}})")


def _check_target_needs(cfg: PipelineConfig, fail) -> None:
    """Each table/figure/report reads something specific (its entry of report/registry.py: attacks and
    run-config requirements); make sure the settings it names produce it."""
    from trades_instability.report import registry

    def need_attack(path: str, setting: str, attack: str, why: str) -> None:
        have = cfg.setting_attacks(setting)
        if attack not in have and not (attack == "square" and "autoattack_individual" in have):
            fail(f"{path}: setting {setting!r} has no suite with attack '{attack}' ({why}); its suites: "
                 f"{', '.join(cfg.suites_of(setting))}")

    def meets(req, setting: str) -> bool:
        if req.what == "landscape":
            return cfg.has_landscape(setting) == req.value
        return registry.run_value(cfg.run_config(setting, 0), req.what) == req.value

    late = []
    for section in ("tables", "figures"):
        for name, spec in (cfg.raw.get(section) or {}).items():
            art = registry.REGISTRY[name]
            for path, s in _spec_refs(spec, f"{section}.{name}"):
                for a in art.attacks:
                    need_attack(path, s, a.attack, art.attack_why(a))
                for req in art.requires:
                    if req.key is not None and path != f"{section}.{name}.{req.key}":
                        continue
                    if req.late:
                        late.append((art, path, s, req))
                    elif not meets(req, s):
                        fail(f"{path}: " + req.message.format(setting=s))
    for art in registry.of_kind(registry.DETECTION):
        for s in cfg.detection_settings():
            for a in art.attacks:
                need_attack("detection.settings", s, a.attack, art.attack_why(a))
    _check_conventions(cfg, fail, need_attack)
    _check_review(cfg, fail, need_attack)
    for _art, path, s, req in sorted(late, key=lambda x: registry.ARTIFACTS.index(x[0])):
        if not meets(req, s):
            fail(f"{path}: " + req.message.format(setting=s))


def _check_conventions(cfg: PipelineConfig, fail, need_attack) -> None:
    """Each side-by-side section (`conventions:`, `crossarch:`; the GRID entries of report/registry.py): its
    rows name existing settings, each trained with the run-config value of its column, with the grid's
    attacks (PGD-10, Square for the Unstable rule, AutoAttack) evaluated."""
    from trades_instability.report import registry

    for grid in registry.of_kind(registry.GRID):
        name = grid.name
        spec = cfg.raw.get(name)
        if not spec:
            continue
        try:
            rows = grid.grid_rows(spec)
        except ValueError as e:
            fail(str(e))
        for i, row in enumerate(rows):
            for value in grid.grid_values:
                path, s = f"{name}.rows[{i}].{value}", row[value]
                if s not in cfg.raw["settings"]:
                    fail(f"{path}: unknown setting {s!r}; allowed: {', '.join(cfg.raw['settings'])}")
                have = cfg.run_config(s, 0)[grid.grid_key]
                if have != value:
                    fail(f"{path}: setting {s!r} is trained with {grid.grid_key} {have!r}, not {value!r}")
                for a in grid.attacks:
                    need_attack(path, s, a.attack, grid.attack_why(a))


def _check_review(cfg: PipelineConfig, fail, need_attack) -> None:
    """``review:`` names existing settings (and seeds of theirs) that evaluate what the review reports; the
    settings pooled in one row train the same run config but for its seeds (so a row is one experiment); the
    beta-6 row pools ``seeds_beta6`` runs."""
    from trades_instability.report import registry

    review = cfg.raw.get("review") or {}
    art = registry.get("review", registry.REVIEW)
    for path, setting, entry in cfg.review_entries():
        if setting not in cfg.raw["settings"]:
            fail(f"{path}: unknown setting {setting!r}; allowed: {', '.join(cfg.raw['settings'])}")
        seeds = [int(x) for x in entry.partition(":")[2].split(",") if x]
        missing = [x for x in seeds if x not in cfg.seeds(setting)]
        if missing:
            fail(f"{path}: setting {setting!r} has no seed(s) {missing}; its seeds: {cfg.seeds(setting)}")
        for a in art.attacks:
            need_attack(path, setting, a.attack, art.attack_why(a))
        if path.split(".")[1] in registry.REVIEW_AUTOATTACK_BLOCKS:
            need_attack(path, setting, "autoattack", f"the review's {path.split('.')[1]} block reports AutoAttack")
    for block, rows in review.items():
        if not isinstance(rows, dict) or block == "detectors":
            continue
        for label, entries in rows.items():
            base = None
            for i, entry in enumerate(entries):
                setting = entry.partition(":")[0]
                ident = run_config_mod.run_identity(cfg.run_config(setting, 0))
                ident = {k: v for k, v in ident.items() if not k.endswith("_seed")}
                if base is None:
                    base = (setting, ident)
                elif ident != base[1]:
                    diff = sorted(k for k in set(ident) | set(base[1]) if ident.get(k) != base[1].get(k))
                    fail(f"review.{block}.{label}[{i}]: setting {setting!r} differs from {base[0]!r} in "
                         f"{', '.join(diff)}; a row pools runs of one experiment (only the seeds may differ)")
    if "seeds_beta6" in review:
        rows = (review.get("beta") or {})
        entries = rows.get("6") or rows.get("6.0")
        if not entries:
            fail("review.beta: seeds_beta6 is set but there is no row '6' (the beta-6 settings)")
        n = sum(len([x for x in e.partition(":")[2].split(",") if x]) or len(cfg.seeds(e.partition(":")[0]))
                for e in entries)
        if n != review["seeds_beta6"]:
            fail(f"review.seeds_beta6: the beta-6 row pools {n} runs, not {review['seeds_beta6']}; give its "
                 f"settings {review['seeds_beta6']} seeds in all")


# --------------------------------------------------------------------------------- data check


def check_data_available(cfg: PipelineConfig, settings: list[str] | None = None, *,
                         fetching: set[str] | None = None, fail=None) -> None:
    """Raise PipelineConfigError (one message listing every missing dataset and where to put it) when
    a non-synthetic dataset of ``settings`` (default: all) is not on disk and not in ``fetching``, the
    datasets the download rule fetches in this run (default: every one when ``download`` is true; the
    Snakefile passes the datasets of the scheduled download jobs: a dataset whose record exists but
    whose folder has gone is not fetched again by the workflow). The check is
    :func:`trades_instability.data.availability.missing_data`."""
    names = list(cfg.settings) if settings is None else list(settings)
    text = missing_data(((name, cfg.dataset(name)) for name in names), cfg.data_root, cfg.download,
                        fetching=fetching, record=cfg.dataset_record)
    if text:
        if fail is not None:
            fail(text)
        raise PipelineConfigError(f"dataset missing, nothing was started: {text}")


# ------------------------------------------------------------------------------------- loading


def load_raw(path: str | Path) -> dict[str, Any]:
    path = Path(path)
    if not path.is_file():
        raise PipelineConfigError(f"pipeline config {path} does not exist")
    try:
        raw = yaml.load(path.read_text(), Loader=YAML_LOADER)
    except yaml.YAMLError as e:
        raise PipelineConfigError(f"pipeline config {path} is not valid YAML: {' '.join(str(e).split())}") from None
    return raw if raw is not None else {}


def load(path: str | Path, *, overrides: dict[str, Any] | None = None, check_data: bool = False) -> PipelineConfig:
    """Load, merge ``overrides`` (like snakemake's --config) and validate a pipeline config file."""
    raw = load_raw(path)
    if overrides and isinstance(raw, dict):
        raw = deep_merge(raw, overrides)
    return validate(raw, source=str(path), check_data=check_data)
