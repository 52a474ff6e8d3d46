"""Each fact of the config stated once (issue 29): the counts written in config.yaml's header are the
counts of the file; the top-level defaults are the schema's `default:` values; config.yaml does not restate
the built-in suites; the pipeline config and the evaluation module refuse the same bad suites, naming the
same key (one check, config/suites.py); the AutoAttack budget of a suite is the standard one by default."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import yaml

from trades_instability.config import pipeline as pc
from trades_instability.config import pipeline_loading, schema
from trades_instability.config.suites import BUILTIN_SUITES

ROOT = Path(__file__).resolve().parents[1]
PAPER = ROOT / "config.yaml"
SMOKE = ROOT / "tests" / "configs" / "smoke.yaml"


def test_header_counts_are_the_files_counts():
    text = PAPER.read_text()
    header = " ".join(line.lstrip("# ") for line in text.splitlines() if line.startswith("#")).split("defaults:")[0]
    m = re.search(r"(\d+) settings, (\d+) runs \(setting x seed\) in all; the `paper` target trains (\d+) settings, "
                  r"(\d+) runs", header)
    assert m, "config.yaml's header no longer states the counts this test checks"
    cfg = pipeline_loading.load(PAPER)
    paper = cfg.paper_settings()
    assert [int(g) for g in m.groups()] == [len(cfg.settings), len(cfg.runs()), len(paper), len(cfg.runs(paper))]


def test_top_level_defaults_are_the_schemas():
    props = schema.load_schema()["properties"]
    scalars = {k for k, v in props.items() if v.get("type") in ("string", "boolean", "integer")}
    # every optional top-level scalar has its default there, only there
    assert set(pipeline_loading.DEFAULTS_TOP) == scalars
    import jsonschema

    for key, value in pipeline_loading.DEFAULTS_TOP.items():
        jsonschema.validate(value, props[key])  # each default is a value its own key allows
    raw = yaml.safe_load(SMOKE.read_text())
    for key in pipeline_loading.DEFAULTS_TOP:
        raw.pop(key, None)
    cfg = pipeline_loading.validate(raw)
    assert {k: cfg.raw[k] for k in pipeline_loading.DEFAULTS_TOP} == pipeline_loading.DEFAULTS_TOP
    paper_raw = yaml.safe_load(PAPER.read_text())
    assert not set(paper_raw) & set(pipeline_loading.DEFAULTS_TOP), "config.yaml restates top-level defaults"


def test_config_yaml_does_not_restate_builtin_suites():
    suite_config = pytest.importorskip("trades_instability.evaluate.suite_config")
    defaults = suite_config.SuiteConfig().to_dict()
    for name, spec in (yaml.safe_load(PAPER.read_text()).get("suites") or {}).items():
        base = {**defaults, **BUILTIN_SUITES.get(name, {})}
        same = [k for k, v in (spec or {}).items() if base.get(k) == v]
        assert not same, f"config.yaml suites.{name} restates {same} (config/suites.py, SuiteConfig)"


BAD_SUITES = [
    ("cheap", {"attacks": ["clean", "pgd20"]}, "attacks[1]"),
    ("cheap", {"attacks": []}, "attacks"),
    ("aa", {"pgd_steps": 1}, "pgd_steps"),
    ("aa", {"square_queries": 0}, "square_queries"),
    ("aa", {"n_examples": 0}, "n_examples"),
    ("cheap", {"eps": 8}, "eps"),
    ("cheap", {"pgd_step_size": "2/1"}, "pgd_step_size"),
    ("cheap", {"unstable_threshold": 8}, "unstable_threshold"),
    ("cheap", {"seed": -1}, "seed"),
    ("landscape", {"landscape": {"extent": 3}}, "landscape.extent"),
    ("landscape", {"landscape": {"grid_size": 0}}, "landscape.grid_size"),
]


@pytest.mark.parametrize("name,spec,key", BAD_SUITES, ids=[f"{n}-{k}" for n, _, k in BAD_SUITES])
def test_pipeline_and_evaluation_refuse_the_same_suites(name, spec, key, tmp_path):
    suite_config = pytest.importorskip("trades_instability.evaluate.suite_config")
    raw = pc.deep_merge(yaml.safe_load(SMOKE.read_text()), {"suites": {name: spec}})
    with pytest.raises(pc.PipelineConfigError) as pipe:
        pipeline_loading.validate(raw, source="c.yaml")
    assert f"suites.{name}.{key}: " in str(pipe.value)
    f = tmp_path / "suites.yaml"
    f.write_text(yaml.safe_dump({name: spec}))
    with pytest.raises(suite_config.SuiteError) as ev:
        suite_config.load_suites(f)
    assert f"key '{key}' " in str(ev.value)
    # the same words after the key (up to the value, which the suite's dataclass may have made a float)
    said = [str(e.value).split(sep, 1)[1].split(", got")[0] for e, sep in ((pipe, f"suites.{name}.{key}: "),
                                                                           (ev, f"key '{key}' "))]
    assert said[0] == said[1]


def test_new_suite_without_attacks_is_refused_by_both(tmp_path):
    suite_config = pytest.importorskip("trades_instability.evaluate.suite_config")
    raw = pc.deep_merge(yaml.safe_load(SMOKE.read_text()), {"suites": {"mine": {"pgd_steps": 3}}})
    with pytest.raises(pc.PipelineConfigError, match=r"suites\.mine\.attacks: a new suite must list its attacks"):
        pipeline_loading.validate(raw)
    f = tmp_path / "suites.yaml"
    f.write_text("mine: {pgd_steps: 3}\n")
    with pytest.raises(suite_config.SuiteError, match="a new suite must list its attacks"):
        suite_config.load_suites(f)


def test_autoattack_budget_is_the_standard_one_by_default():
    autoattack = pytest.importorskip("trades_instability.evaluate.autoattack")
    suite_config = pytest.importorskip("trades_instability.evaluate.suite_config")
    suite = suite_config.SuiteConfig()
    assert {k: getattr(suite, k) for k in autoattack.STANDARD_SETTINGS} == autoattack.STANDARD_SETTINGS
    assert suite.aa_settings() == autoattack.AASettings() and autoattack.AASettings().is_standard()
    small = suite_config.suite_from_dict("s", {"n_target_classes": 3})
    assert not small.aa_settings().is_standard()
