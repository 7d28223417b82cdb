#!/usr/bin/env bash
# Runs a test program on NP ranks for meson test: skips (77) without mpirun, adds the
# root/oversubscribe flags through scripts/mpirun.sh, and bounds the run with timeout since
# Check's no-fork mode (needed under MPI) has no per-test timeout. Output is never hidden.
#   mpirun-wrap.sh NP PROGRAM [ARGS...]
set -u
command -v "${MPIRUN:-mpirun}" >/dev/null || { echo "skip: no mpirun on PATH"; exit 77; }
here=$(cd "$(dirname "$0")/.." && pwd)
np=$1
shift
export CK_FORK=no
exec timeout --kill-after=10 "${RT_TEST_TIMEOUT:-100}" "$here/scripts/mpirun.sh" "$np" "$@"
