#!/usr/bin/env bash
# The test suite: set up if needed, then every test (unit, multi-rank, command line).
# Extra arguments go to `meson test` (e.g. --suite unit, or a test name).
set -euo pipefail
cd "$(dirname "$0")/.."
# The system tests (tests/system) run a real Slurm and multi-host namespaces (python3-h5py
# lets the checkpoint tests read files the way users' scripts will); they skip
# with a message where the machine cannot (not root, no namespaces).
SETUP_EXTRA_PACKAGES="slurm-wlm munge iproute2 python3-h5py" scripts/setup.sh
BUILD_DIR=${BUILD_DIR:-build}
exec meson test -C "$BUILD_DIR" --print-errorlogs --num-processes 2 "$@"
