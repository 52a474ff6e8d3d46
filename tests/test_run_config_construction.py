"""One way to get a run config right (issue 29, DESIGN "More known traps"): the convention preset applies
however a RunConfig is built, directly (``RunConfig(convention=...)``, as a reader of config/run.py would)
or from a mapping (``from_dict`` / ``load_config``), and an explicit value wins either way."""

from __future__ import annotations

import pytest
import yaml

from trades_instability.config.run import (
    CONVENTION_NAMES,
    PRESET,
    AttackConfig,
    AWPConfig,
    ConfigError,
    RunConfig,
    convention_preset,
    from_dict,
    load_config,
)


def _get(cfg, key: str):
    for part in key.split("."):
        cfg = getattr(cfg, part)
    return cfg


def _leaves(d, prefix=""):
    for k, v in d.items():
        if isinstance(v, dict):
            yield from _leaves(v, f"{prefix}{k}.")
        else:
            yield prefix + k, v


@pytest.mark.parametrize("name", CONVENTION_NAMES)
def test_both_ways_of_building_apply_the_preset(name, tmp_path):
    direct = RunConfig(convention=name)
    f = tmp_path / "run.yaml"
    f.write_text(yaml.safe_dump({"convention": name}))
    for cfg in (direct, from_dict({"convention": name}), load_config(f)):
        for key, value in convention_preset(name).items():
            assert _get(cfg, key) == value, (name, key)
        assert cfg == direct
        assert not [k for k, v in _leaves(cfg.to_dict()) if v is PRESET]


def test_official_trades_built_directly_is_not_the_adr_column():
    cfg = RunConfig(convention="official_trades")
    assert cfg.attack.bn_mode == "eval" and not cfg.joint_forward and cfg.repeat_clean_forward
    assert not cfg.normalize_input and not cfg.drop_last and cfg.awp.nesterov is None  # None: the run's nesterov
    assert RunConfig().attack.bn_mode == "train" and RunConfig().joint_forward  # the default convention: adr


def test_explicit_values_win_built_directly_and_from_a_mapping():
    direct = RunConfig(convention="official_trades", drop_last=True, attack=AttackConfig(bn_mode="train", steps=3),
                       awp=AWPConfig(enabled=True))
    mapped = from_dict({"convention": "official_trades", "drop_last": True,
                        "attack": {"bn_mode": "train", "steps": 3}, "awp": {"enabled": True}})
    assert direct == mapped
    assert direct.drop_last and direct.attack.bn_mode == "train" and direct.attack.steps == 3
    # the items not given keep the convention's values, also inside a nested section given in part
    assert direct.attack.init_dist == "normal" and direct.awp.form == "official" and not direct.normalize_input


def test_a_built_config_round_trips_through_its_mapping():
    cfg = RunConfig(convention="official_trades", beta=6.0)
    assert from_dict(cfg.to_dict()) == cfg


def test_unknown_convention_built_directly_names_the_key():
    with pytest.raises(ConfigError, match=r"config key 'convention' must be one of adr, official_trades, got 'madry'"):
        RunConfig(convention="madry")
