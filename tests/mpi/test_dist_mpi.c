/* The MPI communicator (include/kiln/dist.h) under mpiexec with 2 ranks (or more) (cmake/dist.cmake; a
 * plain program, not Criterion: Criterion forks its tests, MPI does not survive a fork). Exits
 * non-zero on any failed check, naming the rank.
 *   test_dist_mpi            rank/size, f32 and f64 sums (0, 1, 1000, 10^6 elements), three
 *                            buckets in flight, bcast from each root, barrier, all-gather and
 *                            gather with counts per rank, agree
 *   test_dist_mpi --timeout  rank 1 skips a sum: rank 0's fails after the 2 s timeout with a
 *                            message naming the call, the rank and the seconds; both exit 0
 *   test_dist_mpi --kill     rank 1 _exit(3)s while rank 0 waits in a sum (tests/mpi/run_kill.sh
 *   test_dist_mpi --kill9    ... or SIGKILLs itself; checks that mpiexec ends it non-zero, fast)
 *   test_dist_mpi --kill0    rank 0 SIGKILLs itself while rank 1 waits in a sum
 *   test_dist_mpi --abort    ... or calls kiln_comm_abort: "kiln: rank 1: why", the job ends
 *   test_dist_mpi --nofree   never frees the world: MPI is finalised at exit, mpiexec exits 0
 *   test_dist_mpi --bench    sum times of 1, 10 and 45 MB buffers, kiln's against MPI_Allreduce */
#include <math.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <mpi.h>

#include "kiln/dist.h"

#ifdef __SANITIZE_ADDRESS__
/* Open MPI's leaks are suppressed by library (tests/lsan.supp), which needs whole stacks */
const char *__asan_default_options(void);
const char *__asan_default_options(void) { return "fast_unwind_on_malloc=0"; }
#endif

static int g_rank = -1;
static int g_fails;

#define CHECK(cond, ...)                                                                           \
    do {                                                                                           \
        if (!(cond)) {                                                                             \
            fprintf(stderr, "test_dist_mpi: rank %d: %s:%d: FAILED %s: ", g_rank, __FILE__, __LINE__, #cond); \
            fprintf(stderr, __VA_ARGS__);                                                          \
            fprintf(stderr, " (last error: %s)\n", kiln_last_error());                             \
            g_fails++;                                                                             \
        }                                                                                          \
    } while (0)

static double now_s(void)
{
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)t.tv_sec + 1e-9 * (double)t.tv_nsec;
}

/* rank r's value at i: exact in f32 for the sizes used, so the sum is exact too */
static double val(int r, size_t i) { return (double)((i * 7 + 3) % 1024) + 0.5 * r; }

static void sums(kiln_comm *c)
{
    int size = kiln_comm_size(c), rank = kiln_comm_rank(c);
    const size_t ns[] = {0, 1, 1000, 1000000};
    for (size_t k = 0; k < sizeof ns / sizeof ns[0]; k++) {
        size_t n = ns[k];
        float *f = malloc((n ? n : 1) * sizeof *f);
        double *d = malloc((n ? n : 1) * sizeof *d);
        for (size_t i = 0; i < n; i++) {
            f[i] = (float)val(rank, i);
            d[i] = val(rank, i) + 1e-9 * rank; /* needs f64 */
        }
        CHECK(kiln_comm_allreduce_sum_f32(c, n ? f : NULL, n) == KILN_STATUS_OK, "f32 sum of %zu", n);
        CHECK(kiln_comm_allreduce_sum_f64(c, n ? d : NULL, n) == KILN_STATUS_OK, "f64 sum of %zu", n);
        size_t bad_f = 0, bad_d = 0;
        for (size_t i = 0; i < n; i++) {
            double want = 0, want_d = 0;
            for (int r = 0; r < size; r++) {
                want += val(r, i);
                want_d += val(r, i) + 1e-9 * r;
            }
            bad_f += f[i] != (float)want;                    /* exact: integers and halves */
            bad_d += fabs(d[i] - want_d) > 1e-12 * fabs(want_d); /* tolerance: rtol 1e-12 */
        }
        CHECK(bad_f == 0, "f32 sum of %zu: %zu wrong", n, bad_f);
        CHECK(bad_d == 0, "f64 sum of %zu: %zu wrong", n, bad_d);
        free(f);
        free(d);
    }
}

/* Three buckets started before any wait (as backward starts them), waited in reverse. */
static void buckets(kiln_comm *c)
{
    int size = kiln_comm_size(c), rank = kiln_comm_rank(c);
    const size_t ns[3] = {1000, 250000, 7};
    float *b[3];
    kiln_comm_req *req[3];
    for (int k = 0; k < 3; k++) {
        b[k] = malloc(ns[k] * sizeof(float));
        for (size_t i = 0; i < ns[k]; i++) b[k][i] = (float)(k + 1) * (float)(rank + 1) + (float)(i % 5);
        CHECK(kiln_comm_iallreduce_sum_f32(c, b[k], ns[k], &req[k]) == KILN_STATUS_OK, "bucket %d start", k);
    }
    /* tested until done (the progress a caller overlapping backward relies on), then waited */
    bool done = false;
    double t0 = now_s();
    while (!done && now_s() - t0 < 60)
        CHECK(kiln_comm_test(c, req[1], &done) == KILN_STATUS_OK, "bucket 1 test");
    CHECK(done, "bucket 1 not done after 60 s of tests");
    for (int k = 2; k >= 0; k--) {
        CHECK(kiln_comm_wait(c, req[k]) == KILN_STATUS_OK, "bucket %d wait", k);
        size_t bad = 0;
        float rs = (float)(size * (size + 1) / 2);
        for (size_t i = 0; i < ns[k]; i++) bad += b[k][i] != (float)(k + 1) * rs + (float)size * (float)(i % 5);
        CHECK(bad == 0, "bucket %d: %zu wrong", k, bad);
        free(b[k]);
    }
    /* a request is given back by its wait: a second wait is refused */
    CHECK(kiln_comm_wait(c, req[0]) == KILN_STATUS_INVALID, "second wait");
}

static void bcasts(kiln_comm *c)
{
    int size = kiln_comm_size(c), rank = kiln_comm_rank(c);
    for (int root = 0; root < size; root++) {
        char buf[100];
        for (int i = 0; i < 100; i++) buf[i] = (char)(rank == root ? 10 * root + i : -1);
        CHECK(kiln_comm_bcast(c, buf, sizeof buf, root) == KILN_STATUS_OK, "bcast from %d", root);
        int bad = 0;
        for (int i = 0; i < 100; i++) bad += buf[i] != (char)(10 * root + i);
        CHECK(bad == 0, "bcast from %d: %d bytes wrong", root, bad);
    }
    CHECK(kiln_comm_bcast(c, NULL, 0, size - 1) == KILN_STATUS_OK, "empty bcast");
    CHECK(kiln_comm_bcast(c, &rank, sizeof rank, size) == KILN_STATUS_INVALID, "bcast from rank %d", size);
    CHECK(kiln_comm_barrier(c) == KILN_STATUS_OK, "barrier");
}

/* All-gather and gather with counts per rank (one rank's count 0, uneven ones), mine in place
 * or in a buffer of its own. */
static void gathers(kiln_comm *c)
{
    int size = kiln_comm_size(c), rank = kiln_comm_rank(c);
    size_t counts[64], total = 0, off = 0;
    if (size > 64) return;
    for (int r = 0; r < size; r++) counts[r] = r == 1 ? 0 : 1000 + 17 * (size_t)r, total += counts[r];
    for (int r = 0; r < rank; r++) off += counts[r];
    float *all = malloc(total * sizeof *all), *mine = malloc((counts[rank] + 1) * sizeof *mine);
    for (int mode = 0; mode < 2 + size; mode++) { /* in place, own buffer, gather to each root */
        int root = mode < 2 ? -1 : mode - 2;
        for (size_t i = 0; i < total; i++) all[i] = -1.0f;
        for (size_t i = 0; i < counts[rank]; i++) mine[i] = (float)val(rank, i);
        if (mode == 0) memcpy(all + off, mine, counts[rank] * sizeof *mine);
        kiln_status st = root < 0 ? kiln_comm_allgatherv_f32(c, mode == 0 ? all + off : mine, all, counts)
                                  : kiln_comm_gatherv_f32(c, mine, rank == root ? all : NULL, counts, root);
        CHECK(st == KILN_STATUS_OK, "gather mode %d", mode);
        if (root >= 0 && rank != root) continue;
        size_t bad = 0, o = 0;
        for (int r = 0; r < size; o += counts[r++])
            for (size_t i = 0; i < counts[r]; i++) bad += all[o + i] != (float)val(r, i);
        CHECK(bad == 0, "gather mode %d: %zu of %zu wrong", mode, bad, total);
    }
    CHECK(kiln_comm_gatherv_f32(c, mine, all, counts, size) == KILN_STATUS_INVALID, "gather to rank %d", size);
    CHECK(kiln_comm_allgatherv_f32(c, mine, all, NULL) == KILN_STATUS_INVALID, "counts NULL");
    free(all), free(mine);
}

static void agrees(kiln_comm *c)
{
    int rank = kiln_comm_rank(c);
    CHECK(kiln_comm_agree(c, KILN_STATUS_OK) == KILN_STATUS_OK, "all OK");
    /* rank 1 fails: everyone gets its status; rank 0 its message */
    kiln_status mine = KILN_STATUS_OK;
    if (rank == 1) mine = kiln_error(KILN_STATUS_FORMAT, "bad.png: not a PNG file");
    kiln_status st = kiln_comm_agree(c, mine);
    CHECK(st == KILN_STATUS_FORMAT, "agree: got %d", (int)st);
    if (rank != 1) {
        char want[64];
        snprintf(want, sizeof want, "rank 1 of %d failed", kiln_comm_size(c));
        CHECK(strstr(kiln_last_error(), want) != NULL, "names rank 1");
        CHECK(strstr(kiln_last_error(), "bad.png: not a PNG file") != NULL, "carries rank 1's message");
    } else {
        CHECK(strcmp(kiln_last_error(), "bad.png: not a PNG file") == 0, "rank 1 keeps its message");
    }
    /* all fail: the worst status, the lowest rank with it */
    mine = rank == 0 ? kiln_error(KILN_STATUS_IO, "rank 0's disk") : kiln_error(KILN_STATUS_NOMEM, "rank 1's memory");
    st = kiln_comm_agree(c, mine);
    CHECK(st == KILN_STATUS_IO, "worst (most negative) of IO and NOMEM: got %d", (int)st);
    if (rank == 1) CHECK(strcmp(kiln_last_error(), "rank 1's memory") == 0, "rank 1 keeps its message");
    kiln_clear_error();
    CHECK(kiln_comm_agree(c, KILN_STATUS_OK) == KILN_STATUS_OK, "OK again after failures");
}

static int run_timeout(kiln_comm *c)
{
    int rank = kiln_comm_rank(c);
    CHECK(kiln_comm_set_timeout(c, 2.0) == KILN_STATUS_OK, "timeout");
    CHECK(kiln_comm_barrier(c) == KILN_STATUS_OK, "barrier before");
    if (rank == 1) {
        sleep(3); /* skips the sum: rank 0 must not wait for it */
    } else {
        float x[4] = {1, 2, 3, 4};
        double t0 = now_s();
        kiln_status st = kiln_comm_allreduce_sum_f32(c, x, 4);
        double t = now_s() - t0;
        const char *e = kiln_last_error();
        printf("rank 0: %.2f s: %s\n", t, e);
        CHECK(st == KILN_STATUS_IO, "timed out sum: status %d", (int)st);
        CHECK(t >= 1.9 && t < 5.0, "failed after %.2f s, want 2 (and < 5 on a loaded machine)", t);
        CHECK(strstr(e, "kiln_comm_allreduce_sum_f32") && strstr(e, "rank 0 of 2") &&
                  strstr(e, "did not complete after 2.") && strstr(e, "timeout 2 s"),
              "message: %s", e);
        /* the communicator is unusable now, and says so at once */
        t0 = now_s();
        CHECK(kiln_comm_barrier(c) == KILN_STATUS_STATE, "barrier after a timeout");
        CHECK(now_s() - t0 < 0.5, "barrier after a timeout: at once");
        CHECK(strstr(kiln_last_error(), "failed earlier") != NULL, "names the earlier failure");
    }
    return 0;
}

/* rank `victim` (1, or 0: the rank that writes the files) dies while the others are in a sum
 * with the default timeout (300 s): mpiexec, not the timeout, must end them
 * (tests/mpi/run_kill.sh checks the status and the time). */
static void run_kill(kiln_comm *c, bool sigkill, int victim)
{
    CHECK(kiln_comm_barrier(c) == KILN_STATUS_OK, "barrier before");
    if (kiln_comm_rank(c) == victim) {
        usleep(300000);
        if (sigkill) raise(SIGKILL);
        _exit(3);
    }
    float x[4] = {1, 2, 3, 4};
    kiln_status st = kiln_comm_allreduce_sum_f32(c, x, 4);
    printf("rank %d: the sum returned %d: %s\n", kiln_comm_rank(c), (int)st, kiln_last_error());
}

/* rank 1 stops the job with kiln_comm_abort while rank 0 waits in a sum */
static void run_abort(kiln_comm *c)
{
    CHECK(kiln_comm_barrier(c) == KILN_STATUS_OK, "barrier before");
    if (kiln_comm_rank(c) == 1) {
        usleep(300000);
        kiln_comm_abort(c, "shard 1: bad.png: not a PNG file");
        CHECK(0, "kiln_comm_abort returned");
        return;
    }
    float x[4] = {1, 2, 3, 4};
    kiln_status st = kiln_comm_allreduce_sum_f32(c, x, 4);
    printf("rank 0: the sum returned %d: %s\n", (int)st, kiln_last_error());
}

static void run_bench(kiln_comm *c)
{
    int rank = kiln_comm_rank(c), size = kiln_comm_size(c);
    const double mbs[] = {1, 10, 45};
    if (rank == 0)
        printf("%d ranks: sum of a float buffer (ms per call, median of runs; bus GB/s = 2(n-1)/n bytes / t)\n",
               size);
    for (int k = 0; k < 3; k++) {
        size_t n = (size_t)(mbs[k] * 1e6) / sizeof(float);
        float *b = calloc(n, sizeof *b);
        int reps = mbs[k] > 20 ? 11 : 21;
        double tk[21], tm[21];
        for (int w = 0; w < 2; w++) { /* warm-up */
            kiln_comm_allreduce_sum_f32(c, b, n);
            MPI_Allreduce(MPI_IN_PLACE, b, (int)n, MPI_FLOAT, MPI_SUM, MPI_COMM_WORLD);
        }
        for (int r = 0; r < reps; r++) {
            kiln_comm_barrier(c);
            double t0 = now_s();
            CHECK(kiln_comm_allreduce_sum_f32(c, b, n) == KILN_STATUS_OK, "bench sum");
            tk[r] = now_s() - t0;
            MPI_Barrier(MPI_COMM_WORLD);
            t0 = now_s();
            MPI_Allreduce(MPI_IN_PLACE, b, (int)n, MPI_FLOAT, MPI_SUM, MPI_COMM_WORLD);
            tm[r] = now_s() - t0;
        }
        /* median */
        for (int i = 0; i < reps; i++)
            for (int j = i + 1; j < reps; j++) {
                if (tk[j] < tk[i]) { double s = tk[i]; tk[i] = tk[j]; tk[j] = s; }
                if (tm[j] < tm[i]) { double s = tm[i]; tm[i] = tm[j]; tm[j] = s; }
            }
        double bytes = (double)n * sizeof(float), f = 2.0 * (size - 1) / size;
        if (rank == 0)
            printf("  %5.0f MB: kiln %8.3f ms (%5.2f GB/s)   MPI_Allreduce %8.3f ms (%5.2f GB/s)\n", mbs[k],
                   1e3 * tk[reps / 2], f * bytes / tk[reps / 2] / 1e9, 1e3 * tm[reps / 2],
                   f * bytes / tm[reps / 2] / 1e9);
        free(b);
    }
}

int main(int argc, char **argv)
{
    const char *mode = argc > 1 ? argv[1] : "";
    CHECK(kiln_comm_mpi_built(), "built with MPI");
    kiln_comm *c = kiln_comm_world();
    if (!c) {
        fprintf(stderr, "test_dist_mpi: kiln_comm_world: %s\n", kiln_last_error());
        return 1;
    }
    g_rank = kiln_comm_rank(c);
    CHECK(kiln_comm_world() == c, "the same world on every call");
    CHECK(strcmp(kiln_comm_name(c), "mpi") == 0, "name %s", kiln_comm_name(c));
    CHECK(kiln_comm_size(c) >= 2, "size %d", kiln_comm_size(c)); /* ctest runs 2; more work too */
    CHECK(g_rank >= 0 && g_rank < kiln_comm_size(c), "rank %d", g_rank);
    if (!strcmp(mode, "--timeout")) {
        run_timeout(c);
    } else if (!strcmp(mode, "--kill") || !strcmp(mode, "--kill9")) {
        run_kill(c, !strcmp(mode, "--kill9"), 1);
    } else if (!strcmp(mode, "--kill0")) {
        run_kill(c, true, 0);
    } else if (!strcmp(mode, "--abort")) {
        run_abort(c);
    } else if (!strcmp(mode, "--nofree")) {
        CHECK(kiln_comm_barrier(c) == KILN_STATUS_OK, "barrier");
        printf("test_dist_mpi --nofree: rank %d: ok (MPI finalised at exit)\n", g_rank);
        return g_fails ? 1 : 0; /* no kiln_comm_free: the atexit guard finalises */
    } else if (!strcmp(mode, "--bench")) {
        run_bench(c);
    } else {
        sums(c);
        buckets(c);
        bcasts(c);
        gathers(c);
        agrees(c);
        /* a rank's checks failed: the others hear of it */
        kiln_clear_error();
        kiln_status st = kiln_comm_agree(c, g_fails ? kiln_error(KILN_STATUS_INVALID, "%d checks failed", g_fails)
                                                    : KILN_STATUS_OK);
        CHECK(st == KILN_STATUS_OK || g_fails, "another rank failed: %s", kiln_last_error());
    }
    kiln_comm_free(c);
    if (!strcmp(mode, "")) { /* MPI is finalised: it does not start again */
        CHECK(kiln_comm_world() == NULL && kiln_last_status() == KILN_STATUS_STATE, "world after the free");
    }
    if (g_fails == 0) printf("test_dist_mpi %s: rank %d: ok\n", mode, g_rank);
    return g_fails ? 1 : 0;
}
