#!/usr/bin/env bash
# Data-parallel scaling of a job on this node: samples/s at 1 rank and at NP ranks with one
# BLAS thread per rank, for each way of overlapping gradient communication with backprop,
# in the same run. Run by hand (figures, not a test):
#   tests/bench/scaling.sh [JOB.ini] [NP] [STEPS]     (default: bigmodel.ini, 2, 150)
set -euo pipefail
cd "$(dirname "$0")/../.."
job=${1:-scripts/jobs/bigmodel.ini}
np=${2:-2}
steps=${3:-150}
common=(train.max_steps="$steps" data.test= train.out= train.log_every=0 train.threads=1)
rate() { # NP [overrides...] -> samples/s from the final: line
    local n=$1
    shift
    scripts/mpirun.sh "$n" build/ringtrain train "$job" "${common[@]}" "$@" |
        sed -n 's/^final:.*samples_per_s=\([0-9.]*\).*/\1/p'
}
echo "# scaling of $job: $steps steps, 1 BLAS thread per rank"
base=$(rate 1)
printf '%-28s %10s %8s\n' "configuration" "samples/s" "speedup"
printf '%-28s %10.1f %8.2f\n' "1 rank" "$base" 1
for overlap in thread poll off; do
    r=$(rate "$np" comm.overlap=$overlap)
    printf '%-28s %10.1f %8.2f\n' "$np ranks, overlap=$overlap" "$r" "$(echo "$r $base" | awk '{ print $1 / $2 }')"
done
