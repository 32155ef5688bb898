/* Data-parallel training in the learner (issue 13, include/kiln/learn.h "data-parallel"): with
 * a communicator of N > 1 ranks every rank runs the same fit on its shard of each batch, and
 *   - after backward the trainable gradients are summed over ranks and scaled by 1/N, in
 *     buckets of at most KILN__DIST_BUCKET floats of the flat gradient buffer, each started
 *     (kiln_comm_iallreduce_sum_f32) as soon as the walk over the store has formed it and
 *     scaled as soon as its sum is back, so bucket k's scaling runs while later buckets are
 *     still being summed. The sums start after backward has finished: no overlap with
 *     backward itself (DDP's per-bucket hooks), which the tape's one-pass kiln_backward has
 *     no place for yet. Frozen parameters (requires_grad off) are not sent;
 *   - the recorded loss is the mean over ranks (one f64 sum per step, which also carries
 *     whether any rank's loss check failed, so the whole step's verdict is agreed);
 *   - validation sums the loss, the item count and every metric accumulator over ranks
 *     before the values are computed (kiln__dist_reduce_valid);
 *   - rank r > 0 draws dropout from its own Philox stream: seed mixed with r, so a run is
 *     reproducible for a given N and the ranks' masks are independent.
 * Every rank takes the same optimizer step from the same averaged gradients, so weights stay
 * equal; fit start broadcasts rank 0's parameters and buffers so different inits cannot
 * diverge. */
#include "learn_internal.h"
#include "core/rowset.h"
#include "kiln/dist.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

enum { KILN__DIST_BUCKET = 1 << 20, KILN__DIST_INFLIGHT = 48 }; /* 4 MiB of f32; under dist.h's 64 */

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
    l->dist_seconds = 0, l->dist_steps = 0;
    if (!kiln__dist_on(l)) return KILN_STATUS_OK;
    if (kiln_comm_rank(c) != 0) kiln_learner_set_progress(l, KILN_PROGRESS_STYLE_QUIET);
    kiln__dist_rank_rng(l);
    return KILN_STATUS_OK;
}

kiln_comm *kiln_learner_comm(const kiln_learner *l) { return l ? l->comm : NULL; }
int kiln_learner_rank(const kiln_learner *l) { return l ? kiln_comm_rank(l->comm) : 0; }
int kiln_learner_world(const kiln_learner *l) { return l ? kiln_comm_size(l->comm) : 1; }

void kiln_learner_dist_stats(const kiln_learner *l, double *seconds, int64_t *steps)
{
    if (seconds) *seconds = l ? l->dist_seconds : 0;
    if (steps) *steps = l ? l->dist_steps : 0;
}

kiln_status kiln__dist_fit_begin(kiln_learner *l)
{
    if (!kiln__dist_on(l)) return KILN_STATUS_OK;
    kiln_store *s = kiln_model_store(l->model);
    size_t np = 0, nb = 0;
    float *p = kiln_store_flat(s, KILN_STORE_PARAMS, &np), *b = kiln_store_flat(s, KILN_STORE_BUFFERS, &nb);
    kiln_status st = np ? kiln_comm_bcast(l->comm, p, np * sizeof *p, 0) : KILN_STATUS_OK;
    if (!st && nb) st = kiln_comm_bcast(l->comm, b, nb * sizeof *b, 0);
    return st;
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

/* Sum one bucket and, when `wait`, the oldest outstanding ones (scaled after their wait). */
typedef struct bucket {
    float *p;
    size_t n;
    kiln_comm_req *req;
} bucket;

static kiln_status finish(kiln_learner *l, bucket *b, float scale)
{
    kiln_status st = kiln_comm_wait(l->comm, b->req);
    b->req = NULL;
    if (st) return st;
    for (size_t i = 0; i < b->n; i++) b->p[i] *= scale;
    return KILN_STATUS_OK;
}

kiln_status kiln__dist_grads(kiln_learner *l, kiln_status st)
{
    if (!kiln__dist_on(l)) return st;
    double t0 = kiln__now();
    /* the step's verdict first (a failed backward on one rank would leave the others waiting) */
    if ((st = kiln_comm_agree(l->comm, st))) return st;
    kiln_store *s = kiln_model_store(l->model);
    float scale = 1.0f / (float)kiln_comm_size(l->comm);
    bucket q[KILN__DIST_INFLIGHT];
    int head = 0, n_q = 0;
    float *run = NULL; /* the bucket being formed: [run, run + run_n) */
    size_t run_n = 0, cnt = kiln_store_count(s);
    for (size_t i = 0; i <= cnt && !st; i++) {
        kiln_tensor *t = i < cnt ? kiln_store_at(s, i) : NULL;
        bool take = t && kiln_store_is_param(s, i) && t->requires_grad && t->grad;
        float *g = take ? (float *)t->grad->data : NULL;
        size_t n = take ? (size_t)kiln_numel(t) : 0;
        if (take && t->rows) t->rows->all = true; /* the sum reaches rows other ranks touched */
        bool extend = take && run && g == run + run_n && run_n + n <= KILN__DIST_BUCKET;
        if (extend) {
            run_n += n;
            continue;
        }
        if (run && run_n) { /* send the formed bucket */
            if (n_q == KILN__DIST_INFLIGHT) {
                st = finish(l, &q[head], scale);
                head = (head + 1) % KILN__DIST_INFLIGHT, n_q--;
                if (st) break;
            }
            bucket *b = &q[(head + n_q) % KILN__DIST_INFLIGHT];
            b->p = run, b->n = run_n;
            if ((st = kiln_comm_iallreduce_sum_f32(l->comm, run, run_n, &b->req))) break;
            n_q++;
        }
        run = g, run_n = n;
    }
    for (; n_q > 0; n_q--, head = (head + 1) % KILN__DIST_INFLIGHT) {
        kiln_status s2 = finish(l, &q[head], scale);
        if (!st) st = s2;
    }
    l->dist_seconds += kiln__now() - t0;
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
