#!/usr/bin/env bash
# Installs the Debian packages ringtrain needs (only those missing), then configures and
# builds. Idempotent: with everything present it only runs ninja, which does nothing when
# nothing changed.
#   BUILD_DIR   build directory (default: build)
#   SETUP_EXTRA_PACKAGES  more packages to install if missing (scripts/test.sh asks for
#               what the system tests use: a real Slurm, munge, iproute2)
#   any arguments are passed to `meson setup` on first configuration (e.g. -Dnative=true)
set -euo pipefail
cd "$(dirname "$0")/.."
BUILD_DIR=${BUILD_DIR:-build}

packages=(gcc pkg-config meson ninja-build openmpi-bin libopenmpi-dev libopenblas-dev
          libhdf5-dev hdf5-tools check libinih-dev zlib1g-dev dataset-fashion-mnist bible-kjv)
read -r -a extra <<<"${SETUP_EXTRA_PACKAGES:-}"
packages+=("${extra[@]}")
missing=()
for p in "${packages[@]}"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if ((${#missing[@]})); then
    echo "setup: installing ${missing[*]}"
    sudo=""
    [ "$(id -u)" -eq 0 ] || sudo="sudo"
    $sudo apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends \
        "${missing[@]}" >/dev/null
fi

werror=false
[ "${CI:-}" = "true" ] && werror=true
if [ ! -f "$BUILD_DIR/build.ninja" ]; then
    meson setup "$BUILD_DIR" -Dwerror=$werror "$@" >/dev/null
elif [ "$(meson introspect "$BUILD_DIR" --buildoptions 2>/dev/null |
          python3 -c 'import json,sys; print(str([o["value"] for o in json.load(sys.stdin) if o["name"]=="werror"][0]).lower())' 2>/dev/null)" != "$werror" ]; then
    meson configure "$BUILD_DIR" -Dwerror=$werror >/dev/null
fi
ninja -C "$BUILD_DIR" >/dev/null
echo "setup: built $BUILD_DIR/ringtrain"
