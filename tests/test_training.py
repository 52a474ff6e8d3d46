"""Few-epoch runs of every method on synthetic data: logs, checkpoints, the fix, resume, divergence."""

import csv
import hashlib
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from trades_instability.config.run import ConfigError
from trades_instability.core import methods as core_methods
from trades_instability.rundir.atomic_io import read_json
from trades_instability.rundir.checkpoint import CheckpointError, load_checkpoint, load_model
from trades_instability.rundir.records import BATCH_COLUMNS, EPOCH_COLUMNS
from trades_instability.train.errors import Diverged, Interrupted
from trades_instability.train.loop import Trainer, train
from trades_instability.train.step import lr_at


def rows(path: Path) -> list[dict]:
    with open(path, newline="") as fh:
        return list(csv.DictReader(fh))


def without_time(rs: list[dict]) -> list[dict]:
    return [{k: v for k, v in r.items() if k != "epoch_time_s"} for r in rs]


def sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


@pytest.mark.parametrize(
    "overrides",
    [
        {},
        {"method": "modified"},
        {"awp": {"enabled": True}},
        {"joint_forward": True, "attack": {"bn_mode": "train"}},
        {"lr_milestones": [2], "snapshot_epochs": [1]},
        {"precision": "bf16", "awp": {"enabled": True}},
    ],
    ids=["trades", "modified", "awp", "joint-bntrain", "lrsched-snapshot", "bf16-awp"],
)
def test_each_method_trains_and_logs_everything(tmp_path, tiny_run_config, overrides):
    cfg = tiny_run_config(log_batch_metrics=True, **overrides)
    info = train(cfg, tmp_path, log=lambda m: None)
    assert info["status"] == "complete" and info["epochs_completed"] == cfg.epochs
    ep = rows(tmp_path / "epochs.csv")
    assert list(ep[0]) == EPOCH_COLUMNS
    assert [int(r["epoch"]) for r in ep] == [1, 2]
    for r in ep:
        for col in EPOCH_COLUMNS:
            assert r[col] != "", f"empty {col}"
            assert float(r[col]) == float(r[col]), f"NaN in {col}"  # finite numbers everywhere
        assert 0 <= float(r["val_pgd_acc"]) <= 1 and 0 <= float(r["val_clean_acc"]) <= 1
        assert 0 <= float(r["train_adv_acc"]) <= 1
    assert [float(r["lr"]) for r in ep] == [lr_at(cfg, 1), lr_at(cfg, 2)]
    b = rows(tmp_path / "batches.csv")
    assert list(b[0]) == BATCH_COLUMNS
    assert len(b) == cfg.epochs * 3  # 96 examples / batch 32
    assert [int(r["step"]) for r in b] == list(range(1, 7))
    model, ckpt = load_model(tmp_path / "checkpoints" / "best.pt")
    assert ckpt["kind"] == "best" and ckpt["epoch"] == info["best_epoch"]
    assert model(torch.rand(2, 3, 16, 16)).shape == (2, 4)
    last = load_checkpoint(tmp_path / "checkpoints" / "last.pt")
    assert last["epoch"] == 2 and "optimizer" in last
    if cfg.snapshot_epochs:
        assert load_checkpoint(tmp_path / "checkpoints" / "epoch001.pt")["epoch"] == 1
    run = read_json(tmp_path / "run.json")
    assert run["config"] == cfg.to_dict() and "torch" in run["versions"] and run["seed"] == cfg.seed


def test_lr_schedule_follows_official_convention(tiny_run_config):
    # train_trades_cifar10.py / csdongxian/AWP: `if epoch >= m` with 1-based epochs
    cfg = tiny_run_config(epochs=200, lr=0.1, lr_milestones=[100, 150], convention="official_trades")
    assert cfg.lr_milestone_base == 1
    assert [lr_at(cfg, e) for e in (1, 99, 100, 149, 150, 200)] == pytest.approx([0.1, 0.1, 0.01, 0.01, 0.001, 0.001])


def _timm_0612_multistep_lr_per_epoch(lr, gamma, milestones, epochs, steps_per_epoch):
    """ADR's schedule, iteration by iteration, in timm 0.6.12's arithmetic (the version ADR's requirements.txt
    pins): MultiStepLRScheduler(decay_t=[m * S]) sets the LR of the next iteration in scheduler.step(t), called
    after iteration t's optimiser step (src/advTrainer.py), to lr * gamma ** bisect_right(decay_t, t + 1).
    Returns the LR of every iteration of each 1-based epoch."""
    import bisect

    decay_t = [m * steps_per_epoch for m in milestones]
    current, per_epoch = lr, []
    for e in range(epochs):
        lrs = []
        for idx in range(steps_per_epoch):
            lrs.append(current)
            current = lr * gamma ** bisect.bisect_right(decay_t, e * steps_per_epoch + idx + 1)
        per_epoch.append(lrs)
    return per_epoch


def test_lr_schedule_follows_adr_per_iteration_timm_schedule(tiny_run_config):
    cfg = tiny_run_config(epochs=200, lr=0.1, lr_milestones=[100, 150], convention="adr")
    assert cfg.lr_milestone_base == 0
    # the LR is constant within every epoch of ADR's schedule and equals ours at each epoch boundary
    ref = _timm_0612_multistep_lr_per_epoch(0.1, 0.1, [100, 150], 200, steps_per_epoch=3)
    for epoch, lrs in enumerate(ref, start=1):
        assert lrs == pytest.approx([lr_at(cfg, epoch)] * 3), epoch
    # the drops: at the start of 1-based epoch 101 and 151 (0-based 100 and 150), one epoch after official's
    assert [lr_at(cfg, e) for e in (1, 100, 101, 150, 151, 200)] == pytest.approx([0.1, 0.1, 0.01, 0.01, 0.001, 0.001])


def test_lr_milestone_base_rejects_other_values(tiny_run_config):
    with pytest.raises(ConfigError, match="'lr_milestone_base'"):
        tiny_run_config(lr_milestone_base=2)


def test_batch_metrics_are_off_by_default_but_w_grad_norm_is_logged(tmp_path, tiny_run_config):
    train(tiny_run_config(epochs=1), tmp_path, log=lambda m: None)
    (r,) = rows(tmp_path / "epochs.csv")
    assert float(r["w_grad_norm"]) > 0
    assert r["ce_norm"] == r["kl_norm"] == r["grad_cosine_similarity"] == ""
    assert rows(tmp_path / "batches.csv") == []


def test_fix_noises_exactly_the_first_batches_after_an_epoch_over_threshold(tmp_path, tiny_run_config):
    # 6 batches per epoch, 4 noised; a threshold of 1e-12 makes every epoch "over threshold"
    cfg = tiny_run_config(
        epochs=3, batch_size=16, log_batch_metrics=True,
        fix={"enabled": True, "fosc_threshold": 1e-12, "noise_batches": 4},
    )
    info = train(cfg, tmp_path, log=lambda m: None)
    ep = rows(tmp_path / "epochs.csv")
    assert [int(r["fosc_over_threshold"]) for r in ep] == [1, 1, 1]
    assert [int(r["noise_batches"]) for r in ep] == [0, 4, 4]
    b = rows(tmp_path / "batches.csv")
    noised = {(int(r["epoch"]), int(r["batch"])) for r in b if r["noised"] == "1"}
    assert noised == {(e, i) for e in (2, 3) for i in range(4)}
    # no epoch was under the threshold: Algorithm 1 never selects one; the final model is the fallback
    assert all(r["is_best"] == "0" for r in ep)
    assert info["best_selection"] == "fallback_last_epoch"
    assert load_checkpoint(tmp_path / "checkpoints" / "best.pt")["epoch"] == 3


def test_fix_stays_quiet_under_threshold_and_checkpoints_over_it_are_never_best(tmp_path, tiny_run_config):
    cfg = tiny_run_config(epochs=2, fix={"enabled": True, "fosc_threshold": 1e9})
    train(cfg, tmp_path / "quiet", log=lambda m: None)
    assert [int(r["noise_batches"]) for r in rows(tmp_path / "quiet" / "epochs.csv")] == [0, 0]
    # the same run without the fix but the same threshold logs the flag and still selects by PGD-10
    cfg2 = tiny_run_config(epochs=2, fix={"enabled": False, "fosc_threshold": 1e-12})
    info = train(cfg2, tmp_path / "vanilla", log=lambda m: None)
    ep = rows(tmp_path / "vanilla" / "epochs.csv")
    assert [int(r["fosc_over_threshold"]) for r in ep] == [1, 1] and ep[0]["is_best"] == "1"
    assert info["best_selection"] == "best_val_pgd_acc"


def test_same_seed_same_logs_and_resume_equals_uninterrupted(tmp_path, tiny_run_config):
    cfg = tiny_run_config(epochs=3, log_batch_metrics=True, fix={"enabled": True, "fosc_threshold": 0.05,
                                                                 "noise_batches": 1})
    train(cfg, tmp_path / "a", log=lambda m: None)
    train(cfg, tmp_path / "b", log=lambda m: None)
    assert without_time(rows(tmp_path / "a" / "epochs.csv")) == without_time(rows(tmp_path / "b" / "epochs.csv"))

    messages = []
    with pytest.raises(Interrupted):
        Trainer(cfg, tmp_path / "c", log=messages.append, stop_after_epoch=1).run()
    assert len(rows(tmp_path / "c" / "epochs.csv")) == 1
    assert not (tmp_path / "c" / "run.json").exists()
    Trainer(cfg, tmp_path / "c", log=messages.append).run()
    assert any("resumed from" in m and "at epoch 1" in m for m in messages)
    assert without_time(rows(tmp_path / "c" / "epochs.csv")) == without_time(rows(tmp_path / "a" / "epochs.csv"))
    assert rows(tmp_path / "c" / "batches.csv") == rows(tmp_path / "a" / "batches.csv")
    a = load_checkpoint(tmp_path / "a" / "checkpoints" / "last.pt")["model"]
    c = load_checkpoint(tmp_path / "c" / "checkpoints" / "last.pt")["model"]
    assert all(torch.equal(a[k], c[k]) for k in a)


def test_resume_refuses_a_checkpoint_of_another_config(tmp_path, tiny_run_config):
    with pytest.raises(Interrupted):
        Trainer(tiny_run_config(epochs=2), tmp_path, log=lambda m: None, stop_after_epoch=1).run()
    with pytest.raises(CheckpointError, match="different config.*beta"):
        train(tiny_run_config(epochs=2, beta=6.0), tmp_path, log=lambda m: None)


def test_truncated_checkpoint_is_a_clear_error_and_nothing_is_overwritten(tmp_path, tiny_run_config):
    cfg = tiny_run_config(epochs=2)
    with pytest.raises(Interrupted):
        Trainer(cfg, tmp_path, log=lambda m: None, stop_after_epoch=1).run()
    last = tmp_path / "checkpoints" / "last.pt"
    last.write_bytes(last.read_bytes()[: last.stat().st_size // 2])
    before = {p.name: sha(p) for p in tmp_path.rglob("*") if p.is_file()}
    with pytest.raises(CheckpointError, match=str(last)):
        train(cfg, tmp_path, log=lambda m: None)
    assert {p.name: sha(p) for p in tmp_path.rglob("*") if p.is_file()} == before


def test_foreign_checkpoint_is_a_clear_error(tmp_path, tiny_run_config):
    (tmp_path / "checkpoints").mkdir()
    torch.save({"state_dict": {}}, tmp_path / "checkpoints" / "last.pt")
    with pytest.raises(CheckpointError, match="not a trades_instability checkpoint"):
        train(tiny_run_config(), tmp_path, log=lambda m: None)


def test_non_finite_loss_stops_with_epoch_and_step_and_keeps_the_last_good_state(tmp_path, tiny_run_config,
                                                                                 monkeypatch):
    cfg = tiny_run_config(epochs=3)
    with pytest.raises(Interrupted):
        Trainer(cfg, tmp_path, log=lambda m: None, stop_after_epoch=1).run()
    kept = {p.name: sha(p) for p in tmp_path.rglob("*") if p.is_file()}

    real = core_methods.trades_parts
    calls = {"n": 0}

    def poisoned(*args, **kwargs):
        parts = real(*args, **kwargs)
        calls["n"] += 1
        if calls["n"] == 2:  # second training batch of epoch 2
            return parts._replace(loss=parts.loss * float("nan"))
        return parts

    monkeypatch.setattr(core_methods, "trades_parts", poisoned)
    with pytest.raises(Diverged, match=r"epoch 2, batch 1 \(global step 5\)"):
        train(cfg, tmp_path, log=lambda m: None)
    assert {p.name: sha(p) for p in tmp_path.rglob("*") if p.is_file()} == kept

    calls["n"] = 0
    info = train(cfg, tmp_path, log=lambda m: None, on_diverge="record")
    assert info["status"] == "diverged" and info["diverged"]["epoch"] == 2
    assert read_json(tmp_path / "run.json")["status"] == "diverged"
    assert load_checkpoint(tmp_path / "checkpoints" / "last.pt")["epoch"] == 1


def _cli(config: Path, out: Path, *extra) -> subprocess.Popen:
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    return subprocess.Popen(
        [sys.executable, "-m", "trades_instability", "train", "--config", str(config), "--out", str(out),
         "--threads", "1", *extra],
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env,
    )


def _wait_for_epochs(out: Path, n: int, proc: subprocess.Popen, timeout: float = 120) -> None:
    t0 = time.time()
    while time.time() - t0 < timeout:
        p = out / "epochs.csv"
        if p.exists() and len(rows(p)) >= n:
            return
        if proc.poll() is not None:
            raise AssertionError(f"trainer exited early: {proc.stdout.read()}")
        time.sleep(0.05)
    raise AssertionError("timed out waiting for epochs")


def _write_cfg(tmp_path: Path, epochs: int = 4) -> Path:
    cfg = tmp_path / "run.yaml"
    cfg.write_text(
        "dataset: synthetic\nsynthetic: {num_classes: 4, train_size: 192, test_size: 32, image_size: 16}\n"
        f"width: 2\nepochs: {epochs}\nbatch_size: 32\nval_batch_size: 32\nattack: {{steps: 3}}\ndevice: cpu\n"
    )
    return cfg


@pytest.mark.slow
@pytest.mark.parametrize("sig", [signal.SIGKILL, signal.SIGTERM], ids=["kill-9", "sigterm"])
def test_killed_cli_run_resumes_and_ends_like_an_uninterrupted_one(tmp_path, sig):
    cfg = _write_cfg(tmp_path)
    ref = _cli(cfg, tmp_path / "ref")
    assert ref.wait(timeout=300) == 0, ref.stdout.read()

    proc = _cli(cfg, tmp_path / "run")
    _wait_for_epochs(tmp_path / "run", 1, proc)
    time.sleep(0.3)  # somewhere inside epoch 2
    proc.send_signal(sig)
    rc = proc.wait(timeout=60)
    out = proc.stdout.read()
    if sig == signal.SIGTERM:
        assert rc == 143 and "rerun the same command to resume" in out
    done = len(rows(tmp_path / "run" / "epochs.csv"))
    assert 1 <= done < 4 and not (tmp_path / "run" / "run.json").exists()

    again = _cli(cfg, tmp_path / "run")
    assert again.wait(timeout=300) == 0
    log = again.stdout.read()
    assert f"at epoch {done}" in log and "resumed from" in log
    assert without_time(rows(tmp_path / "run" / "epochs.csv")) == without_time(rows(tmp_path / "ref" / "epochs.csv"))
    assert read_json(tmp_path / "run" / "run.json")["status"] == "complete"


@pytest.mark.slow
def test_cli_log_file_keeps_the_clean_stop_line_when_stdout_is_gone(tmp_path):
    """The pipeline once piped the trainer through tee, which SLURM's scancel kills together with the
    trainer: the clean-stop line was lost. With --log-file the trainer writes it itself."""
    cfg = _write_cfg(tmp_path)
    log = tmp_path / "train.log"
    log.write_text("an earlier attempt\n")
    proc = _cli(cfg, tmp_path / "run", "--log-file", str(log))
    _wait_for_epochs(tmp_path / "run", 1, proc)
    proc.stdout.close()  # the reader dies first, as tee did
    proc.send_signal(signal.SIGTERM)
    assert proc.wait(timeout=60) == 143
    text = log.read_text()
    assert text.startswith("an earlier attempt\n"), "appended, not overwritten"
    assert re.search(r"^epoch\s+1/4", text, flags=re.M), text
    assert text.rstrip().endswith("rerun the same command to resume"), text[-500:]


def test_cli_bad_config_is_one_clear_error(tmp_path, capsys):
    from trades_instability.train.cli import main

    bad = tmp_path / "bad.yaml"
    bad.write_text("dataset: synthetic\nbta: 3\n")
    assert main(["--config", str(bad), "--out", str(tmp_path / "out")]) == 2
    err = capsys.readouterr().err
    assert "bta" in err and "unknown config key" in err
    assert not (tmp_path / "out").exists()


def test_divergence_in_the_first_epoch_is_recorded_with_the_initial_weights(tmp_path, tiny_run_config, monkeypatch):
    real = core_methods.trades_parts

    def poisoned(*args, **kwargs):
        parts = real(*args, **kwargs)
        return parts._replace(loss=parts.loss * float("nan"))

    monkeypatch.setattr(core_methods, "trades_parts", poisoned)
    cfg = tiny_run_config(epochs=2)
    info = train(cfg, tmp_path, log=lambda m: None, on_diverge="record")
    assert info["status"] == "diverged" and info["epochs_completed"] == 0
    assert info["best_selection"] == "diverged_last_good_state"
    model, ckpt = load_model(tmp_path / "checkpoints" / "best.pt")  # the pipeline can still evaluate it
    torch.manual_seed(cfg.seed)
    from trades_instability.core.models import build_model

    init = build_model(cfg.arch, num_classes=4, width=cfg.width).state_dict()
    assert all(torch.equal(init[k], ckpt["model"][k]) for k in init)
    assert rows(tmp_path / "epochs.csv") == []


# ---------------------------------------------------------------- GPU-path review (issue 19), CPU side


def test_compile_with_awp_sets_up(tmp_path, tiny_run_config):
    """compile: true + AWP used to crash at start-up (`compiled or model` calls len() on the compiled
    module). torch.compile is lazy: set-up builds the real OptimizedModule without compiling anything."""
    for form in ("adr", "official"):
        t = Trainer(tiny_run_config(compile=True, awp={"enabled": True, "form": form}), tmp_path / form,
                    log=lambda m: None)
        t.setup()
        assert isinstance(t.forward_model, torch._dynamo.eval_frame.OptimizedModule)
        if form == "adr":
            assert t.awp.forward_model is t.forward_model


def test_cudnn_benchmark_and_deterministic_mode_are_scoped_to_the_run(tmp_path, tiny_run_config):
    seen = []

    def probe(m):
        seen.append((torch.backends.cudnn.benchmark, torch.are_deterministic_algorithms_enabled()))

    old = torch.backends.cudnn.benchmark
    torch.backends.cudnn.benchmark = True
    try:
        with pytest.raises(Interrupted):  # restored on the way out of an interrupted run too
            Trainer(tiny_run_config(deterministic=True), tmp_path / "d", log=probe, stop_after_epoch=1).run()
        assert seen and all(s == (False, True) for s in seen)  # benchmark is for CUDA training runs only
        assert torch.backends.cudnn.benchmark is True and not torch.are_deterministic_algorithms_enabled()
        assert os.environ.get("CUBLAS_WORKSPACE_CONFIG") == ":4096:8"
    finally:
        torch.backends.cudnn.benchmark = old


def test_deterministic_run_resumed_equals_uninterrupted(tmp_path, tiny_run_config):
    cfg = tiny_run_config(deterministic=True, log_batch_metrics=True)
    train(cfg, tmp_path / "a", log=lambda m: None)
    with pytest.raises(Interrupted):
        Trainer(cfg, tmp_path / "b", log=lambda m: None, stop_after_epoch=1).run()
    train(cfg, tmp_path / "b", log=lambda m: None)
    assert without_time(rows(tmp_path / "a" / "epochs.csv")) == without_time(rows(tmp_path / "b" / "epochs.csv"))
    assert rows(tmp_path / "a" / "batches.csv") == rows(tmp_path / "b" / "batches.csv")
    a = load_checkpoint(tmp_path / "a" / "checkpoints" / "last.pt")["model"]
    b = load_checkpoint(tmp_path / "b" / "checkpoints" / "last.pt")["model"]
    assert all(torch.equal(a[k], b[k]) for k in a)


@pytest.mark.parametrize("recorded", [True, False], ids=["recorded", "older-checkpoint"])
def test_resume_on_another_device_type_is_one_line_naming_checkpoint_and_device(tmp_path, tiny_run_config, recorded):
    """Emulates a checkpoint written on CUDA (a 16-byte Philox generator state) resumed on the CPU."""
    from trades_instability.rundir.checkpoint import save_checkpoint

    cfg = tiny_run_config()
    with pytest.raises(Interrupted):
        Trainer(cfg, tmp_path, log=lambda m: None, stop_after_epoch=1).run()
    last = tmp_path / "checkpoints" / "last.pt"
    ckpt = load_checkpoint(last)
    assert ckpt["rng"]["device_type"] == "cpu"
    ckpt["rng"]["device"] = torch.zeros(16, dtype=torch.uint8)
    if recorded:
        ckpt["rng"]["device_type"] = "cuda"
    else:
        del ckpt["rng"]["device_type"]
    save_checkpoint(last, ckpt)
    with pytest.raises(CheckpointError) as e:
        Trainer(cfg, tmp_path, log=lambda m: None).run()
    msg = str(e.value)
    assert "\n" not in msg and str(last) in msg and "written by a run on cuda" in msg and "--device cuda" in msg


def test_auto_device_without_a_gpu_warns_or_fails_when_a_gpu_was_expected(tmp_path, tiny_run_config, monkeypatch):
    from trades_instability.runtime import DeviceUnavailable

    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    cfg = tiny_run_config(device="auto")
    monkeypatch.delenv("TRADES_EXPECT_GPU", raising=False)
    monkeypatch.delenv("CUDA_VISIBLE_DEVICES", raising=False)
    quiet = []
    Trainer(cfg, tmp_path, log=quiet.append)
    assert quiet == []  # a CPU machine, nothing says a GPU was meant
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "0")
    loud = []
    assert Trainer(cfg, tmp_path, log=loud.append).device.type == "cpu"
    assert len(loud) == 1 and loud[0].startswith("WARNING") and "TRAINING ON THE CPU" in loud[0]
    monkeypatch.setenv("TRADES_EXPECT_GPU", "1")
    with pytest.raises(DeviceUnavailable, match="TRADES_EXPECT_GPU=1 but no CUDA GPU"):
        Trainer(cfg, tmp_path, log=lambda m: None)
    assert Trainer(tiny_run_config(device="cpu"), tmp_path, log=lambda m: None).device.type == "cpu"  # asked for


def test_compile_watch_reports_the_recompile_limit_in_the_run_log():
    """The detection path on a real dynamo recompile-limit hit (eager backend: no C++ compiler needed)."""
    import torch._dynamo

    from trades_instability.runtime import COMPILE_RECOMPILE_LIMIT, compile_watch, recompile_limit_key

    messages = []
    f = torch.compile(lambda x, k: x * k, backend="eager", dynamic=False)
    key = recompile_limit_key()  # torch < 2.6 calls it cache_size_limit
    default = getattr(torch._dynamo.config, key)
    with compile_watch(True, messages.append) as watch:
        assert getattr(torch._dynamo.config, key) == max(COMPILE_RECOMPILE_LIMIT, default)
        with torch._dynamo.config.patch(**{key: 2}):
            for k in range(5):  # each constant k is a new guard: recompiles 1, 2, then the limit
                f(torch.ones(2), k)
    assert watch.hits >= 1 and len(messages) == 1 and key in messages[0]
    assert getattr(torch._dynamo.config, key) == default


def _last_pt_of_an_older_version(cfg, out, drop) -> None:
    """Train ``cfg`` for one epoch into ``out``, then rewrite its last.pt as an older version would have written
    it: without the config keys that ``drop(config)`` deletes."""
    from trades_instability.rundir.checkpoint import save_checkpoint

    with pytest.raises(Interrupted):
        Trainer(cfg, out, log=lambda m: None, stop_after_epoch=1).run()
    last = out / "checkpoints" / "last.pt"
    ckpt = load_checkpoint(last)
    drop(ckpt["config"])
    save_checkpoint(last, ckpt)


def test_resume_accepts_a_checkpoint_written_before_a_key_existed(tmp_path, tiny_run_config):
    """A last.pt of a version without `deterministic` resumes when the key is at its default, not otherwise."""
    cfg = tiny_run_config()
    _last_pt_of_an_older_version(cfg, tmp_path, lambda c: c.pop("deterministic"))
    with pytest.raises(CheckpointError, match="keys differ: deterministic"):
        Trainer(tiny_run_config(deterministic=True), tmp_path, log=lambda m: None).run()
    assert train(cfg, tmp_path, log=lambda m: None)["epochs_completed"] == 2


def test_resume_accepts_a_checkpoint_written_before_the_review_keys_existed(tmp_path, tiny_run_config):
    """A last.pt without the seed-source keys, alp_lambda and the nested fix.mode resumes at their defaults."""

    def drop(config):
        for key in ("init_seed", "data_seed", "attack_seed", "alp_lambda"):
            del config[key]
        del config["fix"]["mode"]

    cfg = tiny_run_config()
    _last_pt_of_an_older_version(cfg, tmp_path, drop)
    with pytest.raises(CheckpointError, match="keys differ: fix"):
        Trainer(tiny_run_config(fix={"mode": "always"}), tmp_path, log=lambda m: None).run()
    assert train(cfg, tmp_path, log=lambda m: None)["epochs_completed"] == 2
