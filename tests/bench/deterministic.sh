#!/usr/bin/env bash
# What comm.deterministic costs: samples/s of `bench train` at NP ranks x 1 BLAS thread,
# off and on, alternating ROUNDS times in one run (machines are shared: compare within a
# round), for each job. Not a test.
#   tests/bench/deterministic.sh [NP] [STEPS] [ROUNDS] [JOB.ini ...]
#     (default: 2, 200, 3, fmnist.ini bigmodel.ini)
set -euo pipefail
cd "$(dirname "$0")/../.."
np=${1:-2}
steps=${2:-200}
rounds=${3:-3}
shift $(($# < 3 ? $# : 3))
jobs=("$@")
[ ${#jobs[@]} -gt 0 ] || jobs=(scripts/jobs/fmnist.ini scripts/jobs/bigmodel.ini)
rate() { # JOB [overrides...] -> samples/s
    local job=$1
    shift
    OPENBLAS_NUM_THREADS=1 scripts/mpirun.sh "$np" build/ringtrain bench train "$job" train.threads=1 \
        --steps "$steps" "$@" | awk '$1 == "0" && NF >= 10 { print $2; exit }'
}
printf '%-30s %6s %12s %12s %8s\n' job round off on "on/off"
for job in "${jobs[@]}"; do
    for r in $(seq "$rounds"); do
        off=$(rate "$job")
        on=$(rate "$job" comm.deterministic=on)
        printf '%-30s %6s %12.0f %12.0f %8.3f\n' "$(basename "$job")" "$r" "$off" "$on" \
            "$(echo "$on $off" | awk '{ print $1 / $2 }')"
    done
done
