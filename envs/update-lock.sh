#!/usr/bin/env bash
# Regenerate the locked environment (envs/requirements.lock) and the conda env's pins (envs/trades.yaml)
# from pyproject.toml's ranges. Linux x86-64, CPython 3.11, PyPI's default (CUDA) torch wheels.
#   bash envs/update-lock.sh                      # keep every locked version that still satisfies pyproject
#   bash envs/update-lock.sh --upgrade            # newest versions pyproject allows
#   bash envs/update-lock.sh --upgrade-package torch==2.15.0 --upgrade-package torchvision==0.30.0
# Then: reinstall (README, "Updating the lock"), run `python -m pytest`, commit both files together;
# tests/test_lock.py fails when pyproject, the lock and envs/trades.yaml disagree.
# Needs uv (`pip install uv`); it only resolves, it installs nothing.
set -euo pipefail
cd "$(dirname "$0")/.."
common=(--generate-hashes --python-version 3.11 --python-platform x86_64-manylinux_2_28
        --index-url https://pypi.org/simple --no-annotate)
uv pip compile pyproject.toml --extra workflow --extra test "${common[@]}" \
    --custom-compile-command "bash envs/update-lock.sh" -o envs/requirements.lock "$@"
# The jobs' conda env: the library's own dependencies (no workflow/test extras), at the lock's versions.
runtime=$(uv pip compile pyproject.toml --no-header --no-annotate --python-version 3.11 \
    --python-platform x86_64-manylinux_2_28 --index-url https://pypi.org/simple -c envs/requirements.lock)
python3 - "$runtime" <<'PY'
import re, sys
pins = [line for line in sys.argv[1].splitlines() if "==" in line]
path = "envs/trades.yaml"
text = open(path).read()
head = text[: text.index("      - ")]  # everything up to the first pip entry
open(path, "w").write(head + "".join(f"      - {p.strip()}\n" for p in pins))
PY
echo "wrote envs/requirements.lock and envs/trades.yaml"
