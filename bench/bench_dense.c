/* bench/bench_dense: the dense lines of torch_ops.py, same shapes and FLOP counts:
 *  'matmul 1024x1024x1024 fwd'                       a (1024, 1024) @ b (1024, 1024)
 *  'embed+linear 400->20000 +xent 2240 tok fwd+bwd'  zero_grad; cross_entropy(
 *      linear(embedding(idx, emb), dec_w, dec_b), tgt).backward() with emb (20000, 400),
 *      dec_w (20000, 400), dec_b (20000), idx and tgt (2240) uniform in [0, 20000). */
#include "bench.h"

#include <math.h>
#include <stdio.h>

typedef struct mm_bench {
    kiln_tensor *a, *b; /* (1024, 1024) each */
} mm_bench;

static void mm_fwd(kiln_ctx *ctx, void *user)
{
    mm_bench *m = user;
    if (!kiln_matmul(ctx, m->a, m->b)) fprintf(stderr, "bench matmul: %s\n", kiln_last_error());
}

typedef struct dec_bench {
    kiln_store *store;
    kiln_tensor *emb, *w, *b; /* (V, E), (V, E), (V) */
    kiln_tensor *idx, *tgt;   /* (N) i64 */
} dec_bench;

static void dec_fb(kiln_ctx *ctx, void *user)
{
    dec_bench *d = user;
    kiln_store_zero_grad(d->store);
    kiln_tensor *e = kiln_embedding(ctx, d->idx, d->emb);          /* (N, E) */
    kiln_tensor *logits = kiln_linear(ctx, e, d->w, d->b);         /* (N, V) */
    kiln_tensor *loss = kiln_cross_entropy(ctx, logits, d->tgt, NULL); /* () */
    if (!loss || kiln_backward(ctx, loss) < 0) fprintf(stderr, "bench embed+linear+xent: %s\n", kiln_last_error());
}

void kiln_bench_dense(kiln_ctx *ctx)
{
    kiln_mark m0 = kiln_step_mark(ctx);
    const int64_t n = 1024;
    mm_bench mm = {kiln_randn(ctx, 2, (int64_t[]){n, n}, 0, 1), kiln_randn(ctx, 2, (int64_t[]){n, n}, 0, 1)};
    if (!mm.a || !mm.b) goto fail;
    kiln_bench_run(ctx, "matmul 1024x1024x1024 fwd", mm_fwd, &mm, 2.0 * n * n * n, 0);
    kiln_step_rewind(ctx, m0);

    const int64_t V = 20000, E = 400, N = 32 * 70;
    dec_bench d = {.store = kiln_store_new()};
    if (!d.store) goto fail;
    d.emb = kiln_store_param(d.store, "emb.weight", 2, (int64_t[]){V, E});
    d.w = kiln_store_param(d.store, "dec.weight", 2, (int64_t[]){V, E});
    d.b = kiln_store_param(d.store, "dec.bias", 1, (int64_t[]){V});
    if (!d.emb || !d.w || !d.b || kiln_store_alloc(d.store) < 0) goto fail_store;
    float bound = 1.0f / sqrtf((float)E);
    kiln_rng_normal(ctx, d.emb->data, (size_t)(V * E), 0.0f, 1.0f);
    kiln_rng_uniform(ctx, d.w->data, (size_t)(V * E), -bound, bound);
    kiln_rng_uniform(ctx, d.b->data, (size_t)V, -bound, bound);
    int64_t ids[2 * 32 * 70];
    for (int64_t i = 0; i < 2 * N; i++) ids[i] = (int64_t)(kiln_philox_uniform(7, (uint64_t)i) * (float)V) % V;
    d.idx = kiln_from_data(ctx, KILN_DTYPE_I64, 1, &N, ids);
    d.tgt = kiln_from_data(ctx, KILN_DTYPE_I64, 1, &N, ids + N);
    if (!d.idx || !d.tgt) goto fail_store;
    kiln_bench_run(ctx, "embed+linear 400->20000 +xent 2240 tok fwd+bwd", dec_fb, &d, 3.0 * 2 * N * E * V, 0);
    kiln_store_free(d.store);
    kiln_step_rewind(ctx, m0);
    return;
fail_store:
    kiln_store_free(d.store);
fail:
    fprintf(stderr, "bench dense: %s\n", kiln_last_error());
    kiln_step_rewind(ctx, m0);
}
