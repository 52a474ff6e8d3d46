"""The review's training pieces against closed forms and independent references: the PGD-AT and ALP losses, the
method table, GradAlign, the eps-ball TPGD start, the three seed sources, Algorithm 1 as a pure function and
the always-on noise variant."""

from __future__ import annotations

import csv
import math

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from trades_instability.config.run import METHODS, SEED_SOURCES, ConfigError, FixConfig
from trades_instability.core import attacks, methods
from trades_instability.core.losses import alp_parts, pgd_at_parts, trades_parts
from trades_instability.core.metrics import gradalign
from trades_instability.train import algorithm1
from trades_instability.train.loop import Trainer, train


def _rows(path):
    with open(path, newline="") as fh:
        return list(csv.DictReader(fh))


def _linear(d=12, c=3, seed=0):
    torch.manual_seed(seed)
    return nn.Sequential(nn.Flatten(), nn.Linear(d, c)).double()


# ------------------------------------------------------------------ losses


def test_pgd_at_loss_is_the_adversarial_cross_entropy_alone():
    model = _linear()
    x, x_adv = torch.rand(5, 12, dtype=torch.float64), torch.rand(5, 12, dtype=torch.float64)
    y = torch.tensor([0, 1, 2, 1, 0])
    parts = pgd_at_parts(model, x, x_adv, y)
    w, b = model[1].weight, model[1].bias
    logits_adv = x_adv @ w.T + b
    ref = -(logits_adv.log_softmax(1)[torch.arange(5), y]).mean()
    torch.testing.assert_close(parts.loss, ref)
    torch.testing.assert_close(parts.ce, ref)
    assert float(parts.kl) == 0.0 and parts.weight == 0.0 and not parts.kl.requires_grad
    torch.testing.assert_close(parts.logits_clean, x @ w.T + b)
    assert not parts.logits_clean.requires_grad  # clean logits only feed train clean accuracy


def test_pgd_at_clean_logging_forward_leaves_batchnorm_statistics_alone():
    """The only forward that moves BatchNorm's running statistics is the adversarial one."""
    import copy

    torch.manual_seed(0)
    model = nn.Sequential(nn.Conv2d(3, 4, 3), nn.BatchNorm2d(4), nn.Flatten(), nn.Linear(4 * 36, 2)).train()
    x, x_adv, y = torch.rand(6, 3, 8, 8), torch.rand(6, 3, 8, 8), torch.zeros(6, dtype=torch.long)
    ref = copy.deepcopy(model)
    ref(x_adv)
    pgd_at_parts(model, x, x_adv, y)
    assert model.training
    for a, b in zip(model[1].buffers(), ref[1].buffers(), strict=True):
        torch.testing.assert_close(a, b)


@pytest.mark.parametrize("lam", [0.0, 0.5, 2.0])
def test_alp_loss_matches_the_official_mixed_minibatch_plus_logit_mse(lam):
    model = _linear(c=4)
    x, x_adv = torch.rand(6, 12, dtype=torch.float64), torch.rand(6, 12, dtype=torch.float64)
    y = torch.tensor([0, 1, 2, 3, 1, 0])
    parts = alp_parts(model, x, x_adv, y, lam)
    w, b = model[1].weight, model[1].bias
    lc, la = x @ w.T + b, x_adv @ w.T + b
    # tensorflow/models research/adversarial_logit_pairing/train.py: softmax CE over cat(clean, adv), then
    # tf.losses.mean_squared_error(clean half, adv half) * train_lp_weight (mean over every element)
    both, yy = torch.cat([lc, la]), torch.cat([y, y])
    ce = -(both.log_softmax(1)[torch.arange(12), yy]).mean()
    mse = ((lc - la) ** 2).sum() / lc.numel()
    torch.testing.assert_close(parts.ce, ce)
    torch.testing.assert_close(parts.kl, mse)
    torch.testing.assert_close(parts.loss, ce + lam * mse)
    assert parts.weight == lam
    separate = alp_parts(model, x, x_adv, y, lam, joint_forward=False)  # no BatchNorm: the same numbers
    torch.testing.assert_close(separate.loss, parts.loss)


def test_trades_parts_carry_beta_as_the_pairing_weight():
    model = _linear()
    x = torch.rand(4, 12, dtype=torch.float64)
    parts = trades_parts(model, x, x + 0.01, torch.tensor([0, 1, 2, 0]), 6.0)
    assert parts.weight == 6.0
    torch.testing.assert_close(parts.loss, parts.ce + 6.0 * parts.kl)


def test_method_table_names_every_config_method_with_its_attack_and_source():
    assert tuple(methods.METHODS) == METHODS
    assert {n: m.attack for n, m in methods.METHODS.items()} == {
        "trades": "tpgd", "modified": "pgd", "pgd_at": "pgd", "alp": "pgd"}
    assert all(m.source for m in methods.METHODS.values())
    with pytest.raises(ValueError, match="unknown method"):
        methods.method("mart")


@pytest.mark.parametrize("name", ["pgd_at", "alp"])
def test_control_methods_train_end_to_end_with_finite_logs(tmp_path, tiny_run_config, name):
    cfg = tiny_run_config(method=name, log_batch_metrics=True, epochs=1)
    info = train(cfg, tmp_path, log=lambda m: None)
    assert info["status"] == "complete"
    (row,) = _rows(tmp_path / "epochs.csv")
    for k in ("train_loss", "train_ce", "train_clean_acc", "val_pgd_acc", "val_fosc", "val_gradalign", "ce_norm"):
        assert math.isfinite(float(row[k])), (k, row)
    batches = _rows(tmp_path / "batches.csv")
    if name == "pgd_at":  # no pairing term: zero KL column and zero pairing gradient
        assert all(float(b["kl"]) == 0.0 and float(b["kl_norm"]) == 0.0 for b in batches)
        assert float(row["train_loss"]) == pytest.approx(float(row["train_ce"]))
    else:
        assert all(float(b["kl_norm"]) > 0.0 for b in batches)


def test_alp_lambda_is_validated_naming_the_key(tiny_run_config):
    with pytest.raises(ConfigError, match="alp_lambda"):
        tiny_run_config(alp_lambda=-1.0)
    with pytest.raises(ConfigError, match="'method'"):
        tiny_run_config(method="mart")


# ------------------------------------------------------------------ GradAlign


def test_gradalign_is_one_when_the_input_gradient_has_one_direction():
    """Two classes with logits (w.x, 0): grad_x CE = (p_0 - [y = 0]) w, a multiple of w of one sign for a given
    label, so the cosine between any two points is exactly 1."""
    torch.manual_seed(0)
    w = torch.randn(12, dtype=torch.float64)

    class TwoClass(nn.Module):
        def forward(self, x):
            s = x.flatten(1) @ w
            return torch.stack([s, torch.zeros_like(s)], 1)

    x, y = torch.rand(8, 12, dtype=torch.float64), torch.tensor([0, 1] * 4)
    out = gradalign(TwoClass(), x, y, 8 / 255, torch.Generator().manual_seed(1))
    torch.testing.assert_close(out, torch.ones(8, dtype=torch.float64))


def test_gradalign_matches_the_closed_form_of_a_linear_softmax_model():
    model = _linear(c=4, seed=3)
    w, b = model[1].weight.detach(), model[1].bias.detach()
    x, y, eps = torch.rand(7, 12, dtype=torch.float64), torch.tensor([0, 1, 2, 3, 0, 1, 2]), 0.05
    out = gradalign(model, x, y, eps, torch.Generator().manual_seed(4))
    eta = (2 * torch.rand(x.shape, generator=torch.Generator().manual_seed(4), dtype=torch.float64) - 1) * eps
    onehot = F.one_hot(y, 4).double()

    def g(z):  # d CE / dx = W^T (softmax(Wz + b) - e_y)
        return ((z @ w.T + b).softmax(1) - onehot) @ w

    ref = F.cosine_similarity(g(x), g((x + eta).clamp(0, 1)), dim=1)
    torch.testing.assert_close(out, ref)


def test_gradalign_reads_zero_where_the_gradient_is_shattered():
    class Quantised(nn.Module):  # round() has zero gradient almost everywhere (Athalye et al. 2018, Sec. 4.1)
        def __init__(self):
            super().__init__()
            self.lin = nn.Linear(12, 3)

        def forward(self, x):
            return self.lin(torch.round(x.flatten(1) * 7) / 7)

    x, y = torch.rand(5, 12), torch.tensor([0, 1, 2, 0, 1])
    assert torch.equal(gradalign(Quantised(), x, y, 8 / 255, torch.Generator().manual_seed(0)), torch.zeros(5))


# ------------------------------------------------------------------ TPGD's eps-ball start


def test_tpgd_eps_ball_start_is_pgds_uniform_start():
    x = torch.rand(16, 3, 8, 8)
    model = nn.Sequential(nn.Flatten(), nn.Linear(3 * 64, 4))
    eps = 8 / 255
    start = attacks.tpgd(model, x, eps=eps, step_size=2 / 255, steps=0, init_dist="eps_ball",
                         generator=torch.Generator().manual_seed(2)).x_adv
    ref = attacks.pgd(model, x, torch.zeros(16, dtype=torch.long), eps=eps, step_size=2 / 255, steps=0,
                      generator=torch.Generator().manual_seed(2)).x_adv
    assert torch.equal(start, ref)
    d = start - x
    assert float(d.abs().max()) <= eps + 1e-7 and float(d.abs().max()) > 0.9 * eps  # spread over the whole ball
    assert float(start.min()) >= 0.0 and float(start.max()) <= 1.0


# ------------------------------------------------------------------ seed sources


def _setup(cfg, tmp_path):
    t = Trainer(cfg, tmp_path, log=lambda m: None)
    t.setup()
    return t


def test_each_seed_key_drives_its_own_generator_and_defaults_to_seed(tmp_path, tiny_run_config):
    base = _setup(tiny_run_config(seed=3), tmp_path / "a")
    explicit = _setup(tiny_run_config(seed=3, init_seed=3, data_seed=3, attack_seed=3), tmp_path / "b")
    assert tiny_run_config(seed=3).seeds() == {"init": 3, "data": 3, "attack": 3}
    assert set(SEED_SOURCES) == {"init", "data", "attack"}

    def weights(t):
        return torch.cat([p.detach().flatten() for p in t.model.parameters()])

    assert torch.equal(weights(base), weights(explicit))
    for key, changes in (("init_seed", "init"), ("data_seed", "data"), ("attack_seed", "attack")):
        other = _setup(tiny_run_config(seed=3, **{key: 9}), tmp_path / key)
        assert torch.equal(weights(other), weights(base)) == (changes != "init"), key
        assert torch.equal(other.gen_data.get_state(), base.gen_data.get_state()) == (changes != "data"), key
        assert torch.equal(other.gen_dev.get_state(), base.gen_dev.get_state()) == (changes != "attack"), key


def test_explicit_seed_sources_equal_to_seed_reproduce_the_run_and_run_json_names_them(tmp_path, tiny_run_config):
    train(tiny_run_config(seed=1), tmp_path / "a", log=lambda m: None)
    info = train(tiny_run_config(seed=1, init_seed=1, data_seed=1, attack_seed=1), tmp_path / "b", log=lambda m: None)
    strip = [{k: v for k, v in r.items() if k != "epoch_time_s"} for r in _rows(tmp_path / "a" / "epochs.csv")]
    assert strip == [{k: v for k, v in r.items() if k != "epoch_time_s"} for r in _rows(tmp_path / "b" / "epochs.csv")]
    assert {k: v["seed"] for k, v in info["seed_sources"].items()} == {"init": 1, "data": 1, "attack": 1}
    assert all(v["drives"] == SEED_SOURCES[k] for k, v in info["seed_sources"].items())


def test_seed_keys_are_validated_naming_the_key(tiny_run_config):
    with pytest.raises(ConfigError, match="data_seed"):
        tiny_run_config(data_seed=-2)
    with pytest.raises(ConfigError, match="fix.mode"):
        tiny_run_config(fix={"mode": "sometimes"})


# ------------------------------------------------------------------ Algorithm 1, and the always-on variant


FIX = FixConfig(enabled=True, fosc_threshold=0.1, noise_std=0.1, noise_batches=10)


def test_algorithm1_threshold_crossed_noises_the_next_epoch_and_blocks_selection():
    d = algorithm1.decide(FIX, fosc=0.2, pgd_acc=0.9, best_pgd_acc=0.1, noise_left=0)
    assert d == algorithm1.EpochDecision(over=True, is_best=False, noise_next=10)


def test_algorithm1_below_threshold_selects_by_pgd10_and_carries_an_unspent_budget():
    assert algorithm1.decide(FIX, fosc=0.05, pgd_acc=0.4, best_pgd_acc=0.3, noise_left=0) == (False, True, 0)
    assert algorithm1.decide(FIX, fosc=0.05, pgd_acc=0.2, best_pgd_acc=0.3, noise_left=4) == (False, False, 4)
    # exactly at the threshold is not above it
    assert algorithm1.decide(FIX, fosc=0.1, pgd_acc=0.4, best_pgd_acc=0.3, noise_left=0).over is False


def test_algorithm1_without_the_fix_selects_by_pgd10_alone_but_still_reports_fosc():
    off = FixConfig(enabled=False)
    assert algorithm1.decide(off, fosc=5.0, pgd_acc=0.9, best_pgd_acc=0.1, noise_left=0) == (True, True, 0)
    assert algorithm1.initial_noise_budget(off) == 0 and algorithm1.initial_noise_budget(FIX) == 0


def test_always_mode_noises_every_epoch_whatever_fosc_reads():
    always = FixConfig(enabled=True, fosc_threshold=0.1, noise_batches=3, mode="always")
    assert algorithm1.initial_noise_budget(always) == 3
    assert algorithm1.decide(always, fosc=0.0, pgd_acc=0.5, best_pgd_acc=0.1, noise_left=0) == (False, True, 3)
    assert algorithm1.decide(always, fosc=0.5, pgd_acc=0.5, best_pgd_acc=0.1, noise_left=0) == (True, False, 3)


@pytest.mark.parametrize("mode, noised", [("triggered", [0, 0, 0]), ("always", [2, 2, 2])])
def test_fix_mode_in_a_real_run(tmp_path, tiny_run_config, mode, noised):
    cfg = tiny_run_config(epochs=3, fix={"enabled": True, "fosc_threshold": 1e6, "noise_batches": 2, "mode": mode})
    train(cfg, tmp_path, log=lambda m: None)
    assert [int(r["noise_batches"]) for r in _rows(tmp_path / "epochs.csv")] == noised
