#!/usr/bin/env bash
# Regenerate the locked environments from pyproject.toml's ranges. Linux x86-64, CPython 3.11, PyPI's wheels.
#   envs/requirements.lock       torch with CUDA 13 libraries (driver R580 or newer); also envs/trades.yaml's pins
#   envs/requirements-cu12.lock  the same environment with the newest torch/torchvision built against CUDA 12.x
#                                (drivers R525-R575), every other package at the main lock's version where
#                                resolution allows
#   bash envs/update-lock.sh                      # keep every locked version that still satisfies pyproject
#   bash envs/update-lock.sh --upgrade            # newest versions pyproject allows (main lock)
#   bash envs/update-lock.sh --upgrade-package torch==2.15.0 --upgrade-package torchvision==0.30.0
# Then: reinstall (README, "Updating the lock"), run `python -m pytest`, commit the files together;
# tests/test_lock.py fails when pyproject, the locks and envs/trades.yaml disagree.
# Needs uv (`pip install uv`); it only resolves, it installs nothing.
set -euo pipefail
cd "$(dirname "$0")/.."
common=(--generate-hashes --python-version 3.11 --python-platform x86_64-manylinux_2_28
        --index-url https://pypi.org/simple --no-annotate)
uv pip compile pyproject.toml --extra workflow --extra test "${common[@]}" \
    --custom-compile-command "bash envs/update-lock.sh" -o envs/requirements.lock "$@"

# The CUDA 12 lock. The pair below is the newest whose PyPI wheels require nvidia-*-cu12 packages (their
# Requires-Dist; torch 2.11.0 and later require the CUDA 13 ones). Found, and to be re-checked on a new torch, with
#   for v in 2.12.0 2.11.0 2.10.0; do echo "torch==$v" | uv pip compile - --python-version 3.11 \
#     --python-platform x86_64-manylinux_2_28 --no-header | grep nvidia-cuda-runtime; done
# uv keeps the pins of the -o file it writes to, so it starts from a copy of the main lock: every package other
# than torch, torchvision and what they pull in (nvidia-*, triton, cuda-bindings) keeps the main lock's version.
CU12_TORCH=2.10.0        # nvidia-cuda-runtime-cu12==12.8.90, nvidia-cudnn-cu12==9.10.2.21
CU12_TORCHVISION=0.25.0  # requires torch==2.10.0
cu12=$(mktemp --suffix=.lock)
trap 'rm -f "$cu12"' EXIT
cp envs/requirements.lock "$cu12"
uv pip compile pyproject.toml --extra workflow --extra test "${common[@]}" \
    --custom-compile-command "bash envs/update-lock.sh" -o "$cu12" \
    --upgrade-package "torch==$CU12_TORCH" --upgrade-package "torchvision==$CU12_TORCHVISION"
cp "$cu12" envs/requirements-cu12.lock

# The jobs' conda env: the library's own dependencies (no workflow/test extras), at the main lock's versions.
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
echo "wrote envs/requirements.lock, envs/requirements-cu12.lock and envs/trades.yaml"
