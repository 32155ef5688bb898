/* The AWD-LSTM language model's training step, the twin of torch_throughput.py's 'awd'
 * (vocab 20,000, emb 400, LSTMs 1152 / 1152 / 400, tied decoder, bptt 70, bs 32, Adam lr 1e-3,
 * cross-entropy over every position), on random ids: kiln_awd_lstm_lm_new with its dropouts
 * off (the twin's work) and with fastai's LM dropouts (awd_lstm_lm_config, drop_mult 1), the
 * hidden state carried as fastai does. The step takes its loss through the fused decoder
 * (kiln_awd_lstm_set_fused_decoder + kiln_awd_lstm_loss: no (2240, 20000) logits); 'unfused' runs
 * the dropouts-off step through the logits and kiln_cross_entropy instead. Each configuration has
 * its own context, so one's step arena is gone before the next starts. Prints tokens/s, the
 * context's arena peak and the process's peak RSS during the configuration (VmHWM, reset through
 * /proc/self/clear_refs before each), and kiln's peak memory at the end.
 * bench_ops THREADS SECONDS awd [off|drop|unfused] (default: off, then drop). */
#include "bench.h"

#include <stdio.h>
#include <string.h>

typedef struct awd_bench {
    kiln_model *m;
    kiln_optim *opt;
    bool fused;
    kiln_tensor *x, *y; /* (B, T) I64 over xs, ys: they survive the step rewinds */
    kiln_tensor xt, yt;
    int64_t xs[32 * 70], ys[32 * 70];
} awd_bench;

static void step(kiln_ctx *ctx, void *user)
{
    awd_bench *b = user;
    kiln_optim_zero_grad(b->opt);
    kiln_tensor *out = kiln_model_forward(b->m, ctx, b->x); /* fused: the decoder's input (B, T, 400) */
    kiln_tensor *loss = out ? kiln_awd_lstm_loss(b->m, ctx, out, b->y, NULL) : NULL;
    if (!loss || kiln_backward(ctx, loss) || kiln_optim_step(b->opt))
        fprintf(stderr, "bench awd: %s\n", kiln_last_error());
}

/* Linux: resets the process's peak RSS (VmHWM) to its current RSS; then reads it in MB (-1: none) */
static void hwm_reset(void)
{
    FILE *f = fopen("/proc/self/clear_refs", "w");
    if (f) fputs("5", f), fclose(f);
}
static double hwm_mb(void)
{
    FILE *f = fopen("/proc/self/status", "r");
    char line[256];
    double kb = -1;
    while (f && fgets(line, sizeof line, f))
        if (!strncmp(line, "VmHWM:", 6)) sscanf(line + 6, "%lf", &kb);
    if (f) fclose(f);
    return kb < 0 ? -1 : kb / 1e3;
}

static void run(int threads, const char *name, float drop_mult, bool fused)
{
    const int64_t V = 20000, B = 32, T = 70;
    kiln_ctx_params cp = kiln_ctx_default_params();
    cp.n_threads = threads;
    cp.seed = 0;
    hwm_reset();
    kiln_ctx *ctx = kiln_ctx_new(&cp);
    kiln_awd_lstm_params p = kiln_awd_lstm_lm_config(V, drop_mult);
    static awd_bench b;
    b = (awd_bench){.m = kiln_awd_lstm_lm_new(&p), .fused = fused};
    if (!ctx || !b.m || kiln_model_alloc(b.m, ctx) || kiln_awd_lstm_set_fused_decoder(b.m, fused)) goto fail;
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
    printf("%-44s %8.0f tokens/s  (%.1f ms/step)  arena peak %.1f MB, peak RSS %.1f MB\n", name,
           (double)(B * T) / dt, dt * 1e3, (double)kiln_step_peak_bytes(ctx) / 1e6, hwm_mb());
    fflush(stdout);
    kiln_optim_free(b.opt);
    kiln_model_free(b.m);
    kiln_ctx_free(ctx);
    return;
fail:
    fprintf(stderr, "bench awd: %s\n", kiln_last_error());
    kiln_optim_free(b.opt);
    kiln_model_free(b.m);
    kiln_ctx_free(ctx);
}

void kiln_bench_awd(kiln_ctx *ctx, const char *which)
{
    int threads = kiln_ctx_threads(ctx);
    bool all = !which || !*which;
    if (all || !strcmp(which, "off")) run(threads, "awd_lstm_lm train, dropouts off (the twin)", 0.0f, true);
    if (all || !strcmp(which, "drop")) run(threads, "awd_lstm_lm train, fastai LM dropouts", 1.0f, true);
    if (which && !strcmp(which, "unfused")) run(threads, "awd_lstm_lm train, dropouts off, unfused", 0.0f, false);
    printf("peak memory held by kiln: %.1f MB\n", (double)kiln_mem_peak_bytes() / 1e6);
}
