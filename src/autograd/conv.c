/* kiln_conv2d: 2-D convolution (stride, padding, dilation, groups, optional bias) as one
 * tape node (inputs x, w, b; output y). Validates the geometry with messages that name
 * the argument and shapes, then calls the backend's conv kernels (src/kernels/conv.h). */
#include "autograd/tape.h"
#include "kernels/conv.h"
#include "kiln/ops.h"

enum { IN_X, IN_W, IN_B, N_IN };

typedef struct conv_saved {
    kiln_conv2d_geom g;
} conv_saved;

kiln_conv2d_params kiln_conv2d_default_params(void)
{
    return (kiln_conv2d_params){.stride = {1, 1}, .padding = {0, 0}, .dilation = {1, 1}, .groups = 1};
}

static kiln_status conv2d_bwd(kiln_ctx *ctx, kiln_node *n)
{
    conv_saved *s = n->saved;
    kiln_tensor *x = n->in[IN_X], *w = n->in[IN_W], *b = n->in[IN_B];
    const kiln_tensor *gy = n->out[0]->grad; /* (N, O, OH, OW), channels-last when y is */
    bool gx_acc; /* a fresh gradient is uninitialised: the kernel overwrites it */
    kiln_tensor *gx = kiln__grad_fresh(ctx, x, &gx_acc), *gw = kiln__grad(ctx, w), *gb = kiln__grad(ctx, b);
    if ((x->requires_grad && !gx) || (w->requires_grad && !gw) || (b && b->requires_grad && !gb))
        return KILN_STATUS_NOMEM;
    return ctx->backend->conv->conv2d_bwd(ctx, &s->g, x->data, w->data, gy->data, gx ? gx->data : NULL, gx_acc,
                                          gw ? gw->data : NULL, gb ? gb->data : NULL);
}

/* Fills g from x (N, C, H, W), w (O, C/groups, KH, KW), b (O) and p; INVALID + message on
 * any inconsistency. */
static kiln_status conv_geom(const kiln_tensor *x, const kiln_tensor *w, const kiln_tensor *b,
                             const kiln_conv2d_params *p, kiln_conv2d_geom *g)
{
    char sx[96], sw[96], sb[96];
    kiln_shape_str(x, sx, sizeof sx);
    kiln_shape_str(w, sw, sizeof sw);
    if (x->ndim != 4)
        return kiln__err(KILN_STATUS_INVALID, "conv2d: x has shape %s, expected 4 dims (N, C, H, W)", sx);
    if (w->ndim != 4)
        return kiln__err(KILN_STATUS_INVALID, "conv2d: weight has shape %s, expected 4 dims (O, C/groups, KH, KW)",
                         sw);
    for (int i = 0; i < 4; i++) {
        if (x->shape[i] < 1)
            return kiln__err(KILN_STATUS_INVALID, "conv2d: x has shape %s, every dim must be >= 1", sx);
        if (w->shape[i] < 1)
            return kiln__err(KILN_STATUS_INVALID, "conv2d: weight has shape %s, every dim must be >= 1", sw);
    }
    for (int i = 0; i < 2; i++) {
        if (p->stride[i] < 1)
            return kiln__err(KILN_STATUS_INVALID, "conv2d: stride (%d, %d) must be >= 1", p->stride[0], p->stride[1]);
        if (p->dilation[i] < 1)
            return kiln__err(KILN_STATUS_INVALID, "conv2d: dilation (%d, %d) must be >= 1", p->dilation[0],
                             p->dilation[1]);
        if (p->padding[i] < 0)
            return kiln__err(KILN_STATUS_INVALID, "conv2d: padding (%d, %d) must be >= 0", p->padding[0],
                             p->padding[1]);
    }
    int64_t G = p->groups;
    if (G < 1) return kiln__err(KILN_STATUS_INVALID, "conv2d: groups %lld must be >= 1", (long long)G);
    if (x->shape[1] % G)
        return kiln__err(KILN_STATUS_INVALID, "conv2d: groups %lld does not divide the %lld input channels of x %s",
                         (long long)G, (long long)x->shape[1], sx);
    if (w->shape[0] % G)
        return kiln__err(KILN_STATUS_INVALID, "conv2d: groups %lld does not divide the %lld output channels of weight %s",
                         (long long)G, (long long)w->shape[0], sw);
    if (w->shape[1] * G != x->shape[1])
        return kiln__err(KILN_STATUS_INVALID,
                         "conv2d: weight %s expects %lld input channels per group, x has shape %s%s", sw,
                         (long long)w->shape[1], sx, G > 1 ? " (groups > 1: x's channels / groups must match)" : "");
    if (b && (b->ndim != 1 || b->shape[0] != w->shape[0]))
        return kiln__err(KILN_STATUS_INVALID, "conv2d: bias has shape %s, expected (%lld,) for weight %s",
                         kiln_shape_str(b, sb, sizeof sb), (long long)w->shape[0], sw);
    *g = (kiln_conv2d_geom){
        .n = x->shape[0], .c = x->shape[1], .h = x->shape[2], .w = x->shape[3],
        .o = w->shape[0], .kh = w->shape[2], .kw = w->shape[3],
        .sh = p->stride[0], .sw = p->stride[1], .ph = p->padding[0], .pw = p->padding[1],
        .dh = p->dilation[0], .dw = p->dilation[1], .groups = G,
    };
    int64_t ekh = g->dh * (g->kh - 1) + 1, ekw = g->dw * (g->kw - 1) + 1; /* dilated kernel */
    int64_t hp = g->h + 2 * g->ph, wp = g->w + 2 * g->pw;
    if (ekh > hp || ekw > wp)
        return kiln__err(KILN_STATUS_INVALID,
                         "conv2d: kernel %lldx%lld (dilation %lldx%lld) is larger than the padded input %lldx%lld "
                         "(x %s, padding %lldx%lld)",
                         (long long)g->kh, (long long)g->kw, (long long)g->dh, (long long)g->dw, (long long)hp,
                         (long long)wp, sx, (long long)g->ph, (long long)g->pw);
    g->oh = (hp - ekh) / g->sh + 1;
    g->ow = (wp - ekw) / g->sw + 1;
    return KILN_STATUS_OK;
}

kiln_tensor *kiln_conv2d(kiln_ctx *ctx, kiln_tensor *x, kiln_tensor *w, kiln_tensor *b, const kiln_conv2d_params *p)
{
    if (!ctx) return kiln__errp(KILN_STATUS_INVALID, "conv2d: NULL context");
    KILN_IN(x);
    KILN_IN(w);
    if (kiln__check_f32("conv2d", x, "x") < 0 || kiln__check_f32("conv2d", w, "weight") < 0) return NULL;
    if (b && kiln__check_f32("conv2d", b, "bias") < 0) return NULL;
    kiln_conv2d_params dp = kiln_conv2d_default_params();
    kiln_conv2d_geom g;
    if (conv_geom(x, w, b, p ? p : &dp, &g) < 0) return NULL;

    /* A channels-last x gives a channels-last y: no reorders between layers. */
    g.nhwc = kiln_is_channels_last(x) && g.groups == 1;
    kiln_tensor *in[N_IN] = {g.nhwc ? x : kiln_contiguous(ctx, x), kiln_contiguous(ctx, w),
                             b ? kiln_contiguous(ctx, b) : NULL};
    KILN_IN(in[IN_X]);
    KILN_IN(in[IN_W]);
    if (b) KILN_IN(in[IN_B]);
    const int64_t ys[4] = {g.n, g.o, g.oh, g.ow};
    /* (N, O, OH, OW) */
    kiln_tensor *y = g.nhwc ? kiln_empty_channels_last(ctx, ys) : kiln_empty(ctx, KILN_DTYPE_F32, 4, ys);
    KILN_IN(y);
    if (ctx->backend->conv->conv2d_fwd(ctx, &g, in[IN_X]->data, in[IN_W]->data, b ? in[IN_B]->data : NULL,
                                       y->data) < 0)
        return NULL;

    kiln_status st;
    kiln_node *n = kiln__record(ctx, "conv2d", conv2d_bwd, N_IN, in, 1, &y, sizeof(conv_saved), &st);
    if (st < 0) return NULL;
    if (n) ((conv_saved *)n->saved)->g = g;
    return y;
}
