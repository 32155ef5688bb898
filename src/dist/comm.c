/* kiln dist: the communicator object (include/kiln/dist.h). The public calls check their
 * arguments, keep the pool of in-flight requests and pass the rest to the engine's table
 * (dist_internal.h). The single-process engine lives here: rank 0 of 1, every sum and
 * broadcast leaves the buffer as it is, agree returns the caller's own status. The world
 * communicator is one object per process: MPI's (comm_mpi.c) when kiln was built with MPI and
 * mpirun started the process, this one otherwise. */
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include "core/internal.h"
#include "dist/dist_internal.h"

#define KILN_COMM_DEFAULT_TIMEOUT_S 300.0

static kiln_comm *g_world;
#ifdef KILN_HAVE_MPI
static bool g_mpi_used; /* MPI was started once: it cannot be started again after its free */
#endif

bool kiln_comm_mpi_built(void)
{
#ifdef KILN_HAVE_MPI
    return true;
#else
    return false;
#endif
}

/* ---- the single-process engine ---------------------------------------------------------- */

static kiln_status single_allreduce(kiln_comm *c, const char *op, void *buf, size_t n, kiln__comm_dtype t)
{
    return KILN_STATUS_OK;
}

static kiln_status single_iallreduce(kiln_comm *c, const char *op, float *buf, size_t n, kiln_comm_req *r)
{
    return KILN_STATUS_OK;
}

static kiln_status single_wait(kiln_comm *c, const char *op, kiln_comm_req *r) { return KILN_STATUS_OK; }

static kiln_status single_test(kiln_comm *c, const char *op, kiln_comm_req *r, bool *done)
{
    *done = true;
    return KILN_STATUS_OK;
}

static kiln_status single_gatherv(kiln_comm *c, const char *op, const float *mine, float *all, const size_t *counts,
                                  const size_t *displs, size_t total, int root)
{
    return KILN_STATUS_OK;
}

static kiln_status single_bcast(kiln_comm *c, const char *op, void *buf, size_t bytes, int root)
{
    return KILN_STATUS_OK;
}

static kiln_status single_barrier(kiln_comm *c, const char *op) { return KILN_STATUS_OK; }

static kiln_status single_agree(kiln_comm *c, const char *op, kiln_status st, char *msg, kiln_status *worst,
                                int *first)
{
    *worst = st;
    *first = 0;
    return KILN_STATUS_OK;
}

static void single_abort(kiln_comm *c, const char *why) {}

static void single_free(kiln_comm *c) {}

static const kiln__comm_ops single_ops = {
    .name = "single",
    .allreduce_sum = single_allreduce,
    .iallreduce_sum_f32 = single_iallreduce,
    .wait = single_wait,
    .test = single_test,
    .gatherv_f32 = single_gatherv,
    .bcast = single_bcast,
    .barrier = single_barrier,
    .agree = single_agree,
    .abort = single_abort,
    .free = single_free,
};

kiln_comm *kiln_comm_single(void)
{
    kiln_comm *c = kiln__calloc(sizeof *c);
    if (!c) return kiln__errp(KILN_STATUS_NOMEM, "kiln_comm_single: out of memory");
    c->ops = &single_ops;
    c->rank = 0;
    c->size = 1;
    c->timeout_s = KILN_COMM_DEFAULT_TIMEOUT_S;
    return c;
}

/* ---- the object ------------------------------------------------------------------------- */

kiln_comm *kiln_comm_world(void)
{
    if (g_world) return g_world;
#ifdef KILN_HAVE_MPI
    if (g_mpi_used)
        return kiln__errp(KILN_STATUS_STATE, "kiln_comm_world: MPI was finalised by kiln_comm_free and cannot "
                                             "start again in this process");
    bool launched = false;
    kiln_comm *c = kiln__comm_mpi_world(&launched);
    if (launched) {
        if (!c) return NULL;
        c->timeout_s = KILN_COMM_DEFAULT_TIMEOUT_S;
        g_mpi_used = true;
        g_world = c;
        return c;
    }
#endif
    g_world = kiln_comm_single();
    return g_world;
}

void kiln_comm_free(kiln_comm *c)
{
    if (!c) return;
    for (int i = 0; i < KILN_COMM_MAX_REQS; i++)
        c->reqs[i].busy = false; /* the engine frees what its requests hold */
    c->ops->free(c);
    if (c == g_world) g_world = NULL;
    kiln__free(c, sizeof *c);
}

int kiln_comm_rank(const kiln_comm *c) { return c ? c->rank : 0; }
int kiln_comm_size(const kiln_comm *c) { return c ? c->size : 1; }
const char *kiln_comm_name(const kiln_comm *c) { return c ? c->ops->name : "single"; }

kiln_status kiln_comm_set_timeout(kiln_comm *c, double timeout_s)
{
    if (!c) return kiln__err(KILN_STATUS_INVALID, "kiln_comm_set_timeout: no communicator (NULL)");
    /* also refuses NaN; 1e9 s (~32 years) is "forever" to anyone who asks for more */
    if (!(timeout_s >= 0 && timeout_s <= 1e9))
        return kiln__err(KILN_STATUS_INVALID, "kiln_comm_set_timeout: %g s: want 0 (no limit) to 1e9 seconds",
                         timeout_s);
    c->timeout_s = timeout_s;
    return KILN_STATUS_OK;
}

kiln_status kiln__comm_break(kiln_comm *c, kiln_status st)
{
    if (!c->broken) {
        c->broken = true;
        snprintf(c->broken_msg, sizeof c->broken_msg, "%s", kiln_last_error());
    }
    return st;
}

/* The checks every collective starts with. */
static kiln_status check(kiln_comm *c, const char *op, const void *buf, size_t n)
{
    if (!c) return kiln__err(KILN_STATUS_INVALID, "%s: no communicator (NULL)", op);
    if (n > 0 && !buf) return kiln__err(KILN_STATUS_INVALID, "%s: buffer NULL with %zu elements", op, n);
    if (c->broken)
        return kiln__err(KILN_STATUS_STATE, "%s: rank %d: the communicator failed earlier (%s)", op, c->rank,
                         c->broken_msg);
    return KILN_STATUS_OK;
}

kiln_status kiln_comm_allreduce_sum_f32(kiln_comm *c, float *buf, size_t n)
{
    const char *op = "kiln_comm_allreduce_sum_f32";
    kiln_status st = check(c, op, buf, n);
    return st ? st : c->ops->allreduce_sum(c, op, buf, n, KILN__COMM_F32);
}

kiln_status kiln_comm_allreduce_sum_f64(kiln_comm *c, double *buf, size_t n)
{
    const char *op = "kiln_comm_allreduce_sum_f64";
    kiln_status st = check(c, op, buf, n);
    return st ? st : c->ops->allreduce_sum(c, op, buf, n, KILN__COMM_F64);
}

kiln_status kiln_comm_iallreduce_sum_f32(kiln_comm *c, float *buf, size_t n, kiln_comm_req **req)
{
    const char *op = "kiln_comm_iallreduce_sum_f32";
    if (!req) return kiln__err(KILN_STATUS_INVALID, "%s: req NULL", op);
    *req = NULL;
    kiln_status st = check(c, op, buf, n);
    if (st) return st;
    kiln_comm_req *r = NULL;
    for (int i = 0; i < KILN_COMM_MAX_REQS && !r; i++)
        if (!c->reqs[i].busy) r = &c->reqs[i];
    if (!r)
        return kiln__err(KILN_STATUS_STATE, "%s: %d requests already in flight (wait for one first)", op,
                         KILN_COMM_MAX_REQS);
    r->owner = c;
    st = c->ops->iallreduce_sum_f32(c, op, buf, n, r);
    if (st) return st;
    r->busy = true;
    *req = r;
    return KILN_STATUS_OK;
}

/* req is a request in flight on c. */
static kiln_status req_check(kiln_comm *c, const char *op, const kiln_comm_req *req)
{
    if (!c) return kiln__err(KILN_STATUS_INVALID, "%s: no communicator (NULL)", op);
    if (!req) return kiln__err(KILN_STATUS_INVALID, "%s: req NULL", op);
    if (req->owner != c || req < c->reqs || req >= c->reqs + KILN_COMM_MAX_REQS || !req->busy)
        return kiln__err(KILN_STATUS_INVALID, "%s: not a request in flight on this communicator", op);
    return KILN_STATUS_OK;
}

static kiln_status broken_err(kiln_comm *c, const char *op)
{
    return kiln__err(KILN_STATUS_STATE, "%s: rank %d: the communicator failed earlier (%s)", op, c->rank,
                     c->broken_msg);
}

kiln_status kiln_comm_wait(kiln_comm *c, kiln_comm_req *req)
{
    const char *op = "kiln_comm_wait";
    kiln_status st = req_check(c, op, req);
    if (st) return st;
    /* a broken communicator's requests are given back without waiting: nothing will finish */
    st = c->broken ? broken_err(c, op) : c->ops->wait(c, op, req);
    req->busy = false;
    return st;
}

kiln_status kiln_comm_test(kiln_comm *c, kiln_comm_req *req, bool *done)
{
    const char *op = "kiln_comm_test";
    if (!done) return kiln__err(KILN_STATUS_INVALID, "%s: done NULL", op);
    *done = false;
    kiln_status st = req_check(c, op, req);
    if (st) return st;
    return c->broken ? broken_err(c, op) : c->ops->test(c, op, req, done);
}

/* The gathers' common part: checks, the offsets, a receiving rank's own part put in place. */
static kiln_status gatherv(kiln_comm *c, const char *op, const float *mine, float *all, const size_t *counts, int root)
{
    kiln_status st = check(c, op, NULL, 0);
    if (st) return st;
    if (!counts) return kiln__err(KILN_STATUS_INVALID, "%s: counts NULL", op);
    if (root < -1 || root >= c->size)
        return kiln__err(KILN_STATUS_INVALID, "%s: root %d: want 0 to %d", op, root, c->size - 1);
    size_t small[16], *displs = c->size <= 16 ? small : malloc((size_t)c->size * sizeof *displs), total = 0;
    if (!displs) return kiln__err(KILN_STATUS_NOMEM, "%s: out of memory", op);
    for (int r = 0; r < c->size; r++) {
        displs[r] = total;
        total += counts[r];
    }
    bool recv = root == -1 || root == c->rank;
    size_t n = counts[c->rank];
    if (n && !mine) st = kiln__err(KILN_STATUS_INVALID, "%s: rank %d: mine NULL with %zu elements", op, c->rank, n);
    else if (recv && total && !all) st = kiln__err(KILN_STATUS_INVALID, "%s: rank %d: all NULL", op, c->rank);
    if (!st) {
        if (recv && n && mine != all + displs[c->rank]) memmove(all + displs[c->rank], mine, n * sizeof *mine);
        st = c->ops->gatherv_f32(c, op, mine, all, counts, displs, total, root);
    }
    if (displs != small) free(displs);
    return st;
}

kiln_status kiln_comm_allgatherv_f32(kiln_comm *c, const float *mine, float *all, const size_t *counts)
{
    return gatherv(c, "kiln_comm_allgatherv_f32", mine, all, counts, -1);
}

kiln_status kiln_comm_gatherv_f32(kiln_comm *c, const float *mine, float *all, const size_t *counts, int root)
{
    const char *op = "kiln_comm_gatherv_f32";
    if (c && (root < 0 || root >= c->size))
        return kiln__err(KILN_STATUS_INVALID, "%s: root %d: want 0 to %d", op, root, c->size - 1);
    return gatherv(c, op, mine, all, counts, root);
}

kiln_status kiln_comm_bcast(kiln_comm *c, void *buf, size_t bytes, int root)
{
    const char *op = "kiln_comm_bcast";
    kiln_status st = check(c, op, buf, bytes);
    if (st) return st;
    if (root < 0 || root >= c->size)
        return kiln__err(KILN_STATUS_INVALID, "%s: root %d: want 0 to %d", op, root, c->size - 1);
    return c->ops->bcast(c, op, buf, bytes, root);
}

kiln_status kiln_comm_barrier(kiln_comm *c)
{
    const char *op = "kiln_comm_barrier";
    kiln_status st = check(c, op, NULL, 0);
    return st ? st : c->ops->barrier(c, op);
}

kiln_status kiln_comm_agree(kiln_comm *c, kiln_status st)
{
    const char *op = "kiln_comm_agree";
    if (st > 0) st = KILN_STATUS_INVALID; /* not a status: as kiln_error takes OK */
    kiln_status cst = check(c, op, NULL, 0);
    if (cst) return cst;
    char msg[KILN_COMM_MSG_BYTES];
    snprintf(msg, sizeof msg, "%s", st && kiln__has_error() ? kiln_last_error() : kiln_status_name(st));
    kiln_status worst = KILN_STATUS_OK;
    int first = 0;
    cst = c->ops->agree(c, op, st, msg, &worst, &first);
    if (cst) return cst;
    if (worst == KILN_STATUS_OK) return KILN_STATUS_OK;
    if (st == KILN_STATUS_OK) /* a failing rank keeps its own message */
        return kiln__err(worst, "rank %d of %d failed: %s", first, c->size, msg);
    if (!kiln__has_error()) return kiln__err(worst, "%s", msg);
    return worst;
}

void kiln_comm_abort(kiln_comm *c, const char *why)
{
    if (!c) return;
    c->ops->abort(c, why ? why : "aborted");
}
