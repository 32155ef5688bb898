/* The deterministic parallel sum of src/core/parallel.h (the loop macro needs no code). */
#include "core/parallel.h"

_Thread_local int kiln__par_last_team;

double kiln__par_sum(int n_threads, int64_t n, int64_t min_chunk, int64_t cost, kiln__chunk_sum_fn chunk,
                     void *arg)
{
    enum { MAX_CHUNKS = 256 };
    if (n <= 0) return 0.0;
    int64_t size = n / MAX_CHUNKS + 1;
    if (size < min_chunk) size = min_chunk;
    int64_t nc = (n + size - 1) / size;
    double part[MAX_CHUNKS];
    KILN_PAR_LOOP(kiln__par_team(n_threads, nc > 1 ? n * cost : 0), for (int64_t c = 0; c < nc; c++) {
        int64_t lo = c * size, hi = lo + size < n ? lo + size : n;
        part[c] = chunk(arg, lo, hi);
    });
    double s = 0.0;
    for (int64_t c = 0; c < nc; c++) s += part[c];
    return s;
}
