"""README "What happens when things go wrong", checked: Snakemake's directory lock and recovery after a
kill -9 of the whole tree; a crash at any point of a training epoch's end leaves no hole in the logs;
leftovers of a killed run are cleaned or refused by name; files get the user's umask; every CLI problem
is one line before any expensive work."""

from __future__ import annotations

import csv
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from trades_instability.rundir.atomic_io import atomic_path, atomic_write_text, write_json
from trades_instability.rundir.checkpoint import CheckpointError, load_checkpoint, save_checkpoint
from trades_instability.train.errors import Diverged, Interrupted
from trades_instability.train.loop import Trainer, train

REPO = Path(__file__).resolve().parents[1]
SMOKE = REPO / "tests" / "configs" / "smoke.yaml"


def _cmd(work: Path, *args: str) -> list[str]:
    return [sys.executable, "-m", "snakemake", *args, "--snakefile", str(REPO / "Snakefile"),
            "--directory", str(work), "--configfile", str(SMOKE), "--cores", "1"]


@pytest.mark.slow
def test_second_invocation_on_the_same_folder_is_refused(tmp_path: Path):
    target = "results/runs/default/seed0/run.json"
    first = subprocess.Popen(_cmd(tmp_path, target), stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    locks = tmp_path / ".snakemake" / "locks"
    t0 = time.time()
    while not (locks.is_dir() and any(locks.iterdir())):
        assert first.poll() is None, f"first run ended before taking its lock:\n{first.stdout.read()}"
        assert time.time() - t0 < 120, "first run never took its lock"
        time.sleep(0.05)
    second = subprocess.run(_cmd(tmp_path, target), capture_output=True, text=True, timeout=300)
    assert second.returncode != 0
    assert "cannot be locked" in (second.stdout + second.stderr)
    out, _ = first.communicate(timeout=600)
    assert first.returncode == 0, out
    run = tmp_path / target
    assert run.is_file() and '"status": "complete"' in run.read_text()


# ------------------------------------------------------------------------------------------------
# Training run directories (issue 13): no silent hole, truthful leftovers, one-line errors
# ------------------------------------------------------------------------------------------------
class SimulatedCrash(BaseException):
    """A kill at one point of the end-of-epoch sequence (BaseException: nothing in the trainer catches it)."""


def _rows(path: Path) -> list[dict]:
    with open(path, newline="") as fh:
        return [{k: v for k, v in r.items() if k != "epoch_time_s"} for r in csv.DictReader(fh)]


def _epoch_starts(message: str, epoch: int) -> bool:
    """The log line after which the next file renamed belongs to the end of ``epoch``."""
    return message.startswith("training ") if epoch == 1 else message.startswith(f"epoch {epoch - 1:3d}/")


def _epoch_end_writes(cfg, out: Path, epoch: int) -> list[str]:
    """The files renamed into place at the end of ``epoch`` (the sequence a crash can interrupt)."""
    seen, armed, real = [], {"on": False}, os.replace

    def spy(src, dst, *a, **k):
        if armed["on"]:
            seen.append(Path(dst).name)
        return real(src, dst, *a, **k)

    def log(m: str) -> None:
        if _epoch_starts(m, epoch):
            armed["on"] = True
        elif m.startswith(f"epoch {epoch:3d}/"):
            armed["on"] = False

    mp = pytest.MonkeyPatch()
    mp.setattr(os, "replace", spy)
    try:
        train(cfg, out, log=log)
    finally:
        mp.undo()
    return seen


@pytest.mark.parametrize("epoch", [1, 2])
def test_a_crash_at_any_point_of_the_epoch_end_leaves_no_hole(tmp_path: Path, tiny_run_config, monkeypatch, epoch):
    # README: rerunning after a kill ends with the same logs and checkpoints as an uninterrupted run. The
    # window that lost an epoch's batch rows for good was between the renames of last.pt and batches.csv.
    cfg = tiny_run_config(epochs=2, log_batch_metrics=True, snapshot_epochs=[1, 2])
    writes = _epoch_end_writes(cfg, tmp_path / "ref", epoch)
    assert writes.index("last.pt") < writes.index("batches.csv"), writes
    assert epoch != 1 or "best.pt" in writes  # epoch 1 is always the best so far
    ref_epochs, ref_batches = _rows(tmp_path / "ref" / "epochs.csv"), _rows(tmp_path / "ref" / "batches.csv")
    ref_ckpts = {p.name: load_checkpoint(p) for p in (tmp_path / "ref" / "checkpoints").glob("*.pt")}
    real = os.replace
    for i, name in enumerate(writes):
        for when in ("before", "after"):
            out = tmp_path / f"crash{i}{when}"
            armed = {"on": False, "n": 0}

            def crashing(src, dst, *a, **k):
                if armed["on"] and armed["n"] == i:
                    if when == "after":
                        real(src, dst, *a, **k)
                    raise SimulatedCrash(f"{when} renaming {name}")
                if armed["on"]:
                    armed["n"] += 1
                return real(src, dst, *a, **k)

            def log(m: str) -> None:
                if _epoch_starts(m, epoch):
                    armed["on"] = True

            monkeypatch.setattr(os, "replace", crashing)
            with pytest.raises(SimulatedCrash):
                train(cfg, out, log=log)
            monkeypatch.setattr(os, "replace", real)
            messages: list[str] = []
            train(cfg, out, log=messages.append)
            where = f"crash {when} renaming {name} at the end of epoch {epoch}"
            assert _rows(out / "epochs.csv") == ref_epochs, where
            assert _rows(out / "batches.csv") == ref_batches, where
            ckpts = {p.name: load_checkpoint(p) for p in (out / "checkpoints").glob("*.pt")}
            assert sorted(ckpts) == sorted(ref_ckpts), where
            for n, ref in ref_ckpts.items():
                assert ckpts[n]["epoch"] == ref["epoch"], (where, n)
                assert all(torch.equal(ckpts[n]["model"][k], v) for k, v in ref["model"].items()), (where, n)
            if when == "after" and name == "last.pt" and epoch == 2:  # the state is ahead of both CSVs
                assert any("epochs.csv disagreed" in m for m in messages), messages
                assert any("batches.csv disagreed" in m for m in messages), messages


def test_a_csv_that_disagrees_with_the_resume_state_is_rewritten_by_name(tmp_path: Path, tiny_run_config):
    cfg = tiny_run_config(epochs=3, log_batch_metrics=True)
    train(cfg, tmp_path / "ref", log=lambda m: None)
    out = tmp_path / "run"
    with pytest.raises(Interrupted):
        Trainer(cfg, out, log=lambda m: None, stop_after_epoch=2).run()
    batches = (out / "batches.csv").read_text().splitlines()
    (out / "batches.csv").write_text("\n".join(batches[:2]) + "\n")  # rows of epoch 2 lost
    (out / "epochs.csv").write_text((out / "epochs.csv").read_text() + "9,0.1\n")  # a row no state covers
    messages: list[str] = []
    train(cfg, out, log=messages.append)
    assert any(f"{out / 'batches.csv'} disagreed" in m and "rewritten" in m for m in messages), messages
    assert any(f"{out / 'epochs.csv'} disagreed" in m for m in messages), messages
    assert _rows(out / "batches.csv") == _rows(tmp_path / "ref" / "batches.csv")
    assert _rows(out / "epochs.csv") == _rows(tmp_path / "ref" / "epochs.csv")


def test_orphaned_temporaries_of_a_killed_writer_are_removed_on_the_next_start(tmp_path: Path, tiny_run_config):
    cfg = tiny_run_config(epochs=2)
    with pytest.raises(Interrupted):
        Trainer(cfg, tmp_path, log=lambda m: None, stop_after_epoch=1).run()
    orphans = [tmp_path / "checkpoints" / ".last.k2j3h4.tmp.pt", tmp_path / ".epochs.a8b9c0.tmp.csv"]
    for p in orphans:
        p.write_bytes(b"half a file")
    messages: list[str] = []
    train(cfg, tmp_path, log=messages.append)
    assert not any(p.exists() for p in orphans)
    assert any("removed 2 temporary file(s)" in m for m in messages), messages
    assert not [p for p in tmp_path.rglob("*") if ".tmp" in p.name]


def test_results_without_a_resume_state_are_refused_not_overwritten(tmp_path: Path, tiny_run_config):
    cfg = tiny_run_config(epochs=2)
    with pytest.raises(Interrupted):
        Trainer(cfg, tmp_path, log=lambda m: None, stop_after_epoch=1).run()
    (tmp_path / "checkpoints" / "last.pt").unlink()
    before = {p: p.read_bytes() for p in tmp_path.rglob("*") if p.is_file()}
    with pytest.raises(CheckpointError, match=r"holds results \(best.pt, epochs.csv.*no checkpoints/last.pt.*rm -r"):
        train(cfg, tmp_path, log=lambda m: None)
    assert {p: p.read_bytes() for p in tmp_path.rglob("*") if p.is_file()} == before


def test_a_folder_with_only_empty_logs_starts_normally(tmp_path: Path, tiny_run_config):
    # killed during epoch 1: the CSVs hold their header only, and no result is at stake
    cfg = tiny_run_config(epochs=1)
    from trades_instability.rundir.records import BATCH_COLUMNS, EPOCH_COLUMNS
    (tmp_path / "epochs.csv").write_text(",".join(EPOCH_COLUMNS) + "\n")
    (tmp_path / "batches.csv").write_text(",".join(BATCH_COLUMNS) + "\n")
    assert train(cfg, tmp_path, log=lambda m: None)["status"] == "complete"


def test_divergence_message_says_what_is_actually_kept():
    assert "no epoch had completed" in str(Diverged(1, 2, 1, "loss"))
    assert "checkpoints/last.pt" not in str(Diverged(1, 2, 1, "loss")).replace("(no checkpoints/last.pt)", "")
    assert "the last good state (epoch 2) is kept in checkpoints/last.pt" in str(Diverged(3, 9, 0, "loss"))


@pytest.mark.parametrize("umask", [0o022, 0o002])
def test_atomically_written_files_get_the_umask_permissions(tmp_path: Path, umask: int):
    old = os.umask(umask)
    try:
        plain = tmp_path / "plain.txt"
        plain.write_text("x")
        atomic_write_text(tmp_path / "table.tex", "x")
        write_json(tmp_path / "run.json", {"a": 1})
        save_checkpoint(tmp_path / "best.pt", {"w": torch.zeros(1)})
        with atomic_path(tmp_path / "figure.png") as tmp:
            tmp.write_bytes(b"png")
    finally:
        os.umask(old)
    want = 0o666 & ~umask
    assert plain.stat().st_mode & 0o777 == want
    for name in ("table.tex", "run.json", "best.pt", "figure.png"):
        assert (tmp_path / name).stat().st_mode & 0o777 == want, name


def test_an_empty_checkpoint_is_a_clear_error(tmp_path: Path):
    empty = tmp_path / "best.pt"
    empty.write_bytes(b"")
    with pytest.raises(CheckpointError, match=f"checkpoint {empty} is empty"):
        load_checkpoint(empty)


# ------------------------------------------------------------------------------- one-line CLI errors
def _write_run_cfg(tmp_path: Path, **extra: str) -> Path:
    cfg = tmp_path / f"run{len(list(tmp_path.glob('run*.yaml')))}.yaml"
    cfg.write_text(
        "dataset: synthetic\nsynthetic: {num_classes: 4, train_size: 64, test_size: 32, image_size: 16}\n"
        "width: 2\nepochs: 1\nbatch_size: 32\nval_batch_size: 32\nattack: {steps: 3}\n"
        + "".join(f"{k}: {v}\n" for k, v in {"device": "cpu", **extra}.items())
    )
    return cfg


def _one_line_error(capsys, rc: int, expect_rc: int, *fragments: str) -> str:
    out = capsys.readouterr()
    assert rc == expect_rc, out
    assert out.err.count("\n") == 1 and "Traceback" not in out.err, out.err
    for f in fragments:
        assert f in out.err, (f, out.err)
    return out.err


def test_train_cli_problems_are_one_line_before_any_work(tmp_path: Path, capsys, monkeypatch):
    from trades_instability.train import cli as train_cli

    cfg = _write_run_cfg(tmp_path)
    blocker = tmp_path / "a_file"
    blocker.write_text("")
    impossible = blocker / "run"
    _one_line_error(capsys, train_cli.main(["--config", str(cfg), "--out", str(impossible)]), 1,
                    "cannot write the run directory", str(impossible))

    with pytest.raises(SystemExit) as e:
        train_cli.main(["--config", str(cfg), "--out", str(tmp_path / "o1"), "--threads", "-1"])
    _one_line_error(capsys, e.value.code, 2, "--threads", "positive integer")

    _one_line_error(capsys, train_cli.main(["--config", str(_write_run_cfg(tmp_path, device="bogus")),
                                            "--out", str(tmp_path / "o2")]), 2, "'device'", "bogus")
    assert not (tmp_path / "o2").exists()
    if not torch.cuda.is_available():
        _one_line_error(capsys, train_cli.main(["--config", str(cfg), "--out", str(tmp_path / "o3"),
                                                "--device", "cuda"]), 2, "CUDA is not available")

    empty = tmp_path / "o4" / "checkpoints" / "last.pt"
    empty.parent.mkdir(parents=True)
    empty.write_bytes(b"")
    _one_line_error(capsys, train_cli.main(["--config", str(cfg), "--out", str(tmp_path / "o4")]), 2,
                    f"checkpoint {empty} is empty")

    def full_disk(fd):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(os, "fsync", full_disk)
    _one_line_error(capsys, train_cli.main(["--config", str(cfg), "--out", str(tmp_path / "o5")]), 1,
                    "No space left on device", str(tmp_path / "o5" / "epochs.csv"))
    monkeypatch.undo()
    assert not (tmp_path / "o5" / "run.lock").exists()  # released on the way out


def test_eval_cli_checks_its_outputs_before_any_attack(tmp_path: Path, capsys, monkeypatch, tiny_run_config):
    from trades_instability.evaluate import cli as eval_cli
    from trades_instability.evaluate import suite as evaluation

    train(tiny_run_config(epochs=1), tmp_path / "run", log=lambda m: None)
    ckpt = tmp_path / "run" / "checkpoints" / "best.pt"

    def no_attacks(*a, **k):
        raise AssertionError("attacks ran before the output was checked")

    monkeypatch.setattr(evaluation, "evaluate_checkpoint", no_attacks)
    blocker = tmp_path / "a_file"
    blocker.write_text("")
    for extra, bad in ((["--out", str(blocker / "eval.json")], blocker / "eval.json"),
                       (["--out", str(tmp_path / "e.json"), "--landscape-out", str(tmp_path)], tmp_path)):
        rc = eval_cli.main(["--checkpoint", str(ckpt), "--suite", "cheap", "--device", "cpu", *extra])
        _one_line_error(capsys, rc, 2, str(bad), "cannot be written" if bad != tmp_path else "is a folder")


@pytest.mark.slow
def test_documented_recovery_after_kill_9_of_the_snakemake_tree(tmp_path: Path):
    """README "What happens when things go wrong": after a kill -9 of Snakemake and its jobs, run
    `snakemake --unlock` with the same arguments, then the same command with --rerun-incomplete; the
    interrupted training resumes (its stale run lock is taken over) and the run completes."""
    import signal

    target = "results/runs/default/seed0/run.json"
    first = subprocess.Popen(_cmd(tmp_path, target), stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                             start_new_session=True)
    last = tmp_path / "results/runs/default/seed0/state/checkpoints/last.pt"
    t0 = time.time()
    while not last.exists():
        assert first.poll() is None, f"snakemake ended before the first epoch was saved:\n{first.stdout.read()}"
        assert time.time() - t0 < 300, "no epoch saved in time"
        time.sleep(0.02)
    os.killpg(first.pid, signal.SIGKILL)  # snakemake, the job's shell and the trainer
    first.wait()
    assert (tmp_path / "results/runs/default/seed0/state/run.lock").exists()  # left behind by the kill
    refused = subprocess.run(_cmd(tmp_path, target), capture_output=True, text=True, timeout=300)
    assert refused.returncode != 0 and "--unlock" in refused.stdout + refused.stderr
    unlock = subprocess.run(_cmd(tmp_path, target, "--unlock"), capture_output=True, text=True, timeout=300)
    assert unlock.returncode == 0, unlock.stdout + unlock.stderr
    again = subprocess.run(_cmd(tmp_path, target, "--rerun-incomplete"), capture_output=True, text=True, timeout=600)
    assert again.returncode == 0, again.stdout + again.stderr
    log = (tmp_path / "results/runs/default/seed0/train.log").read_text()
    assert "taking over the stale lock" in log and "resumed from" in log, log
    assert '"status": "complete"' in (tmp_path / target).read_text()
