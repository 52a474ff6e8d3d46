"""The pipeline config's JSON schema (``workflow/schemas/config.schema.yaml``) and how its errors read.

:func:`schema_error` turns jsonschema's first (most specific) error into ONE line that names the key path
and what is allowed there; :func:`split_config_error` splits a :class:`trades_instability.config.run.ConfigError`
message into (key, detail) so that :mod:`trades_instability.config.pipeline_loading` can name the key where the
user wrote it (``defaults.<key>`` or ``settings.<name>.overrides.<key>``). ``jsonschema`` is imported
only when a config is validated.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import yaml

SCHEMA_PATH = Path(__file__).resolve().parents[3] / "workflow" / "schemas" / "config.schema.yaml"
SETTING_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.\-]*$")

# the C loader when PyYAML has it (Snakemake parses the config at every start)
YAML_LOADER = getattr(yaml, "CSafeLoader", yaml.SafeLoader)
_SCHEMA: dict[str, Any] | None = None


def fmt_path(parts) -> str:
    """``["settings", "a", "seeds", 0]`` -> ``settings.a.seeds[0]``; empty -> ``<top level>``."""
    out = ""
    for p in parts:
        if isinstance(p, int):
            out += f"[{p}]"
        else:
            out += ("." if out else "") + str(p)
    return out or "<top level>"


def has_path(d: Any, dotted: str) -> bool:
    """Whether the nested mapping ``d`` holds the dotted key path (list indices ``[i]`` ignored)."""
    for part in dotted.split("."):
        part = re.sub(r"\[\d+\]$", "", part)
        if not isinstance(d, dict) or part not in d:
            return False
        d = d[part]
    return True


def split_config_error(msg: str) -> tuple[str | None, str]:
    """Split a config.ConfigError message into (key, detail)."""
    m = re.match(r"config key '([^']+)' (.*)$", msg, re.S)
    if m:
        return m.group(1), m.group(2)
    m = re.match(r"unknown config key\(s\) ([^;]+); (.*)$", msg, re.S)
    if m:
        keys = [k.strip() for k in m.group(1).split(",")]
        rest = m.group(2)
        if "." not in keys[0]:  # top level of the run config: seed, data_root, download are set by the pipeline
            rest = rest.replace("seed, ", "").replace("data_root, ", "").replace("download, ", "")
        return keys[0], f"unknown RunConfig key{'s' if len(keys) > 1 else ''} ({', '.join(keys)}); {rest}"
    return None, msg


def load_schema() -> dict[str, Any]:
    global _SCHEMA
    if _SCHEMA is None:
        _SCHEMA = yaml.load(SCHEMA_PATH.read_text(), Loader=YAML_LOADER)
    return _SCHEMA


def top_level_defaults() -> dict[str, Any]:
    """The top-level keys' defaults: the schema's ``default:`` values (stated nowhere else)."""
    return {k: v["default"] for k, v in load_schema()["properties"].items() if "default" in v}


def schema_error(raw: dict[str, Any]) -> str | None:
    """None when ``raw`` passes the schema, else one line: key path, problem, what is allowed."""
    import jsonschema

    validator = jsonschema.Draft202012Validator(load_schema())
    errors = list(validator.iter_errors(raw))
    if not errors:
        return None
    err = jsonschema.exceptions.best_match(errors)
    # descend into the most specific sub-error of anyOf/oneOf
    while err.context:
        err = jsonschema.exceptions.best_match(err.context)
    path = list(err.absolute_path)
    if err.validator == "additionalProperties":
        allowed = sorted(err.schema.get("properties", {}))
        extra = sorted(set(err.instance) - set(allowed)) if isinstance(err.instance, dict) else []
        key = fmt_path(path + extra[:1])
        keys = "" if len(extra) == 1 else "s " + ", ".join(extra)
        return f"{key}: unknown key{keys}; allowed here: {', '.join(allowed)}"
    if err.validator == "propertyNames":
        bad = [k for k in err.instance if not SETTING_NAME.match(str(k))] if isinstance(err.instance, dict) else []
        return f"{fmt_path(path + bad[:1])}: invalid name (use letters, digits, '_', '.', '-')"
    if err.validator == "enum":
        return f"{fmt_path(path)}: {err.instance!r} is not allowed; allowed: {', '.join(map(str, err.validator_value))}"
    if err.validator == "required":
        return f"{fmt_path(path)}: {err.message}"
    return f"{fmt_path(path)}: {err.message}"
