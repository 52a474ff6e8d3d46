"""Aggregation of finished runs into ``summary.csv`` (one tidy row per run) and ``selection.json``
(which seeds are Regular / Unstable / self-healing / diverged, chosen by documented rules).

Inputs per run directory (``results/runs/{setting}/seed{seed}/``): ``run.json`` (trainer),
``epochs.csv`` (trainer) and ``eval_{suite}.json`` for each suite of the setting (evaluation). Nothing
else is read, and nothing is chosen by hand: the rules below (also written into
``selection.json["rules"]``) decide every group.
"""

from __future__ import annotations

import json
import math
import os
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

import pandas as pd

from trades_instability.config.run import PLANT_KINDS, PLANT_NONE
from trades_instability.core.verdict import DEFAULT_UNSTABLE_THRESHOLD as DEFAULT_THRESHOLD
from trades_instability.core.verdict import is_unstable
from trades_instability.rundir import layout
from trades_instability.rundir.atomic_io import read_json

EVAL_NUMBERS = (
    "clean_acc", "pgd10_acc", "square_acc", "autoattack_acc", "apgd_ce_acc", "apgd_t_acc", "fab_t_acc",
    "fosc", "sgcs", "gradalign",
)
SUMMARY_COLUMNS = (
    # contract columns (what tables, figures and detection read), in this order
    "setting", "seed", "dataset", "method", "beta", "batch_size", "lr", "lr_milestones", "awp", "fix",
    "status", "best_epoch",
    *EVAL_NUMBERS, "gap_pgd_square", "gap_pgd_aa", "unstable",
    "max_val_fosc", "noise_batches_total", "run_dir",
    "planted",  # a planted run (plant_masking: a positive control); the comparison with the paper leaves it out
    # extras
    "epochs", "epochs_completed", "best_val_pgd_acc", "fosc_threshold", "self_healing",
    "worst_case_acc", "n_examples", "suites", "eval_status", "convention", "aa_flags", "arch", "plant",
    # the last-epoch checkpoint (eval JSON "last"); the columns above are the best checkpoint's
    "last_epoch", *(f"last_{k}" for k in EVAL_NUMBERS), "last_gap_pgd_square", "last_gap_pgd_aa", "last_unstable",
)

RULES = {
    "unstable": "A run is Unstable when its test PGD-10 accuracy minus its Square accuracy (best PGD-10 "
                "validation checkpoint) is >= threshold (selection.unstable_threshold, paper: 0.08); "
                "Regular when the gap is below it. Runs without both numbers are unclassified.",
    "regular": "Regular: a classified, non-diverged run that is not Unstable.",
    "diverged": "Runs whose run.json status is 'diverged' (non-finite loss during training) are listed "
                "under 'diverged' and excluded from every other group.",
    "representative_unstable": "The Unstable seed with the LARGEST PGD-10 - Square gap (ties: smallest seed).",
    "representative_regular": "The Regular seed with the SMALLEST PGD-10 - Square gap (ties: smallest seed).",
    "self_healing": "A Regular run of a setting WITHOUT the fix whose per-epoch validation FOSC exceeded its "
                    "fix.fosc_threshold (from its run config) in at least one epoch and was at or below the "
                    "threshold again in a later epoch (runs with the fix enabled are healed by the fix and "
                    "never listed here).",
    "representative_self_healing": "The self-healing seed with the highest peak validation FOSC (ties: smallest seed).",
    "planted": "Planted runs (a setting's plant_masking: gradient masking put there on purpose, a positive "
               "control; README 'Planted control') are classified by the same rules and listed under 'planted' "
               "too; the comparison with the paper leaves them out of every cell.",
    "eval_merge": "When a setting has several suites, their JSONs are merged in the order of the setting's "
                  "suites: a later suite's non-null number replaces an earlier one.",
}


class AggregateError(RuntimeError):
    """A run's artifacts are missing or malformed; the message names the file."""


# ------------------------------------------------------------------------------------- helpers


def _num(v: Any) -> float | None:
    if v is None or isinstance(v, bool):
        return None
    try:
        f = float(v)
    except (TypeError, ValueError):
        return None
    return f if math.isfinite(f) else None


def _read_json(path: Path) -> dict[str, Any]:
    try:
        return read_json(path)
    except (FileNotFoundError, ValueError) as e:
        raise AggregateError(str(e)) from None


def _read_epochs(path: Path) -> pd.DataFrame:
    try:
        return pd.read_csv(path)
    except FileNotFoundError:
        raise AggregateError(f"{path} is missing") from None
    except pd.errors.EmptyDataError:
        return pd.DataFrame()


def classify(pgd10_acc: Any, square_acc: Any, threshold: float = DEFAULT_THRESHOLD) -> bool | None:
    """Unstable rule: PGD-10 - Square >= threshold; None without both numbers."""
    return is_unstable(_num(pgd10_acc), _num(square_acc), threshold)


def self_healing_peak(fosc: Iterable[Any], threshold: float) -> float | None:
    """Peak FOSC if the series exceeds ``threshold`` and later comes back to <= threshold, else None."""
    values = [_num(v) for v in fosc]
    above_seen, peak = False, None
    for v in values:
        if v is None:
            continue
        if v > threshold:
            above_seen = True
            peak = v if peak is None else max(peak, v)
        elif above_seen:
            # came back below after exceeding: the peak is the highest value over the whole run
            return max(x for x in values if x is not None)
    return None


# -------------------------------------------------------------------------------------- per run


def _merge_evals(evals: list[tuple[str, dict[str, Any]]]) -> tuple[dict[str, Any], dict[str, Any], list[str]]:
    """A run's eval JSONs merged over its suites, in order (a later suite's non-null number wins): the numbers
    of the evaluated (best) checkpoint, those of the last-epoch one (``last``), and each suite's status."""
    merged: dict[str, Any] = {k: None for k in (*EVAL_NUMBERS, "worst_case_acc", "n_examples")}
    eval_status = []
    for _suite, doc in evals:
        for k in merged:
            if doc.get(k) is not None:
                merged[k] = doc[k]
        eval_status.append(str(doc.get("status", "ok")))

    last: dict[str, Any] = {k: None for k in ("epoch", *EVAL_NUMBERS)}
    for _suite, doc in evals:  # the same merge for the last-epoch numbers
        for k, v in (doc.get("last") or {}).items():
            if k in last and v is not None:
                last[k] = v
    return merged, last, eval_status


def collect_run(setting: str, seed: int, run_dir: str | os.PathLike, suites: list[str],
                threshold: float = DEFAULT_THRESHOLD) -> tuple[dict[str, Any], float | None]:
    """One summary row for a run directory, plus its self-healing peak FOSC (None if not self-healing
    by the FOSC criterion alone; the Regular condition is applied in :func:`select`)."""
    run_dir = Path(run_dir)
    info = _read_json(run_dir / layout.RUN_JSON)
    cfg = info.get("config") or {}
    epochs = _read_epochs(run_dir / layout.EPOCHS_CSV)
    evals = [(s, _read_json(run_dir / layout.eval_json(s))) for s in suites]
    merged, last, eval_status = _merge_evals(evals)

    pgd, sq, aa = _num(merged["pgd10_acc"]), _num(merged["square_acc"]), _num(merged["autoattack_acc"])
    aa_flags = autoattack_flags([doc for _suite, doc in evals])
    lpgd, lsq, laa = _num(last["pgd10_acc"]), _num(last["square_acc"]), _num(last["autoattack_acc"])
    fix = cfg.get("fix") or {}
    plant = cfg.get("plant_masking") or {}
    planted = plant.get("kind", PLANT_NONE) != PLANT_NONE
    fosc_thr = _num(fix.get("fosc_threshold"))
    if "val_fosc" in epochs.columns and len(epochs):
        fosc_series = pd.to_numeric(epochs["val_fosc"], errors="coerce")
        max_fosc = _num(fosc_series.max())
    else:
        fosc_series, max_fosc = pd.Series(dtype=float), None
    noise_total = None
    if "noise_batches" in epochs.columns and len(epochs):
        noise_total = int(pd.to_numeric(epochs["noise_batches"], errors="coerce").fillna(0).sum())
    peak = self_healing_peak(fosc_series.tolist(), fosc_thr) if fosc_thr is not None else None

    row = {
        "setting": setting,
        "seed": int(seed),
        "dataset": cfg.get("dataset"),
        "method": cfg.get("method"),
        "beta": _num(cfg.get("beta")),
        "batch_size": cfg.get("batch_size"),
        "lr": _num(cfg.get("lr")),
        "lr_milestones": json.dumps(list(cfg.get("lr_milestones") or [])),
        "awp": bool((cfg.get("awp") or {}).get("enabled", False)),
        "fix": bool(fix.get("enabled", False)),
        "planted": planted,
        "status": info.get("status"),
        "best_epoch": info.get("best_epoch"),
        **{k: merged[k] for k in EVAL_NUMBERS},
        "gap_pgd_square": (pgd - sq) if pgd is not None and sq is not None else None,
        "gap_pgd_aa": (pgd - aa) if pgd is not None and aa is not None else None,
        "unstable": classify(pgd, sq, threshold),
        "max_val_fosc": max_fosc,
        "noise_batches_total": noise_total,
        "run_dir": str(run_dir),
        "epochs": cfg.get("epochs"),
        "epochs_completed": info.get("epochs_completed"),
        "best_val_pgd_acc": info.get("best_val_pgd_acc"),
        "fosc_threshold": fosc_thr,
        "self_healing": None,  # filled in by select()
        "worst_case_acc": merged["worst_case_acc"],
        "n_examples": merged["n_examples"],
        "suites": " ".join(suites),
        "eval_status": " ".join(eval_status),
        "convention": cfg.get("convention"),
        "aa_flags": aa_flags,
        "arch": cfg.get("arch"),
        "plant": plant_description(plant) if planted else None,
        "last_epoch": last["epoch"],
        **{f"last_{k}": last[k] for k in EVAL_NUMBERS},
        "last_gap_pgd_square": (lpgd - lsq) if lpgd is not None and lsq is not None else None,
        "last_gap_pgd_aa": (lpgd - laa) if lpgd is not None and laa is not None else None,
        "last_unstable": classify(lpgd, lsq, threshold),
    }
    return row, peak


def plant_description(plant: Mapping[str, Any]) -> str:
    """``quantize levels=8``, ``stochastic shift=2 noise_std=0 epochs=2-3``: a run config's planted masking in
    one cell (the keys its kind reads, config/run.py PLANT_KINDS)."""
    kind = plant["kind"]
    parts = [kind] + [f"{k}={plant.get(k):g}" for k in PLANT_KINDS[kind]]
    window = plant.get("epochs") or []
    return " ".join(parts + ([f"epochs={window[0]}-{window[1]}"] if window else []))


def autoattack_flags(docs: Iterable[Mapping[str, Any]]) -> str | None:
    """pyautoattack's flags raised in any of a run's eval JSONs, as ``name:count`` joined by spaces (counts
    summed over suites); "" when AutoAttack ran and raised none; None when no suite ran AutoAttack."""
    counts: dict[str, int] | None = None
    for doc in docs:
        flags = doc.get("autoattack_flags")
        if flags is None:
            continue
        if counts is None:
            counts = {}
        for name, n in flags.items():
            counts[name] = counts.get(name, 0) + int(n)
    return None if counts is None else " ".join(f"{k}:{v}" for k, v in sorted(counts.items()))


# ------------------------------------------------------------------------------------ selection


def _pick(df: pd.DataFrame, by: str, largest: bool) -> int | None:
    if df.empty:
        return None
    d = df.assign(_k=df[by] if not largest else -df[by]).sort_values(["_k", "seed"], kind="mergesort")
    return int(d.iloc[0]["seed"])


def _planted_mask(rows: pd.DataFrame) -> pd.Series:
    """The planted runs among ``rows`` (False where summary.csv has no planted column: older summaries)."""
    if "planted" not in rows.columns:
        return pd.Series(False, index=rows.index)
    return rows["planted"].map(lambda v: v is True or str(v).strip().lower() == "true")


def select(summary: pd.DataFrame, peaks: Mapping[tuple[str, int], float | None],
           threshold: float = DEFAULT_THRESHOLD) -> dict[str, Any]:
    """selection.json content from the summary rows (and each run's self-healing FOSC peak)."""
    groups: dict[str, Any] = {}
    for setting in dict.fromkeys(summary["setting"]):  # keep order of appearance
        rows = summary[summary["setting"] == setting]
        diverged = rows[rows["status"] == "diverged"]
        live = rows[rows["status"] != "diverged"]
        classified = live[live["unstable"].map(
            lambda v: v is not None and not (isinstance(v, float) and math.isnan(v)))]
        unstable = classified[classified["unstable"].astype(bool)]
        regular = classified[~classified["unstable"].astype(bool)]
        unclassified = live[~live.index.isin(classified.index)]
        heal_rows = []
        for _, r in regular.iterrows():
            peak = peaks.get((setting, int(r["seed"])))
            if peak is not None and not bool(r["fix"]):
                heal_rows.append({"seed": int(r["seed"]), "peak": peak})
        heal = pd.DataFrame(heal_rows, columns=["seed", "peak"])
        groups[setting] = {
            "regular": sorted(int(s) for s in regular["seed"]),
            "unstable": sorted(int(s) for s in unstable["seed"]),
            "diverged": sorted(int(s) for s in diverged["seed"]),
            "self_healing": sorted(int(s) for s in heal["seed"]),
            "unclassified": sorted(int(s) for s in unclassified["seed"]),
            "planted": sorted(int(s) for s in rows["seed"][_planted_mask(rows)]),
            "representative": {
                "regular": _pick(regular, "gap_pgd_square", largest=False),
                "unstable": _pick(unstable, "gap_pgd_square", largest=True),
                "self_healing": _pick(heal, "peak", largest=True),
            },
        }
    return {"threshold": float(threshold), "rules": dict(RULES), "groups": groups}


# --------------------------------------------------------------------------------------- driver


def aggregate(runs: Iterable[Mapping[str, Any]], threshold: float = DEFAULT_THRESHOLD,
              out_csv: str | os.PathLike | None = None, out_json: str | os.PathLike | None = None,
              ) -> tuple[pd.DataFrame, dict[str, Any]]:
    """Aggregate ``runs`` (mappings with setting, seed, run_dir, suites) into the summary frame and
    the selection dict; write them atomically when ``out_csv`` / ``out_json`` are given."""
    rows, peaks = [], {}
    for r in runs:
        row, peak = collect_run(r["setting"], int(r["seed"]), r["run_dir"], list(r["suites"]), threshold)
        rows.append(row)
        peaks[(row["setting"], row["seed"])] = peak
    summary = pd.DataFrame(rows, columns=list(SUMMARY_COLUMNS))
    for c in ("unstable", "self_healing", "best_epoch", "batch_size", "epochs", "epochs_completed",
              "noise_batches_total", "n_examples", "last_epoch", "last_unstable"):
        summary[c] = summary[c].astype(object)
    selection = select(summary, peaks, threshold)
    healing = {(s, seed) for s, g in selection["groups"].items() for seed in g["self_healing"]}
    summary["self_healing"] = [((s, int(seed)) in healing) if u is not None else None
                               for s, seed, u in zip(summary["setting"], summary["seed"], summary["unstable"],
                                                     strict=True)]
    if out_csv is not None:
        write_summary(summary, out_csv)
    if out_json is not None:
        from trades_instability.rundir.atomic_io import write_json

        write_json(out_json, selection)
    return summary, selection


def write_summary(summary: pd.DataFrame, path: str | os.PathLike) -> None:
    from trades_instability.rundir.atomic_io import atomic_write_text

    def fmt(v: Any) -> Any:
        if v is None or (isinstance(v, float) and math.isnan(v)):
            return ""
        if isinstance(v, bool):
            return "True" if v else "False"
        return v

    out = summary.copy()
    for c in out.columns:
        out[c] = [fmt(v) for v in out[c]]
    atomic_write_text(path, out.to_csv(index=False, float_format="%.10g"))


def load_summary(path: str | os.PathLike) -> pd.DataFrame:
    """Read summary.csv back with ``unstable``/``self_healing`` as True/False/None."""
    df = pd.read_csv(path)

    def b(v):
        if isinstance(v, bool):
            return v
        if isinstance(v, str):
            return {"true": True, "false": False}.get(v.strip().lower())
        return None

    for c in ("unstable", "self_healing", "awp", "fix", "planted", "last_unstable"):
        if c in df.columns:
            df[c] = df[c].map(b).astype(object)
    return df
