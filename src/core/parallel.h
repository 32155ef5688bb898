/* The one way kiln spreads work over threads: every threaded loop in libkiln is a
 *
 *     KILN_PAR_FOR(ctx, work)
 *     for (int64_t i = 0; i < n; i++) ...
 *
 * an OpenMP `parallel for schedule(static)` whose team is kiln__par_threads(ctx, work): the
 * context's own thread count (kiln_ctx_params.n_threads), or 1 when the loop is too small
 * to pay for a parallel region. Nothing reads or sets OpenMP's process-wide default, so two
 * contexts with different counts can be used alternately (or from two threads) and each
 * loop runs with its own context's count.
 *
 * The size policy is one number, KILN_PAR_GRAIN, compared with the loop's `work`: about the
 * number of floats the whole loop reads and writes, counting an element that costs a
 * transcendental or a small window (a pooling window, a Philox draw) as several. A loop
 * split by hand into parts (per-thread scratch, a fixed reduction order) loops over
 * kiln__par_threads(ctx, work) parts under the same macro: static scheduling gives each
 * thread one part, and the result never depends on how many threads OpenMP really starts.
 *
 * kiln__par_sum is the deterministic reduction: a sum over fixed chunks whose size depends
 * only on n, added in order, so the same bits for any thread count. */
#ifndef KILN_CORE_PARALLEL_H
#define KILN_CORE_PARALLEL_H

#include "core/internal.h"

/* Loops with less work than this run on the calling thread. */
#define KILN_PAR_GRAIN 32768

/* Threads for a loop of `work` units for an owner with n_threads: 1 when work <
 * KILN_PAR_GRAIN or OpenMP is off, else n_threads. */
static inline int kiln__par_team(int n_threads, int64_t work)
{
#ifdef _OPENMP
    return work < KILN_PAR_GRAIN || n_threads < 1 ? 1 : n_threads;
#else
    (void)n_threads, (void)work;
    return 1;
#endif
}

/* The same for a context (NULL, as reference kernels pass: 1). */
static inline int kiln__par_threads(const kiln_ctx *ctx, int64_t work)
{
    return ctx ? kiln__par_team(ctx->n_threads, work) : 1;
}

/* A parallel loop of a context, and of an owner outside any context (the optimizer) that
 * keeps its own count: KILN_PAR_FOR_N(kiln__par_team(opt->n_threads, work)). */
#define KILN_PAR_FOR(ctx, work) KILN_PAR_FOR_N(kiln__par_threads((ctx), (work)))
#ifdef _OPENMP /* -fopenmp (KILN_OPENMP=ON), also in tests that use the macro */
#define KILN__PRAGMA(x) _Pragma(#x)
#define KILN_PAR_FOR_N(nthreads) KILN__PRAGMA(omp parallel for schedule(static) num_threads(nthreads))
#else
#define KILN_PAR_FOR_N(nthreads)
#endif

/* KILN_PAR_LOOP(team, for (...) statement): the loop on `team` threads as KILN_PAR_FOR_N, or,
 * when team is 1, on the calling thread with no parallel region at all. An OpenMP region
 * costs about 0.6 us and one futex system call even for a team of one (libgomp's end-of-team
 * barrier wakes its waiters unconditionally); a small model's step runs a few hundred loops
 * under the grain, so the hot small-size loops use this form. The loop is written once, as
 * the macro's argument (no #pragma lines inside it; _Pragma is fine). */
#define KILN_PAR_LOOP(team, ...)                                                                  \
    do {                                                                                         \
        const int kiln__tm_ = (team);                                                            \
        if (kiln__tm_ > 1) {                                                                     \
            KILN_PAR_FOR_N(kiln__tm_)                                                            \
            __VA_ARGS__                                                                          \
        } else {                                                                                 \
            __VA_ARGS__                                                                          \
        }                                                                                        \
    } while (0)

/* The sum over [0, n) of chunk(arg, lo, hi) for consecutive chunks [lo, hi): chunks of at
 * least min_chunk, at most 256 of them, their sizes a function of n only; chunks run on up
 * to n_threads threads (work = n * cost, cost about the floats read per index), partial
 * sums are added in chunk order. */
typedef double (*kiln__chunk_sum_fn)(void *arg, int64_t lo, int64_t hi);
double kiln__par_sum(int n_threads, int64_t n, int64_t min_chunk, int64_t cost, kiln__chunk_sum_fn chunk,
                     void *arg);

/* The team size of this thread's last kiln__iter_run loop (the eltwise kernels behind add,
 * mul, copy, ...), recorded by the loop's first part: how tests see that an op ran on its
 * context's count. */
extern _Thread_local int kiln__par_last_team;

#endif
