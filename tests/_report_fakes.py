"""Tiny fake aggregation outputs in aggregate.py's formats (summary.csv, selection.json), for the table/figure tests.

``make_fake_results(root)`` writes ``root/results/summary.csv``, ``root/results/selection.json``
and, per run, ``runs/{setting}/seed{seed}/epochs.csv``, ``batches.csv``, ``landscape.npz``,
``run.json``; it returns a dict with the paths, the DataFrame, the selection and the table/figure
specs (the `tables:` / `figures:` config sections). Numbers are chosen so the expected table cells
can be computed by hand in the tests.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd

EPOCH_COLUMNS = [
    "epoch", "lr", "train_loss", "train_ce", "train_kl", "train_clean_acc", "train_adv_acc", "val_clean_acc",
    "val_pgd_acc", "val_fosc", "val_sgcs", "val_gradalign", "w_grad_norm", "ce_norm", "kl_norm",
    "grad_cosine_similarity", "noise_batches", "fosc_over_threshold", "is_best", "epoch_time_s",
]
BATCH_COLUMNS = ["epoch", "batch", "step", "loss", "ce", "kl", "w_grad_norm", "ce_norm", "kl_norm",
                 "grad_cosine_similarity", "noised"]

TABLE_SPECS = {
    "table1": {"setting": "default"},
    "table2": {"panels": [
        {"title": "Learning Rate = 0.1", "row": "beta", "col": "batch_size",
         "settings": ["b1_bs128", "b3_bs128", "b3_bs256"]},
        {"title": "Batch Size = 128", "row": "beta", "col": "lr", "settings": ["b1_bs128", "b3_bs128_lr0.01"]},
    ]},
    "table3": {"regular_unstable": "default", "fixed": "fixed"},
    "table4": {"row": "beta", "col": "dataset", "settings": ["b3_bs256", "c10_b3"]},
    "table5": {"row": "beta", "settings": ["lrsched_b1", "lrsched_b6"]},
    "table6": {"regular_unstable": "default", "modified": "modified"},
    "table7": {"row": "beta", "settings": ["awp_b1"]},
}
FIGURE_SPECS = {
    "figure1": {"setting": "default"},
    "figure2": {"setting": "default"},
    "figure3": {"setting": "default"},
    "figure4": {"setting": "default"},
    "figure5": {"setting": "default"},
    "figure6": {"unstable": "default", "fixed": "fixed"},
    "figure7": {"unstable": "lrsched_b1", "regular": "lrsched_b6"},
}

# setting -> (dataset, beta, batch_size, lr, method, fix, {seed: (clean, pgd, square, aa, unstable, status)})
RUNS = {
    "default": ("cifar100", 3.0, 256, 0.1, "trades", False, {
        0: (0.53, 0.24, 0.23, 0.20, False, "complete"),
        1: (0.54, 0.25, 0.24, 0.21, False, "complete"),
        2: (0.55, 0.24, 0.22, 0.19, False, "complete"),
        3: (0.56, 0.29, 0.12, 0.10, True, "complete"),
        4: (0.55, 0.27, 0.15, 0.13, True, "complete"),
        5: (None, None, None, None, None, "diverged"),
    }),
    "fixed": ("cifar100", 3.0, 256, 0.1, "trades", True, {
        0: (0.52, 0.23, 0.22, 0.20, False, "complete"),
        3: (0.53, 0.25, 0.24, 0.21, False, "complete"),
        4: (0.52, 0.24, 0.23, 0.19, False, "complete"),
    }),
    "modified": ("cifar100", 3.0, 256, 0.1, "modified", False, {
        0: (0.50, 0.24, 0.23, 0.20, False, "complete"),
        1: (0.51, 0.25, 0.24, 0.20, False, "complete"),
    }),
    "b1_bs128": ("cifar100", 1.0, 128, 0.1, "trades", False, {
        0: (0.6, 0.3, 0.1, 0.1, True, "complete"), 1: (0.6, 0.3, 0.1, 0.1, True, "complete"),
        2: (0.6, 0.3, 0.25, 0.2, False, "complete"),
    }),
    "b3_bs128": ("cifar100", 3.0, 128, 0.1, "trades", False, {
        0: (0.6, 0.3, 0.25, 0.2, False, "complete"), 1: (0.6, 0.3, 0.1, 0.1, True, "complete"),
        2: (None, None, None, None, None, "diverged"),
    }),
    "b3_bs256": ("cifar100", 3.0, 256, 0.1, "trades", False, {
        0: (0.6, 0.3, 0.25, 0.2, False, "complete"),
    }),
    "b3_bs128_lr0.01": ("cifar100", 3.0, 128, 0.01, "trades", False, {
        0: (0.6, 0.3, 0.25, 0.2, False, "complete"), 1: (0.6, 0.3, 0.25, 0.2, False, "complete"),
    }),
    "c10_b3": ("cifar10", 3.0, 256, 0.1, "trades", False, {
        0: (0.8, 0.5, 0.45, 0.44, False, "complete"),
    }),
    "lrsched_b1": ("cifar100", 1.0, 256, 0.1, "trades", False, {
        0: (0.62, 0.29, 0.05, 0.05, True, "complete"), 1: (0.64, 0.27, 0.06, 0.04, True, "complete"),
    }),
    "lrsched_b6": ("cifar100", 6.0, 256, 0.1, "trades", False, {
        0: (0.55, 0.29, 0.25, 0.24, False, "complete"), 1: (0.56, 0.30, 0.26, 0.25, False, "complete"),
    }),
    "awp_b1": ("cifar100", 1.0, 256, 0.1, "trades", False, {
        0: (0.60, 0.29, 0.10, 0.10, True, "complete"),
    }),
}


def _epochs(seed: int, unstable: bool, n: int = 12, rise: int = 6, fix: bool = False,
            heal: bool = False) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    e = np.arange(1, n + 1)
    fosc = 0.01 + 0.002 * rng.random(n)
    if unstable:
        fosc[rise - 1:] += 0.15
        if fix:
            fosc[rise:] = 0.012
        if heal:
            fosc[rise + 2:] = 0.011
    clean = np.linspace(0.3, 0.6, n)
    adv = clean - 0.2 + (fosc > 0.1) * 0.22
    df = pd.DataFrame({
        "epoch": e, "lr": 0.1, "train_loss": 2.0 - 0.05 * e, "train_ce": 1.5, "train_kl": 0.5,
        "train_clean_acc": clean, "train_adv_acc": adv, "val_clean_acc": clean - 0.05,
        "val_pgd_acc": 0.2 + 0.005 * e + 0.02 * (fosc > 0.1), "val_fosc": fosc,
        "val_sgcs": 0.8 - 2 * (fosc - 0.01), "val_gradalign": 0.9 - 3 * (fosc - 0.01),
        "w_grad_norm": 3 + 5 * (fosc > 0.1) + rng.random(n),
        "ce_norm": 1.0, "kl_norm": 2.0, "grad_cosine_similarity": 0.5, "noise_batches": 0,
        "fosc_over_threshold": fosc > 0.1, "is_best": False, "epoch_time_s": 10.0,
    })
    return df[EPOCH_COLUMNS]


def _batches(n_epochs: int = 12, per_epoch: int = 8, seed: int = 0, logged: bool = True) -> pd.DataFrame:
    if not logged:
        return pd.DataFrame(columns=BATCH_COLUMNS)
    rng = np.random.default_rng(seed)
    rows = []
    for ep in range(1, n_epochs + 1):
        for b in range(per_epoch):
            step = (ep - 1) * per_epoch + b
            spike = 4.0 if b in (2, 5) else 0.0
            rows.append({"epoch": ep, "batch": b, "step": step, "loss": 2.0, "ce": 1.5, "kl": 0.5,
                         "w_grad_norm": 3 + spike + rng.random(), "ce_norm": 1 + 0.1 * rng.random(),
                         "kl_norm": 2 + spike, "grad_cosine_similarity": 0.8 - 0.15 * spike, "noised": False})
    return pd.DataFrame(rows, columns=BATCH_COLUMNS)


def _landscape(seed: int, rugged: bool) -> dict:
    a = np.linspace(-8 / 255, 8 / 255, 9)
    b = np.linspace(-8 / 255, 8 / 255, 7)
    A, B = np.meshgrid(a, b, indexing="ij")
    loss = 1.0 + 200 * A**2 + 50 * B**2
    if rugged:
        loss = loss + 0.5 * np.random.default_rng(seed).random(loss.shape)
    return {"loss": loss, "a": a, "b": b, "n_images": np.int64(16), "seed": np.int64(seed)}


def make_fake_results(root: Path, *, with_unstable: bool = True, self_healing: bool = True,
                      batches_logged: bool = True) -> dict:
    """Write the fake results tree under ``root``; ``with_unstable=False`` gives a `default` setting
    without any Unstable seed (and no self-healing run)."""
    root = Path(root)
    res = root / "results"
    rows = []
    selection = {"threshold": 0.08, "rules": {"unstable": "pgd10_acc - square_acc >= 0.08"}, "groups": {}}
    run_dirs = {}
    for setting, (dataset, beta, bs, lr, method, fix, runs) in RUNS.items():
        groups = {"regular": [], "unstable": [], "diverged": [], "self_healing": []}
        for seed, (clean, pgd, square, aa, unstable, status) in runs.items():
            if not with_unstable and unstable:
                clean, pgd, square, aa, unstable = 0.54, 0.24, 0.23, 0.20, False
            run_dir = res / "runs" / setting / f"seed{seed}"
            run_dir.mkdir(parents=True, exist_ok=True)
            run_dirs[(setting, seed)] = run_dir
            gap_sq = None if pgd is None else pgd - square
            gap_aa = None if pgd is None else pgd - aa
            rows.append({
                "setting": setting, "seed": seed, "dataset": dataset, "method": method, "beta": beta,
                "batch_size": bs, "lr": lr, "lr_milestones": "", "awp": setting.startswith("awp"), "fix": fix,
                "status": status, "best_epoch": 10, "clean_acc": clean, "pgd10_acc": pgd, "square_acc": square,
                "autoattack_acc": aa,
                "apgd_ce_acc": None if aa is None else aa + 0.03, "apgd_t_acc": None if aa is None else aa + 0.01,
                "fab_t_acc": None if aa is None else aa + 0.02, "fosc": 0.01, "sgcs": 0.8,
                "gap_pgd_square": gap_sq, "gap_pgd_aa": gap_aa, "unstable": unstable,
                "max_val_fosc": 0.2 if unstable else 0.012, "noise_batches_total": 0, "run_dir": str(run_dir),
            })
            if status == "diverged":
                groups["diverged"].append(seed)
            elif unstable:
                groups["unstable"].append(seed)
            else:
                groups["regular"].append(seed)
            heal = bool(self_healing and with_unstable and setting == "default" and seed == 4)
            _epochs(seed, bool(unstable), fix=(setting == "fixed" and seed in (3, 4)) and with_unstable,
                    heal=heal).to_csv(run_dir / "epochs.csv", index=False)
            _batches(seed=seed, logged=batches_logged).to_csv(run_dir / "batches.csv", index=False)
            np.savez(run_dir / "landscape.npz", **_landscape(seed, bool(unstable)))
            (run_dir / "run.json").write_text(json.dumps({
                "status": status, "seed": seed, "config": {"fix": {"fosc_threshold": 0.1}}}))
        if setting == "default" and self_healing and with_unstable:
            groups["self_healing"] = [4]
        rep = {g: (groups[g][0] if groups[g] else None) for g in ("regular", "unstable", "self_healing")}
        groups["representative"] = rep
        selection["groups"][setting] = groups
    summary = pd.DataFrame(rows)
    res.mkdir(parents=True, exist_ok=True)
    summary.to_csv(res / "summary.csv", index=False)
    (res / "selection.json").write_text(json.dumps(selection, indent=2))
    return {"summary_csv": res / "summary.csv", "selection_json": res / "selection.json",
            "summary": pd.read_csv(res / "summary.csv"), "selection": selection, "run_dirs": run_dirs,
            "tables": TABLE_SPECS, "figures": FIGURE_SPECS, "results": res}
