"""``python -m trades_instability VERB ...``: the command line entry points in one place.

The workflow's shell lines call the library only through these verbs (``pipeline``: validate the pipeline
config, prepare and publish a run's state; ``gpu-slot``: run a command on a GPU of its own), so that moving a
module never changes a rule's shell text (Snakemake reruns a job whose shell text changed)."""

import sys


def main() -> int:
    commands = {"train": "train.cli", "eval": "evaluate.cli", "bench": "tools.bench", "download": "data.download",
                "pipeline": "config.cli", "gpu-slot": "workflow.gpu_slots", "gpu-check": "tools.gpu_check",
                "status": "status"}
    if len(sys.argv) < 2 or sys.argv[1] not in commands:
        print(f"usage: python -m trades_instability {{{','.join(commands)}}} [options]  (--help on each)")
        return 2
    module = __import__(f"trades_instability.{commands[sys.argv[1]]}", fromlist=["main"])
    return module.main(sys.argv[2:])


if __name__ == "__main__":
    sys.exit(main())
