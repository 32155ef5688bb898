#!/bin/sh
# Runs kiln's op benchmark and, when PyTorch is installed (scripts/setup.sh --dev), its
# twin bench/torch_ops.py in the same run, then prints the two side by side with the ratio
# (PyTorch time / kiln time: above 1 means kiln is faster).
# Usage: bench/ops.sh [BUILD_DIR] [SECONDS_PER_OP]
set -eu
BUILD=${1:-build}
SECS=${2:-3}
here=$(dirname "$0")
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
OMP_NUM_THREADS=2 "$BUILD/bench_ops" 2 "$SECS" | tee "$tmp/kiln.txt"
if /usr/bin/python3 -c 'import torch' 2>/dev/null; then
    echo "--- PyTorch twin (bench/torch_ops.py, 2 threads)"
    /usr/bin/python3 "$here/torch_ops.py" | tee "$tmp/torch.txt"
    echo "--- side by side (ms; ratio = torch / kiln)"
    awk 'NR==FNR { if ($0 ~ / ms /) { n=substr($0,1,44); sub(/ +$/,"",n); t[n]=$(NF-3) } next }
         $0 ~ / ms / { n=substr($0,1,44); sub(/ +$/,"",n); k=$(NF-3);
                       if (n in t) printf "%-46s kiln %9.2f  torch %9.2f  ratio %5.2fx\n", n, k, t[n], t[n]/k }' \
        "$tmp/torch.txt" "$tmp/kiln.txt"
else
    echo "(PyTorch not installed: run scripts/setup.sh --dev to print the twin's figures beside kiln's)"
fi
