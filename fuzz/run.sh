#!/bin/sh
# Builds the libFuzzer targets (clang, ASan+UBSan; cmake/fuzz.cmake) in build-fuzz/ and runs
# each for a bounded time on a scratch copy of its seeds (fuzz/corpus/<target>/, never grown in
# place). docs/fuzzing.md records the long runs.
#   fuzz/run.sh SECONDS [TARGET...]          each target for SECONDS (CI: 30)
#   fuzz/run.sh --long [TARGET...]           10 million runs or 30 minutes each, one at a time,
#                                            logs in fuzz-out/<target>.log
# Environment: FUZZ_BUILD (build-fuzz), FUZZ_OUT (fuzz-out), FUZZ_ARGS (extra libFuzzer flags).
# A crash leaves crash-* in FUZZ_OUT and fails the script; minimise it with
#   build-fuzz/fuzz_<target> -minimize_crash=1 -runs=100000 CRASH
# and commit the result under fuzz/regress/<target>/ (replayed by ctest in the normal build).
set -eu
cd "$(dirname "$0")/.."
B=${FUZZ_BUILD:-build-fuzz}
OUT=${FUZZ_OUT:-fuzz-out}
ALL="safetensors idx image csv checkpoint modeljson pth text table"
long=0
if [ "${1:-}" = "--long" ]; then
    long=1
    shift
else
    secs=${1:?usage: fuzz/run.sh SECONDS|--long [TARGET...]}
    shift
fi
targets=${*:-$ALL}
CC=clang cmake -S . -B "$B" -DKILN_FUZZ=ON -DKILN_OPENMP=OFF -DKILN_TESTS=OFF -DKILN_BENCH=OFF >/dev/null
cmake --build "$B" -j2
mkdir -p "$OUT"
for t in $targets; do
    work="$OUT/corpus-$t"
    rm -rf "$work"
    mkdir -p "$work"
    cp fuzz/corpus/"$t"/* "$work"/
    if [ $long = 1 ]; then
        limits="-max_total_time=1800 -runs=10000000"
    else
        limits="-max_total_time=$secs"
    fi
    echo "fuzz: $t: $limits" >&2
    # -timeout: one input may take 25 s at most; -rss_limit_mb: 2 GiB (libFuzzer's default)
    # shellcheck disable=SC2086
    if ! "$B/fuzz_$t" $limits -timeout=25 -rss_limit_mb=2048 -print_final_stats=1 \
        -artifact_prefix="$OUT/$t-" ${FUZZ_ARGS:-} "$work" >"$OUT/$t.log" 2>&1; then
        tail -n 60 "$OUT/$t.log" >&2
        echo "fuzz: $t FAILED (log: $OUT/$t.log)" >&2
        exit 1
    fi
    grep -E '^Done|stat::number_of_executed_units|stat::peak_rss_mb|cov:' "$OUT/$t.log" | tail -n 4 >&2
done
