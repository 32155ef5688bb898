#!/bin/sh
# Data-parallel training (issue 13) beside PyTorch DistributedDataParallel, ROUNDS times in one run:
#  1. the Fashion-MNIST recipe of bench/fmnist.sh (simple-cnn, AdamW one-cycle 1e-2, global batch
#     128, no augmentation, seed 0), one epoch, 1 rank x 1 thread and 2 ranks x 1 thread
#     (mpiexec), then the twin bench/torch_ddp.py (DDP over gloo, the same net and recipe) with 1
#     and 2 processes, with OPENBLAS_CORETYPE as the environment has it and unset;
#  2. the overlap of the gradient sums with backward: resnet18 (11.7 M parameters, 46.8 MB of
#     gradients, 12 buckets of 4 MiB) on two classes (6,000 training images, 2,000 valid), 2 ranks,
#     sums started during backward (the default; also with 1 MiB buckets) against --no-overlap,
#     with the time a step waits for them.
# images/s is metrics.json's items_per_s (training + validation time, as the twin's epoch_s).
# Usage: bench/dist.sh [BUILD_DIR] [ROUNDS]
set -eu
BUILD=${1:-build}
ROUNDS=${2:-2}
here=$(dirname "$0")
out=$(mktemp -d)
trap 'rm -rf "$out"' EXIT
MPI="mpiexec --allow-run-as-root --oversubscribe"
F="--epochs 1 --lr 1e-2 --bs 128 --schedule one-cycle --no-augment --workers 0 --seed 0 --threads 1 --progress quiet"
ips() { sed -n 's/.*"items_per_s":[[:space:]]*\([0-9.]*\).*/\1/p' "$1/metrics.json" | cut -d. -f1; }
acc() { grep -m1 '"accuracy"' "$1/metrics.json" | tr -dc '0-9.'; }
wait_line() { sed -n 's/^data-parallel: .*; \([0-9.]* ms a step waiting[^(]*\)(.*; \([0-9.]* gradient buckets a step, [0-9]*% started during backward\).*/\1, \2/p' "$1"; }
export OMP_NUM_THREADS=1
r=1
while [ "$r" -le "$ROUNDS" ]; do
    echo "=== round $r $(date -u +%H:%M:%S) load $(cut -d' ' -f1-3 /proc/loadavg)"
    "$BUILD/kiln" vision fit fashion-mnist --out "$out/k1" --arch simple-cnn $F >/dev/null
    echo "kiln simple-cnn 1 rank x 1 thread:  $(ips "$out/k1") images/s, accuracy $(acc "$out/k1")"
    $MPI -np 2 "$BUILD/kiln" vision fit fashion-mnist --out "$out/k2" --arch simple-cnn $F >"$out/k2.log"
    echo "kiln simple-cnn 2 ranks x 1 thread: $(ips "$out/k2") images/s, accuracy $(acc "$out/k2"); $(wait_line "$out/k2.log")"
    if /usr/bin/python3 -c 'import torch.distributed' 2>/dev/null; then
        for n in 1 2; do
            /usr/bin/python3 "$here/torch_ddp.py" $n 1 | grep -E '^(epoch|ranks)' | tr '\n' ' ' |
                sed "s/^/twin DDP $n x 1 (OPENBLAS_CORETYPE=${OPENBLAS_CORETYPE:-unset}): /"; echo
            env -u OPENBLAS_CORETYPE /usr/bin/python3 "$here/torch_ddp.py" $n 1 | grep -E '^(epoch|ranks)' |
                tr '\n' ' ' | sed "s/^/twin DDP $n x 1 (unset): /"; echo
        done
    else
        echo "(PyTorch not installed: scripts/setup.sh --dev installs it for the twin)"
    fi
    for ov in "" "--bucket-kb 1024" --no-overlap; do
        $MPI -np 2 "$BUILD/kiln" vision fit fashion-mnist --out "$out/r" --arch resnet18 --classes 0-1 \
            --train-per-class 3000 $F $ov >"$out/r.log"
        echo "kiln resnet18 2 ranks ${ov:-(4 MiB buckets, overlapped)}: $(ips "$out/r") images/s; $(wait_line "$out/r.log")"
    done
    r=$((r + 1))
done
