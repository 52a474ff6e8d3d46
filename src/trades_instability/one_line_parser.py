"""The command lines' argument parser whose errors are one line (``PROG: error: ...``, exit 2): argparse's default
also prints the usage block, which buries the message in a job log. Imports neither torch nor the library, so
``--help`` and a bad flag answer at once."""

from __future__ import annotations

import argparse
import sys


class OneLineParser(argparse.ArgumentParser):
    def error(self, message: str):
        print(f"{self.prog}: error: {message}", file=sys.stderr)
        sys.exit(2)
