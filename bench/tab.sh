#!/bin/sh
# The collab and tabular steps of issue 12 (bench/bench_tab.c) beside their PyTorch twins
# (bench/torch_throughput.py collab tabular), ROUNDS times in one run: kiln at 1 thread, at 2
# threads (the twin's count) with OpenMP's default wait policy and with OMP_WAIT_POLICY=passive,
# then the twin as the environment has it (OPENBLAS_CORETYPE), with OPENBLAS_CORETYPE unset,
# and both again with OMP_WAIT_POLICY=passive. Take each figure as the best of the rounds: on a
# shared machine one round can be several times slower than the next.
# Usage: bench/tab.sh [BUILD_DIR] [ROUNDS] [SECONDS_PER_CASE]
set -eu
BUILD=${1:-build}
ROUNDS=${2:-3}
SECS=${3:-2}
here=$(dirname "$0")
r=1
while [ "$r" -le "$ROUNDS" ]; do
    echo "=== round $r $(date -u +%H:%M:%S) load $(cut -d' ' -f1-3 /proc/loadavg)"
    echo "## kiln, 1 thread"; "$BUILD/bench_ops" 1 "$SECS" tab | grep -v 'GFLOP\|^kiln 0\|^twin:'
    echo "## kiln, 2 threads"; "$BUILD/bench_ops" 2 "$SECS" tab | grep -v 'GFLOP\|^kiln 0\|^twin:'
    echo "## kiln, 2 threads, OMP_WAIT_POLICY=passive"
    OMP_WAIT_POLICY=passive "$BUILD/bench_ops" 2 "$SECS" tab | grep -v 'GFLOP\|^kiln 0\|^twin:'
    if /usr/bin/python3 -c 'import torch' 2>/dev/null; then
        /usr/bin/python3 "$here/torch_throughput.py" collab tabular | sed "s/^/twin (OPENBLAS_CORETYPE=${OPENBLAS_CORETYPE:-unset}): /"
        env -u OPENBLAS_CORETYPE /usr/bin/python3 "$here/torch_throughput.py" collab tabular | sed 's/^/twin (unset): /'
        OMP_WAIT_POLICY=passive /usr/bin/python3 "$here/torch_throughput.py" collab tabular |
            sed "s/^/twin (OPENBLAS_CORETYPE=${OPENBLAS_CORETYPE:-unset}, passive): /"
        env -u OPENBLAS_CORETYPE OMP_WAIT_POLICY=passive /usr/bin/python3 "$here/torch_throughput.py" collab tabular |
            sed 's/^/twin (unset, passive): /'
    else
        echo "(PyTorch not installed: scripts/setup.sh --dev)"
    fi
    r=$((r + 1))
done
