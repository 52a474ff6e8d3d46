"""The paper config (config.yaml) encodes every experiment of the paper, and the pipeline config
machinery (expansion, resolved run configs, state/publish helpers, data check) behaves as documented."""

from __future__ import annotations

import itertools
import json
from pathlib import Path

import pytest
import yaml

from trades_instability.config import pipeline as pc
from trades_instability.config import pipeline_loading
from trades_instability.config import run as run_config_mod
from trades_instability.config.run import run_identity
from trades_instability.rundir import state as run_state

ROOT = Path(__file__).resolve().parents[1]
PAPER = ROOT / "config.yaml"
SMOKE = ROOT / "tests" / "configs" / "smoke.yaml"


@pytest.fixture(scope="module")
def paper() -> pc.PipelineConfig:
    return pipeline_loading.load(PAPER)


def rc(cfg, setting, seed=0):
    return cfg.run_config(setting, seed)


# ------------------------------------------------------------------------------- the paper config


def test_paper_config_counts(paper):
    # 28 for the paper + 2 official_trades settings of the conventions table + 2 architectures of crossarch
    # + 8 of the review
    assert len(paper.settings) == 40
    runs = paper.runs()
    assert len(runs) == 346 == len(set(runs))
    extra = (set(paper.conventions_settings()) | set(paper.grid_settings("crossarch"))
             | set(paper.review_settings())) - {
        s for k in ("tables", "figures") for n in paper.raw[k] for s in paper.target_settings(k, n)}
    assert extra == {"conv_official_b3", "conv_official_b1", "arch_preact_default", "arch_wrn_default",
                     "rev_src_init", "rev_src_data", "rev_src_attack", "rev_b6", "rev_pgd_at", "rev_alp",
                     "rev_fix_always", "rev_tpgd_ball"}
    assert len([r for r in runs if r[0] not in extra]) == 219  # what `paper` trains
    assert len([r for r in runs if r[0] in set(paper.review_settings()) - {
        s for k in ("tables", "figures") for n in paper.raw[k] for s in paper.target_settings(k, n)}]) == 87
    # no run is trained twice: every (setting, seed) has its own identity (config with the seed sources filled in)
    identities = {json.dumps(run_identity(paper.run_config(s, seed)), sort_keys=True) for s, seed in runs}
    assert len(identities) == len(runs)


def test_default_setting(paper):
    d = rc(paper, "default")
    assert (d["dataset"], d["beta"], d["batch_size"], d["lr"], d["epochs"]) == ("cifar100", 3.0, 256, 0.1, 200)
    assert d["lr_milestones"] == [] and d["method"] == "trades"
    assert d["log_batch_metrics"] is True and not d["fix"]["enabled"] and not d["awp"]["enabled"]
    assert paper.seeds("default") == list(range(10))
    assert paper.suites_of("default") == ["full"] and paper.has_landscape("default")
    assert d["attack"]["eps"] == 8 / 255 and d["attack"]["step_size"] == 2 / 255 and d["attack"]["steps"] == 10
    assert (d["momentum"], d["nesterov"], d["weight_decay"]) == (0.9, True, 5e-4)
    assert d["awp"]["gamma"] == 0.005
    assert d["convention"] == "adr" and d["attack"]["bn_mode"] == "train" and d["normalize_input"]


def test_conventions_rows_pair_the_same_setting_under_each_convention(paper):
    for row in paper.raw["conventions"]["rows"]:
        a, o = rc(paper, row["adr"]), rc(paper, row["official_trades"])
        assert (a["convention"], o["convention"]) == ("adr", "official_trades")
        differ = {k for k in a if a[k] != o[k]}
        assert differ <= {"convention", "joint_forward", "repeat_clean_forward", "normalize_input", "drop_last",
                          "attack", "awp", "log_batch_metrics", "lr_milestone_base"}, differ
        assert a["attack"]["bn_mode"] == "train" and o["attack"]["bn_mode"] == "eval"


def _cells(paper, settings, row, col):
    return {(rc(paper, s)[row], rc(paper, s)[col]): s for s in settings}


def test_table2_grids(paper):
    p1, p2 = paper.raw["tables"]["table2"]["panels"]
    cells = _cells(paper, p1["settings"], "beta", "batch_size")
    assert set(cells) == set(itertools.product([1.0, 3.0, 6.0], [128, 256, 512]))
    assert cells[(3.0, 256)] == "default"
    assert all(rc(paper, s)["lr"] == 0.1 and rc(paper, s)["dataset"] == "cifar100" for s in p1["settings"])
    cells2 = _cells(paper, p2["settings"], "beta", "lr")
    assert set(cells2) == set(itertools.product([1.0, 3.0, 6.0], [0.01, 0.05, 0.1]))
    assert all(rc(paper, s)["batch_size"] == 128 for s in p2["settings"])
    # the (beta, bs 128, lr 0.1) cells are the SAME settings in both panels
    for beta in (1.0, 3.0, 6.0):
        assert cells[(beta, 128)] == cells2[(beta, 0.1)]
    for s in set(p1["settings"]) | set(p2["settings"]):
        assert paper.seeds(s) == list(range(10))
        assert "square" in paper.setting_attacks(s) or "autoattack_individual" in paper.setting_attacks(s)


def test_table4_grid(paper):
    spec = paper.raw["tables"]["table4"]
    cells = _cells(paper, spec["settings"], "beta", "dataset")
    assert set(cells) == set(itertools.product([1.0, 3.0, 6.0], ["cifar10", "cifar100", "tinyimagenet"]))
    assert cells[(3.0, "cifar100")] == "default"
    p1 = paper.raw["tables"]["table2"]["panels"][0]["settings"]
    for beta in (1.0, 6.0):  # the CIFAR-100 column is Table 2's batch-256 column
        assert cells[(beta, "cifar100")] in p1
    n_seeds = {"cifar10": 6, "cifar100": 10, "tinyimagenet": 3}
    for (_beta, ds), s in cells.items():
        r = rc(paper, s)
        assert len(paper.seeds(s)) == n_seeds[ds] and r["batch_size"] == 256 and r["lr"] == 0.1
        assert r["epochs"] == (100 if ds == "tinyimagenet" else 200)


def test_fixed_lrsched_modified_awp(paper):
    d, f = rc(paper, "default"), rc(paper, "fixed")
    assert paper.seeds("fixed") == paper.seeds("default")
    assert f["fix"]["enabled"] and {**f, "fix": d["fix"]} == d, "fixed = default + the fix, nothing else"
    for beta in (1, 3, 6):
        r = rc(paper, f"lrsched_b{beta}")
        assert r["beta"] == beta and r["lr_milestones"] == [100, 150] and r["lr_gamma"] == 0.1
        assert paper.seeds(f"lrsched_b{beta}") == [0, 1, 2] and paper.suites_of(f"lrsched_b{beta}") == ["aa"]
    m = rc(paper, "modified")
    assert m["method"] == "modified" and {**m, "method": "trades", "log_batch_metrics": True} == d
    assert len(paper.seeds("modified")) == 3
    for beta in (1, 3):
        r = rc(paper, f"awp_b{beta}")
        assert r["awp"]["enabled"] and r["awp"]["gamma"] == 0.005 and r["beta"] == beta
        assert len(paper.seeds(f"awp_b{beta}")) == 10 and paper.suites_of(f"awp_b{beta}") == ["aa"]


def test_suites_per_table(paper):
    t = paper.raw["tables"]
    assert paper.suites_of(t["table1"]["setting"]) == ["full"]
    for s in [t["table3"]["fixed"], t["table6"]["modified"], *t["table5"]["settings"], *t["table7"]["settings"]]:
        assert "autoattack" in paper.setting_attacks(s)
    cheap = set(t["table4"]["settings"]) | {s for p in t["table2"]["panels"] for s in p["settings"]}
    # c100_b1_bs256_lr0.1 is also the conventions table's ADR beta-1 row: suite aa (= cheap + AutoAttack)
    assert all(paper.suites_of(s) == ["cheap"] for s in cheap - {"default", "c100_b1_bs256_lr0.1"})
    assert paper.suites_of("c100_b1_bs256_lr0.1") == ["aa"]
    # batch metrics (1.5x per epoch): default, fixed, and the review's variants of default (so that only the
    # studied key differs; the seed-source rows pool default's seed-0 run)
    assert [s for s in paper.settings if paper.run_config(s, 0)["log_batch_metrics"]] == [
        "default", "fixed", "rev_src_init", "rev_src_data", "rev_src_attack", "rev_pgd_at", "rev_alp",
        "rev_fix_always", "rev_tpgd_ball"]
    assert paper.raw["figures"]["figure7"] == {"unstable": "lrsched_b1", "regular": "lrsched_b6"}
    assert paper.selection_threshold() == 0.08


def test_config_suites_agree_with_evaluation_module(paper):
    suite_config = pytest.importorskip("trades_instability.evaluate.suite_config")
    builtin = suite_config.builtin_suites()
    for cfg in (paper, pipeline_loading.load(SMOKE)):
        for name, spec in cfg.raw["suites"].items():
            suite_config.suite_from_dict(name, spec or {}, base=builtin.get(name))
    assert set(pc.BUILTIN_SUITES) == set(builtin)  # one table: config/suites.py
    for name, suite in builtin.items():
        assert pc.PipelineConfig({"suites": {}}).suite_attacks(name) == suite.attacks


def test_resources_sized_from_epochs(paper):
    assert all(paper.train_runtime_min(s) > 60 for s in paper.settings)
    assert paper.train_runtime_min("default") > paper.train_runtime_min("c100_b1_bs256_lr0.1")  # batch metrics
    assert paper.train_runtime_min("tiny_b1") > paper.train_runtime_min("c10_b1")  # 64x64, 4x the pixels
    assert paper.train_runtime_min("c100_b1_bs128_lr0.1") > paper.train_runtime_min("c100_b1_bs256_lr0.1")
    assert paper.eval_runtime_min("default", "full") > paper.eval_runtime_min("default", "cheap")


# -------------------------------------------------------------------------- expansion / run configs


def test_run_config_yaml_round_trips(paper):
    text = paper.run_config_yaml("awp_b3", 7)
    data = yaml.safe_load(text)
    assert data == rc(paper, "awp_b3", 7) and data["seed"] == 7 and data["data_root"] == "data"
    assert run_config_mod.from_dict(data).to_dict() == data
    assert paper.run_config_yaml("awp_b3", 7) == text  # deterministic
    assert "data_root" not in yaml.safe_load(paper.run_config_yaml("awp_b3", 7, with_data_root=False))


def test_overrides_and_paths():
    cfg = pipeline_loading.load(PAPER, overrides={"results_dir": "/scratch/r", "data_root": "/data/x"})
    assert cfg.results_dir == "/scratch/r" and cfg.run_dir("default", 3) == "/scratch/r/runs/default/seed3"
    assert cfg.run_config("default", 0)["data_root"] == "/data/x"


def test_deep_merge_replaces_lists_and_merges_mappings():
    base = {"a": {"b": 1, "c": [1, 2]}, "d": 1}
    out = pc.deep_merge(base, {"a": {"c": [3]}, "e": 2})
    assert out == {"a": {"b": 1, "c": [3]}, "d": 1, "e": 2} and base["a"]["c"] == [1, 2]


def test_named_and_inline_seeds():
    raw = yaml.safe_load(SMOKE.read_text())
    raw["settings"]["modified"]["seeds"] = [4, 9]
    cfg = pipeline_loading.validate(raw)
    assert cfg.seeds("modified") == [4, 9] and cfg.seeds("default") == [0, 1]


# ---------------------------------------------------------------------------------- data check


def test_data_check_names_the_folder(tmp_path: Path, paper):
    raw = dict(paper.raw, data_root=str(tmp_path / "data"), download=False)
    cfg = pipeline_loading.validate(raw)
    with pytest.raises(pc.PipelineConfigError) as info:
        pipeline_loading.check_data_available(cfg, ["default", "fixed"])
    msg = str(info.value)
    assert "cifar-100-python" in msg and str(tmp_path / "data") in msg and "data_root" in msg
    assert "tiny-imagenet-200" not in msg  # only what the requested settings need
    with pytest.raises(pc.PipelineConfigError) as info:
        pipeline_loading.check_data_available(cfg)
    assert all(f in str(info.value) for f in ("cifar-10-batches-py", "cifar-100-python", "tiny-imagenet-200"))
    folder = tmp_path / "data" / "cifar-100-python"
    folder.mkdir(parents=True)
    for f in ("train", "test", "meta"):
        (folder / f).write_bytes(b"x")
    pipeline_loading.check_data_available(cfg, ["default", "fixed"])  # present (file presence; the loader checks md5)


def test_data_check_with_download_trusts_the_scheduled_downloads(tmp_path: Path, paper):
    """download: true (the default): a missing dataset is fine when its download job is scheduled; one whose
    record exists (no job) but whose folder has gone is refused with the command that fetches it."""
    cfg = pipeline_loading.validate(dict(paper.raw, data_root=str(tmp_path / "data")))
    assert cfg.download is True
    pipeline_loading.check_data_available(cfg)  # default: the workflow fetches whatever is missing
    pipeline_loading.check_data_available(cfg, ["default", "fixed"], fetching={"cifar100"})
    with pytest.raises(pc.PipelineConfigError) as info:
        pipeline_loading.check_data_available(cfg, ["default", "c10_b1"], fetching={"cifar100"})
    msg = str(info.value)
    assert "cifar-10-batches-py" in msg and "cifar-100-python" not in msg
    assert f"python -m trades_instability download cifar10 --data-root {tmp_path / 'data'}" in msg
    assert "results/datasets/cifar10.json" in msg


def test_run_configs_never_download(paper):
    """Jobs never download: every run config says download: false; the key belongs to the top level."""
    assert all(paper.run_config(s, 0)["download"] is False for s in paper.settings)
    raw = dict(paper.raw, defaults={**paper.raw["defaults"], "download": True})
    with pytest.raises(pc.PipelineConfigError, match=r"defaults\.download: not allowed here .*top-level 'download'"):
        pipeline_loading.validate(raw)


def test_synthetic_needs_no_data(tmp_path: Path):
    cfg = pipeline_loading.load(SMOKE, overrides={"data_root": str(tmp_path / "nothing")}, check_data=True)
    pipeline_loading.check_data_available(cfg)


# ------------------------------------------------------------------------ state / publish helpers


def test_prepare_state_keeps_resumes_and_moves_aside(tmp_path: Path):
    conf = tmp_path / "config.yaml"
    conf.write_text("beta: 3.0\nseed: 0\n")
    state = tmp_path / "state"
    assert "fresh" in run_state.prepare_state(conf, state)
    (state / "checkpoints").mkdir()
    (state / "checkpoints" / "last.pt").write_bytes(b"x")
    conf.write_text("# reformatted\nseed: 0\nbeta: 3.0\n")  # same content, other text: keep
    assert "resuming" in run_state.prepare_state(conf, state)
    assert (state / "checkpoints" / "last.pt").exists()
    conf.write_text("beta: 6.0\nseed: 0\n")  # a different run: start over, keep the old state
    msg = run_state.prepare_state(conf, state)
    # the reason is read before the rename (it once said "no recorded run config" here)
    assert "moved" in msg and "(started with a different run config)" in msg, msg
    stale = [p for p in tmp_path.iterdir() if p.name.startswith("state.stale-")]
    assert len(stale) == 1 and (stale[0] / "checkpoints" / "last.pt").exists()
    assert not (state / "checkpoints").exists() and (state / "run_config.yaml").read_text() == conf.read_text()


def test_prepare_state_names_a_state_without_run_config(tmp_path: Path):
    conf = tmp_path / "config.yaml"
    conf.write_text("beta: 3.0\n")
    state = tmp_path / "state"
    state.mkdir()
    (state / "epochs.csv").write_text("epoch\n")  # left by a trainer started outside the pipeline
    msg = run_state.prepare_state(conf, state)
    assert "(started with no recorded run config)" in msg, msg


def test_publish_links_outputs(tmp_path: Path):
    state, run = tmp_path / "state", tmp_path / "run"
    (state / "checkpoints").mkdir(parents=True)
    for rel in ("epochs.csv", "batches.csv", "checkpoints/best.pt", "checkpoints/last.pt"):
        (state / rel).write_text(rel)
    with pytest.raises(run_state.RunStateError, match="run.json"):
        run_state.publish(state, run)
    (state / "run.json").write_text('{"status": "complete"}')
    run_state.publish(state, run)
    for rel in run_state.PUBLISHED:
        assert (run / rel).read_text() == (state / rel).read_text()
    assert "checkpoints/last.pt" in run_state.PUBLISHED  # the final epoch, evaluated beside best.pt
    (run / "run.json").unlink()  # snakemake deleting its outputs leaves the state intact
    (run / "checkpoints" / "last.pt").unlink()  # the published last.pt is a link: the resume state stays
    assert (state / "run.json").exists() and (state / "checkpoints" / "last.pt").read_text() == "checkpoints/last.pt"
    (state / "checkpoints" / "best.pt").unlink()
    (state / "run.json").write_text('{"status": "diverged"}')
    with pytest.raises(run_state.RunStateError, match="best.pt"):
        run_state.publish(state, tmp_path / "run2")


def test_detection_settings_default_to_all_and_follow_the_key(paper):
    # config.yaml: settings: all = every setting the tables and figures read, so the detector never adds
    # training to `paper`: the conventions-only and crossarch-only settings are not in it
    assert paper.detection_settings() == paper.paper_settings()
    assert set(paper.settings) - set(paper.detection_settings()) == {
        "conv_official_b1", "conv_official_b3", "arch_preact_default", "arch_wrn_default",
        *(s for s in paper.review_settings() if s.startswith("rev_"))}
    assert len(paper.runs(paper.detection_settings())) == 219
    smoke = pipeline_loading.load(SMOKE)
    assert "detection" not in yaml.safe_load(SMOKE.read_text())  # absent key = all settings
    assert smoke.detection_settings() == smoke.paper_settings()
    assert set(smoke.paper_settings()) <= set(smoke.settings)
    picked = pipeline_loading.load(SMOKE, overrides={"detection": {"settings": ["fixed", "default", "fixed"]}})
    assert picked.detection_settings() == ["fixed", "default"]


def test_crossarch_rows_name_settings_of_their_architecture():
    good = pipeline_loading.load(SMOKE)
    assert good.grid_settings("crossarch") == ["default", "s_arch_preact", "s_arch_wrn"]
    assert [good.run_config(s, 0)["arch"] for s in good.grid_settings("crossarch")] == list(run_config_mod.ARCHS)
    swapped = {"rows": [{"label": "d", "resnet18": "default", "preact-resnet18": "s_arch_wrn",
                         "wrn-34-10": "s_arch_wrn"}]}
    with pytest.raises(pc.PipelineConfigError, match=r"crossarch.rows\[0\].preact-resnet18: setting 's_arch_wrn' is "
                                                     r"trained with arch 'wrn-34-10', not 'preact-resnet18'"):
        pipeline_loading.load(SMOKE, overrides={"crossarch": swapped})


def test_schema_and_registry_name_the_same_artifacts():
    """The config schema (workflow/schemas/config.schema.yaml) and the artifact registry stay in sync, as
    PyPSA-Eur's schema test does for its config: every registered table / figure has a schema entry and
    the schema accepts no name the registry does not know; detection and each grid have a section."""
    from trades_instability.config.schema import SCHEMA_PATH
    from trades_instability.report import registry

    schema = yaml.safe_load(SCHEMA_PATH.read_text())["properties"]
    assert tuple(schema["tables"]["properties"]) == registry.TABLES
    assert tuple(schema["figures"]["properties"]) == registry.FIGURES
    assert schema["tables"]["additionalProperties"] is False and schema["figures"]["additionalProperties"] is False
    for art in registry.of_kind(registry.GRID) + registry.of_kind(registry.DETECTION):
        assert art.section in schema, f"no schema section for {art.name}"


def test_spec_settings_follow_the_registry_setting_keys():
    """A spec key that names a setting is known to the reference checks because the registry declares it."""
    spec = {"regular_unstable": "a", "fixed": "b", "panels": [{"settings": ["c", "a"]}], "label": "not a setting"}
    assert pc.spec_refs(spec, "tables.table3") == [("tables.table3.regular_unstable", "a"),
                                                    ("tables.table3.fixed", "b"),
                                                    ("tables.table3.panels[0].settings[0]", "c"),
                                                    ("tables.table3.panels[0].settings[1]", "a")]
    assert pc.settings_in_spec(spec) == ["a", "b", "c"]
