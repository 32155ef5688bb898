/* ZeRO-1 in the learner (include/kiln/learn.h, kiln_learner_set_dist_zero): with N > 1 ranks
 * rank r owns the flat parameter range [b_r, b_r+1) (b_r = r*P/N rounded down to 16 floats, so
 * a range starts on a 64-byte line; b_N = P), its optimizer keeps the state of that range only
 * (kiln_optim_set_shard) and steps it from the averaged gradients, then every rank's range goes
 * to every rank (kiln_comm_allgatherv_f32), so the weights are the plain data-parallel run's bit
 * for bit: the update is elementwise, with the same scalars on every rank. Gradients and
 * weights stay whole, so clipping and the divergence checks see what they saw. A checkpoint
 * gathers the whole state to rank 0, which writes the plain layout and then drops what is not
 * its own (so rank 0 holds the whole state while it writes); a resume reads each rank's range
 * from the whole file (kiln_optim_load_st). */
#include "learn_internal.h"
#include "kiln/dist.h"

#include <stdlib.h>

kiln_status kiln_learner_set_dist_zero(kiln_learner *l, bool on)
{
    if (!l) return kiln__err(KILN_STATUS_INVALID, "learner_set_dist_zero: learner is NULL");
    if (l->in_fit) return kiln__err(KILN_STATUS_STATE, "learner_set_dist_zero: not during a fit");
    l->dist_zero = on;
    return KILN_STATUS_OK;
}

bool kiln_learner_dist_zero(const kiln_learner *l) { return l && l->dist_zero; }
double kiln_learner_dist_zero_seconds(const kiln_learner *l) { return l ? l->zero_seconds : 0; }

/* Rank r's range of the P parameter elements: [bound(r), bound(r + 1)). */
static size_t bound(size_t P, int r, int N)
{
    if (r >= N) return P;
    size_t n = (size_t)N, q = P / n, m = P % n; /* floor(P * r / N) without overflow */
    size_t b = (q * (size_t)r + m * (size_t)r / n) & ~(size_t)15;
    return b < P ? b : P;
}

/* counts[r]: rank r's elements (size entries). */
static size_t *range_counts(kiln_learner *l, size_t P)
{
    int N = kiln_comm_size(l->comm);
    size_t *counts = malloc((size_t)N * sizeof *counts);
    if (!counts) return kiln__errp(KILN_STATUS_NOMEM, "learner: ZeRO ranges: out of memory");
    for (int r = 0; r < N; r++) counts[r] = bound(P, r + 1, N) - bound(P, r, N);
    return counts;
}

/* The optimizer holds this rank's range (not one of another world size, say). */
static kiln_status check_range(kiln_learner *l)
{
    size_t P = kiln_optim_numel(l->opt), lo, hi;
    kiln_optim_shard(l->opt, &lo, &hi);
    int r = kiln_comm_rank(l->comm), N = kiln_comm_size(l->comm);
    if (lo == bound(P, r, N) && hi == bound(P, r + 1, N)) return KILN_STATUS_OK;
    return kiln__err(KILN_STATUS_STATE, "learner: ZeRO: rank %d's optimizer holds elements [%zu, %zu) of %zu, not "
                     "its range of %d ranks", r, lo, hi, P, N);
}

/* Every f32 state buffer of the optimizer, whole, to root (-1: every rank). The optimizer holds
 * this rank's range; on a receiving rank it is made whole first (its range kept in place). */
static kiln_status gather_state(kiln_learner *l, int root)
{
    size_t P = kiln_optim_numel(l->opt), lo;
    kiln_optim_shard(l->opt, &lo, NULL);
    kiln_status st = check_range(l);
    if (st) return st;
    size_t *counts = range_counts(l, P);
    if (!counts) return KILN_STATUS_NOMEM;
    int rank = kiln_comm_rank(l->comm);
    bool recv = root < 0 || root == rank;
    if (!st && recv) st = kiln_optim_set_shard(l->opt, 0, P);
    for (size_t i = 0; !st && i < kiln_optim_state_count(l->opt); i++) {
        kiln_optim_state e;
        if ((st = kiln_optim_state_at(l->opt, i, &e)) || e.dtype != KILN_DTYPE_F32) continue; /* steps: alike */
        float *d = e.data;
        st = root < 0 ? kiln_comm_allgatherv_f32(l->comm, d + lo, d, counts)
                      : kiln_comm_gatherv_f32(l->comm, recv ? d + lo : d, recv ? d : NULL, counts, root);
    }
    free(counts);
    return st;
}

kiln_status kiln__zero_fit_begin(kiln_learner *l)
{
    l->zero_on = false;
    bool dist = kiln__dist_on(l);
    if (kiln_optim_shard(l->opt, NULL, NULL)) { /* left sharded by a ZeRO fit: its range, whole without ZeRO */
        kiln_status st = !dist ? kiln__err(KILN_STATUS_STATE, "learner: the optimizer holds a part of its state "
                                           "(ZeRO-1 over ranks that are gone): train with the ranks again")
                       : l->dist_zero ? check_range(l)
                                      : gather_state(l, -1);
        if (st) return st;
    }
    if (!dist || !l->dist_zero) return KILN_STATUS_OK;
    size_t P = kiln_optim_numel(l->opt);
    int r = kiln_comm_rank(l->comm), N = kiln_comm_size(l->comm);
    kiln_status st = kiln_optim_set_shard(l->opt, bound(P, r, N), bound(P, r + 1, N));
    l->zero_on = !st;
    return st;
}

kiln_status kiln__zero_after_step(kiln_learner *l)
{
    if (!l->zero_on) return KILN_STATUS_OK;
    double t0 = kiln__now();
    size_t P = 0, lo;
    float *p = kiln_store_flat(kiln_model_store(l->model), KILN_STORE_PARAMS, &P);
    kiln_optim_shard(l->opt, &lo, NULL);
    size_t *counts = range_counts(l, P);
    if (!counts) return KILN_STATUS_NOMEM;
    kiln_status st = kiln_comm_allgatherv_f32(l->comm, p + lo, p, counts);
    free(counts);
    l->zero_seconds += kiln__now() - t0;
    l->dist_seconds += kiln__now() - t0;
    return st;
}

kiln_status kiln__zero_gather(kiln_learner *l)
{
    return l->zero_on && kiln__dist_on(l) ? gather_state(l, 0) : KILN_STATUS_OK;
}

kiln_status kiln__zero_reshard(kiln_learner *l)
{
    if (!l->zero_on || !kiln__dist_on(l) || kiln_comm_rank(l->comm) != 0) return KILN_STATUS_OK;
    size_t P = kiln_optim_numel(l->opt);
    return kiln_optim_set_shard(l->opt, 0, bound(P, 1, kiln_comm_size(l->comm)));
}
