# shellcheck shell=bash
# lib.sh - helpers shared by the command-line tests (sourced; np, MODELDIFF set by the caller).

fail() { echo "FAIL [np=${np:-?}]: $*"; exit 1; }

# same A.h5 B.h5: bitwise equal parameters (modeldiff max_abs=0), reported by directory.
same() {
    local d
    d=$("$MODELDIFF" "$1" "$2") || fail "modeldiff $1 $2"
    [[ $d == max_abs=0\ * ]] || fail "$(basename "$(dirname "$2")") differs from $(basename "$(dirname "$1")"): $d"
    echo "  $(basename "$(dirname "$2")") = $(basename "$(dirname "$1")"): $d"
}

# close A.h5 B.h5 [TOL]: parameters equal to a relative TOL (default 1e-5), the most that
# adding gradient sums in another order may change.
close() {
    local d rel
    d=$("$MODELDIFF" "$1" "$2") || fail "modeldiff $1 $2"
    rel=$(echo "$d" | sed -n 's/.*max_rel=\([^ ]*\).*/\1/p')
    awk -v r="$rel" -v t="${3:-1e-5}" 'BEGIN { exit !(r <= t) }' || fail "$2 vs $1: $d"
    echo "  $(basename "$(dirname "$2")") ~ $(basename "$(dirname "$1")"): $d"
}

# blobs_job DIR: the small job most equivalence tests train. DIR/train.h5 (610 rows) and
# DIR/test.h5 (203 rows) of 4 Gaussian blobs in 16 dimensions, and DIR/job.ini: 16-64-32-4
# tanh, SGD with momentum, 4 KiB buckets (several in flight), checksums every 10 steps,
# batch 60 (a short last batch every epoch), 50 steps. MKDATA is set by the caller.
blobs_job() {
    "$MKDATA" "$1/train.h5" blobs 610 16 4 >/dev/null && "$MKDATA" "$1/test.h5" blobs 203 16 4 >/dev/null ||
        return 1
    cat >"$1/job.ini" <<INI
[model]
layers = 16, 64, 32, 4
activation = tanh
[data]
train = $1/train.h5
test = $1/test.h5
[optim]
name = sgd
lr = 0.05
momentum = 0.9
[comm]
bucket_kb = 4
check_every = 10
[train]
epochs = 5
max_steps = 50
batch = 60
eval_batch = 50
log_every = 10
INI
}
