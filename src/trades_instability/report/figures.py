"""Figures 1-7 of the paper drawn from summary.csv, selection.json and the per-run logs.

``render_figure(name, spec, summary, selection, run_dirs, out_pdf)`` writes ``out_pdf`` and a PNG with
the same stem beside it. ``run_dirs`` maps ``(setting, seed)`` to a run directory holding
``epochs.csv``, ``batches.csv`` and ``landscape.npz`` (the formats of rundir/records.py and core/landscape.py).
Which seeds are drawn is decided by selection.json (representative Regular / Unstable / self-healing seeds),
never by hand.
Whatever is missing (no Unstable seed, no self-healing run, a log without batch metrics) becomes a
panel that says ``none: ...`` instead of an error, so a small smoke run still renders every figure.

What each figure shows (captions of the paper):

* figure1: 3-D loss landscapes of the representative Regular (a) and Unstable (b) run of ``setting``;
* figure2: FOSC x10, SGCS and PGD-10 validation accuracy per epoch, Regular (a) vs Unstable (b);
* figure3: FOSC and the gap train_clean_acc - train_adv_acc per epoch of the Unstable run;
* figure4: batch-level W_grad_norm, CE_norm, KL_norm, grad_cosine_similarity of the Unstable run in
  the epoch where FOSC first rises (:func:`fosc_rise_epoch`);
* figure5: the self-healing run: FOSC x10, train_clean_acc and W_grad_norm x0.3 per epoch;
* figure6: Unstable (setting ``unstable``) vs Fixed (setting ``fixed``) with the same seed: FOSC x10
  and PGD-10 per epoch;
* figure7: Unstable run of ``unstable`` (beta = 1) vs Regular run of ``regular`` (beta = 6) with lr
  scheduling: FOSC x5, SGCS, PGD-10 per epoch.

Scale factors can be changed with spec keys ``fosc_scale`` and ``grad_norm_scale``.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from trades_instability.config.run import FixConfig
from trades_instability.report import registry
from trades_instability.report.cells import load_selection, load_summary, planted_rows, representative_seed
from trades_instability.rundir import layout
from trades_instability.rundir.records import read_landscape

plt: Any = None  # matplotlib.pyplot, imported on first use (keeps `import figures` light)


def pyplot():
    """matplotlib.pyplot with the non-interactive Agg backend (imported once; also for detection and grids)."""
    global plt
    if plt is None:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as pyplot

        plt = pyplot
    return plt

FIGURES = registry.FIGURES  # figure1 .. figure7 (report/registry.py)
DEFAULT_FOSC_THRESHOLD = FixConfig.fosc_threshold  # the run config's default, used only when nothing else says
PNG_DPI = 150
COLORS = {"fosc": "#d62728", "sgcs": "#1f77b4", "pgd": "#2ca02c", "gap": "#9467bd", "train": "#ff7f0e",
          "wgrad": "#8c564b", "ce": "#17becf", "kl": "#e377c2", "cos": "#7f7f7f"}

RunDirs = Mapping[tuple[str, int], Path]


# --------------------------------------------------------------------------- data access
def _read_run_csv(run_dir: str | os.PathLike | None, name: str) -> pd.DataFrame | None:
    """``run_dir/name`` as a DataFrame, or None when there is no run dir or no such file."""
    if run_dir is None or not (Path(run_dir) / name).exists():
        return None
    return pd.read_csv(Path(run_dir) / name)


def read_epochs(run_dir: str | os.PathLike | None) -> pd.DataFrame | None:
    """epochs.csv of a run, or None when it does not exist / is empty."""
    df = _read_run_csv(run_dir, layout.EPOCHS_CSV)
    return df if df is not None and not df.empty else None


def read_batches(run_dir: str | os.PathLike | None) -> pd.DataFrame | None:
    return _read_run_csv(run_dir, layout.BATCHES_CSV)


def fosc_threshold(spec: Mapping, run_dir: str | os.PathLike | None,
                   summary_value: Any = None) -> tuple[float, str]:
    """The run's fix threshold: spec ``fosc_threshold`` > run.json config > run config.yaml >
    summary.csv ``fosc_threshold`` of the run > :data:`DEFAULT_FOSC_THRESHOLD`."""
    if spec.get("fosc_threshold") is not None:
        return float(spec["fosc_threshold"]), "config figures spec"
    if run_dir is not None:
        rj = Path(run_dir) / layout.RUN_JSON
        if rj.exists():
            try:
                v = json.loads(rj.read_text()).get("config", {}).get("fix", {}).get("fosc_threshold")
                if v is not None:
                    return float(v), "run.json"
            except (ValueError, AttributeError):
                pass
        cy = Path(run_dir) / layout.RUN_CONFIG
        if cy.exists():
            import yaml

            try:
                v = ((yaml.safe_load(cy.read_text()) or {}).get("fix") or {}).get("fosc_threshold")
                if v is not None:
                    return float(v), "run config.yaml"
            except (yaml.YAMLError, AttributeError):
                pass
    try:
        v = float(summary_value)
        if np.isfinite(v):
            return v, "summary.csv"
    except (TypeError, ValueError):
        pass
    return DEFAULT_FOSC_THRESHOLD, "default"


def fosc_rise_epoch(epochs: pd.DataFrame, threshold: float) -> tuple[int | None, str]:
    """Epoch where FOSC first rises: the first epoch whose ``val_fosc`` exceeds ``threshold``; if
    none does, the epoch with the largest increase of ``val_fosc`` over the previous epoch."""
    df = epochs.dropna(subset=["val_fosc"]).sort_values("epoch")
    if df.empty:
        return None, "no val_fosc logged"
    over = df[df["val_fosc"] > threshold]
    if not over.empty:
        return int(over["epoch"].iloc[0]), f"first epoch with val FOSC > {threshold:g}"
    if len(df) == 1:
        return int(df["epoch"].iloc[0]), "only epoch logged"
    inc = df["val_fosc"].diff()
    i = int(np.nanargmax(inc.to_numpy()))
    return int(df["epoch"].iloc[i]), f"no epoch above {threshold:g}: largest FOSC increase"


# --------------------------------------------------------------------------- drawing helpers
def none_panel(ax, message: str) -> None:
    """Replace the axes by a box saying ``none: <message>`` (what is missing, instead of an error)."""
    ax.set_axis_off()
    ax.text(0.5, 0.5, f"none: {message}", ha="center", va="center", fontsize=11, wrap=True,
            transform=ax.transAxes, bbox=dict(boxstyle="round", fc="#f4f4f4", ec="#999999"))


def _pick(selection: dict, setting: str | None, group: str) -> int | None:
    return None if setting is None else representative_seed(selection, setting, group)


def _run_dir(run_dirs: RunDirs, setting: str, seed: int | None) -> Path | None:
    if seed is None:
        return None
    return run_dirs.get((setting, int(seed)))


def _label_group(group: str) -> str:
    return {"regular": "Regular", "unstable": "Unstable", "self_healing": "self-healing",
            "fixed": "Fixed"}.get(group, group)


def _epochs_or_none(ax, run_dirs, setting, seed, group) -> pd.DataFrame | None:
    if seed is None:
        none_panel(ax, f"no {_label_group(group)} run in {setting}")
        return None
    df = read_epochs(_run_dir(run_dirs, setting, seed))
    if df is None:
        none_panel(ax, f"no epochs.csv for {setting} seed {seed}")
    return df


def _col(df: pd.DataFrame, name: str) -> pd.Series:
    return pd.to_numeric(df[name], errors="coerce") if name in df.columns else pd.Series(np.nan, index=df.index)


def _curves(ax, df: pd.DataFrame, fosc_scale: float, *, sgcs: bool = True, pgd: bool = True,
            threshold: float | None = None) -> None:
    e = df["epoch"]
    ax.plot(e, _col(df, "val_fosc") * fosc_scale, color=COLORS["fosc"], lw=1.6, label=f"FOSC ×{fosc_scale:g}")
    if sgcs:
        ax.plot(e, _col(df, "val_sgcs"), color=COLORS["sgcs"], lw=1.6, label="SGCS")
    if pgd:
        ax.plot(e, _col(df, "val_pgd_acc"), color=COLORS["pgd"], lw=1.6, label="PGD-10 val. acc.")
    if threshold is not None:
        ax.axhline(threshold * fosc_scale, color=COLORS["fosc"], ls=":", lw=1,
                   label=f"FOSC threshold ×{fosc_scale:g}")
    ax.set_xlabel("epoch")
    ax.set_ylabel("value (FOSC scaled)")
    ax.legend(loc="best", frameon=True)


def plot_style():
    """(axes style, plotting context) of every report figure (seaborn whitegrid, paper context)."""
    import seaborn as sns

    return sns.axes_style("whitegrid"), sns.plotting_context("paper", font_scale=1.25)


# --------------------------------------------------------------------------- figures
def draw_figure1(spec, summary, selection, run_dirs):
    setting = spec["setting"]
    fig = plt.figure(figsize=(12, 5.2))
    for i, group in enumerate(("regular", "unstable")):
        seed = _pick(selection, setting, group)
        land = read_landscape(_run_dir(run_dirs, setting, seed)) if seed is not None else None
        letter = "ab"[i]
        if land is None:
            ax = fig.add_subplot(1, 2, i + 1)
            msg = (f"no {_label_group(group)} run in {setting}" if seed is None
                   else f"no landscape.npz for {setting} seed {seed}")
            none_panel(ax, msg)
            ax.set_title(f"({letter}) {_label_group(group)}")
            continue
        ax = fig.add_subplot(1, 2, i + 1, projection="3d")
        a, b, loss = np.asarray(land["a"]), np.asarray(land["b"]), np.asarray(land["loss"], dtype=float)
        A, B = np.meshgrid(a, b, indexing="ij")
        ax.plot_surface(A, B, loss, cmap="viridis", linewidth=0, antialiased=True, rstride=1, cstride=1)
        ax.set_xlabel(r"$x$ (along $r_1$ = sign grad)", labelpad=8)
        ax.set_ylabel(r"$y$ (along $r_2$ ~ Rademacher)", labelpad=8)
        ax.set_zlabel("loss", labelpad=6)
        ax.tick_params(labelsize=8)
        ax.set_title(f"({letter}) {_label_group(group)} ({setting}, seed {seed})")
    fig.suptitle(f"Loss landscape $z = loss(x \\cdot r_1 + y \\cdot r_2)$: Regular vs Unstable ({setting})")
    return fig


def _two_panel_curves(spec, selection, run_dirs, panels, fosc_scale, title, *, sgcs=True, threshold=None):
    fig, axes = plt.subplots(1, 2, figsize=(12, 4.5), sharey=False)
    for ax, (letter, setting, group) in zip(axes, panels, strict=True):
        seed = _pick(selection, setting, group)
        df = _epochs_or_none(ax, run_dirs, setting, seed, group)
        ax.set_title(f"({letter}) {_label_group(group)}" + (f" ({setting}, seed {seed})" if seed is not None else ""))
        if df is not None:
            _curves(ax, df, fosc_scale, sgcs=sgcs, threshold=threshold)
    fig.suptitle(title)
    return fig


def draw_figure2(spec, summary, selection, run_dirs):
    s = spec["setting"]
    scale = float(spec.get("fosc_scale", 10))
    return _two_panel_curves(spec, selection, run_dirs, [("a", s, "regular"), ("b", s, "unstable")], scale,
                             f"FOSC, SGCS and PGD-10 validation accuracy ({s})")


def draw_figure3(spec, summary, selection, run_dirs):
    s = spec["setting"]
    fig, ax = plt.subplots(figsize=(8, 4.5))
    seed = _pick(selection, s, "unstable")
    df = _epochs_or_none(ax, run_dirs, s, seed, "unstable")
    if df is not None:
        e = df["epoch"]
        gap = _col(df, "train_clean_acc") - _col(df, "train_adv_acc")
        l1 = ax.plot(e, _col(df, "val_fosc"), color=COLORS["fosc"], lw=1.6, label="FOSC (validation)")
        ax.set_ylabel("FOSC", color=COLORS["fosc"])
        ax.set_xlabel("epoch")
        ax2 = ax.twinx()
        ax2.grid(False)
        l2 = ax2.plot(e, gap, color=COLORS["gap"], lw=1.6, label="train clean acc. − train adv. acc. (TPGD)")
        ax2.axhline(0, color=COLORS["gap"], ls=":", lw=1)
        ax2.set_ylabel("accuracy gap", color=COLORS["gap"])
        ax.legend(l1 + l2, [ln.get_label() for ln in l1 + l2], loc="upper center", bbox_to_anchor=(0.5, -0.15),
                  ncol=2, frameon=False)
        ax.set_title(f"Unstable run ({s}, seed {seed}): FOSC vs clean−adversarial training-accuracy gap")
    else:
        ax.set_title(f"FOSC vs training-accuracy gap ({s})")
    return fig


def draw_figure4(spec, summary, selection, run_dirs):
    s = spec["setting"]
    seed = _pick(selection, s, "unstable")
    metrics = [("w_grad_norm", "W_grad_norm", COLORS["wgrad"]), ("ce_norm", "CE_norm", COLORS["ce"]),
               ("kl_norm", "KL_norm", COLORS["kl"]), ("grad_cosine_similarity", "grad_cosine_similarity",
                                                       COLORS["cos"])]
    run_dir = _run_dir(run_dirs, s, seed)
    epochs = read_epochs(run_dir) if seed is not None else None
    batches = read_batches(run_dir) if seed is not None else None
    message, epoch, reason = None, None, ""
    if seed is None:
        message = f"no Unstable run in {s}"
    elif epochs is None:
        message = f"no epochs.csv for {s} seed {seed}"
    else:
        row = summary[(summary["setting"] == s) & (summary["seed"] == seed)]
        from_summary = row["fosc_threshold"].iloc[0] if "fosc_threshold" in row.columns and len(row) else None
        thr, _src = fosc_threshold(spec, run_dir, from_summary)
        epoch, reason = fosc_rise_epoch(epochs, thr)
        if epoch is None:
            message = f"no val_fosc in epochs.csv of {s} seed {seed}"
        else:
            sel = batches[pd.to_numeric(batches["epoch"], errors="coerce") == epoch] if batches is not None else None
            if sel is None or sel.empty:
                message = (f"no batch-level metrics in batches.csv of {s} seed {seed} for epoch {epoch} "
                           f"(log_batch_metrics off?)")
    if message is not None:
        fig, ax = plt.subplots(figsize=(10, 4))
        none_panel(ax, message)
        ax.set_title("Batch-level gradient metrics" + (f", epoch {epoch} ({reason})" if epoch else ""))
        return fig
    sel = sel.sort_values("step")
    fig, axes = plt.subplots(len(metrics), 1, figsize=(10, 8.5), sharex=True)
    for ax, (col, label, color) in zip(axes, metrics, strict=True):
        y = _col(sel, col)
        if y.notna().any():
            ax.plot(sel["step"], y, color=color, lw=1.3, marker="." if len(sel) < 60 else None)
        else:
            ax.text(0.5, 0.5, f"none: {label} not logged", ha="center", va="center", transform=ax.transAxes)
        ax.set_ylabel(label, fontsize=10)
    axes[-1].set_xlabel("training step")
    first, last = int(sel["step"].min()), int(sel["step"].max())
    fig.suptitle(f"Batch-level gradient metrics, Unstable run ({s}, seed {seed}), epoch {epoch} "
                 f"(steps {first}–{last})\nepoch chosen as: {reason}")
    fig.tight_layout()
    return fig


def draw_figure5(spec, summary, selection, run_dirs):
    s = spec["setting"]
    fscale = float(spec.get("fosc_scale", 10))
    gscale = float(spec.get("grad_norm_scale", 0.3))
    fig, ax = plt.subplots(figsize=(9, 4.5))
    seed = _pick(selection, s, "self_healing")
    df = _epochs_or_none(ax, run_dirs, s, seed, "self_healing")
    if df is not None:
        e = df["epoch"]
        ax.plot(e, _col(df, "val_fosc") * fscale, color=COLORS["fosc"], lw=1.6, label=f"FOSC ×{fscale:g}")
        ax.plot(e, _col(df, "train_clean_acc"), color=COLORS["train"], lw=1.6, label="train_acc (clean)")
        ax.plot(e, _col(df, "w_grad_norm") * gscale, color=COLORS["wgrad"], lw=1.6, label=f"W_grad_norm ×{gscale:g}")
        ax.set_xlabel("epoch")
        ax.legend(loc="best")
        ax.set_title(f"Self-healing run ({s}, seed {seed})")
    else:
        ax.set_title(f"Self-healing run ({s})")
    return fig


def draw_figure6(spec, summary, selection, run_dirs):
    su, sf = spec["unstable"], spec["fixed"]
    scale = float(spec.get("fosc_scale", 10))
    fig, axes = plt.subplots(1, 2, figsize=(12, 4.5), sharey=True)
    unstable = [int(x) for x in ((selection.get("groups") or {}).get(su) or {}).get("unstable") or []]
    rep = _pick(selection, su, "unstable")
    # the representative Unstable seed if it has a Fixed twin, else the first Unstable seed that has one
    candidates = ([rep] if rep is not None else []) + [x for x in unstable if x != rep]
    seed = next((x for x in candidates if _run_dir(run_dirs, sf, x) is not None
                 and read_epochs(_run_dir(run_dirs, sf, x)) is not None), rep)
    thr, _ = fosc_threshold(spec, _run_dir(run_dirs, sf, seed))
    for ax, letter, setting, group in ((axes[0], "a", su, "unstable"), (axes[1], "b", sf, "fixed")):
        if seed is None:
            none_panel(ax, f"no Unstable run in {su}")
            ax.set_title(f"({letter}) {_label_group(group)}")
            continue
        df = read_epochs(_run_dir(run_dirs, setting, seed))
        ax.set_title(f"({letter}) {_label_group(group)} ({setting}, seed {seed})")
        if df is None:
            none_panel(ax, f"no run of {setting} with seed {seed}")
            continue
        _curves(ax, df, scale, sgcs=False, threshold=thr)
        if group == "fixed" and "noise_batches" in df.columns:
            noisy = df[pd.to_numeric(df["noise_batches"], errors="coerce").fillna(0) > 0]["epoch"]
            for i, ep in enumerate(noisy):
                ax.axvline(ep, color="#555555", ls="--", lw=0.8, label="noise injected" if i == 0 else None)
            if len(noisy):
                ax.legend(loc="best")
    fig.suptitle(f"Unstable vs Fixed with the same seed: FOSC ×{scale:g} and PGD-10 validation accuracy")
    return fig


def draw_figure7(spec, summary, selection, run_dirs):
    su, sr = spec["unstable"], spec["regular"]
    scale = float(spec.get("fosc_scale", 5))
    return _two_panel_curves(spec, selection, run_dirs, [("a", su, "unstable"), ("b", sr, "regular")], scale,
                             "Learning-rate scheduling: FOSC, SGCS and PGD-10 validation accuracy")


def planted_note(summary: pd.DataFrame, settings: list[str]) -> str | None:
    """One line naming the planted runs (a positive control) of ``settings``; None when there are none."""
    rows = planted_rows(summary, settings)
    if rows.empty:
        return None
    runs = ", ".join(f"{s} seed {int(seed)}" for s, seed in zip(rows["setting"], rows["seed"], strict=True))
    return f"planted gradient masking (a positive control, not a finding): {runs}"


def run_dirs_from_paths(paths) -> dict[tuple[str, int], Path]:
    """``{(setting, seed): run_dir}`` from per-run file paths ``.../runs/{setting}/seed{seed}/<file>``."""
    from trades_instability.rundir.layout import RunDir

    found = (RunDir.parse(p) for p in paths)
    return {(r.setting, r.seed): r.path for r in found if r is not None}


def save_figure(fig, out_pdf: str | os.PathLike) -> tuple[Path, Path]:
    """Write ``out_pdf`` and ``<stem>.png`` beside it (atomically); returns both paths."""
    from trades_instability.rundir.atomic_io import atomic_path

    out_pdf = Path(out_pdf)
    out_png = out_pdf.with_suffix(".png")
    with atomic_path(out_pdf) as tmp:
        fig.savefig(tmp, format="pdf", bbox_inches="tight")
    with atomic_path(out_png) as tmp:
        fig.savefig(tmp, format="png", dpi=PNG_DPI, bbox_inches="tight")
    return out_pdf, out_png


def draw_and_save(draw: Callable[[], Any], out_pdf: str | os.PathLike) -> tuple[Path, Path]:
    """Draw a figure with ``draw()`` in the project's plot style and save it as PDF + PNG (then free it)."""
    axes_style, context = plot_style()
    with axes_style, context:
        fig = draw()
        try:
            return save_figure(fig, out_pdf)
        finally:
            fig.clf()
            pyplot().close(fig)


def render_figure(name: str, spec: Mapping, summary, selection, run_dirs: RunDirs,
                  out_pdf: str | os.PathLike) -> tuple[Path, Path]:
    """Draw figure ``name`` and write ``out_pdf`` plus ``<stem>.png`` beside it; returns both paths."""
    art = registry.get(name, registry.FIGURE)
    spec = dict(spec or {})
    settings = art.spec_settings(spec)  # validates the keys
    summary = load_summary(summary)  # validated even where a figure does not need it
    selection = load_selection(selection)
    run_dirs = {(str(k[0]), int(k[1])): Path(v) for k, v in (run_dirs or {}).items()}
    pyplot()  # before the builders use plt

    def draw():
        fig = art.build()(spec, summary, selection, run_dirs)
        note = planted_note(summary, settings)
        if note:  # a planted run may be drawn: say so under the figure (README "Planted control")
            fig.text(0.5, -0.01, note, ha="center", va="top", fontsize=8, wrap=True)
        return fig

    return draw_and_save(draw, out_pdf)
