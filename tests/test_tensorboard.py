"""TensorBoard event files of a run (train/tensorboard_log.py): read back with tensorboard's own reader they
equal epochs.csv and batches.csv, across a kill -9 and a resume, with no duplicated or out-of-order step;
a real `tensorboard` server serves them over its HTTP API."""

from __future__ import annotations

import csv
import json
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import numpy as np
import pytest

from trades_instability.rundir import layout
from trades_instability.train import tensorboard_log as tb
from trades_instability.train.errors import Interrupted
from trades_instability.train.loop import Trainer

RUN_YAML = ("dataset: synthetic\nsynthetic: {num_classes: 4, train_size: 96, test_size: 32, image_size: 16}\n"
            "width: 2\nepochs: 4\nbatch_size: 32\nval_batch_size: 32\nattack: {steps: 3}\ndevice: cpu\n"
            "log_batch_metrics: true\nfix: {enabled: true, fosc_threshold: 0.05, noise_batches: 1}\n")


def _read_board(folder: Path):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    acc = EventAccumulator(str(folder), size_guidance={"scalars": 0, "tensors": 0})
    acc.Reload()
    return acc


def _csv(path: Path) -> list[dict[str, str]]:
    with open(path, newline="") as fh:
        return list(csv.DictReader(fh))


def assert_board_equals_csvs(out: Path) -> None:
    """Every column of epochs.csv (batches.csv) is one tag whose points are exactly the CSV's rows: the same
    steps, strictly increasing (none duplicated), and the same values (TensorBoard stores float32)."""
    for sub, rows, columns, tag, step_col in (
            (tb.EPOCH_DIR, _csv(out / layout.EPOCHS_CSV), tb.EPOCH_SCALARS, tb.epoch_tag, "epoch"),
            (tb.BATCH_DIR, _csv(out / layout.BATCHES_CSV), tb.BATCH_SCALARS, tb.batch_tag, "step")):
        acc = _read_board(out / layout.TENSORBOARD / sub)
        assert rows
        assert set(acc.Tags()["scalars"]) == {tag(c) for c in columns if any(r[c] != "" for r in rows)}
        for c in columns:
            want = [(int(r[step_col]), np.float32(float(r[c]))) for r in rows if r[c] != ""]
            if not want:
                continue
            got = [(e.step, np.float32(e.value)) for e in acc.Scalars(tag(c))]
            steps = [s for s, _ in got]
            assert steps == sorted(set(steps)), f"{tag(c)}: duplicated or out-of-order steps {steps}"
            assert got == want, f"{tag(c)} differs from the CSV"


def _config_text(out: Path) -> str:
    acc = _read_board(out / layout.TENSORBOARD / tb.EPOCH_DIR)
    (event,) = acc.Tensors("config/text_summary")  # written once, at step 0
    assert event.step == 0
    return event.tensor_proto.string_val[0].decode()


@pytest.fixture(scope="module")
def killed_and_resumed(tmp_path_factory) -> Path:
    """A real trainer process killed with SIGKILL after its first epoch, then resumed to the end."""
    tmp = tmp_path_factory.mktemp("tb")
    cfg, out = tmp / "run.yaml", tmp / "runs" / "s" / "seed0" / "state"
    cfg.write_text(RUN_YAML)
    cmd = [sys.executable, "-m", "trades_instability", "train", "--config", str(cfg), "--out", str(out),
           "--no-progress", "--threads", "1"]
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.time() + 120
        while time.time() < deadline and proc.poll() is None:
            if (out / layout.EPOCHS_CSV).is_file() and len(_csv(out / layout.EPOCHS_CSV)) >= 1:
                break
            time.sleep(0.05)
        assert proc.poll() is None, "the trainer ended before it could be killed"
        proc.send_signal(signal.SIGKILL)
    finally:
        proc.wait()
    assert not (out / layout.RUN_JSON).exists()
    first = len(_csv(out / layout.EPOCHS_CSV))
    assert 1 <= first < 4
    r = subprocess.run(cmd, capture_output=True, text=True, timeout=300, check=False)
    assert r.returncode == 0, r.stderr
    assert "resumed from" in r.stdout
    assert len(list((out / layout.TENSORBOARD / tb.EPOCH_DIR).glob("events.out.tfevents.*"))) == 2  # two writers
    return out


def test_a_killed_and_resumed_run_has_event_files_equal_to_its_csvs(killed_and_resumed: Path):
    out = killed_and_resumed
    assert [int(r["epoch"]) for r in _csv(out / layout.EPOCHS_CSV)] == [1, 2, 3, 4]
    assert_board_equals_csvs(out)
    assert "fix:" in _config_text(out) and "log_batch_metrics: true" in _config_text(out)


def test_points_after_the_resume_state_are_purged_and_a_run_switched_on_mid_way_is_backfilled(
        tmp_path: Path, tiny_run_config):
    def quiet(m):
        return None

    off = tiny_run_config(epochs=3, log_batch_metrics=True, tensorboard=False)
    on = tiny_run_config(epochs=3, log_batch_metrics=True, tensorboard=True)
    with pytest.raises(Interrupted):
        Trainer(off, tmp_path, log=quiet, stop_after_epoch=1).run()
    assert not (tmp_path / layout.TENSORBOARD).exists()  # tensorboard: false writes nothing
    epoch1 = tmp_path / "last-epoch1.pt"
    shutil.copy(tmp_path / layout.LAST_PT, epoch1)
    # switched on at the resume (an output-only key: the same run goes on): epoch 1 is written from last.pt
    with pytest.raises(Interrupted):
        Trainer(on, tmp_path, log=quiet, stop_after_epoch=2).run()
    assert [e.step for e in _read_board(tmp_path / "tensorboard/epoch").Scalars("val/val_fosc")] == [1, 2]
    # as if killed after epoch 2's points but before its last.pt: the resume starts again from epoch 1
    shutil.copy(epoch1, tmp_path / layout.LAST_PT)
    time.sleep(1.1)  # event file names carry the second they were opened in: keep them in order
    info = Trainer(on, tmp_path, log=quiet).run()
    assert info["status"] == "complete"
    assert_board_equals_csvs(tmp_path)
    assert _config_text(tmp_path)  # once, despite three writers


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _get_json(url: str):
    with urllib.request.urlopen(url, timeout=5) as r:
        return json.loads(r.read())


def test_a_tensorboard_server_serves_the_scalars_of_every_run(killed_and_resumed: Path):
    logdir = killed_and_resumed.parents[2]  # the runs folder, as `tensorboard --logdir results/runs`
    run = "s/seed0/state/tensorboard/epoch"
    port = _free_port()
    server = subprocess.Popen([sys.executable, "-m", "tensorboard.main", "--logdir", str(logdir), "--host",
                               "127.0.0.1", "--port", str(port), "--reload_interval", "1"],
                              stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    base = f"http://127.0.0.1:{port}/data"
    rows = _csv(killed_and_resumed / layout.EPOCHS_CSV)
    want = [[int(r["epoch"]), float(np.float32(float(r["val_fosc"])))] for r in rows]
    try:
        got, deadline = None, time.time() + 120
        while time.time() < deadline:
            assert server.poll() is None, server.stderr.read()
            try:
                points = _get_json(f"{base}/plugin/scalars/scalars?run={run}&tag=val/val_fosc")
                got = [[step, value] for _, step, value in points]
                if got == want:
                    break
            except (OSError, ValueError):  # not listening yet, or the run not loaded yet (HTTP 400)
                pass
            time.sleep(0.5)
        assert got == want
        runs = _get_json(f"{base}/runs")
        assert set(runs) == {run, "s/seed0/state/tensorboard/batch"}
        tags = _get_json(f"{base}/plugin/scalars/tags")
        assert set(tags[run]) == {tb.epoch_tag(c) for c in tb.EPOCH_SCALARS}
    finally:
        server.terminate()
        try:
            server.wait(timeout=20)
        except subprocess.TimeoutExpired:
            server.kill()
            server.wait()


def test_switching_tensorboard_keeps_the_state_folder_and_any_other_change_moves_it(tmp_path: Path):
    from trades_instability.rundir.state import prepare_state

    state, cfg = tmp_path / "state", tmp_path / "config.yaml"
    cfg.write_text("beta: 3.0\ntensorboard: true\n")
    prepare_state(cfg, state)
    (state / layout.CHECKPOINTS).mkdir()
    (state / layout.LAST_PT).write_bytes(b"x")
    cfg.write_text("beta: 3.0\ntensorboard: false\n")
    assert prepare_state(cfg, state) == f"resuming from {state / layout.LAST_PT}"
    cfg.write_text("beta: 1.0\ntensorboard: false\n")
    assert "moved" in prepare_state(cfg, state) and not (state / layout.LAST_PT).exists()
