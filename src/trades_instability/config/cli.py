"""The workflow's helper command line, verb ``pipeline`` of ``python -m trades_instability`` (what the rules'
shell lines call); each command prints one line per message and exits 1 on error::

    python -m trades_instability pipeline validate CONFIG [--check-data]
    python -m trades_instability pipeline list-runs CONFIG
    python -m trades_instability pipeline prepare-state --config RUN.yaml --state DIR [--log-file F]
    python -m trades_instability pipeline publish --state DIR --run-dir DIR [--log-file F]

It lives in ``config/``, not ``rundir/``, because two of its four commands load the pipeline config, and
the dependency runs one way: ``config`` uses ``rundir`` (the run layout), ``rundir`` never imports
``config``. Only argument parsing and printing are here: the work is
:func:`trades_instability.config.pipeline_loading.load` and :mod:`trades_instability.rundir.state`.
"""

from __future__ import annotations

import argparse
import sys

from trades_instability.config.pipeline import PipelineConfigError
from trades_instability.config.pipeline_loading import load
from trades_instability.rundir.state import RunStateError, prepare_state, publish

PROG = "python -m trades_instability pipeline"


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog=PROG, description="Validate/expand the pipeline config; run-directory helpers.")
    sub = p.add_subparsers(dest="cmd", required=True)
    v = sub.add_parser("validate", help="validate a pipeline config (exit 1 with one message)")
    v.add_argument("config")
    v.add_argument("--check-data", action="store_true", help="also check the datasets are on disk")
    lr = sub.add_parser("list-runs", help="print setting<TAB>seed<TAB>run_dir for every run")
    lr.add_argument("config")
    ps = sub.add_parser("prepare-state", help="keep or move aside the trainer's state folder")
    ps.add_argument("--config", required=True)
    ps.add_argument("--state", required=True)
    pb = sub.add_parser("publish", help="link a finished run's artifacts into the run directory")
    pb.add_argument("--state", required=True)
    pb.add_argument("--run-dir", required=True)
    for sp in (ps, pb):
        sp.add_argument("--log-file", default=None, help="also append the messages to this file")
    args = p.parse_args(argv)
    from trades_instability.rundir.log_file import Echo

    echo = Echo(getattr(args, "log_file", None))
    try:
        if args.cmd == "validate":
            cfg = load(args.config, check_data=args.check_data)
            print(f"{args.config}: ok ({len(cfg.settings)} settings, {len(cfg.runs())} runs)")
        elif args.cmd == "list-runs":
            cfg = load(args.config)
            for s, seed in cfg.runs():
                print(f"{s}\t{seed}\t{cfg.run_dir(s, seed)}")
        elif args.cmd == "prepare-state":
            echo(prepare_state(args.config, args.state, log=echo))
        elif args.cmd == "publish":
            for f in publish(args.state, args.run_dir):
                echo(f"published {f}")
    # an OSError names its file (full disk, permissions, ...)
    except (PipelineConfigError, RunStateError, OSError) as e:
        echo(f"error: {e}", err=True)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
