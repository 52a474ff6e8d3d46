"""Configs the tests derive from tests/configs/smoke.yaml: its defaults, suites and resources with settings of the
test's own and none of its report sections (those name the smoke settings)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

SMOKE = Path(__file__).resolve().parent / "configs" / "smoke.yaml"
# every config section that names settings for a report (report/registry.py's sections)
REPORT_SECTIONS = ("tables", "figures", "conventions", "crossarch", "review")


def smoke_with_settings(settings: dict[str, Any]) -> dict[str, Any]:
    """smoke.yaml with ``settings`` in place of its own and its report sections removed."""
    cfg = yaml.safe_load(SMOKE.read_text())
    cfg["settings"] = settings
    for k in REPORT_SECTIONS:
        cfg.pop(k, None)
    return cfg
