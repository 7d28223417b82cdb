#!/usr/bin/env bash
# print_config.sh - --print-config prints the effective job and, as comments, every layer's
# output shape, with a layer list's input taken from the data's (N, C, H, W) dimensions;
# the output is itself a job file that prints the same job back.
set -u
here=$(cd "$(dirname "$0")" && pwd)
source "$here/lib.sh"
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
"$MKDATA" "$tmp/img.h5" images 40 16 4 >/dev/null || fail "mkdata images"
layers="conv(3, 3, pad=1), relu, maxpool(2), flatten, dropout(0.1), dense(4)"
"$RINGTRAIN" train --print-config data.train="$tmp/img.h5" data.test= "model.layers=$layers" \
    >"$tmp/a.ini" 2>&1 || fail "print-config: $(cat "$tmp/a.ini")"
for want in "^layers = $layers\$" "^; \[model\] layers: input (1, 4, 4) (from data.train)\$" \
    "^;   0 conv(3, 3, pad=1), relu -> (3, 4, 4), 30 parameters\$" \
    "^;   1 maxpool(2) -> (3, 2, 2), 0 parameters\$" "^;   2 flatten -> (12), 0 parameters\$" \
    "^;   4 dense(4) -> (4), 52 parameters\$" "^;   82 parameters"; do
    grep -q "$want" "$tmp/a.ini" || fail "print-config lacks /$want/: $(cat "$tmp/a.ini")"
done
"$RINGTRAIN" train "$tmp/a.ini" --print-config >"$tmp/b.ini" 2>&1 || fail "reading it back: $(cat "$tmp/b.ini")"
# the job part is the same; only the first line (the job's source) may differ
diff <(grep -v '^source\|^; job' "$tmp/a.ini") <(grep -v '^source\|^; job' "$tmp/b.ini") >"$tmp/d" ||
    fail "not the same job read back: $(cat "$tmp/d")"
# a layer list that does not fit the data is refused with the layer and both shapes
"$RINGTRAIN" train --print-config data.train="$tmp/img.h5" "model.layers=conv(3, 5), flatten, dense(4)" \
    >"$tmp/c.out" 2>&1 && fail "print-config accepted a 5x5 kernel on 4x4 images"
grep -q "layer 0 conv(3, 5) on input (1, 4, 4): the 5x5 kernel is larger" "$tmp/c.out" || fail "$(cat "$tmp/c.out")"
echo "ok: print-config shows the inferred shapes and reads back"
