/* bench/bench_conv: the conv-family lines of torch_ops.py.
 *   'conv3x3 64->64 32x32 bs64 fwd+bwd': nn.Conv2d(64, 64, 3, 1, 1, bias=False) on x
 *     (64, 64, 32, 32) requiring grad, timing conv.zero_grad(); conv(x).sum().backward();
 *   'batchnorm2d 64ch 32x32 bs64 fwd+bwd': nn.BatchNorm2d(64) (train mode, affine, running
 *     stats) on the same shape, timing bn(x).sum().backward().
 * As in PyTorch, x's gradient accumulates across calls and only the conv weight's is
 * zeroed, so x lives in its own store (its grad survives the arena rewinds). */
#include "bench.h"

#include <math.h>
#include <stdio.h>

typedef struct conv_bench {
    kiln_store *data;   /* x */
    kiln_store *params; /* w, or the batch norm's weight, bias and running stats */
    kiln_tensor *x;     /* (N, C, H, W) */
    kiln_tensor *w;     /* conv (O, C, 3, 3); batch norm weight (C) */
    kiln_tensor *b, *rm, *rv; /* batch norm (C) */
} conv_bench;

static void conv_fb(kiln_ctx *ctx, void *user)
{
    conv_bench *b = user;
    kiln_store_zero_grad(b->params);
    kiln_conv2d_params p = kiln_conv2d_default_params();
    p.padding[0] = p.padding[1] = 1;
    kiln_tensor *y = kiln_conv2d(ctx, b->x, b->w, NULL, &p);
    if (!y || kiln_backward(ctx, kiln_sum(ctx, y)) < 0) fprintf(stderr, "bench conv: %s\n", kiln_last_error());
}

static void bn_fb(kiln_ctx *ctx, void *user)
{
    conv_bench *b = user;
    kiln_tensor *y = kiln_batch_norm(ctx, b->x, b->w, b->b, b->rm, b->rv, true, 0.1f, 1e-5f);
    if (!y || kiln_backward(ctx, kiln_sum(ctx, y)) < 0) fprintf(stderr, "bench batchnorm: %s\n", kiln_last_error());
}

/* x in its own store, filled with N(0, 1). */
static kiln_store *make_x(kiln_ctx *ctx, kiln_tensor **x, const int64_t *shape)
{
    kiln_store *s = kiln_store_new();
    if (!s) return NULL;
    *x = kiln_store_param(s, "x", 4, shape);
    if (!*x || kiln_store_alloc(s) < 0) {
        kiln_store_free(s);
        return NULL;
    }
    kiln_rng_normal(ctx, (*x)->data, (size_t)kiln_numel(*x), 0.0f, 1.0f);
    return s;
}

void kiln_bench_conv(kiln_ctx *ctx)
{
    const int64_t N = 64, C = 64, H = 32, W = 32;
    const int64_t xs[4] = {N, C, H, W}, ws[4] = {C, C, 3, 3}, cs[1] = {C};
    conv_bench b = {0};
    if (!(b.data = make_x(ctx, &b.x, xs)) || !(b.params = kiln_store_new())) goto fail;
    b.w = kiln_store_param(b.params, "weight", 4, ws);
    if (!b.w || kiln_store_alloc(b.params) < 0) goto fail;
    const float k = 1.0f / sqrtf((float)(C * 9)); /* PyTorch's default conv init bound */
    kiln_rng_uniform(ctx, b.w->data, (size_t)kiln_numel(b.w), -k, k);
    const double f = 2.0 * N * H * W * C * C * 9; /* forward FLOPs, as torch_ops.py counts */
    kiln_bench_run(ctx, "conv3x3 64->64 32x32 bs64 fwd+bwd", conv_fb, &b, 3 * f, 0);
    kiln_store_free(b.params);
    kiln_store_free(b.data);

    b = (conv_bench){0};
    if (!(b.data = make_x(ctx, &b.x, xs)) || !(b.params = kiln_store_new())) goto fail;
    b.w = kiln_store_param(b.params, "weight", 1, cs);
    b.b = kiln_store_param(b.params, "bias", 1, cs);
    b.rm = kiln_store_buffer(b.params, "running_mean", 1, cs);
    b.rv = kiln_store_buffer(b.params, "running_var", 1, cs);
    if (!b.w || !b.b || !b.rm || !b.rv || kiln_store_alloc(b.params) < 0) goto fail;
    for (int64_t c = 0; c < C; c++) ((float *)b.w->data)[c] = ((float *)b.rv->data)[c] = 1.0f;
    kiln_bench_run(ctx, "batchnorm2d 64ch 32x32 bs64 fwd+bwd", bn_fb, &b, 0, 0);
    kiln_store_free(b.params);
    kiln_store_free(b.data);
    return;
fail:
    fprintf(stderr, "bench conv: setup failed: %s\n", kiln_last_error());
    kiln_store_free(b.params);
    kiln_store_free(b.data);
}
