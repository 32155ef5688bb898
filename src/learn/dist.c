/* Data-parallel training in the learner (issue 13, include/kiln/learn.h "data-parallel"): with
 * a communicator of N > 1 ranks every rank runs the same fit on its shard of each batch, and
 *   - the trainable gradients are summed over ranks and scaled by 1/N in buckets of at most
 *     dist_bucket_floats of the flat gradient buffer, formed in reverse store order (the order
 *     backward finishes them). kiln_backward's leaf hook (autograd.h) counts each bucket's
 *     finished parameters, and a bucket's non-blocking sum (kiln_comm_iallreduce_sum_f32)
 *     starts as soon as it and every bucket before it are complete, so the sums overlap the
 *     rest of backward as DDP's do; the node hook tests the oldest sum in flight (Open MPI moves
 *     data only inside MPI calls) and scales those done. After backward the rest start, in
 *     order, and are waited for. Frozen parameters (requires_grad off) are not sent;
 *   - the recorded loss is the mean over ranks (one f64 sum per step, which also carries
 *     whether any rank's loss check failed, so the whole step's verdict is agreed);
 *   - validation sums the loss, the item count and every metric accumulator over ranks
 *     before the values are computed (kiln__dist_reduce_valid);
 *   - rank r > 0 draws dropout from its own Philox stream: seed mixed with r, so a run is
 *     reproducible for a given N and the ranks' masks are independent.
 * Every rank takes the same optimizer step from the same averaged gradients, so weights stay
 * equal; fit start broadcasts rank 0's parameters and buffers so different inits cannot
 * diverge. BatchNorm's running statistics follow each rank's own batches during the epoch and
 * are rank 0's on every rank before each validation and at the end of the fit (PyTorch DDP's
 * broadcast_buffers gives every rank rank 0's at each forward: the same values where they are
 * used), so the table, the checkpoint and the saved model are one model's. */
#include "learn_internal.h"
#include "core/rowset.h"
#include "kiln/autograd.h"
#include "kiln/dist.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

enum { KILN__DIST_INFLIGHT = 48 }; /* bucket sums in flight: under dist.h's 64 */

bool kiln__dist_on(const kiln_learner *l) { return l->comm && kiln_comm_size(l->comm) > 1; }

/* splitmix64 of the seed and the rank: rank 0 keeps its stream (a 1-rank run's). */
static uint64_t rank_seed(uint64_t seed, int rank)
{
    if (rank == 0) return seed;
    uint64_t z = seed + 0x9e3779b97f4a7c15ull * (uint64_t)(rank + 1);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    return z ^ (z >> 31);
}

void kiln__dist_rank_rng(kiln_learner *l)
{
    if (!kiln__dist_on(l)) return;
    kiln_rng_state r = kiln_rng_get(l->ctx);
    r.seed = rank_seed(r.seed, kiln_comm_rank(l->comm));
    kiln_rng_set(l->ctx, r);
}

kiln_status kiln_learner_set_comm(kiln_learner *l, kiln_comm *c)
{
    if (!l) return kiln__err(KILN_STATUS_INVALID, "learner_set_comm: learner is NULL");
    if (l->in_fit) return kiln__err(KILN_STATUS_STATE, "learner_set_comm: not during a fit");
    l->comm = c;
    l->dist_seconds = 0, l->dist_steps = 0, l->dist_buckets = l->dist_buckets_early = 0, l->zero_seconds = 0;
    if (!kiln__dist_on(l)) return KILN_STATUS_OK;
    if (kiln_comm_rank(c) != 0) kiln_learner_set_progress(l, KILN_PROGRESS_STYLE_QUIET);
    kiln__dist_rank_rng(l);
    return KILN_STATUS_OK;
}

kiln_comm *kiln_learner_comm(const kiln_learner *l) { return l ? l->comm : NULL; }
int kiln_learner_rank(const kiln_learner *l) { return l ? kiln_comm_rank(l->comm) : 0; }
int kiln_learner_world(const kiln_learner *l) { return l ? kiln_comm_size(l->comm) : 1; }

void kiln_learner_dist_buckets(const kiln_learner *l, int64_t *buckets, int64_t *early)
{
    if (buckets) *buckets = l ? l->dist_buckets : 0;
    if (early) *early = l ? l->dist_buckets_early : 0;
}

kiln_status kiln_learner_set_dist_buckets(kiln_learner *l, size_t bytes, bool overlap)
{
    if (!l) return kiln__err(KILN_STATUS_INVALID, "learner_set_dist_buckets: learner is NULL");
    if (l->in_fit) return kiln__err(KILN_STATUS_STATE, "learner_set_dist_buckets: not during a fit");
    if (bytes < sizeof(float) || bytes % sizeof(float))
        return kiln__err(KILN_STATUS_INVALID, "learner_set_dist_buckets: %zu bytes: want a positive multiple of 4",
                         bytes);
    l->dist_bucket_floats = bytes / sizeof(float), l->dist_overlap = overlap;
    return KILN_STATUS_OK;
}

void kiln_learner_dist_stats(const kiln_learner *l, double *seconds, int64_t *steps)
{
    if (seconds) *seconds = l ? l->dist_seconds : 0;
    if (steps) *steps = l ? l->dist_steps : 0;
}

kiln_status kiln__dist_fit_begin(kiln_learner *l)
{
    if (!kiln__dist_on(l)) return kiln__zero_fit_begin(l);
    kiln_store *s = kiln_model_store(l->model);
    size_t np = 0, nb = 0;
    float *p = kiln_store_flat(s, KILN_STORE_PARAMS, &np), *b = kiln_store_flat(s, KILN_STORE_BUFFERS, &nb);
    kiln_status st = np ? kiln_comm_bcast(l->comm, p, np * sizeof *p, 0) : KILN_STATUS_OK;
    if (!st && nb) st = kiln_comm_bcast(l->comm, b, nb * sizeof *b, 0);
    return st ? st : kiln__zero_fit_begin(l); /* ZeRO-1: this rank's range of the optimizer state */
}

kiln_status kiln__dist_sync_buffers(kiln_learner *l)
{
    if (!kiln__dist_on(l)) return KILN_STATUS_OK;
    size_t nb = 0;
    float *b = kiln_store_flat(kiln_model_store(l->model), KILN_STORE_BUFFERS, &nb);
    return nb ? kiln_comm_bcast(l->comm, b, nb * sizeof *b, 0) : KILN_STATUS_OK;
}

kiln_status kiln__dist_loss(kiln_learner *l, kiln_status st)
{
    if (!kiln__dist_on(l)) return st;
    kiln_fit_state *s = &l->st;
    bool quiet = !st && !s->skip_batch && !s->stop_training;
    double t0 = kiln__now(), v[4] = {quiet ? s->loss_value : 0.0, st ? 1.0 : 0.0, !st && s->skip_batch ? 1.0 : 0.0,
                                 !st && s->stop_training ? 1.0 : 0.0};
    kiln_status cs = kiln_comm_allreduce_sum_f64(l->comm, v, 4);
    if (cs) return cs;
    if (v[1] > 0) st = kiln_comm_agree(l->comm, st); /* every rank sees the same count */
    else if (v[2] > 0 || v[3] > 0) s->skip_batch |= v[2] > 0, s->stop_training |= v[3] > 0;
    else s->loss_value = v[0] / (double)kiln_comm_size(l->comm);
    l->dist_seconds += kiln__now() - t0;
    return st;
}

kiln_status kiln__dist_flags(kiln_learner *l, kiln_status st)
{
    if (!kiln__dist_on(l)) return st;
    kiln_fit_state *s = &l->st;
    double t0 = kiln__now(), v[3] = {st ? 1.0 : 0.0, s->skip_batch ? 1.0 : 0.0, s->stop_training ? 1.0 : 0.0};
    kiln_status cs = kiln_comm_allreduce_sum_f64(l->comm, v, 3);
    if (cs) return cs;
    if (v[0] > 0) st = kiln_comm_agree(l->comm, st); /* the failing rank's message everywhere */
    s->skip_batch |= v[1] > 0, s->stop_training |= v[2] > 0;
    l->dist_seconds += kiln__now() - t0;
    return st;
}

/* ---- the step's gradient sums ------------------------------------------------------------ *
 * The plan of a step: buckets of the trainable gradients in reverse store order (the order
 * backward finishes them: the last layers first), each a run of adjacent gradients in the flat
 * buffer of at most bucket_floats (a gradient larger than that is a bucket of its own), with
 * how many of its parameters backward has finished. Every rank makes the same plan from the
 * same model and starts the sums in bucket order (MPI wants collectives in the same order
 * everywhere, as DDP's reducer does): bucket k starts once it and every bucket before it are
 * ready. */
typedef struct bucket {
    float *p;             /* [p, p + n) of the flat gradient buffer */
    size_t n;
    int n_params, n_ready;
    kiln_comm_req *req;   /* in flight */
} bucket;

typedef struct grad_plan {
    bucket *b;
    int n, next_start, next_done; /* started: [0, next_start); summed and scaled: [0, next_done) */
    float scale;
    double blocked;               /* seconds the hooks spent waiting on a full queue */
} grad_plan;

static kiln_status plan_make(kiln_learner *l, grad_plan *g)
{
    kiln_store *s = kiln_model_store(l->model);
    size_t cnt = kiln_store_count(s), cap = l->dist_bucket_floats;
    memset(g, 0, sizeof *g);
    g->scale = 1.0f / (float)kiln_comm_size(l->comm);
    if (!cnt) return KILN_STATUS_OK;
    g->b = kiln_step_alloc(l->ctx, cnt * sizeof *g->b); /* at most a bucket per parameter */
    if (!g->b) return kiln__err(KILN_STATUS_NOMEM, "learner: data-parallel buckets: out of memory");
    bucket *cur = NULL;
    for (size_t i = cnt; i-- > 0;) {
        kiln_tensor *t = kiln_store_at(s, i);
        if (!kiln_store_is_param(s, i) || !t->requires_grad || !t->grad) continue;
        float *p = t->grad->data;
        size_t n = (size_t)kiln_numel(t);
        if (t->rows) t->rows->all = true; /* the sum reaches rows other ranks touched */
        if (cur && p + n == cur->p && cur->n + n <= cap) {
            cur->p = p, cur->n += n, cur->n_params++;
            continue;
        }
        cur = &g->b[g->n++];
        *cur = (bucket){.p = p, .n = n, .n_params = 1};
    }
    return KILN_STATUS_OK;
}

/* The bucket holding gradient element p: buckets run down the flat buffer, so a binary search. */
static bucket *plan_find(grad_plan *g, const float *p)
{
    int lo = 0, hi = g->n - 1;
    while (lo <= hi) {
        int m = (lo + hi) / 2;
        if (p < g->b[m].p) lo = m + 1;
        else if (p >= g->b[m].p + g->b[m].n) hi = m - 1;
        else return &g->b[m];
    }
    return NULL;
}

/* Waits for the oldest bucket in flight and scales it to the mean. */
static kiln_status finish_one(kiln_learner *l, grad_plan *g)
{
    bucket *b = &g->b[g->next_done++];
    kiln_status st = kiln_comm_wait(l->comm, b->req);
    b->req = NULL;
    if (st) return st;
    for (size_t i = 0; i < b->n; i++) b->p[i] *= g->scale;
    return KILN_STATUS_OK;
}

/* Starts buckets in order up to `upto` (exclusive), finishing the oldest when the queue is full. */
static kiln_status start_upto(kiln_learner *l, grad_plan *g, int upto)
{
    while (g->next_start < upto) {
        if (g->next_start - g->next_done == KILN__DIST_INFLIGHT) {
            double t0 = kiln__now();
            kiln_status st = finish_one(l, g);
            g->blocked += kiln__now() - t0;
            if (st) return st;
        }
        bucket *b = &g->b[g->next_start];
        kiln_status st = kiln_comm_iallreduce_sum_f32(l->comm, b->p, b->n, &b->req);
        if (st) return st;
        g->next_start++;
    }
    return KILN_STATUS_OK;
}

/* kiln_backward's hooks: a finished parameter may complete its bucket, which starts with every
 * ready bucket after it; every node lets MPI move the sums in flight (and scales those done). */
static kiln_status on_leaf_ready(void *user, kiln_tensor *t)
{
    kiln_learner *l = user;
    grad_plan *g = l->dist_plan;
    bucket *b = t->grad ? plan_find(g, t->grad->data) : NULL;
    if (!b || ++b->n_ready < b->n_params) return KILN_STATUS_OK;
    int upto = g->next_start;
    while (upto < g->n && g->b[upto].n_ready == g->b[upto].n_params) upto++;
    return start_upto(l, g, upto);
}

static kiln_status on_tick(void *user)
{
    kiln_learner *l = user;
    grad_plan *g = l->dist_plan;
    while (g->next_done < g->next_start) {
        bool done = false;
        kiln_status st = kiln_comm_test(l->comm, g->b[g->next_done].req, &done);
        if (st || !done) return st;
        if ((st = finish_one(l, g))) return st;
    }
    return KILN_STATUS_OK;
}

kiln_status kiln__dist_backward(kiln_learner *l)
{
    if (!kiln__dist_on(l)) return kiln_backward(l->ctx, l->st.loss);
    grad_plan g;
    kiln_status st = plan_make(l, &g), cs = KILN_STATUS_OK;
    if (!st && l->dist_overlap) {
        l->dist_plan = &g;
        kiln_set_backward_hooks(l->ctx, &(kiln_backward_hooks){.leaf_ready = on_leaf_ready, .tick = on_tick, .user = l});
    }
    if (!st) st = kiln_backward(l->ctx, l->st.loss);
    kiln_set_backward_hooks(l->ctx, NULL);
    l->dist_plan = NULL;
    l->dist_buckets += g.n, l->dist_buckets_early += g.next_start;
    double t0 = kiln__now();
    /* every bucket is summed on every rank, in order, even after a failed backward here (its
     * values are then of no use: the status agreed below stops the step everywhere) */
    if (g.b) {
        kiln_status s2 = start_upto(l, &g, g.n);
        while (!s2 && g.next_done < g.next_start) s2 = finish_one(l, &g);
        if (s2) cs = s2;
    }
    if (cs) return cs; /* the communicator failed: the other ranks' collectives time out */
    st = kiln_comm_agree(l->comm, st);
    l->dist_seconds += kiln__now() - t0 + g.blocked;
    l->dist_steps++;
    return st;
}

kiln_status kiln__dist_reduce_valid(kiln_learner *l, kiln_status st, double *total, int64_t *n, kiln_metric_acc *acc)
{
    if (!kiln__dist_on(l)) return st;
    if ((st = kiln_comm_agree(l->comm, st))) return st;
    size_t len = 2 + 5 * (size_t)l->n_metrics;
    double small[2 + 5 * 8], *v = len <= sizeof small / sizeof *small ? small : malloc(len * sizeof *v);
    if (!v) return kiln__err(KILN_STATUS_NOMEM, "learner_validate: out of memory"); /* (ranks agree next call) */
    v[0] = *total, v[1] = (double)*n;
    for (int j = 0; j < l->n_metrics; j++) {
        memcpy(v + 2 + 5 * j, acc[j].sum, 4 * sizeof(double));
        v[2 + 5 * j + 4] = (double)acc[j].n;
    }
    st = kiln_comm_allreduce_sum_f64(l->comm, v, len);
    if (!st) {
        *total = v[0], *n = (int64_t)v[1];
        for (int j = 0; j < l->n_metrics; j++) {
            memcpy(acc[j].sum, v + 2 + 5 * j, 4 * sizeof(double));
            acc[j].n = (int64_t)v[2 + 5 * j + 4];
        }
    }
    if (v != small) free(v);
    return st;
}
