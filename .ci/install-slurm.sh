#!/usr/bin/env bash
# Install a single-host SLURM (Debian packages slurm-wlm + munge) for the SLURM tests
# (tests/test_slurm.py). Idempotent and non-interactive: does nothing when the binaries
# are already present. The daemons are NOT started here: the test harness
# (tests/slurm/cluster.py) writes its own slurm.conf and munge key into a temporary
# folder, starts munged/slurmctld/slurmd by process id and stops them afterwards.
#
# Usage: .ci/install-slurm.sh            (as root, or with passwordless sudo)
set -euo pipefail

need=(munged slurmctld slurmd sbatch squeue scancel sinfo)
missing=()
for b in "${need[@]}"; do
    command -v "$b" >/dev/null 2>&1 || missing+=("$b")
done
if [ "${#missing[@]}" -eq 0 ]; then
    echo "install-slurm: slurm and munge already installed ($(slurmctld -V 2>/dev/null))"
    exit 0
fi
echo "install-slurm: missing ${missing[*]}; installing slurm-wlm and munge"

SUDO=""
if [ "$(id -u)" -ne 0 ]; then
    if command -v sudo >/dev/null 2>&1; then
        SUDO="sudo -n"
    else
        echo "install-slurm: need root (or sudo) to apt-get install slurm-wlm munge" >&2
        exit 1
    fi
fi

export DEBIAN_FRONTEND=noninteractive
# The package scripts try to start the services; inside containers without systemd that
# fails harmlessly (policy-rc.d) -- the tests start their own daemons.
$SUDO apt-get update -qq
$SUDO apt-get install -y -qq --no-install-recommends \
    -o Dpkg::Options::=--force-confdef -o Dpkg::Options::=--force-confold \
    slurm-wlm munge

for b in "${need[@]}"; do
    command -v "$b" >/dev/null 2>&1 || { echo "install-slurm: $b still missing" >&2; exit 1; }
done
echo "install-slurm: installed $(slurmctld -V 2>/dev/null)"
