/* Dropout with its backward: inverted dropout (kept elements scaled by 1/(1-p) so eval
 * needs no rescaling), masks drawn from the context's counter-based RNG (the same for
 * any thread count), and kiln_apply_mask, which multiplies by a given mask with
 * broadcasting so one mask can be reused across time steps (variational dropout, mask
 * (B, 1, H) on (B, T, H)) or applied to a weight matrix (weight drop, mask (4H, H) on
 * w_hh, the gradient flowing to w). */
#include "autograd/tape.h"
#include "kernels/dense.h"
#include "kernels/eltwise.h"
#include "kiln/ops.h"

#include <string.h>

static int check_p(const char *op, float p)
{
    if (p >= 0.0f && p <= 1.0f) return 0;
    kiln__err(KILN_STATUS_INVALID, "%s: p %g is outside [0, 1]", op, (double)p);
    return -1;
}

/* 1/(1-p), or 0 when everything is dropped. */
static float keep_scale(float p) { return p >= 1.0f ? 0.0f : 1.0f / (1.0f - p); }

/* ---- broadcast multiply --------------------------------------------------------------- */

/* dst (contiguous, a's shape) (+)= a * b, where a and b share shape and have any strides
 * (0 for broadcast dims): the eltwise kernel's binary multiply. */
static kiln_status bmul(kiln_ctx *ctx, float *dst, const kiln_tensor *a, const kiln_tensor *b, bool accumulate)
{
    kiln_tensor d;
    kiln_tensor_wrap(&d, KILN_DTYPE_F32, a->ndim, a->shape, dst);
    return ctx->backend->eltwise->binary(ctx, KILN_BINARY_MUL, a, b, &d, accumulate);
}

/* A stride-0 view of t broadcast to shape (no node: only read inside this file). */
static kiln_tensor bview(const kiln_tensor *t, int nd, const int64_t *shape)
{
    kiln_tensor v = *t;
    int off = nd - t->ndim;
    v.ndim = nd;
    for (int i = 0; i < nd; i++) {
        int j = i - off;
        v.shape[i] = shape[i];
        v.stride[i] = (j >= 0 && t->shape[j] == shape[i]) ? t->stride[j] : 0;
    }
    return v;
}

/* ---- kiln_dropout --------------------------------------------------------------------- */

/* The mask is kept only when the caller asked for it (mask_out); otherwise the backward draws it
 * again from (seed, first), which costs a Philox draw per element instead of numel floats kept
 * from the forward to the backward (a weight-dropped LSTM w_hh: 21 MB each). */
typedef struct dropout_saved {
    const float *mask; /* (numel) values 0 or 1/(1-p), or NULL */
    uint64_t seed, first;
    float p, scale;
} dropout_saved;

static kiln_status dropout_bwd(kiln_ctx *ctx, kiln_node *nd)
{
    kiln_tensor *gx = kiln__grad(ctx, nd->in[0]);
    const kiln_tensor *gy = nd->out[0]->grad;
    if (!gx) return KILN_STATUS_OK;
    int64_t n = kiln_numel(gx);
    const dropout_saved *s = nd->saved;
    if (!s->mask) {
        ctx->backend->dense->dropout_bwd(ctx, s->seed, s->first, n, s->p, s->scale, gy->data, gx->data);
        return KILN_STATUS_OK;
    }
    kiln_tensor g, m; /* gx += gy * mask, all three contiguous in x's shape */
    kiln_tensor_wrap(&g, KILN_DTYPE_F32, 1, &n, gy->data);
    kiln_tensor_wrap(&m, KILN_DTYPE_F32, 1, &n, (void *)((const dropout_saved *)nd->saved)->mask);
    return bmul(ctx, gx->data, &g, &m, true);
}

kiln_tensor *kiln_dropout(kiln_ctx *ctx, kiln_tensor *x, float p, bool train, kiln_tensor **mask_out)
{
    if (mask_out) *mask_out = NULL;
    KILN_IN(x);
    if (kiln__check_f32("dropout", x, "x") < 0 || check_p("dropout", p) < 0) return NULL;
    if (!train || p == 0.0f) return x;
    x = kiln_contiguous(ctx, x);
    KILN_IN(x);
    kiln_tensor *y = kiln_empty(ctx, KILN_DTYPE_F32, x->ndim, x->shape);
    kiln_tensor *mask = mask_out ? kiln_empty(ctx, KILN_DTYPE_F32, x->ndim, x->shape) : NULL;
    KILN_IN(y);
    if (mask_out) KILN_IN(mask);
    int64_t n = kiln_numel(x);
    uint64_t first = kiln_rng_take(ctx, (uint64_t)n), seed = kiln_rng_get(ctx).seed;
    ctx->backend->dense->dropout_fwd(ctx, seed, first, n, p, keep_scale(p), mask ? mask->data : NULL, x->data,
                                     y->data);
    kiln_status st;
    kiln_node *node = kiln__record(ctx, "dropout", dropout_bwd, 1, &x, 1, &y, sizeof(dropout_saved), &st);
    if (st < 0) return NULL;
    if (node)
        *(dropout_saved *)node->saved = (dropout_saved){mask ? mask->data : NULL, seed, first, p, keep_scale(p)};
    if (mask_out) *mask_out = mask;
    return y;
}

kiln_tensor *kiln_dropout_mask(kiln_ctx *ctx, int ndim, const int64_t *shape, float p)
{
    if (check_p("dropout_mask", p) < 0) return NULL;
    if (ndim < 0 || ndim > KILN_MAX_DIMS)
        return kiln__errp(KILN_STATUS_INVALID, "dropout_mask: ndim %d outside 0..%d", ndim, KILN_MAX_DIMS);
    for (int i = 0; i < ndim; i++)
        if (shape[i] < 0)
            return kiln__errp(KILN_STATUS_INVALID, "dropout_mask: negative size %lld in dim %d",
                              (long long)shape[i], i);
    kiln_tensor *mask = kiln_empty(ctx, KILN_DTYPE_F32, ndim, shape);
    KILN_IN(mask);
    int64_t n = kiln_numel(mask);
    uint64_t first = kiln_rng_take(ctx, (uint64_t)n);
    ctx->backend->dense->dropout_fwd(ctx, kiln_rng_get(ctx).seed, first, n, p, keep_scale(p), mask->data, NULL,
                                     NULL);
    return mask;
}

/* ---- kiln_apply_mask ------------------------------------------------------------------ */

/* The gradient of one operand of y = x * mask: g (out shape) = gy * other, reduced onto
 * the operand's shape when it was broadcast. */
static kiln_status mask_grad(kiln_ctx *ctx, kiln_tensor *self, const kiln_tensor *other, const kiln_tensor *gy)
{
    kiln_tensor *g = kiln__grad(ctx, self);
    if (!g) return KILN_STATUS_OK;
    kiln_tensor ov = bview(other, gy->ndim, gy->shape);
    if (kiln_numel(self) == kiln_numel(gy)) return bmul(ctx, g->data, gy, &ov, true); /* same shape: in place */
    kiln_tensor *tmp = kiln_empty(ctx, KILN_DTYPE_F32, gy->ndim, gy->shape);
    if (!tmp) return KILN_STATUS_NOMEM;
    kiln_status st = bmul(ctx, tmp->data, gy, &ov, false);
    return st < 0 ? st : kiln__accumulate_reduced(ctx, g, tmp);
}

/* When x has no gradient yet and as many elements as y, and y's gradient is the autograd's own
 * buffer (kiln__grad's reusable memory, not a tensor a caller set), gy * mask is written over gy
 * itself and that buffer becomes x's gradient: y's gradient is consumed here (kiln_backward finds
 * nothing to give back for y, and gives the buffer back once x's own node has run), so a chain of
 * variational dropouts holds one gradient buffer where it held two. The mask's gradient (rarely
 * wanted) is made first, from gy as it was. */
static kiln_status apply_mask_bwd(kiln_ctx *ctx, kiln_node *nd)
{
    kiln_tensor *y = nd->out[0], *x = nd->in[0], *mask = nd->in[1];
    kiln_tensor *gy = y->grad;
    kiln_status st = mask_grad(ctx, mask, x, gy);
    if (st < 0) return st;
    if (x->requires_grad && !x->grad && x != mask && kiln_numel(x) == kiln_numel(gy) && kiln_is_contiguous(gy) &&
        !kiln_is_channels_last(x) && kiln__step_reusable(ctx, gy->data)) {
        kiln_tensor mv = bview(mask, gy->ndim, gy->shape);
        if ((st = bmul(ctx, gy->data, gy, &mv, false)) < 0) return st; /* element for element in place */
        kiln_tensor *gx = kiln__view(ctx, x, x->ndim, x->shape, x->stride, gy->data);
        if (!gx) return KILN_STATUS_NOMEM;
        kiln__set_contiguous(gx, x->ndim, x->shape); /* x's shape, contiguous, as kiln__grad makes it */
        x->grad = gx;
        y->grad = NULL;
        return KILN_STATUS_OK;
    }
    return mask_grad(ctx, x, mask, gy);
}

kiln_tensor *kiln_apply_mask(kiln_ctx *ctx, kiln_tensor *x, kiln_tensor *mask)
{
    x = kiln__plain(ctx, x), mask = kiln__plain(ctx, mask);
    KILN_IN(x);
    KILN_IN(mask);
    if (kiln__check_f32("apply_mask", x, "x") < 0 || kiln__check_f32("apply_mask", mask, "mask") < 0) return NULL;
    int64_t shape[KILN_MAX_DIMS];
    int nd = kiln__broadcast_shape("apply_mask", x, mask, shape);
    if (nd < 0) return NULL;
    kiln_tensor *y = kiln_empty(ctx, KILN_DTYPE_F32, nd, shape); /* broadcast(x, mask) */
    KILN_IN(y);
    kiln_tensor xv = bview(x, nd, shape), mv = bview(mask, nd, shape);
    if (bmul(ctx, y->data, &xv, &mv, false) < 0) return NULL;
    kiln_tensor *in[2] = {x, mask};
    kiln_status st;
    kiln__record(ctx, "apply_mask", apply_mask_bwd, 2, in, 1, &y, 0, &st);
    return st < 0 ? NULL : y;
}
