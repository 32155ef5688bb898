/* Softmax, log-softmax and the losses with their backward: cross-entropy (fused
 * log-softmax + NLL with ignore_index and label smoothing exactly as PyTorch 1.13), mse,
 * l1 and binary cross-entropy with logits. Kernels: ctx->backend->dense (kernels/dense.h).
 *
 * Cross-entropy keeps only the per-position log-sum-exp from the forward; the backward
 * writes softmax - target straight into the logits' gradient in one pass, into fresh
 * uninitialised memory when the logits have no gradient yet (no zero fill, no +=). */
#include "autograd/tape.h"
#include "core/rowset.h"
#include "kernels/dense.h"
#include "kiln/ops.h"

#include <math.h>
#include <string.h>

#define DK(ctx) ((ctx)->backend->dense)

/* ---- softmax / log_softmax ------------------------------------------------------------ */

typedef struct sm_saved {
    int64_t outer, c, inner;
} sm_saved;

/* x viewed as (outer, c, inner) around dim d. */
static void split3(const kiln_tensor *x, int d, int64_t *outer, int64_t *c, int64_t *inner)
{
    *outer = *inner = 1;
    *c = x->ndim ? x->shape[d] : 1;
    for (int i = 0; i < d; i++) *outer *= x->shape[i];
    for (int i = d + 1; i < x->ndim; i++) *inner *= x->shape[i];
}

static kiln_status softmax_bwd_common(kiln_ctx *ctx, kiln_node *nd, bool log)
{
    kiln_tensor *gx = kiln__grad(ctx, nd->in[0]);
    if (!gx) return KILN_STATUS_OK;
    const sm_saved *s = nd->saved;
    DK(ctx)->softmax_bwd(ctx, nd->out[0]->data, nd->out[0]->grad->data, gx->data, s->outer, s->c, s->inner, log);
    return KILN_STATUS_OK;
}
static kiln_status log_softmax_bwd(kiln_ctx *ctx, kiln_node *nd) { return softmax_bwd_common(ctx, nd, true); }
static kiln_status softmax_bwd(kiln_ctx *ctx, kiln_node *nd) { return softmax_bwd_common(ctx, nd, false); }

static kiln_tensor *softmax_common(kiln_ctx *ctx, kiln_tensor *x, int dim, bool log)
{
    const char *op = log ? "log_softmax" : "softmax";
    KILN_IN(x);
    if (kiln__check_f32(op, x, "x") < 0) return NULL;
    int d = kiln__dim(op, dim, x->ndim);
    if (d < 0) return NULL;
    x = kiln_contiguous(ctx, x);
    KILN_IN(x);
    kiln_tensor *y = kiln_empty(ctx, KILN_DTYPE_F32, x->ndim, x->shape); /* x's shape */
    KILN_IN(y);
    sm_saved s;
    split3(x, d, &s.outer, &s.c, &s.inner);
    if (kiln_numel(x) > 0) DK(ctx)->softmax_fwd(ctx, x->data, y->data, s.outer, s.c, s.inner, log);
    kiln_status st;
    kiln_node *n = kiln__record(ctx, op, log ? log_softmax_bwd : softmax_bwd, 1, &x, 1, &y, sizeof s, &st);
    if (st < 0) return NULL;
    if (n) memcpy(n->saved, &s, sizeof s);
    return y;
}

kiln_tensor *kiln_log_softmax(kiln_ctx *ctx, kiln_tensor *x, int dim) { return softmax_common(ctx, x, dim, true); }
kiln_tensor *kiln_softmax(kiln_ctx *ctx, kiln_tensor *x, int dim) { return softmax_common(ctx, x, dim, false); }

/* ---- reductions shared by the losses -------------------------------------------------- */

/* The loss tensor for a reduction, before the kernel runs: shape for NONE, with *elems =
 * its data (the kernel writes the per-element losses there), else a scalar () with *elems
 * = scratch of `scratch` floats (NULL when 0) for kernels that always write them. */
static kiln_tensor *loss_out(kiln_ctx *ctx, kiln_reduction r, int ndim, const int64_t *shape, int64_t scratch,
                             float **elems)
{
    kiln_tensor *y = r == KILN_REDUCTION_NONE ? kiln_empty(ctx, KILN_DTYPE_F32, ndim, shape)
                                               : kiln_empty(ctx, KILN_DTYPE_F32, 0, NULL);
    KILN_IN(y);
    *elems = r == KILN_REDUCTION_NONE ? y->data
             : scratch                 ? kiln_step_alloc(ctx, (size_t)scratch * sizeof(float))
                                       : NULL;
    return scratch && !*elems ? NULL : y;
}

/* A reduced loss's value: the kernel's sum, or sum / count for MEAN (count 0 gives NaN, as
 * PyTorch's mean over nothing). */
static void loss_reduce(kiln_tensor *y, kiln_reduction r, double sum, double count)
{
    if (r != KILN_REDUCTION_NONE) *(float *)y->data = (float)(r == KILN_REDUCTION_MEAN ? sum / count : sum);
}

/* Upstream gradient per element: (pointer, stride) with stride 0 for a reduced loss. */
static const float *reduce_grad(const kiln_tensor *y, kiln_reduction r, double count, float *scalar,
                                int64_t *stride)
{
    const float *gy = y->grad->data;
    if (r == KILN_REDUCTION_NONE) {
        *stride = 1;
        return gy;
    }
    *stride = 0;
    *scalar = r == KILN_REDUCTION_MEAN ? (float)(gy[0] / count) : gy[0];
    return scalar;
}

static int check_reduction(const char *op, kiln_reduction r)
{
    if (r == KILN_REDUCTION_MEAN || r == KILN_REDUCTION_SUM || r == KILN_REDUCTION_NONE) return 0;
    kiln__err(KILN_STATUS_INVALID, "%s: unknown reduction %d", op, (int)r);
    return -1;
}

/* ---- cross_entropy -------------------------------------------------------------------- */

kiln_xent_params kiln_xent_default_params(void)
{
    return (kiln_xent_params){.ignore_index = -100, .label_smoothing = 0.0f, .reduction = KILN_REDUCTION_MEAN};
}

typedef struct xent_saved {
    kiln_xent_params p;
    int64_t outer, c, inner;
    const int64_t *target; /* (outer * inner) */
    const float *stat;     /* (outer * inner, 2) max and log sum exp(x - max) per position */
    double count;          /* non-ignored positions */
} xent_saved;

static kiln_status xent_bwd(kiln_ctx *ctx, kiln_node *nd)
{
    const xent_saved *s = nd->saved;
    kiln_tensor *x = nd->in[0];
    if (!x->requires_grad) return KILN_STATUS_OK;
    if (x->rows) x->rows->all = true; /* a dense gradient (core/rowset.h), as kiln__grad marks */
    bool fresh = x->grad == NULL;
    if (fresh) { /* first gradient of the logits: written, not accumulated */
        x->grad = kiln_empty(ctx, KILN_DTYPE_F32, x->ndim, x->shape);
        if (!x->grad) return KILN_STATUS_NOMEM;
        x->grad->name = x->name;
    }
    float scalar;
    int64_t gs;
    const float *g = reduce_grad(nd->out[0], s->p.reduction, s->count, &scalar, &gs);
    DK(ctx)->xent_bwd(ctx, x->data, s->target, s->stat, g, gs, s->outer, s->c, s->inner, s->p.ignore_index,
                      s->p.label_smoothing, x->grad->data, fresh);
    return KILN_STATUS_OK;
}

kiln_tensor *kiln_cross_entropy(kiln_ctx *ctx, kiln_tensor *logits, kiln_tensor *target, const kiln_xent_params *p)
{
    KILN_IN(logits);
    KILN_IN(target);
    kiln_xent_params d = kiln_xent_default_params();
    if (!p) p = &d;
    char sl[128], stg[128];
    if (kiln__check_f32("cross_entropy", logits, "logits") < 0) return NULL;
    if (target->dtype != KILN_DTYPE_I64)
        return kiln__errp(KILN_STATUS_INVALID, "cross_entropy: target must be i64 class indices, got %s",
                          kiln_dtype_name(target->dtype));
    if (!(p->label_smoothing >= 0.0f && p->label_smoothing <= 1.0f))
        return kiln__errp(KILN_STATUS_INVALID, "cross_entropy: label_smoothing %g is outside [0, 1]",
                          (double)p->label_smoothing);
    if (check_reduction("cross_entropy", p->reduction) < 0) return NULL;
    if (logits->ndim < 1)
        return kiln__errp(KILN_STATUS_INVALID, "cross_entropy: logits must be (C), (N, C) or (N, C, d...), got a scalar");
    /* logits (N, C, d...) -> target (N, d...); logits (C) -> target () */
    int cd = logits->ndim == 1 ? 0 : 1;
    int64_t tshape[KILN_MAX_DIMS];
    int tnd = 0;
    for (int i = 0; i < logits->ndim; i++)
        if (i != cd) tshape[tnd++] = logits->shape[i];
    bool ok = target->ndim == tnd;
    for (int i = 0; ok && i < tnd; i++) ok = target->shape[i] == tshape[i];
    if (!ok) {
        kiln_tensor want;
        kiln_tensor_wrap(&want, KILN_DTYPE_I64, tnd, tshape, NULL);
        char sw[128];
        return kiln__errp(KILN_STATUS_INVALID, "cross_entropy: target has shape %s, expected %s for logits %s",
                          kiln_shape_str(target, stg, sizeof stg), kiln_shape_str(&want, sw, sizeof sw),
                          kiln_shape_str(logits, sl, sizeof sl));
    }
    logits = kiln_contiguous(ctx, logits);
    target = kiln_contiguous(ctx, target);
    KILN_IN(logits);
    KILN_IN(target);
    xent_saved s = {.p = *p};
    split3(logits, cd, &s.outer, &s.c, &s.inner);
    int64_t np = s.outer * s.inner;
    /* targets copied into the arena: the backward must not read a caller's batch buffer */
    int64_t *t = kiln_step_alloc(ctx, (size_t)(np ? np : 1) * sizeof *t), kept = 0;
    KILN_IN(t);
    int64_t bad = DK(ctx)->index_check(ctx, target->data, false, np, s.c, true, p->ignore_index, t, &kept);
    if (bad >= 0)
        return kiln__errp(KILN_STATUS_INVALID, "cross_entropy: target %lld at position %lld is out of range "
                          "for %lld classes (logits %s)", (long long)t[bad], (long long)bad, (long long)s.c,
                          kiln_shape_str(logits, sl, sizeof sl));
    s.target = t;
    s.count = (double)kept;
    float *loss, *stat = kiln_step_alloc(ctx, (size_t)(2 * np + 1) * sizeof(float)); /* (np, 2) */
    KILN_IN(stat);
    s.stat = stat;
    kiln_tensor *y = loss_out(ctx, p->reduction, tnd, tshape, np, &loss); /* losses written into y when NONE */
    KILN_IN(y);
    double sum = np > 0 ? DK(ctx)->xent_fwd(ctx, logits->data, t, s.outer, s.c, s.inner, p->ignore_index,
                                            p->label_smoothing, loss, stat)
                        : 0.0;
    loss_reduce(y, p->reduction, sum, s.count);
    kiln_tensor *in[2] = {logits, target};
    kiln_status st;
    kiln_node *n = kiln__record(ctx, "cross_entropy", xent_bwd, 2, in, 1, &y, sizeof s, &st);
    if (st < 0) return NULL;
    if (n) memcpy(n->saved, &s, sizeof s);
    return y;
}

/* ---- mse, l1, bce with logits --------------------------------------------------------- */

typedef struct ploss_saved {
    kiln_ploss_kind kind;
    kiln_reduction r;
    const float *pw; /* bce pos_weight expanded to x's shape, or NULL */
} ploss_saved;

static kiln_status ploss_bwd(kiln_ctx *ctx, kiln_node *nd)
{
    const ploss_saved *s = nd->saved;
    const kiln_tensor *x = nd->in[0], *y = nd->in[1];
    kiln_tensor *gx = kiln__grad(ctx, nd->in[0]), *gy = kiln__grad(ctx, nd->in[1]);
    float scalar;
    int64_t gs, n = kiln_numel(x);
    const float *g = reduce_grad(nd->out[0], s->r, (double)n, &scalar, &gs);
    DK(ctx)->ploss_bwd(ctx, s->kind, x->data, y->data, s->pw, n, g, gs, gx ? gx->data : NULL,
                       gy ? gy->data : NULL);
    return KILN_STATUS_OK;
}

static kiln_tensor *ploss(kiln_ctx *ctx, const char *op, kiln_ploss_kind kind, kiln_tensor *x, kiln_tensor *y,
                          kiln_tensor *pos_weight, kiln_reduction r, const char *xname)
{
    KILN_IN(x);
    KILN_IN(y);
    char sx[128], sy[128];
    if (kiln__check_f32(op, x, xname) < 0 || kiln__check_f32(op, y, "y") < 0) return NULL;
    if (pos_weight && kiln__check_f32(op, pos_weight, "pos_weight") < 0) return NULL;
    if (check_reduction(op, r) < 0) return NULL;
    if (!kiln_same_shape(x, y))
        return kiln__errp(KILN_STATUS_INVALID, "%s: y has shape %s, expected %s to match %s", op,
                          kiln_shape_str(y, sy, sizeof sy), kiln_shape_str(x, sx, sizeof sx), xname);
    x = kiln_contiguous(ctx, x);
    y = kiln_contiguous(ctx, y);
    KILN_IN(x);
    KILN_IN(y);
    const float *pw = NULL;
    if (pos_weight) { /* a constant: broadcast to x's shape, no gradient */
        int64_t bs[KILN_MAX_DIMS];
        int nd = kiln__broadcast_shape(op, x, pos_weight, bs);
        if (nd < 0) return NULL;
        bool same = nd == x->ndim;
        for (int i = 0; same && i < nd; i++) same = bs[i] == x->shape[i];
        if (!same)
            return kiln__errp(KILN_STATUS_INVALID, "%s: pos_weight %s does not broadcast to %s %s", op,
                              kiln_shape_str(pos_weight, sy, sizeof sy), xname, kiln_shape_str(x, sx, sizeof sx));
        bool was = kiln_set_grad_enabled(ctx, false);
        kiln_tensor *pe = kiln_contiguous(ctx, kiln_expand(ctx, pos_weight, x->ndim, x->shape));
        kiln_set_grad_enabled(ctx, was);
        KILN_IN(pe);
        pw = pe->data;
    }
    int64_t n = kiln_numel(x);
    float *elems;
    kiln_tensor *out = loss_out(ctx, r, x->ndim, x->shape, 0, &elems); /* elems: out's data for NONE, else NULL */
    KILN_IN(out);
    loss_reduce(out, r, DK(ctx)->ploss_fwd(ctx, kind, x->data, y->data, pw, n, elems), (double)n);
    kiln_tensor *in[2] = {x, y};
    kiln_status st;
    kiln_node *node = kiln__record(ctx, op, ploss_bwd, 2, in, 1, &out, sizeof(ploss_saved), &st);
    if (st < 0) return NULL;
    if (node) *(ploss_saved *)node->saved = (ploss_saved){kind, r, pw};
    return out;
}

kiln_tensor *kiln_mse_loss(kiln_ctx *ctx, kiln_tensor *x, kiln_tensor *y, kiln_reduction r)
{
    return ploss(ctx, "mse_loss", KILN_PLOSS_MSE, x, y, NULL, r, "x");
}

kiln_tensor *kiln_l1_loss(kiln_ctx *ctx, kiln_tensor *x, kiln_tensor *y, kiln_reduction r)
{
    return ploss(ctx, "l1_loss", KILN_PLOSS_L1, x, y, NULL, r, "x");
}

kiln_tensor *kiln_bce_with_logits(kiln_ctx *ctx, kiln_tensor *logits, kiln_tensor *y, kiln_tensor *pos_weight,
                                  kiln_reduction r)
{
    return ploss(ctx, "bce_with_logits", KILN_PLOSS_BCE, logits, y, pos_weight, r, "logits");
}
