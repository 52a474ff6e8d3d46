"""The evaluation suites: :class:`SuiteConfig` (a suite's keys and their defaults), the built-in suites
(:func:`builtin_suites`, from the table :data:`trades_instability.config.suites.BUILTIN_SUITES`: cheap, aa, full,
landscape; overridable by a YAML file of the same shape, :func:`load_suites`) and the one check of a suite's
values (config/suites.py), with errors (:class:`SuiteError`) that name the suite and key.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from trades_instability.config.run import ConfigError, _from_dict, read_yaml_mapping
from trades_instability.config.suites import BUILTIN_SUITES, builtin_spec, fraction, new_suite_problem, values_problem
from trades_instability.core.landscape import LandscapeConfig
from trades_instability.core.verdict import DEFAULT_UNSTABLE_THRESHOLD
from trades_instability.evaluate import autoattack as autoattack_eval


class SuiteError(ValueError):
    """A suite is unknown or badly specified; the message names the suite and key."""


@dataclass
class SuiteConfig:
    """One evaluation suite. Defaults follow the paper (full test set, standard AutoAttack)."""

    attacks: list[str] = field(default_factory=lambda: ["clean", "pgd10"])
    n_examples: int | None = None  # first n test examples; None = the whole test set
    batch_size: int = 500  # clean / PGD-10 batches (PGD's random start is drawn batch by batch)
    # AutoAttack batch. The accuracy depends on it: pyautoattack reseeds every attack at every batch, so the
    # random starts (and Square's draws) of an example depend on which batch it falls in. A number pins it
    # (500: the batch of pyautoattack's own examples/eval.py); out-of-memory then stops the evaluation with
    # aa_batching.AABatchOutOfMemory instead of changing the numbers. null = the largest that fits (on a GPU: start
    # at aa_batching.AA_AUTO_START and halve on out-of-memory, logged; on the CPU: batch_size); the eval JSON records
    # the batch.
    aa_batch_size: int | None = 500
    seed: int = 0  # attack seed: PGD random start and every AutoAttack component
    eps: float = 8 / 255
    pgd_steps: int = 10
    pgd_step_size: float = 2 / 255
    # AutoAttack budget (Square's queries also serve Square alone); any value other than the standard one
    # (autoattack.STANDARD_SETTINGS) makes the run version='custom'
    square_queries: int = autoattack_eval.STANDARD_SETTINGS["square_queries"]
    apgd_iters: int = autoattack_eval.STANDARD_SETTINGS["apgd_iters"]
    fab_iters: int = autoattack_eval.STANDARD_SETTINGS["fab_iters"]
    n_target_classes: int = autoattack_eval.STANDARD_SETTINGS["n_target_classes"]
    unstable_threshold: float = DEFAULT_UNSTABLE_THRESHOLD
    landscape: LandscapeConfig = field(default_factory=LandscapeConfig)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    def aa_settings(self) -> autoattack_eval.AASettings:
        return autoattack_eval.AASettings(
            eps=self.eps, seed=self.seed, apgd_iters=self.apgd_iters, fab_iters=self.fab_iters,
            n_target_classes=self.n_target_classes, square_queries=self.square_queries,
        )


def builtin_suites() -> dict[str, SuiteConfig]:
    return {name: SuiteConfig(**builtin_spec(name)) for name in BUILTIN_SUITES}


def _validate_suite(name: str, s: SuiteConfig) -> SuiteConfig:
    """The one check of a suite's values (config/suites.py), also made by the pipeline config."""
    problem = values_problem(s.to_dict())
    if problem:
        raise SuiteError(f"suite '{name}': key '{problem[0]}' {problem[1]}")
    return s


def suite_from_dict(name: str, data: dict[str, Any], base: SuiteConfig | None = None) -> SuiteConfig:
    """Build a suite from a mapping; keys missing from ``data`` keep ``base`` (or the defaults)."""
    if not isinstance(data, dict):
        raise SuiteError(f"suite '{name}' must be a mapping of keys, got {data!r}")
    merged = (base or SuiteConfig()).to_dict()
    for k, v in data.items():
        if k == "landscape" and isinstance(v, dict):
            merged["landscape"] = {**merged["landscape"], **v}
        else:
            merged[k] = v
    for key in ("eps", "pgd_step_size"):  # allow "8/255" in YAML
        if isinstance(merged[key], str):
            value = fraction(merged[key])
            if value is None:
                raise SuiteError(f"suite '{name}': key '{key}' must be a number or 'a/b', got {merged[key]!r}")
            merged[key] = value
    try:
        suite = _from_dict(SuiteConfig, merged)
    except ConfigError as e:
        raise SuiteError(f"suite '{name}': {e}") from None
    return _validate_suite(name, suite)


def load_suites(path: str | Path | None = None) -> dict[str, SuiteConfig]:
    """Builtin suites, overridden/extended by the YAML file ``path`` ({suite: {key: value}}).

    A suite named like a builtin starts from the builtin; a new name starts from the defaults and
    must list its ``attacks``."""
    suites = builtin_suites()
    if path is None:
        return suites
    data = read_yaml_mapping(path, "suites file", SuiteError)
    for name, spec in data.items():
        problem = new_suite_problem(str(name), spec if isinstance(spec, dict) else None)
        if problem:
            raise SuiteError(f"{path}: suite '{name}': key '{problem[0]}': {problem[1]}")
        try:
            suites[str(name)] = suite_from_dict(str(name), spec, base=suites.get(name))
        except SuiteError as e:
            raise SuiteError(f"{path}: {e}") from None
    return suites


def get_suite(suites: dict[str, SuiteConfig], name: str) -> SuiteConfig:
    if name not in suites:
        raise SuiteError(f"unknown suite '{name}'; available: {', '.join(sorted(suites))}")
    return suites[name]


__all__ = ["SuiteError", "SuiteConfig", "builtin_suites", "suite_from_dict", "load_suites", "get_suite"]
