#!/usr/bin/env bash
# The test suite: set up if needed, then every test (unit, multi-rank, command line).
# Extra arguments go to `meson test` (e.g. --suite unit, or a test name).
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh
BUILD_DIR=${BUILD_DIR:-build}
exec meson test -C "$BUILD_DIR" --print-errorlogs --num-processes 2 "$@"
