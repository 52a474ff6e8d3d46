"""The planted gradient-masking control (core/masking.py; README "Planted control"): the masking kinds in
closed form, the planted flag from the run config through the checkpoint, trades-eval, summary.csv and the
detection report, planted runs kept out of the comparison with the paper, and plant_masking's validation."""

from __future__ import annotations

import copy
import json
from pathlib import Path

import pandas as pd
import pytest
import torch
import yaml
from torch import nn

from trades_instability import aggregate as agg
from trades_instability.config import pipeline as pc
from trades_instability.config import pipeline_loading
from trades_instability.config.run import PLANT_KINDS, PlantMaskingConfig
from trades_instability.core import attacks, masking, metrics
from trades_instability.core.models import build_model
from trades_instability.evaluate import cli as eval_cli
from trades_instability.report import comparison, detection
from trades_instability.rundir.checkpoint import load_checkpoint, load_model

ROOT = Path(__file__).resolve().parents[1]
SMOKE = ROOT / "tests" / "configs" / "smoke.yaml"
EPS = 8 / 255


def _net(seed: int = 0) -> nn.Module:
    torch.manual_seed(seed)
    return build_model("resnet18", num_classes=4, width=2).eval()


# ------------------------------------------------------------------------------------- the kinds


def test_quantize_is_k_levels_and_its_input_gradient_is_exactly_zero():
    q = masking.InputQuantizer(4)
    x = torch.tensor([0.0, 0.16, 0.17, 0.49, 0.51, 0.83, 0.84, 1.0, -0.2, 1.3])
    # round(x * 3) / 3 on the clamped input: levels 0, 1/3, 2/3, 1
    assert q(x).tolist() == pytest.approx([0, 0, 1 / 3, 1 / 3, 2 / 3, 2 / 3, 1, 1, 0, 1])
    model = masking.PlantedModel(_net(), PlantMaskingConfig(kind="quantize", levels=8), seed=0)
    x = torch.rand(6, 3, 16, 16, generator=torch.Generator().manual_seed(1)).requires_grad_(True)
    (g,) = torch.autograd.grad(nn.functional.cross_entropy(model(x), torch.arange(6) % 4, reduction="sum"), x)
    assert torch.count_nonzero(g) == 0  # d round / dx = 0 almost everywhere: shattered gradients
    # so PGD never leaves its start, and FOSC = eps ||0||_1 - <delta, 0> = 0 and SGCS = 0 exactly
    y = torch.arange(6) % 4
    r = attacks.pgd(model, x.detach(), y, eps=EPS, step_size=2 / 255, steps=5, random_start=False, record_grads=True)
    assert torch.equal(r.x_adv, x.detach())
    assert torch.all(metrics.fosc(model, x.detach(), r.x_adv, y, EPS) == 0)
    assert torch.all(metrics.sgcs(r.step_grads) == 0)
    # the network behind it is untouched: same state dict as the plain network
    assert model.model.state_dict().keys() == _net().state_dict().keys()


def test_stochastic_kind_moves_pixels_redraws_every_forward_and_replays_after_reseed():
    t = masking.RandomTranslateNoise(shift=1, noise_std=0.0, seed=0)
    x = torch.arange(2 * 1 * 4 * 4, dtype=torch.float32).view(2, 1, 4, 4) + 1
    y = t(x)
    for i in range(2):  # each output is the input shifted by some (dy, dx) in [-1, 1]^2 with zero padding
        ok = False
        for dy in (-1, 0, 1):
            for dx in (-1, 0, 1):
                ref = torch.zeros(4, 4)
                src = x[i, 0]
                ref[max(dy, 0):4 + min(dy, 0), max(dx, 0):4 + min(dx, 0)] = \
                    src[max(-dy, 0):4 + min(-dy, 0), max(-dx, 0):4 + min(-dx, 0)]
                ok |= torch.equal(y[i, 0], ref)
        assert ok, y[i, 0]
    model = masking.PlantedModel(_net(), PlantMaskingConfig(kind="stochastic", shift=2, noise_std=0.05), seed=3)
    model.set_epoch(1)
    xr = torch.rand(4, 3, 16, 16, generator=torch.Generator().manual_seed(2))
    labels = torch.arange(4)

    def grad() -> torch.Tensor:
        xi = xr.clone().requires_grad_(True)
        (g,) = torch.autograd.grad(nn.functional.cross_entropy(model(xi), labels, reduction="sum"), xi)
        return g

    g1, g2 = grad(), grad()
    assert torch.count_nonzero(g1) > 0 and not torch.equal(g1, g2)  # stochastic, not shattered, gradients
    model.set_epoch(1)  # a resumed epoch draws the same numbers
    assert torch.equal(grad(), g1)


def test_window_switches_the_masking_for_its_epochs_only():
    cfg = PlantMaskingConfig(kind="quantize", levels=2, epochs=[2, 3])
    model = masking.PlantedModel(_net(), cfg, seed=0)
    x = torch.full((1, 3, 16, 16), 0.3)
    plain = model.model(x)
    for epoch, on in ((1, False), (2, True), (3, True), (4, False)):
        model.set_epoch(epoch)
        assert model.active is on and masking.active_at(cfg, epoch) is on
        assert torch.equal(model(x), model.model(torch.zeros_like(x)) if on else plain)
    assert masking.active_at(PlantMaskingConfig(kind="quantize"), 7) and not masking.active_at(PlantMaskingConfig(), 1)


def test_kinds_registry_agrees_with_the_run_config():
    assert {k: v.params for k, v in masking.KINDS.items()} == PLANT_KINDS
    for kind in masking.KINDS.values():
        assert "Athalye" in kind.source and kind.detectors


# ------------------------------------------------------------------------- through the pipeline


@pytest.fixture(scope="module")
def planted_run(tmp_path_factory):
    """A tiny run trained behind the quantiser (2 epochs), its best.pt evaluated by trades-eval."""
    from trades_instability.config.run import from_dict
    from trades_instability.train.loop import train

    out = tmp_path_factory.mktemp("planted")
    cfg = from_dict({
        "dataset": "synthetic", "width": 2, "epochs": 2, "batch_size": 32, "val_batch_size": 32,
        "synthetic": {"num_classes": 4, "train_size": 64, "test_size": 16, "image_size": 16, "seed": 0},
        "attack": {"steps": 3}, "device": "cpu", "plant_masking": {"kind": "quantize", "levels": 8}})
    info = train(cfg, out / "run", log=lambda m: None)
    (out / "suites.yaml").write_text("tiny: {attacks: [clean, pgd10], n_examples: 8, batch_size: 8}\n")
    return out, info


def test_planted_run_trains_records_and_evaluates_as_planted(planted_run, capsys):
    out, info = planted_run
    run = out / "run"
    assert info["config"]["plant_masking"]["kind"] == "quantize"
    epochs = pd.read_csv(run / "epochs.csv")
    assert (epochs["val_fosc"] == 0).all() and (epochs["val_sgcs"] == 0).all()  # zero gradients, every epoch
    ckpt = load_checkpoint(run / "checkpoints" / "best.pt")
    assert ckpt["model_meta"]["planted"]["kind"] == "quantize" and ckpt["model_meta"]["planted"]["levels"] == 8
    assert "planted" not in ckpt["model"] and not any(k.startswith("model.") for k in ckpt["model"])
    model, _ = load_model(run / "checkpoints" / "best.pt")
    assert isinstance(model, masking.PlantedModel) and model.active
    ev = out / "eval_tiny.json"
    rc = eval_cli.main(["--checkpoint", str(run / "checkpoints" / "best.pt"), "--last-checkpoint",
                        str(run / "checkpoints" / "last.pt"), "--suite", "tiny", "--suites", str(out / "suites.yaml"),
                        "--out", str(ev), "--device", "cpu"])
    text = capsys.readouterr().out
    assert rc == 0 and "PLANTED gradient masking: quantize (levels 8)" in text and "not a finding" in text
    doc = json.loads(ev.read_text())
    assert doc["planted"]["kind"] == "quantize" and doc["planted"]["active"] is True
    assert "Sec. 4.1" in doc["planted"]["source"] and doc["last"]["planted"]["active"] is True
    assert doc["fosc"] == 0.0 and doc["sgcs"] == 0.0  # PGD-10 only gets its random start
    # summary.csv: the planted column and what was planted
    (run / "eval_tiny.json").write_text(ev.read_text())
    _summary, selection = agg.aggregate([{"setting": "default", "seed": 0, "run_dir": str(run), "suites": ["tiny"]}],
                                       out_csv=out / "summary.csv", out_json=out / "selection.json")
    back = agg.load_summary(out / "summary.csv")
    assert back["planted"].tolist() == [True] and back["plant"].tolist() == ["quantize levels=8"]
    assert selection["groups"]["default"]["planted"] == [0]


def test_unplanted_checkpoint_says_so(tmp_path, tiny_run_config, capsys):
    from trades_instability.train.loop import train

    info = train(tiny_run_config(epochs=1), tmp_path / "run", log=lambda m: None)
    assert info["config"]["plant_masking"]["kind"] == "none"
    assert load_checkpoint(tmp_path / "run" / "checkpoints" / "best.pt")["model_meta"]["planted"] is None
    model, _ = load_model(tmp_path / "run" / "checkpoints" / "best.pt")
    assert not isinstance(model, masking.PlantedModel)
    (tmp_path / "s.yaml").write_text("tiny: {attacks: [clean], n_examples: 4, batch_size: 4}\n")
    assert eval_cli.main(["--checkpoint", str(tmp_path / "run" / "checkpoints" / "best.pt"), "--suite", "tiny",
                          "--suites", str(tmp_path / "s.yaml"), "--out", str(tmp_path / "e.json"),
                          "--device", "cpu"]) == 0
    assert "PLANTED" not in capsys.readouterr().out and json.loads((tmp_path / "e.json").read_text())["planted"] is None


def test_window_checkpoint_is_evaluated_without_masking_after_the_window(tmp_path):
    from trades_instability.config.run import from_dict
    from trades_instability.train.loop import train

    cfg = from_dict({"dataset": "synthetic", "width": 2, "epochs": 3, "batch_size": 32, "val_batch_size": 32,
                     "synthetic": {"num_classes": 4, "train_size": 64, "test_size": 16, "image_size": 16},
                     "attack": {"steps": 3}, "device": "cpu",
                     "plant_masking": {"kind": "quantize", "levels": 2, "epochs": [2, 2]}})
    train(cfg, tmp_path / "run", log=lambda m: None)
    fosc = pd.read_csv(tmp_path / "run" / "epochs.csv")["val_fosc"].tolist()
    assert fosc[1] == 0 and fosc[0] > 0 and fosc[2] > 0  # masked (zero gradient) in epoch 2 only
    model, _ = load_model(tmp_path / "run" / "checkpoints" / "last.pt")
    assert isinstance(model, masking.PlantedModel) and not model.active  # the finished run: window over


# --------------------------------------------------------------------------------- pipeline config


def _smoke() -> dict:
    return yaml.safe_load(SMOKE.read_text())


def test_pipeline_plants_only_the_listed_seeds_and_fixed_alike():
    cfg = pipeline_loading.load(SMOKE)
    assert cfg.run_config("default", 1)["plant_masking"] == {"kind": "quantize", "levels": 8, "shift": 2,
                                                            "noise_std": 0.0, "epochs": []}
    assert cfg.run_config("default", 0)["plant_masking"]["epochs"] == [2, 3]
    assert cfg.run_config("s_b1_bs64_lr0.1", 0)["plant_masking"]["kind"] == "none"
    assert all(cfg.plant_of("fixed", x) == cfg.plant_of("default", x) for x in (0, 1))
    assert cfg.plant_of("modified", 0) is None
    assert "PLANTED" not in cfg.run_config_yaml("modified", 0)
    text = cfg.run_config_yaml("default", 1)
    assert "PLANTED" in text and yaml.safe_load(text)["plant_masking"]["kind"] == "quantize"


@pytest.mark.parametrize("change, fragment", [
    (lambda c: c["settings"]["default"]["plant_masking"][0].update(levels=1),
     "settings.default.plant_masking[0].levels"),
    (lambda c: c["settings"]["default"]["plant_masking"][0].update(kind="blur"), "settings.default.plant_masking"),
    (lambda c: c["settings"]["default"]["plant_masking"][0].update(seeds=[5]),
     "settings.default.plant_masking[0].seeds: seed 5 is not a seed of setting 'default'"),
    (lambda c: c["settings"]["default"]["plant_masking"][1].update(seeds=[1]), "seed 1 is already planted"),
    (lambda c: c["settings"]["default"]["plant_masking"][0].update(shift=3),
     "settings.default.plant_masking[0].shift: kind 'quantize' does not read it"),
    (lambda c: c["settings"]["default"]["plant_masking"][1].update(epochs=[3, 9]),
     "settings.default.plant_masking[1].epochs: must be [] (every epoch) or [a, b]"),
    (lambda c: c["settings"]["fixed"].pop("plant_masking"),
     "settings.fixed.plant_masking: seed 0 is planted as"),
    (lambda c: c["settings"]["fixed"].update(plant_masking={"same_as": "nosuch"}),
     "settings.fixed.plant_masking.same_as: 'nosuch' is not another setting"),
    (lambda c: c["settings"]["default"]["overrides"].update(plant_masking={"kind": "quantize"}),
     "settings.default.overrides.plant_masking: not allowed here"),
])
def test_bad_plant_masking_stops_naming_the_key(change, fragment):
    raw = copy.deepcopy(_smoke())
    change(raw)
    with pytest.raises(pc.PipelineConfigError) as e:
        pipeline_loading.validate(raw)
    assert fragment in str(e.value), str(e.value)


# ------------------------------------------------------------------------ comparison and detection


def _summary_rows() -> pd.DataFrame:
    base = {"dataset": "cifar100", "method": "trades", "beta": 3.0, "batch_size": 256, "lr": 0.1, "status": "complete",
            "fix": False, "clean_acc": 0.5, "autoattack_acc": 0.2, "apgd_ce_acc": 0.25, "apgd_t_acc": 0.22,
            "fab_t_acc": 0.3, "max_val_fosc": 0.05, "self_healing": False, "fosc_threshold": 0.1, "fosc": 0.01,
            "sgcs": 0.5, "plant": None}
    rows = [
        # default: two plain Regular runs, one planted Unstable run with the largest gap
        {**base, "setting": "default", "seed": 0, "pgd10_acc": 0.30, "square_acc": 0.29, "planted": False},
        {**base, "setting": "default", "seed": 1, "pgd10_acc": 0.31, "square_acc": 0.28, "planted": False},
        {**base, "setting": "default", "seed": 2, "pgd10_acc": 0.50, "square_acc": 0.10, "planted": True,
         "plant": "quantize levels=8", "fosc": 0.0, "sgcs": 0.0},
        {**base, "setting": "fixed", "seed": 2, "pgd10_acc": 0.50, "square_acc": 0.10, "planted": True, "fix": True,
         "plant": "quantize levels=8", "fosc": 0.0, "sgcs": 0.0},
    ]
    df = pd.DataFrame(rows)
    df["gap_pgd_square"] = df["pgd10_acc"] - df["square_acc"]
    df["gap_pgd_aa"] = df["pgd10_acc"] - df["autoattack_acc"]
    df["unstable"] = df["gap_pgd_square"] >= 0.08
    return df


def test_planted_runs_never_enter_the_comparison_with_the_paper():
    df = _summary_rows()
    selection = agg.select(df, {}, 0.08)
    assert selection["groups"]["default"]["unstable"] == [2] and selection["groups"]["default"]["planted"] == [2]
    specs = {"table1": {"setting": "default"}, "table3": {"regular_unstable": "default", "fixed": "fixed"}}
    from trades_instability.report.tables import build_table

    t3 = build_table("table3", specs["table3"], df, selection)  # the pipeline's own table shows the control
    assert t3.find("Unstable", "PGD-10").value == pytest.approx(0.50) and t3.find("Fixed", "PGD-10").value is not None
    assert any("not a finding" in n and "default seed 2 (quantize levels=8)" in n and "fixed seed 2" in n
               for n in t3.notes), t3.notes  # said under the table, never hidden
    from trades_instability.report.figures import planted_note

    assert planted_note(df, ["default"]) == \
        "planted gradient masking (a positive control, not a finding): default seed 2"
    assert planted_note(df[df["seed"] != 2], ["default"]) is None
    t1 = build_table("table1", specs["table1"], df, selection)
    assert t1.panels[0].row_headers["Unstable"] == "Unstable (seed 2, planted)"
    frame = comparison.comparison_frame(df, selection, specs)
    assert not frame["seeds"].astype(str).str.contains("2").any(), frame[["table", "row", "column", "seeds"]]
    unstable = frame[(frame["table"] == "table3") & (frame["row"] == "Unstable")]
    assert unstable["reproduced"].isna().all()  # no Unstable run left once the planted one is out
    fixed = frame[(frame["table"] == "table3") & (frame["row"] == "Fixed")]
    assert fixed["reproduced"].isna().all()
    regular = frame[(frame["table"] == "table1") & (frame["row"] == "Regular")]
    assert regular["seeds"].astype(str).isin(["0", "1"]).all() and regular["reproduced"].notna().any()
    _kept, sel, left = comparison.without_planted(df, selection)
    assert left == ["default/2", "fixed/2"] and sel["groups"]["default"]["unstable"] == []
    assert sel["groups"]["default"]["representative"]["regular"] in (0, 1)


def test_comparison_names_the_planted_runs_it_left_out(tmp_path):
    df = _summary_rows()
    comparison.render_comparison(df, agg.select(df, {}, 0.08), {"table1": {"setting": "default"}},
                                 tmp_path / "c.tex", tmp_path / "c.csv")
    assert "% Planted runs (a positive control) left out of every cell: default/2, fixed/2" in \
        (tmp_path / "c.tex").read_text()


def test_detection_planted_block_shows_what_fosc_reads_on_the_control(tmp_path):
    df = _summary_rows()
    run_dirs = {}
    for _, r in df.iterrows():
        d = tmp_path / r["setting"] / f"seed{r['seed']}"
        d.mkdir(parents=True)
        zero = bool(r["planted"])
        pd.DataFrame({"epoch": [1, 2, 3], "val_fosc": [0.0] * 3 if zero else [0.02, 0.05, 0.03],
                      "val_sgcs": [0.0] * 3 if zero else [0.6, 0.7, 0.8]}).to_csv(d / "epochs.csv", index=False)
        run_dirs[(r["setting"], int(r["seed"]))] = d
    df["best_epoch"] = 3
    selection = agg.select(df, {}, 0.08)
    report = detection.render_detection(df, selection, run_dirs, ["default", "fixed"], tmp_path / "d.tex",
                                        tmp_path / "d.csv", tmp_path / "d.pdf")
    assert [(p.setting, p.seed, p.unstable, p.peak_fosc, p.flagged) for p in report.planted] == [
        ("default", 2, True, 0.0, False), ("fixed", 2, True, 0.0, False)]
    tex = (tmp_path / "d.tex").read_text()
    assert "tab:detection-planted" in tex and "default/2 & quantize levels=8 & yes & +0.4000 & 0.0000" in tex
    assert "FOSC, SGCS and GradAlign read 0" in tex
    runs = pd.read_csv(tmp_path / "d.csv")
    assert runs.set_index("seed")["label"].to_dict() == {0: "Regular", 1: "Regular", 2: "Unstable"}  # still counted
    assert "planted (a positive control, see the planted block): default/2" in tex
