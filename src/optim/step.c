/* The optimizer step (one f32 loop per parameter over flat buffers, on the optimizer's
 * threads for big ones: src/core/parallel.h; the element loops are in step_loops.c), the
 * sparse (lazy) Adam step over the rows an embedding's gradient reached, zero_grad and
 * gradient clipping by global norm.
 *
 * The loops repeat PyTorch 1.13's single-tensor SGD / Adam / AdamW operation for operation:
 * scalars are formed in double as Python forms them, then rounded to f32 where PyTorch's
 * kernels round them (alpha of add_, value of addcmul_/addcdiv_, the mul_ factor), and the
 * f32 expressions keep PyTorch's order (a + alpha*b, a + value*t1*t2, a + value*t1/t2). The
 * build is ISO C (no FMA contraction), so only PyTorch's own vectorised FMAs differ, by an
 * ulp. Every element is independent, so results do not depend on the thread count. */
#include "core/parallel.h"
#include "core/rowset.h"
#include "optim/optim_internal.h"

#include <math.h>
#include <string.h>


/* Runs of RUN elements (a multiple of every vector width) spread over the optimizer's threads. */
#define RUN 4096

static void sgd_loop(int nt, float *p, const float *g, float *buf, int64_t n, const kiln__sgd_h *h)
{
    const int team = kiln__par_team(nt, n);
    if (team == 1) { /* no parallel region for a small parameter */
        kiln__sgd_run(p, g, buf, n, h);
        return;
    }
    const int64_t runs = (n + RUN - 1) / RUN;
    KILN_PAR_FOR_N(team)
    for (int64_t r = 0; r < runs; r++) {
        const int64_t lo = r * RUN, len = n - lo < RUN ? n - lo : RUN;
        kiln__sgd_run(p + lo, g + lo, buf + lo, len, h);
    }
}

static void adam_loop(int nt, float *p, const float *g, float *m, float *v, int64_t n, const kiln__adam_h *h)
{
    const int team = kiln__par_team(nt, n);
    if (team == 1) { /* no parallel region for a small parameter */
        kiln__adam_run(p, g, m, v, n, h);
        return;
    }
    const int64_t runs = (n + RUN - 1) / RUN;
    KILN_PAR_FOR_N(team)
    for (int64_t r = 0; r < runs; r++) {
        const int64_t lo = r * RUN, len = n - lo < RUN ? n - lo : RUN;
        kiln__adam_run(p + lo, g + lo, m + lo, v + lo, len, h);
    }
}

/* The sparse step's loop: the same update on the rows listed in r only (each row is a
 * contiguous run of r->row_len elements; rows are independent, so any order or split). */
static void adam_rows(int nt, float *p, const float *g, float *m, float *v, const kiln__rowset *r,
                      const kiln__adam_h *h)
{
    const int64_t len = r->row_len, nr = r->n;
    const int64_t *list = r->list;
    const int team = kiln__par_team(nt, nr * len);
    if (team == 1) {
        for (int64_t k = 0; k < nr; k++) {
            const int64_t o = list[k] * len;
            kiln__adam_run(p + o, g + o, m + o, v + o, len, h);
        }
        return;
    }
    KILN_PAR_FOR_N(team)
    for (int64_t k = 0; k < nr; k++) {
        const int64_t o = list[k] * len;
        kiln__adam_run(p + o, g + o, m + o, v + o, len, h);
    }
}

/* The part [*a, *b) of parameter i's elements in the params buffer that the state holds (the
 * whole parameter unless sharded, kiln_optim_set_shard); false when it holds none. */
static bool owned(const kiln_optim *opt, size_t i, size_t *a, size_t *b)
{
    size_t lo = opt->off[i], hi = lo + opt->len[i];
    *a = lo > opt->lo ? lo : opt->lo, *b = hi < opt->hi ? hi : opt->hi;
    return *a < *b;
}

/* The weight decay a parameter gets from its group. */
static double param_wd(const kiln_optim *opt, size_t i, const kiln_optim_group *grp)
{
    return (opt->no_wd[i] && !opt->bn_bias_wd) ? 0.0 : grp->wd;
}

static void sgd_param(kiln_optim *opt, size_t i, const kiln_optim_group *grp)
{
    double lr = grp->lr, wd = param_wd(opt, i, grp), mom = grp->mom;
    kiln__sgd_h h = {
        .neg_lr = (float)-lr,
        .decay = (float)(1.0 - lr * wd),
        .l2 = (float)wd,
        .mom = (float)mom,
        .damp1 = (float)(1.0 - opt->dampening),
        .decoupled = opt->decoupled_wd,
        .use_l2 = !opt->decoupled_wd && wd != 0,
        .use_mom = mom != 0,
        .first = opt->step[i] == 0,
        .nesterov = opt->nesterov,
    };
    size_t a, b; /* a sharded optimizer updates its part; the step count is every rank's */
    if (owned(opt, i, &a, &b))
        sgd_loop(opt->n_threads, opt->params + a, opt->grads + a, opt->state[0] + (a - opt->lo), (int64_t)(b - a), &h);
    if (h.use_mom) opt->step[i]++;
}

static void adam_param(kiln_optim *opt, size_t i, const kiln_optim_group *grp)
{
    double lr = grp->lr, wd = param_wd(opt, i, grp), b1 = grp->mom, b2 = opt->beta2;
    double t = (double)++opt->step[i];
    double bc1 = 1.0 - pow(b1, t), bc2 = 1.0 - pow(b2, t);
    kiln__adam_h h = {
        .decay = (float)(1.0 - lr * wd),
        .l2 = (float)wd,
        .b1 = (float)b1,
        .omb1 = (float)(1.0 - b1),
        .b2 = (float)b2,
        .omb2 = (float)(1.0 - b2),
        .bc2_sqrt = (float)sqrt(bc2),
        .eps = (float)opt->eps,
        .neg_step = (float)-(lr / bc1),
        .decoupled = opt->decoupled_wd,
        .use_l2 = !opt->decoupled_wd && wd != 0,
    };
    size_t o = opt->off[i], a, b;
    const kiln__rowset *r = opt->sparse[i] ? opt->t[i]->rows : NULL; /* never on a sharded optimizer */
    if (r && !r->all)
        adam_rows(opt->n_threads, opt->params + o, opt->grads + o, opt->state[0] + o, opt->state[1] + o, r, &h);
    else if (owned(opt, i, &a, &b)) /* a sharded optimizer updates its part; t is every rank's */
        adam_loop(opt->n_threads, opt->params + a, opt->grads + a, opt->state[0] + (a - opt->lo),
                  opt->state[1] + (a - opt->lo), (int64_t)(b - a), &h);
}

kiln_status kiln_optim_set_threads(kiln_optim *opt, int n)
{
    if (!opt) return kiln__err(KILN_STATUS_INVALID, "optim: optimizer is NULL");
    if (n < 0) return kiln__err(KILN_STATUS_INVALID, "optim: thread count %d < 0", n);
    opt->n_threads = n ? n : kiln__default_threads();
    return KILN_STATUS_OK;
}

int kiln_optim_threads(const kiln_optim *opt) { return opt ? opt->n_threads : 0; }

kiln_status kiln_optim_step(kiln_optim *opt)
{
    if (!opt) return kiln__err(KILN_STATUS_INVALID, "optim: optimizer is NULL");
    for (size_t i = 0; i < opt->n; i++) {
        kiln_tensor *t = opt->t[i];
        if (!t || !t->requires_grad || !opt->len[i]) continue;
        const kiln_optim_group *grp = &opt->groups[opt->group[i]];
        if (grp->frozen) continue;
        if (opt->kind == KILN_OPTIM_KIND_SGD)
            sgd_param(opt, i, grp);
        else
            adam_param(opt, i, grp);
    }
    return KILN_STATUS_OK;
}

void kiln_optim_zero_grad(kiln_optim *opt)
{
    if (!opt) return;
    /* sparse parameters: only the rows their gradient reached (all of them after a dense
     * gradient), and the list starts again; the runs below skip them */
    for (size_t i = 0; i < opt->n; i++) {
        const kiln_tensor *t = opt->t[i];
        if (t && opt->sparse[i] && t->requires_grad && t->rows) kiln__rowset_zero(t->rows, opt->grads + opt->off[i]);
    }
    /* runs of adjacent trainable parameters, one memset each: a frozen body's grads are
     * neither computed nor touched (its grad slices keep what they hold) */
    size_t lo = 0, hi = 0; /* the current run [lo, hi) in the grads buffer */
    for (size_t i = 0; i <= opt->n; i++) {
        const kiln_tensor *t = i < opt->n ? opt->t[i] : NULL;
        bool on = t && t->requires_grad && opt->len[i] && !opt->sparse[i];
        if (on && opt->off[i] == hi) {
            hi += opt->len[i];
            continue;
        }
        if (hi > lo) memset(opt->grads + lo, 0, (hi - lo) * sizeof(float));
        lo = hi = on ? opt->off[i] : 0;
        if (on) hi += opt->len[i];
    }
}

/* ---- clipping ---------------------------------------------------------------------------- */

/* Sum of squares of g[lo, hi) in double. */
static double sum_sq_chunk(void *arg, int64_t lo, int64_t hi)
{
    const float *g = arg;
    int64_t j = lo;
    double a0 = 0, a1 = 0, a2 = 0, a3 = 0;
    for (; j + 4 <= hi; j += 4) {
        a0 += (double)g[j] * g[j];
        a1 += (double)g[j + 1] * g[j + 1];
        a2 += (double)g[j + 2] * g[j + 2];
        a3 += (double)g[j + 3] * g[j + 3];
    }
    for (; j < hi; j++) a0 += (double)g[j] * g[j];
    return (a0 + a1) + (a2 + a3);
}

/* Sum of squares over fixed chunks (kiln__par_sum; cost 2: squares in double): the same
 * bits for any thread count. */
static double sum_sq(int nt, const float *g, size_t n)
{
    return kiln__par_sum(nt, (int64_t)n, 16384, 2, sum_sq_chunk, (void *)g);
}

static void scale(int nt, float *g, int64_t n, float c)
{
    KILN_PAR_FOR_N(kiln__par_team(nt, n))
    for (int64_t i = 0; i < n; i++) g[i] = g[i] * c;
}

kiln_status kiln_clip_grad_norm(kiln_store *s, double max_norm, double *total_norm)
{
    if (!s) return kiln__err(KILN_STATUS_INVALID, "clip_grad_norm: store is NULL");
    if (!(max_norm > 0)) return kiln__err(KILN_STATUS_INVALID, "clip_grad_norm: max_norm %g must be > 0", max_norm);
    if (!kiln_store_flat(s, KILN_STORE_GRADS, NULL))
        return kiln__err(KILN_STATUS_STATE, "clip_grad_norm: the store is not allocated");
    const int nt = kiln__default_threads(); /* no context or optimizer here: the default count */
    size_t n = kiln_store_count(s);
    double ss = 0;
    for (size_t i = 0; i < n; i++) {
        kiln_tensor *t = kiln_store_at(s, i);
        if (kiln_store_is_param(s, i) && t->requires_grad && t->grad)
            ss += sum_sq(nt, t->grad->data, (size_t)kiln_numel(t));
    }
    double norm = sqrt(ss);
    if (total_norm) *total_norm = norm;
    double coef = max_norm / (norm + 1e-6);
    if (coef >= 1.0) return KILN_STATUS_OK; /* NaN falls through: PyTorch's clamp keeps it */
    for (size_t i = 0; i < n; i++) {
        kiln_tensor *t = kiln_store_at(s, i);
        if (kiln_store_is_param(s, i) && t->requires_grad && t->grad)
            scale(nt, t->grad->data, kiln_numel(t), (float)coef);
    }
    return KILN_STATUS_OK;
}
