#!/bin/sh
# A rank that dies in the middle of a collective (issue 13): runs `MPIEXEC... PROGRAM --kill`
# (rank 1 calls _exit(3)), `--kill9` (rank 1 SIGKILLs itself), `--abort` (rank 1 calls
# kiln_comm_abort, which must print "kiln: rank 1: why") while rank 0 waits in a sum, and
# `--kill0` (rank 0, the one that writes, SIGKILLs itself while rank 1 waits)
# whose timeout is the default 300 s; mpiexec must end the job non-zero within 20 s (timeout(1) stops
# it at 60 s), naming the rank that died. Run by ctest (dist_mpi_kill, cmake/dist.cmake):
#   tests/mpi/run_kill.sh mpiexec --allow-run-as-root --oversubscribe -n 2 build/test_dist_mpi
set -u
[ $# -ge 2 ] || { echo "usage: $0 MPIEXEC [FLAGS...] PROGRAM" >&2; exit 2; }
T=$(mktemp -d /tmp/kiln_kill.XXXXXX)
trap 'rm -rf "$T"' EXIT
fail=0
for mode in --kill --kill9 --abort --kill0; do
    victim=1
    [ "$mode" = --kill0 ] && victim=0
    t0=$(date +%s.%N)
    timeout -k 5 60 "$@" "$mode" >"$T/out" 2>&1
    rc=$?
    t=$(awk -v a="$t0" -v b="$(date +%s.%N)" 'BEGIN { printf "%.1f", b - a }')
    echo "run_kill $mode: exit $rc after $t s"
    sed 's/^/  | /' "$T/out" | head -n 30
    if [ "$rc" -eq 0 ]; then echo "run_kill $mode: FAILED: mpiexec exited 0"; fail=1; fi
    if awk -v t="$t" 'BEGIN { exit !(t >= 20) }'; then echo "run_kill $mode: FAILED: took $t s (want < 20)"; fail=1; fi
    # Open MPI names it as "process rank 1" (a signal) or "Process name: [[job,1],1]" (an exit)
    if ! grep -q -E "rank $victim([^0-9]|$)|,1\],$victim\]" "$T/out"; then
        echo "run_kill $mode: FAILED: no message names rank $victim"; fail=1
    fi
    if [ "$mode" = --abort ] && ! grep -q "^kiln: rank 1: shard 1: bad.png: not a PNG file" "$T/out"; then
        echo "run_kill $mode: FAILED: no \"kiln: rank 1: why\" line"; fail=1
    fi
done
exit $fail
