"""The `convention` presets (config.CONVENTIONS): what each item does, on tiny inputs.

* the preset fills unset keys, an explicit key wins, RunConfig's defaults are the `adr` column, and bad
  input (unknown convention, self-contradicting override) is one ConfigError naming the key;
* `official_trades`: one Trainer step equals the official loop (reference_trades.official_trades_loss + SGD step) in
  weights AND BatchNorm running statistics; the statistics are also computed by hand from the batch moments
  of the three train-mode forwards (clean, adversarial, clean);
* `adr`: 195 steps per epoch at batch 256 on 50k (drop_last); the attack moves BatchNorm running statistics
  (train mode); one concatenated clean+adversarial loss forward (official: clean, adversarial, clean); input
  normalisation inside the model (and trades-eval's rebuild from the checkpoint alone);
  TPGD start x + 0.001 U[0, 1); validation PGD-10 from a uniform start in the eps-ball; AWP's two-step form.
"""

from __future__ import annotations

import copy

import pytest
import torch
from torch import nn

from trades_instability.config.run import CONVENTIONS, ConfigError, RunConfig, convention_preset, from_dict
from trades_instability.core import attacks
from trades_instability.core.awp import ADRAWP, running_stats_frozen
from trades_instability.core.losses import trades_parts
from trades_instability.core.models import DATASET_STATS, build_model
from trades_instability.data.splits import load_splits
from trades_instability.evaluate.cli import load_checkpoint_with_data
from trades_instability.rundir.checkpoint import save_checkpoint
from trades_instability.tools import reference_trades
from trades_instability.train.loop import Trainer
from trades_instability.train.validation import validate


def _cfg(convention: str, **over) -> RunConfig:
    base = {
        "convention": convention, "dataset": "synthetic",
        "synthetic": {"num_classes": 10, "train_size": 40, "test_size": 16, "image_size": 16, "seed": 0},
        "width": 4, "epochs": 1, "batch_size": 16, "val_batch_size": 16, "beta": 6.0,
        "attack": {"steps": 3}, "device": "cpu", "channels_last": False,
    }
    base.update(over)
    return from_dict(base)


def _trainer(tmp_path, cfg) -> Trainer:
    t = Trainer(cfg, tmp_path, log=lambda m: None, progress=False, data=load_splits(cfg))
    t.setup()
    return t


def _bn_stats(model: nn.Module) -> dict[str, torch.Tensor]:
    return {k: v.clone() for k, v in model.named_buffers() if "running" in k}


def _get(cfg: RunConfig, key: str):
    obj = cfg
    for part in key.split("."):
        obj = getattr(obj, part)
    return obj


# ------------------------------------------------------------------------------ the preset


def test_runconfig_defaults_are_the_adr_column():
    cfg = RunConfig()
    assert cfg.convention == "adr"
    for key, value in convention_preset("adr").items():
        assert _get(cfg, key) == value, key


@pytest.mark.parametrize("name", ["adr", "official_trades"])
def test_convention_sets_every_item(name):
    cfg = from_dict({"convention": name})
    assert cfg.to_dict()["convention"] == name
    for key, value in convention_preset(name).items():
        assert _get(cfg, key) == value, key
    assert len(CONVENTIONS) == 10


def test_explicit_key_overrides_the_preset():
    cfg = from_dict({"convention": "official_trades", "attack": {"bn_mode": "train"}, "drop_last": True})
    assert cfg.attack.bn_mode == "train" and cfg.drop_last
    assert cfg.attack.init_dist == "normal" and not cfg.normalize_input  # the rest stays official


def test_unknown_convention_is_one_line_naming_the_key():
    with pytest.raises(ConfigError) as e:
        from_dict({"convention": "madry"})
    assert "'convention'" in str(e.value) and "adr, official_trades" in str(e.value)
    assert "\n" not in str(e.value)


def test_self_contradicting_override_is_one_line_naming_the_key():
    with pytest.raises(ConfigError) as e:
        from_dict({"convention": "official_trades", "joint_forward": True})  # official's repeat + joint
    assert "'repeat_clean_forward'" in str(e.value) and "joint_forward" in str(e.value)
    assert "\n" not in str(e.value)


@pytest.mark.parametrize("convention, awp, nesterov, expected", [
    ("adr", True, True, False),               # ADR's build_awp_optimizer: torch.optim.SGD without nesterov=
    ("adr", False, True, True),               # ADR's build_sgd_optimizer: nesterov=True
    ("official_trades", True, True, True),    # official: the run's own `nesterov`, AWP or not
    ("official_trades", True, False, False),
    ("official_trades", False, True, True),
])
def test_training_optimizer_nesterov_follows_the_convention(tmp_path, convention, awp, nesterov, expected):
    cfg = _cfg(convention, nesterov=nesterov, awp={"enabled": awp})
    t = _trainer(tmp_path, cfg)
    assert [g["nesterov"] for g in t.optimizer.param_groups] == [expected]


def test_explicit_awp_nesterov_wins_over_the_adr_preset(tmp_path):
    t = _trainer(tmp_path, _cfg("adr", awp={"enabled": True, "nesterov": True}))
    assert t.optimizer.param_groups[0]["nesterov"] is True


# ------------------------------------------------------------------------------ official_trades


def _bn_inputs(model: nn.Module, x: torch.Tensor) -> dict[str, torch.Tensor]:
    """The input of every BatchNorm layer in a train-mode forward of ``x``."""
    seen: dict[str, torch.Tensor] = {}
    hooks = [m.register_forward_hook(lambda mod, inp, out, n=n: seen.__setitem__(n, inp[0].detach()))
             for n, m in model.named_modules() if isinstance(m, nn.BatchNorm2d)]
    model.train()
    with torch.no_grad():
        model(x)
    for h in hooks:
        h.remove()
    return seen


def test_official_trades_step_equals_the_official_loop_weights_and_bn_stats(tmp_path):
    cfg = _cfg("official_trades")
    t = _trainer(tmp_path, cfg)
    stats = t.step.start_epoch(1)
    x, y = next(t.epoch_batches())
    ref = copy.deepcopy(t.model)
    ref_opt = torch.optim.SGD(ref.parameters(), lr=cfg.lr, momentum=cfg.momentum, nesterov=cfg.nesterov,
                              weight_decay=cfg.weight_decay)
    start = torch.Generator().set_state(t.gen_dev.get_state())

    # the expected running statistics, by hand: the batch moments of the train-mode forwards clean,
    # adversarial, clean (trades.py), each folded in with BatchNorm's momentum 0.1 (unbiased variance)
    x_adv = attacks.tpgd(copy.deepcopy(t.model), x, eps=cfg.attack.eps, step_size=cfg.attack.step_size,
                         steps=cfg.attack.steps, init_dist="normal", mode="eval",
                         generator=torch.Generator().set_state(t.gen_dev.get_state())).x_adv
    expected = _bn_stats(t.model)
    for inp in (x, x_adv, x):
        for name, z in _bn_inputs(copy.deepcopy(t.model), inp).items():
            mean, var = z.mean((0, 2, 3)), z.var((0, 2, 3), unbiased=True)
            expected[f"{name}.running_mean"] = 0.9 * expected[f"{name}.running_mean"] + 0.1 * mean
            expected[f"{name}.running_var"] = 0.9 * expected[f"{name}.running_var"] + 0.1 * var

    a = cfg.attack
    ref_opt.zero_grad()
    reference_trades.official_trades_loss(ref, x, y, ref_opt, step_size=a.step_size, epsilon=a.eps,
                                          perturb_steps=a.steps,
                               beta=cfg.beta, generator=start).backward()
    ref_opt.step()
    t.step(x, y, batch=0, state=t.state, stats=stats)

    def rel(u, v):
        return float((u - v).detach().norm() / v.detach().norm().clamp_min(1e-12))

    for (n, p), q in zip(t.model.named_parameters(), ref.parameters(), strict=True):
        assert rel(p, q) < 1e-5, n
    ours, official = _bn_stats(t.model), _bn_stats(ref)
    for k in expected:
        assert rel(ours[k], official[k]) < 1e-5, k
        assert rel(ours[k], expected[k]) < 1e-5, k
    # without the repeated clean forward the statistics are measurably different (not a rounding matter)
    t2 = _trainer(tmp_path / "two", _cfg("official_trades", repeat_clean_forward=False))
    t2.step(x, y, batch=0, state=t2.state, stats=t2.step.start_epoch(1))
    assert max(rel(_bn_stats(t2.model)[k], expected[k]) for k in expected) > 1e-3


# ------------------------------------------------------------------------------ adr


def test_adr_drops_the_last_batch_195_steps_at_batch_256_on_50k(tmp_path):
    cfg = _cfg("adr", batch_size=16)  # 40 training images: 2 full batches, the 8 left over are dropped
    t = _trainer(tmp_path, cfg)
    sizes = [len(y) for _, y in t.epoch_batches()]
    assert sizes == [16, 16] and t.steps_per_epoch() == 2
    t_off = _trainer(tmp_path / "o", _cfg("official_trades", batch_size=16))
    assert [len(y) for _, y in t_off.epoch_batches()] == [16, 16, 8]
    t.train_set = type("N", (), {"__len__": lambda self: 50_000})()
    t.cfg.batch_size = 256
    assert t.steps_per_epoch() == 195


def test_adr_attack_runs_in_train_mode_and_moves_running_stats(tmp_path):
    for name, moves in (("adr", True), ("official_trades", False)):
        t = _trainer(tmp_path / name, _cfg(name))
        x, y = next(t.epoch_batches())
        before = _bn_stats(t.model)
        t.model.train()
        t.step.inner_max(x, y)
        changed = any(not torch.equal(before[k], v) for k, v in _bn_stats(t.model).items())
        assert changed == moves, name


def test_loss_forwards_adr_one_concatenated_official_clean_adv_clean(tmp_path):
    for name, expected in (("adr", ["cat"]), ("official_trades", ["clean", "adv", "clean"])):
        t = _trainer(tmp_path / name, _cfg(name))
        x, y = next(t.epoch_batches())
        x_adv = x + 0.01
        seen = []

        def which(_m, inp, _out):
            z = inp[0]
            seen.append("cat" if len(z) == 2 * len(x) else "clean" if torch.equal(z, x) else "adv")

        hook = t.model.register_forward_hook(which)
        t.model.train()
        parts = t.step.loss_fn(x, x_adv, y)(t.model)
        hook.remove()
        assert seen == expected, name
        assert parts.logits_clean.shape == parts.logits_adv.shape == (len(x), 10)


def test_adr_model_normalises_its_input_and_trades_eval_rebuilds_it(tmp_path):
    cfg = _cfg("adr")
    t = _trainer(tmp_path, cfg)
    mean, std = DATASET_STATS["synthetic"]
    plain = build_model(num_classes=10, width=4)
    plain.load_state_dict(t.model.state_dict())
    t.model.eval(), plain.eval()
    x = torch.rand(3, 3, 16, 16)
    z = (x - torch.tensor(mean).view(1, 3, 1, 1)) / torch.tensor(std).view(1, 3, 1, 1)
    torch.testing.assert_close(t.model(x), plain(z))
    # the checkpoint alone rebuilds the same model (normalisation included) and records the convention
    t.state.epoch = 1
    save_checkpoint(tmp_path / "m.pt", t.checkpoints.model_payload("best", t.state.epoch, {}))
    model, ckpt, splits = load_checkpoint_with_data(tmp_path / "m.pt", "cpu")  # what trades-eval does
    assert ckpt["model_meta"]["convention"] == "adr" and ckpt["config"]["convention"] == "adr"
    assert model.normalize and splits.num_classes == 10
    torch.testing.assert_close(model(x), t.model(x))
    off = _trainer(tmp_path / "o", _cfg("official_trades"))
    assert off.checkpoints.meta["normalize"] is None and not off.model.normalize


def test_tpgd_start_distribution():
    x = torch.full((4000, 3, 2, 2), 0.5)
    model = nn.Sequential(nn.Flatten(), nn.Linear(12, 3))
    for dist, lo in (("uniform", 0.0), ("normal", None)):
        res = attacks.tpgd(model, x, eps=0.1, step_size=0.01, steps=0, init_std=0.001, init_dist=dist,
                           generator=torch.Generator().manual_seed(0))
        noise = (res.x_adv - x) / 0.001
        if dist == "uniform":  # U[0, 1): mean 1/2, never negative
            assert float(noise.min()) >= lo and float(noise.max()) < 1.0 + 1e-3
            assert abs(float(noise.mean()) - 0.5) < 0.01
        else:  # N(0, 1)
            assert float(noise.min()) < -2 and abs(float(noise.mean())) < 0.03
    assert _cfg("adr").attack.init_dist == "uniform" and _cfg("official_trades").attack.init_dist == "normal"


def test_validation_pgd_starts_uniformly_in_the_eps_ball(tmp_path, monkeypatch):
    import trades_instability.train.validation as validation

    starts = []
    real = attacks.pgd

    def spy(model, x, y, **kw):  # record the start point (0 steps, a copy of the generator), then attack
        g = torch.Generator().set_state(kw["generator"].get_state())
        starts.append((x, real(model, x, y, **{**kw, "steps": 0, "generator": g}).x_adv, kw["random_start"]))
        return real(model, x, y, **kw)

    monkeypatch.setattr(validation, "pgd", spy)
    cfg = _cfg("adr")
    t = _trainer(tmp_path, cfg)
    validate(t.model, t.val_set, cfg, t.device, torch.Generator().manual_seed(0), t.autocast)
    x, x0, random_start = starts[0]
    assert random_start
    d, eps = x0 - x, cfg.attack.eps
    assert float(d.abs().max()) <= eps + 1e-6
    interior = (x > eps) & (x < 1 - eps)  # away from the [0, 1] clamp: U[-eps, eps], mean |d| = eps / 2
    assert abs(float(d[interior].abs().mean()) - eps / 2) < eps / 10


def test_adr_awp_is_the_two_step_form_with_running_stats_frozen_in_step_two(tmp_path):
    torch.manual_seed(0)
    model = build_model(num_classes=4, width=2)
    x, x_adv, y = torch.rand(8, 3, 8, 8), torch.rand(8, 3, 8, 8), torch.randint(0, 4, (8,))
    gamma = 0.01

    def loss_fn(m):
        return trades_parts(m, x, x_adv, y, 3.0, joint_forward=True)

    # by hand: step 1 gradient at w (running stats move), w + gamma ||p|| g/||g|| for every parameter,
    # step 2 gradient there with the running stats held, then back to w
    ref = copy.deepcopy(model).train()
    w0 = [p.detach().clone() for p in ref.parameters()]
    g1 = torch.autograd.grad(loss_fn(ref).loss, list(ref.parameters()))
    stats_after_step1 = _bn_stats(ref)
    with torch.no_grad():
        for p, g in zip(ref.parameters(), g1, strict=True):
            p.add_(gamma * p.norm() / g.norm() * g)
    with running_stats_frozen(ref):
        g2 = torch.autograd.grad(loss_fn(ref).loss, list(ref.parameters()))
    assert all(torch.equal(v, _bn_stats(ref)[k]) for k, v in stats_after_step1.items())

    awp = ADRAWP(model, gamma)
    awp.perturb(loss_fn)
    with awp.loss_context():
        loss_fn(model).loss.backward()
    awp.restore()
    for p, w, g in zip(model.parameters(), w0, g2, strict=True):
        torch.testing.assert_close(p.detach(), w)  # back at w for the optimiser step
        torch.testing.assert_close(p.grad, g)  # with the gradient taken at w + v
    for k, v in _bn_stats(model).items():
        torch.testing.assert_close(v, stats_after_step1[k])  # only step 1 moved the statistics


def test_each_awp_form_trains(tmp_path):
    for form in ("adr", "official"):
        cfg = _cfg("adr", awp={"enabled": True, "form": form})
        t = _trainer(tmp_path / form, cfg)
        w = [p.detach().clone() for p in t.model.parameters()]
        t.step(*next(t.epoch_batches()), batch=0, state=t.state, stats=t.step.start_epoch(1))
        assert any(not torch.equal(a, b) for a, b in zip(w, t.model.parameters(), strict=True))
        assert all(torch.isfinite(p).all() for p in t.model.parameters())
