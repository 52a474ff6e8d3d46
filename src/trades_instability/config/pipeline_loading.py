"""A pipeline config file read and checked: :func:`load` reads config.yaml (plus ``--config``-like overrides),
:func:`validate` turns the dict into a :class:`~trades_instability.config.pipeline.PipelineConfig`;
:func:`check_data_available` checks the datasets.

Validation happens in two steps and stops at the first problem with ONE
:class:`~trades_instability.config.pipeline.PipelineConfigError` whose message names the key path and what is
allowed:

1. JSON schema (``workflow/schemas/config.schema.yaml``; ``additionalProperties: false`` everywhere,
   so a typo in a pipeline key fails);
2. semantic checks: every setting's resolved run config passes :func:`trades_instability.config.run.from_dict`
   (unknown RunConfig keys, wrong types, impossible values, named as ``settings.<name>.overrides.<key>``
   or ``defaults.<key>``), seeds, suites (builtin ``cheap``/``aa``/``full``/``landscape`` plus the ``suites:`` section,
   checked by :func:`trades_instability.config.suites.spec_problem`), the settings named by every table
   and figure (and that they produce what the table/figure reads), and, only when asked
   (``check_data=True``), that the datasets are on disk.

The data check is separate on purpose: ``snakemake -n`` must work on a machine without the datasets;
the Snakefile runs :func:`check_data_available` in its ``onstart`` hook (real runs only, before any job
starts) for the settings the scheduled jobs need. With the top-level ``download: true`` (the default) a
missing dataset is not an error there: the workflow's ``download`` rule (:mod:`trades_instability.data.download`)
fetches and verifies it before the first job that reads it; every run config gets ``download: false``.

Around it: the schema and its error lines (:mod:`trades_instability.config.schema`) and the dataset check
(:mod:`trades_instability.data.availability`).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import yaml

from trades_instability.config import run as run_config_mod
from trades_instability.config import suites as suites_mod
from trades_instability.config.pipeline import PipelineConfig, PipelineConfigError, deep_merge, parse_entry, spec_refs
from trades_instability.config.run import ConfigError
from trades_instability.config.schema import YAML_LOADER, has_path, schema_error, split_config_error, top_level_defaults
from trades_instability.data.availability import missing_data

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

DEFAULTS_TOP = top_level_defaults()  # the schema's `default:` values (the Snakefile fills them into `config`)


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


def validate(raw: Any, *, source: str = "<config>", check_data: bool = False) -> PipelineConfig:
    """Validate a pipeline config dict; return a :class:`PipelineConfig` or raise PipelineConfigError.
    The checks run in this order and the first problem found is the error (its message is what users see)."""

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

    _check_defaults(cfg, fail)
    _check_suites(cfg, fail)
    for name, st in raw["settings"].items():
        _check_setting(cfg, name, st, fail)
    _check_plants(cfg, fail)
    _check_runs_unique(cfg, fail)
    _check_target_settings(cfg, fail)
    _check_target_needs(cfg, fail)

    if check_data:
        check_data_available(cfg, fail=fail)
    return cfg


def _check_defaults(cfg: PipelineConfig, fail) -> None:
    """``defaults:`` holds RunConfig keys (not the ones a setting or the top level sets) with valid values."""
    raw = cfg.raw
    for k, why in FORBIDDEN_RUN_KEYS.items():
        if k in raw["defaults"]:
            fail(f"defaults.{k}: not allowed here ({why})")
    try:
        run_config_mod.from_dict(deep_merge(raw["defaults"], {"data_root": cfg.data_root, "download": False}))
    except ConfigError as e:
        key, detail = split_config_error(str(e))
        fail(f"defaults.{key}: {detail}" if key else f"defaults: {detail}")


def _check_suites(cfg: PipelineConfig, fail) -> None:
    """``suites:``: the values each suite ends up with (config/suites.py, the same check the eval CLI makes
    before it attacks anything; types are the schema's); ``landscape_suite`` names a suite."""
    for name, spec in (cfg.raw.get("suites") or {}).items():
        problem = suites_mod.spec_problem(name, spec)
        if problem:
            fail(f"suites.{name}.{problem[0]}: {problem[1]}")
    if cfg.landscape_suite not in cfg.suite_names:
        fail(f"landscape_suite: unknown suite {cfg.landscape_suite!r}; allowed: {', '.join(cfg.suite_names)}")


def _check_setting(cfg: PipelineConfig, name: str, st: dict[str, Any], fail) -> None:
    """One setting: its seeds (a list or a named list, unique), its suites (known, unique), no override of a
    key set elsewhere, and a resolved run config that RunConfig accepts (named where the bad key is set)."""
    raw = cfg.raw
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


def _check_runs_unique(cfg: PipelineConfig, fail) -> None:
    """No run trained twice: two runs with the same identity (resolved config, seed sources filled in) would
    train the same model. A setting may extend another with more seeds (review: beta 6) or vary one seed
    source of it (review: seed sources) as long as no run coincides."""
    seen: dict[str, tuple[str, int]] = {}
    for name in cfg.raw["settings"]:
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


def _check_target_settings(cfg: PipelineConfig, fail) -> None:
    """Tables, figures and ``detection.settings`` name existing settings (what those settings produce is
    :func:`_check_target_needs`)."""
    raw = cfg.raw
    names = list(raw["settings"])
    for kind in ("tables", "figures"):
        for tname, spec in (raw.get(kind) or {}).items():
            for path, s in spec_refs(spec, f"{kind}.{tname}"):
                if s not in raw["settings"]:
                    fail(f"{path}: unknown setting {s!r}; allowed: {', '.join(names)}")
    named = (raw.get("detection") or {}).get("settings", "all")
    if isinstance(named, str) and named != "all":
        fail(f"detection.settings: {named!r} is not allowed; use 'all' or a list of setting names")
    for i, s in enumerate([] if named == "all" else named):
        if s not in raw["settings"]:
            fail(f"detection.settings[{i}]: unknown setting {s!r}; allowed: all, {', '.join(names)}")


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
            for path, s in spec_refs(spec, f"{section}.{name}"):
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
        seeds = parse_entry(entry)[1] or []
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
                setting = parse_entry(entry)[0]
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
        n = sum(len(seeds) if seeds is not None else len(cfg.seeds(name))
                for name, seeds in map(parse_entry, entries))
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
