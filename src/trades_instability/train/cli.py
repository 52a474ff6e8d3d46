"""``trades-train``: train one run from a config file into an output directory.

Rerunning the same command after an interruption (crash, kill -9, SIGTERM from SLURM) resumes from
the last completed epoch; on a finished run it adopts run.json as it is and trains nothing. Every
problem is one line on stderr, never a traceback. Exit codes: 0 done (or diverged with --on-diverge
record), 1 a file or folder could not be written (the message names it: an unwritable or impossible --out, a
full disk), 2 bad input (config, device, arguments, checkpoint, dataset, --out in use by another run),
3 diverged, 143 stopped by a signal (state saved; rerun to resume).
"""

from __future__ import annotations

import argparse
import sys

from trades_instability.config.run import ConfigError, load_config
from trades_instability.one_line_parser import OneLineParser
from trades_instability.rundir.checkpoint import CheckpointError


def _positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"must be a positive integer, got {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be a positive integer, got {value}")
    return value


def build_parser() -> argparse.ArgumentParser:
    p = OneLineParser(prog="trades-train", description=__doc__.splitlines()[0])
    p.add_argument("--config", required=True, help="run config (YAML); missing keys take the paper's defaults")
    p.add_argument("--out", required=True, help="run directory (epochs.csv, batches.csv, checkpoints/, run.json)")
    p.add_argument("--device", default=None, help="auto | cpu | cuda | cuda:N (default: the config's device)")
    p.add_argument("--on-diverge", choices=("fail", "record"), default="fail",
                   help="on a non-finite loss: exit 3 (fail) or write run.json with status diverged and exit 0 "
                   "(record)")
    p.add_argument("--threads", type=_positive_int, default=None,
                   help="CPU threads for torch (default: torch's choice; the pipeline passes the job's threads)")
    p.add_argument("--no-progress", action="store_true", help="no per-epoch progress bar")
    p.add_argument("--wait-for-holder", action="store_true",
                   help="when a live process holds --out (e.g. a job left running by a killed Snakemake), wait for "
                        "it instead of exiting 2: adopt its finished result, or resume if it dies")
    p.add_argument("--log-file", default=None,
                   help="also append every message to this file, written by the trainer itself, so the "
                        "last line survives a cancel that kills a pipe (the pipeline's train.log)")
    return p


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    from trades_instability.rundir.log_file import Echo

    echo = Echo(args.log_file)
    from trades_instability.data.datasets import DatasetUnavailable  # imported late: keeps --help fast
    from trades_instability.rundir.lock import RunLocked
    from trades_instability.runtime import DeviceUnavailable
    from trades_instability.train.errors import Diverged, Interrupted
    from trades_instability.train.loop import train

    if args.threads:
        import torch

        torch.set_num_threads(args.threads)
    try:
        cfg = load_config(args.config)
        train(cfg, args.out, device=args.device, on_diverge=args.on_diverge,
              progress=False if args.no_progress else None, log=echo, wait_for_holder=args.wait_for_holder)
    except (ConfigError, CheckpointError, DatasetUnavailable, DeviceUnavailable, RunLocked) as e:
        echo(f"trades-train: error: {e}", err=True)
        return 2
    except Diverged as e:
        echo(f"trades-train: error: {e}", err=True)
        return 3
    except Interrupted:
        return 143
    except OSError as e:  # full disk, unwritable --out, ...: the error names the file (rundir/atomic_io.py)
        echo(f"trades-train: error: {e}", err=True)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
