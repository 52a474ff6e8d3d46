"""Stable entry point of the workflow's shell lines: ``python -m trades_instability.pipeline_config ...``.

Snakemake reruns a rule whose shell text changed, so the rules keep this name while the code lives in
:mod:`trades_instability.config.cli`."""

import sys

from trades_instability.config.cli import main

if __name__ == "__main__":
    sys.exit(main())
