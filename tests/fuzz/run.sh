#!/bin/bash
# run.sh - build the libFuzzer targets and run each for a while (issue 7).
#
#   tests/fuzz/run.sh [SECONDS [TARGET ...]]     default: 60 s each, every target
#   BUILD_DIR=... tests/fuzz/run.sh 600 fuzz_ckpt
#
# Configures $BUILD_DIR (default build-fuzz beside the sources) with clang, ASan and UBSan
# when it does not exist yet, builds the three targets, then runs them one after the other
# (one fuzzer process at a time, on purpose: the machines are shared). New inputs go to
# $BUILD_DIR/tests/fuzz/work/<target>, not into the seed corpus tests/fuzz/corpus/<target>,
# which stays small and is only read; crash, timeout and out-of-memory inputs go to
# $BUILD_DIR/tests/fuzz/artifacts/<target>/ and the output to $BUILD_DIR/tests/fuzz/<target>.log.
# To look at one artifact:  FUZZ_VERBOSE=1 $BUILD_DIR/tests/fuzz/<target> ARTIFACT
# To shrink it:             $BUILD_DIR/tests/fuzz/<target> -minimize_crash=1 -runs=2000 ARTIFACT
# The seed corpora alone run as tests: meson test -C $BUILD_DIR --suite fuzz
# RT_FUZZ_SKIP_KNOWN=1 lets fuzz_config go past the known job-file round-trip failures
# (values starting with ';', lines longer than inih's 200-byte buffer...; see fuzz_config.c)
# until src/job/config.c is fixed.
# FUZZ_KEEP_GOING=1 goes on after crashes, timeouts and out-of-memory reports (libFuzzer's
# -fork=1 -ignore_crashes=1 ...: still one fuzzing process at a time), collecting every
# artifact for triage: HDF5 1.10 itself crashes on some corrupt files (see the issue 7 report),
# which would otherwise end the run at the first one.
# Exit status: 0 when no target found anything, 1 otherwise.
set -u
secs=${1:-60}
shift || true
here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/../.." && pwd)
build=${BUILD_DIR:-$root/build-fuzz}
targets=("$@")
[ ${#targets[@]} -eq 0 ] && targets=(fuzz_config fuzz_dataset fuzz_ckpt)

if [ ! -f "$build/build.ninja" ]; then
    CC=clang meson setup "$build" "$root" -Dfuzz=true -Db_sanitize=address,undefined \
        -Db_lundef=false -Dbuildtype=debugoptimized || exit 1
fi
ninja -C "$build" "${targets[@]/#/tests/fuzz/}" || exit 1

# Leaks are checked (LSan; suppressions for HDF5 are built into the targets, fuzz_util.h),
# UBSan stops at the first report.
export ASAN_OPTIONS=${ASAN_OPTIONS:-detect_leaks=1:allocator_may_return_null=1}
export UBSAN_OPTIONS=${UBSAN_OPTIONS:-print_stacktrace=1:halt_on_error=1}
export LSAN_OPTIONS=${LSAN_OPTIONS:-print_suppressions=0}
keep=()
[ "${FUZZ_KEEP_GOING:-0}" = 1 ] &&
    keep=(-fork=1 -ignore_crashes=1 -ignore_ooms=1 -ignore_timeouts=1)
status=0
for t in "${targets[@]}"; do
    max_len=65536
    [ "$t" = fuzz_config ] && max_len=4096
    work=$build/tests/fuzz/work/$t
    art=$build/tests/fuzz/artifacts/$t
    mkdir -p "$work" "$art"
    echo "== $t: $secs s, log in $build/tests/fuzz/$t.log"
    "$build/tests/fuzz/$t" -max_total_time="$secs" -rss_limit_mb=2048 -max_len="$max_len" \
        -timeout=30 -dict="$here/$t.dict" -artifact_prefix="$art/" -print_final_stats=1 \
        "${keep[@]}" "$work" "$here/corpus/$t" > "$build/tests/fuzz/$t.log" 2>&1
    rc=$?
    grep -E '^#[0-9]+:?[[:space:]]+(DONE|cov:)|^stat::number_of_executed_units|^stat::peak_rss_mb' \
        "$build/tests/fuzz/$t.log" | tail -3
    n=$(find "$art" -type f | wc -l)
    [ "$n" -gt 0 ] && echo "   $n artifact(s) in $art/" && status=1
    if [ $rc -ne 0 ]; then
        status=1
        echo "   $t stopped with status $rc: see the log and $art/"
        grep -E '^==[0-9]+==ERROR|^SUMMARY|fuzz harness:|Test unit written' \
            "$build/tests/fuzz/$t.log" | head -5
    fi
done
exit $status
