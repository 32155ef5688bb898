#!/bin/sh
# Transfer learning on Fashion-MNIST (issue 10): does a body pretrained on other classes beat
# random weights when the new task has 50 images per class?
#
#   (i)   pretrain ARCH on classes 0-4 (T-shirt/top, Trouser, Pullover, Dress, Coat), all
#         their 30,000 training images, and export it (kiln vision fit --out DIR);
#   then on classes 5-9 (Sandal, Shirt, Sneaker, Bag, Ankle boot) with 50 training images per
#   class (--train-per-class 50, picked with split seed 42), evaluated on all 5,000 of their
#   test images, per seed:
#   (ii)  fine_tune from DIR (--pretrained DIR: 1 frozen epoch, then EPOCHS unfrozen), with
#         fastai's defaults (base_lr 2e-3, lr_mult 100) and with FT_ARGS (a higher base_lr and a
#         smaller spread over the layer groups); and the pretrained body trained unfrozen from
#         the start (--unfreeze: one-cycle at the default lr 1e-2, like (iii));
#   (iii) the same network from random weights, one-cycle, the same number of epochs (1 + EPOCHS);
#   (iv)  from random weights with the wall time of (ii): as many epochs as fit in it, at the
#         epoch time (iii) measured (the same run as (iii) when no more fit).
# and a table per arch: method, epochs, wall s, accuracy on the classes 5-9 test images, per
# seed and mean / min-max over the seeds. Every run has the same flags otherwise (bs 32,
# fastai's default augmentation, --threads THREADS).
#
# Then the published-weights path at full size: /usr/bin/python3 with torch + torchvision
# writes torchvision resnet18 and resnet34 state dicts with random weights (.pth, and the same
# tensors as .safetensors), and `kiln vision fit fashion-mnist --arch resnetNN --pretrained
# FILE --classes 5-9 --train-per-class 50 --epochs 1` runs end to end under /usr/bin/time -v
# (wall, peak RSS; the load time is when the "model:" line appears, against the same run
# without a file), once with the .pth and once with the .safetensors.
# Skipped with a message when PyTorch is absent.
#
# Run from the repo root against a built kiln:
#   nice -n 10 bench/transfer.sh [BUILD_DIR]          (BUILD_DIR: build)
# Settings (environment): ARCHS ("simple-resnet resnet18"), SEEDS ("0 1 2"), EPOCHS (5),
# FT_ARGS ("--lr 2e-2 --lr-mult 3"), PRE_EPOCHS_simple_resnet (5), PRE_EPOCHS_resnet18 (5), THREADS (2), PTH (1: run the
# published-weights step; 0: skip it), KEEP (a folder to keep the runs in; default a temp dir;
# a run already in it, with its .wall file, is reused: an interrupted bench resumes).
# Time on 2 AMD EPYC cores (docs/benchmarks.md, "Transfer learning"), quiet machine: pretraining
# 5 epochs 40 s (simple-resnet) and 150 s (resnet18); then each small-data run 3-4 s
# (simple-resnet) or 12 s (resnet18), 15 runs per arch; the published-weights step ~30 s.
# About 9 minutes in all when quiet; several times that on a busy machine.
# ResNet-18 runs at 28x28, the data's own size: its stem and stages leave a 1x1 map at both
# 28 and 32 pixels (28 -> 14 -> 7 -> 4 -> 2 -> 1; 32 -> ... -> 1), so --size 32 would cost 30%
# more pixels (and a resize per image) without giving the head a larger map.
set -eu
BUILD=${1:-build}
KILN=$BUILD/kiln
ARCHS=${ARCHS:-simple-resnet resnet18}
SEEDS=${SEEDS:-0 1 2}
EPOCHS=${EPOCHS:-5}
FT_ARGS=${FT_ARGS:---lr 2e-2 --lr-mult 3}
THREADS=${THREADS:-2}
PTH=${PTH:-1}
[ -x "$KILN" ] || { echo "bench/transfer.sh: no $KILN (build kiln first)" >&2; exit 2; }
[ -x /usr/bin/time ] || { echo "bench/transfer.sh needs GNU time (apt-get install time)" >&2; exit 2; }
if [ -n "${KEEP:-}" ]; then out=$KEEP; mkdir -p "$out"; else out=$(mktemp -d); trap 'rm -rf "$out"' EXIT; fi
COMMON="--classes 5-9 --train-per-class 50 --bs 32 --threads $THREADS --progress quiet"
has_pretrained=0
"$KILN" vision fit --help | grep -q -- '--pretrained' && has_pretrained=1

now() { date +%s.%N; }
# accuracy from a run's metrics.json
acc() { sed -n 's/.*"accuracy":[[:space:]]*\([0-9.eE+-]*\).*/\1/p' "$1/metrics.json" | head -1; }
# fit NAME ARGS: `kiln vision fit fashion-mnist ARGS --out $out/NAME`, output in $out/NAME.log;
# sets WALL (seconds, process start to end, also kept in $out/NAME.wall). A run already in
# KEEP (NAME/metrics.json and NAME.wall) is reused, so an interrupted bench resumes.
fit() {
    name=$1; shift
    if [ -f "$out/$name/metrics.json" ] && [ -f "$out/$name.wall" ]; then
        WALL=$(cat "$out/$name.wall")
        return 0
    fi
    t0=$(now)
    if ! "$KILN" vision fit fashion-mnist "$@" --out "$out/$name" > "$out/$name.log" 2>&1; then
        echo "FAILED: $KILN vision fit fashion-mnist $* --out $out/$name" >&2
        cat "$out/$name.log" >&2
        return 1
    fi
    WALL=$(awk -v a="$t0" -v b="$(now)" 'BEGIN { printf "%.1f", b - a }')
    echo "$WALL" > "$out/$name.wall"
}

for arch in $ARCHS; do
    var=PRE_EPOCHS_$(echo "$arch" | tr - _)
    eval "pre_epochs=\${$var:-}"
    [ -n "$pre_epochs" ] || pre_epochs=5
    pre=$out/pre-$arch
    echo "=== $arch: (i) pretraining on classes 0-4, $pre_epochs epochs"
    echo "    $KILN vision fit fashion-mnist --classes 0-4 --arch $arch --epochs $pre_epochs --bs 128 --no-augment --seed 0 --threads $THREADS --out $pre"
    fit "pre-$arch" --classes 0-4 --arch "$arch" --epochs "$pre_epochs" --bs 128 --no-augment --seed 0 \
        --threads "$THREADS" --progress quiet
    echo "    wall ${WALL} s, accuracy on classes 0-4 test images $(acc "$pre")"
    rows=$out/rows-$arch
    : > "$rows"
    n_scratch=$((EPOCHS + 1))
    for seed in $SEEDS; do
        ft_wall=
        if [ "$has_pretrained" = 1 ]; then
            fit "ft-$arch-$seed" $COMMON --arch "$arch" --pretrained "$pre" --epochs "$EPOCHS" --seed "$seed"
            ft_wall=$WALL
            echo "fine_tune $n_scratch $WALL $(acc "$out/ft-$arch-$seed") $seed" >> "$rows"
            fit "fa-$arch-$seed" $COMMON --arch "$arch" --pretrained "$pre" --epochs "$EPOCHS" $FT_ARGS --seed "$seed"
            echo "fine_tune_FT_ARGS $n_scratch $WALL $(acc "$out/fa-$arch-$seed") $seed" >> "$rows"
            fit "uf-$arch-$seed" $COMMON --arch "$arch" --pretrained "$pre" --unfreeze --epochs "$n_scratch" --seed "$seed"
            echo "pretrained_unfrozen $n_scratch $WALL $(acc "$out/uf-$arch-$seed") $seed" >> "$rows"
        fi
        fit "rs-$arch-$seed" $COMMON --arch "$arch" --epochs "$n_scratch" --seed "$seed"
        rs_wall=$WALL
        echo "random_same_epochs $n_scratch $WALL $(acc "$out/rs-$arch-$seed") $seed" >> "$rows"
        if [ -n "$ft_wall" ]; then
            n_time=$(awk -v f="$ft_wall" -v r="$rs_wall" -v n="$n_scratch" 'BEGIN { k = int(n * f / r); print (k > n ? k : n) }')
            if [ "$n_time" -gt "$n_scratch" ]; then
                fit "rt-$arch-$seed" $COMMON --arch "$arch" --epochs "$n_time" --seed "$seed"
                echo "random_same_time $n_time $WALL $(acc "$out/rt-$arch-$seed") $seed" >> "$rows"
            else
                echo "random_same_time $n_scratch $rs_wall $(acc "$out/rs-$arch-$seed") $seed" >> "$rows"
            fi
        fi
    done
    [ "$has_pretrained" = 1 ] || echo "    (ii) and (iv) skipped: this kiln has no --pretrained"
    echo "--- $arch on classes 5-9, 50 training images per class, 5,000 test images; seeds: $SEEDS"
    echo "    each: $KILN vision fit fashion-mnist $COMMON --arch $arch --seed S --out D"
    echo "          + --pretrained $pre --epochs $EPOCHS [$FT_ARGS (FT_ARGS)] | --pretrained $pre --unfreeze --epochs $n_scratch | --epochs $n_scratch | --epochs N (time)"
    awk '{ printf "    %-20s seed %-3s epochs %-3s wall %7.1f s  accuracy %.4f\n", $1, $5, $2, $3, $4 }' "$rows"
    awk '{ n[$1]++; e[$1] += $2; w[$1] += $3; a[$1] += $4;
           if (!($1 in lo) || $4 < lo[$1]) lo[$1] = $4; if (!($1 in hi) || $4 > hi[$1]) hi[$1] = $4 }
         END { printf "    | method | epochs | wall s | accuracy (mean, min-max over %d seeds) |\n    |---|---|---|---|\n", n["random_same_epochs"];
               split("fine_tune fine_tune_FT_ARGS pretrained_unfrozen random_same_epochs random_same_time", order, " ");
               for (i = 1; i <= 5; i++) { m = order[i]; if (!(m in n)) continue;
                 printf "    | %s | %.1f | %.1f | %.4f (%.4f-%.4f) |\n", m, e[m] / n[m], w[m] / n[m], a[m] / n[m], lo[m], hi[m] } }' "$rows"
done

# ---- the published-weights path at full size --------------------------------------------------
if [ "$PTH" != 1 ]; then exit 0; fi
if ! /usr/bin/python3 -c 'import torch, torchvision' 2>/dev/null; then
    echo "=== published weights: skipped (/usr/bin/python3 cannot import torch and torchvision; scripts/setup.sh --dev installs them)"
    exit 0
fi
if [ "$has_pretrained" != 1 ]; then
    echo "=== published weights: skipped (this kiln has no --pretrained)"
    exit 0
fi
/usr/bin/python3 - "$out" <<'EOF'
# torchvision resnet18 / resnet34 state dicts with random weights, as torch.save writes them
# (.pth), and the same tensors as .safetensors (written here: the format is a JSON header).
import json, struct, sys, time
import torch, torchvision
out = sys.argv[1]
torch.manual_seed(0)
for name in ("resnet18", "resnet34"):
    t0 = time.time()
    sd = getattr(torchvision.models, name)().state_dict()
    torch.save(sd, f"{out}/{name}.pth")
    header, blobs, off = {}, [], 0
    dt = {torch.float32: "F32", torch.int64: "I64"}
    for k, v in sd.items():
        b = v.contiguous().numpy().tobytes()
        header[k] = {"dtype": dt[v.dtype], "shape": list(v.shape), "data_offsets": [off, off + len(b)]}
        blobs.append(b)
        off += len(b)
    h = json.dumps(header).encode()
    h += b" " * (-len(h) % 8)
    with open(f"{out}/{name}.safetensors", "wb") as f:
        f.write(struct.pack("<Q", len(h)) + h + b"".join(blobs))
    n = sum(v.numel() for v in sd.values() if v.dtype == torch.float32)
    print(f"    wrote {name}.pth and .safetensors: {len(sd)} tensors, {n:,} floats ({time.time() - t0:.1f} s)")
EOF
# runs kiln "$@" under /usr/bin/time -v into log $1, each line prefixed with the seconds since
# the start; the last line is "rc N"
stamped() {
    log=$1; shift
    t0=$(now)
    { /usr/bin/time -v "$KILN" "$@" 2>&1; echo "rc $?"; } | while IFS= read -r line; do
        printf '%s %s\n' "$(awk -v a="$t0" -v b="$(now)" 'BEGIN { printf "%.2f", b - a }')" "$line"
    done > "$log"
}
# seconds until the "model:" line (printed once the model is made: after loading --pretrained)
t_model() { awk '/ model: / { print $1; exit }' "$1"; }
rss_mb() { awk -F': ' '/Maximum resident set size/ { printf "%d", $2 / 1024 }' "$1"; }
wall_of() { sed -n 's/.*Elapsed (wall clock) time.*: //p' "$1"; }
for arch in resnet18 resnet34; do
    echo "=== published weights: $arch (torchvision layout, random weights) on classes 5-9, 50 per class, 1 epoch"
    echo "    /usr/bin/time -v $KILN vision fit fashion-mnist --arch $arch [--pretrained FILE] $COMMON --epochs 1 --seed 0 --progress plain --out D"
    stamped "$out/pub-$arch-none.log" vision fit fashion-mnist --arch "$arch" $COMMON --epochs 1 --seed 0 \
        --progress plain --out "$out/pub-$arch-none"
    base=$(t_model "$out/pub-$arch-none.log")
    echo "    random weights (no file): model made at ${base} s, wall $(wall_of "$out/pub-$arch-none.log"), peak RSS $(rss_mb "$out/pub-$arch-none.log") MB, accuracy $(acc "$out/pub-$arch-none")"
    for ext in pth safetensors; do
        log=$out/pub-$arch-$ext.log
        stamped "$log" vision fit fashion-mnist --arch "$arch" --pretrained "$out/$arch.$ext" $COMMON --epochs 1 \
            --seed 0 --progress plain --out "$out/pub-$arch-$ext"
        if grep -q '^[0-9.]* rc 0$' "$log"; then
            grep -i -E 'load|missing|unexpected|mismatch|pretrained:' "$log" | head -6 | sed 's/^/    | /'
            tm=$(t_model "$log")
            echo "    .$ext: model made at ${tm} s (load: $(awk -v a="$tm" -v b="$base" 'BEGIN { printf "%.2f", a - b }') s more than random init), wall $(wall_of "$log"), peak RSS $(rss_mb "$log") MB, accuracy $(acc "$out/pub-$arch-$ext")"
        else
            echo "    .$ext refused:"
            grep -v -E '^[0-9.]* (\s|Command being timed|rc )' "$log" | head -3 | sed 's/^/    | /'
        fi
    done
done
