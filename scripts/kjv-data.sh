#!/usr/bin/env bash
# Makes the King James Bible byte-level text dataset: the whole text (Debian's bible-kjv,
# `bible -f 'Gen1:1-Rev22:21'`, 31102 lines, 4.4 MB of ASCII) through `ringtrain data
# import-text ... --val 0.1`, so the last tenth (the end of the New Testament) is /val.
#   scripts/kjv-data.sh OUT.h5
#   RINGTRAIN   the binary (default: build/ringtrain of this repository)
# Installs bible-kjv with apt-get when `bible` is missing and we are root (scripts/setup.sh
# installs it too); otherwise says what to install.
set -euo pipefail
if [ $# -ne 1 ] || [ "${1:0:1}" = - ]; then
    echo "usage: scripts/kjv-data.sh OUT.h5" >&2
    exit 2
fi
out=$1
root=$(cd "$(dirname "$0")/.." && pwd)
ringtrain=${RINGTRAIN:-$root/build/ringtrain}
mkdir -p "$(dirname "$out")"
if ! command -v bible >/dev/null; then
    if [ "$(id -u)" -ne 0 ]; then
        echo "kjv-data: 'bible' is missing: install the Debian package bible-kjv" \
            "(scripts/setup.sh, or sudo apt-get install bible-kjv)" >&2
        exit 1
    fi
    echo "kjv-data: installing bible-kjv"
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends bible-kjv \
        >/dev/null
fi
if [ ! -x "$ringtrain" ]; then
    echo "kjv-data: $ringtrain not found: build first (scripts/setup.sh) or set RINGTRAIN" >&2
    exit 1
fi
tmp=$(mktemp "${TMPDIR:-/tmp}/kjv.XXXXXX.txt")
trap 'rm -f "$tmp"' EXIT
bible -f 'Gen1:1-Rev22:21' >"$tmp"
"$ringtrain" data import-text "$tmp" "$out" --val 0.1
