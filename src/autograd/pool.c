/* 2-D pooling ops on x (N, C, H, W), one tape node each (input x, output y): max and
 * average pooling (kernel, stride, padding, ceil_mode, count_include_pad as PyTorch) and
 * adaptive average / max pooling to a given output size. Output sizes follow PyTorch's
 * pooling_output_shape; kernels: src/kernels/conv.h. A channels-last x keeps its layout
 * (y and the gradients are channels-last too), so a channels-last network stays NHWC
 * through its pools; any other x is pooled as a contiguous NCHW copy. */
#include "autograd/tape.h"
#include "kernels/conv.h"
#include "kiln/ops.h"

typedef struct pool_saved {
    kiln_pool2d_geom g;
    void *keep; /* max pooling: the kernel's argmax / workspace */
} pool_saved;

kiln_pool2d_params kiln_pool2d_default_params(int kernel, int stride, int padding)
{
    return (kiln_pool2d_params){
        .kernel = {kernel, kernel},
        .stride = {stride > 0 ? stride : kernel, stride > 0 ? stride : kernel},
        .padding = {padding, padding},
        .ceil_mode = false,
        .count_include_pad = true,
    };
}

/* ---- backward --------------------------------------------------------------------------- */

/* x's gradient for a single-input node; *acc tells whether it already held values. */
static kiln_status pool_gx(kiln_ctx *ctx, kiln_node *n, kiln_tensor **gx, bool *acc)
{
    kiln_tensor *x = n->in[0];
    *acc = x->grad != NULL; /* a fresh (zeroed) gradient may be overwritten */
    *gx = kiln__grad(ctx, x);
    return (x->requires_grad && !*gx) ? KILN_STATUS_NOMEM : KILN_STATUS_OK;
}

static kiln_status max_pool_bwd(kiln_ctx *ctx, kiln_node *n)
{
    pool_saved *s = n->saved;
    kiln_tensor *gx;
    bool acc;
    if (pool_gx(ctx, n, &gx, &acc) < 0) return KILN_STATUS_NOMEM;
    if (!gx) return KILN_STATUS_OK;
    return ctx->backend->conv->max_pool2d_bwd(ctx, &s->g, n->in[0]->data, s->keep, n->out[0]->grad->data, gx->data,
                                              acc);
}

static kiln_status avg_pool_bwd(kiln_ctx *ctx, kiln_node *n)
{
    pool_saved *s = n->saved;
    kiln_tensor *gx;
    bool acc;
    if (pool_gx(ctx, n, &gx, &acc) < 0) return KILN_STATUS_NOMEM;
    if (!gx) return KILN_STATUS_OK;
    return ctx->backend->conv->avg_pool2d_bwd(ctx, &s->g, n->out[0]->grad->data, gx->data, acc);
}

static kiln_status aavg_pool_bwd(kiln_ctx *ctx, kiln_node *n)
{
    pool_saved *s = n->saved;
    kiln_tensor *gx;
    bool acc;
    if (pool_gx(ctx, n, &gx, &acc) < 0) return KILN_STATUS_NOMEM;
    if (!gx) return KILN_STATUS_OK;
    return ctx->backend->conv->adaptive_avg_pool2d_bwd(ctx, &s->g, n->out[0]->grad->data, gx->data, acc);
}

static kiln_status amax_pool_bwd(kiln_ctx *ctx, kiln_node *n)
{
    pool_saved *s = n->saved;
    kiln_tensor *gx;
    bool acc;
    if (pool_gx(ctx, n, &gx, &acc) < 0) return KILN_STATUS_NOMEM;
    if (!gx) return KILN_STATUS_OK;
    return ctx->backend->conv->adaptive_max_pool2d_bwd(ctx, &s->g, n->in[0]->data, s->keep, n->out[0]->grad->data,
                                                       gx->data, acc);
}

/* ---- validation -------------------------------------------------------------------------- */

static kiln_status check_x(const char *op, const kiln_tensor *x)
{
    if (kiln__check_f32(op, x, "x") < 0) return KILN_STATUS_INVALID;
    char sx[96];
    kiln_shape_str(x, sx, sizeof sx);
    if (x->ndim != 4)
        return kiln__err(KILN_STATUS_INVALID, "%s: x has shape %s, expected 4 dims (N, C, H, W)", op, sx);
    for (int i = 0; i < 4; i++)
        if (x->shape[i] < 1)
            return kiln__err(KILN_STATUS_INVALID, "%s: x has shape %s, every dim must be >= 1", op, sx);
    return KILN_STATUS_OK;
}

/* PyTorch's pooling_output_shape for one axis (dilation 1). */
static int64_t pool_out(int64_t in, int64_t k, int64_t s, int64_t p, bool ceil_mode)
{
    int64_t num = in + 2 * p - k + (ceil_mode ? s - 1 : 0);
    int64_t o = (num >= 0 ? num / s : -((-num + s - 1) / s)) + 1; /* floor division */
    if (ceil_mode && (o - 1) * s >= in + p) o--;
    return o;
}

static kiln_status pool_geom(const char *op, const kiln_tensor *x, const kiln_pool2d_params *p, kiln_pool2d_geom *g)
{
    if (!p) return kiln__err(KILN_STATUS_INVALID, "%s: NULL params (use kiln_pool2d_default_params)", op);
    if (check_x(op, x) < 0) return KILN_STATUS_INVALID;
    for (int i = 0; i < 2; i++) {
        if (p->kernel[i] < 1 || p->stride[i] < 1)
            return kiln__err(KILN_STATUS_INVALID, "%s: kernel (%d, %d) and stride (%d, %d) must be >= 1", op,
                             p->kernel[0], p->kernel[1], p->stride[0], p->stride[1]);
        if (p->padding[i] < 0 || 2 * p->padding[i] > p->kernel[i])
            return kiln__err(KILN_STATUS_INVALID,
                             "%s: padding (%d, %d) must be >= 0 and at most half the kernel (%d, %d)", op,
                             p->padding[0], p->padding[1], p->kernel[0], p->kernel[1]);
    }
    *g = (kiln_pool2d_geom){
        .n = x->shape[0], .c = x->shape[1], .h = x->shape[2], .w = x->shape[3],
        .kh = p->kernel[0], .kw = p->kernel[1], .sh = p->stride[0], .sw = p->stride[1],
        .ph = p->padding[0], .pw = p->padding[1], .count_include_pad = p->count_include_pad,
    };
    g->oh = pool_out(g->h, g->kh, g->sh, g->ph, p->ceil_mode);
    g->ow = pool_out(g->w, g->kw, g->sw, g->pw, p->ceil_mode);
    if (g->oh < 1 || g->ow < 1) {
        char sx[96];
        return kiln__err(KILN_STATUS_INVALID,
                         "%s: kernel %dx%d is larger than the padded input %lldx%lld (x %s, padding %dx%d)", op,
                         p->kernel[0], p->kernel[1], (long long)(g->h + 2 * g->ph), (long long)(g->w + 2 * g->pw),
                         kiln_shape_str(x, sx, sizeof sx), p->padding[0], p->padding[1]);
    }
    return KILN_STATUS_OK;
}

/* ---- forward ------------------------------------------------------------------------------ */

typedef enum pool_kind { POOL_MAX, POOL_AVG, POOL_AMAX, POOL_AAVG } pool_kind;

static const char *const pool_names[] = {"max_pool2d", "avg_pool2d", "adaptive_max_pool2d", "adaptive_avg_pool2d"};
static const kiln__backward_fn pool_bwds[] = {max_pool_bwd, avg_pool_bwd, amax_pool_bwd, aavg_pool_bwd};

/* Runs the forward kernel of kind on x (validated, geometry in geom; its nhwc is decided
 * here from x) and records the node. */
static kiln_tensor *pool_run(kiln_ctx *ctx, pool_kind kind, kiln_tensor *x, const kiln_pool2d_geom *geom)
{
    kiln_pool2d_geom gl = *geom, *g = &gl;
    /* A tensor both channels-last and contiguous (C == 1 or H == W == 1) has one memory
     * order for both: it takes the NCHW path and y comes out contiguous. */
    g->nhwc = kiln_is_channels_last(x) && !kiln_is_contiguous(x);
    kiln_tensor *xc = g->nhwc ? x : kiln_contiguous(ctx, x);
    KILN_IN(xc);
    const int64_t ys[4] = {g->n, g->c, g->oh, g->ow};
    kiln_tensor *y = g->nhwc ? kiln_empty_channels_last(ctx, ys)
                             : kiln_empty(ctx, KILN_DTYPE_F32, 4, ys); /* (N, C, OH, OW) */
    KILN_IN(y);
    const kiln_conv_kernels *k = ctx->backend->conv;
    bool grad = kiln__wants_grad(ctx, 1, &xc);
    void *keep = NULL;
    kiln_status st;
    switch (kind) {
    case POOL_MAX: st = k->max_pool2d_fwd(ctx, g, xc->data, y->data, grad ? &keep : NULL); break;
    case POOL_AVG: st = k->avg_pool2d_fwd(ctx, g, xc->data, y->data); break;
    case POOL_AMAX: st = k->adaptive_max_pool2d_fwd(ctx, g, xc->data, y->data, grad ? &keep : NULL); break;
    default: st = k->adaptive_avg_pool2d_fwd(ctx, g, xc->data, y->data); break;
    }
    if (st < 0) return NULL;
    kiln_node *n = kiln__record(ctx, pool_names[kind], pool_bwds[kind], 1, &xc, 1, &y, sizeof(pool_saved), &st);
    if (st < 0) return NULL;
    if (n) *(pool_saved *)n->saved = (pool_saved){.g = *g, .keep = keep};
    return y;
}

static kiln_tensor *pool2d(kiln_ctx *ctx, pool_kind kind, kiln_tensor *x, const kiln_pool2d_params *p)
{
    const char *op = pool_names[kind];
    if (!ctx) return kiln__errp(KILN_STATUS_INVALID, "%s: NULL context", op);
    KILN_IN(x);
    kiln_pool2d_geom g;
    if (pool_geom(op, x, p, &g) < 0) return NULL;
    return pool_run(ctx, kind, x, &g);
}

static kiln_tensor *adaptive(kiln_ctx *ctx, pool_kind kind, kiln_tensor *x, int oh, int ow)
{
    const char *op = pool_names[kind];
    if (!ctx) return kiln__errp(KILN_STATUS_INVALID, "%s: NULL context", op);
    KILN_IN(x);
    if (check_x(op, x) < 0) return NULL;
    if (oh < 1 || ow < 1) return kiln__errp(KILN_STATUS_INVALID, "%s: output size (%d, %d) must be >= 1", op, oh, ow);
    kiln_pool2d_geom g = {.n = x->shape[0], .c = x->shape[1], .h = x->shape[2], .w = x->shape[3], .oh = oh, .ow = ow};
    return pool_run(ctx, kind, x, &g);
}

kiln_tensor *kiln_max_pool2d(kiln_ctx *ctx, kiln_tensor *x, const kiln_pool2d_params *p)
{
    return pool2d(ctx, POOL_MAX, x, p);
}

kiln_tensor *kiln_avg_pool2d(kiln_ctx *ctx, kiln_tensor *x, const kiln_pool2d_params *p)
{
    return pool2d(ctx, POOL_AVG, x, p);
}

kiln_tensor *kiln_adaptive_avg_pool2d(kiln_ctx *ctx, kiln_tensor *x, int oh, int ow)
{
    return adaptive(ctx, POOL_AAVG, x, oh, ow);
}

kiln_tensor *kiln_adaptive_max_pool2d(kiln_ctx *ctx, kiln_tensor *x, int oh, int ow)
{
    return adaptive(ctx, POOL_AMAX, x, oh, ow);
}
