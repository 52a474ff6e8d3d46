"""End-to-end: the whole pipeline on tests/configs/smoke.yaml (CPU, minutes), the paper config's dry
run, the missing-dataset stop and the one-GPU-job-at-a-time rule. All run snakemake in a temporary
working directory (--directory), so the repository is never written to."""

from __future__ import annotations

import os
import re
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
import pytest
import yaml
from _configs import smoke_with_settings

pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parents[1]
SNAKEFILE = ROOT / "Snakefile"
SMOKE = ROOT / "tests" / "configs" / "smoke.yaml"
TABLES = [f"table{i}" for i in range(1, 8)]
FIGURES = [f"figure{i}" for i in range(1, 8)]


def snakemake(workdir: Path, *args: str, timeout: int = 900) -> subprocess.CompletedProcess:
    env = {**os.environ, "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}"}
    cmd = [sys.executable, "-m", "snakemake", *args, "--snakefile", str(SNAKEFILE), "--directory", str(workdir)]
    return subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=timeout)


def job_counts(out: str) -> dict[str, int]:
    block = out.split("Job stats:", 1)[1]
    return {m.group(1): int(m.group(2)) for m in re.finditer(r"^(\w+)\s+(\d+)\s*$", block, re.M)}


# ------------------------------------------------------------------------------------ smoke run


@pytest.fixture(scope="module")
def smoke(tmp_path_factory) -> tuple[Path, float, str]:
    work = tmp_path_factory.mktemp("smoke")
    t0 = time.perf_counter()
    r = snakemake(work, "paper", "conventions", "crossarch", "review", "results/summary.csv", "--cores", "2",
                  "--configfile", str(SMOKE), "--show-failed-logs")
    wall = time.perf_counter() - t0
    print(f"smoke pipeline: {wall:.0f} s")
    assert r.returncode == 0, r.stdout[-5000:] + r.stderr[-5000:]
    return work, wall, r.stdout + r.stderr


def _rows(tex: str) -> list[str]:
    rows = []
    for block in re.findall(r"\\begin\{tabular\}.*?\\end\{tabular\}", tex, re.S):
        body = block.split("\\midrule")[-1].split("\\bottomrule")[0]
        rows += [ln.split("&")[0].strip() for ln in body.strip().splitlines() if "&" in ln]
    return rows


def test_smoke_every_target(smoke):
    work, wall, _ = smoke
    assert wall < 900
    for t in TABLES + ["comparison"]:
        tex = (work / "tables" / f"{t}.tex").read_text()
        assert "\\begin{tabular}" in tex and "\\bottomrule" in tex, t
    assert (work / "tables" / "comparison.csv").stat().st_size > 0
    tex = (work / "tables" / "comparison.tex").read_text()
    assert len(re.findall(r"^% Table \d: \d+ cells, \d+ consistent, \d+ differs?, \d+ not testable$", tex, re.M)) == 7
    for f in ["detection"]:
        png, pdf = work / "figures" / f"{f}.png", work / "figures" / f"{f}.pdf"
        assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and png.stat().st_size > 5000, f
        assert pdf.read_bytes()[:5] == b"%PDF-" and pdf.stat().st_size > 2000, f
    det = (work / "tables" / "detection.tex").read_text()
    assert "\\begin{tabular}" in det and "\\bottomrule" in det and "all settings" in det
    import pandas as pd

    runs = pd.read_csv(work / "tables" / "detection.csv")
    cfg = yaml.safe_load(SMOKE.read_text())
    # every classified run of the paper's settings without the fix (detection.settings absent = all the
    # settings the tables and figures read; the conventions-only settings are not among them)
    from trades_instability.config import pipeline_loading

    paper_settings = pipeline_loading.load(SMOKE).paper_settings()
    no_fix = [s for s in paper_settings
              if not (cfg["settings"][s].get("overrides") or {}).get("fix", {}).get("enabled")]
    assert set(runs["setting"]) == set(no_fix) and "conv_official_b3" in cfg["settings"]
    for f in FIGURES:
        png, pdf = work / "figures" / f"{f}.png", work / "figures" / f"{f}.pdf"
        assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and png.stat().st_size > 5000, f
        assert pdf.read_bytes()[:5] == b"%PDF-" and pdf.stat().st_size > 2000, f
    assert not (ROOT / "results").exists() or not any((ROOT / "results").iterdir()), "repo untouched"


def test_smoke_table_layout(smoke):
    work = smoke[0]
    tex = {t: (work / "tables" / f"{t}.tex").read_text() for t in TABLES}
    header1 = re.search(r"^ & Clean.*\\\\$", tex["table1"], re.M).group(0)
    assert [c.strip(" \\") for c in header1.split("&")[1:]] == [
        "Clean", "PGD-10", "AutoAttack", "APGD-CE", "APGD-DLR", "FAB", "Square"]
    assert [r.split(" (")[0] for r in _rows(tex["table1"])] == ["Regular", "Unstable"]
    assert tex["table2"].count("\\begin{tabular}") == 2
    assert "Learning Rate = 0.1" in tex["table2"] and "Batch Size = 32" in tex["table2"]
    assert _rows(tex["table2"]) == ["1", "3", "3"]  # panel 1: beta 1, 3; panel 2: beta 3
    for t, rows in {"table3": ["Regular", "Unstable", "Fixed"], "table6": ["Regular", "Unstable", "Modified"]}.items():
        assert [r.split(" (")[0] for r in _rows(tex[t])] == rows, (t, _rows(tex[t]))
    assert len(_rows(tex["table4"])) == 2 and len(_rows(tex["table5"])) == 2 and len(_rows(tex["table7"])) == 1


def test_smoke_conventions_target(smoke):
    work = smoke[0]
    tex = (work / "tables" / "conventions.tex").read_text()
    header = re.search(r"^ & Prob.*\\\\$", tex, re.M).group(0)
    assert [c.strip(" \\") for c in header.split("&")[1:]] == ["Prob.", "Clean", "PGD-10", "AutoAttack", "Gap"]
    assert _rows(tex) == ["beta 3 (default), ADR", "beta 3 (default), official TRADES", "beta 1, ADR",
                          "beta 1, official TRADES"]
    for row in tex.split("\\midrule")[-1].splitlines()[:4]:  # every cell has a number: all 4 settings ran
        assert "--" not in row, row
    png, pdf = work / "figures" / "conventions.png", work / "figures" / "conventions.pdf"
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and png.stat().st_size > 5000
    assert pdf.read_bytes()[:5] == b"%PDF-"


def test_smoke_crossarch_target(smoke):
    work = smoke[0]
    tex = (work / "tables" / "crossarch.tex").read_text()
    header = re.search(r"^ & Prob.*\\\\$", tex, re.M).group(0)
    assert [c.strip(" \\") for c in header.split("&")[1:]] == ["Prob.", "Clean", "PGD-10", "AutoAttack", "Gap"]
    assert _rows(tex) == ["default, ResNet-18", "default, PreActResNet-18", "default, WRN-34-10"]
    for row in tex.split("\\midrule")[-1].splitlines()[:3]:  # every cell has a number: all 3 settings ran
        assert "--" not in row, row
    png, pdf = work / "figures" / "crossarch.png", work / "figures" / "crossarch.pdf"
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and png.stat().st_size > 5000
    assert pdf.read_bytes()[:5] == b"%PDF-"


def test_smoke_review_target(smoke):
    """Every block of the review renders with its rows (from the smoke config's `review:` block) and columns."""
    import pandas as pd

    work = smoke[0]
    review = yaml.safe_load(SMOKE.read_text())["review"]
    tex = (work / "tables" / "review.tex").read_text()
    header = re.search(r"^Row & .*\\\\$", tex, re.M).group(0)
    assert [c.strip(" \\") for c in header.split("&")] == [
        "Row", "Settings", "Unst.", "$P$", "95\\% CI", "0-of-$n$ bound", "Clean", "AutoAttack", "Gap"]
    for q in ("Q1.", "Q2.", "Q3.", "Q4.", "Q5."):
        assert q in tex, q
    csv = pd.read_csv(work / "tables" / "review.csv")
    for block in ("seed_sources", "beta", "methods", "noise"):
        rows = csv[csv["block"] == block]
        assert list(rows["row"].astype(str)) == [str(k) for k in review[block]], block
        assert (rows["n"] > 0).all(), rows  # every row's runs were trained, evaluated and classified
        assert rows["ci_low"].notna().all() and rows["block_test_p"].notna().all()
    # the seed-source rows share default's seed-0 run (trained once): 1 + the source setting's seeds
    assert list(csv[csv["block"] == "seed_sources"]["n"]) == [2, 2, 2]
    assert set(csv[csv["block"] == "detectors"]["row"]) == {"FOSC", "SGCS", "GradAlign"}
    assert (work / "figures" / "review.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert (work / "figures" / "review.pdf").read_bytes()[:5] == b"%PDF-"


def test_smoke_summary_and_selection(smoke):
    work = smoke[0]
    import json

    from trades_instability.aggregate import load_summary

    cfg = yaml.safe_load(SMOKE.read_text())
    df = load_summary(work / "results" / "summary.csv")
    n_runs = sum(len(cfg["seeds"][s["seeds"]]) if isinstance(s["seeds"], str) else len(s["seeds"])
                 for s in cfg["settings"].values())
    assert len(df) == n_runs and set(df["setting"]) == set(cfg["settings"])
    assert df["status"].eq("complete").all() and df["pgd10_acc"].notna().all()
    sel = json.loads((work / "results" / "selection.json").read_text())
    assert set(sel["groups"]) == set(cfg["settings"]) and sel["threshold"] == 0.08
    for g in sel["groups"].values():
        assert set(g) >= {"regular", "unstable", "diverged", "self_healing", "representative"}
    # resume state lives outside the declared outputs; the finished run's last.pt is published beside best.pt
    run = work / "results" / "runs" / "default" / "seed0"
    assert (run / "state" / "checkpoints" / "last.pt").exists() and (run / "checkpoints" / "best.pt").exists()
    assert (run / "checkpoints" / "last.pt").read_bytes() == (run / "state" / "checkpoints" / "last.pt").read_bytes()
    # best and last epoch both evaluated: the eval JSON's "last", summary.csv's last_* columns
    ev = json.loads((run / "eval_full.json").read_text())
    epochs = cfg["settings"]["default"]["overrides"]["epochs"]
    assert ev["last"]["epoch"] == epochs and ev["last"]["pgd10_acc"] is not None
    row = df[(df["setting"] == "default") & (df["seed"] == 0)].iloc[0]
    assert row["last_epoch"] == epochs and row["last_pgd10_acc"] == ev["last"]["pgd10_acc"]
    assert df["last_pgd10_acc"].notna().all() and df["last_unstable"].map(lambda v: v in (True, False)).all()
    assert set(df["arch"]) == {"resnet18", "preact-resnet18", "wrn-34-10"}


def _row_cells(tex: str, label: str) -> list[str]:
    """The cells of the body row whose label starts with ``label`` (first tabular)."""
    body = tex.split("\\midrule")[-1].split("\\bottomrule")[0]
    line = next(ln for ln in body.splitlines() if ln.split("&")[0].strip().startswith(label))
    return [c.strip(" \\") for c in line.split("&")[1:]]


def _none_panels(fig) -> list[str]:
    return [t.get_text() for ax in fig.axes for t in ax.texts if t.get_text().startswith("none:")]


def test_smoke_planted_control_runs_the_central_case_end_to_end(smoke):
    """The planted control (README "Planted control"): from the real runs of the smoke config, seed 1 of
    default (behind an 8-level quantiser) is Unstable and caught, its Fixed run was trained planted alike,
    seed 0 (random translations in epochs 2-3) self-heals; every Unstable, Fixed and self-healing cell and
    panel is drawn, and the comparison with the paper leaves the planted runs out."""
    import json

    from trades_instability.aggregate import load_summary
    from trades_instability.report import figures, registry
    from trades_instability.report.cells import load_selection

    work = smoke[0]
    cfg = yaml.safe_load(SMOKE.read_text())
    plants = {s: e["kind"] for e in cfg["settings"]["default"]["plant_masking"] for s in e["seeds"]}
    quantized = next(s for s, k in plants.items() if k == "quantize")
    window = next(s for s, k in plants.items() if k == "stochastic")
    sel = json.loads((work / "results" / "selection.json").read_text())
    g = sel["groups"]["default"]
    assert g["unstable"] == [quantized] and g["planted"] == sorted(plants), g
    assert window in g["regular"] and g["self_healing"] == [window] and g["representative"]["self_healing"] == window
    df = load_summary(work / "results" / "summary.csv")
    runs = df.set_index(["setting", "seed"])
    assert runs.loc[("default", quantized), "planted"] is True and runs.loc[("default", quantized), "fosc"] == 0
    fixed = runs.loc[("fixed", quantized)]
    assert fixed["planted"] is True and fixed["plant"] == runs.loc[("default", quantized), "plant"]
    assert fixed["status"] == "complete" and fixed["fix"] is True
    assert not runs.loc[("modified", 0), "planted"]
    # the run's own evaluation says it is planted
    ev = json.loads((work / "results/runs/default" / f"seed{quantized}" / "eval_full.json").read_text())
    assert ev["planted"]["kind"] == "quantize" and ev["planted"]["active"] is True and ev["unstable"] is True
    # Tables 1, 3, 6: Unstable rows (and Table 3's Fixed row) hold numbers, from the planted seed
    tex = {t: (work / "tables" / f"{t}.tex").read_text() for t in ("table1", "table3", "table6")}
    assert f"Unstable (seed {quantized}" in tex["table1"]
    for t, rows in {"table1": ["Regular", "Unstable"], "table3": ["Regular", "Unstable", "Fixed"],
                    "table6": ["Regular", "Unstable", "Modified"]}.items():
        for label in rows:
            cells = _row_cells(tex[t], label)
            assert cells and not any(c.startswith("--") for c in cells), (t, label, cells)
    # Figures 1, 2, 4, 5, 6: no "none:" panel (drawn again here from the same inputs, to read the panels)
    summary, selection = load_summary(work / "results" / "summary.csv"), load_selection(work / "results/selection.json")
    run_dirs = {(p.parent.parent.name, int(p.parent.name.removeprefix("seed"))): p.parent
                for p in (work / "results" / "runs").glob("*/seed*/epochs.csv")}
    figures.pyplot()
    for name in ("figure1", "figure2", "figure4", "figure5", "figure6"):
        fig = registry.get(name, registry.FIGURE).build()(cfg["figures"][name], summary, selection, run_dirs)
        try:
            assert _none_panels(fig) == [], (name, _none_panels(fig))
        finally:
            figures.plt.close(fig)
    # detection: both classes, and the planted block: the quantised run caught by the Unstable rule while
    # its FOSC reads 0 (FOSC is blind to shattered gradients); the window run's FOSC over the threshold
    det = pd.read_csv(work / "tables" / "detection.csv")
    assert set(det["label"]) == {"Unstable", "Regular"}
    labels = det[det["setting"] == "default"].set_index("seed")["label"].to_dict()
    assert labels == {quantized: "Unstable", window: "Regular"}
    dtex = (work / "tables" / "detection.tex").read_text()
    assert "tab:detection-planted" in dtex
    assert re.search(rf"^default/{quantized} & quantize levels=8 & yes & \+0\.\d+ & 0\.0000 \(ep\. 1\) & no & "
                     r"0\.000--0\.000 & 0\.000 & 0\.0000 & 0\.000", dtex, re.M), dtex  # GradAlign 0 too
    assert re.search(rf"^default/{window} & stochastic .* & no & .* & yes & ", dtex, re.M), dtex
    # the comparison with the paper: planted runs out of every cell, and said so
    comp = (work / "tables" / "comparison.tex").read_text()
    assert "% Planted runs (a positive control) left out of every cell: default/0, default/1, fixed/0, fixed/1" in comp
    cmp = pd.read_csv(work / "tables" / "comparison.csv")
    t13 = cmp[cmp["table"].isin(["table1", "table3", "table6"]) & cmp["row"].isin(["Regular", "Unstable", "Fixed"])]
    assert t13["reproduced"].isna().all() and (t13["n_runs"] == 0).all()  # default has no unplanted run here


def test_smoke_rerun_is_a_no_op_and_report(smoke):
    work = smoke[0]
    r = snakemake(work, "paper", "-n", "--configfile", str(SMOKE))
    assert r.returncode == 0 and "Nothing to be done" in r.stdout + r.stderr, r.stdout[-3000:]
    r = snakemake(work, "--report", str(work / "report.html"), "--configfile", str(SMOKE))
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]
    html = (work / "report.html").read_text(errors="replace")
    for name in ["figure1.png", "figure7.pdf", "table3.tex", "comparison.tex", "summary.csv", "detection.png",
                 "detection.tex"]:
        assert name in html, name


# ------------------------------------------------------------------------------ paper config


def test_paper_dry_run_lists_every_job(tmp_path: Path):
    r = snakemake(tmp_path, "paper", "-n", "--quiet", "rules")  # no data in tmp_path: a dry run needs none
    out = r.stdout + r.stderr
    assert r.returncode == 0, out[-3000:]
    n = job_counts(out)
    assert n["train"] == n["run_config"] == n["evaluate"] == 219
    assert n["landscape"] == 10 and n["table"] == 7 and n["figure"] == 7 and n["comparison"] == 1
    assert n["detection"] == 1
    assert n["suite_file"] == 4 and "aggregate" not in n and n["paper"] == 1
    assert n["download"] == 3  # cifar100, cifar10, tinyimagenet: fetched (when missing) before any job reads them
    assert "conventions" not in n  # beyond the paper: a target of its own
    r = snakemake(tmp_path, "conventions", "-n", "--quiet", "rules")
    n = job_counts(r.stdout + r.stderr)
    assert r.returncode == 0 and n["conventions"] == 1 and n["train"] == 40  # 4 settings x 10 seeds
    assert "crossarch" not in n
    r = snakemake(tmp_path, "crossarch", "-n", "--quiet", "rules")
    n = job_counts(r.stdout + r.stderr)
    assert r.returncode == 0 and n["crossarch"] == 1 and n["grid_report"] == 1 and n["train"] == 30  # 3 x 10 seeds


def test_one_table_trains_only_its_settings(tmp_path: Path):
    r = snakemake(tmp_path, "tables/table3.tex", "-n", "--quiet", "rules")
    assert r.returncode == 0, r.stdout[-3000:]
    assert job_counts(r.stdout + r.stderr)["train"] == 20  # default + fixed, 10 seeds each


def test_missing_dataset_stops_before_any_job(tmp_path: Path):
    # download=False: nothing is fetched (with the default, the download rule would fetch CIFAR-100)
    t0 = time.perf_counter()
    r = snakemake(tmp_path, "tables/table3.tex", "--cores", "2", "--config", "download=False", timeout=300)
    wall = time.perf_counter() - t0
    out = r.stdout + r.stderr
    assert r.returncode != 0, out[-3000:]
    assert "cifar-100-python" in out and "data_root" in out, out[-3000:]
    assert "rule train" not in out and "rule run_config" not in out, out[-3000:]
    assert not (tmp_path / "results").exists()
    assert wall < 120


def _two_gpu_trainings(tmp_path: Path, monkeypatch, *extra: str) -> tuple[str, int, list[str]]:
    """Train two tiny runs that claim gpu=1 each; returns (output, peak concurrent train jobs, the GPU each
    job's log says gpu_slots gave it)."""
    cfg = smoke_with_settings({"a": {"overrides": {"epochs": 1}, "seeds": [0, 1], "suites": ["cheap"]}})
    cfg["resources"]["train"]["gpu"] = 1
    conf = tmp_path / "gpu.yaml"
    conf.write_text(yaml.safe_dump(cfg))
    work = tmp_path / "work"
    work.mkdir()
    targets = [f"results/runs/a/seed{s}/run.json" for s in (0, 1)]
    monkeypatch.delenv("CUDA_VISIBLE_DEVICES", raising=False)  # GPU ids 0..N-1 (a user's list would be passed through)
    r = snakemake(work, *targets, "--cores", "2", "--configfile", str(conf), *extra)
    out = r.stdout + r.stderr
    assert r.returncode == 0, out[-3000:]
    running, peak = 0, 0
    for line in out.splitlines():
        if re.match(r"^(local)?rule train:", line.strip()):
            running += 1
            peak = max(peak, running)
        elif "(Rule: train)" in line and "Finished" in line:
            running -= 1
    gpus = [re.search(r"this job runs on GPU (\S+)", (work / f"logs/train/a/seed{s}.log").read_text()).group(1)
            for s in (0, 1)]
    return out, peak, gpus


def test_local_runs_never_share_a_gpu(tmp_path: Path, monkeypatch):
    out, peak, gpus = _two_gpu_trainings(tmp_path, monkeypatch)
    assert re.search(r'Provided resources:.*gpu=(Resource\("gpu", )?1\b', out), out[-3000:]
    assert peak == 1 and gpus == ["0", "0"], out[-3000:]


def test_local_gpu_jobs_each_get_their_own_gpu(tmp_path: Path, monkeypatch):
    """--resources gpu=2: two GPU jobs at once, and (gpu_slots) each on its own GPU, not both on GPU 0."""
    out, peak, gpus = _two_gpu_trainings(tmp_path, monkeypatch, "--resources", "gpu=2")
    assert re.search(r'Provided resources:.*gpu=(Resource\("gpu", )?2\b', out), out[-3000:]
    assert peak == 2 and sorted(gpus) == ["0", "1"], (gpus, out[-3000:])


def test_moving_the_data_or_the_clone_reruns_nothing(tmp_path: Path):
    """The data root and the library path reach the jobs through the environment (TRADES_*), not params:
    after a finished run + evaluation, neither another data_root nor another clone of the repository
    makes Snakemake rerun anything, while a real change of the experiment does. The data root is still
    recorded in the run's config.yaml (provenance)."""
    import shutil

    cfg = smoke_with_settings({"a": {"overrides": {"epochs": 1}, "seeds": [0], "suites": ["cheap"]}})
    conf = tmp_path / "one.yaml"
    conf.write_text(yaml.safe_dump(cfg))
    work = tmp_path / "work"
    work.mkdir()
    target = "results/runs/a/seed0/eval_cheap.json"
    r = snakemake(work, target, "--cores", "2", "--configfile", str(conf))
    assert r.returncode == 0, (r.stdout + r.stderr)[-3000:]
    assert yaml.safe_load((work / "results/runs/a/seed0/config.yaml").read_text())["data_root"] == "data"

    def dry_run(*extra: str, snakefile: Path = SNAKEFILE) -> str:
        cmd = [sys.executable, "-m", "snakemake", target, "-n", "--configfile", str(conf), *extra,
               "--snakefile", str(snakefile), "--directory", str(work)]
        r = subprocess.run(cmd, capture_output=True, text=True, timeout=300)
        assert r.returncode == 0, (r.stdout + r.stderr)[-3000:]
        return r.stdout + r.stderr

    assert "Nothing to be done" in dry_run()
    assert "Nothing to be done" in dry_run("--config", f"data_root={tmp_path / 'moved_data'}")
    clone = tmp_path / "clone"  # the repository moved elsewhere: another workflow.basedir, TRADES_SRC
    for name in ("workflow", "envs", "src"):
        shutil.copytree(ROOT / name, clone / name, ignore=shutil.ignore_patterns("__pycache__"))
    for name in ("Snakefile", "config.yaml"):
        shutil.copy2(ROOT / name, clone / name)
    assert "Nothing to be done" in dry_run(snakefile=clone / "Snakefile")
    # the control: a changed experiment (a run-config key) does rerun the run and its evaluation
    cfg["settings"]["a"]["overrides"]["epochs"] = 2
    conf.write_text(yaml.safe_dump(cfg))
    out = dry_run()
    assert "Nothing to be done" not in out and job_counts(out).get("train") == 1, out[-3000:]
