"""The run directory's layout, stated once: where a run lives below ``results_dir`` and the names of
what it holds. Everything that builds such a path (the pipeline config, the workflow's paths, the
publish step, aggregation, the trainer's records) or reads one back (the figure rules) uses this module.

    {results_dir}/runs/{setting}/seed{seed}/     run directory (:func:`run_dir`)
        config.yaml                               resolved run config (rule run_config)
        state/                                    the trainer's own folder (trades-train --out)
            run_config.yaml                       the run config it was started with (prepare-state)
            ...                                   the PUBLISHED files below, written as it trains
            tensorboard/epoch/ tensorboard/batch/ TensorBoard event files (never published: read in place)
        run.json epochs.csv batches.csv           PUBLISHED: linked from state/ when training finished
        checkpoints/best.pt checkpoints/last.pt   PUBLISHED
        eval_{suite}.json                         evaluation of best.pt (and last.pt), per suite
        landscape.npz landscape.json              loss landscape (settings with landscape: true)

Plain strings (not Paths) where the workflow needs them: Snakemake patterns keep their wildcards,
e.g. ``run_file(results, "{setting}", "{seed}", RUN_JSON)``.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

RUNS = "runs"
SEED_PREFIX = "seed"
RUN_CONFIG = "config.yaml"
STATE = "state"
STATE_CONFIG = "run_config.yaml"
RUN_JSON = "run.json"
EPOCHS_CSV = "epochs.csv"
BATCHES_CSV = "batches.csv"
CHECKPOINTS = "checkpoints"
BEST = "best.pt"  # in CHECKPOINTS
LAST = "last.pt"
BEST_PT = f"{CHECKPOINTS}/{BEST}"
LAST_PT = f"{CHECKPOINTS}/{LAST}"
LANDSCAPE_NPZ = "landscape.npz"
LANDSCAPE_JSON = "landscape.json"
TENSORBOARD = "tensorboard"  # in state/: the trainer's event files, tensorboard/{epoch,batch}/ (config tensorboard)
# run-config keys that change only what a run writes beside its results (the event files), never what it
# trains: a resume with another value continues the same run (train/checkpointing.py, rundir/state.py)
OUTPUT_ONLY_KEYS = ("tensorboard",)


def without_output_only(config: dict[str, Any]) -> dict[str, Any]:
    """A run config without :data:`OUTPUT_ONLY_KEYS`: what decides whether two configs are the same run."""
    return {k: v for k, v in config.items() if k not in OUTPUT_ONLY_KEYS}
# what `publish` exposes from state/ at the run directory's contract paths (run.json is placed last)
PUBLISHED = (RUN_JSON, EPOCHS_CSV, BATCHES_CSV, BEST_PT, LAST_PT)


def eval_json(suite: str) -> str:
    """File name of the evaluation of ``suite``: ``eval_{suite}.json``."""
    return f"eval_{suite}.json"


def run_dir(results_dir: str, setting: str, seed: int | str) -> str:
    """``{results_dir}/runs/{setting}/seed{seed}`` (``results_dir`` without a trailing slash; setting
    and seed may be Snakemake wildcards such as ``"{setting}"``)."""
    return f"{results_dir}/{RUNS}/{setting}/{SEED_PREFIX}{seed}"


def run_file(results_dir: str, setting: str, seed: int | str, name: str) -> str:
    """``name`` (e.g. :data:`RUN_JSON`, :data:`BEST_PT`) in the run directory of (setting, seed)."""
    return f"{run_dir(results_dir, setting, seed)}/{name}"


def state_dir(run_dir_path: str) -> str:
    """The trainer's own folder ``{run_dir}/state`` (never a declared workflow output)."""
    return os.path.join(run_dir_path, STATE)


@dataclass(frozen=True)
class RunDir:
    """A run directory read back from a path: its setting, its seed and the folder itself."""

    setting: str
    seed: int
    path: Path

    @classmethod
    def parse(cls, path: str | os.PathLike) -> RunDir | None:
        """The run directory of ``path``: the folder ``.../{setting}/seed{seed}`` itself or a file directly
        in it (``.../seed3/epochs.csv``); None when ``path`` is neither."""
        p = Path(path)
        d = p if p.name.startswith(SEED_PREFIX) and not p.suffix else p.parent
        number = d.name[len(SEED_PREFIX):]
        if d.name.startswith(SEED_PREFIX) and number.lstrip("-").isdigit():
            return cls(d.parent.name, int(number), d)
        return None
