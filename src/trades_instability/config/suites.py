"""The built-in evaluation suites, stated once (no torch: the pipeline config reads this table at
every Snakemake start). Each entry holds the :class:`trades_instability.evaluate.suite.SuiteConfig` keys
that differ from its defaults; :func:`trades_instability.evaluate.suite.builtin_suites` builds the suites
from it, and a config's ``suites:`` section overrides or extends them.

* ``cheap``     - clean, pgd10, square
* ``aa``        - clean, pgd10, square, autoattack
* ``full``      - clean, pgd10, autoattack, autoattack_individual (APGD-CE, APGD-T, FAB-T, Square: Table 1)
* ``landscape`` - clean on the first 1000 examples (Figure 1: the landscape itself comes from
  ``--landscape-out``; clean accuracy is a sanity check)
"""

from __future__ import annotations

import copy
from typing import Any

BUILTIN_SUITES: dict[str, dict[str, Any]] = {
    "cheap": {"attacks": ["clean", "pgd10", "square"]},
    "aa": {"attacks": ["clean", "pgd10", "square", "autoattack"]},
    "full": {"attacks": ["clean", "pgd10", "autoattack", "autoattack_individual"]},
    "landscape": {"attacks": ["clean"], "n_examples": 1000},
}


def builtin_spec(name: str) -> dict[str, Any] | None:
    """A copy of the built-in suite ``name``'s keys; None when ``name`` is not built in."""
    return copy.deepcopy(BUILTIN_SUITES[name]) if name in BUILTIN_SUITES else None


def builtin_attacks(name: str) -> list[str] | None:
    """The attacks of the built-in suite ``name`` (a new list); None when ``name`` is not built in."""
    return list(BUILTIN_SUITES[name]["attacks"]) if name in BUILTIN_SUITES else None
