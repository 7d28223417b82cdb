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
