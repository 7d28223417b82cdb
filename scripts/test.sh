#!/usr/bin/env bash
# The test suite: set up if needed, then every test (unit, multi-rank, command line).
# Extra arguments go to `meson test` (e.g. --suite unit, or a test name); without any, the
# memory checks (sanitizers, valgrind) follow.
set -euo pipefail
cd "$(dirname "$0")/.."
# The system tests (tests/system) run a real Slurm and multi-host namespaces (python3-h5py
# lets the checkpoint tests read files the way users' scripts will, python3-torch checks
# that a model file gives PyTorch the same outputs); they skip
# with a message where the machine cannot (not root, no namespaces). valgrind is for the
# memory check at the end.
SETUP_EXTRA_PACKAGES="slurm-wlm munge iproute2 python3-h5py python3-torch valgrind" scripts/setup.sh
BUILD_DIR=${BUILD_DIR:-build}
status=0
meson test -C "$BUILD_DIR" --print-errorlogs --num-processes 2 "$@" || status=$?
# Only with the whole suite (no arguments), two memory checkers (issue 7):
#  - sanitizers (scripts/sanitize.sh): an ASan + UBSan build in build-san (never $BUILD_DIR)
#    runs the unit and mpi suites and a few 2-rank command-line tests, about 3 minutes;
#    it skips with a message where ASan cannot run. SANITIZE=0 leaves it out.
#  - valgrind memcheck of a short 2-rank train, prune, distill job and a resume, eval,
#    inspect and export (tests/sanitize/valgrind.sh), about 1 minute. VALGRIND=0 leaves it out.
if [ $# -eq 0 ] && [ "${SANITIZE:-1}" != 0 ]; then
    scripts/sanitize.sh || status=1
fi
if [ $# -eq 0 ] && [ "${VALGRIND:-1}" != 0 ]; then
    echo "valgrind: tests/sanitize/valgrind.sh on $BUILD_DIR"
    BUILD_DIR=$BUILD_DIR tests/sanitize/valgrind.sh || { [ $? -eq 77 ] || status=1; }
fi
exit $status
