#!/usr/bin/env bash
# The sanitizer stage of scripts/test.sh, also run on its own: builds SAN_BUILD_DIR with
# AddressSanitizer + UndefinedBehaviorSanitizer (configured once, then reused), then runs
# the unit and mpi suites and a few 2-rank command-line tests in it. meson's test setup
# 'sanitize' (meson.build) gives the tests ASAN/LSAN/UBSAN_OPTIONS and tests/sanitize/lsan.supp,
# which hides leaks owned by Open MPI and its libevent only. Reports go to files, so a report
# from a run that a test expected to fail (bad input, a killed rank) fails the stage too;
# they are printed at the end. About 3 minutes on 2 cores from a clean tree (45 s of build).
# Skips (exit 0, one line saying why) where the compiler cannot build or run an ASan program;
# where LeakSanitizer cannot run (under ptrace) it goes on without leak checks and says so.
#   SAN_BUILD_DIR  build directory (default: build-san; never the default build/)
#   SAN_TIMEOUT    seconds the tests may take in all (default: 480)
#   SAN_CLI_TESTS  the command-line tests (default: below)
#   extra arguments go to every `meson test` call (e.g. --verbose)
set -euo pipefail
cd "$(dirname "$0")/.."
dir=${SAN_BUILD_DIR:-build-san}
limit=${SAN_TIMEOUT:-480}
# The whole pipeline (train, prune, distill with checkpoints, resume, export, eval), the
# reference equivalence run, and error paths (diverging loss, non-finite gradients, a full
# disk). Not the tests that time their own runs (bad-*: 5 s, hang-*), too tight here.
read -r -a cli_tests <<<"${SAN_CLI_TESTS:-train-equiv-np2 distill-np2 diverge-np2 nonfinite-np2 diskfull-np2 cnn-np2 gpt-np2 shard-np3 accum-np2 deterministic}"
# The GPT test also bounds N ranks against one; this build rounds otherwise (see gpt.sh).
export GPT_EQUIV_TOL=2e-4
say() { echo "sanitize: $*"; }
start=$SECONDS

# Can this machine build and run ASan + UBSan programs, and can LeakSanitizer run?
probe=$(mktemp -d)
trap 'rm -rf "$probe"' EXIT
printf '#include <stdlib.h>\nvoid *volatile p;\nint main(void)\n{\n    p = malloc(24);\n    p = 0;\n    return 0;\n}\n' >"$probe/leak.c"
if ! "${CC:-cc}" -O0 -fsanitize=address,undefined "$probe/leak.c" -o "$probe/leak" 2>"$probe/cc.log"; then
    say "skipped: ${CC:-cc} cannot build with -fsanitize=address,undefined: $(head -1 "$probe/cc.log")"
    exit 0
fi
rc=0
ASAN_OPTIONS=detect_leaks=0 timeout 20 "$probe/leak" >"$probe/run.log" 2>&1 || rc=$?
if [ $rc -ne 0 ]; then
    say "skipped: an ASan program does not run here (exit $rc): $(grep -m1 . "$probe/run.log")"
    exit 0
fi
ASAN_OPTIONS=detect_leaks=1 timeout 20 "$probe/leak" >"$probe/run.log" 2>&1 || true
if ! grep -q "LeakSanitizer: detected memory leaks" "$probe/run.log"; then
    say "LeakSanitizer does not work here (under ptrace?): running without leak checks"
    export ASAN_OPTIONS="${ASAN_OPTIONS:+$ASAN_OPTIONS:}detect_leaks=0"
fi

# Configure once (reused afterwards; scripts/setup.sh keeps werror as CI wants it), build.
if [ ! -f "$dir/build.ninja" ]; then
    BUILD_DIR=$dir scripts/setup.sh -Db_sanitize=address,undefined -Db_lundef=false \
        -Dbuildtype=debugoptimized
else
    san=$(meson introspect "$dir" --buildoptions |
        python3 -c 'import json,sys; print([o["value"] for o in json.load(sys.stdin) if o["name"]=="b_sanitize"][0])')
    [ "$san" = "address,undefined" ] || meson configure "$dir" -Db_sanitize=address,undefined -Db_lundef=false >/dev/null
    BUILD_DIR=$dir scripts/setup.sh
fi
say "built $dir in $((SECONDS - start)) s"

# Every sanitizer report lands in $reports (one file per process); none may appear.
reports=$dir/meson-logs/sanitizer-reports
[[ $reports == /* ]] || reports=$PWD/$reports
rm -rf "$reports"
mkdir -p "$reports"
export ASAN_OPTIONS="${ASAN_OPTIONS:+$ASAN_OPTIONS:}log_path=$reports/asan"
export UBSAN_OPTIONS="${UBSAN_OPTIONS:+$UBSAN_OPTIONS:}log_path=$reports/ubsan"
status=0
run() { # what ARGS...: meson test in the sanitize setup, bounded by what is left of $limit
    local what=$1 t0=$SECONDS left=$((limit - (SECONDS - tests_start)))
    shift
    if [ $left -le 0 ]; then
        say "$what: not run, the stage's $limit s are used up"
        status=1
        return
    fi
    local code=0
    timeout -k 30 "$left" meson test -C "$dir" --setup sanitize --print-errorlogs --num-processes 2 "$@" ||
        code=$?
    if [ $code -eq 124 ]; then
        say "$what: stopped at the stage's limit of $limit s (SAN_TIMEOUT)"
    elif [ $code -ne 0 ]; then
        say "$what: FAILED (exit $code)"
    fi
    [ $code -eq 0 ] || status=1
    say "$what: $((SECONDS - t0)) s"
}
# Tests come and go: run those of the list that exist, name the others.
mapfile -t known < <(meson test -C "$dir" --list 2>/dev/null | sed -n 's|^[^ ]*:cli / ||p')
present=()
for t in "${cli_tests[@]}"; do
    if printf '%s\n' "${known[@]}" | grep -qxF -- "$t"; then present+=("$t"); else say "no test $t here: left out"; fi
done
tests_start=$SECONDS
# The unit tests start no MPI: fast unwinding (ASan's default) is enough for them, and
# four times faster where Check's assertions run in a loop.
ASAN_OPTIONS="$ASAN_OPTIONS:fast_unwind_on_malloc=1" run "unit suite" --suite unit "$@"
run "mpi suite" --suite mpi "$@"
((${#present[@]})) && run "command-line tests" "${present[@]}" "$@"
if compgen -G "$reports/*" >/dev/null; then
    files=("$reports"/*)
    for f in "${files[@]:0:3}"; do
        echo "=== $f"
        head -60 "$f"
    done
    say "${#files[@]} processes wrote sanitizer reports, the first 3 above: see $reports"
    status=1
fi
say "$( [ $status -eq 0 ] && echo passed || echo FAILED ) in $((SECONDS - start)) s"
exit $status
