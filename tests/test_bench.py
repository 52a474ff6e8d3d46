"""The benchmark command runs end to end in tiny mode; its numbers are printed, never asserted."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from trades_instability.tools import bench, bench_eval, bench_training


def _table(out: str, first_header: str) -> list[list[str]]:
    lines = out.splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith(f"| {first_header}"))
    rows = []
    for line in lines[start:]:
        if not line.startswith("|"):
            break
        rows.append([c.strip() for c in line.strip("|").split("|")])
    return rows


def test_tiny_benchmark_prints_the_table_and_writes_json(tmp_path, capsys):
    out_json = tmp_path / "bench.json"
    assert bench.main(["--tiny", "--threads", "1", "--json", str(out_json)]) == 0
    out = capsys.readouterr().out
    print(out)  # the numbers, for the log; never asserted

    assert "command: " in out and "bench arguments: --tiny --threads 1 --json" in out
    assert "device: cpu" in out and "forward FLOPs (FlopCounterMode, measured)" in out and "peak GEMM" in out

    train = _table(out, "training path")
    assert train[0] == bench_training.TRAIN_HEADERS and set(train[1][0]) == {"-"}
    body = train[2:]
    assert [(r[0], r[1]) for r in body] == [
        ("reference (official TRADES loop)", "fp32"), ("project (Trainer step)", "fp32"),
        ("project (Trainer step)", "bf16"),
    ]
    assert all(len(r) == len(bench_training.TRAIN_HEADERS) for r in body)
    assert body[0][4] == "1.00"  # the ratio column is relative to the reference row
    for r in body:
        float(r[2]), float(r[3]), float(r[4]), float(r[6]), float(r[7])  # numbers, whatever they are
        assert r[5] == "-"  # no CUDA memory on CPU

    ev = _table(out, "evaluation")
    assert ev[0] == bench_eval.EVAL_HEADERS
    names = [r[0] for r in ev[2:]]
    assert names[:2] == ["PGD-10 validation (+FOSC, SGCS)"] * 2 and names[2].startswith("AutoAttack (custom; reduced")
    assert [r[1] for r in ev[2:]] == ["fp32", "bf16", "fp32"]

    data = json.loads(out_json.read_text())
    assert data["device"].startswith("cpu") and data["bench_args"][0] == "--tiny"
    assert [t["precision"] for t in data["train"]] == ["fp32", "fp32", "bf16"]
    for t in data["train"]:
        assert set(t) >= {"images_per_s", "ms_per_step", "ratio_to_reference", "peak_mem_gib",
                          "fwd_equivalents_per_image", "floor_fraction", "epoch_50k_s"}
    assert [e["what"] for e in data["eval"]] == ["pgd10_validation", "pgd10_validation", "autoattack"]
    assert data["forward_gflops_per_image"] > 0


def test_module_entry_point_dispatches_bench():
    r = subprocess.run([sys.executable, "-m", "trades_instability", "bench", "--help"], capture_output=True, text=True,
                       timeout=120)
    assert r.returncode == 0 and "--tiny" in r.stdout and "--compile" in r.stdout and "--json" in r.stdout


def test_bad_arguments_are_refused(capsys):
    with pytest.raises(SystemExit):
        bench.main(["--tiny", "--steps", "0"])
    with pytest.raises(SystemExit):
        bench.main(["--dataset", "imagenet"])


def test_bench_on_cifar100_files_and_a_clear_error_without_them(tmp_path, monkeypatch, capsys):
    """--dataset cifar100 reads the standard cifar-100-python/ folder through torchvision (tiny real-format
    files here); without the folder the bench stops with the dataset's own message, exit 2."""
    import torchvision.datasets as tvd
    from test_data import patch_md5, write_cifar100

    write_cifar100(tmp_path, n_train=48, n_test=8)
    patch_md5(monkeypatch, tvd.CIFAR100, tmp_path)
    assert bench.main(["--tiny", "--threads", "1", "--dataset", "cifar100", "--data-root", str(tmp_path),
                       "--no-eval"]) == 0
    out = capsys.readouterr().out
    assert "100 classes, 32x32" in out and "data cifar100 (48 train images)" in out
    assert len(_table(out, "training path")) == 5

    assert bench.main(["--tiny", "--dataset", "cifar100", "--data-root", str(tmp_path / "nowhere")]) == 2
    out, err = capsys.readouterr()
    assert "trades_instability bench" not in out and "cifar-100-python" in err
