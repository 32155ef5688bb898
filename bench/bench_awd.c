/* The AWD-LSTM language model's training step, the twin of torch_throughput.py's 'awd'
 * (vocab 20,000, emb 400, LSTMs 1152 / 1152 / 400, tied decoder, bptt 70, bs 32, Adam lr 1e-3,
 * cross-entropy over every position), on random ids: kiln_awd_lstm_lm_new with its dropouts
 * off (the twin's work) and with fastai's LM dropouts (awd_lstm_lm_config, drop_mult 1), the
 * hidden state carried as fastai does. Prints tokens/s and kiln's peak memory.
 * bench_ops THREADS SECONDS awd. */
#include "bench.h"

#include <stdio.h>

typedef struct awd_bench {
    kiln_model *m;
    kiln_optim *opt;
    kiln_tensor *x, *y; /* (B, T) I64 over xs, ys: they survive the step rewinds */
    kiln_tensor xt, yt;
    int64_t xs[32 * 70], ys[32 * 70];
} awd_bench;

static void step(kiln_ctx *ctx, void *user)
{
    awd_bench *b = user;
    kiln_optim_zero_grad(b->opt);
    kiln_tensor *out = kiln_model_forward(b->m, ctx, b->x);
    kiln_tensor *loss = out ? kiln_cross_entropy(ctx, kiln_reshape(ctx, out, 2, (int64_t[]){-1, out->shape[2]}),
                                                 kiln_reshape(ctx, b->y, 1, (int64_t[]){-1}), NULL)
                            : NULL;
    if (!loss || kiln_backward(ctx, loss) || kiln_optim_step(b->opt))
        fprintf(stderr, "bench awd: %s\n", kiln_last_error());
}

static void run(kiln_ctx *ctx, const char *name, float drop_mult)
{
    const int64_t V = 20000, B = 32, T = 70;
    kiln_awd_lstm_params p = kiln_awd_lstm_lm_config(V, drop_mult);
    static awd_bench b;
    b = (awd_bench){.m = kiln_awd_lstm_lm_new(&p)};
    if (!b.m || kiln_model_alloc(b.m, ctx)) goto fail;
    kiln_adam_params ap = kiln_adam_default_params();
    ap.lr = 1e-3f;
    b.opt = kiln_optim_new_adam(kiln_model_store(b.m), &ap);
    b.x = kiln_tensor_wrap(&b.xt, KILN_DTYPE_I64, 2, (int64_t[]){B, T}, b.xs);
    b.y = kiln_tensor_wrap(&b.yt, KILN_DTYPE_I64, 2, (int64_t[]){B, T}, b.ys);
    if (!b.opt || !b.x || !b.y) goto fail;
    uint64_t c = kiln_rng_take(ctx, 2 * B * T);
    for (int64_t i = 0; i < B * T; i++) {
        b.xs[i] = (int64_t)(kiln_philox_uniform(7, c + i) * (float)V) % V;
        b.ys[i] = (int64_t)(kiln_philox_uniform(7, c + B * T + i) * (float)V) % V;
    }
    kiln_model_train(b.m, true);
    double dt = kiln_bench_run(ctx, name, step, &b, 0, -1);
    printf("%-44s %8.0f tokens/s  (%.1f ms/step)\n", name, (double)(B * T) / dt, dt * 1e3);
    kiln_optim_free(b.opt);
    kiln_model_free(b.m);
    return;
fail:
    fprintf(stderr, "bench awd: %s\n", kiln_last_error());
    kiln_optim_free(b.opt);
    kiln_model_free(b.m);
}

void kiln_bench_awd(kiln_ctx *ctx)
{
    run(ctx, "awd_lstm_lm train, dropouts off (the twin)", 0.0f);
    run(ctx, "awd_lstm_lm train, fastai LM dropouts", 1.0f);
    printf("peak memory held by kiln: %.1f MB\n", (double)kiln_mem_peak_bytes() / 1e6);
}
