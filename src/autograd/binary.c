/* Broadcasting ops with two or three tensor inputs: add, sub, mul, div, where and
 * masked_fill. Inputs broadcast as in PyTorch and may be any strided views (stride 0 for
 * expanded dims); the kernels see every operand as a stride-0 view in the output's shape.
 * Backward computes each input's gradient in the output's shape and sums it down to the
 * input's shape (fused into one pass when no reduction is needed). */
#include "autograd/tape.h"
#include "kernels/eltwise.h"
#include "kiln/ops.h"

#define K(ctx) ((ctx)->backend->eltwise)

/* v = t seen in shape (nd, shape): dims aligned from the right, stride 0 where t has
 * size 1 or no dim at all. */
static void bview(kiln_tensor *v, const kiln_tensor *t, int nd, const int64_t *shape)
{
    *v = *t;
    v->ndim = nd;
    int off = nd - t->ndim;
    for (int i = 0; i < nd; i++) {
        int j = i - off;
        v->shape[i] = shape[i];
        v->stride[i] = (j >= 0 && t->shape[j] == shape[i]) ? t->stride[j] : 0;
    }
}

/* g (contiguous, shape S) seen in the output's rank: leading 1s, then S. */
static void gview(kiln_tensor *v, const kiln_tensor *g, int nd)
{
    int64_t s[KILN_MAX_DIMS];
    int off = nd - g->ndim;
    for (int i = 0; i < nd; i++) s[i] = i < off ? 1 : g->shape[i - off];
    kiln_tensor_wrap(v, KILN_DTYPE_F32, nd, s, g->data);
}

/* Whether g (an input's shape) already has the output shape t, up to leading 1s: then its
 * gradient needs no reduction. */
static bool fills(const kiln_tensor *g, const kiln_tensor *t)
{
    kiln_tensor gv;
    gview(&gv, g, t->ndim);
    return kiln_same_shape(&gv, t);
}

/* g += alpha * (t summed down to g's shape); t has the output's shape. */
static kiln_status add_reduced(kiln_ctx *ctx, kiln_tensor *g, const kiln_tensor *t, float alpha)
{
    kiln_tensor gv;
    gview(&gv, g, t->ndim);
    if (fills(g, t)) return K(ctx)->axpy(ctx, alpha, t, &gv);
    return K(ctx)->sum_to(ctx, t, alpha, &gv, true);
}

/* ---- add, sub, mul, div --------------------------------------------------------------- */

typedef struct binary_saved {
    kiln_binary_op op;
} binary_saved;

/* g += (p OP q) reduced to g's shape; p, q in the output's shape. */
static kiln_status add_product(kiln_ctx *ctx, kiln_tensor *g, kiln_binary_op op, const kiln_tensor *p,
                               const kiln_tensor *q, const kiln_tensor *y)
{
    if (fills(g, y)) {
        kiln_tensor gv;
        gview(&gv, g, y->ndim);
        return K(ctx)->binary(ctx, op, p, q, &gv, true);
    }
    kiln_tensor *t = kiln_empty_like(ctx, y);
    if (!t) return KILN_STATUS_NOMEM;
    kiln_status st = K(ctx)->binary(ctx, op, p, q, t, false);
    return st < 0 ? st : add_reduced(ctx, g, t, 1.0f);
}

/* Whether a and b are both channels-last with one shape: then so is the output. */
static bool both_cl(const kiln_tensor *a, const kiln_tensor *b)
{
    return kiln_is_channels_last(a) && kiln_is_channels_last(b) && kiln_same_shape(a, b);
}

static kiln_status binary_bwd(kiln_ctx *ctx, kiln_node *n)
{
    kiln_tensor *a = n->in[0], *b = n->in[1], *y = n->out[0], *gy = y->grad;
    kiln_tensor *ga = kiln__grad(ctx, a), *gb = kiln__grad(ctx, b);
    if (!gy) return KILN_STATUS_OK;
    kiln_tensor fa, fb, fy, fgy, fga, fgb;
    if (both_cl(a, b)) { /* a, b, y and the grads share one layout (see binary) */
        a = kiln__flat_view(&fa, a), b = kiln__flat_view(&fb, b), y = kiln__flat_view(&fy, y);
        gy = kiln__flat_view(&fgy, gy), ga = kiln__flat_view(&fga, ga), gb = kiln__flat_view(&fgb, gb);
    }
    kiln_binary_op op = ((const binary_saved *)n->saved)->op;
    kiln_tensor av, bv;
    bview(&av, a, y->ndim, y->shape);
    bview(&bv, b, y->ndim, y->shape);
    kiln_status st = KILN_STATUS_OK;
    switch (op) {
    case KILN_BINARY_ADD:
    case KILN_BINARY_SUB:
        if (ga) st = add_reduced(ctx, ga, gy, 1.0f);
        if (gb && st >= 0) st = add_reduced(ctx, gb, gy, op == KILN_BINARY_ADD ? 1.0f : -1.0f);
        break;
    case KILN_BINARY_MUL:
        if (ga) st = add_product(ctx, ga, KILN_BINARY_MUL, gy, &bv, y);
        if (gb && st >= 0) st = add_product(ctx, gb, KILN_BINARY_MUL, gy, &av, y);
        break;
    case KILN_BINARY_DIV:
        if (ga) st = add_product(ctx, ga, KILN_BINARY_DIV, gy, &bv, y);
        if (gb && st >= 0) {
            /* d/db (a / b) = -gy * ((a / b) / b), in PyTorch's order */
            kiln_tensor *t = kiln_empty_like(ctx, y);
            if (!t) return KILN_STATUS_NOMEM;
            st = K(ctx)->binary(ctx, KILN_BINARY_DIV, &av, &bv, t, false);
            if (st >= 0) st = K(ctx)->binary(ctx, KILN_BINARY_DIV, t, &bv, t, false);
            if (st >= 0) st = K(ctx)->binary(ctx, KILN_BINARY_MUL, gy, t, t, false);
            if (st >= 0) st = add_reduced(ctx, gb, t, -1.0f);
        }
        break;
    default: KILN_ASSERT(!"binary op");
    }
    return st;
}

static kiln_tensor *binary(kiln_ctx *ctx, kiln_binary_op op, kiln_tensor *a, kiln_tensor *b)
{
    KILN_IN(a);
    KILN_IN(b);
    const char *name = kiln__binary_name(op);
    if (kiln__check_f32(name, a, "a") < 0 || kiln__check_f32(name, b, "b") < 0) return NULL;
    int64_t shape[KILN_MAX_DIMS];
    int nd = kiln__broadcast_shape(name, a, b, shape);
    if (nd < 0) return NULL;
    kiln_tensor *y;
    kiln_tensor av, bv;
    if (both_cl(a, b)) {
        /* both channels-last, no broadcast: y is too, and the op runs over memory */
        y = kiln_empty_channels_last(ctx, shape);
        KILN_IN(y);
        kiln_tensor fy;
        if (K(ctx)->binary(ctx, op, kiln__flat_view(&av, a), kiln__flat_view(&bv, b), kiln__flat_view(&fy, y), false) < 0)
            return NULL;
    } else {
        a = kiln__plain(ctx, a), b = kiln__plain(ctx, b);
        KILN_IN(a);
        KILN_IN(b);
        y = kiln_empty(ctx, KILN_DTYPE_F32, nd, shape);
        KILN_IN(y);
        bview(&av, a, nd, shape);
        bview(&bv, b, nd, shape);
        if (K(ctx)->binary(ctx, op, &av, &bv, y, false) < 0) return NULL;
    }
    kiln_tensor *in[2] = {a, b};
    kiln_status st;
    kiln_node *n = kiln__record(ctx, name, binary_bwd, 2, in, 1, &y, sizeof(binary_saved), &st);
    if (st < 0) return NULL;
    if (n) ((binary_saved *)n->saved)->op = op;
    return y;
}

kiln_tensor *kiln_add(kiln_ctx *ctx, kiln_tensor *a, kiln_tensor *b) { return binary(ctx, KILN_BINARY_ADD, a, b); }
kiln_tensor *kiln_sub(kiln_ctx *ctx, kiln_tensor *a, kiln_tensor *b) { return binary(ctx, KILN_BINARY_SUB, a, b); }
kiln_tensor *kiln_mul(kiln_ctx *ctx, kiln_tensor *a, kiln_tensor *b) { return binary(ctx, KILN_BINARY_MUL, a, b); }
kiln_tensor *kiln_div(kiln_ctx *ctx, kiln_tensor *a, kiln_tensor *b) { return binary(ctx, KILN_BINARY_DIV, a, b); }

/* ---- where and masked_fill ------------------------------------------------------------ */

typedef struct select_saved {
    kiln_tensor *cond; /* u8 or f32, broadcasts to the output */
} select_saved;

static int check_cond(const char *op, const kiln_tensor *c, const char *argname)
{
    if (c->dtype == KILN_DTYPE_U8 || c->dtype == KILN_DTYPE_F32) return 0;
    kiln__err(KILN_STATUS_INVALID, "%s: %s must be u8 or f32, got %s", op, argname, kiln_dtype_name(c->dtype));
    return -1;
}

/* g += (cond ? t : 0) or (cond ? 0 : t) summed down to g's shape; t = gy. */
static kiln_status add_selected(kiln_ctx *ctx, kiln_tensor *g, const kiln_tensor *cond, const kiln_tensor *gy,
                                bool when_true)
{
    float zero = 0.0f;
    kiln_tensor z, cv;
    bview(&z, gy, gy->ndim, gy->shape);
    for (int i = 0; i < z.ndim; i++) z.stride[i] = 0;
    z.data = &zero;
    bview(&cv, cond, gy->ndim, gy->shape);
    const kiln_tensor *a = when_true ? gy : &z, *b = when_true ? &z : gy;
    if (fills(g, gy)) {
        kiln_tensor gv;
        gview(&gv, g, gy->ndim);
        return K(ctx)->where(ctx, &cv, a, b, &gv, true);
    }
    kiln_tensor *t = kiln_empty_like(ctx, gy);
    if (!t) return KILN_STATUS_NOMEM;
    kiln_status st = K(ctx)->where(ctx, &cv, a, b, t, false);
    return st < 0 ? st : add_reduced(ctx, g, t, 1.0f);
}

static kiln_status where_bwd(kiln_ctx *ctx, kiln_node *n)
{
    const kiln_tensor *gy = n->out[0]->grad, *cond = ((const select_saved *)n->saved)->cond;
    kiln_tensor *ga = kiln__grad(ctx, n->in[0]), *gb = kiln__grad(ctx, n->in[1]);
    if (!gy) return KILN_STATUS_OK;
    kiln_status st = KILN_STATUS_OK;
    if (ga) st = add_selected(ctx, ga, cond, gy, true);
    if (gb && st >= 0) st = add_selected(ctx, gb, cond, gy, false);
    return st;
}

/* The output of where/masked_fill: broadcast of cond, a and b. */
static kiln_tensor *select_op(kiln_ctx *ctx, const char *name, kiln_tensor *cond, kiln_tensor *a, kiln_tensor *b,
                           kiln_tensor **in, int n_in)
{
    int64_t s1[KILN_MAX_DIMS], shape[KILN_MAX_DIMS];
    int nd1 = kiln__broadcast_shape(name, a, b, s1);
    if (nd1 < 0) return NULL;
    kiln_tensor ab;
    kiln_tensor_wrap(&ab, KILN_DTYPE_F32, nd1, s1, NULL);
    int nd = kiln__broadcast_shape(name, cond, &ab, shape);
    if (nd < 0) return NULL;
    kiln_tensor *y = kiln_empty(ctx, KILN_DTYPE_F32, nd, shape);
    KILN_IN(y);
    kiln_tensor cv, av, bv;
    bview(&cv, cond, nd, shape);
    bview(&av, a, nd, shape);
    bview(&bv, b, nd, shape);
    if (K(ctx)->where(ctx, &cv, &av, &bv, y, false) < 0) return NULL;
    kiln_status st;
    kiln_node *n = kiln__record(ctx, name, where_bwd, n_in, in, 1, &y, sizeof(select_saved), &st);
    if (st < 0) return NULL;
    if (n) ((select_saved *)n->saved)->cond = cond;
    return y;
}

kiln_tensor *kiln_where(kiln_ctx *ctx, kiln_tensor *cond, kiln_tensor *a, kiln_tensor *b)
{
    KILN_IN(cond);
    KILN_IN(a);
    KILN_IN(b);
    if (check_cond("where", cond, "cond") < 0 || kiln__check_f32("where", a, "a") < 0 ||
        kiln__check_f32("where", b, "b") < 0)
        return NULL;
    cond = kiln__plain(ctx, cond), a = kiln__plain(ctx, a), b = kiln__plain(ctx, b);
    KILN_IN(cond);
    KILN_IN(a);
    KILN_IN(b);
    kiln_tensor *in[2] = {a, b};
    return select_op(ctx, "where", cond, a, b, in, 2);
}

kiln_tensor *kiln_masked_fill(kiln_ctx *ctx, kiln_tensor *x, kiln_tensor *mask, float value)
{
    KILN_IN(x);
    KILN_IN(mask);
    if (kiln__check_f32("masked_fill", x, "x") < 0 || check_cond("masked_fill", mask, "mask") < 0) return NULL;
    /* where(mask, value, x): the value is a 0-d tensor in the arena; in[1] holds it so the
     * backward (where_bwd) finds x's gradient in the "b" slot. */
    x = kiln__plain(ctx, x), mask = kiln__plain(ctx, mask);
    KILN_IN(x);
    KILN_IN(mask);
    kiln_tensor *v = kiln_full(ctx, 0, NULL, value);
    KILN_IN(v);
    kiln_tensor *in[2] = {v, x};
    kiln_tensor *y = select_op(ctx, "masked_fill", mask, v, x, in, 2);
    return y;
}
