"""trades_instability.data.download and the workflow's download rule, without network: archives in the real
formats written by the tests (a tiny cifar-100-python tar.gz read back by torchvision's CIFAR100 loader
through data/splits.py, a tiny tiny-imagenet-200 zip), served from 127.0.0.1 or refused there."""

from __future__ import annotations

import dataclasses
import functools
import hashlib
import http.server
import json
import os
import re
import socket
import subprocess
import sys
import tarfile
import threading
import time
import zipfile
from pathlib import Path

import pytest
import torch
import torchvision.datasets as tvd
import yaml
from _configs import smoke_with_settings
from test_data import cfg_for, patch_md5, write_cifar100, write_tiny

from trades_instability.data import download as DL
from trades_instability.data import splits as S
from trades_instability.data.tinyimagenet import TINY_FOLDER

ROOT = Path(__file__).resolve().parents[1]
SMOKE = ROOT / "tests" / "configs" / "smoke.yaml"


@pytest.fixture(autouse=True)
def _localhost_only(monkeypatch):
    """No test may reach a real host: torchvision's download path refuses every URL but 127.0.0.1."""
    import torchvision.datasets.utils as tv_utils

    real = tv_utils._get_redirect_url

    def guarded(url, *args, **kwargs):
        assert url.startswith("http://127.0.0.1:"), f"test tried to reach {url}"
        return real(url, *args, **kwargs)

    monkeypatch.setattr(tv_utils, "_get_redirect_url", guarded)


def _md5(path: Path) -> str:
    return hashlib.md5(path.read_bytes()).hexdigest()


def cifar100_archive(tmp_path: Path, monkeypatch) -> tuple[Path, list]:
    """cifar-100-python.tar.gz holding tiny real pickled batches; torchvision's md5 lists point at them."""
    src = tmp_path / "src"
    arrays = write_cifar100(src)
    patch_md5(monkeypatch, tvd.CIFAR100, src)
    archive = tmp_path / "archive" / "cifar-100-python.tar.gz"
    archive.parent.mkdir()
    with tarfile.open(archive, "w:gz") as tar:
        tar.add(src / "cifar-100-python", arcname="cifar-100-python")
    return archive, arrays


def tiny_archive(tmp_path: Path) -> Path:
    src = tmp_path / "tsrc"
    folder = write_tiny(src)
    (folder / "train" / "n01" / "images" / "n01_9.JPEG").unlink()  # 2 JPEGs in every class
    archive = tmp_path / "tarchive" / "tiny-imagenet-200.zip"
    archive.parent.mkdir()
    with zipfile.ZipFile(archive, "w") as z:
        for p in sorted(folder.rglob("*")):
            z.write(p, p.relative_to(src))
    return archive


def entry(name: str, archive: Path, url: str | None = None, **kw) -> DL.DatasetSource:
    """The table's entry with the test archive's md5 (and URL): the real verification runs."""
    return dataclasses.replace(DL.SOURCES[name], md5=_md5(archive), url=url or DL.SOURCES[name].url, **kw)


TINY_EXPECT = {"classes": 3, "train_per_class": 2, "val_images": 4}


# ------------------------------------------------------------------------------------------ table


def test_cifar_entries_are_torchvisions_own():
    for name, cls in (("cifar10", tvd.CIFAR10), ("cifar100", tvd.CIFAR100)):
        s = DL.SOURCES[name]
        assert (s.url, s.filename, s.md5, s.folder) == (cls.url, cls.filename, cls.tgz_md5, cls.base_folder)
        names = [f for f, _ in cls.train_list + cls.test_list] + [cls.meta["filename"]]
        assert sorted(s.required) == sorted(names)
    tiny = DL.SOURCES["tinyimagenet"]
    assert tiny.url == "http://cs231n.stanford.edu/tiny-imagenet-200.zip"
    assert tiny.md5 == "90528d7ca1a48142e341f4ef8d21d0de" and tiny.folder == TINY_FOLDER
    assert "synthetic" not in DL.SOURCES


# ------------------------------------------------------------------------------- local archives


def test_cifar100_archive_is_verified_extracted_and_loadable(tmp_path, monkeypatch):
    archive, (tr, tr_lab, te, te_lab) = cifar100_archive(tmp_path, monkeypatch)
    root = tmp_path / "data"
    root.mkdir()
    (root / archive.name).write_bytes(archive.read_bytes())
    src = entry("cifar100", archive)
    rec = DL.ensure(src, root, fetch=False)  # a local archive with the right md5: no network needed
    assert rec["action"] == "extracted" and rec["path"] == str((root / "cifar-100-python").resolve())
    assert rec["md5"] == src.md5 and rec["dataset"] == "cifar100"
    assert not list(root.glob(".cifar-100-python.extract-*"))
    s = S.load_splits(cfg_for("cifar100", root, download=False))  # torchvision's CIFAR100 loader via data/splits.py
    assert torch.equal(s.train.images, torch.from_numpy(tr.reshape(-1, 3, 32, 32)))
    assert torch.equal(s.test.labels, torch.from_numpy(te_lab))
    assert DL.ensure(src, root, fetch=False)["action"] == "verified"  # second time: nothing to do


def test_tinyimagenet_zip_is_verified_extracted_and_loadable(tmp_path):
    archive = tiny_archive(tmp_path)
    root = archive.parent
    src = entry("tinyimagenet", archive, expect=TINY_EXPECT)
    assert DL.ensure(src, root, fetch=False)["action"] == "extracted"
    s = S.load_splits(cfg_for("tinyimagenet", root, download=False))
    assert s.num_classes == 3 and s.train.images.shape == (6, 3, 64, 64) and s.test.images.shape == (4, 3, 64, 64)
    assert s.test.labels.tolist() == [2, 0, 1, 0]
    # the real counts are the published ones: a 3-class folder does not pass as TinyImageNet-200
    assert "lists 3 classes, expected 200" in DL.layout_problem(DL.SOURCES["tinyimagenet"], root)


def test_corrupt_archive_fails_with_one_line_and_extracts_nothing(tmp_path, monkeypatch):
    archive, _ = cifar100_archive(tmp_path, monkeypatch)
    src = entry("cifar100", archive)
    root = tmp_path / "data"
    root.mkdir()
    data = bytearray(archive.read_bytes())
    data[len(data) // 2] ^= 0xFF
    (root / archive.name).write_bytes(bytes(data))
    with pytest.raises(DL.DownloadError) as e:
        DL.ensure(src, root, fetch=False)
    msg = str(e.value)
    assert "\n" not in msg and "fails the md5 check" in msg and "download: true" in msg
    assert not (root / "cifar-100-python").exists() and not list(root.glob(".cifar-100-python.*"))


def test_archive_without_a_valid_folder_leaves_no_folder(tmp_path, monkeypatch):
    """md5 fine but the contents are not the layout (here: meta missing): nothing lands in data_root."""
    src_dir = tmp_path / "src"
    write_cifar100(src_dir)
    patch_md5(monkeypatch, tvd.CIFAR100, src_dir)
    (src_dir / "cifar-100-python" / "meta").unlink()
    root = tmp_path / "data"
    root.mkdir()
    archive = root / "cifar-100-python.tar.gz"
    with tarfile.open(archive, "w:gz") as tar:
        tar.add(src_dir / "cifar-100-python", arcname="cifar-100-python")
    with pytest.raises(DL.DownloadError) as e:
        DL.ensure(entry("cifar100", archive), root, fetch=False)
    assert "does not extract to a valid cifar-100-python/" in str(e.value) and "meta" in str(e.value)
    assert not (root / "cifar-100-python").exists() and not list(root.glob(".cifar-100-python.*"))


def test_half_extracted_folder_is_replaced_and_kept_aside(tmp_path, monkeypatch):
    archive, _ = cifar100_archive(tmp_path, monkeypatch)
    root = tmp_path / "data"
    (root / "cifar-100-python").mkdir(parents=True)
    for f in ("train", "test", "meta"):  # every file there, but truncated: an interrupted extraction
        (root / "cifar-100-python" / f).write_bytes(b"truncated")
    (root / ".cifar-100-python.extract-999999999").mkdir()  # temporary folder of a killed extraction
    (root / archive.name).write_bytes(archive.read_bytes())
    src = entry("cifar100", archive)
    assert DL.presence_problem(src, root) is None  # looks present ...
    assert "failing torchvision's md5 check" in DL.layout_problem(src, root)  # ... but is not
    assert DL.ensure(src, root, fetch=False)["action"] == "extracted"
    assert DL.layout_problem(src, root) is None
    assert len(list(root.glob("cifar-100-python.invalid-*"))) == 1
    assert not list(root.glob(".cifar-100-python.extract-*"))


def test_no_fetch_names_the_folder_and_the_switch(tmp_path):
    with pytest.raises(DL.DownloadError) as e:
        DL.ensure(DL.SOURCES["cifar10"], tmp_path / "empty", fetch=False)
    msg = str(e.value)
    assert "\n" not in msg and str((tmp_path / "empty" / "cifar-10-batches-py").resolve()) in msg
    assert "download is false" in msg and "download: true" in msg and DL.SOURCES["cifar10"].url in msg


# ------------------------------------------------------------------------------------ over HTTP


@pytest.fixture
def serve(tmp_path):
    """Serve a folder on 127.0.0.1 from a thread; yields url_of(folder) -> base URL."""
    servers = []

    def url_of(folder: Path) -> str:
        handler = functools.partial(http.server.SimpleHTTPRequestHandler, directory=str(folder))
        handler.log_message = lambda *a: None
        srv = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
        threading.Thread(target=srv.serve_forever, daemon=True).start()
        servers.append(srv)
        return f"http://127.0.0.1:{srv.server_address[1]}"

    yield url_of
    for srv in servers:
        srv.shutdown()
        srv.server_close()


def closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_download_from_localhost(tmp_path, monkeypatch, serve):
    archive, (tr, *_rest) = cifar100_archive(tmp_path, monkeypatch)
    src = entry("cifar100", archive, url=f"{serve(archive.parent)}/{archive.name}")
    root = tmp_path / "fresh" / "data"  # not there yet: created
    logs = []
    rec = DL.ensure(src, root, timeout=5, log=logs.append)
    assert rec["action"] == "downloaded" and rec["url"] == src.url
    assert any("downloading" in m for m in logs)
    s = S.load_splits(cfg_for("cifar100", root, download=False))
    assert torch.equal(s.train.images, torch.from_numpy(tr.reshape(-1, 3, 32, 32)))


def test_download_of_a_corrupt_file_fails_on_md5(tmp_path, monkeypatch, serve):
    archive, _ = cifar100_archive(tmp_path, monkeypatch)
    src = entry("cifar100", archive, url=f"{serve(archive.parent)}/{archive.name}")
    archive.write_bytes(archive.read_bytes()[:-100])  # the server now hands out a truncated file
    root = tmp_path / "data"
    with pytest.raises(DL.DownloadError) as e:
        DL.ensure(src, root, timeout=5)
    msg = str(e.value)
    assert "\n" not in msg and "fails the md5 check" in msg and src.md5 in msg and src.url in msg
    assert not (root / "cifar-100-python").exists()


def test_unreachable_host_fails_fast_with_one_line(tmp_path):
    url = f"http://127.0.0.1:{closed_port()}/cifar-100-python.tar.gz"
    src = dataclasses.replace(DL.SOURCES["cifar100"], url=url)
    t0 = time.perf_counter()
    with pytest.raises(DL.DownloadError) as e:
        DL.ensure(src, tmp_path / "data", timeout=5)
    assert time.perf_counter() - t0 < 10
    msg = str(e.value)
    assert "\n" not in msg and f"could not download {url}" in msg
    assert str((tmp_path / "data" / "cifar-100-python").resolve()) in msg and "'download: false'" in msg


def test_cli_writes_the_record_and_reports_errors_in_one_line(tmp_path, monkeypatch, capsys):
    archive = tiny_archive(tmp_path)
    monkeypatch.setitem(DL.SOURCES, "tinyimagenet", entry("tinyimagenet", archive, expect=TINY_EXPECT))
    record = tmp_path / "results" / "datasets" / "tinyimagenet.json"
    assert DL.main(["tinyimagenet", "--data-root", str(archive.parent), "--record", str(record)]) == 0
    rec = json.loads(record.read_text())
    assert rec["action"] == "extracted" and rec["path"] == str((archive.parent / "tiny-imagenet-200").resolve())
    assert set(rec) >= {"dataset", "path", "url", "md5", "verified", "time"}
    capsys.readouterr()
    assert DL.main(["cifar10", "--data-root", str(tmp_path / "none"), "--no-fetch"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("download: error: CIFAR-10") and "\n" not in err
    assert DL.main(["imagenet", "--data-root", str(tmp_path)]) == 2
    assert "unknown dataset 'imagenet'" in capsys.readouterr().err


# ----------------------------------------------------------------------------------- workflow


def snakemake(workdir: Path, *args: str) -> str:
    env = {**os.environ, "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}"}
    cmd = [sys.executable, "-m", "snakemake", *args, "--snakefile", str(ROOT / "Snakefile"), "--directory",
           str(workdir)]
    r = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=300)
    return r.returncode, r.stdout + r.stderr


def test_workflow_downloads_before_training_or_stops_when_off(tmp_path):
    """A config that needs CIFAR-100: the dry run schedules one download job whose record every train job
    reads (no parse-time stop without the data); with download False a real run stops before any job with
    the folder named; the synthetic smoke config has no download job."""
    cfg = smoke_with_settings({"a": {"overrides": {"dataset": "cifar100", "epochs": 1}, "seeds": [0, 1],
                                     "suites": ["cheap"]}})
    conf = tmp_path / "c100.yaml"
    conf.write_text(yaml.safe_dump(cfg))
    work = tmp_path / "work"
    work.mkdir()
    targets = [f"results/runs/a/seed{s}/eval_cheap.json" for s in (0, 1)]
    rc, out = snakemake(work, *targets, "-n", "--configfile", str(conf))
    assert rc == 0, out[-3000:]
    jobs = re.split(r"^(?:local)?rule ", out, flags=re.M)[1:]  # one block per job, "name:\n  input: ..."
    download = [j for j in jobs if j.startswith("download:")]
    train = [j for j in jobs if j.startswith("train:")]
    assert len(download) == 1 and "output: results/datasets/cifar100.json" in download[0], out[-3000:]
    assert len(train) == 2 and all("results/datasets/cifar100.json" in j.split("output:")[0] for j in train)
    assert all("results/datasets/cifar100.json" in j.split("output:")[0]
               for j in jobs if j.startswith("evaluate:"))

    rc, out = snakemake(work, *targets, "--cores", "1", "--configfile", str(conf), "--config", "download=False")
    assert rc != 0 and "dataset missing, nothing was started" in out, out[-3000:]
    assert "cifar-100-python" in out and str(work / "data") in out and "'download: false'" in out
    assert not (work / "results").exists() and not (work / "data").exists()

    rc, out = snakemake(work, "paper", "-n", "--configfile", str(SMOKE))
    assert rc == 0 and "rule train:" in out and "rule download:" not in out, out[-3000:]
