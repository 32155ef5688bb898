#!/bin/sh
# Issue 12's MovieLens figures in one run: kiln collab fit beside its PyTorch twin
# (bench/torch_collab.py, from ../shared/reference: EmbeddingDotBias, 50 factors, y_range 0-5.5,
# AdamW wd 0.1, one-cycle 5e-3, bs 64, 5 epochs), on the same 80/20 split (the twin's: Python's
# random.seed(42) shuffle, written out as two CSVs) and on kiln's own (--valid-pct 0.2, split
# seed 42): valid RMSE, ratings per second over the epoch loop (validation included, as the
# twin counts them) and peak RSS (/usr/bin/time). kiln runs fastai's dense AdamW and the
# --sparse lazy step; the twin runs as the environment has it and with OPENBLAS_CORETYPE unset,
# each also with OMP_WAIT_POLICY=passive (libgomp's spinning costs a loaded machine dearly).
# Usage: bench/movielens.sh [BUILD_DIR] [RATINGS_CSV]
set -eu
BUILD=${1:-build}
RATINGS=${2:-../shared/datasets/movielens/ratings.csv}
here=$(dirname "$0")
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
echo "machine: $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | sed 's/^ //'), $(nproc) cores, load $(cut -d' ' -f1-3 /proc/loadavg), $(date -u '+%Y-%m-%d %H:%M') UTC"

# the twin's split, exactly: the rows in file order, random.seed(42), random.shuffle, cut at 80%
python3 - "$RATINGS" "$tmp" <<'EOF'
import csv, random, sys
random.seed(42)
rows = list(csv.DictReader(open(sys.argv[1])))
random.shuffle(rows)
cut = int(0.8 * len(rows))
for name, part in (("train", rows[:cut]), ("valid", rows[cut:])):
    with open(f"{sys.argv[2]}/{name}.csv", "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["userId", "movieId", "rating"])
        for r in part: w.writerow([r["userId"], r["movieId"], r["rating"]])
EOF

kiln() { # name, then kiln collab fit's arguments
    name=$1
    shift
    /usr/bin/time -f "%M" -o "$tmp/rss" "$BUILD/kiln" collab fit "$@" --epochs 5 --lr 5e-3 --bs 64 --threads 2 --quiet \
        --out "$tmp/$name" > /dev/null
    python3 - "$tmp/$name/metrics.json" "$(cat "$tmp/rss")" "$name" <<'EOF'
import json, sys
m = json.load(open(sys.argv[1]))
print(f"kiln {sys.argv[3]:<22} valid_rmse {m['rmse']:.4f}  ratings_per_s {m['items_per_s']:,.0f}  "
      f"time_s {m['time_s']:.1f}  peak_rss_mb {int(sys.argv[2]) / 1024:.0f}")
EOF
}
twin() { # label, then env assignments
    label=$1
    shift
    env "$@" /usr/bin/time -f "%M" -o "$tmp/rss" /usr/bin/python3 "$here/torch_collab.py" "$RATINGS" > "$tmp/twin.out"
    rmse=$(grep '^epoch 4' "$tmp/twin.out" | sed 's/.*valid_rmse \([0-9.]*\).*/\1/')
    rps=$(sed -n 's/.*ratings_per_s \([0-9]*\).*/\1/p' "$tmp/twin.out")
    printf 'twin %-22s valid_rmse %s  ratings_per_s %s  peak_rss_mb %d\n' "$label" "$rmse" "$rps" $(($(cat "$tmp/rss") / 1024))
}

kiln "dense, twin's split" "$tmp/train.csv" --valid "$tmp/valid.csv"
kiln "sparse, twin's split" "$tmp/train.csv" --valid "$tmp/valid.csv" --sparse
kiln "dense, own split" "$RATINGS" --valid-pct 0.2
kiln "sparse, own split" "$RATINGS" --valid-pct 0.2 --sparse
if /usr/bin/python3 -c 'import torch' 2>/dev/null; then
    twin "(OPENBLAS_CORETYPE=${OPENBLAS_CORETYPE:-unset})"
    twin "(OPENBLAS_CORETYPE unset)" -u OPENBLAS_CORETYPE
    twin "(as set, OMP passive)" OMP_WAIT_POLICY=passive
    twin "(unset, OMP passive)" -u OPENBLAS_CORETYPE OMP_WAIT_POLICY=passive
else
    echo "twin: PyTorch is not installed (scripts/setup.sh --dev)"
fi
