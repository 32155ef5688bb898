/* Unary elementwise ops (neg, scalar arithmetic, activations, exp/log/sqrt): one forward
 * and one backward for all of them, both in the eltwise kernel table; the backward reads
 * the input x or the output y, whichever PyTorch's derivative formula uses. */
#include "autograd/tape.h"
#include "kernels/eltwise.h"
#include "kiln/ops.h"

typedef struct unary_saved {
    kiln_unary_op op;
    float alpha;
} unary_saved;

static kiln_status unary_bwd(kiln_ctx *ctx, kiln_node *n)
{
    kiln_tensor *gx = kiln__grad(ctx, n->in[0]);
    const kiln_tensor *gy = n->out[0]->grad;
    if (!gx || !gy) return KILN_STATUS_OK;
    const unary_saved *s = n->saved;
    kiln_tensor *x = n->in[0], *y = n->out[0];
    if (kiln_is_channels_last(x)) { /* x, y, gx, gy share the layout: elementwise over memory */
        kiln_tensor fx, fy, fgy, fgx;
        return ctx->backend->eltwise->unary_bwd(ctx, s->op, s->alpha, kiln__flat_view(&fx, x),
                                                kiln__flat_view(&fy, y), kiln__flat_view(&fgy, gy),
                                                kiln__flat_view(&fgx, gx));
    }
    return ctx->backend->eltwise->unary_bwd(ctx, s->op, s->alpha, x, y, gy, gx);
}

/* x (any shape, any strides) -> y = f(x) (same shape; channels-last when x is, else
 * contiguous) */
static kiln_tensor *unary(kiln_ctx *ctx, kiln_unary_op op, float alpha, kiln_tensor *x)
{
    KILN_IN(x);
    const char *name = kiln__unary_name(op);
    if (kiln__check_f32(name, x, "x") < 0) return NULL;
    bool cl = kiln_is_channels_last(x);
    kiln_tensor *y = kiln_empty_like_layout(ctx, x);
    KILN_IN(y);
    kiln_tensor fx, fy;
    if (ctx->backend->eltwise->unary_fwd(ctx, op, alpha, cl ? kiln__flat_view(&fx, x) : x,
                                         cl ? kiln__flat_view(&fy, y) : y) < 0)
        return NULL;
    kiln_status st;
    kiln_node *n = kiln__record(ctx, name, unary_bwd, 1, &x, 1, &y, sizeof(unary_saved), &st);
    if (st < 0) return NULL;
    if (n) {
        unary_saved *s = n->saved;
        s->op = op;
        s->alpha = alpha;
    }
    return y;
}

kiln_tensor *kiln_add_scalar(kiln_ctx *ctx, kiln_tensor *x, float s) { return unary(ctx, KILN_UNARY_ADD_SCALAR, s, x); }
kiln_tensor *kiln_mul_scalar(kiln_ctx *ctx, kiln_tensor *x, float s) { return unary(ctx, KILN_UNARY_MUL_SCALAR, s, x); }
kiln_tensor *kiln_pow_scalar(kiln_ctx *ctx, kiln_tensor *x, float p) { return unary(ctx, KILN_UNARY_POW_SCALAR, p, x); }
kiln_tensor *kiln_neg(kiln_ctx *ctx, kiln_tensor *x) { return unary(ctx, KILN_UNARY_NEG, 0.0f, x); }
kiln_tensor *kiln_relu(kiln_ctx *ctx, kiln_tensor *x) { return unary(ctx, KILN_UNARY_RELU, 0.0f, x); }
kiln_tensor *kiln_leaky_relu(kiln_ctx *ctx, kiln_tensor *x, float negative_slope)
{
    return unary(ctx, KILN_UNARY_LEAKY_RELU, negative_slope, x);
}
kiln_tensor *kiln_sigmoid(kiln_ctx *ctx, kiln_tensor *x) { return unary(ctx, KILN_UNARY_SIGMOID, 0.0f, x); }
kiln_tensor *kiln_tanh(kiln_ctx *ctx, kiln_tensor *x) { return unary(ctx, KILN_UNARY_TANH, 0.0f, x); }
kiln_tensor *kiln_softplus(kiln_ctx *ctx, kiln_tensor *x) { return unary(ctx, KILN_UNARY_SOFTPLUS, 0.0f, x); }
kiln_tensor *kiln_exp(kiln_ctx *ctx, kiln_tensor *x) { return unary(ctx, KILN_UNARY_EXP, 0.0f, x); }
kiln_tensor *kiln_log(kiln_ctx *ctx, kiln_tensor *x) { return unary(ctx, KILN_UNARY_LOG, 0.0f, x); }
kiln_tensor *kiln_sqrt(kiln_ctx *ctx, kiln_tensor *x) { return unary(ctx, KILN_UNARY_SQRT, 0.0f, x); }
