#!/usr/bin/env bash
# README is the user's manual: every job key the binary knows must be documented there.
set -u
readme=$1
missing=0
for key in $("$RINGTRAIN" train --help-keys | awk 'NR > 1 { print $1 }'); do
    grep -qF "\`$key\`" "$readme" || { echo "README does not document $key"; missing=1; }
done
[ $missing -eq 0 ] && echo "ok: every key is in README"
exit $missing
