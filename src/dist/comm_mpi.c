/* kiln dist: the Open MPI engine (built when KILN_MPI is on). kiln's communicator is a
 * duplicate of MPI_COMM_WORLD with MPI_ERRORS_RETURN, so an MPI error comes back as a status
 * whose message names the call, the rank and MPI_Error_string, and kiln's collectives never
 * match a caller's own MPI traffic. Every collective runs as its non-blocking form polled with
 * MPI_Test until it completes or the communicator's timeout passes: a rank that died or stopped
 * calling makes the others fail in bounded time instead of blocking forever in MPI_Allreduce.
 * MPI is initialised here (MPI_THREAD_FUNNELED: only the thread that trains calls MPI) unless
 * the caller already did, and finalised by kiln_comm_free of the world, or at exit. */
#include <limits.h>
#include <pthread.h>
#include <sched.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <mpi.h>

#include "core/internal.h"
#include "dist/dist_internal.h"

/* MPI counts are int: larger buffers go as several collectives of at most this many elements. */
#define CHUNK ((size_t)1 << 30)

typedef struct mpi_state {
    MPI_Comm comm;
} mpi_state;

typedef struct mpi_req {
    int nr;
    MPI_Request r[];
} mpi_req;

static bool g_we_init;           /* kiln called MPI_Init_thread, so kiln finalises */
static bool g_atexit;            /* the guard is registered */
static kiln_comm *g_mpi_world;   /* for the guard */

static MPI_Comm comm_of(const kiln_comm *c) { return ((const mpi_state *)c->impl)->comm; }

/* An MPI call failed: the message names kiln's call, the rank and MPI's words; the
 * communicator is broken from now on (its other ranks may be in any state). */
static kiln_status mpi_fail(kiln_comm *c, const char *op, const char *call, int rc)
{
    char s[MPI_MAX_ERROR_STRING];
    int len = 0;
    if (MPI_Error_string(rc, s, &len) != MPI_SUCCESS) snprintf(s, sizeof s, "MPI error %d", rc);
    kiln__err(KILN_STATUS_IO, "%s: rank %d of %d: %s failed: %s", op, c->rank, c->size, call, s);
    return kiln__comm_break(c, KILN_STATUS_IO);
}

/* Polls r[0..nr) until all are complete or the timeout passes. Open MPI moves data only inside
 * MPI calls (no progress thread), so the first second spins on MPI_Testall (giving the core up
 * with sched_yield after 1 ms, for oversubscribed runs); after that a rank is waiting for a
 * slower one, not for bytes, and tests every millisecond. */
static kiln_status wait_all(kiln_comm *c, const char *op, const char *call, MPI_Request *r, int nr)
{
    double t0 = kiln__now();
    for (;;) {
        int done = 0;
        int rc = MPI_Testall(nr, r, &done, MPI_STATUSES_IGNORE);
        if (rc != MPI_SUCCESS) return mpi_fail(c, op, call, rc);
        if (done) return KILN_STATUS_OK;
        double waited = kiln__now() - t0;
        if (c->timeout_s > 0 && waited > c->timeout_s) {
            kiln__err(KILN_STATUS_IO,
                      "%s: rank %d of %d: %s did not complete after %.1f s: another rank failed, was killed "
                      "or did not make the same call (timeout %g s, kiln_comm_set_timeout)",
                      op, c->rank, c->size, call, waited, c->timeout_s);
            return kiln__comm_break(c, KILN_STATUS_IO);
        }
        if (waited > 1.0) {
            struct timespec ms = {0, 1000000};
            nanosleep(&ms, NULL);
        } else if (waited > 1e-3) {
            sched_yield();
        }
    }
}

static kiln_status mpi_allreduce(kiln_comm *c, const char *op, void *buf, size_t n, kiln__comm_dtype t)
{
    MPI_Datatype type = t == KILN__COMM_F64 ? MPI_DOUBLE : MPI_FLOAT;
    size_t esize = t == KILN__COMM_F64 ? sizeof(double) : sizeof(float);
    size_t off = 0;
    do { /* once for n == 0 too, so every rank makes the same calls */
        size_t cnt = n - off < CHUNK ? n - off : CHUNK;
        MPI_Request r;
        int rc = MPI_Iallreduce(MPI_IN_PLACE, (char *)buf + off * esize, (int)cnt, type, MPI_SUM, comm_of(c), &r);
        if (rc != MPI_SUCCESS) return mpi_fail(c, op, "MPI_Iallreduce", rc);
        kiln_status st = wait_all(c, op, "MPI_Iallreduce", &r, 1);
        if (st) return st;
        off += cnt;
    } while (off < n);
    return KILN_STATUS_OK;
}

static void req_free(kiln_comm_req *r)
{
    mpi_req *m = r->impl;
    if (m) kiln__free(m, sizeof *m + (size_t)m->nr * sizeof(MPI_Request));
    r->impl = NULL;
}

static kiln_status mpi_iallreduce(kiln_comm *c, const char *op, float *buf, size_t n, kiln_comm_req *r)
{
    req_free(r);
    int nr = n == 0 ? 1 : (int)((n + CHUNK - 1) / CHUNK);
    mpi_req *m = kiln__malloc(sizeof *m + (size_t)nr * sizeof(MPI_Request));
    if (!m) return kiln__err(KILN_STATUS_NOMEM, "%s: out of memory", op);
    m->nr = nr;
    for (int i = 0; i < nr; i++) {
        size_t off = (size_t)i * CHUNK, cnt = n - off < CHUNK ? n - off : CHUNK;
        int rc = MPI_Iallreduce(MPI_IN_PLACE, buf + off, (int)cnt, MPI_FLOAT, MPI_SUM, comm_of(c), &m->r[i]);
        if (rc != MPI_SUCCESS) {
            kiln__free(m, sizeof *m + (size_t)nr * sizeof(MPI_Request));
            return mpi_fail(c, op, "MPI_Iallreduce", rc);
        }
    }
    r->impl = m;
    return KILN_STATUS_OK;
}

static kiln_status mpi_wait(kiln_comm *c, const char *op, kiln_comm_req *r)
{
    mpi_req *m = r->impl;
    kiln_status st = wait_all(c, op, "MPI_Iallreduce", m->r, m->nr);
    req_free(r);
    return st;
}

static kiln_status mpi_test(kiln_comm *c, const char *op, kiln_comm_req *r, bool *done)
{
    mpi_req *m = r->impl;
    int flag = 0;
    int rc = MPI_Testall(m->nr, m->r, &flag, MPI_STATUSES_IGNORE); /* completed ones become MPI_REQUEST_NULL */
    if (rc != MPI_SUCCESS) return mpi_fail(c, op, "MPI_Testall", rc);
    *done = flag != 0;
    return KILN_STATUS_OK;
}

static kiln_status mpi_bcast(kiln_comm *c, const char *op, void *buf, size_t bytes, int root)
{
    size_t off = 0;
    do {
        size_t cnt = bytes - off < CHUNK ? bytes - off : CHUNK;
        MPI_Request r;
        int rc = MPI_Ibcast((char *)buf + off, (int)cnt, MPI_BYTE, root, comm_of(c), &r);
        if (rc != MPI_SUCCESS) return mpi_fail(c, op, "MPI_Ibcast", rc);
        kiln_status st = wait_all(c, op, "MPI_Ibcast", &r, 1);
        if (st) return st;
        off += cnt;
    } while (off < bytes);
    return KILN_STATUS_OK;
}

/* One non-blocking gather (root -1: MPI_Iallgatherv) with the receivers' own parts in place. */
static kiln_status mpi_gatherv(kiln_comm *c, const char *op, const float *mine, float *all, const size_t *counts,
                               const size_t *displs, size_t total, int root)
{
    if (total > INT_MAX)
        return kiln__err(KILN_STATUS_INVALID, "%s: %zu elements: over MPI's int counts (%d)", op, total, INT_MAX);
    const char *call = root < 0 ? "MPI_Iallgatherv" : "MPI_Igatherv";
    int small[32], *ic = c->size <= 16 ? small : malloc(2 * (size_t)c->size * sizeof *ic), *id = ic + c->size;
    if (!ic) return kiln__err(KILN_STATUS_NOMEM, "%s: out of memory", op);
    for (int r = 0; r < c->size; r++) ic[r] = (int)counts[r], id[r] = (int)displs[r];
    bool recv = root < 0 || root == c->rank;
    const void *send = recv ? MPI_IN_PLACE : (const void *)mine;
    MPI_Request r;
    int rc = root < 0 ? MPI_Iallgatherv(send, ic[c->rank], MPI_FLOAT, all, ic, id, MPI_FLOAT, comm_of(c), &r)
                      : MPI_Igatherv(send, ic[c->rank], MPI_FLOAT, all, ic, id, MPI_FLOAT, root, comm_of(c), &r);
    if (ic != small) free(ic);
    if (rc != MPI_SUCCESS) return mpi_fail(c, op, call, rc);
    return wait_all(c, op, call, &r, 1);
}

static kiln_status mpi_barrier(kiln_comm *c, const char *op)
{
    MPI_Request r;
    int rc = MPI_Ibarrier(comm_of(c), &r);
    if (rc != MPI_SUCCESS) return mpi_fail(c, op, "MPI_Ibarrier", rc);
    return wait_all(c, op, "MPI_Ibarrier", &r, 1);
}

/* MINLOC over (status, rank) pairs: the worst status and the lowest rank with it; then, only
 * when it is an error, that rank's message to everyone (fixed size, so no second round for a
 * length). */
static kiln_status mpi_agree(kiln_comm *c, const char *op, kiln_status st, char *msg, kiln_status *worst,
                             int *first)
{
    int in[2] = {(int)st, c->rank}, out[2] = {0, 0};
    MPI_Request r;
    int rc = MPI_Iallreduce(in, out, 1, MPI_2INT, MPI_MINLOC, comm_of(c), &r);
    if (rc != MPI_SUCCESS) return mpi_fail(c, op, "MPI_Iallreduce", rc);
    kiln_status s = wait_all(c, op, "MPI_Iallreduce", &r, 1);
    if (s) return s;
    *worst = (kiln_status)out[0];
    *first = out[1];
    if (*worst == KILN_STATUS_OK) return KILN_STATUS_OK;
    rc = MPI_Ibcast(msg, KILN_COMM_MSG_BYTES, MPI_CHAR, *first, comm_of(c), &r);
    if (rc != MPI_SUCCESS) return mpi_fail(c, op, "MPI_Ibcast", rc);
    s = wait_all(c, op, "MPI_Ibcast", &r, 1);
    msg[KILN_COMM_MSG_BYTES - 1] = '\0';
    return s;
}

static void mpi_abort(kiln_comm *c, const char *why)
{
    fprintf(stderr, "kiln: rank %d: %s\n", c->rank, why);
    fflush(stderr);
    MPI_Abort(comm_of(c), 1);
    _exit(1); /* MPI_Abort does not return; if it ever did, still stop */
}

/* MPI_Finalize waits for every rank to reach it. After a collective failed or timed out some
 * rank may never come, so it gets the communicator's timeout, then the process leaves without
 * it (mpirun ends the job) rather than hang. */
static struct {
    int rank;
    double timeout_s;
} g_watch;

static void *finalize_watchdog(void *arg)
{
    double t_s = g_watch.timeout_s;
    struct timespec t = {(time_t)t_s, (long)((t_s - (double)(time_t)t_s) * 1e9)};
    while (nanosleep(&t, &t) != 0) {}
    char line[160];
    int len = snprintf(line, sizeof line,
                       "kiln: rank %d: the other ranks did not reach MPI_Finalize within %g s; exiting\n",
                       g_watch.rank, t_s);
    if (write(2, line, (size_t)len) < 0) {}
    _exit(1);
}

static void finalize(kiln_comm *c)
{
    int fin = 0;
    MPI_Finalized(&fin);
    if (!g_we_init || fin) return;
    pthread_t t;
    bool watch = false;
    if (c && c->broken && c->timeout_s > 0) {
        g_watch.rank = c->rank;
        g_watch.timeout_s = c->timeout_s;
        watch = pthread_create(&t, NULL, finalize_watchdog, NULL) == 0;
    }
    MPI_Finalize();
    if (watch) { /* every rank came: the process goes on, without the watchdog */
        pthread_cancel(t);
        pthread_join(t, NULL);
    }
}

static void mpi_free(kiln_comm *c)
{
    for (int i = 0; i < KILN_COMM_MAX_REQS; i++)
        req_free(&c->reqs[i]); /* a broken communicator's requests stay pending inside MPI */
    mpi_state *s = c->impl;
    if (s) {
        /* after a failure the duplicate may still have a collective pending: let MPI_Finalize
         * take it rather than MPI_Comm_free wait for it */
        if (!c->broken && s->comm != MPI_COMM_NULL) MPI_Comm_free(&s->comm);
        kiln__free(s, sizeof *s);
        c->impl = NULL;
    }
    if (c == g_mpi_world) {
        finalize(c);
        g_mpi_world = NULL;
    }
}

/* A program that never freed the world communicator still finalises, so mpirun does not
 * report it as a process that exited without MPI_Finalize. */
static void atexit_guard(void)
{
    if (g_mpi_world) {
        finalize(g_mpi_world);
        g_mpi_world = NULL; /* the object itself goes with the process */
    } else {
        finalize(NULL);
    }
}

static const kiln__comm_ops mpi_ops = {
    .name = "mpi",
    .allreduce_sum = mpi_allreduce,
    .iallreduce_sum_f32 = mpi_iallreduce,
    .wait = mpi_wait,
    .test = mpi_test,
    .gatherv_f32 = mpi_gatherv,
    .bcast = mpi_bcast,
    .barrier = mpi_barrier,
    .agree = mpi_agree,
    .abort = mpi_abort,
    .free = mpi_free,
};

kiln_comm *kiln__comm_mpi_world(bool *launched)
{
    const char *op = "kiln_comm_world";
    int inited = 0;
    MPI_Initialized(&inited);
    *launched = inited || getenv("OMPI_COMM_WORLD_SIZE") || getenv("PMI_SIZE");
    if (!*launched) return NULL;
    if (!inited) {
        /* Open MPI's non-blocking sums (libnbc) pick their algorithm by size; the ring, which
         * moves 2(n-1)/n of the buffer per rank whatever n, summed 45 MB in 88-108 ms against
         * 170-198 ms (1 MB: 0.18 against 0.27 ms) with 2 ranks here. The caller's choice wins. */
        setenv("OMPI_MCA_coll_libnbc_iallreduce_algorithm", "1", 0);
        int provided = 0;
        int rc = MPI_Init_thread(NULL, NULL, MPI_THREAD_FUNNELED, &provided);
        if (rc != MPI_SUCCESS) return kiln__errp(KILN_STATUS_IO, "%s: MPI_Init_thread failed (error %d)", op, rc);
        g_we_init = true;
        if (!g_atexit) g_atexit = atexit(atexit_guard) == 0;
    }
    kiln_comm *c = kiln__calloc(sizeof *c);
    mpi_state *s = kiln__calloc(sizeof *s);
    if (!c || !s) {
        kiln__free(c, sizeof *c);
        kiln__free(s, sizeof *s);
        return kiln__errp(KILN_STATUS_NOMEM, "%s: out of memory", op);
    }
    c->ops = &mpi_ops;
    c->impl = s;
    s->comm = MPI_COMM_NULL;
    int rc = MPI_Comm_dup(MPI_COMM_WORLD, &s->comm);
    if (rc == MPI_SUCCESS) rc = MPI_Comm_set_errhandler(s->comm, MPI_ERRORS_RETURN);
    if (rc == MPI_SUCCESS) rc = MPI_Comm_rank(s->comm, &c->rank);
    if (rc == MPI_SUCCESS) rc = MPI_Comm_size(s->comm, &c->size);
    if (rc != MPI_SUCCESS) {
        c->size = 1;
        mpi_fail(c, op, "MPI_Comm_dup", rc);
        char *msg = kiln__error_dup();
        g_mpi_world = c;
        mpi_free(c);
        kiln__free(c, sizeof *c);
        kiln__err(KILN_STATUS_IO, "%s", msg ? msg : "kiln_comm_world: MPI failed to start");
        free(msg);
        return NULL;
    }
    g_mpi_world = c;
    return c;
}
