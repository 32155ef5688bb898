/* The two small-model training steps of issue 12, built from engine ops, twins of
 * torch_throughput.py's 'collab' and 'tabular' (bs 64, random data):
 *   collab: fastai's EmbeddingDotBias, user / item tables (700 x 50, 9100 x 50) and their
 *     biases (700 x 1, 9100 x 1): sigmoid(sum(u * i, 1) + ub + ib) * 5.5, MSE, AdamW lr 5e-3
 *     wd 0.1 (the twin's Adam(weight_decay=0.1) is L2; the issue asks for fastai's AdamW, whose
 *     work per element is the same). 'collab' runs it with the default (dense) optimizer step,
 *     then with the four tables' lazy step (kiln_optim_set_sparse).
 *   tabular: 40 embeddings of 30 x 10 (one per column of a (B, 40) index batch), cat with 30
 *     continuous columns, BN(430), Linear 430->200, ReLU, BN, 200->100, ReLU, BN, 100->1, MSE,
 *     Adam lr 1e-3 (the twin's torch.optim.Adam: L2 wd 0).
 * Batches cycle through a pool of 64 random ones (the twin reuses one), so the touched rows
 * change from step to step. Prints ratings or rows per second, then a breakdown of one step
 * (forward, backward, zero_grad, optimizer step) over the same steps, timed phase by phase.
 * bench_ops THREADS SECONDS tab [collab|tabular|collab-dense|collab-sparse] (default: all). */
#include "bench.h"

#include <stdio.h>
#include <string.h>
#include <time.h>

#define BS 64
#define POOL 64

static double now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

typedef struct tab_bench {
    kiln_model *m;
    kiln_optim *opt;
    int which;  /* 0 collab, 1 tabular */
    int k;      /* batch of the pool used next */
    /* collab */
    kiln_tensor *u_w, *i_w, *ub_w, *ib_w;
    int64_t users[POOL][BS], items[POOL][BS];
    float ratings[POOL][BS];
    /* tabular */
    kiln_module *emb[40], *mlp;
    int64_t cat[POOL][BS * 40]; /* (B, 40) */
    float cont[POOL][BS * 30];  /* (B, 30) */
    float y[POOL][BS];          /* (B, 1) */
    double t_fwd, t_bwd, t_zero, t_step;
    bool timed;
} tab_bench;

/* The dot-bias forward: (B) predictions in (0, 5.5). */
static kiln_tensor *collab_fwd(tab_bench *b, kiln_ctx *ctx, kiln_tensor *u, kiln_tensor *i)
{
    kiln_tensor *eu = kiln_embedding(ctx, u, b->u_w);   /* (B, 50) */
    kiln_tensor *ei = kiln_embedding(ctx, i, b->i_w);   /* (B, 50) */
    kiln_tensor *bu = kiln_embedding(ctx, u, b->ub_w);  /* (B, 1) */
    kiln_tensor *bi = kiln_embedding(ctx, i, b->ib_w);  /* (B, 1) */
    kiln_tensor *dot = kiln_sum_dims(ctx, kiln_mul(ctx, eu, ei), 1, (int[]){1}, false); /* (B) */
    kiln_tensor *r = kiln_add(ctx, kiln_add(ctx, dot, kiln_squeeze(ctx, bu, 1)), kiln_squeeze(ctx, bi, 1));
    return kiln_mul_scalar(ctx, kiln_sigmoid(ctx, r), 5.5f);
}

static kiln_tensor *tabular_fwd(tab_bench *b, kiln_ctx *ctx, kiln_tensor *xc, kiln_tensor *xn)
{
    kiln_tensor *parts[41];
    for (int k = 0; k < 40; k++) /* column k (B) -> (B, 10) */
        parts[k] = kiln_module_forward(b->emb[k], ctx, kiln_squeeze(ctx, kiln_slice(ctx, xc, 1, k, k + 1, 1), 1));
    parts[40] = xn;
    return kiln_module_forward(b->mlp, ctx, kiln_concat(ctx, parts, 41, 1)); /* (B, 1) */
}

static void step(kiln_ctx *ctx, void *user)
{
    tab_bench *b = user;
    int k = b->k;
    b->k = (b->k + 1) % POOL;
    double t0 = b->timed ? now() : 0, t1 = 0, t2 = 0, t3 = 0;
    kiln_optim_zero_grad(b->opt);
    if (b->timed) t1 = now();
    kiln_tensor ta, tb, tc, *pred, *target;
    if (b->which == 0) {
        kiln_tensor *u = kiln_tensor_wrap(&ta, KILN_DTYPE_I64, 1, (int64_t[]){BS}, b->users[k]);
        kiln_tensor *i = kiln_tensor_wrap(&tb, KILN_DTYPE_I64, 1, (int64_t[]){BS}, b->items[k]);
        target = kiln_tensor_wrap(&tc, KILN_DTYPE_F32, 1, (int64_t[]){BS}, b->ratings[k]);
        pred = collab_fwd(b, ctx, u, i);
    } else {
        kiln_tensor *xc = kiln_tensor_wrap(&ta, KILN_DTYPE_I64, 2, (int64_t[]){BS, 40}, b->cat[k]);
        kiln_tensor *xn = kiln_tensor_wrap(&tb, KILN_DTYPE_F32, 2, (int64_t[]){BS, 30}, b->cont[k]);
        target = kiln_tensor_wrap(&tc, KILN_DTYPE_F32, 2, (int64_t[]){BS, 1}, b->y[k]);
        pred = tabular_fwd(b, ctx, xc, xn);
    }
    kiln_tensor *loss = kiln_mse_loss(ctx, pred, target, KILN_REDUCTION_MEAN);
    if (b->timed) t2 = now();
    if (!loss || kiln_backward(ctx, loss)) fprintf(stderr, "bench tab: %s\n", kiln_last_error());
    if (b->timed) t3 = now();
    if (kiln_optim_step(b->opt)) fprintf(stderr, "bench tab: %s\n", kiln_last_error());
    if (b->timed) {
        double t4 = now();
        b->t_zero += t1 - t0, b->t_fwd += t2 - t1, b->t_bwd += t3 - t2, b->t_step += t4 - t3;
    }
}

/* Fills the pool with random batches from the context's RNG. */
static void fill(tab_bench *b, kiln_ctx *ctx, int64_t nu, int64_t ni)
{
    uint64_t c = kiln_rng_take(ctx, (uint64_t)POOL * BS * 72);
    for (int k = 0; k < POOL; k++)
        for (int j = 0; j < BS; j++, c += 72) {
            b->users[k][j] = (int64_t)(kiln_philox_uniform(5, c) * (float)nu) % nu;
            b->items[k][j] = (int64_t)(kiln_philox_uniform(5, c + 1) * (float)ni) % ni;
            b->ratings[k][j] = 5.0f * kiln_philox_uniform(5, c + 2);
            b->y[k][j] = 2.0f * kiln_philox_uniform(5, c + 3) - 1.0f;
            for (int q = 0; q < 40; q++)
                b->cat[k][j * 40 + q] = (int64_t)(kiln_philox_uniform(5, c + 4 + q) * 30.f) % 30;
            for (int q = 0; q < 28; q++) b->cont[k][j * 30 + q] = 2.0f * kiln_philox_uniform(5, c + 44 + q) - 1.0f;
            b->cont[k][j * 30 + 28] = b->cont[k][j * 30 + 29] = 0.5f;
        }
}

/* Builds the model; sparse: the collab tables get the lazy optimizer step. */
static bool build(tab_bench *b, kiln_ctx *ctx, int which, bool sparse)
{
    const int64_t nu = 700, ni = 9100, nf = 50;
    b->which = which;
    b->m = kiln_model_new();
    kiln_module *root = kiln_model_root(b->m);
    if (which == 0) {
        kiln_nn_embedding(root, "u_weight", nu, nf);
        kiln_nn_embedding(root, "i_weight", ni, nf);
        kiln_nn_embedding(root, "u_bias", nu, 1);
        kiln_nn_embedding(root, "i_bias", ni, 1);
    } else {
        kiln_module *embs = kiln_nn_sequential(root, "embeds");
        for (int k = 0; k < 40; k++) b->emb[k] = kiln_nn_embedding(embs, NULL, 30, 10);
        kiln_module *mlp = b->mlp = kiln_nn_sequential(root, "layers");
        kiln_nn_batch_norm1d(mlp, NULL, 430, NULL);
        kiln_nn_linear(mlp, NULL, 430, 200, true);
        kiln_nn_relu(mlp, NULL);
        kiln_nn_batch_norm1d(mlp, NULL, 200, NULL);
        kiln_nn_linear(mlp, NULL, 200, 100, true);
        kiln_nn_relu(mlp, NULL);
        kiln_nn_batch_norm1d(mlp, NULL, 100, NULL);
        kiln_nn_linear(mlp, NULL, 100, 1, true);
    }
    if (kiln_model_alloc(b->m, ctx)) return false;
    kiln_store *s = kiln_model_store(b->m);
    kiln_adam_params ap = kiln_adam_default_params();
    if (which == 0) {
        b->u_w = kiln_store_find(s, "u_weight.weight");
        b->i_w = kiln_store_find(s, "i_weight.weight");
        b->ub_w = kiln_store_find(s, "u_bias.weight");
        b->ib_w = kiln_store_find(s, "i_bias.weight");
        ap.lr = 5e-3;
        ap.weight_decay = 0.1;
    } else {
        ap.weight_decay = 0;
    }
    b->opt = kiln_optim_new_adam(s, &ap);
    if (!b->opt || kiln_optim_set_threads(b->opt, kiln_ctx_threads(ctx))) return false;
    if (sparse && kiln_optim_set_sparse(b->opt, KILN_OPTIM_ALL_PARAMS, true)) return false;
    fill(b, ctx, nu, ni);
    kiln_model_train(b->m, true);
    return true;
}

static void run(int threads, int which, bool sparse)
{
    static const char *const names[2][2] = {
        {"collab dot-bias bs64, dense AdamW (default)", "collab dot-bias bs64, sparse AdamW (option)"},
        {"tabular MLP bs64, Adam", "tabular MLP bs64, Adam, sparse embeddings"}};
    const char *name = names[which][sparse];
    kiln_ctx_params cp = kiln_ctx_default_params();
    cp.n_threads = threads;
    cp.seed = 0;
    kiln_ctx *ctx = kiln_ctx_new(&cp);
    static tab_bench b;
    memset(&b, 0, sizeof b);
    if (!ctx || !build(&b, ctx, which, sparse)) {
        fprintf(stderr, "bench tab: %s\n", kiln_last_error());
    } else {
        double dt = kiln_bench_run(ctx, name, step, &b, 0, -1);
        printf("%-44s %8.0f %s/s  (%.1f us/step)\n", name, BS / dt, which ? "rows" : "ratings", dt * 1e6);
        /* the breakdown: as many steps again, each phase timed */
        long n = (long)(1.0 / dt) + 1;
        b.timed = true;
        kiln_mark mk = kiln_step_mark(ctx);
        double t0 = now();
        for (long k = 0; k < n; k++) {
            step(ctx, &b);
            kiln_step_rewind(ctx, mk);
        }
        double tot = now() - t0;
        printf("  per step (%ld timed): zero_grad %.1f us, forward %.1f us, backward %.1f us, optimizer step %.1f us,"
               " rest (rewind, timers) %.1f us\n",
               n, b.t_zero / n * 1e6, b.t_fwd / n * 1e6, b.t_bwd / n * 1e6, b.t_step / n * 1e6,
               (tot - b.t_zero - b.t_fwd - b.t_bwd - b.t_step) / n * 1e6);
        fflush(stdout);
    }
    kiln_optim_free(b.opt);
    kiln_model_free(b.m);
    kiln_ctx_free(ctx);
}

void kiln_bench_tab(kiln_ctx *ctx, const char *which)
{
    int threads = kiln_ctx_threads(ctx);
    bool all = !which || !*which;
    if (all || !strcmp(which, "collab") || !strcmp(which, "collab-dense")) run(threads, 0, false);
    if (all || !strcmp(which, "collab") || !strcmp(which, "collab-sparse")) run(threads, 0, true);
    if (all || !strcmp(which, "tabular")) run(threads, 1, false);
    printf("twin: /usr/bin/python3 bench/torch_throughput.py collab tabular\n");
}
