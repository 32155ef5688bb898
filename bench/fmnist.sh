#!/bin/sh
# Fashion-MNIST benchmark: kiln's `vision fit` with the recipe of bench/torch_fmnist.py
# (lesson-7 net, AdamW, one-cycle max lr 1e-2, bs 128, no augmentation, 2 threads), then the
# PyTorch twin in the same run when PyTorch is installed. Prints test accuracy, training
# images per second and the peak resident set of each (GNU time).
# Usage: bench/fmnist.sh [BUILD_DIR] [EPOCHS]
set -eu
BUILD=${1:-build}
EPOCHS=${2:-3}
here=$(dirname "$0")
out=$(mktemp -d)
trap 'rm -rf "$out"' EXIT
[ -x /usr/bin/time ] || { echo "bench/fmnist.sh needs GNU time (apt-get install time)" >&2; exit 2; }
echo "--- kiln vision fit fashion-mnist ($EPOCHS epochs, bs 128, one-cycle 1e-2, no augmentation, 2 threads)"
OMP_NUM_THREADS=2 /usr/bin/time -f "kiln peak RSS %M KB, wall %e s" \
    "$BUILD/kiln" vision fit fashion-mnist --out "$out/fm" --arch simple-cnn --epochs "$EPOCHS" --lr 1e-2 \
    --bs 128 --schedule one-cycle --no-augment --threads 2 --seed 0 --progress plain
# metrics.json: items_per_s (images here) over the epochs' time (training + validation, as the twin's epoch_s)
ips=$(sed -n 's/.*"items_per_s":[[:space:]]*\([0-9.]*\).*/\1/p' "$out/fm/metrics.json")
echo "kiln images per s $ips (epoch time incl. validation: $(awk -v r="$ips" 'BEGIN { printf "%.2f", 59904 / r }') s)"
if /usr/bin/python3 -c 'import torch' 2>/dev/null; then
    echo "--- PyTorch twin (bench/torch_fmnist.py $EPOCHS 2)"
    /usr/bin/time -f "torch peak RSS %M KB, wall %e s" /usr/bin/python3 "$here/torch_fmnist.py" "$EPOCHS" 2
else
    echo "(PyTorch not installed: scripts/setup.sh --dev installs it for the twin)"
fi
