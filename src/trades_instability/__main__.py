"""``python -m trades_instability {train,eval,bench,download,status} ...``: the command line entry points in one
place."""

import sys


def main() -> int:
    commands = {"train": "train.cli", "eval": "evaluate.cli", "bench": "tools.bench", "download": "data.download",
                "status": "status"}
    if len(sys.argv) < 2 or sys.argv[1] not in commands:
        print(f"usage: python -m trades_instability {{{','.join(commands)}}} [options]  (--help on each)")
        return 2
    module = __import__(f"trades_instability.{commands[sys.argv[1]]}", fromlist=["main"])
    return module.main(sys.argv[2:])


if __name__ == "__main__":
    sys.exit(main())
