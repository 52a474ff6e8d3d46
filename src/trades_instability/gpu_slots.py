"""Stable entry point of the workflow's shell lines: ``python -m trades_instability.gpu_slots ...``.

Snakemake reruns a rule whose shell text changed, so the rules keep this name while the code lives in
:mod:`trades_instability.workflow.gpu_slots`."""

import sys

from trades_instability.workflow.gpu_slots import main

if __name__ == "__main__":
    sys.exit(main())
