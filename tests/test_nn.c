/* nn layer tests: module names equal PyTorch state-dict keys (the lesson-7 net, an MLP and
 * an LSTM load strictly from torch's state dicts in tests/fixtures/nn.safetensors, written
 * by gen_nn.py), outputs and all parameter gradients match PyTorch in eval and train mode,
 * init distributions, layer groups and freezing, train/eval behaviour, state-dict errors;
 * a BatchNorm followed by a ReLU in a Sequential runs fused (kiln_batch_norm_relu) with the
 * values and gradients of the ops done one by one.
 *
 * Tolerance for every comparison with PyTorch: |kiln - torch| <= 1e-5 + 1e-4 * |torch|: f32 on
 * both sides with other GEMM/conv kernels and summation orders, values of order 1, sums of at
 * most a few hundred products (rounding ~u*sqrt(K)*|terms|, well under 1e-5). */
#include "util/ku.h"

#include "autograd/tape.h"
#include "kiln/nn.h"

#include <math.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#define ATOL 1e-5
#define RTOL 1e-4

static kiln_model *cnn_loaded(kiln_ctx *ctx, kiln_st_file *f)
{
    kiln_model *m = kiln_simple_cnn_new(1, 10);
    cr_assert(m, "simple_cnn: %s", kiln_last_error());
    cr_assert_eq(kiln_model_alloc(m, ctx), KILN_STATUS_OK, "%s", kiln_last_error());
    cr_assert_eq(kiln_model_load_st(m, f, "cnn.sd.", true), KILN_STATUS_OK, "%s", kiln_last_error());
    return m;
}

/* ---- names and parity with PyTorch ---------------------------------------------------------- */

Test(nn, cnn_names_match_torch_state_dict)
{
    kiln_ctx *ctx = ku_ctx();
    kiln_st_file *f = ku_fixture("nn");
    kiln_model *m = cnn_loaded(ctx, f); /* strict: no missing, no unexpected key */
    size_t n_torch = 0, n_nbt = 0;
    for (size_t i = 0; i < kiln_st_count(f); i++) {
        const char *k = kiln_st_name(f, i);
        if (strncmp(k, "cnn.sd.", 7) != 0) continue;
        n_torch++;
        n_nbt += strstr(k, "num_batches_tracked") != NULL;
    }
    kiln_store *s = kiln_model_store(m);
    cr_expect_eq(kiln_store_count(s) + n_nbt, n_torch, "kiln has %zu entries + %zu BN counters, torch %zu keys",
                 kiln_store_count(s), n_nbt, n_torch);
    cr_expect(kiln_store_find(s, "1.c1.1.running_mean") != NULL);
    cr_expect(kiln_store_find(s, "8.bias") != NULL);
    cr_expect(kiln_store_find(s, "0.0.bias") == NULL, "conv blocks have bias=False");
    cr_expect_str_eq(kiln_module_type(kiln_model_find(m, "1")), "Res");
    cr_expect_str_eq(kiln_module_type(kiln_model_find(m, "1.c2.1")), "BatchNorm2d");
    kiln_model_free(m);
    kiln_st_close(f);
    ku_ctx_free(ctx);
}

Test(nn, cnn_eval_forward_matches_torch)
{
    kiln_ctx *ctx = ku_ctx();
    kiln_st_file *f = ku_fixture("nn");
    kiln_model *m = cnn_loaded(ctx, f);
    kiln_model_train(m, false);
    kiln_tensor *x = ku_load(ctx, f, "cnn", "x"); /* (8, 1, 28, 28) */
    kiln_tensor *y = kiln_model_forward(m, ctx, x); /* (8, 10) */
    ku_expect_fixture(ctx, f, "cnn", "y_eval", y, ATOL, RTOL);
    /* eval leaves the running statistics alone */
    ku_expect_fixture(ctx, f, "cnn", "sd.9.running_var", kiln_store_find(kiln_model_store(m), "9.running_var"), 0, 0);
    kiln_model_free(m);
    kiln_st_close(f);
    ku_ctx_free(ctx);
}

Test(nn, cnn_train_forward_and_all_grads_match_torch)
{
    kiln_ctx *ctx = ku_ctx();
    kiln_st_file *f = ku_fixture("nn");
    kiln_model *m = cnn_loaded(ctx, f);
    kiln_model_train(m, true);
    kiln_tensor *x = ku_load(ctx, f, "cnn", "x");
    kiln_tensor *target = ku_load(ctx, f, "cnn", "target");
    kiln_tensor *y = kiln_model_forward(m, ctx, x);
    ku_expect_fixture(ctx, f, "cnn", "y_train", y, ATOL, RTOL);
    kiln_tensor *loss = kiln_cross_entropy(ctx, y, target, NULL);
    ku_expect_fixture(ctx, f, "cnn", "loss", loss, ATOL, RTOL);
    kiln_model_zero_grad(m);
    cr_assert_eq(kiln_backward(ctx, loss), KILN_STATUS_OK, "%s", kiln_last_error());
    kiln_store *s = kiln_model_store(m);
    int n_grads = 0, n_bufs = 0;
    for (size_t i = 0; i < kiln_store_count(s); i++) {
        kiln_tensor *t = kiln_store_at(s, i);
        if (kiln_store_is_param(s, i)) {
            ku_expect_fixture(ctx, f, "cnn.grad", t->name, t->grad, ATOL, RTOL);
            n_grads++;
        } else { /* running statistics after one train-mode forward */
            ku_expect_fixture(ctx, f, "cnn.after", t->name, t, ATOL, RTOL);
            n_bufs++;
        }
    }
    cr_expect_eq(n_grads, 40, "13 conv weights + 1 conv bias + 13 BN weight/bias pairs, got %d", n_grads);
    cr_expect_eq(n_bufs, 26, "13 BN running_mean/var pairs, got %d", n_bufs);
    kiln_model_free(m);
    kiln_st_close(f);
    ku_ctx_free(ctx);
}

Test(nn, mlp_names_and_eval_forward_match_torch)
{
    kiln_ctx *ctx = ku_ctx();
    kiln_st_file *f = ku_fixture("nn");
    kiln_model *m = kiln_mlp_new(6, 1, (int64_t[]){5}, 3, 0.5f, true);
    cr_assert(m, "%s", kiln_last_error());
    cr_assert_eq(kiln_model_alloc(m, ctx), KILN_STATUS_OK, "%s", kiln_last_error());
    cr_assert_eq(kiln_model_load_st(m, f, "mlp.sd.", true), KILN_STATUS_OK, "%s", kiln_last_error());
    cr_expect_str_eq(kiln_module_type(kiln_model_find(m, "3")), "Dropout");
    kiln_model_train(m, false);
    kiln_tensor *y = kiln_model_forward(m, ctx, ku_load(ctx, f, "mlp", "x")); /* (4, 3) */
    ku_expect_fixture(ctx, f, "mlp", "y_eval", y, ATOL, RTOL);
    kiln_model_free(m);
    kiln_st_close(f);
    ku_ctx_free(ctx);
}

Test(nn, lstm_module_matches_torch)
{
    kiln_ctx *ctx = ku_ctx();
    kiln_st_file *f = ku_fixture("nn");
    kiln_model *m = kiln_model_new();
    kiln_module *lstm = kiln_nn_lstm(kiln_model_root(m), NULL, 3, 4, true);
    cr_assert_eq(kiln_model_alloc(m, ctx), KILN_STATUS_OK, "%s", kiln_last_error());
    cr_assert_eq(kiln_model_load_st(m, f, "lstm.sd.", true), KILN_STATUS_OK, "%s", kiln_last_error());
    kiln_tensor *hn = NULL, *cn = NULL;
    kiln_tensor *y = kiln_lstm_module_forward(lstm, ctx, ku_load(ctx, f, "lstm", "x"), ku_load(ctx, f, "lstm", "h0"),
                                              ku_load(ctx, f, "lstm", "c0"), &hn, &cn); /* (2, 5, 4) */
    ku_expect_fixture(ctx, f, "lstm", "y", y, ATOL, RTOL);
    ku_expect_fixture(ctx, f, "lstm", "hn", hn, ATOL, RTOL);
    ku_expect_fixture(ctx, f, "lstm", "cn", cn, ATOL, RTOL);
    cr_assert_eq(kiln_backward_with(ctx, y, ku_load(ctx, f, "lstm", "gy")), KILN_STATUS_OK, "%s", kiln_last_error());
    kiln_store *s = kiln_model_store(m);
    for (size_t i = 0; i < kiln_store_count(s); i++)
        ku_expect_fixture(ctx, f, "lstm.grad", kiln_store_at(s, i)->name, kiln_store_at(s, i)->grad, ATOL, RTOL);
    /* the plain forward starts from zero state: (B, T, H) */
    kiln_tensor *y0 = kiln_model_forward(m, ctx, ku_load(ctx, f, "lstm", "x"));
    cr_assert(y0 && y0->ndim == 3 && y0->shape[2] == 4, "%s", kiln_last_error());
    kiln_model_free(m);
    kiln_st_close(f);
    ku_ctx_free(ctx);
}

/* ---- initialisation ------------------------------------------------------------------------------ */

static void stats(const kiln_tensor *t, double *mean, double *var, double *maxabs)
{
    const float *d = t->data;
    int64_t n = kiln_numel(t);
    double s = 0, s2 = 0, mx = 0;
    for (int64_t i = 0; i < n; i++) {
        s += d[i];
        s2 += (double)d[i] * d[i];
        mx = fmax(mx, fabs(d[i]));
    }
    *mean = s / n;
    *var = s2 / n - *mean * *mean;
    *maxabs = mx;
}

/* Uniform on [-b, b]: inside the bound, reaching near it, mean ~0, variance b^2/3 (10%). */
static void expect_uniform(const kiln_tensor *t, double b)
{
    double mean, var, mx;
    stats(t, &mean, &var, &mx);
    cr_expect(mx <= b, "%s: max |x| %g above bound %g", t->name, mx, b);
    cr_expect(mx > 0.9 * b, "%s: max |x| %g far below bound %g", t->name, mx, b);
    cr_expect(fabs(mean) < 0.1 * b, "%s: mean %g", t->name, mean);
    cr_expect(fabs(var / (b * b / 3) - 1) < 0.1, "%s: variance %g, expected %g", t->name, var, b * b / 3);
}

static void expect_normal(const kiln_tensor *t, double mu, double sd, double tol)
{
    double mean, var, mx;
    stats(t, &mean, &var, &mx);
    cr_expect(fabs(mean - mu) < tol * sd, "%s: mean %g, expected %g", t->name, mean, mu);
    cr_expect(fabs(sqrt(var) / sd - 1) < tol, "%s: std %g, expected %g", t->name, sqrt(var), sd);
}

static void expect_const(const kiln_tensor *t, float v)
{
    const float *d = t->data;
    for (int64_t i = 0; i < kiln_numel(t); i++) cr_expect_eq(d[i], v, "%s[%lld] = %g, expected %g", t->name, (long long)i, d[i], v);
}

Test(nn, init_distributions_as_pytorch)
{
    kiln_ctx *ctx = ku_ctx();
    kiln_model *m = kiln_model_new();
    kiln_module *r = kiln_model_root(m);
    kiln_nn_linear(r, "fc", 100, 50, true);
    kiln_nn_conv2d(r, "conv", 20, 30, 3, 3, NULL, true);
    kiln_nn_batch_norm2d(r, "bn", 30, NULL);
    kiln_nn_embedding(r, "emb", 1000, 16);
    kiln_nn_lstm(r, "rnn", 10, 64, true);
    cr_assert_eq(kiln_model_alloc(m, ctx), KILN_STATUS_OK, "%s", kiln_last_error());
    kiln_store *s = kiln_model_store(m);
    expect_uniform(kiln_store_find(s, "fc.weight"), 1 / sqrt(100.0));   /* kaiming_uniform(a=sqrt(5)) */
    expect_uniform(kiln_store_find(s, "conv.weight"), 1 / sqrt(180.0)); /* fan_in = 20*3*3 */
    {   /* biases are short: only the bound and a non-degenerate spread */
        double mean, var, mx;
        stats(kiln_store_find(s, "fc.bias"), &mean, &var, &mx);
        cr_expect(mx <= 0.1 && mx > 0.05, "fc.bias max %g", mx);
        stats(kiln_store_find(s, "conv.bias"), &mean, &var, &mx);
        cr_expect(mx <= 1 / sqrt(180.0) && var > 0, "conv.bias max %g", mx);
    }
    expect_const(kiln_store_find(s, "bn.weight"), 1.0f);
    expect_const(kiln_store_find(s, "bn.bias"), 0.0f);
    expect_const(kiln_store_find(s, "bn.running_mean"), 0.0f);
    expect_const(kiln_store_find(s, "bn.running_var"), 1.0f);
    expect_normal(kiln_store_find(s, "emb.weight"), 0.0, 1.0, 0.03);
    expect_uniform(kiln_store_find(s, "rnn.weight_ih_l0"), 1 / 8.0);
    expect_uniform(kiln_store_find(s, "rnn.weight_hh_l0"), 1 / 8.0);
    expect_uniform(kiln_store_find(s, "rnn.bias_ih_l0"), 1 / 8.0);

    /* fastai head init: kaiming_normal_ (std sqrt(2/fan_in)), bias 0, BatchNorm untouched */
    cr_assert_eq(kiln_module_init_kaiming(r, ctx), KILN_STATUS_OK, "%s", kiln_last_error());
    expect_normal(kiln_store_find(s, "fc.weight"), 0.0, sqrt(2.0 / 100), 0.05);
    expect_normal(kiln_store_find(s, "conv.weight"), 0.0, sqrt(2.0 / 180), 0.05);
    expect_const(kiln_store_find(s, "fc.bias"), 0.0f);
    expect_const(kiln_store_find(s, "bn.weight"), 1.0f);
    kiln_model_free(m);
    ku_ctx_free(ctx);
}

Test(nn, init_is_reproducible_from_the_seed)
{
    kiln_ctx *a = ku_ctx(), *b = ku_ctx();
    kiln_model *ma = kiln_simple_cnn_new(1, 10), *mb = kiln_simple_cnn_new(1, 10);
    cr_assert_eq(kiln_model_alloc(ma, a), KILN_STATUS_OK);
    cr_assert_eq(kiln_model_alloc(mb, b), KILN_STATUS_OK);
    size_t na, nb;
    float *pa = kiln_store_flat(kiln_model_store(ma), KILN_STORE_PARAMS, &na);
    float *pb = kiln_store_flat(kiln_model_store(mb), KILN_STORE_PARAMS, &nb);
    cr_assert_eq(na, nb);
    cr_expect(memcmp(pa, pb, na * sizeof(float)) == 0);
    cr_expect_eq(kiln_model_n_params(ma, false), (int64_t)na);
    kiln_model_free(ma);
    kiln_model_free(mb);
    ku_ctx_free(a);
    ku_ctx_free(b);
}

/* ---- layer groups and freezing ------------------------------------------------------------------ */

Test(nn, freeze_keeps_bn_trainable_and_frozen_grads_untouched)
{
    kiln_ctx *ctx = ku_ctx();
    kiln_st_file *f = ku_fixture("nn");
    kiln_model *m = cnn_loaded(ctx, f);
    kiln_store *s = kiln_model_store(m);
    cr_assert_eq(kiln_model_n_groups(m), 3); /* {0..3}, {4, 5}, head {6..9} */
    cr_expect_eq(kiln_model_param_group(m, 0), 0);
    kiln_param_info info;
    cr_assert_eq(kiln_model_param_info(m, 1, &info), KILN_STATUS_OK); /* 0.1.weight */
    cr_expect(info.is_bn && !info.is_bias && info.is_param && info.group == 0);
    size_t i8 = 0;
    while (strcmp(kiln_store_at(s, i8)->name, "8.bias") != 0) i8++;
    cr_assert_eq(kiln_model_param_info(m, i8, &info), KILN_STATUS_OK);
    cr_expect(info.is_bias && !info.is_bn && info.group == 2 && strcmp(kiln_module_path(info.module), "8") == 0);

    const int64_t total = kiln_model_n_params(m, false);
    cr_assert_eq(kiln_model_freeze(m), KILN_STATUS_OK);
    int64_t expect_trainable = 0;
    for (size_t i = 0; i < kiln_store_count(s); i++) {
        if (!kiln_store_is_param(s, i)) continue;
        kiln_model_param_info(m, i, &info);
        kiln_tensor *t = kiln_store_at(s, i);
        bool want = info.group == 2 || info.is_bn;
        cr_expect_eq(t->requires_grad, want, "%s: requires_grad %d after freeze", t->name, t->requires_grad);
        if (want) expect_trainable += kiln_numel(t);
    }
    cr_expect_eq(kiln_model_n_params(m, true), expect_trainable);
    cr_expect_lt(expect_trainable, total);

    /* poison every grad with 7: after backward frozen ones keep it, trainable ones gain torch's grad */
    size_t ng;
    float *g = kiln_store_flat(s, KILN_STORE_GRADS, &ng);
    for (size_t i = 0; i < ng; i++) g[i] = 7.0f;
    kiln_tensor *y = kiln_model_forward(m, ctx, ku_load(ctx, f, "cnn", "x"));
    kiln_tensor *loss = kiln_cross_entropy(ctx, y, ku_load(ctx, f, "cnn", "target"), NULL);
    cr_assert_eq(kiln_backward(ctx, loss), KILN_STATUS_OK, "%s", kiln_last_error());
    for (size_t i = 0; i < kiln_store_count(s); i++) {
        kiln_tensor *t = kiln_store_at(s, i);
        if (!kiln_store_is_param(s, i)) continue;
        const float *gd = t->grad->data;
        int64_t changed = 0;
        for (int64_t k = 0; k < kiln_numel(t); k++) changed += gd[k] != 7.0f;
        if (t->requires_grad) /* freezing does not change the gradient flow: grad - 7 is torch's grad */
            ku_expect_fixture(ctx, f, "cnn.grad", t->name, kiln_add_scalar(ctx, t->grad, -7.0f), ATOL, RTOL);
        else
            cr_expect_eq(changed, 0, "%s: frozen but %lld grad values changed", t->name, (long long)changed);
    }
    cr_assert_eq(kiln_model_unfreeze(m), KILN_STATUS_OK);
    cr_expect_eq(kiln_model_n_params(m, true), total);

    kiln_model_set_train_bn(m, false);
    kiln_model_freeze_to(m, 100); /* clamped: everything frozen, BN too */
    cr_expect_eq(kiln_model_n_params(m, true), 0);
    kiln_model_set_train_bn(m, true);
    kiln_model_freeze_to(m, -100); /* clamped to 0: nothing frozen */
    cr_expect_eq(kiln_model_n_params(m, true), total);
    kiln_model_free(m);
    kiln_st_close(f);
    ku_ctx_free(ctx);
}

Test(nn, split_and_freeze_to_counts_like_python)
{
    kiln_ctx *ctx = ku_ctx();
    kiln_model *m = kiln_mlp_new(4, 2, (int64_t[]){8, 6}, 3, 0.0f, false); /* 0 lin, 1 relu, 2 lin, 3 relu, 4 lin */
    cr_assert(m, "%s", kiln_last_error());
    cr_assert_eq(kiln_model_alloc(m, ctx), KILN_STATUS_OK);
    cr_assert_eq(kiln_model_split(m, 3, (const char *const[]){"1", "4"}), KILN_STATUS_OK, "%s", kiln_last_error());
    kiln_store *s = kiln_model_store(m);
    /* "1" is a ReLU without parameters: group 1 starts at the next declared parameter, 2.weight */
    const int want[6] = {0, 0, 1, 1, 2, 2};
    for (size_t i = 0; i < 6; i++)
        cr_expect_eq(kiln_model_param_group(m, i), want[i], "%s in group %d", kiln_store_at(s, i)->name,
                     kiln_model_param_group(m, i));
    kiln_model_freeze_to(m, -2); /* = freeze_to(1) */
    cr_expect(!kiln_store_find(s, "0.weight")->requires_grad && kiln_store_find(s, "2.weight")->requires_grad);
    kiln_model_freeze(m); /* = freeze_to(2) */
    cr_expect(!kiln_store_find(s, "2.bias")->requires_grad && kiln_store_find(s, "4.bias")->requires_grad);
    cr_expect_eq(kiln_model_n_params(m, true), 6 * 3 + 3);
    /* bad splits */
    cr_expect_lt(kiln_model_split(m, 2, (const char *const[]){"7"}), 0);
    ku_expect_error("'7'", "split on a missing module");
    cr_expect_lt(kiln_model_split(m, 3, (const char *const[]){"4", "2"}), 0);
    /* set_group on a subtree */
    cr_assert_eq(kiln_module_set_group(kiln_model_find(m, "4"), 5), KILN_STATUS_OK);
    cr_expect_eq(kiln_model_n_groups(m), 6);
    cr_expect_eq(kiln_model_param_group(m, 5), 5);
    kiln_model_free(m);
    ku_ctx_free(ctx);
}

/* ---- train / eval mode ---------------------------------------------------------------------------- */

Test(nn, dropout_only_in_train_mode)
{
    kiln_ctx *ctx = ku_ctx();
    kiln_model *m = kiln_model_new();
    kiln_nn_dropout(kiln_model_root(m), NULL, 0.5f);
    cr_assert_eq(kiln_model_alloc(m, ctx), KILN_STATUS_OK);
    kiln_tensor *x = kiln_full(ctx, 2, (int64_t[]){50, 40}, 1.0f);
    kiln_model_train(m, false);
    kiln_tensor *y = kiln_model_forward(m, ctx, x);
    ku_expect_close(y, x, 0, 0, "eval dropout is the identity");
    kiln_model_train(m, true);
    y = kiln_model_forward(m, ctx, x);
    cr_assert(y, "%s", kiln_last_error());
    int64_t zeros = 0, n = kiln_numel(y);
    for (int64_t i = 0; i < n; i++) {
        double v = kiln_get_flat(y, i);
        cr_assert(v == 0.0 || fabs(v - 2.0) < 1e-6, "train dropout value %g", v); /* 1 / (1 - 0.5): exact */
        zeros += v == 0.0;
    }
    cr_expect(zeros > 0.4 * n && zeros < 0.6 * n, "%lld of %lld dropped", (long long)zeros, (long long)n);
    kiln_model_free(m);
    ku_ctx_free(ctx);
}

Test(nn, batch_norm_train_updates_running_stats_eval_uses_them)
{
    kiln_ctx *ctx = ku_ctx();
    kiln_model *m = kiln_model_new();
    kiln_module *bn = kiln_nn_batch_norm1d(kiln_model_root(m), "bn", 3, NULL);
    cr_assert_eq(kiln_model_alloc(m, ctx), KILN_STATUS_OK);
    kiln_tensor *x = kiln_randn(ctx, 2, (int64_t[]){16, 3}, 2.0f, 1.0f); /* mean ~2 */
    kiln_tensor *rm = kiln_module_param(bn, "running_mean");
    kiln_model_train(m, false);
    kiln_tensor *y = kiln_model_forward(m, ctx, x);
    /* y = x / sqrt(1 + 1e-5): differs from x by 5e-6 relative, inside 1e-4 */
    ku_expect_close(y, x, 1e-4, 1e-4, "eval BN with fresh stats ~ identity (1/sqrt(1+eps))");
    cr_expect_eq(kiln_get_flat(rm, 0), 0.0, "eval must not update running_mean");
    kiln_model_train(m, true);
    y = kiln_model_forward(m, ctx, x);
    cr_assert(y, "%s", kiln_last_error());
    double col = 0, ycol = 0;
    for (int i = 0; i < 16; i++) col += kiln_get_flat(x, i * 3), ycol += kiln_get_flat(y, i * 3);
    /* 16 normalised f32 values of size ~1 summed: rounding ~16u, far under 1e-5 */
    cr_expect(fabs(ycol / 16) < 1e-5, "train BN output mean %g", ycol / 16);
    cr_expect(fabs(kiln_get_flat(rm, 0) - 0.1 * col / 16) < 1e-5, "running_mean %g, expected %g", kiln_get_flat(rm, 0),
              0.1 * col / 16);
    /* wrong rank names the module */
    cr_expect(kiln_model_forward(m, ctx, kiln_randn(ctx, 4, (int64_t[]){2, 3, 2, 2}, 0, 1)) == NULL);
    ku_expect_error("[in BatchNorm1d 'bn']", "BN1d on 4-D input");
    kiln_model_free(m);
    ku_ctx_free(ctx);
}

/* ---- BatchNorm + ReLU fused in Sequential ---------------------------------------------------- */

/* Sequential(Sequential(Conv2d(3, 8, 3, 1, 1, bias=False), BatchNorm2d(8, momentum 0.2, eps
 * 1e-3), ReLU()), Conv2d(8, 6, 3, 2, 1), BatchNorm2d(6, affine=False), ReLU(), Flatten(),
 * Linear(150, 4), BatchNorm1d(4), ReLU()) on x (6, 3, 9, 9), against the same computation
 * done by hand with kiln_conv2d, kiln_batch_norm, kiln_relu, ... on detached copies of the
 * parameters and copies of the running statistics: output, every parameter gradient (from
 * sum(y * r)), the running statistics; the three BN + ReLU pairs ran as fused nodes; the
 * skipped ReLU modules still record their output shape (summary). */
static void check_bn_relu_fused(bool train, bool cl)
{
    kiln_ctx *ctx = ku_ctx();
    kiln_model *m = kiln_model_new();
    kiln_module *root = kiln_model_root(m), *blk = kiln_nn_sequential(root, "0");
    kiln_conv2d_params p1 = kiln_conv2d_default_params(), p2 = p1;
    p1.padding[0] = p1.padding[1] = 1;
    p2.padding[0] = p2.padding[1] = 1, p2.stride[0] = p2.stride[1] = 2;
    kiln_bn_params bp = kiln_bn_default_params(), bp_na = bp;
    bp.momentum = 0.2f, bp.eps = 1e-3f, bp_na.affine = false;
    kiln_nn_conv2d(blk, "0", 3, 8, 3, 3, &p1, false);
    kiln_nn_batch_norm2d(blk, "1", 8, &bp);
    kiln_nn_relu(blk, "2");
    kiln_nn_conv2d(root, "1", 8, 6, 3, 3, &p2, true);
    kiln_nn_batch_norm2d(root, "2", 6, &bp_na);
    kiln_nn_relu(root, "3");
    kiln_nn_flatten(root, "4");
    kiln_nn_linear(root, "5", 150, 4, true);
    kiln_nn_batch_norm1d(root, "6", 4, NULL);
    kiln_nn_relu(root, "7");
    cr_assert_eq(kiln_model_alloc(m, ctx), KILN_STATUS_OK, "%s", kiln_last_error());
    kiln_model_set_channels_last(m, cl);
    kiln_model_train(m, train);
    kiln_store *st = kiln_model_store(m);
    /* BN parameters and statistics away from 1 and 0, so that the ReLUs cut somewhere */
    const char *bn_w[2] = {"0.1", "6"}, *bn_s[3] = {"0.1", "2", "6"};
    char name[64];
    for (int i = 0; i < 2; i++) {
        snprintf(name, sizeof name, "%s.weight", bn_w[i]);
        kiln_init_normal(ctx, kiln_store_find(st, name), 1.0f, 0.5f);
        snprintf(name, sizeof name, "%s.bias", bn_w[i]);
        kiln_init_normal(ctx, kiln_store_find(st, name), 0.0f, 0.5f);
    }
    kiln_tensor *stats[3][2], *hand_stats[3][2]; /* running mean, var: the model's, copies */
    for (int i = 0; i < 3; i++) {
        snprintf(name, sizeof name, "%s.running_mean", bn_s[i]);
        stats[i][0] = kiln_store_find(st, name);
        snprintf(name, sizeof name, "%s.running_var", bn_s[i]);
        stats[i][1] = kiln_store_find(st, name);
        kiln_init_normal(ctx, stats[i][0], 0.0f, 0.3f);
        kiln_init_uniform(ctx, stats[i][1], 0.5f, 1.5f);
        for (int j = 0; j < 2; j++) hand_stats[i][j] = kiln_add_scalar(ctx, stats[i][j], 0.0f);
    }
    /* detached parameter copies share the data but not the gradients */
    const char *pn[] = {"0.0.weight", "0.1.weight", "0.1.bias", "1.weight", "1.bias", "5.weight",
                        "5.bias",     "6.weight",   "6.bias"};
    enum { NP = sizeof pn / sizeof *pn };
    kiln_tensor *prm[NP], *hp[NP];
    for (int i = 0; i < NP; i++) {
        prm[i] = kiln_store_find(st, pn[i]);
        cr_assert(prm[i], "no parameter %s", pn[i]);
        hp[i] = kiln_detach(ctx, prm[i]);
        kiln_set_requires_grad(hp[i], true);
    }
    cr_expect_eq(kiln_store_count(st), NP + 6, "the test names every parameter");

    kiln_tensor *x = kiln_randn(ctx, 4, (int64_t[]){6, 3, 9, 9}, 0.0f, 1.0f);
    kiln_tensor *r = kiln_randn(ctx, 2, (int64_t[]){6, 4}, 0.0f, 1.0f);
    kiln_node *before = ctx->tape;
    kiln_tensor *y = kiln_model_forward(m, ctx, x); /* (6, 4) */
    cr_assert(y, "%s", kiln_last_error());
    int fused = 0, relus = 0, bns = 0;
    for (kiln_node *n = ctx->tape; n && n != before; n = n->prev) {
        fused += strcmp(n->op, "batch_norm_relu") == 0;
        relus += strcmp(n->op, "relu") == 0;
        bns += strcmp(n->op, "batch_norm") == 0;
    }
    cr_expect(fused == 3 && relus == 0 && bns == 0, "train %d cl %d: %d fused, %d relu, %d batch_norm nodes", train, cl,
              fused, relus, bns);
    kiln_model_zero_grad(m);
    cr_assert_eq(kiln_backward(ctx, kiln_sum(ctx, kiln_mul(ctx, y, r))), KILN_STATUS_OK, "%s", kiln_last_error());

    kiln_tensor *h = cl ? kiln_to_channels_last(ctx, x) : x;
    h = kiln_conv2d(ctx, h, hp[0], NULL, &p1);
    h = kiln_relu(ctx, kiln_batch_norm(ctx, h, hp[1], hp[2], hand_stats[0][0], hand_stats[0][1], train, 0.2f, 1e-3f));
    h = kiln_conv2d(ctx, h, hp[3], hp[4], &p2);
    h = kiln_relu(ctx, kiln_batch_norm(ctx, h, NULL, NULL, hand_stats[1][0], hand_stats[1][1], train, 0.1f, 1e-5f));
    h = kiln_linear(ctx, kiln_flatten(ctx, h, 1, -1), hp[5], hp[6]);
    h = kiln_relu(ctx, kiln_batch_norm(ctx, h, hp[7], hp[8], hand_stats[2][0], hand_stats[2][1], train, 0.1f, 1e-5f));
    cr_assert(h, "by hand: %s", kiln_last_error());
    cr_assert_eq(kiln_backward(ctx, kiln_sum(ctx, kiln_mul(ctx, h, r))), KILN_STATUS_OK, "%s", kiln_last_error());

    char what[96];
    snprintf(what, sizeof what, "bn+relu fused, train %d cl %d: y", train, cl);
    ku_expect_close(y, h, ATOL, RTOL, what);
    int64_t zeros = 0;
    for (int64_t i = 0; i < kiln_numel(y); i++) zeros += kiln_get_flat(y, i) == 0.0;
    cr_expect(zeros > 0 && zeros < kiln_numel(y), "%s: %lld of %lld outputs cut", what, (long long)zeros,
              (long long)kiln_numel(y));
    for (int i = 0; i < NP; i++) {
        snprintf(what, sizeof what, "bn+relu fused, train %d cl %d: grad %s", train, cl, pn[i]);
        ku_expect_close(prm[i]->grad, hp[i]->grad, ATOL, RTOL, what);
    }
    for (int i = 0; i < 3; i++)
        for (int j = 0; j < 2; j++) {
            snprintf(what, sizeof what, "bn+relu fused, train %d cl %d: %s running %s", train, cl, bn_s[i],
                     j ? "var" : "mean");
            ku_expect_close(stats[i][j], hand_stats[i][j], train ? ATOL : 0, train ? RTOL : 0, what);
        }

    char *buf = NULL;
    size_t len = 0;
    FILE *out = open_memstream(&buf, &len);
    cr_assert_eq(kiln_model_summary(m, NULL, NULL, out), KILN_STATUS_OK, "%s", kiln_last_error());
    fclose(out);
    cr_expect(strstr(buf, "ReLU                   (6, 8, 9, 9)") && strstr(buf, "ReLU                   (6, 6, 5, 5)") &&
                  strstr(buf, "ReLU                   (6, 4)"),
              "ReLU output shapes:\n%s", buf);
    free(buf);
    kiln_model_free(m);
    ku_ctx_free(ctx);
}

Test(nn, batch_norm_relu_fused_in_sequential_train) { check_bn_relu_fused(true, false); }
Test(nn, batch_norm_relu_fused_in_sequential_eval) { check_bn_relu_fused(false, false); }
Test(nn, batch_norm_relu_fused_in_sequential_channels_last_train) { check_bn_relu_fused(true, true); }
Test(nn, batch_norm_relu_fused_in_sequential_channels_last_eval) { check_bn_relu_fused(false, true); }

Test(nn, concat_pool_is_max_then_avg)
{
    kiln_ctx *ctx = ku_ctx();
    kiln_model *m = kiln_model_new();
    kiln_module *r = kiln_model_root(m);
    kiln_nn_adaptive_concat_pool2d(r, NULL, 1);
    kiln_nn_flatten(r, NULL);
    cr_assert_eq(kiln_model_alloc(m, ctx), KILN_STATUS_OK);
    float d[8] = {1, 2, 3, 6, 0, -1, -2, -5}; /* (1, 2, 2, 2) */
    kiln_tensor *x = kiln_from_data(ctx, KILN_DTYPE_F32, 4, (int64_t[]){1, 2, 2, 2}, d);
    kiln_tensor *y = kiln_model_forward(m, ctx, x); /* (1, 4): max c0, max c1, avg c0, avg c1 */
    float want[4] = {6, 0, 3, -2};
    /* max and mean of four small integers are exact in f32; 1e-6 is only a floor */
    ku_expect_close(y, kiln_from_data(ctx, KILN_DTYPE_F32, 2, (int64_t[]){1, 4}, want), 1e-6, 0, "concat pool");
    kiln_model_free(m);
    ku_ctx_free(ctx);
}

/* ---- state dicts ------------------------------------------------------------------------------------ */

/* 0 Linear(6,5), 1 BN1d(5), 2 ReLU, 3 Dropout, 4 Linear(5, out4), then extra Linear(3,2) "5" */
static kiln_model *mlp_variant(kiln_ctx *ctx, bool drop_head, int64_t out4, bool extra)
{
    kiln_model *m = kiln_model_new();
    kiln_module *r = kiln_model_root(m);
    kiln_nn_linear(r, NULL, 6, 5, true);
    kiln_nn_batch_norm1d(r, NULL, 5, NULL);
    kiln_nn_relu(r, NULL);
    kiln_nn_dropout(r, NULL, 0.5f);
    if (!drop_head) kiln_nn_linear(r, NULL, 5, out4, true);
    if (extra) kiln_nn_linear(r, NULL, 3, 2, true);
    cr_assert_eq(kiln_model_alloc(m, ctx), KILN_STATUS_OK, "%s", kiln_last_error());
    return m;
}

Test(nn, load_errors_name_the_keys)
{
    kiln_ctx *ctx = ku_ctx();
    kiln_st_file *f = ku_fixture("nn");

    kiln_model *m = mlp_variant(ctx, false, 3, true);
    float before = ((float *)kiln_store_find(kiln_model_store(m), "0.weight")->data)[0];
    cr_expect_lt(kiln_model_load_st(m, f, "mlp.sd.", true), 0);
    ku_expect_error("missing keys (2): 5.weight, 5.bias", "missing");
    cr_expect_eq(((float *)kiln_store_find(kiln_model_store(m), "0.weight")->data)[0], before,
                 "a failed load must leave the model unchanged");
    cr_expect_eq(kiln_model_load_st(m, f, "mlp.sd.", false), KILN_STATUS_OK, "strict=false: %s", kiln_last_error());
    kiln_model_free(m);

    m = mlp_variant(ctx, true, 3, false);
    cr_expect_lt(kiln_model_load_st(m, f, "mlp.sd.", true), 0);
    ku_expect_error("unexpected keys (2): mlp.sd.4.bias, mlp.sd.4.weight", "unexpected");
    cr_expect_eq(kiln_model_load_st(m, f, "mlp.sd.", false), KILN_STATUS_OK, "strict=false: %s", kiln_last_error());
    kiln_model_free(m);

    m = mlp_variant(ctx, false, 2, false);
    cr_expect_lt(kiln_model_load_st(m, f, "mlp.sd.", true), 0, "a mis-shaped key fails when strict");
    ku_expect_error("mis-shaped keys (2): mlp.sd.4.bias has shape (3) in the file, (2) in the model (4.bias), "
                    "mlp.sd.4.weight has shape (3, 5) in the file, (2, 5) in the model (4.weight)",
                    "mismatch");
    cr_expect_eq(kiln_model_load_st(m, f, "mlp.sd.", false), KILN_STATUS_OK, "not strict, the rest loads: %s",
                 kiln_last_error());
    kiln_model_free(m);

    m = mlp_variant(ctx, false, 3, false);
    cr_expect_lt(kiln_model_load(m, "/nonexistent/weights.safetensors", true), 0);
    ku_expect_error("/nonexistent/weights.safetensors", "missing file");
    kiln_model_free(m);
    kiln_st_close(f);
    ku_ctx_free(ctx);
}

Test(nn, save_load_roundtrip_with_bn_counter)
{
    kiln_ctx *ctx = ku_ctx();
    kiln_st_file *f = ku_fixture("nn");
    kiln_model *m = cnn_loaded(ctx, f);
    kiln_tensor *x = ku_load(ctx, f, "cnn", "x");
    kiln_model_forward(m, ctx, x); /* one train-mode forward: counters 7 -> 8 */
    char path[] = "/tmp/kiln_test_nn_XXXXXX";
    int fd = mkstemp(path);
    cr_assert(fd >= 0);
    close(fd);
    const char *meta[] = {"arch", "simple_cnn", NULL};
    cr_assert_eq(kiln_model_save(m, path, meta), KILN_STATUS_OK, "%s", kiln_last_error());

    kiln_st_file *g = NULL;
    cr_assert_eq(kiln_st_open(path, &g), KILN_STATUS_OK, "%s", kiln_last_error());
    cr_expect_str_eq(kiln_st_metadata(g, "arch"), "simple_cnn");
    kiln_tensor *nbt = kiln_st_load(ctx, g, "1.c2.1.num_batches_tracked");
    cr_assert(nbt && nbt->dtype == KILN_DTYPE_I64 && nbt->ndim == 0, "%s", kiln_last_error());
    cr_expect_eq(kiln_get_flat(nbt, 0), 8.0);
    kiln_st_close(g);

    kiln_model *m2 = kiln_simple_cnn_new(1, 10);
    cr_assert_eq(kiln_model_alloc(m2, ctx), KILN_STATUS_OK);
    cr_assert_eq(kiln_model_load(m2, path, true), KILN_STATUS_OK, "%s", kiln_last_error());
    kiln_model_train(m, false);
    kiln_model_train(m2, false);
    ku_expect_close(kiln_model_forward(m2, ctx, x), kiln_model_forward(m, ctx, x), 0, 0, "reloaded model");
    unlink(path);
    kiln_model_free(m);
    kiln_model_free(m2);
    kiln_st_close(f);
    ku_ctx_free(ctx);
}

/* ---- building, errors, summary ------------------------------------------------------------------- */

typedef struct scale_user {
    float s;
} scale_user;

/* x -> s * child0(x) */
static kiln_tensor *scale_forward(kiln_module *m, kiln_ctx *ctx, kiln_tensor *x)
{
    const scale_user *u = kiln_module_user(m);
    return kiln_mul_scalar(ctx, kiln_module_forward(kiln_module_child_at(m, 0), ctx, x), u->s);
}

Test(nn, custom_module_names_and_user_data)
{
    kiln_ctx *ctx = ku_ctx();
    kiln_model *m = kiln_model_new();
    kiln_module *blk = kiln_nn_custom(kiln_model_root(m), "layer1", "Scaled", scale_forward, &(scale_user){3.0f},
                                      sizeof(scale_user));
    kiln_module *fc = kiln_nn_linear(blk, "fc", 2, 2, false);
    cr_assert(fc, "%s", kiln_last_error());
    cr_expect_str_eq(kiln_module_path(fc), "layer1.fc");
    cr_expect(kiln_store_find(kiln_model_store(m), "layer1.fc.weight") != NULL);
    cr_expect(kiln_model_forward(m, ctx, kiln_full(ctx, 2, (int64_t[]){1, 2}, 1.0f)) == NULL);
    ku_expect_error("before kiln_model_alloc", "forward before alloc");
    cr_assert_eq(kiln_model_alloc(m, ctx), KILN_STATUS_OK);
    cr_expect_lt(kiln_model_alloc(m, ctx), 0, "second alloc");
    kiln_init_constant(kiln_module_param(fc, "weight"), 0.5f);
    kiln_tensor *y = kiln_model_forward(m, ctx, kiln_full(ctx, 2, (int64_t[]){1, 2}, 1.0f));
    ku_expect_close(y, kiln_full(ctx, 2, (int64_t[]){1, 2}, 3.0f), 1e-6, 0, "3 * (0.5 + 0.5)"); /* exact in f32 */
    kiln_model_free(m);
    ku_ctx_free(ctx);
}

Test(nn, build_errors_surface_at_alloc)
{
    kiln_ctx *ctx = ku_ctx();
    kiln_model *m = kiln_model_new();
    kiln_module *r = kiln_model_root(m);
    kiln_nn_relu(r, "act");
    cr_expect(kiln_nn_relu(r, "act") == NULL);
    kiln_module *s = kiln_nn_sequential(NULL, "orphan"); /* NULL parent propagates */
    cr_expect(s == NULL && kiln_nn_linear(s, NULL, 2, 2, true) == NULL);
    cr_expect_lt(kiln_model_alloc(m, ctx), 0);
    ku_expect_error("already has a child named 'act'", "duplicate name");
    kiln_model_free(m);

    m = kiln_model_new();
    kiln_nn_linear(kiln_model_root(m), NULL, 0, 3, true);
    cr_expect_lt(kiln_model_alloc(m, ctx), 0);
    ku_expect_error("Linear", "bad size");
    kiln_model_free(m);
    ku_ctx_free(ctx);
}

Test(nn, forward_error_names_the_module)
{
    kiln_ctx *ctx = ku_ctx();
    kiln_model *m = kiln_simple_cnn_new(1, 10);
    cr_assert_eq(kiln_model_alloc(m, ctx), KILN_STATUS_OK);
    kiln_tensor *x = kiln_randn(ctx, 4, (int64_t[]){2, 3, 28, 28}, 0, 1); /* 3 channels, net wants 1 */
    cr_expect(kiln_model_forward(m, ctx, x) == NULL);
    ku_expect_error("[in Conv2d '0.0']", "wrong channel count");
    kiln_model_free(m);
    ku_ctx_free(ctx);
}

Test(nn, summary_lists_modules_shapes_and_counts)
{
    kiln_ctx *ctx = ku_ctx();
    kiln_model *m = kiln_simple_cnn_new(1, 10);
    cr_assert_eq(kiln_model_alloc(m, ctx), KILN_STATUS_OK);
    kiln_tensor *x = kiln_randn(ctx, 4, (int64_t[]){2, 1, 28, 28}, 0, 1);
    char *buf = NULL;
    size_t len = 0;
    FILE *out = open_memstream(&buf, &len);
    size_t nb;
    float *rv = kiln_store_flat(kiln_model_store(m), KILN_STORE_BUFFERS, &nb);
    float rv1 = rv[nb - 1];
    cr_assert_eq(kiln_model_summary(m, ctx, x, out), KILN_STATUS_OK, "%s", kiln_last_error());
    fclose(out);
    cr_expect(strstr(buf, "1.c1.0") && strstr(buf, "Conv2d") && strstr(buf, "Res"), "%s", buf);
    cr_expect(strstr(buf, "(2, 8, 14, 14)") && strstr(buf, "(2, 10)"), "output shapes:\n%s", buf);
    cr_expect(strstr(buf, "1.c1.1.running_mean") == NULL, "buffers are not parameters");
    char total[64];
    snprintf(total, sizeof total, "total params %lld", (long long)kiln_model_n_params(m, false));
    cr_expect(strstr(buf, total), "%s", buf);
    cr_expect(kiln_model_training(m), "summary restores train mode");
    cr_expect_eq(rv[nb - 1], rv1, "summary leaves running stats alone");
    free(buf);
    kiln_model_free(m);
    ku_ctx_free(ctx);
}
