"""trades-eval on checkpoints this project did not write (a plain state_dict, a RobustBench model) and on
a run's last epoch beside its best. No network: the RobustBench model is a local file in the cache."""

from __future__ import annotations

import importlib.util
import json

import pytest
import torch

from trades_instability.config.run import RunConfig, SyntheticConfig, from_dict
from trades_instability.core.models import build_model
from trades_instability.data import datasets as data
from trades_instability.data.splits import load_splits
from trades_instability.evaluate import cli as eval_cli
from trades_instability.evaluate import foreign as foreign_models
from trades_instability.evaluate import suite as evaluation
from trades_instability.rundir.checkpoint import save_checkpoint

HAVE_ROBUSTBENCH = importlib.util.find_spec("robustbench") is not None
NO_ROBUSTBENCH = "robustbench (optional extra `robustbench`) is not installed in this environment"

# synthetic test set of RunConfig defaults: 10 classes, 32x32
SUITE = ("tiny: {attacks: [clean, pgd10, square, autoattack], n_examples: 8, batch_size: 8, square_queries: 10, "
         "apgd_iters: 2, fab_iters: 2, n_target_classes: 2, seed: 1}\n")


def _suites(tmp_path):
    f = tmp_path / "suites.yaml"
    f.write_text(SUITE)
    return f


def _run(tmp_path, capsys, *args):
    out = tmp_path / "eval.json"
    rc = eval_cli.main([*args, "--suite", "tiny", "--suites", str(_suites(tmp_path)), "--out", str(out),
                        "--device", "cpu", "--data-root", str(tmp_path / "data")])
    err = capsys.readouterr().err.strip()
    return rc, err, out


def test_foreign_state_dict_loads_and_evaluates(tmp_path, capsys):
    """A DataParallel-style state_dict of PreActResNet-18 (the fast-AT / AWP layout) written here, with its
    normalisation declared: every number of the usual eval JSON, and the same accuracy as the model itself."""
    torch.manual_seed(0)
    model = build_model("preact-resnet18", num_classes=10, width=4, normalize=([0.5] * 3, [0.25] * 3)).eval()
    sd = tmp_path / "foreign.pt"
    torch.save({"state_dict": {f"module.{k}": v for k, v in model.state_dict().items()}}, sd)
    rc, err, out = _run(tmp_path, capsys, "--state-dict", str(sd), "--arch", "preact-resnet18", "--num-classes", "10",
                        "--width", "4", "--normalize", "0.5,0.25", "--dataset", "synthetic")
    assert rc == 0, err
    doc = json.loads(out.read_text())
    for key in ("clean_acc", "pgd10_acc", "square_acc", "autoattack_acc", "fosc", "sgcs", "gap_pgd_square"):
        assert isinstance(doc[key], float), key
    assert doc["unstable"] == evaluation.classify(doc["pgd10_acc"], doc["square_acc"])
    assert doc["checkpoint_kind"] == "state_dict" and doc["checkpoint"] == str(sd) and doc["epoch"] is None
    assert doc["foreign_model"] == {"arch": "preact-resnet18", "width": 4, "num_classes": 10,
                                    "normalize": [[0.5] * 3, [0.25] * 3]}
    test = load_splits(from_dict({"dataset": "synthetic"})).test
    with torch.no_grad():
        clean = (model(data.to_float(test.images[:8])).argmax(1) == test.labels[:8]).float().mean()
    assert doc["clean_acc"] == pytest.approx(float(clean))


def test_foreign_state_dict_problems_are_one_line(tmp_path, capsys):
    model = build_model("preact-resnet18", num_classes=10, width=4)
    sd = tmp_path / "foreign.pt"
    torch.save(model.state_dict(), sd)
    base = ["--state-dict", str(sd), "--dataset", "synthetic"]
    cases = [
        ([*base, "--arch", "preact-resnet18", "--num-classes", "10"], "--state-dict needs --normalize"),
        ([*base, "--arch", "wrn-34-10", "--num-classes", "10", "--width", "4", "--normalize", "none"],
         "does not fit --arch wrn-34-10"),
        ([*base, "--arch", "preact-resnet18", "--num-classes", "100", "--width", "4", "--normalize", "none"],
         "--num-classes 100 but the synthetic test set has 10 classes"),
        ([*base, "--arch", "preact-resnet18", "--num-classes", "10", "--width", "4", "--normalize", "0.5"],
         "--normalize '0.5'"),
        (["--state-dict", str(tmp_path / "nope.pt"), "--arch", "resnet18", "--num-classes", "10", "--normalize", "none",
          "--dataset", "synthetic"], "does not exist"),
    ]
    for args, match in cases:
        rc, err, out = _run(tmp_path, capsys, *args)
        assert rc == 2 and len(err.splitlines()) == 1 and match in err, (args, err)
        assert not out.exists()


def test_parse_normalize():
    assert foreign_models.parse_normalize("none") is None
    assert foreign_models.parse_normalize("cifar10")[0] == [0.4914, 0.4822, 0.4465]
    assert foreign_models.parse_normalize("0.5,0.25") == ([0.5] * 3, [0.25] * 3)
    assert foreign_models.parse_normalize("1,2,3,4,5,6") == ([1.0, 2.0, 3.0], [4.0, 5.0, 6.0])
    with pytest.raises(foreign_models.ForeignModelError, match="std > 0"):
        foreign_models.parse_normalize("0.5,0")


def test_last_checkpoint_is_evaluated_into_last(tmp_path, capsys):
    """best.pt and last.pt of one run: the JSON's top level is best's, "last" holds last's own numbers."""
    cfg = RunConfig(dataset="synthetic", width=4, synthetic=SyntheticConfig(num_classes=10, test_size=16,
                                                                            image_size=16))
    paths = {}
    for epoch, kind in ((3, "best"), (5, "last")):
        torch.manual_seed(epoch)
        m = build_model("resnet18", num_classes=10, width=4)
        paths[kind] = tmp_path / f"{kind}.pt"
        save_checkpoint(paths[kind], {
            "model": m.state_dict(), "model_meta": {"arch": "resnet18", "width": 4, "num_classes": 10,
                                                    "image_size": 16},
            "config": cfg.to_dict(), "epoch": epoch, "kind": kind, "val": {}})
    rc, err, out = _run(tmp_path, capsys, "--checkpoint", str(paths["best"]), "--last-checkpoint", str(paths["last"]))
    assert rc == 0, err
    doc = json.loads(out.read_text())
    assert doc["epoch"] == 3 and doc["last"]["epoch"] == 5 and doc["last"]["same_as_best"] is False
    for run_kind in ("best", "last"):  # each against an evaluation of that checkpoint alone
        rc, err, alone = _run(tmp_path, capsys, "--checkpoint", str(paths[run_kind]))
        ref = json.loads(alone.read_text())
        got = doc if run_kind == "best" else doc["last"]
        for key in ("clean_acc", "pgd10_acc", "square_acc", "autoattack_acc", "fosc", "unstable"):
            assert got[key] == ref[key], (run_kind, key)
    # the same epoch: the same weights, evaluated once
    rc, err, out = _run(tmp_path, capsys, "--checkpoint", str(paths["best"]), "--last-checkpoint", str(paths["best"]))
    doc = json.loads(out.read_text())
    assert rc == 0 and doc["last"]["same_as_best"] and doc["last"]["pgd10_acc"] == doc["pgd10_acc"]
    rc, err, _ = _run(tmp_path, capsys, "--state-dict", str(paths["best"]), "--arch", "resnet18", "--num-classes", "10",
                      "--normalize", "none", "--last-checkpoint", str(paths["last"]))
    assert rc == 2 and "--last-checkpoint needs --checkpoint" in err


@pytest.mark.skipif(HAVE_ROBUSTBENCH, reason="checks the message shown when robustbench is missing")
def test_robustbench_missing_is_one_line_before_any_work(tmp_path, capsys):
    rc, err, out = _run(tmp_path, capsys, "--robustbench", "Standard")
    assert rc == 2 and len(err.splitlines()) == 1 and "pip install -e '.[robustbench]'" in err, err
    assert not out.exists()


def test_robustbench_cache_layout_and_dataset_check(tmp_path):
    # robustbench.utils.load_model looks for {model_dir}/{dataset}/{threat_model}/{name}.pt first
    assert foreign_models.robustbench_cache_file(tmp_path / "robustbench", "Standard", "cifar10") == \
        tmp_path / "robustbench" / "cifar10" / "Linf" / "Standard.pt"
    with pytest.raises(foreign_models.ForeignModelError, match="--dataset cifar10 or cifar100"):
        foreign_models.load_robustbench_model("Standard", "synthetic", tmp_path)


@pytest.mark.skipif(not HAVE_ROBUSTBENCH, reason=NO_ROBUSTBENCH)
def test_robustbench_model_loads_from_a_local_file_without_network(tmp_path):
    foreign_models.require_robustbench()  # makes robustbench importable beside PyPI's pyautoattack
    from robustbench.model_zoo import model_dicts
    from robustbench.model_zoo.enums import BenchmarkDataset, ThreatModel

    torch.manual_seed(0)
    arch = model_dicts[BenchmarkDataset.cifar_10][ThreatModel.Linf]["Standard"]["model"]().eval()
    cached = foreign_models.robustbench_cache_file(tmp_path, "Standard", "cifar10")
    cached.parent.mkdir(parents=True)
    torch.save({"state_dict": arch.state_dict()}, cached)
    model = foreign_models.load_robustbench_model("Standard", "cifar10", tmp_path)
    x = torch.rand(2, 3, 32, 32)
    with torch.no_grad():
        torch.testing.assert_close(model(x), arch(x))
