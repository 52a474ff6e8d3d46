"""The evaluation suites' facts, stated once (no torch: the pipeline config reads this module at every
Snakemake start): the built-in suites, the attack names a suite may list, the ``'a/b'`` fraction parser
and every check of a suite's values. :class:`trades_instability.evaluate.suite_config.SuiteConfig` holds the keys
and their defaults; :func:`trades_instability.evaluate.suite_config.builtin_suites` builds the built-in suites from
:data:`BUILTIN_SUITES` (the keys that differ from those defaults), and a config's ``suites:`` section
overrides or extends them.

* ``cheap``     - clean, pgd10, square (Tables 2, 4: the Unstable rule needs PGD-10 and Square only)
* ``aa``        - clean, pgd10, square, autoattack (Tables 3, 5, 6, 7: standard AutoAttack, Square alone for
  the Unstable rule)
* ``full``      - clean, pgd10, autoattack, autoattack_individual (APGD-CE, APGD-T, FAB-T, Square: Table 1)
* ``landscape`` - clean on the first 1000 examples (Figure 1: the landscape itself comes from
  ``--landscape-out``; clean accuracy is a sanity check)

Both readers of a suite check it here: :func:`spec_problem` for the pipeline config (keys as written, before
any job starts) and :func:`values_problem` for :mod:`trades_instability.evaluate.suite_config` (every key, before it
attacks anything). Types are checked by the schema and by the suite's dataclass; this module checks values.
"""

from __future__ import annotations

import copy
from collections.abc import Mapping
from typing import Any

from trades_instability.config.run import image_units_problem

BUILTIN_SUITES: dict[str, dict[str, Any]] = {
    "cheap": {"attacks": ["clean", "pgd10", "square"]},
    "aa": {"attacks": ["clean", "pgd10", "square", "autoattack"]},
    "full": {"attacks": ["clean", "pgd10", "autoattack", "autoattack_individual"]},
    "landscape": {"attacks": ["clean"], "n_examples": 1000},
}
ATTACK_NAMES: tuple[str, ...] = ("clean", "pgd10", "square", "autoattack", "autoattack_individual")
POSITIVE_KEYS: tuple[str, ...] = ("batch_size", "pgd_steps", "square_queries", "apgd_iters", "fab_iters",
                                  "n_target_classes")
POSITIVE_OR_NULL_KEYS: tuple[str, ...] = ("n_examples", "aa_batch_size")
IMAGE_UNIT_KEYS: tuple[str, ...] = ("eps", "pgd_step_size")  # numbers or fractions 'a/b'
LANDSCAPE_POSITIVE_KEYS: tuple[str, ...] = ("grid_size", "n_images", "batch_size")


def builtin_spec(name: str) -> dict[str, Any] | None:
    """A copy of the built-in suite ``name``'s keys; None when ``name`` is not built in."""
    return copy.deepcopy(BUILTIN_SUITES[name]) if name in BUILTIN_SUITES else None


def builtin_attacks(name: str) -> list[str] | None:
    """The attacks of the built-in suite ``name`` (a new list); None when ``name`` is not built in."""
    return list(BUILTIN_SUITES[name]["attacks"]) if name in BUILTIN_SUITES else None


def fraction(v: Any) -> float | None:
    """A number, or a fraction written ``'a/b'``, as a float; None when it is neither (or a bool)."""
    if isinstance(v, bool):
        return None
    if isinstance(v, (int, float)):
        return float(v)
    try:
        num, _, den = str(v).partition("/")
        return float(num) / float(den) if den else float(num)
    except (ValueError, ZeroDivisionError):
        return None


def new_suite_problem(name: str, spec: Mapping[str, Any] | None) -> tuple[str, str] | None:
    """A suite that is not built in starts from the defaults and must list its attacks."""
    if name not in BUILTIN_SUITES and "attacks" not in (spec or {}):
        return "attacks", f"a new suite must list its attacks (builtin suites: {', '.join(BUILTIN_SUITES)})"
    return None


def values_problem(values: Mapping[str, Any]) -> tuple[str, str] | None:
    """The first impossible value of a suite as (key path, what is wrong and what is allowed); None when
    every value is fine. Only the keys present are checked (a missing key keeps its default)."""
    attacks = values.get("attacks")
    if attacks is not None:
        for i, a in enumerate(attacks):
            if a not in ATTACK_NAMES:
                return f"attacks[{i}]", f"unknown attack {a!r}; allowed: {', '.join(ATTACK_NAMES)}"
        if not attacks:
            return "attacks", "must not be empty"
    for key in POSITIVE_OR_NULL_KEYS:
        if values.get(key) is not None and values[key] <= 0:
            return key, f"must be > 0 or null, got {values[key]}"
    for key in POSITIVE_KEYS:
        if key in values and values[key] <= 0:
            return key, f"must be > 0, got {values[key]}"
    for key in IMAGE_UNIT_KEYS:
        if key in values:
            value = fraction(values[key])
            if value is None:
                return key, f"must be a number > 0 or a fraction 'a/b', got {values[key]!r}"
            problem = image_units_problem(value)
            if problem:
                return key, problem
    if "unstable_threshold" in values and not 0 < values["unstable_threshold"] <= 1:
        return "unstable_threshold", f"must be in (0, 1] (an accuracy gap), got {values['unstable_threshold']}"
    if values.get("seed", 0) < 0:
        return "seed", f"must be >= 0, got {values['seed']}"
    if "pgd10" in (attacks or []) and values.get("pgd_steps", 2) < 2:
        return "pgd_steps", f"must be >= 2 (SGCS needs two steps), got {values['pgd_steps']}"
    return _landscape_problem(values.get("landscape") or {})


def _landscape_problem(lc: Mapping[str, Any]) -> tuple[str, str] | None:
    for key in LANDSCAPE_POSITIVE_KEYS:
        if key in lc and lc[key] < 1:
            return f"landscape.{key}", f"must be >= 1, got {lc[key]}"
    if "extent" in lc:
        problem = image_units_problem(lc["extent"], allow_zero=True)
        if problem:
            return "landscape.extent", problem
    if lc.get("seed", 0) < 0:
        return "landscape.seed", f"must be >= 0, got {lc['seed']}"
    return None


def spec_problem(name: str, spec: Mapping[str, Any] | None) -> tuple[str, str] | None:
    """The first problem of the suite ``name`` as a config writes it (``spec`` over the built-in suite of that
    name, if any): (key path, detail), or None."""
    problem = new_suite_problem(name, spec)
    if problem:
        return problem
    merged = {**(builtin_spec(name) or {}), **(spec or {})}
    return values_problem(merged)
