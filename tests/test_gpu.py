"""The CUDA code path: training (fp32, bf16, AWP, Modified, the fix), resume, checkpoints that load on a CPU,
and evaluation (PGD-10, Square, FOSC/SGCS, AutoAttack) agreeing with the CPU path. Skipped without a GPU.

Training is not compared across devices: TPGD steps along sign(gradient) from a start 0.001 away from x,
where the KL gradient is nearly zero, so round-off differences flip signs and runs drift apart."""

from __future__ import annotations

import csv
import json
import math

import pytest
import torch

from trades_instability.data import datasets as data
from trades_instability.evaluate import cli as eval_cli
from trades_instability.evaluate import suite as evaluation
from trades_instability.rundir.checkpoint import CheckpointError, load_model
from trades_instability.train.loop import Interrupted, Trainer, train

pytestmark = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a GPU")


def _rows(path):
    with open(path, newline="") as fh:
        return list(csv.DictReader(fh))


@pytest.mark.parametrize(
    "overrides",
    [{}, {"precision": "bf16"}, {"awp": {"enabled": True}}, {"method": "modified"},
     {"fix": {"enabled": True, "fosc_threshold": 1e-12, "noise_batches": 1}}],
    ids=["fp32", "bf16", "awp", "modified", "fix"],
)
def test_training_on_cuda_logs_finite_numbers_and_checkpoints_load_on_cpu(tmp_path, tiny_run_config, overrides):
    cfg = tiny_run_config(device="cuda", log_batch_metrics=True, **overrides)
    info = train(cfg, tmp_path, log=lambda m: None)
    assert info["status"] == "complete" and "cuda" in json.loads((tmp_path / "run.json").read_text())["device"].lower()
    for r in _rows(tmp_path / "epochs.csv"):
        for k in ("train_loss", "val_pgd_acc", "val_fosc", "val_sgcs", "w_grad_norm", "ce_norm", "kl_norm"):
            assert math.isfinite(float(r[k])), (k, r)
    model, _ = load_model(tmp_path / "checkpoints" / "best.pt", "cpu")
    assert next(model.parameters()).device.type == "cpu"
    assert model(torch.rand(2, 3, 16, 16)).shape == (2, 4)


def test_cuda_run_resumes_after_an_interruption(tmp_path, tiny_run_config):
    cfg = tiny_run_config(device="cuda", epochs=3, log_batch_metrics=True)
    with pytest.raises(Interrupted):
        Trainer(cfg, tmp_path, log=lambda m: None, stop_after_epoch=1).run()
    first = _rows(tmp_path / "epochs.csv")
    messages = []
    info = Trainer(cfg, tmp_path, log=messages.append).run()
    assert any("resumed from" in m for m in messages) and info["epochs_completed"] == 3
    rows = _rows(tmp_path / "epochs.csv")
    assert [int(r["epoch"]) for r in rows] == [1, 2, 3] and rows[0] == first[0]
    assert [int(r["epoch"]) for r in _rows(tmp_path / "batches.csv")] == [1] * 3 + [2] * 3 + [3] * 3


def test_cuda_evaluation_agrees_with_cpu(tmp_path, tiny_run_config):
    """PGD-10 and Square from fixed starts on a trained tiny model: flags may differ on a borderline
    example or two between devices (floating-point order), the accuracies must agree within that."""
    cfg = tiny_run_config(epochs=2, synthetic={"test_size": 64})
    train(cfg, tmp_path, log=lambda m: None)
    test = data.load_splits(cfg).test
    x, y = data.to_float(test.images), test.labels
    suite = evaluation.SuiteConfig(attacks=["clean", "pgd10", "square"], batch_size=32, square_queries=200)
    res = {}
    for dev in ("cpu", "cuda"):
        model, _ = load_model(tmp_path / "checkpoints" / "best.pt", dev)
        res[dev] = evaluation.evaluate_model(model.eval(), x, y, suite, device=dev, num_classes=4)
    assert res["cpu"]["clean_acc"] == res["cuda"]["clean_acc"]
    for k in ("pgd10_acc", "square_acc"):
        assert abs(res["cpu"][k] - res["cuda"][k]) <= 2 / 64, (k, res)
    assert res["cuda"]["fosc"] == pytest.approx(res["cpu"]["fosc"], rel=0.1, abs=1e-4)
    assert res["cuda"]["sgcs"] == pytest.approx(res["cpu"]["sgcs"], rel=0.05, abs=1e-3)


def test_trades_eval_cli_runs_autoattack_on_cuda(tmp_path, tiny_run_config, capsys):
    cfg = tiny_run_config(epochs=1)
    train(cfg, tmp_path, log=lambda m: None)
    suites = tmp_path / "suites.yaml"
    suites.write_text("g: {attacks: [clean, pgd10, autoattack], n_examples: 32, batch_size: 16, aa_batch_size: null}\n")
    out = tmp_path / "eval.json"
    rc = eval_cli.main(["--checkpoint", str(tmp_path / "checkpoints" / "best.pt"), "--suite", "g",
                        "--suites", str(suites), "--out", str(out), "--device", "cuda"])
    assert rc == 0, capsys.readouterr().err
    doc = json.loads(out.read_text())
    assert doc["status"] == "ok" and "cuda" in doc["device"].lower()
    assert doc["autoattack_acc"] is not None and doc["autoattack_acc"] <= doc["pgd10_acc"] + 1e-9


# ------------------------------------------------------------------ issue 19: CPU/GPU agreement and the GPU path


def test_to_float_is_bit_identical_on_cuda():
    v = torch.arange(256, dtype=torch.uint8)
    assert torch.equal(data.to_float(v.cuda()).cpu(), data.to_float(v))


def test_attack_start_from_a_cpu_generator_is_the_same_on_cuda():
    from trades_instability.core import attacks

    x = torch.rand(8, 3, 16, 16)
    for dist in ("uniform", "normal"):
        cpu = attacks.start_noise(x, torch.Generator().manual_seed(5), dist)
        gpu = attacks.start_noise(x.cuda(), torch.Generator().manual_seed(5), dist)
        assert gpu.is_cuda and torch.equal(gpu.cpu(), cpu)
    model = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(3 * 16 * 16, 4))
    y = torch.zeros(8, dtype=torch.long)
    starts = [attacks.pgd(model.to(d), x.to(d), y.to(d), eps=8 / 255, step_size=2 / 255, steps=0,
                          generator=torch.Generator().manual_seed(5)).x_adv.cpu() for d in ("cpu", "cuda")]
    assert torch.equal(*starts)


def test_augment_makes_one_pinned_host_to_device_copy():
    from torch.profiler import ProfilerActivity, profile

    from trades_instability.data.augment import augment_batch

    x = torch.rand(64, 3, 32, 32, device="cuda")
    augment_batch(x, generator=torch.Generator().manual_seed(0))  # warm-up
    torch.cuda.synchronize()
    with profile(activities=[ProfilerActivity.CPU, ProfilerActivity.CUDA]) as prof:
        augment_batch(x, generator=torch.Generator().manual_seed(0))
        torch.cuda.synchronize()
    h2d = [e.name for e in prof.events() if "Memcpy HtoD" in e.name]
    assert len(h2d) == 1 and "Pinned" in h2d[0], h2d


def test_cudnn_benchmark_is_on_while_cuda_training_and_restored_after(tmp_path, tiny_run_config):
    seen = []
    old = torch.backends.cudnn.benchmark
    torch.backends.cudnn.benchmark = False
    train(tiny_run_config(device="cuda", epochs=1), tmp_path / "a",
          log=lambda m: seen.append(torch.backends.cudnn.benchmark))
    assert seen and all(seen) and torch.backends.cudnn.benchmark is False
    seen.clear()
    train(tiny_run_config(device="cuda", epochs=1, deterministic=True), tmp_path / "b",
          log=lambda m: seen.append(torch.backends.cudnn.benchmark))
    assert seen and not any(seen)
    torch.backends.cudnn.benchmark = old


def test_deterministic_cuda_run_resumed_equals_uninterrupted(tmp_path, tiny_run_config):
    """The bit-exact resume claim on CUDA, in deterministic mode (README "Determinism")."""
    cfg = tiny_run_config(device="cuda", epochs=3, log_batch_metrics=True, deterministic=True)
    train(cfg, tmp_path / "a", log=lambda m: None)
    with pytest.raises(Interrupted):
        Trainer(cfg, tmp_path / "b", log=lambda m: None, stop_after_epoch=1).run()
    train(cfg, tmp_path / "b", log=lambda m: None)
    drop = lambda rows: [{k: v for k, v in r.items() if k != "epoch_time_s"} for r in rows]  # noqa: E731
    assert drop(_rows(tmp_path / "a" / "epochs.csv")) == drop(_rows(tmp_path / "b" / "epochs.csv"))
    assert _rows(tmp_path / "a" / "batches.csv") == _rows(tmp_path / "b" / "batches.csv")


def test_resume_of_a_cuda_run_on_the_cpu_is_one_line(tmp_path, tiny_run_config):
    cfg = tiny_run_config(device="auto", epochs=2)
    with pytest.raises(Interrupted):
        Trainer(cfg, tmp_path, log=lambda m: None, stop_after_epoch=1).run()
    with pytest.raises(CheckpointError, match="written by a run on cuda.*--device cuda"):
        Trainer(cfg, tmp_path, device="cpu", log=lambda m: None).run()


def test_compile_with_awp_trains_on_cuda(tmp_path, tiny_run_config):
    for form in ("adr", "official"):
        messages = []
        cfg = tiny_run_config(device="cuda", epochs=1, compile=True, awp={"enabled": True, "form": form})
        assert train(cfg, tmp_path / form, log=messages.append)["status"] == "complete"
        assert not any("fell back to eager" in m for m in messages), messages


def test_peak_gpu_memory_fits_the_readme_budget_for_jobs_per_gpu(tmp_path, tiny_run_config):
    """README "Several jobs on one GPU": a CIFAR-sized training run (ResNet-18 width 64, batch 256, 100 classes,
    fp32, per-step batch metrics) allocates at most 5 GiB, and an AutoAttack batch of 500 (APGD-CE, same model)
    at most 6 GiB, the numbers jobs_per_gpu is sized with (CUDA context and cuDNN workspace come on top)."""
    cfg = tiny_run_config(device="cuda", width=64, batch_size=256, val_batch_size=512, epochs=1, log_batch_metrics=True,
                          attack={"steps": 10},
                          synthetic={"num_classes": 100, "train_size": 512, "test_size": 512, "image_size": 32,
                                     "seed": 0})
    torch.cuda.reset_peak_memory_stats()
    train(cfg, tmp_path / "run", log=lambda m: None)
    train_peak = torch.cuda.max_memory_allocated() / 2**30
    model, _ = load_model(tmp_path / "run" / "checkpoints" / "best.pt", "cuda")
    x, y = torch.rand(500, 3, 32, 32, device="cuda"), torch.randint(0, 100, (500,), device="cuda")
    suite = evaluation.suite_from_dict("m", {"attacks": ["autoattack"], "apgd_iters": 5, "fab_iters": 5,
                                             "n_target_classes": 2, "square_queries": 10, "aa_batch_size": 500})
    torch.cuda.empty_cache()
    torch.cuda.reset_peak_memory_stats()
    evaluation.evaluate_model(model, x, y, suite, device="cuda", num_classes=100, log=lambda m: None)
    eval_peak = torch.cuda.max_memory_allocated() / 2**30
    assert train_peak <= 5.0 and eval_peak <= 6.0, (train_peak, eval_peak)
