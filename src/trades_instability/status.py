"""``python -m trades_instability status``: where every training run of a sweep stands, in one table.

    python -m trades_instability status                       # config.yaml, its results_dir
    python -m trades_instability status --configfile tests/configs/smoke.yaml --results-dir /tmp/smoke/results
    python -m trades_instability status --watch 60            # refresh every minute (Ctrl-C stops)
    python -m trades_instability status --json                # for scripts (one JSON object per refresh)

One row per run of the config (setting, seed, state, epoch k/N, last validation clean and PGD-10 accuracy,
last FOSC with ``!`` when above the fix threshold, epochs with the fix's noise, s/epoch, ETA, host/GPU),
then counts per state, the runs flagged by FOSC, and GPU-hours spent and projected from the measured epoch
times. It only reads what the runs write (rundir/progress.py), so it is safe while they train, works on a
SLURM login node over the shared results folder (squeue tells the live jobs) and on a results folder
copied from another machine. It does not need Snakemake.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path
from typing import Any

from trades_instability.one_line_parser import OneLineParser
from trades_instability.rundir import layout
from trades_instability.rundir import lock as run_lock
from trades_instability.rundir.progress import STATES, RunProgress, read_progress

PROG = "python -m trades_instability status"
REPO_CONFIG = Path(__file__).resolve().parents[2] / "config.yaml"


def _positive(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"must be a number of seconds, got {text!r}") from None
    if value <= 0:
        raise argparse.ArgumentTypeError(f"must be > 0 seconds, got {text}")
    return value


def build_parser() -> argparse.ArgumentParser:
    p = OneLineParser(prog=PROG, description=__doc__.splitlines()[0])
    p.add_argument("--configfile", default=None,
                   help="pipeline config, as given to snakemake (default: ./config.yaml, else the repository's)")
    p.add_argument("--results-dir", default=None,
                   help="results folder (default: the config's results_dir, relative to the current folder)")
    p.add_argument("--watch", type=_positive, default=None, metavar="SECONDS", help="refresh every SECONDS")
    p.add_argument("--json", action="store_true", help="print JSON (runs and summary) instead of the table")
    return p


def _stale_checker():
    """rundir/lock.py's stale rule with one squeue call per refresh for all SLURM holders (not one per run)."""
    table: dict[str, dict[str, str] | None] = {}

    def job_state(job: str) -> str | None:
        if "all" not in table:
            table["all"] = run_lock.slurm_job_states()
        states = table["all"]
        return None if states is None else states.get(str(job), "")

    return lambda holder: run_lock.stale_reason(holder, job_state=job_state)


def collect(cfg: Any, results_dir: str) -> list[RunProgress]:
    """The progress of every run of the pipeline config ``cfg`` below ``results_dir``."""
    stale = _stale_checker()
    out = []
    for setting, seed in cfg.runs():
        rc = cfg.run_config(setting, seed)
        out.append(read_progress(layout.run_dir(results_dir, setting, seed), setting, seed, epochs=rc["epochs"],
                                 fosc_threshold=rc["fix"]["fosc_threshold"], stale=stale))
    return out


def summarize(runs: list[RunProgress], gpus_per_job: int) -> dict[str, Any]:
    """Counts per state, the runs flagged by FOSC, and device hours spent and projected: each unfinished
    run's remaining epochs at its own measured s/epoch, else its setting's mean, else the mean of all."""
    def mean(xs):
        return sum(xs) / len(xs) if xs else None

    measured = [r.s_per_epoch for r in runs if r.s_per_epoch]
    by_setting = {s: mean([r.s_per_epoch for r in runs if r.setting == s and r.s_per_epoch])
                  for s in {r.setting for r in runs}}
    remaining_s, unprojected = 0.0, []
    for r in runs:
        if r.state in ("finished", "diverged") or not r.epochs:
            continue
        rate = r.s_per_epoch or by_setting.get(r.setting) or mean(measured)
        if rate is None:
            unprojected.append(f"{r.setting}/seed{r.seed}")
            continue
        remaining_s += max(0, r.epochs - r.epoch) * rate
    factor = max(gpus_per_job, 1)  # a CPU-only config (gpu: 0) counts its jobs' hours
    spent_h = sum(r.spent_s for r in runs) * factor / 3600
    return {
        "runs": len(runs),
        "states": {s: sum(r.state == s for r in runs) for s in STATES},
        "flagged": [{"run": f"{r.setting}/seed{r.seed}", "fosc": r.val_fosc, "threshold": r.fosc_threshold}
                    for r in runs if r.fosc_flagged],
        "unit": "GPU-hours" if gpus_per_job else "CPU-hours (train jobs ask for no GPU)",
        "spent_h": spent_h,
        "projected_h": spent_h + remaining_s * factor / 3600,
        "not_projected": unprojected,
    }


def _num(v: float | None, fmt: str = ".4f") -> str:
    return "-" if v is None else format(v, fmt)


def _duration(s: float | None) -> str:
    if s is None:
        return "-"
    s = round(s)
    return f"{s // 3600}h{s % 3600 // 60:02d}m" if s >= 3600 else f"{s // 60}m{s % 60:02d}s"


COLUMNS = ("setting", "seed", "state", "epoch", "clean", "pgd10", "fosc", "noise", "s/epoch", "eta", "host/gpu")


def _cells(r: RunProgress) -> tuple[str, ...]:
    where = "/".join(x for x in (r.host, f"GPU {r.gpu}" if r.gpu and r.state == "running" else r.gpu) if x)
    if r.slurm_job_id and r.state == "running":
        where += f" (job {r.slurm_job_id})"
    return (r.setting, str(r.seed), r.state, f"{r.epoch}/{r.epochs if r.epochs else '?'}", _num(r.val_clean_acc),
            _num(r.val_pgd_acc), _num(r.val_fosc) + ("!" if r.fosc_flagged else ""), str(r.noise_injections),
            _num(r.s_per_epoch, ".1f"), _duration(r.eta_s), where or "-")


def render(runs: list[RunProgress], summary: dict[str, Any], results_dir: str) -> str:
    rows = [COLUMNS] + [_cells(r) for r in runs]
    widths = [max(len(row[i]) for row in rows) for i in range(len(COLUMNS))]
    lines = ["  ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)).rstrip() for row in rows]
    counts = ", ".join(f"{n} {s}" for s, n in summary["states"].items() if n)
    lines += ["", f"{summary['runs']} runs in {results_dir}: {counts}"]
    if summary["flagged"]:
        lines.append("FOSC above the fix threshold at the last epoch (!): " + ", ".join(
            f"{f['run']} ({f['fosc']:.4f} > {f['threshold']:g})" for f in summary["flagged"]))
    else:
        lines.append("FOSC above the fix threshold at the last epoch: none")
    projected = f"{summary['projected_h']:.2f} projected for the whole sweep"
    if summary["not_projected"]:
        projected += f" ({len(summary['not_projected'])} runs without any measured epoch time left out)"
    lines.append(f"{summary['unit']}: {summary['spent_h']:.2f} spent, {projected}")
    failed = [r for r in runs if r.state == "failed"]
    for r in failed:
        lines.append(f"failed {r.setting}/seed{r.seed}: {r.reason}")
    return "\n".join(lines)


def _load(args) -> tuple[Any, str]:
    from trades_instability.config.pipeline_loading import load

    path = Path(args.configfile) if args.configfile else (Path("config.yaml") if Path("config.yaml").is_file()
                                                           else REPO_CONFIG)
    if not path.is_file():
        raise FileNotFoundError(f"config file {path} not found; pass the one the sweep runs with (--configfile)")
    cfg = load(path)
    return cfg, (args.results_dir or cfg.results_dir).rstrip("/")


def snapshot(cfg: Any, results_dir: str) -> tuple[list[RunProgress], dict[str, Any]]:
    runs = collect(cfg, results_dir)
    return runs, summarize(runs, int(cfg.resources("train").get("gpu", 1)))


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    from trades_instability.config.pipeline import PipelineConfigError

    try:
        cfg, results_dir = _load(args)
    except (PipelineConfigError, OSError) as e:
        print(f"{PROG}: error: {e}", file=sys.stderr)
        return 2
    if not Path(results_dir).is_dir():
        print(f"{PROG}: note: results folder {results_dir} does not exist (yet): every run is pending",
              file=sys.stderr)
    try:
        while True:
            runs, summary = snapshot(cfg, results_dir)
            if args.json:
                print(json.dumps({"results_dir": results_dir, "time": time.time(),
                                  "runs": [r.to_dict() for r in runs], "summary": summary}), flush=True)
            else:
                if args.watch and sys.stdout.isatty():
                    print("\033[H\033[2J", end="")  # clear the terminal between refreshes
                stamp = f"{time.strftime('%Y-%m-%d %H:%M:%S')}  (every {args.watch:g} s)\n" if args.watch else ""
                print(stamp + render(runs, summary, results_dir), flush=True)
            if not args.watch:
                return 0
            time.sleep(args.watch)
    except KeyboardInterrupt:
        return 0
    except BrokenPipeError:  # `status | head`: the reader is gone
        sys.stdout = open(os.devnull, "w")  # noqa: SIM115 (stays open: Python flushes stdout at exit)
        return 0


if __name__ == "__main__":
    sys.exit(main())
