/* bench/bench_models: whole-model training throughput, the twin of the 'resnet34_64' line of
 * bench/torch_throughput.py (a copy of ../shared/reference/torch_throughput.py):
 *   m = torchvision.models.resnet34(num_classes=10); SGD(lr=0.01, momentum=0.9)
 *   x (32, 3, 64, 64) ~ N(0, 1), y (32) in [0, 10); one step = zero_grad, forward,
 *   cross_entropy, backward, optimizer step; reported as images per second.
 * Run: python3 bench/torch_throughput.py resnet34_64  beside  bench_ops (2 threads). */
#include "bench.h"

#include "kiln/models.h"
#include "nn/nn_internal.h"

#include <stdio.h>

typedef struct resnet_bench {
    kiln_model *model;
    kiln_optim *opt;
    kiln_tensor *x; /* (N, 3, 64, 64) */
    kiln_tensor *y; /* (N) i64 labels */
} resnet_bench;

static void train_step(kiln_ctx *ctx, void *user)
{
    resnet_bench *b = user;
    kiln_optim_zero_grad(b->opt);
    kiln_tensor *logits = kiln_model_forward(b->model, ctx, b->x); /* (N, 10) */
    kiln_tensor *loss = kiln_cross_entropy(ctx, logits, b->y, NULL);
    if (!loss || kiln_backward(ctx, loss) < 0 || kiln_optim_step(b->opt) < 0)
        fprintf(stderr, "bench resnet34: %s\n", kiln_last_error());
}

/* Forward FLOPs of the convs and linears, from the output shapes of the last forward. */
static double forward_flops(kiln_model *model)
{
    double f = 0;
    for (size_t i = 0; i < kiln_model_n_modules(model); i++) {
        const kiln_module *m = kiln_model_module_at(model, i);
        double out = 1;
        for (int d = 0; d < m->out_ndim; d++) out *= (double)m->out_shape[d];
        if (m->kind == KILN_MODULE_CONV2D) f += 2.0 * out * (double)(m->in / m->conv.groups) * m->kh * m->kw;
        if (m->kind == KILN_MODULE_LINEAR) f += 2.0 * out * (double)m->in;
    }
    return f;
}

void kiln_bench_resnet34(kiln_ctx *ctx)
{
    const int64_t bs = 32, size = 64, n_classes = 10;
    resnet_bench b = {0};
    kiln_sgd_params sp = kiln_sgd_default_params();
    sp.lr = 0.01;
    sp.momentum = 0.9;
    int64_t labels[32];
    for (int64_t i = 0; i < bs; i++) labels[i] = (i * 7 + 3) % n_classes;
    if (!(b.model = kiln_resnet34_new(3, n_classes)) || kiln_model_alloc(b.model, ctx) < 0 ||
        !(b.opt = kiln_optim_new_sgd(kiln_model_store(b.model), &sp)) ||
        !(b.x = kiln_randn(ctx, 4, (int64_t[]){bs, 3, size, size}, 0.0f, 1.0f)) ||
        !(b.y = kiln_from_data(ctx, KILN_DTYPE_I64, 1, (int64_t[]){bs}, labels))) {
        fprintf(stderr, "bench resnet34: setup failed: %s\n", kiln_last_error());
        goto done;
    }
    kiln_mark mark = kiln_step_mark(ctx);
    train_step(ctx, &b); /* fills the output shapes for the FLOP count */
    kiln_step_rewind(ctx, mark);
    double flops = 3 * forward_flops(b.model); /* forward + backward, counted as torch_ops.py does */
    for (int cl = 0; cl < 2; cl++) { /* plain NCHW, then channels-last */
        kiln_model_set_channels_last(b.model, cl);
        double dt = kiln_bench_run(ctx, cl ? "resnet34 64px bs32 train step, nhwc" : "resnet34 64px bs32 train step, nchw",
                                   train_step, &b, flops, 0);
        printf("resnet34_64px_bs32 %s train img: %.0f per s  (%.1f ms/step)\n", cl ? "nhwc" : "nchw", (double)bs / dt,
               dt * 1e3);
    }
    fflush(stdout);
done:
    kiln_optim_free(b.opt);
    kiln_model_free(b.model);
}
