"""Figures 1-7 drawn from fake run logs; empty groups give 'none' panels; workflow input functions."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest
import yaml
from _report_fakes import make_fake_results

from trades_instability.report import figures as F
from trades_instability.report import registry

REPO = Path(__file__).resolve().parents[1]
PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


@pytest.fixture(scope="module")
def fake(tmp_path_factory):
    return make_fake_results(tmp_path_factory.mktemp("fig"))


@pytest.fixture(scope="module")
def fake_stable(tmp_path_factory):
    return make_fake_results(tmp_path_factory.mktemp("fig_stable"), with_unstable=False, batches_logged=False)


@pytest.fixture
def none_messages(monkeypatch):
    seen: list[str] = []
    orig = F.none_panel

    def spy(ax, message):
        seen.append(message)
        orig(ax, message)

    monkeypatch.setattr(F, "none_panel", spy)
    return seen


def check_outputs(pdf: Path, png: Path) -> None:
    assert pdf.read_bytes()[:5] == b"%PDF-" and pdf.stat().st_size > 2000
    assert png == pdf.with_suffix(".png")
    data = png.read_bytes()
    assert data[:8] == PNG_MAGIC
    from PIL import Image

    with Image.open(png) as im:
        im.verify()
    with Image.open(png) as im:
        w, h = im.size
    assert 600 <= w <= 4000 and 300 <= h <= 3000, (w, h)


@pytest.mark.parametrize("name", F.FIGURES)
def test_figure_renders(fake, tmp_path, name, none_messages):
    pdf, png = F.render_figure(name, fake["figures"][name], fake["summary"], fake["selection"], fake["run_dirs"],
                               tmp_path / f"{name}.pdf")
    check_outputs(pdf, png)
    assert none_messages == []  # every group exists in the full fake


@pytest.mark.parametrize("name,expect", [
    ("figure1", "no Unstable run in default"),
    ("figure2", "no Unstable run in default"),
    ("figure3", "no Unstable run in default"),
    ("figure4", "no Unstable run in default"),
    ("figure5", "no self-healing run in default"),
    ("figure6", "no Unstable run in default"),
    ("figure7", "no Unstable run in lrsched_b1"),
])
def test_figure_empty_group(fake_stable, tmp_path, name, expect, none_messages):
    pdf, png = F.render_figure(name, fake_stable["figures"][name], fake_stable["summary_csv"],
                               fake_stable["selection_json"], fake_stable["run_dirs"], tmp_path / "sub" / f"{name}.pdf")
    check_outputs(pdf, png)
    assert expect in none_messages


def test_figure4_without_batch_metrics(fake, tmp_path, none_messages):
    run_dirs = dict(fake["run_dirs"])
    d = tmp_path / "runs" / "default" / "seed3"
    d.mkdir(parents=True)
    shutil.copy(run_dirs[("default", 3)] / "epochs.csv", d / "epochs.csv")
    pd.DataFrame(columns=["epoch", "batch", "step", "w_grad_norm"]).to_csv(d / "batches.csv", index=False)
    run_dirs[("default", 3)] = d
    pdf, png = F.render_figure("figure4", fake["figures"]["figure4"], fake["summary"], fake["selection"], run_dirs,
                               tmp_path / "f4.pdf")
    check_outputs(pdf, png)
    assert any("no batch-level metrics" in m and "epoch 6" in m for m in none_messages)


def test_fosc_rise_epoch_rule():
    df = pd.DataFrame({"epoch": [1, 2, 3, 4, 5], "val_fosc": [0.01, 0.02, 0.12, 0.2, 0.01]})
    assert F.fosc_rise_epoch(df, 0.1)[0] == 3
    e, reason = F.fosc_rise_epoch(df, 0.5)  # none above: largest increase over the previous epoch
    assert e == 3 and "largest" in reason
    df2 = pd.DataFrame({"epoch": [1, 2, 3, 4], "val_fosc": [0.01, 0.02, 0.03, 0.09]})
    assert F.fosc_rise_epoch(df2, 0.5)[0] == 4


def test_fosc_threshold_sources(tmp_path):
    assert F.fosc_threshold({"fosc_threshold": 0.05}, None) == (0.05, "config figures spec")
    (tmp_path / "config.yaml").write_text("fix:\n  fosc_threshold: 0.07\n")
    assert F.fosc_threshold({}, tmp_path) == (0.07, "run config.yaml")
    (tmp_path / "run.json").write_text('{"config": {"fix": {"fosc_threshold": 0.2}}}')
    assert F.fosc_threshold({}, tmp_path) == (0.2, "run.json")
    assert F.fosc_threshold({}, tmp_path / "nowhere")[1] == "default"
    assert F.fosc_threshold({}, tmp_path / "nowhere", 0.3) == (0.3, "summary.csv")
    assert F.fosc_threshold({}, tmp_path / "nowhere", float("nan"))[1] == "default"


def test_figure_settings_files_and_run_dirs():
    """What the workflow's figure inputs are built from (trades_instability.workflow.paths)."""
    def figure_settings(name, spec):
        return registry.get(name, registry.FIGURE).spec_settings(spec)

    def figure_files(name):
        return list(registry.get(name, registry.FIGURE).run_files)

    assert figure_settings("figure6", {"unstable": "default", "fixed": "fixed"}) == ["default", "fixed"]
    assert figure_settings("figure7", {"unstable": "a", "regular": "a"}) == ["a"]
    with pytest.raises(ValueError, match="figures.figure6.fixed"):
        figure_settings("figure6", {"unstable": "default"})
    assert figure_files("figure1") == ["landscape.npz"] and figure_files("figure4") == ["epochs.csv", "batches.csv"]
    assert figure_files("figure2") == ["epochs.csv"]
    paths = ["res/runs/fixed/seed3/epochs.csv", "res/runs/default/seed12/landscape.npz"]
    assert F.run_dirs_from_paths(paths) == {("fixed", 3): Path("res/runs/fixed/seed3"),
                                            ("default", 12): Path("res/runs/default/seed12")}


def test_snakemake_figure_inputs_are_every_seed(tmp_path):
    """The workflow's figure rule (inputs: trades_instability.workflow.paths) asks for the per-run files
    of EVERY seed of the settings a figure names (the representatives are chosen after aggregation), and
    only the files that figure reads."""
    exe = Path(sys.executable).with_name("snakemake")
    if not exe.exists():
        pytest.skip("snakemake not installed")
    cfg = yaml.safe_load((REPO / "tests" / "configs" / "smoke.yaml").read_text())
    cfg["seeds"]["three"] = [0, 4, 7]
    cfg["settings"]["default"]["seeds"] = "three"
    cfg["settings"]["fixed"]["seeds"] = [2, 5]
    for name in ("default", "fixed"):  # the smoke's planted seeds (0, 1) are not among these seeds
        cfg["settings"][name].pop("plant_masking")
    (tmp_path / "config.yaml").write_text(yaml.safe_dump(cfg))
    targets = [f"figures/figure{i}.pdf" for i in (1, 4, 6)]
    r = subprocess.run([str(exe), *targets, "-n", "--cores", "1", "-s", str(REPO / "Snakefile"),
                        "-d", str(tmp_path / "work"), "--configfile", str(tmp_path / "config.yaml")],
                       capture_output=True, text=True, timeout=300)
    out = r.stdout + r.stderr
    assert r.returncode == 0, out[-3000:]
    jobs = [b for b in re.split(r"\n(?=\S)", out) if re.match(r"(local)?rule figure:", b)]
    inputs = {re.search(r"wildcards: figure=(\w+)", b).group(1): set(re.search(r"input: (.*)", b).group(1).split(", "))
              for b in jobs}
    assert sorted(inputs) == ["figure1", "figure4", "figure6"], out[-3000:]

    def runs(setting, seeds, name):
        return {f"results/runs/{setting}/seed{seed}/{name}" for seed in seeds}

    def agg(target):
        # the per-target aggregation and the figures' builder module (an input: editing it redraws the figures)
        builder = os.path.relpath(REPO / "src" / "trades_instability" / "report" / "figures.py", tmp_path / "work")
        return {f"results/aggregate/{target}/summary.csv", f"results/aggregate/{target}/selection.json", builder}

    assert inputs["figure1"] == agg("figure1") | runs("default", [0, 4, 7], "landscape.npz")
    assert inputs["figure4"] == (agg("figure4") | runs("default", [0, 4, 7], "epochs.csv")
                                 | runs("default", [0, 4, 7], "batches.csv"))
    assert inputs["figure6"] == (agg("figure6") | runs("default", [0, 4, 7], "epochs.csv")
                                 | runs("fixed", [2, 5], "epochs.csv"))
