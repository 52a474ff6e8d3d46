"""fp32 vs bf16 agreement: the fp32 column is exactly what the evaluation reports, the bf16 column really
runs in bf16, the yardsticks are the closed-form standard errors, and the bench prints it for a checkpoint."""

from __future__ import annotations

import math

import pytest
import torch

from trades_instability.core import models
from trades_instability.evaluate import suite as evaluation
from trades_instability.evaluate import suite_config
from trades_instability.tools import bench, precision_check
from trades_instability.train.loop import Trainer

SUITE = dict(attacks=["clean", "pgd10", "square"], batch_size=16, square_queries=30, n_target_classes=3)


def _model_and_data(n: int = 24):
    torch.manual_seed(0)
    model = models.build_model("resnet18", num_classes=4, width=2).eval()
    g = torch.Generator().manual_seed(1)
    return model, torch.rand(n, 3, 16, 16, generator=g), torch.randint(0, 4, (n,), generator=g)


def test_fp32_column_is_what_the_evaluation_reports_and_flips_bound_the_difference():
    model, x, y = _model_and_data()
    suite = suite_config.suite_from_dict("s", SUITE)
    reported = evaluation.evaluate_model(model, x, y, suite, num_classes=4)
    rows = {r.metric: r for r in precision_check.compare(model, x, y, suite, device=torch.device("cpu"), num_classes=4)}
    assert set(rows) == {"clean_acc", "pgd10_acc", "square_acc", "fosc", "sgcs"}
    for key, r in rows.items():
        assert r.fp32 == pytest.approx(reported[key], abs=1e-12), key
        assert math.isfinite(r.bf16) and math.isfinite(r.fp32_other_seed) and r.se >= 0
    n = len(y)
    for key in ("clean_acc", "pgd10_acc", "square_acc"):
        r = rows[key]
        assert 0 <= r.bf16 <= 1
        # each example whose flag differs moves the mean by exactly 1/n, so |diff| * n <= changed, same parity
        moved = round(abs(r.diff) * n)
        assert moved <= r.changed and (r.changed - moved) % 2 == 0
    assert rows["fosc"].changed is None and rows["sgcs"].changed is None
    # the clean pass has no randomness: another attack seed cannot move it
    assert rows["clean_acc"].seed_diff == 0


def test_bf16_wrapper_runs_the_model_in_bf16_and_returns_fp32_logits_and_input_gradients():
    model, x, _ = _model_and_data(4)
    seen = []
    model.conv1.register_forward_hook(lambda m, i, o: seen.append(o.dtype))
    wrapped = precision_check.BF16Autocast(model)
    xg = x.clone().requires_grad_(True)
    logits = wrapped(xg)
    assert seen == [torch.bfloat16] and logits.dtype == torch.float32
    (g,) = torch.autograd.grad(logits.logsumexp(1).sum(), xg)
    assert g.dtype == torch.float32 and torch.isfinite(g).all()
    # bf16 keeps 8 bits of mantissa: close to fp32, but not the same computation
    ref = model(x)
    assert torch.allclose(logits, ref, rtol=0.1, atol=0.1) and not torch.equal(logits.detach(), ref)


def test_standard_errors_and_verdict_are_the_closed_forms():
    flags = torch.tensor([True, True, True, False])
    assert precision_check._se(flags) == pytest.approx(math.sqrt(0.75 * 0.25 / 4))
    assert precision_check._se(torch.tensor([1.0, 2.0, 3.0, 4.0])) == pytest.approx(math.sqrt(5 / 3) / 2)
    # exact McNemar: 11 examples changed, all the same way -> 2 * 0.5**11; 3 one way and 1 the other -> 2 * 5/16
    fp = torch.zeros(40, dtype=torch.bool)
    up = fp.clone()
    up[:11] = True
    assert precision_check.mcnemar_p(fp, up) == pytest.approx(2 * 0.5**11)
    mixed = fp.clone()
    mixed[:3] = True
    fp_mixed = fp.clone()
    fp_mixed[3] = True
    assert precision_check.mcnemar_p(fp_mixed, mixed) == pytest.approx(2 * (1 + 4) / 16)
    assert precision_check.mcnemar_p(fp, fp) == 1.0
    # paired z: differences 1, 2, 3 -> z = 2 / (1 / sqrt 3), p = erfc(z / sqrt 2)
    assert precision_check.paired_z_p(torch.zeros(3), torch.tensor([1.0, 2.0, 3.0])) == pytest.approx(
        math.erfc(2 * math.sqrt(3) / math.sqrt(2)))
    assert precision_check.paired_z_p(torch.ones(3), torch.ones(3)) == 1.0
    # verdict: different only when systematic (p < 0.05) AND at least half a standard error
    A = precision_check.Agreement
    a = A("square_acc", fp32=0.56, bf16=0.582, fp32_other_seed=0.558, se=0.022, changed=11, p_value=0.001)
    assert not a.same and a.diff == pytest.approx(0.022) and a.seed_diff == pytest.approx(-0.002)
    assert A("pgd10_acc", 0.56, 0.60, 0.56, se=0.022, changed=40, p_value=0.2).same  # large but not systematic
    assert A("fosc", 0.0073, 0.0072, 0.0071, se=0.0003, changed=None, p_value=1e-9).same  # systematic but tiny
    assert precision_check.table_rows([a])[0][-2:] == ["0.001", "NO"]


@pytest.fixture(scope="module")
def trained_checkpoint(tmp_path_factory):
    from trades_instability.config.run import from_dict

    cfg = from_dict({"dataset": "synthetic", "synthetic": {"num_classes": 4, "train_size": 64, "test_size": 32,
                                                           "image_size": 16, "seed": 0},
                     "width": 2, "epochs": 1, "batch_size": 32, "val_batch_size": 32, "attack": {"steps": 2},
                     "device": "cpu"})
    out = tmp_path_factory.mktemp("run")
    Trainer(cfg, out, log=lambda m: None, progress=False).run()
    return out / "checkpoints" / "best.pt"


def test_bench_with_a_checkpoint_prints_the_agreement_table(trained_checkpoint, capsys):
    assert bench.main(["--tiny", "--threads", "1", "--checkpoint", str(trained_checkpoint), "--eval-n", "12"]) == 0
    out = capsys.readouterr().out
    print(out)  # the numbers, for the log; never asserted
    assert f"evaluation: checkpoint {trained_checkpoint} (epoch 1" in out
    lines = out.splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith("| metric"))
    table = [[c.strip() for c in line.strip("|").split("|")] for line in lines[start:start + 7]]
    assert table[0] == precision_check.HEADERS
    assert [r[0] for r in table[2:]] == ["clean_acc", "pgd10_acc", "square_acc", "fosc", "sgcs"]
    assert all(r[-1] in ("yes", "NO") for r in table[2:])


def test_bench_refuses_a_bad_checkpoint_before_timing_anything(tmp_path, capsys):
    bad = tmp_path / "best.pt"
    bad.write_bytes(b"not a checkpoint")
    assert bench.main(["--tiny", "--checkpoint", str(bad)]) == 2
    out, err = capsys.readouterr()
    assert "trades_instability bench" not in out and len(err.splitlines()) == 1
    assert str(bad) in err and "truncated or not a trades_instability checkpoint" in err
    assert bench.main(["--tiny", "--no-eval", "--checkpoint", str(bad)]) == 2
    assert "drop --no-eval or --checkpoint" in capsys.readouterr().err
