#!/usr/bin/env bash
# mpirun for this repository's scripts and tests: adds --allow-run-as-root when running as
# root and --oversubscribe when more ranks than cores are asked for, so that users' own
# mpirun lines never need either. Usage: scripts/mpirun.sh NP PROGRAM [ARGS...]
set -euo pipefail
np=$1
shift
extra=()
[ "$(id -u)" -eq 0 ] && extra+=(--allow-run-as-root)
[ "$np" -gt "$(nproc)" ] && extra+=(--oversubscribe)
read -r -a user_args <<<"${MPIRUN_ARGS:-}" # extra mpirun options, split on blanks
exec "${MPIRUN:-mpirun}" "${extra[@]}" -np "$np" "${user_args[@]}" "$@"
