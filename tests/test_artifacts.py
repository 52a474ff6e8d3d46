"""Crash-safe writes and checkpoint loading errors."""

import pytest
import torch

from trades_instability.core.models import build_model
from trades_instability.rundir.atomic_io import atomic_path, atomic_write_text, read_json, write_json
from trades_instability.rundir.checkpoint import CheckpointError, load_checkpoint, load_model, save_checkpoint


def test_a_writer_that_dies_leaves_the_old_file_and_no_temporary(tmp_path):
    target = tmp_path / "epochs.csv"
    atomic_write_text(target, "complete\n")
    with pytest.raises(RuntimeError):
        with atomic_path(target) as tmp:
            tmp.write_text("half a fi")
            raise RuntimeError("killed mid-write")
    assert target.read_text() == "complete\n"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["epochs.csv"]


def test_json_round_trip_and_clear_error_on_garbage(tmp_path):
    write_json(tmp_path / "a.json", {"x": torch.tensor([1.0, 2.0]), "y": torch.tensor(3)})
    assert read_json(tmp_path / "a.json") == {"x": [1.0, 2.0], "y": 3}
    (tmp_path / "b.json").write_text('{"x": ')
    with pytest.raises(ValueError, match="b.json: not valid JSON"):
        read_json(tmp_path / "b.json")


def test_checkpoint_errors_name_the_file(tmp_path):
    model = build_model(num_classes=3, width=2)
    meta = {"arch": "resnet18", "width": 2, "num_classes": 3, "image_size": 16}
    good = tmp_path / "best.pt"
    save_checkpoint(good, {"model": model.state_dict(), "model_meta": meta})
    loaded, ckpt = load_model(good)
    assert all(torch.equal(loaded.state_dict()[k], v) for k, v in model.state_dict().items())

    with pytest.raises(CheckpointError, match="does not exist"):
        load_checkpoint(tmp_path / "missing.pt")
    truncated = tmp_path / "truncated.pt"
    truncated.write_bytes(good.read_bytes()[:1000])
    with pytest.raises(CheckpointError, match=str(truncated)):
        load_checkpoint(truncated)
    foreign = tmp_path / "foreign.pt"
    torch.save({"net": model.state_dict()}, foreign)
    with pytest.raises(CheckpointError, match="not a trades_instability checkpoint"):
        load_checkpoint(foreign)
    other_arch = tmp_path / "other.pt"
    save_checkpoint(other_arch, {"model": build_model(num_classes=3, width=4).state_dict(), "model_meta": meta})
    with pytest.raises(CheckpointError, match="does not match the architecture"):
        load_model(other_arch)


class _Exploit:
    """Unpickling this calls ``os.system``: a real malicious payload (it would create ``marker``)."""

    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        import os

        return os.system, (f"touch {self.marker}",)


def test_checkpoint_with_malicious_pickle_is_refused(tmp_path):
    """A checkpoint whose pickle would run a callable is refused with the file named, and the callable never runs
    (torch's weights_only unpickler). The control proves the payload is live: plain pickle runs it."""
    import pickle

    marker = tmp_path / "pwned"
    payload = {"format": "trades_instability/checkpoint-v1", "model": _Exploit(marker)}
    evil = tmp_path / "evil.pt"
    torch.save(payload, evil)
    with pytest.raises(CheckpointError, match=str(evil)):
        load_checkpoint(evil)
    assert not marker.exists(), "load_checkpoint executed the pickled callable"
    pickle.loads(pickle.dumps(payload))  # control: an unguarded unpickler runs it
    assert marker.exists()
