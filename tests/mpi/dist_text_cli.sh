#!/bin/sh
# `mpiexec -np 2 kiln text lm` and `kiln text fit` end to end (issue 13), run by ctest when kiln
# is built with MPI (cmake/dist_learn.cmake): usage dist_text_cli.sh "MPIEXEC FLAGS -n 2" KILN
# (the first argument is cmake's list of the mpiexec line, ';'-separated or spaces).
# On a tiny corpus made here (a text file of 120 paragraphs; train / valid CSVs of 64 / 17
# labelled rows, so the ranks validate 9 and 8 documents: 3 and 2 batches of 4): two ranks train a small language model with --bs 8 (4 rows a rank), then the
# classifier from its encoder (ULMFiT's gradual unfreezing); both exit 0, write their files
# once (rank 0), print the table and the data-parallel line once, and the classifier's
# interpretation covers the whole validation split (17 documents, not a rank's shard). lr-find
# runs too; a --bs that 2 does not divide and predict under mpiexec are refused, saying why.
set -u
# under AddressSanitizer: Open MPI's leaks at exit are in MCA components it has dlclose'd, named
# (and suppressed by tests/lsan.supp) only with the full unwinder
export ASAN_OPTIONS="${ASAN_OPTIONS:+$ASAN_OPTIONS:}fast_unwind_on_malloc=0"
MPI=$(printf '%s' "$1" | tr ';' ' ') KILN=$2
T=$(mktemp -d /tmp/kiln_dist_text_XXXXXX)
trap 'rm -rf "$T"' EXIT
fail() { echo "dist_text_cli: FAIL: $*"; cat "$T/out" "$T/err" 2>/dev/null; exit 1; }
FAST="--threads 1 --progress plain --config small --bptt 8 --min-freq 1"

# the corpus: sentences from a tiny grammar, one paragraph each; the label is the subject's mood
awk 'BEGIN {
    split("the cat|a dog|my neighbour|the old farmer|her brother|the girl", s, "|");
    split("sat on|walked to|looked at|painted|found|liked", v, "|");
    split("the mat|a red house|the river|an apple tree|the small boat|a garden", o, "|");
    srand(7);
    for (i = 0; i < 120; i++) {
        p = "";
        for (k = 0; k < 3; k++) { a = int(rand() * 6) + 1; b = int(rand() * 6) + 1; p = p s[a] " " v[b] " " o[b] ". " }
        print p; print ""
    }
    print "text,label" > "'"$T"'/train.csv"; print "text,label" > "'"$T"'/valid.csv";
    for (i = 0; i < 81; i++) {
        a = int(rand() * 6) + 1; b = int(rand() * 6) + 1;
        f = i < 64 ? "'"$T"'/train.csv" : "'"$T"'/valid.csv";
        print "\"" s[a] " " v[b] " " o[b] ", " (a <= 3 ? "happily" : "sadly") ".\"," (a <= 3 ? "pos" : "neg") > f
    }
}' >"$T/corpus.txt" || fail "could not make the corpus"

$MPI "$KILN" text lm "$T/corpus.txt" --out "$T/lm" --bs 8 --epochs 2 $FAST >"$T/out" 2>"$T/err" || fail "text lm exited $?"
for f in model.safetensors encoder.safetensors vocab.txt model.json history.csv metrics.json; do
    [ -s "$T/lm/$f" ] || fail "text lm: no $f"
done
[ "$(grep -c '^epoch' "$T/out")" = 1 ] || fail "text lm: the table header is not printed exactly once"
[ "$(grep -c '^corpus: ' "$T/out")" = 1 ] || fail "text lm: the corpus line is not printed exactly once"
grep -q 'data-parallel: 2 ranks, global batch 8 (4 a rank)' "$T/out" || fail "text lm: no data-parallel line"
[ "$(wc -l <"$T/lm/history.csv")" = 3 ] || fail "text lm: history.csv has not 2 epochs"
ls "$T/lm" | grep -q '\.tmp\.' && fail "text lm: a temp file was left"

$MPI "$KILN" text lr-find "$T/corpus.txt" --out "$T/lrf" --bs 8 --num-it 20 $FAST >"$T/out" 2>"$T/err" ||
    fail "text lr-find exited $?"
[ -s "$T/lrf/lr_find.csv" ] || fail "text lr-find: no lr_find.csv"
[ "$(grep -c '^wrote ' "$T/out")" = 1 ] || fail "text lr-find: 'wrote' is not printed exactly once"

$MPI "$KILN" text fit "$T/train.csv" --valid "$T/valid.csv" --lm "$T/lm" --out "$T/clas" --bs 8 --epochs 1 $FAST \
    >"$T/out" 2>"$T/err" || fail "text fit exited $?"
for f in model.safetensors vocab.txt model.json history.csv metrics.json confusion_matrix.csv top_losses.csv; do
    [ -s "$T/clas/$f" ] || fail "text fit: no $f"
done
[ "$(grep -c '^wrote ' "$T/out")" = 2 ] || fail "text fit: the 'wrote' lines are not printed exactly once each"
grep -q 'data-parallel: 2 ranks, global batch 8 (4 a rank)' "$T/out" || fail "text fit: no data-parallel line"
grep -q '^interpretation (validation, 17 documents)' "$T/out" || fail "text fit: the interpretation is not of the 17 valid documents"
[ "$(tail -n +2 "$T/clas/top_losses.csv" | wc -l)" -ge 9 ] || fail "text fit: top_losses.csv has fewer than 9 rows"
ls "$T/clas" | grep -q '\.tmp\.' && fail "text fit: a temp file was left"

# --bs 7 with 2 ranks, and predict under mpiexec: refused (mpiexec's exit status is not the ranks')
$MPI "$KILN" text lm "$T/corpus.txt" --out "$T/bad" --bs 7 --epochs 1 $FAST >"$T/out" 2>"$T/err"
[ $? -ne 0 ] || fail "--bs 7 with 2 ranks was accepted"
grep -q -- '--bs 7 is not divisible by the 2 ranks' "$T/err" || fail "no message for --bs 7"
$MPI "$KILN" text predict "$T/clas" "the cat sat on the mat" >"$T/out" 2>"$T/err"
[ $? -ne 0 ] || fail "predict under mpiexec was accepted"
grep -q 'predict runs in one process' "$T/err" || fail "no message for predict under mpiexec"
echo "dist_text_cli: all checks passed"
