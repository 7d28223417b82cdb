#!/usr/bin/env bash
# A checkpoint write that fails stops the job on every rank with one message, and leaves
# every earlier checkpoint intact: a 2200 KiB tmpfs holds two 850 KiB checkpoints but not a
# third (the newest is written before the oldest is deleted, by design); a read-only
# directory fails the first write. Needs root and mount(2): skipped otherwise.
#   diskfull.sh NP   (RINGTRAIN, MKDATA, MPIRUN_SH come from meson)
set -u
np=$1
tmp=$(mktemp -d)
mnt=$tmp/mnt
trap 'umount "$mnt" 2>/dev/null; rm -rf "$tmp"' EXIT
fail() { echo "FAIL [np=$np]: $*"; exit 1; }
mkdir -p "$mnt"
if [ "$(id -u)" -ne 0 ] || ! mount -t tmpfs -o size=2200k rttest "$mnt" 2>/dev/null; then
    echo "SKIP: needs root and permission to mount a tmpfs"
    exit 77
fi
"$MKDATA" "$tmp/train.h5" blobs 610 16 4 || exit 99
job=(data.train="$tmp/train.h5" data.test= "model.layers=16,256,256,4" model.activation=tanh
    train.batch=60 train.epochs=5 train.log_every=0 comm.check_every=10)
start=$(date +%s%N)
timeout -k 5 60 "$MPIRUN_SH" "$np" "$RINGTRAIN" train "${job[@]}" train.out="$tmp/model.h5" \
    checkpoint.dir="$mnt/ck" checkpoint.every_steps=13 checkpoint.keep=2 >"$tmp/out" 2>"$tmp/err"
code=$?
ms=$((($(date +%s%N) - start) / 1000000))
[ $code -eq 1 ] || fail "exit $code, want 1: $(cat "$tmp/err")"
[ "$ms" -lt 20000 ] || fail "took $ms ms"
[ "$(grep -c '^ringtrain: error: ' "$tmp/err")" -eq 1 ] || fail "not one error line: $(cat "$tmp/err")"
grep -qE "^ringtrain: error: $mnt/ck/ckpt-00000039.h5.tmp: (writing .*failed|cannot reserve [0-9]+ bytes for it): No space left on device" "$tmp/err" ||
    fail "message: $(grep error "$tmp/err")"
files=$(cd "$mnt/ck" && echo *)
[ "$files" = "ckpt-00000013.h5 ckpt-00000026.h5" ] || fail "directory holds: $files"
for f in "$mnt"/ck/*.h5; do
    "$RINGTRAIN" inspect "$f" >/dev/null 2>&1 || fail "$f damaged after the failed write"
done
[ ! -e "$tmp/model.h5" ] || fail "a final model was written after the failure"
echo "  disk full: $(grep error "$tmp/err"), every rank exit $code in $ms ms; $files intact"
# Read-only: the first write fails, naming the reason.
mount -o remount,ro "$mnt" || fail "remount ro"
timeout -k 5 60 "$MPIRUN_SH" "$np" "$RINGTRAIN" train "${job[@]}" train.out="$tmp/model.h5" \
    checkpoint.dir="$mnt/ck" checkpoint.every_steps=13 --resume auto >"$tmp/out" 2>"$tmp/err"
code=$?
[ $code -eq 1 ] || fail "read-only: exit $code, want 1"
grep -q "^ringtrain: error: $mnt/ck/ckpt-00000039.h5.tmp: cannot create: Read-only file system" "$tmp/err" ||
    fail "read-only message: $(grep error "$tmp/err")"
echo "  read-only: $(grep error "$tmp/err")"
echo "ok [np=$np] failed checkpoint writes stop the job and keep earlier checkpoints"
