#!/usr/bin/env bash
# The quick-start job: set up if needed, import Fashion-MNIST from the Debian package, and
# train the built-in default job (784-512-256-10, Adam, 15 epochs) on 2 ranks. Prints the
# test accuracy after every epoch and the final: line. Extra arguments are job overrides,
# e.g. scripts/example.sh train.epochs=2
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh
src=/usr/share/datasets/fashion-mnist
mkdir -p data
for split in train:train t10k:test; do
    out=data/fashion-mnist-${split#*:}.h5
    [ -f "$out" ] || build/ringtrain data import-idx "$src/${split%:*}-images-idx3-ubyte.gz" \
        "$src/${split%:*}-labels-idx1-ubyte.gz" "$out"
done
exec scripts/mpirun.sh 2 build/ringtrain train "$@"
