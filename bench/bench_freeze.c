/* bench/bench_freeze: what freezing saves per training step (fastai freeze / train_bn;
 * kiln skips every frozen parameter's weight-gradient kernel, and without train_bn every
 * op of the frozen body in backward). One step = zero_grad, forward, cross-entropy,
 * backward, AdamW step, on random data, in three settings:
 *   unfrozen                everything trains
 *   frozen, train_bn        freeze(): the last group trains, plus the body's BatchNorm
 *   frozen, no train_bn     freeze() with train_bn off: only the head trains
 * Models as the vision CLI builds them (kiln_arch_find, its layout): resnet18 (ResNet-18
 * body + fastai head, three groups) on bs 64 of 3x64x64, simple-resnet (two groups) on bs
 * 64 of 1x28x28. The three settings run interleaved, 5 rounds, each timed for SECONDS;
 * the summary lines give the median and the best. Run: build/bench_ops 2 3 freeze
 * (docs/benchmarks.md). */
#include "bench.h"

#include "kiln/apps.h"

#include <stdio.h>
#include <string.h>

typedef struct freeze_bench {
    kiln_model *model;
    kiln_optim *opt;
    kiln_tensor *x, *y;
} freeze_bench;

static void step(kiln_ctx *ctx, void *user)
{
    freeze_bench *b = user;
    kiln_optim_zero_grad(b->opt);
    kiln_tensor *loss = kiln_cross_entropy(ctx, kiln_model_forward(b->model, ctx, b->x), b->y, NULL);
    if (!loss || kiln_backward(ctx, loss) < 0 || kiln_optim_step(b->opt) < 0)
        fprintf(stderr, "bench freeze: %s\n", kiln_last_error());
}

#define ROUNDS 5

static const char *const g_modes[] = {"unfrozen", "frozen, train_bn", "frozen, no train_bn"};

static double median(const double *v)
{
    double s[ROUNDS];
    memcpy(s, v, sizeof s);
    for (int i = 1; i < ROUNDS; i++) /* insertion sort */
        for (int j = i; j > 0 && s[j] < s[j - 1]; j--) {
            double t = s[j];
            s[j] = s[j - 1], s[j - 1] = t;
        }
    return s[ROUNDS / 2];
}

static double best(const double *v)
{
    double b = v[0];
    for (int i = 1; i < ROUNDS; i++) b = v[i] < b ? v[i] : b;
    return b;
}

static void one(kiln_ctx *ctx, const char *arch, int64_t bs, int64_t n_in, int64_t size)
{
    const int64_t n_classes = 10;
    freeze_bench b = {0};
    const kiln_arch *a = kiln_arch_find(arch);
    kiln_adam_params ap = kiln_adam_default_params();
    int64_t labels[256];
    for (int64_t i = 0; i < bs && i < 256; i++) labels[i] = (i * 7 + 3) % n_classes;
    if (!a || !(b.model = a->make((int)n_in, (int)n_classes)) || kiln_model_alloc(b.model, ctx) < 0 ||
        !(b.opt = kiln_optim_new_adam(kiln_model_store(b.model), &ap)) ||
        kiln_optim_set_threads(b.opt, kiln_ctx_threads(ctx)) < 0 ||
        !(b.x = kiln_randn(ctx, 4, (int64_t[]){bs, n_in, size, size}, 0.0f, 1.0f)) ||
        !(b.y = kiln_from_data(ctx, KILN_DTYPE_I64, 1, (int64_t[]){bs}, labels))) {
        fprintf(stderr, "bench freeze %s: setup failed: %s\n", arch, kiln_last_error());
        goto done;
    }
    kiln_model_set_channels_last(b.model, a->nhwc);
    /* the three settings interleaved, ROUNDS times (a shared machine's noise moves them
     * together); the summary gives each one's median and best */
    double dt[3][ROUNDS];
    int64_t trainable[3];
    for (int r = 0; r < ROUNDS; r++)
        for (int m = 0; m < 3; m++) {
            kiln_model_set_train_bn(b.model, m != 2);
            kiln_model_freeze_to(b.model, m ? -1 : 0);
            kiln_optim_clear_state(b.opt);
            trainable[m] = kiln_model_n_params(b.model, true);
            char name[96];
            snprintf(name, sizeof name, "%s bs%lld %lldx%lld, %s", arch, (long long)bs, (long long)size,
                     (long long)size, g_modes[m]);
            dt[m][r] = kiln_bench_run(ctx, name, step, &b, 0, 0);
        }
    double med0 = median(dt[0]);
    for (int m = 0; m < 3; m++)
        printf("freeze %-14s %-20s median %7.1f ms/step (%4.2fx of unfrozen), best %7.1f  trainable %lld of %lld\n",
               arch, g_modes[m], median(dt[m]) * 1e3, median(dt[m]) / med0, best(dt[m]) * 1e3,
               (long long)trainable[m], (long long)kiln_model_n_params(b.model, false));
    fflush(stdout);
done:
    kiln_optim_free(b.opt);
    kiln_model_free(b.model);
}

void kiln_bench_freeze(kiln_ctx *ctx)
{
    one(ctx, "resnet18", 64, 3, 64);
    one(ctx, "simple-resnet", 64, 1, 28);
}
