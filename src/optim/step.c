/* The optimizer step (one f32 loop per parameter over flat buffers, on the optimizer's
 * threads for big ones: src/core/parallel.h), zero_grad and gradient clipping by global
 * norm.
 *
 * The loops repeat PyTorch 1.13's single-tensor SGD / Adam / AdamW operation for operation:
 * scalars are formed in double as Python forms them, then rounded to f32 where PyTorch's
 * kernels round them (alpha of add_, value of addcmul_/addcdiv_, the mul_ factor), and the
 * f32 expressions keep PyTorch's order (a + alpha*b, a + value*t1*t2, a + value*t1/t2). The
 * build is ISO C (no FMA contraction), so only PyTorch's own vectorised FMAs differ, by an
 * ulp. Every element is independent, so results do not depend on the thread count. */
#include "core/parallel.h"
#include "optim/optim_internal.h"

#include <math.h>
#include <string.h>


typedef struct sgd_h {
    float neg_lr;   /* -lr */
    float decay;    /* 1 - lr*wd (decoupled) */
    float l2;       /* wd (coupled) */
    float mom;      /* momentum */
    float damp1;    /* 1 - dampening */
    bool decoupled, use_l2, use_mom, first, nesterov;
} sgd_h;

static void sgd_loop(int nt, float *restrict p, const float *restrict g, float *restrict buf, int64_t n, sgd_h h)
{
    KILN_PAR_FOR_N(kiln__par_team(nt, n))
    for (int64_t i = 0; i < n; i++) {
        float pi = p[i], d = g[i];
        if (h.decoupled) pi = pi * h.decay;
        if (h.use_l2) d = d + h.l2 * pi;
        if (h.use_mom) {
            float b = h.first ? d : buf[i] * h.mom + h.damp1 * d;
            buf[i] = b;
            d = h.nesterov ? d + h.mom * b : b;
        }
        p[i] = pi + h.neg_lr * d;
    }
}

typedef struct adam_h {
    float decay;        /* 1 - lr*wd (decoupled) */
    float l2;           /* wd (coupled) */
    float b1, omb1;     /* beta1, 1 - beta1 */
    float b2, omb2;     /* beta2, 1 - beta2 */
    float bc2_sqrt;     /* sqrt(1 - beta2^t) */
    float eps;
    float neg_step;     /* -lr / (1 - beta1^t) */
    bool decoupled, use_l2;
} adam_h;

static void adam_loop(int nt, float *restrict p, const float *restrict g, float *restrict m, float *restrict v,
                      int64_t n, adam_h h)
{
    KILN_PAR_FOR_N(kiln__par_team(nt, n))
    for (int64_t i = 0; i < n; i++) {
        float pi = p[i], d = g[i];
        if (h.decoupled) pi = pi * h.decay;
        if (h.use_l2) d = d + h.l2 * pi;
        float mi = m[i] * h.b1 + h.omb1 * d;
        float vi = v[i] * h.b2 + h.omb2 * d * d;
        m[i] = mi;
        v[i] = vi;
        float denom = sqrtf(vi) / h.bc2_sqrt + h.eps;
        p[i] = pi + h.neg_step * mi / denom;
    }
}

/* The weight decay a parameter gets from its group. */
static double param_wd(const kiln_optim *opt, size_t i, const kiln_optim_group *grp)
{
    return (opt->no_wd[i] && !opt->bn_bias_wd) ? 0.0 : grp->wd;
}

static void sgd_param(kiln_optim *opt, size_t i, const kiln_optim_group *grp)
{
    double lr = grp->lr, wd = param_wd(opt, i, grp), mom = grp->mom;
    sgd_h h = {
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
    size_t o = opt->off[i];
    sgd_loop(opt->n_threads, opt->params + o, opt->grads + o, opt->state[0] + o, (int64_t)opt->len[i], h);
    if (h.use_mom) opt->step[i]++;
}

static void adam_param(kiln_optim *opt, size_t i, const kiln_optim_group *grp)
{
    double lr = grp->lr, wd = param_wd(opt, i, grp), b1 = grp->mom, b2 = opt->beta2;
    double t = (double)++opt->step[i];
    double bc1 = 1.0 - pow(b1, t), bc2 = 1.0 - pow(b2, t);
    adam_h h = {
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
    size_t o = opt->off[i];
    adam_loop(opt->n_threads, opt->params + o, opt->grads + o, opt->state[0] + o, opt->state[1] + o,
              (int64_t)opt->len[i], h);
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
    /* runs of adjacent trainable parameters, one memset each: a frozen body's grads are
     * neither computed nor touched (its grad slices keep what they hold) */
    size_t lo = 0, hi = 0; /* the current run [lo, hi) in the grads buffer */
    for (size_t i = 0; i <= opt->n; i++) {
        const kiln_tensor *t = i < opt->n ? opt->t[i] : NULL;
        bool on = t && t->requires_grad && opt->len[i];
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
