"""Data loading through the real loaders on tiny files written in the real on-disk formats."""

from __future__ import annotations

import hashlib
import pickle
import tarfile
import urllib.error
from pathlib import Path

import numpy as np
import pytest
import torch
import torchvision.datasets as tvd
from PIL import Image

from trades_instability.config.run import RunConfig, SyntheticConfig
from trades_instability.data import datasets as D
from trades_instability.data import splits as S
from trades_instability.data import tinyimagenet as T
from trades_instability.data.synthetic import make_synthetic


def _md5(path: Path) -> str:
    return hashlib.md5(path.read_bytes()).hexdigest()


def _no_network(*args, **kwargs):
    raise urllib.error.URLError("network disabled in tests")


@pytest.fixture(autouse=True)
def _block_downloads(monkeypatch):
    """No test may touch the network: every download path raises at once."""
    import torchvision.datasets.utils as tv_utils

    monkeypatch.setattr(tv_utils, "_get_redirect_url", _no_network)
    monkeypatch.setattr(tv_utils, "_urlretrieve", _no_network)


# ------------------------------------------------------------------------------------ CIFAR files

def _write_pickle(path: Path, obj) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "wb") as fh:
        pickle.dump(obj, fh, protocol=2)


def _cifar_rows(rng, n):
    # The real format: one row per image, 1024 red then 1024 green then 1024 blue, row-major.
    return rng.integers(0, 256, size=(n, 3072), dtype=np.uint8)


def write_cifar10(root: Path, per_batch=4, n_test=5, seed=0):
    rng = np.random.default_rng(seed)
    folder = root / "cifar-10-batches-py"
    rows, labels = [], []
    for i in range(1, 6):
        r = _cifar_rows(rng, per_batch)
        lab = [int(v) for v in rng.integers(0, 10, per_batch)]
        rows.append(r), labels.extend(lab)
        _write_pickle(folder / f"data_batch_{i}", {"batch_label": f"training batch {i} of 5", "labels": lab,
                                                  "data": r, "filenames": [f"img{j}.png" for j in range(per_batch)]})
    t_rows = _cifar_rows(rng, n_test)
    t_lab = [int(v) for v in rng.integers(0, 10, n_test)]
    _write_pickle(folder / "test_batch", {"batch_label": "testing batch 1 of 1", "labels": t_lab, "data": t_rows,
                                          "filenames": [f"t{j}.png" for j in range(n_test)]})
    _write_pickle(folder / "batches.meta", {"num_cases_per_batch": per_batch, "num_vis": 3072,
                                            "label_names": [f"c{k}" for k in range(10)]})
    return np.concatenate(rows), np.array(labels), t_rows, np.array(t_lab)


def write_cifar100(root: Path, n_train=12, n_test=6, seed=1):
    rng = np.random.default_rng(seed)
    folder = root / "cifar-100-python"
    out = []
    for name, n in (("train", n_train), ("test", n_test)):
        r = _cifar_rows(rng, n)
        fine = [int(v) for v in rng.integers(0, 100, n)]
        _write_pickle(folder / name, {"filenames": [f"{name}{j}.png" for j in range(n)], "batch_label": name,
                                      "fine_labels": fine, "coarse_labels": [f // 5 for f in fine], "data": r})
        out += [r, np.array(fine)]
    _write_pickle(folder / "meta", {"fine_label_names": [f"f{k}" for k in range(100)],
                                    "coarse_label_names": [f"c{k}" for k in range(20)]})
    return out


def patch_md5(monkeypatch, cls, root: Path):
    """Point the REAL torchvision class's md5 lists at the files we wrote (its integrity check still runs)."""
    folder = root / cls.base_folder
    monkeypatch.setattr(cls, "train_list", [[f, _md5(folder / f)] for f, _ in cls.train_list])
    monkeypatch.setattr(cls, "test_list", [[f, _md5(folder / f)] for f, _ in cls.test_list])
    monkeypatch.setattr(cls, "meta", {**cls.meta, "md5": _md5(folder / cls.meta["filename"])})


def cfg_for(dataset, root, **kw) -> RunConfig:
    return RunConfig(dataset=dataset, data_root=str(root), **kw)


def test_cifar10_loads_through_torchvision(tmp_path, monkeypatch):
    rows, labels, t_rows, t_labels = write_cifar10(tmp_path)
    patch_md5(monkeypatch, tvd.CIFAR10, tmp_path)
    s = S.load_splits(cfg_for("cifar10", tmp_path, download=False))
    assert s.name == "cifar10" and s.num_classes == 10 and s.image_size == 32
    assert s.train.images.dtype == torch.uint8 and s.train.images.shape == (20, 3, 32, 32)
    assert s.train.labels.dtype == torch.int64
    # pixel layout: row -> (3, 32, 32) channel-major, exactly as the official files define it
    assert torch.equal(s.train.images, torch.from_numpy(rows.reshape(-1, 3, 32, 32)))
    assert torch.equal(s.train.labels, torch.from_numpy(labels))
    assert torch.equal(s.test.images, torch.from_numpy(t_rows.reshape(-1, 3, 32, 32)))
    assert torch.equal(s.test.labels, torch.from_numpy(t_labels))
    assert s.val is s.test  # default val_split: test


def test_cifar100_loads_through_torchvision(tmp_path, monkeypatch):
    tr, tr_lab, te, te_lab = write_cifar100(tmp_path)
    patch_md5(monkeypatch, tvd.CIFAR100, tmp_path)
    s = S.load_splits(cfg_for("cifar100", tmp_path, download=False))
    assert s.num_classes == 100 and s.train.images.shape == (12, 3, 32, 32) and s.test.images.shape == (6, 3, 32, 32)
    assert torch.equal(s.train.images, torch.from_numpy(tr.reshape(-1, 3, 32, 32)))
    assert torch.equal(s.train.labels, torch.from_numpy(tr_lab))
    assert torch.equal(s.test.labels, torch.from_numpy(te_lab))


def test_cifar_md5_mismatch_is_reported(tmp_path):
    write_cifar100(tmp_path)  # md5 lists NOT patched: torchvision's real check rejects our files
    with pytest.raises(D.DatasetUnavailable) as e:
        S.load_splits(cfg_for("cifar100", tmp_path, download=False))
    assert "md5" in str(e.value) and "cifar-100-python" in str(e.value)


@pytest.mark.parametrize("download", [False, True])
def test_cifar_missing_raises_clear_error(tmp_path, download):
    root = tmp_path / "nowhere"
    with pytest.raises(D.DatasetUnavailable) as e:
        S.load_splits(cfg_for("cifar100", root, download=download))
    msg = str(e.value)
    assert str(root.resolve()) in msg
    assert "cifar-100-python/" in msg and "cifar-100-python.tar.gz" in msg and "train, test, meta" in msg
    assert "data_root" in msg and "download: false" in msg
    if download:
        assert "failed" in msg  # says the download was tried and why it did not work


def test_cifar10_missing_names_its_files(tmp_path):
    with pytest.raises(D.DatasetUnavailable) as e:
        S.load_splits(cfg_for("cifar10", tmp_path, download=False))
    assert "cifar-10-batches-py/" in str(e.value) and "data_batch_1" in str(e.value)


def test_cifar_local_archive_is_extracted_without_network(tmp_path, monkeypatch):
    """download: true with the official archive already in data_root: verified and extracted offline."""
    src = tmp_path / "src"
    tr, tr_lab, _, _ = write_cifar100(src)
    patch_md5(monkeypatch, tvd.CIFAR100, src)
    root = tmp_path / "root"
    root.mkdir()
    archive = root / "cifar-100-python.tar.gz"
    with tarfile.open(archive, "w:gz") as tar:
        tar.add(src / "cifar-100-python", arcname="cifar-100-python")
    monkeypatch.setattr(tvd.CIFAR100, "tgz_md5", _md5(archive))
    s = S.load_splits(cfg_for("cifar100", root, download=True))
    assert torch.equal(s.train.images, torch.from_numpy(tr.reshape(-1, 3, 32, 32)))


# ------------------------------------------------------------------------------------ TinyImageNet

WNIDS = ["n02", "n01", "n03"]  # deliberately unsorted in wnids.txt; labels follow sorted order


def write_tiny(root: Path):
    folder = root / "tiny-imagenet-200"
    (folder).mkdir(parents=True)
    (folder / "wnids.txt").write_text("\n".join(WNIDS) + "\n")
    colours = {"n01": (200, 30, 30), "n02": (30, 200, 30), "n03": (30, 30, 200)}
    for w in WNIDS:
        d = folder / "train" / w / "images"
        d.mkdir(parents=True)
        for i in range(2):
            Image.new("RGB", (64, 64), colours[w]).save(d / f"{w}_{i}.JPEG", quality=95)
        (folder / "train" / w / f"{w}_boxes.txt").write_text("")
    # one grayscale JPEG in train, as in the real data
    Image.new("L", (64, 64), 128).save(folder / "train" / "n01" / "images" / "n01_9.JPEG", quality=95)
    vd = folder / "val" / "images"
    vd.mkdir(parents=True)
    ann = []
    for i, w in enumerate(["n03", "n01", "n02", "n01"]):
        Image.new("RGB", (64, 64), colours[w]).save(vd / f"val_{i}.JPEG", quality=95)
        ann.append(f"val_{i}.JPEG\t{w}\t0\t0\t63\t63")
    (folder / "val" / "val_annotations.txt").write_text("\n".join(ann) + "\n")
    (folder / "test" / "images").mkdir(parents=True)  # unlabelled official test set: ignored
    return folder


def test_tinyimagenet_layout_and_cache(tmp_path, monkeypatch):
    folder = write_tiny(tmp_path)
    s = S.load_splits(cfg_for("tinyimagenet", tmp_path, download=False))
    assert s.name == "tinyimagenet" and s.num_classes == 3 and s.image_size == 64
    assert s.train.images.shape == (7, 3, 64, 64) and s.train.images.dtype == torch.uint8
    assert s.test.images.shape == (4, 3, 64, 64)
    assert s.train.labels.tolist() == [0, 0, 0, 1, 1, 2, 2]  # sorted wnids: n01, n02, n03
    assert s.test.labels.tolist() == [2, 0, 1, 0]  # val_0..val_3 from val_annotations.txt
    # colours survive JPEG; the grayscale image became 3 equal channels
    red = s.train.images[0].float().mean((1, 2))
    assert (red - torch.tensor([200.0, 30.0, 30.0])).abs().max() < 6
    gray = s.train.images[2].float()  # n01_9 sorts after n01_0, n01_1
    assert (gray - 128).abs().max() < 3 and torch.equal(gray[0], gray[1])

    cache = folder / T.TINY_CACHE
    assert cache.is_file()
    # second load comes from the cache: decoding would now fail
    monkeypatch.setattr(T, "_decode_jpegs", lambda *a, **k: (_ for _ in ()).throw(AssertionError("decoded again")))
    s2 = S.load_splits(cfg_for("tinyimagenet", tmp_path, download=False))
    assert torch.equal(s2.train.images, s.train.images) and torch.equal(s2.test.labels, s.test.labels)


def test_tinyimagenet_corrupt_cache_is_rebuilt(tmp_path):
    folder = write_tiny(tmp_path)
    first = S.load_splits(cfg_for("tinyimagenet", tmp_path, download=False))
    (folder / T.TINY_CACHE).write_bytes(b"truncated garbage")
    with pytest.warns(UserWarning, match="unreadable"):
        again = S.load_splits(cfg_for("tinyimagenet", tmp_path, download=False))
    assert torch.equal(again.train.images, first.train.images)
    # a new image invalidates the cache through its fingerprint
    Image.new("RGB", (64, 64), (1, 2, 3)).save(folder / "train" / "n03" / "images" / "n03_7.JPEG")
    with pytest.warns(UserWarning, match="does not match"):
        more = S.load_splits(cfg_for("tinyimagenet", tmp_path, download=False))
    assert len(more.train) == 8


@pytest.mark.parametrize("download", [False, True])
def test_tinyimagenet_missing_raises_clear_error(tmp_path, download):
    with pytest.raises(D.DatasetUnavailable) as e:
        S.load_splits(cfg_for("tinyimagenet", tmp_path, download=download))
    msg = str(e.value)
    assert "tiny-imagenet-200/" in msg and "wnids.txt" in msg and "val/val_annotations.txt" in msg
    assert "tiny-imagenet-200.zip" in msg and str(tmp_path.resolve()) in msg and "download: false" in msg


# -------------------------------------------------------------------------------------- synthetic

def synth(**kw):
    return RunConfig(dataset="synthetic", synthetic=SyntheticConfig(**kw))


def test_synthetic_deterministic_and_shaped():
    a = S.load_splits(synth(num_classes=5, train_size=300, test_size=100, seed=3))
    b = S.load_splits(synth(num_classes=5, train_size=300, test_size=100, seed=3))
    c = S.load_splits(synth(num_classes=5, train_size=300, test_size=100, seed=4))
    assert torch.equal(a.train.images, b.train.images) and torch.equal(a.train.labels, b.train.labels)
    assert torch.equal(a.test.images, b.test.images)
    assert not torch.equal(a.train.images, c.train.images)
    # separate streams: a bigger train set leaves the test set unchanged
    d = S.load_splits(synth(num_classes=5, train_size=400, test_size=100, seed=3))
    assert torch.equal(d.test.images, a.test.images)
    assert a.train.images.shape == (300, 3, 32, 32) and a.test.images.shape == (100, 3, 32, 32)
    assert a.train.images.dtype == torch.uint8 and a.num_classes == 5 and a.image_size == 32
    assert sorted(a.train.labels.unique().tolist()) == [0, 1, 2, 3, 4]
    assert torch.bincount(a.train.labels).tolist() == [60] * 5  # balanced
    big = S.load_splits(synth(num_classes=200, train_size=400, test_size=200, image_size=64))
    assert big.train.images.shape == (400, 3, 64, 64) and big.image_size == 64 and big.num_classes == 200


def test_synthetic_fast():
    import time

    t = time.perf_counter()
    make_synthetic(num_classes=10, train_size=2000, test_size=500, image_size=32, seed=0)
    assert time.perf_counter() - t < 3.0  # < 1 s on an idle core; slack for a loaded CI machine


def test_synthetic_learnable_but_not_trivial():
    tr, te = make_synthetic(num_classes=10, train_size=2000, test_size=500, seed=0)
    x, xt = D.to_float(tr.images).flatten(1), D.to_float(te.images).flatten(1)
    means = torch.stack([x[tr.labels == k].mean(0) for k in range(10)])
    acc = (torch.cdist(xt, means).argmin(1) == te.labels).float().mean().item()
    assert acc > 0.3  # well above chance (0.1) ...
    assert acc < 0.95  # ... but pixel-wise templates do not solve it
    # not saturated: images use the range without being mostly clipped
    assert (tr.images == 0).float().mean() < 0.05 and (tr.images == 255).float().mean() < 0.05


# ----------------------------------------------------------------------------------------- splits

def test_holdout_split_removes_examples_from_train():
    base = S.load_splits(synth(train_size=200, test_size=50))
    s = S.load_splits(RunConfig(dataset="synthetic", synthetic=SyntheticConfig(train_size=200, test_size=50),
                                val_split="holdout", holdout_size=40))
    assert len(s.train) == 160 and len(s.val) == 40 and len(s.test) == 50
    # train + holdout is exactly the original train set (as rows), with no overlap
    rows = lambda im: {bytes(r) for r in im.flatten(1).numpy()}  # noqa: E731
    assert rows(s.train.images) | rows(s.val.images) == rows(base.train.images)
    assert not rows(s.train.images) & rows(s.val.images)
    # fixed permutation: independent of the run seed
    s2 = S.load_splits(RunConfig(dataset="synthetic", seed=99, synthetic=SyntheticConfig(train_size=200, test_size=50),
                                 val_split="holdout", holdout_size=40))
    assert torch.equal(s2.val.images, s.val.images)


def test_val_size_takes_fixed_subset():
    cfg = RunConfig(dataset="synthetic", synthetic=SyntheticConfig(train_size=100, test_size=80), val_size=30)
    s = S.load_splits(cfg)
    assert len(s.val) == 30 and len(s.test) == 80 and len(s.train) == 100
    test_rows = {bytes(r) for r in s.test.images.flatten(1).numpy()}
    assert all(bytes(r) in test_rows for r in s.val.images.flatten(1).numpy())
    assert torch.equal(S.load_splits(cfg).val.images, s.val.images)
    full = S.load_splits(RunConfig(dataset="synthetic", synthetic=SyntheticConfig(train_size=100, test_size=80),
                                   val_size=80))
    assert torch.equal(full.val.images, full.test.images)


def test_split_errors():
    with pytest.raises(ValueError, match="holdout_size"):
        S.load_splits(RunConfig(dataset="synthetic", synthetic=SyntheticConfig(train_size=100), val_split="holdout",
                                holdout_size=100))
    with pytest.raises(ValueError, match="val_size"):
        S.load_splits(RunConfig(dataset="synthetic", synthetic=SyntheticConfig(test_size=50), val_size=51))
    with pytest.raises(ValueError, match="val_size"):
        S.load_splits(RunConfig(dataset="synthetic", synthetic=SyntheticConfig(train_size=100), val_split="holdout",
                                holdout_size=10, val_size=11))


# --------------------------------------------------------------------------------------- batching

def test_iterate_batches_covers_everything_and_is_reproducible():
    tr, _ = make_synthetic(num_classes=3, train_size=70, test_size=10, image_size=16)
    batches = list(D.iterate_batches(tr, 32, shuffle=True, generator=torch.Generator().manual_seed(5), device="cpu"))
    assert [len(y) for _, y in batches] == [32, 32, 6]
    x = torch.cat([b[0] for b in batches])
    assert x.dtype == torch.float32 and x.min() >= 0 and x.max() <= 1
    # every example exactly once
    got = sorted(bytes((xi * 255).round().to(torch.uint8).flatten().numpy()) for xi in x)
    assert got == sorted(bytes(r) for r in tr.images.flatten(1).numpy())
    again = list(D.iterate_batches(tr, 32, shuffle=True, generator=torch.Generator().manual_seed(5), device="cpu"))
    assert all(torch.equal(a[0], b[0]) and torch.equal(a[1], b[1]) for a, b in zip(batches, again, strict=True))
    # the permutation is torch.randperm on the CPU generator
    perm = torch.randperm(70, generator=torch.Generator().manual_seed(5))
    assert torch.equal(batches[0][1], tr.labels[perm[:32]])
    assert torch.equal(batches[0][0], D.to_float(tr.images[perm[:32]]))


def test_iterate_batches_options():
    tr, _ = make_synthetic(num_classes=3, train_size=70, test_size=10, image_size=16)
    plain = list(D.iterate_batches(tr, 32, shuffle=False, generator=None, device="cpu", drop_last=True))
    assert [len(y) for _, y in plain] == [32, 32]
    assert torch.equal(plain[1][1], tr.labels[32:64])
    (x, _), *_ = D.iterate_batches(tr.to("cpu"), 8, shuffle=False, generator=None, device="cpu", channels_last=True)
    assert x.is_contiguous(memory_format=torch.channels_last)
    with pytest.raises(ValueError):
        D.to_float(torch.zeros(2, 3, 4, 4))


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a GPU")
def test_iterate_batches_on_gpu_matches_cpu():
    tr, _ = make_synthetic(num_classes=3, train_size=70, test_size=10, image_size=16)
    cpu = list(D.iterate_batches(tr, 32, shuffle=True, generator=torch.Generator().manual_seed(1), device="cpu"))
    gpu = list(D.iterate_batches(tr.to("cuda"), 32, shuffle=True, generator=torch.Generator().manual_seed(1),
                                 device="cuda"))
    assert all(torch.equal(a[0], b[0].cpu()) and torch.equal(a[1], b[1].cpu()) for a, b in zip(cpu, gpu, strict=True))


def test_to_float_is_the_exact_division_for_every_byte_value():
    """One table, divided on the CPU: to_float(v) == float32(v) / 255 bit for bit, for all 256 values (CUDA's
    scalar division multiplies by the reciprocal, which is 1 ulp off for 126 of them: the table avoids it)."""
    v = torch.arange(256, dtype=torch.uint8)
    exact = v.float() / 255
    assert torch.equal(D.to_float(v), exact)
    assert torch.equal(D.to_float(v), (v.double() / 255).float())  # correctly rounded
    assert int((v.float() * (1 / 255.0) != exact).sum()) == 126  # what a reciprocal multiplication gives
    x = torch.randint(0, 256, (4, 3, 5, 5), dtype=torch.uint8, generator=torch.Generator().manual_seed(0))
    out = D.to_float(x.contiguous(memory_format=torch.channels_last))
    assert out.shape == x.shape and out.dtype == torch.float32 and torch.equal(out, x.float() / 255)
