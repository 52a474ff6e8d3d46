"""The AutoAttack wrapper reproduces pyautoattack called directly: each component, and the ensemble's
own number as ``autoattack_acc`` in every suite; ``worst_case_acc`` is the AND over every attack run."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from trades_instability.evaluate import autoattack as autoattack_eval
from trades_instability.evaluate import suite as evaluation
from trades_instability.evaluate import suite_config
from trades_instability.evaluate.autoattack import AASettings

EPS = 8 / 255
SMALL = dict(apgd_iters=5, fab_iters=5, n_target_classes=2, square_queries=30)



def _tiny_model_and_data(n: int = 12, num_classes: int = 10):
    """A small conv net fitted in a second to easy 8x8 data: most examples clean-correct, some
    breakable at eps 8/255 (so every attack has work to do)."""
    g = torch.Generator().manual_seed(0)
    templates = torch.randn(num_classes, 3, 8, 8, generator=g).sign()
    y = torch.arange(4 * n) % num_classes
    x = (0.5 + 0.05 * templates[y] + 0.03 * torch.randn(4 * n, 3, 8, 8, generator=g)).clamp(0, 1)
    torch.manual_seed(0)
    model = nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), nn.ReLU(), nn.Flatten(), nn.Linear(8 * 64, num_classes))
    opt = torch.optim.Adam(model.parameters(), lr=1e-2)
    for _ in range(60):
        opt.zero_grad()
        nn.functional.cross_entropy(model(x), y).backward()
        opt.step()
    return model.eval(), x[:n], y[:n]


def _direct(model, x, y, attacks, seed=0, ensemble=False):
    """pyautoattack called by hand with the same reduced budget (independent of the wrapper)."""
    from pyautoattack import AutoAttack

    aa = AutoAttack(model, attacks=list(attacks), device="cpu", eps=EPS, norm="Linf", seed=seed, version="custom")
    aa.verbose = False
    aa.apgd.n_restarts = 1
    aa.fab.n_restarts = 1
    aa.apgd_targeted.n_restarts = 1
    for apgd in (aa.apgd, aa.apgd_targeted):
        apgd.n_iter = apgd.n_iter_orig = SMALL["apgd_iters"]
        apgd.n_iter_2 = max(int(0.22 * apgd.n_iter), 1)
        apgd.n_iter_min = max(int(0.06 * apgd.n_iter), 1)
        apgd.size_decr = max(int(0.03 * apgd.n_iter), 1)
    aa.apgd_targeted.n_target_classes = SMALL["n_target_classes"]
    aa.fab.n_iter = SMALL["fab_iters"]
    aa.fab.n_target_classes = SMALL["n_target_classes"]
    aa.square.n_queries = SMALL["square_queries"]
    if ensemble:
        _, y_adv = aa.run_standard_evaluation(x, y, batch_size=8)
        return {"ensemble": float((y_adv == y).float().mean())}
    adv = aa.run_standard_evaluation_individual(x, y, batch_size=8)
    return {k: float((y_adv == y).float().mean()) for k, (_, y_adv) in adv.items()}


@pytest.fixture(scope="module")
def setup():
    return _tiny_model_and_data()


def test_per_attack_accuracies_match_pyautoattack_and_ensemble_is_never_above(setup):
    model, x, y = setup
    suite = suite_config.SuiteConfig(attacks=["clean", "autoattack", "autoattack_individual"], batch_size=8, **SMALL)
    res = evaluation.evaluate_model(model, x, y, suite, device="cpu", num_classes=10)
    direct = _direct(model, x, y, autoattack_eval.STANDARD_ATTACKS)
    for attack, key in evaluation.ATTACK_KEYS.items():
        assert res[key] == pytest.approx(direct[attack], abs=0), attack
    assert res["clean_acc"] > 0.5
    for key in evaluation.ATTACK_KEYS.values():
        assert res["worst_case_acc"] <= res[key]
    assert res["worst_case_acc"] <= res["autoattack_acc"]
    assert res["autoattack_version"] == "custom"
    assert res["pgd10_acc"] is None and res["fosc"] is None and res["unstable"] is None  # no PGD-10 in this suite


def test_autoattack_acc_is_the_ensembles_own_number_in_every_suite(setup):
    model, x, y = setup
    direct = _direct(model, x, y, autoattack_eval.STANDARD_ATTACKS, ensemble=True)["ensemble"]
    for attacks in (["clean", "pgd10", "square", "autoattack"],  # suite aa
                    ["clean", "pgd10", "autoattack", "autoattack_individual"]):  # suite full
        suite = suite_config.SuiteConfig(attacks=attacks, batch_size=8, **SMALL)
        res = evaluation.evaluate_model(model, x, y, suite, device="cpu", num_classes=10)
        assert res["autoattack_acc"] == direct, attacks
        assert res["gap_pgd_aa"] == pytest.approx(res["pgd10_acc"] - direct)
        assert res["worst_case_acc"] <= min(res["pgd10_acc"], direct, res["square_acc"])


def test_square_alone_matches_pyautoattack(setup):
    model, x, y = setup
    suite = suite_config.SuiteConfig(attacks=["square"], batch_size=8, **SMALL)
    res = evaluation.evaluate_model(model, x, y, suite, device="cpu", num_classes=10)
    assert res["square_acc"] == _direct(model, x, y, ["square"])["square"]
    assert res["unstable"] is None  # no PGD-10


def test_standard_settings_use_standard_version(setup):
    model, _, _ = setup
    aa, version = autoattack_eval.make_autoattack(model, settings=AASettings(), num_classes=10)
    assert version == "standard"
    assert aa.attacks_to_run == ["apgd-ce", "apgd-t", "fab-t", "square"]
    assert aa.square.n_queries == 5000 and aa.apgd.n_restarts == 1 and aa.apgd_targeted.n_target_classes == 9
    aa, version = autoattack_eval.make_autoattack(model, settings=AASettings(**SMALL), num_classes=10)
    assert version == "custom"
    assert aa.apgd.n_iter == 5 and aa.apgd.n_restarts == 1 and aa.fab.n_iter == 5 and aa.square.n_queries == 30
    # fewer classes than the standard 9 targets + 1: capped, hence custom
    aa, version = autoattack_eval.make_autoattack(model, settings=AASettings(), num_classes=5)
    assert version == "custom" and aa.apgd_targeted.n_target_classes == 4 and aa.fab.n_target_classes == 4
    with pytest.raises(ValueError, match="unknown AutoAttack"):
        autoattack_eval.make_autoattack(model, attacks=["pgd"], num_classes=10)


def test_paper_columns_cover_every_component():
    assert set(evaluation.PAPER_COLUMNS) == set(autoattack_eval.STANDARD_ATTACKS) == set(evaluation.ATTACK_KEYS)
    assert evaluation.PAPER_COLUMNS["apgd-t"] == "APGD-DLR" and evaluation.PAPER_COLUMNS["fab-t"] == "FAB"


def test_randomized_model_is_flagged_by_pyautoattack_check():
    """A model whose outputs change between forwards (dropout left on) raises pyautoattack's randomized-defense
    check, recorded by collect_flags under its name."""
    model, x, y = _tiny_model_and_data()
    noisy = nn.Sequential(nn.Dropout(0.5), model).train()
    with autoattack_eval.collect_flags() as flags:
        autoattack_eval.run_ensemble(noisy, x, y, batch_size=8, attacks=["apgd-ce"],
                                     settings=AASettings(seed=0, **SMALL), num_classes=10)
    assert flags.counts.get("randomized") == 1 and "randomized defense" in flags.messages["randomized"]
    assert autoattack_eval.flag_name("something new from a later pyautoattack") == "other"


def test_pyautoattack_state_path_cannot_resume(tmp_path):
    """Why no state_path is passed (module docstring): pyautoattack 0.2.0 writes a state it cannot read back.
    When an installed version resumes, this test fails: wire state_path into run_ensemble then."""
    from pathlib import Path

    from pyautoattack import AutoAttack

    model, x, y = _tiny_model_and_data()
    state = Path(tmp_path) / "aa_state.json"
    for attempt in range(2):
        aa = AutoAttack(model, attacks=["apgd-ce"], device="cpu", eps=EPS, norm="Linf", seed=0, version="custom")
        aa.verbose = False
        aa.apgd.n_iter = 2
        if attempt == 0:
            aa.run_standard_evaluation(x, y, batch_size=8, state_path=state)
            assert state.is_file()
        else:
            with pytest.raises(ValueError, match="different set of attacks"):
                aa.run_standard_evaluation(x, y, batch_size=8, state_path=state)
