/* bench/bench_autograd: the ops whose loops moved from src/autograd into the kernel table
 * (issue 9), each forward + backward on a tensor big enough to run threaded:
 *   'dropout p0.3 64x64x32x32 fwd+bwd'          mask kernel, then gx += gy * mask
 *   'apply_mask 64x70x1152 by 64x1x1152 fwd+bwd' broadcast multiply, its reduced gradient
 *   'permute+contiguous 64x64x32x32 fwd+bwd'    strided copy, strided gradient add
 *   'linear+bias 256->256 bs8192 fwd+bwd'        bias row fill, GEMMs, column sum
 *   'mse 5.2M fwd+bwd'                          chunked sum, pointwise gradient
 * Gradients accumulate across calls (the store is never zeroed), as in bench_conv.
 * Run: bench_ops 2 SECONDS autograd. */
#include "bench.h"

#include <stdio.h>

typedef struct ag_bench {
    kiln_store *s;
    kiln_tensor *x, *h, *m, *xl, *w, *b, *z;
} ag_bench;

static void check(const kiln_tensor *loss, const char *what)
{
    if (!loss) fprintf(stderr, "bench %s: %s\n", what, kiln_last_error());
}

static void back(kiln_ctx *ctx, kiln_tensor *y, const char *what)
{
    kiln_tensor *loss = y ? kiln_sum(ctx, y) : NULL;
    check(loss, what);
    if (loss && kiln_backward(ctx, loss) < 0) check(NULL, what);
}

static void dropout_fb(kiln_ctx *ctx, void *user)
{
    ag_bench *b = user;
    back(ctx, kiln_dropout(ctx, b->x, 0.3f, true, NULL), "dropout");
}

static void mask_fb(kiln_ctx *ctx, void *user)
{
    ag_bench *b = user;
    back(ctx, kiln_apply_mask(ctx, b->h, b->m), "apply_mask");
}

static void permute_fb(kiln_ctx *ctx, void *user)
{
    ag_bench *b = user;
    back(ctx, kiln_contiguous(ctx, kiln_permute(ctx, b->x, (int[]){0, 2, 3, 1})), "permute+contiguous");
}

static void linear_fb(kiln_ctx *ctx, void *user)
{
    ag_bench *b = user;
    back(ctx, kiln_linear(ctx, b->xl, b->w, b->b), "linear");
}

static void mse_fb(kiln_ctx *ctx, void *user)
{
    ag_bench *b = user;
    kiln_tensor *loss = kiln_mse_loss(ctx, b->h, b->z, KILN_REDUCTION_MEAN);
    check(loss, "mse");
    if (loss && kiln_backward(ctx, loss) < 0) check(NULL, "mse");
}

void kiln_bench_autograd(kiln_ctx *ctx)
{
    ag_bench b = {.s = kiln_store_new()};
    if (!b.s) goto fail;
    b.x = kiln_store_param(b.s, "x", 4, (int64_t[]){64, 64, 32, 32});
    b.h = kiln_store_param(b.s, "h", 3, (int64_t[]){64, 70, 1152});
    b.m = kiln_store_param(b.s, "m", 3, (int64_t[]){64, 1, 1152});
    b.xl = kiln_store_param(b.s, "xl", 2, (int64_t[]){8192, 256});
    b.w = kiln_store_param(b.s, "w", 2, (int64_t[]){256, 256});
    b.b = kiln_store_param(b.s, "b", 1, (int64_t[]){256});
    b.z = kiln_store_buffer(b.s, "z", 3, (int64_t[]){64, 70, 1152});
    if (!b.x || !b.h || !b.m || !b.xl || !b.w || !b.b || !b.z || kiln_store_alloc(b.s) < 0) goto fail;
    kiln_tensor *all[] = {b.x, b.h, b.m, b.xl, b.w, b.b};
    for (int i = 0; i < 6; i++) kiln_rng_normal(ctx, all[i]->data, (size_t)kiln_numel(all[i]), 0.0f, 1.0f);
    kiln_bench_run(ctx, "dropout p0.3 64x64x32x32 fwd+bwd", dropout_fb, &b, 0, 0);
    kiln_bench_run(ctx, "apply_mask 64x70x1152 by 64x1x1152 fwd+bwd", mask_fb, &b, 0, 0);
    kiln_bench_run(ctx, "permute+contiguous 64x64x32x32 fwd+bwd", permute_fb, &b, 0, 0);
    kiln_bench_run(ctx, "linear+bias 256->256 bs8192 fwd+bwd", linear_fb, &b, 3.0 * 2 * 8192 * 256 * 256, 0);
    kiln_bench_run(ctx, "mse 5.2M fwd+bwd", mse_fb, &b, 0, 0);
    kiln_store_free(b.s);
    return;
fail:
    fprintf(stderr, "bench autograd: %s\n", kiln_last_error());
    kiln_store_free(b.s);
}
