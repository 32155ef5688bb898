#!/bin/sh
# `mpiexec -np 2 kiln vision fit` end to end (issue 13), run by ctest when kiln is built with
# MPI (cmake/dist_learn.cmake): usage dist_cli.sh "MPIEXEC FLAGS -n 2" KILN DIST_LEARN
# (the first argument is cmake's list of the mpiexec line, ';'-separated or spaces).
# On a tiny IDX set (48 train, 12 valid 28x28 images, made by `dist_learn --make-idx`): two
# ranks train with --bs 8 (4 a rank) and exit 0; the files are written once (rank 0): model,
# model.json, history.csv, metrics.json, checkpoint; the table is printed once; --resume with
# 2 ranks goes on; --sync-bn trains and is recorded (a resume without it refused), one process
# takes it; a --bs that 2 does not divide is refused on every rank (exit 2); snapshots and TTA
# score the whole validation split; --zero gives the same model.
set -u
# under AddressSanitizer: Open MPI's leaks at exit are in MCA components it has dlclose'd, named
# (and suppressed by tests/lsan.supp) only with the full unwinder
export ASAN_OPTIONS="${ASAN_OPTIONS:+$ASAN_OPTIONS:}fast_unwind_on_malloc=0"
MPI=$(printf '%s' "$1" | tr ';' ' ') KILN=$2 DL=$3
T=$(mktemp -d /tmp/kiln_dist_cli_XXXXXX)
trap 'rm -rf "$T"' EXIT
fail() { echo "dist_cli: FAIL: $*"; cat "$T/out" "$T/err" 2>/dev/null; exit 1; }
FAST="--threads 1 --workers 0 --progress plain"

"$DL" --make-idx "$T/idx" || fail "could not make the IDX set"
$MPI "$KILN" vision fit "$T/idx" --out "$T/run" --bs 8 --epochs 2 $FAST >"$T/out" 2>"$T/err" || fail "fit exited $?"
for f in model.safetensors model.json history.csv metrics.json checkpoint.safetensors; do
    [ -s "$T/run/$f" ] || fail "no $f"
done
[ "$(grep -c '^epoch' "$T/out")" = 1 ] || fail "the table header is not printed exactly once"
[ "$(grep -c '^wrote ' "$T/out")" = 1 ] || fail "'wrote' is not printed exactly once"
[ "$(wc -l <"$T/run/history.csv")" = 3 ] || fail "history.csv has not 2 epochs"
ls "$T/run" | grep -q '\.tmp\.' && fail "a temp file was left"
grep -q '"ranks"' "$T/run/model.json" 2>/dev/null # (not required)

# --zero (ZeRO-1, the optimizer state sharded over the ranks): the same model bit for bit, and
# the ZeRO line printed once
$MPI "$KILN" vision fit "$T/idx" --out "$T/zero" --bs 8 --epochs 2 $FAST --zero >"$T/out" 2>"$T/err" || fail "--zero exited $?"
cmp -s "$T/run/model.safetensors" "$T/zero/model.safetensors" || fail "--zero: the model differs from the plain 2-rank run's"
[ "$(grep -c '^ZeRO-1: optimizer state' "$T/out")" = 1 ] || fail "--zero: the ZeRO-1 line is not printed once"

# the checkpoint records 2 ranks: a 2-rank resume of a finished run goes on (nothing to do)
$MPI "$KILN" vision fit "$T/idx" --out "$T/run" --bs 8 --epochs 2 $FAST --resume >"$T/out" 2>"$T/err" || fail "resume exited $?"
# and one process refuses it, naming both counts
"$KILN" vision fit "$T/idx" --out "$T/run" --bs 8 --epochs 2 $FAST --resume >"$T/out" 2>"$T/err" && fail "a 1-rank resume of a 2-rank run was accepted"
grep -q 'ranks: 2 then, 1 now' "$T/err" || fail "the refusal does not name both rank counts"

# --sync-bn (SyncBatchNorm over the ranks): 2 ranks train; the setting is recorded, so a resume
# without it is refused naming it; one process takes it as a no-op
$MPI "$KILN" vision fit "$T/idx" --out "$T/sbn" --bs 8 --epochs 1 --sync-bn $FAST >"$T/out" 2>"$T/err" || fail "--sync-bn fit exited $?"
[ "$(wc -l <"$T/sbn/history.csv")" = 2 ] || fail "--sync-bn: history.csv has not 1 epoch"
$MPI "$KILN" vision fit "$T/idx" --out "$T/sbn" --bs 8 --epochs 1 $FAST --resume >"$T/out" 2>"$T/err" && fail "a resume without --sync-bn was accepted"
grep -q -- '--sync-bn: 1 then, (not set) now' "$T/err" || fail "the refusal does not name --sync-bn"
"$KILN" vision fit "$T/idx" --out "$T/sbn1" --bs 8 --epochs 1 --sync-bn $FAST >"$T/out" 2>"$T/err" || fail "--sync-bn in one process exited $?"

# --bs 7 with 2 ranks: refused with exit status 2 on every rank
$MPI "$KILN" vision fit "$T/idx" --out "$T/bad" --bs 7 --epochs 1 $FAST >"$T/out" 2>"$T/err"
rc=$?
[ $rc -ne 0 ] || fail "--bs 7 with 2 ranks was accepted"
grep -q -- '--bs 7 is not divisible by the 2 ranks' "$T/err" || fail "no message for --bs 7"
# snapshots and TTA with 2 ranks: each rank scores its valid shard and the sums are over both,
# so the last snapshot's valid loss is the final epoch's (the whole split's), and the TTA accuracy
# is what one process gets from the exported model with `kiln vision interpret --tta`
$MPI "$KILN" vision fit "$T/idx" --out "$T/snap" --bs 8 --epochs 2 $FAST --schedule sgdr --n-cycle 2 --cycle-len 1 \
    --cycle-mult 1 --snapshots 2 --tta >"$T/out" 2>"$T/err" || fail "fit with --snapshots --tta exited $?"
M="$T/snap/metrics.json"
num() { tr -dc '0-9.e-'; }
vl=$(grep -m1 '"valid_loss"' "$M" | num)
snap_vl=$(grep '"valid_loss"' "$M" | tail -n 1 | num)
tta_acc=$(awk '/"tta"/ { f = 1 } f && /"accuracy"/ { print; exit }' "$M" | num)
[ -n "$vl" ] && [ -n "$tta_acc" ] || fail "metrics.json has no valid_loss or tta accuracy"
awk -v a="$vl" -v b="$snap_vl" 'BEGIN { d = a - b; if (d < 0) d = -d; exit !(d <= 1e-6 * a) }' ||
    fail "the last snapshot's valid loss $snap_vl is not the final epoch's $vl (a shard's, not the split's?)"
"$KILN" vision interpret "$T/snap" "$T/idx" --out "$T/interp" --tta --threads 1 >"$T/out" 2>"$T/err" ||
    fail "interpret --tta exited $?"
one=$(sed -n 's/^accuracy \([0-9.]*\) on .*(tta).*/\1/p' "$T/out")
[ "$(printf '%.4f' "$tta_acc")" = "$one" ] || fail "TTA accuracy with 2 ranks $tta_acc, one process $one"
echo "dist_cli: snapshots: last valid loss $snap_vl = final $vl; TTA accuracy $tta_acc = one process $one"
echo "dist_cli: all checks passed"
