"""Evaluation: classification (Unstable vs regular), FOSC/SGCS in the JSON, suites, CLI errors, divergence."""

from __future__ import annotations

import json

import pytest
import torch
from torch import nn

from trades_instability.config.run import RunConfig, SyntheticConfig, from_dict
from trades_instability.core import attacks, metrics, models
from trades_instability.data import datasets as data
from trades_instability.data.splits import load_splits
from trades_instability.evaluate import aa_batching, suite_config
from trades_instability.evaluate import cli as eval_cli
from trades_instability.evaluate import suite as evaluation
from trades_instability.evaluate.pgd_eval import pgd_eval
from trades_instability.rundir.checkpoint import load_model, save_checkpoint

EPS = 8 / 255
K = 10



# ------------------------------------------------------------------ synthetic task and models


def _templates() -> torch.Tensor:
    return torch.randn(K, 3, 8, 8, generator=torch.Generator().manual_seed(0)).sign()


def _template_data(n: int, seed: int):
    """x = 0.5 + a * T_y + small noise with a in [0.3, 0.8] eps: a model matching the templates is
    100% clean-accurate, random noise in the eps-ball never flips it, a worst-case perturbation does."""
    g = torch.Generator().manual_seed(seed)
    y = torch.arange(n) % K
    a = EPS * (0.3 + 0.5 * torch.rand(n, 1, 1, 1, generator=g))
    x = (0.5 + a * _templates()[y] + 0.005 * torch.randn(n, 3, 8, 8, generator=g)).clamp(0, 1)
    return x, y


class MaskedTemplateModel(nn.Module):
    """Template matching on 8-bit-quantised input. torch.round has a zero gradient, so every
    gradient-based attack sees a flat loss (PGD-10 only gets its random start) while the decision
    itself is as breakable as without quantisation: a gradient-masked model."""

    def __init__(self):
        super().__init__()
        self.register_buffer("t", _templates().flatten(1))

    def forward(self, x):
        q = torch.round(x * 255) / 255
        return 2.0 * (q - 0.5).flatten(1) @ self.t.T


SUITE = dict(attacks=["clean", "pgd10", "square"], batch_size=32, square_queries=1000)


def test_gradient_masked_model_is_unstable():
    x, y = _template_data(32, seed=1)
    res = evaluation.evaluate_model(MaskedTemplateModel(), x, y, suite_config.SuiteConfig(**SUITE), device="cpu")
    assert res["status"] == "ok" and res["clean_acc"] == 1.0
    assert res["pgd10_acc"] >= 0.9 and res["square_acc"] <= 0.6, res
    assert res["gap_pgd_square"] == pytest.approx(res["pgd10_acc"] - res["square_acc"])
    assert res["unstable"] is True
    assert res["fosc"] == 0.0 and res["sgcs"] == 0.0  # zero input gradient everywhere
    assert res["gradalign"] == 0.0  # no direction at either point: cosine 0 (core/metrics.gradalign)


AA_SMALL = dict(apgd_iters=5, fab_iters=5, n_target_classes=3, square_queries=1000)


def test_pyautoattack_flags_gradient_masking_in_the_eval_result():
    """pyautoattack's own checks, recorded by name: on the gradient-masked model APGD sees zero gradients, and
    Square beats the white-box attacks both in the ensemble (pyautoattack's check) and run one by one (the same
    check, called by autoattack_eval.run_individual); each flag's first message is logged once."""
    x, y = _template_data(32, seed=1)
    suite = suite_config.SuiteConfig(attacks=["clean", "autoattack", "autoattack_individual"], batch_size=32,
                                     **AA_SMALL)
    logged = []
    res = evaluation.evaluate_model(MaskedTemplateModel(), x, y, suite, device="cpu", log=logged.append)
    assert res["square_acc"] < res["apgd_ce_acc"] - 0.002, res  # the situation the check is about
    flags = res["autoattack_flags"]
    assert flags["square_beats_whitebox"] == 2, flags  # the ensemble's check + the individual runs' check
    assert flags["zero_gradients"] >= 1 and "randomized" not in flags and "other" not in flags
    assert "zero gradient" in res["autoattack_flag_messages"]["zero_gradients"]
    assert sum("pyautoattack flag square_beats_whitebox" in m for m in logged) == 1


def test_pyautoattack_flags_are_empty_when_nothing_is_raised_and_null_without_autoattack():
    x, y = _template_data(16, seed=1)
    model = nn.Sequential(nn.Flatten(), nn.Linear(3 * 64, K)).eval()
    with torch.no_grad():
        model[1].weight.copy_(0.05 * _templates().flatten(1))
        model[1].bias.zero_()
    suite = suite_config.SuiteConfig(attacks=["clean", "autoattack"], batch_size=16, **AA_SMALL)
    res = evaluation.evaluate_model(model, x, y, suite, device="cpu", log=lambda m: None)
    assert res["autoattack_flags"] == {} and res["autoattack_flag_messages"] == {}
    res = evaluation.evaluate_model(model, x, y, suite_config.SuiteConfig(attacks=["clean", "pgd10"]), device="cpu")
    assert res["autoattack_flags"] is None


def test_ordinary_trained_model_is_not_unstable():
    xt, yt = _template_data(512, seed=2)
    torch.manual_seed(0)
    net = nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), nn.ReLU(), nn.Flatten(), nn.Linear(8 * 64, K))
    opt = torch.optim.Adam(net.parameters(), lr=1e-2)
    for _ in range(5):  # a few epochs, well under a second
        for i in range(0, 512, 64):
            opt.zero_grad()
            nn.functional.cross_entropy(net(xt[i : i + 64]), yt[i : i + 64]).backward()
            opt.step()
    x, y = _template_data(32, seed=1)
    res = evaluation.evaluate_model(net.eval(), x, y, suite_config.SuiteConfig(**SUITE), device="cpu")
    assert res["clean_acc"] >= 0.9
    assert res["unstable"] is False, res
    assert res["fosc"] > 0 and 0 < res["sgcs"] <= 1


def test_classify_rule():
    assert evaluation.classify(0.30, 0.22, 0.08) is True
    assert evaluation.classify(0.30, 0.23, 0.08) is False
    assert evaluation.classify(0.30, None, 0.08) is None


# ------------------------------------------------------------------ suites


def test_builtin_suites_and_yaml_override(tmp_path):
    s = suite_config.builtin_suites()
    assert s["cheap"].attacks == ["clean", "pgd10", "square"]
    assert s["aa"].attacks == ["clean", "pgd10", "square", "autoattack"]
    assert s["full"].attacks == ["clean", "pgd10", "autoattack", "autoattack_individual"]
    assert s["full"].n_examples is None and s["full"].square_queries == 5000 and s["full"].eps == pytest.approx(8 / 255)
    f = tmp_path / "suites.yaml"
    f.write_text("cheap: {n_examples: 100, square_queries: 50, landscape: {grid_size: 5}}\n"
                 "mine: {attacks: [clean], eps: 4/255}\n")
    s = suite_config.load_suites(f)
    assert s["cheap"].n_examples == 100 and s["cheap"].attacks == ["clean", "pgd10", "square"]
    assert s["cheap"].landscape.grid_size == 5 and s["cheap"].landscape.extent == 0.1
    assert s["mine"].eps == pytest.approx(4 / 255)
    f.write_text("cheap: {attacks: [clean, cw]}\n")
    with pytest.raises(suite_config.SuiteError, match="cw"):
        suite_config.load_suites(f)
    f.write_text("cheap: {n_exampels: 3}\n")
    with pytest.raises(suite_config.SuiteError, match="n_exampels"):
        suite_config.load_suites(f)


# ------------------------------------------------------------------ CLI


def _run_config() -> RunConfig:
    synthetic = SyntheticConfig(num_classes=K, train_size=16, test_size=16, image_size=16)
    return RunConfig(dataset="synthetic", width=4, synthetic=synthetic)


def _checkpoint(path, *, width=4, nan=False):
    torch.manual_seed(0)
    m = models.build_model("resnet18", num_classes=K, width=width)
    if nan:
        with torch.no_grad():
            m.linear.weight.fill_(float("nan"))
    save_checkpoint(path, {
        "model": m.state_dict(), "model_meta": {"arch": "resnet18", "width": 4, "num_classes": K, "image_size": 16},
        "config": _run_config().to_dict(), "epoch": 3, "kind": "best", "val": {},
    })
    return path


def _suites_file(tmp_path, attacks="[clean, pgd10]"):
    f = tmp_path / "suites.yaml"
    f.write_text(f"tiny: {{attacks: {attacks}, n_examples: 6, batch_size: 4, seed: 3, "
                 "landscape: {grid_size: 3, n_images: 2}}\n")
    return f


def test_cli_json_fosc_sgcs_match_independent_recomputation(tmp_path, capsys):
    ckpt = _checkpoint(tmp_path / "best.pt")
    out = tmp_path / "eval_tiny.json"
    land = tmp_path / "landscape.npz"
    rc = eval_cli.main(["--checkpoint", str(ckpt), "--suite", "tiny", "--suites", str(_suites_file(tmp_path)),
                        "--out", str(out), "--device", "cpu", "--landscape-out", str(land)])
    assert rc == 0, capsys.readouterr().err
    doc = json.loads(out.read_text())
    for key in ("clean_acc", "pgd10_acc", "square_acc", "autoattack_acc", "apgd_ce_acc", "apgd_t_acc", "fab_t_acc",
                "fosc", "sgcs", "gradalign", "gap_pgd_square", "gap_pgd_aa", "unstable", "unstable_threshold",
                "n_examples",
                "attack_seed", "suite", "checkpoint", "epoch", "versions", "device", "wall_time_s", "examples_per_s",
                "status"):
        assert key in doc, key
    assert doc["status"] == "ok" and doc["n_examples"] == 6 and doc["attack_seed"] == 3 and doc["epoch"] == 3
    assert doc["square_acc"] is None and doc["unstable"] is None and doc["autoattack_acc"] is None
    assert doc["versions"]["pyautoattack"] and doc["versions"]["torch"]
    assert land.is_file()

    # independent recomputation: same first 6 test images, same generator, same batches of 4
    model, _ = load_model(ckpt, "cpu")
    test = load_splits(from_dict(_run_config().to_dict())).test
    x, y = data.to_float(test.images[:6]), test.labels[:6]
    gen = torch.Generator().manual_seed(3)
    fosc, sgcs, correct = [], [], []
    for s in range(0, 6, 4):
        r = attacks.pgd(model, x[s : s + 4], y[s : s + 4], eps=EPS, step_size=2 / 255, steps=10, record_grads=True,
                        generator=gen)
        fosc.append(metrics.fosc(model, x[s : s + 4], r.x_adv, y[s : s + 4], EPS))
        sgcs.append(metrics.sgcs(r.step_grads))
        with torch.no_grad():
            correct.append(model(r.x_adv).argmax(1) == y[s : s + 4])
    assert doc["fosc"] == pytest.approx(float(torch.cat(fosc).double().mean()), rel=1e-5, abs=1e-9)
    assert doc["sgcs"] == pytest.approx(float(torch.cat(sgcs).double().mean()), rel=1e-6)
    assert doc["pgd10_acc"] == pytest.approx(float(torch.cat(correct).float().mean()))


def test_cli_diverged_model_writes_status(tmp_path, capsys):
    ckpt = _checkpoint(tmp_path / "nan.pt", nan=True)
    out = tmp_path / "e.json"
    rc = eval_cli.main(["--checkpoint", str(ckpt), "--suite", "tiny", "--suites", str(_suites_file(tmp_path)),
                        "--out", str(out), "--device", "cpu"])
    assert rc == 0
    doc = json.loads(out.read_text())
    assert doc["status"] == "diverged" and doc["clean_acc"] is None and doc["pgd10_acc"] is None
    assert doc["unstable"] is None


def _bad(tmp_path, capsys, args, match):
    out = tmp_path / "never.json"
    rc = eval_cli.main([*args, "--out", str(out), "--device", "cpu"])
    err = capsys.readouterr().err.strip()
    assert rc == 2
    assert len(err.splitlines()) == 1 and match in err, err
    assert not out.exists()


def test_cli_bad_arguments(tmp_path, capsys):
    good = _checkpoint(tmp_path / "good.pt")
    _bad(tmp_path, capsys, ["--checkpoint", str(tmp_path / "missing.pt"), "--suite", "cheap"], "does not exist")
    other = _checkpoint(tmp_path / "other.pt", width=8)  # weights of width 8, metadata says 4
    _bad(tmp_path, capsys, ["--checkpoint", str(other), "--suite", "cheap"], "does not match the architecture")
    trunc = tmp_path / "trunc.pt"
    trunc.write_bytes(good.read_bytes()[:2000])
    _bad(tmp_path, capsys, ["--checkpoint", str(trunc), "--suite", "cheap"], "truncated")
    _bad(tmp_path, capsys, ["--checkpoint", str(good), "--suite", "nosuch"], "unknown suite 'nosuch'")
    bad_suites = _suites_file(tmp_path, attacks="[clean, deepfool]")
    _bad(tmp_path, capsys, ["--checkpoint", str(good), "--suite", "tiny", "--suites", str(bad_suites)], "deepfool")
    _bad(tmp_path, capsys, ["--checkpoint", str(good)], "required")


def _tight_memory(monkeypatch, limit):
    """Make pyautoattack calls fail with CUDA out-of-memory above ``limit`` examples per batch (no GPU here)."""
    from trades_instability.evaluate import autoattack as autoattack_eval

    seen = []
    real = autoattack_eval.run_individual

    def tight(*, batch_size, **kw):
        seen.append(batch_size)
        if batch_size > limit:
            raise torch.cuda.OutOfMemoryError("CUDA out of memory (simulated)")
        return real(batch_size=batch_size, **kw)

    monkeypatch.setattr(autoattack_eval, "run_individual", tight)
    return seen


def _square_suite(**over):
    return suite_config.suite_from_dict("s", {"attacks": ["clean", "square"], "square_queries": 5,
                                              "n_target_classes": 3, **over})


def _tiny_model_and_data():
    torch.manual_seed(0)
    model = models.build_model("resnet18", num_classes=4, width=2).eval()
    return model, torch.rand(20, 3, 8, 8), torch.randint(0, 4, (20,))


def test_autoattack_batch_null_halves_on_out_of_memory_and_says_so(monkeypatch):
    """aa_batch_size null = the largest batch that fits: a CUDA out-of-memory error halves the batch, the call
    is repeated, a WARNING line is logged, and the result records the batch that worked and the halvings."""
    seen = _tight_memory(monkeypatch, 8)
    model, x, y = _tiny_model_and_data()
    logged = []
    res = evaluation.evaluate_model(model, x, y, _square_suite(aa_batch_size=None), num_classes=4, log=logged.append)
    assert seen == [20, 10, 5]  # starts at min(batch_size 500, n) on the CPU, halves until it fits
    assert res["aa_batch_size"] == 5 and res["square_acc"] is not None
    assert res["aa_batch_pinned"] is False and res["aa_batch_halvings"] == 2
    assert len(logged) == 2 and all(m.startswith("WARNING: AutoAttack out of GPU memory at batch") for m in logged)
    assert aa_batching.aa_start_batch(suite_config.suite_from_dict("t", {"batch_size": 7, "aa_batch_size": None}),
                                      100, torch.device("cpu")) == 7
    assert aa_batching.aa_start_batch(suite_config.suite_from_dict("t", {"aa_batch_size": None}), 100000,
                                      torch.device("cuda")) == aa_batching.AA_AUTO_START


def test_attack_starts_come_from_the_generator_device_not_the_input_device(monkeypatch):
    """A CPU generator gives the same PGD start whatever device x is on: the draw happens on the CPU and
    is moved (attacks.start_noise). On a CPU-only machine both sides are CPU; tests/test_gpu.py checks CUDA."""
    x = torch.rand(4, 3, 8, 8, generator=torch.Generator().manual_seed(1))
    model = nn.Sequential(nn.Flatten(), nn.Linear(3 * 64, 3))
    start = attacks.pgd(model, x, torch.zeros(4, dtype=torch.long), eps=EPS, step_size=EPS / 4, steps=0,
                        generator=torch.Generator().manual_seed(7)).x_adv
    u = torch.rand(x.shape, generator=torch.Generator().manual_seed(7))
    assert torch.equal(start, torch.clamp(x + (2 * u - 1) * EPS, 0, 1))
    assert torch.equal(attacks.start_noise(x, torch.Generator().manual_seed(3), "normal"),
                       torch.randn(x.shape, generator=torch.Generator().manual_seed(3)))
    with pytest.raises(ValueError, match="init_dist"):
        attacks.start_noise(x, None, "gaussian")
    # evaluation's PGD-10 draws from a CPU generator even for inputs on another device
    seen = []
    real = attacks.pgd
    monkeypatch.setattr(attacks, "pgd",
                        lambda *a, generator, **k: seen.append(generator.device) or real(*a, generator=generator, **k))
    pgd_eval(model, x, torch.zeros(4, dtype=torch.long), eps=EPS, step_size=EPS / 4, steps=2, batch_size=2, seed=0)
    assert seen == [torch.device("cpu")] * 2


def test_evaluation_runs_with_cudnn_benchmark_off_and_restores_it():
    seen = []

    class Probe(nn.Module):
        def __init__(self):
            super().__init__()
            self.lin = nn.Linear(3 * 8 * 8, 3)

        def forward(self, x):
            seen.append(torch.backends.cudnn.benchmark)
            return self.lin(x.flatten(1))

    old = torch.backends.cudnn.benchmark
    torch.backends.cudnn.benchmark = True
    try:
        suite = suite_config.SuiteConfig(attacks=["clean"], batch_size=4)
        evaluation.evaluate_model(Probe(), torch.rand(4, 3, 8, 8), torch.zeros(4, dtype=torch.long), suite)
        assert seen and not any(seen)
        assert torch.backends.cudnn.benchmark is True
    finally:
        torch.backends.cudnn.benchmark = old


def test_autoattack_pinned_batch_never_halves(monkeypatch):
    """A pinned aa_batch_size (the default, 500; config.yaml's reported suites) is used as it is; out of memory
    stops with AABatchOutOfMemory naming the batch and the fix, instead of numbers from another batch."""
    assert suite_config.SuiteConfig().aa_batch_size == 500
    assert all(s.aa_batch_size == 500 for s in suite_config.builtin_suites().values())
    model, x, y = _tiny_model_and_data()
    seen = _tight_memory(monkeypatch, 100)
    res = evaluation.evaluate_model(model, x, y, _square_suite(aa_batch_size=16), num_classes=4, log=print)
    assert seen == [16] and res["aa_batch_size"] == 16 and res["aa_batch_pinned"] is True
    assert res["aa_batch_halvings"] == 0
    seen = _tight_memory(monkeypatch, 8)
    with pytest.raises(aa_batching.AABatchOutOfMemory, match="pinned aa_batch_size 16") as e:
        evaluation.evaluate_model(model, x, y, _square_suite(aa_batch_size=16), num_classes=4)
    assert seen == [16] and "\n" not in str(e.value) and "jobs_per_gpu" in str(e.value)


def test_cli_pinned_batch_out_of_memory_is_one_line_exit_1(tmp_path, capsys, monkeypatch):
    _tight_memory(monkeypatch, 2)
    ckpt = _checkpoint(tmp_path / "best.pt")
    suites = tmp_path / "suites.yaml"
    suites.write_text("sq: {attacks: [clean, square], n_examples: 6, square_queries: 5, aa_batch_size: 4}\n")
    out = tmp_path / "e.json"
    rc = eval_cli.main(["--checkpoint", str(ckpt), "--suite", "sq", "--suites", str(suites), "--out", str(out),
                        "--device", "cpu"])
    err = capsys.readouterr().err.strip()
    assert rc == 1 and len(err.splitlines()) == 1 and "pinned aa_batch_size 4" in err, err
    assert not out.exists()


def test_eval_json_records_the_autoattack_batch(tmp_path, capsys):
    ckpt = _checkpoint(tmp_path / "best.pt")
    suites = tmp_path / "suites.yaml"
    suites.write_text("sq: {attacks: [clean, square], n_examples: 6, square_queries: 5, aa_batch_size: 4}\n")
    out = tmp_path / "e.json"
    assert eval_cli.main(["--checkpoint", str(ckpt), "--suite", "sq", "--suites", str(suites), "--out", str(out),
                          "--device", "cpu"]) == 0
    doc = json.loads(out.read_text())
    assert (doc["aa_batch_size"], doc["aa_batch_pinned"], doc["aa_batch_halvings"]) == (4, True, 0)
    assert doc["suite_config"]["aa_batch_size"] == 4
