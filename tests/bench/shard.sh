#!/usr/bin/env bash
# The sharded optimizer (optim.shard) on this node, figures in one run (not a test):
#  1. throughput: a job at NP ranks x 1 BLAS thread, shard off and on, against 1 rank x NP
#     threads, alternating ROUNDS times (machines are shared: compare within a round);
#  2. memory: `bench train`'s peak RSS and optimizer-state MB per rank, shard off and on, of a
#     model whose parameters dominate memory (1000-8000-8000-1000, about 81M parameters),
#     at each rank count of RANKS.
#   tests/bench/shard.sh [JOB.ini] [NP] [STEPS] [ROUNDS] [RANKS]
#     (default: bigmodel.ini, 2, 200, 3, "1 2 4")
set -euo pipefail
cd "$(dirname "$0")/../.."
job=${1:-scripts/jobs/bigmodel.ini}
np=${2:-2}
steps=${3:-200}
rounds=${4:-3}
ranks=${5:-1 2 4}
rate() { # NP THREADS [overrides...] -> samples/s of bench train (all ranks together)
    local n=$1 th=$2
    shift 2
    OPENBLAS_NUM_THREADS=$th scripts/mpirun.sh "$n" build/ringtrain bench train "$job" train.threads="$th" \
        --steps "$steps" "$@" | awk '$1 == "0" && NF >= 10 { print $2; exit }'
}
echo "# throughput of $job: $steps steps; samples/s"
printf '%-6s %16s %16s %16s %10s %10s\n' round "1 x $np threads" "$np x 1, off" "$np x 1, shard" "off/1" "shard/1"
for r in $(seq "$rounds"); do
    one=$(rate 1 "$np")
    off=$(rate "$np" 1 optim.shard=off)
    on=$(rate "$np" 1 optim.shard=on)
    printf '%-6s %16.0f %16.0f %16.0f %10.3f %10.3f\n' "$r" "$one" "$off" "$on" \
        "$(echo "$off $one" | awk '{ print $1 / $2 }')" "$(echo "$on $one" | awk '{ print $1 / $2 }')"
done
echo "# memory of 1000-8000-8000-1000 (Adam, batch 64 per rank, 4096 synthetic rows)"
mem() { # NP SHARD -> "peak MB" "optim MB" of rank 0
    OPENBLAS_NUM_THREADS=1 scripts/mpirun.sh "$1" build/ringtrain bench train scripts/jobs/bigmodel.ini \
        model.layers=1000,8000,8000,1000 data.synth_rows=4096 train.batch=$((64 * $1)) train.threads=1 \
        optim.shard="$2" --steps 5 | awk '$1 == "0" && NF >= 12 { print $10, $11; exit }'
}
printf '%-6s %12s %12s %12s %12s %8s\n' ranks "peak off" "peak shard" "optim off" "optim shard" "ratio"
for n in $ranks; do
    read -r poff ooff < <(mem "$n" off)
    read -r pon oon < <(mem "$n" on)
    printf '%-6s %12.0f %12.0f %12.1f %12.1f %8.3f\n' "$n" "$poff" "$pon" "$ooff" "$oon" \
        "$(echo "$pon $poff" | awk '{ print $1 / $2 }')"
done
