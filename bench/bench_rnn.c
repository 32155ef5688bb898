/* bench/bench_rnn: the LSTM line of torch_ops.py, 'lstm 1152->1152 seq70 bs32 fwd+bwd':
 * nn.LSTM(1152, 1152, batch_first=True) on x (32, 70, 1152) requiring grad, timing
 * zero_grad + lstm(x)[0].sum().backward(). sum().backward() is seeded here as a ones
 * gradient on y, which is the same computation. */
#include "bench.h"

#include <math.h>
#include <stdio.h>

typedef struct lstm_bench {
    kiln_store *store;
    kiln_tensor *x, *w_ih, *w_hh, *b_ih, *b_hh; /* x (B, T, I) is a store tensor so its grad survives rewinds */
    kiln_tensor *ones;                          /* (B, T, H), d sum(y) / dy */
} lstm_bench;

static void lstm_fb(kiln_ctx *ctx, void *user)
{
    lstm_bench *b = user;
    kiln_store_zero_grad(b->store);
    kiln_tensor *y = kiln_lstm(ctx, b->x, NULL, NULL, b->w_ih, b->w_hh, b->b_ih, b->b_hh, NULL, NULL);
    if (!y || kiln_backward_with(ctx, y, b->ones) < 0) fprintf(stderr, "bench lstm: %s\n", kiln_last_error());
}

void kiln_bench_rnn(kiln_ctx *ctx)
{
    const int64_t B = 32, T = 70, I = 1152, H = 1152;
    lstm_bench b = {.store = kiln_store_new()};
    if (!b.store) goto fail;
    b.x = kiln_store_param(b.store, "x", 3, (int64_t[]){B, T, I});
    b.w_ih = kiln_store_param(b.store, "weight_ih_l0", 2, (int64_t[]){4 * H, I});
    b.w_hh = kiln_store_param(b.store, "weight_hh_l0", 2, (int64_t[]){4 * H, H});
    b.b_ih = kiln_store_param(b.store, "bias_ih_l0", 1, (int64_t[]){4 * H});
    b.b_hh = kiln_store_param(b.store, "bias_hh_l0", 1, (int64_t[]){4 * H});
    if (!b.x || !b.w_ih || !b.w_hh || !b.b_ih || !b.b_hh || kiln_store_alloc(b.store) < 0) goto fail;
    kiln_rng_normal(ctx, b.x->data, (size_t)kiln_numel(b.x), 0.0f, 1.0f);
    const float k = 1.0f / sqrtf((float)H); /* PyTorch's LSTM init: U(-1/sqrt(H), 1/sqrt(H)) */
    kiln_tensor *w[4] = {b.w_ih, b.w_hh, b.b_ih, b.b_hh};
    for (int i = 0; i < 4; i++) kiln_rng_uniform(ctx, w[i]->data, (size_t)kiln_numel(w[i]), -k, k);
    b.ones = kiln_full(ctx, 3, (int64_t[]){B, T, H}, 1.0f);
    if (!b.ones) goto fail;
    const double fl = 2.0 * 4 * H * (I + H) * B * T; /* forward FLOPs, as torch_ops.py counts */
    kiln_bench_run(ctx, "lstm 1152->1152 seq70 bs32 fwd+bwd", lstm_fb, &b, 3 * fl, 0);
    kiln_store_free(b.store);
    return;
fail:
    fprintf(stderr, "bench lstm: setup failed: %s\n", kiln_last_error());
    kiln_store_free(b.store);
}
