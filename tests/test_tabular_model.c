/* Tabular and collaborative-filtering models (kiln/models.h): fastai's TabularModel,
 * EmbeddingDotBias and EmbeddingNN against their PyTorch twins (tests/fixtures/
 * tabular_model.safetensors, gen_tabular_model.py): outputs in eval and train mode, the loss,
 * every parameter's gradient and the input's, the running statistics after the train forward;
 * finite-difference gradient checks; emb_sz_rule; the module layout and fastai's init; bad inputs
 * and bad parameters refused with clear messages.
 * Tolerances (atol + rtol * |ref|): outputs and losses 1e-5 + 1e-4, gradients and running
 * statistics 1e-5 + 1e-3 (the BatchNorm backward sums over the batch in another order than
 * PyTorch). TM_SURVEY=1 prints the share of the tolerance each comparison used. */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "util/ku.h"

#define OUT_ATOL 1e-5
#define OUT_RTOL 1e-4
#define GRAD_ATOL 1e-5
#define GRAD_RTOL 1e-3

/* ku_expect_fixture, and with TM_SURVEY set the largest |diff| and share of the tolerance used */
static void expect(kiln_ctx *ctx, kiln_st_file *f, const char *kase, const char *name, const kiln_tensor *got,
                   double atol, double rtol)
{
    ku_expect_fixture(ctx, f, kase, name, got, atol, rtol);
    if (!getenv("TM_SURVEY")) return;
    kiln_tensor *want = ku_load(ctx, f, kase, name);
    double worst = 0, share = 0;
    for (int64_t i = 0; i < kiln_numel(want); i++) {
        double w = kiln_get_flat(want, i), d = fabs(kiln_get_flat(got, i) - w);
        worst = fmax(worst, d);
        share = fmax(share, d / (atol + rtol * fabs(w)));
    }
    fprintf(stderr, "survey %s.%s: max |diff| %.3g, %.0f%% of the tolerance\n", kase, name, worst, 100 * share);
}

/* ---- the cases of the fixture ------------------------------------------------------------- */

typedef enum { LOSS_XENT, LOSS_MSE } loss_kind;

typedef struct tcase {
    const char *name;
    loss_kind loss;
    int n_params, n_buffers; /* store entries: parameters and running statistics */
    int n_bn;                /* BatchNorm modules */
} tcase;

static const int64_t clf_card[3] = {5, 3, 7}, reg_card[2] = {4, 6}, reg_dims[2] = {3, 2}, plain_card[1] = {5};
static const int64_t hidden86[2] = {8, 6}, hidden5[1] = {5}, hidden4[1] = {4};

static kiln_model *build(const char *kase)
{
    kiln_tabular_model_params p = kiln_tabular_model_default_params();
    if (!strcmp(kase, "clf")) {
        p.n_cat = 3, p.cardinality = clf_card, p.n_cont = 3, p.n_out = 3, p.n_layers = 2, p.layers = hidden86;
    } else if (!strcmp(kase, "reg")) {
        p.n_cat = 2, p.cardinality = reg_card, p.emb_dims = reg_dims, p.n_cont = 2, p.n_out = 1, p.n_layers = 2,
        p.layers = hidden86, p.y_range = true, p.y_lo = -1.0f, p.y_hi = 2.0f, p.bn_final = true;
    } else if (!strcmp(kase, "plain")) {
        p.n_cat = 1, p.cardinality = plain_card, p.n_cont = 2, p.n_out = 2, p.n_layers = 1, p.layers = hidden5,
        p.use_bn = false, p.bn_cont = false;
    } else if (!strcmp(kase, "cnn")) {
        return kiln_collab_nn_new(6, 5, 1, hidden4, true, 0.0f, 5.5f);
    } else if (!strcmp(kase, "dot")) {
        return kiln_collab_dot_bias_new(6, 5, 4, true, 0.0f, 5.5f);
    }
    return kiln_tabular_model_new(&p);
}

static const tcase cases[] = {
    /* clf: 3 embeddings, bn_cont (4), layers.0 (Linear w, BN 4), layers.1 (same), layers.2 (w, b) */
    {"clf", LOSS_XENT, 3 + 2 + 3 + 3 + 2, 2 * 3, 3},
    /* reg: 2 embeddings, bn_cont, 2 hidden, last Linear (no bias) + BN */
    {"reg", LOSS_MSE, 2 + 2 + 3 + 3 + 3, 2 * 4, 4},
    /* plain: 1 embedding, layers.0 Linear (w, b), layers.1 Linear (w, b) */
    {"plain", LOSS_XENT, 1 + 2 + 2, 0, 0},
    /* cnn: 2 embeddings, layers.0 (Linear w, BN), layers.1 (w, b) */
    {"cnn", LOSS_MSE, 2 + 3 + 2, 2, 1},
    {"dot", LOSS_MSE, 4, 0, 0},
};

/* The case's model with the fixture's state dict; checks that every entry loaded and that the
 * store holds exactly the fixture's keys (fastai's state dict). */
static kiln_model *load(kiln_ctx *ctx, kiln_st_file *f, const tcase *c)
{
    kiln_model *m = build(c->name);
    cr_assert_not_null(m, "%s: %s", c->name, kiln_last_error());
    cr_assert_eq(kiln_model_alloc(m, ctx), KILN_STATUS_OK, "%s", kiln_last_error());
    char prefix[32];
    snprintf(prefix, sizeof prefix, "%s.", c->name);
    cr_assert_eq(kiln_model_load_st(m, f, prefix, false), KILN_STATUS_OK, "%s", kiln_last_error());
    kiln_store *s = kiln_model_store(m);
    cr_expect_eq((int)kiln_store_count(s), c->n_params + c->n_buffers, "%s: %d store entries, expected %d", c->name,
                 (int)kiln_store_count(s), c->n_params + c->n_buffers);
    for (size_t i = 0; i < kiln_store_count(s); i++) {
        kiln_tensor *t = kiln_store_at(s, i);
        ku_expect_fixture(ctx, f, c->name, t->name, t, 0, 0);
    }
    /* every state-dict key of the fixture (not x, y_*, target, loss, grad.*, after.*) is in the store */
    size_t n_keys = 0, plen = strlen(prefix);
    for (size_t i = 0; i < kiln_st_count(f); i++) {
        const char *k = kiln_st_name(f, i);
        if (strncmp(k, prefix, plen) != 0) continue;
        k += plen;
        if (!strncmp(k, "grad.", 5) || !strncmp(k, "after.", 6) || !strncmp(k, "y_", 2) || !strcmp(k, "x") ||
            !strcmp(k, "target") || !strcmp(k, "loss") || strstr(k, "num_batches_tracked"))
            continue;
        n_keys++;
        cr_expect_not_null(kiln_store_find(s, k), "%s: fastai's key %s has no entry in the kiln model", c->name, k);
    }
    cr_expect_eq(n_keys, kiln_store_count(s), "%s: the fixture has %zu state-dict keys, the model %zu", c->name,
                 n_keys, kiln_store_count(s));
    int64_t counters[64];
    size_t nc = kiln_model_counters(m, counters, 64);
    int n_bn = 0;
    for (size_t i = 0; i < nc && i < 64; i++) n_bn += counters[i] == 3; /* the fixture's num_batches_tracked */
    cr_expect_eq(n_bn, c->n_bn, "%s: %d BatchNorm counters read as 3, expected %d", c->name, n_bn, c->n_bn);
    return m;
}

static kiln_tensor *loss_of(kiln_ctx *ctx, const tcase *c, kiln_tensor *y, kiln_tensor *target)
{
    return c->loss == LOSS_XENT ? kiln_cross_entropy(ctx, y, target, NULL)
                                : kiln_mse_loss(ctx, y, target, KILN_REDUCTION_MEAN);
}

static void parity(const tcase *c)
{
    kiln_ctx *ctx = ku_ctx();
    kiln_st_file *f = ku_fixture("tabular_model");
    kiln_model *m = load(ctx, f, c);
    /* eval mode: the running statistics, which stay as they are */
    kiln_model_train(m, false);
    kiln_tensor *x = ku_load(ctx, f, c->name, "x");
    expect(ctx, f, c->name, "y_eval", kiln_model_forward(m, ctx, x), OUT_ATOL, OUT_RTOL);
    kiln_store *s = kiln_model_store(m);
    for (size_t i = 0; i < kiln_store_count(s); i++) {
        kiln_tensor *t = kiln_store_at(s, i);
        ku_expect_fixture(ctx, f, c->name, t->name, t, 0, 0);
    }
    /* train mode: batch statistics; loss, gradients (x's continuous columns too) */
    kiln_model_train(m, true);
    kiln_model_zero_grad(m);
    kiln_tensor *xg = ku_load_grad(ctx, f, c->name, "x");
    kiln_tensor *y = kiln_model_forward(m, ctx, xg);
    expect(ctx, f, c->name, "y_train", y, OUT_ATOL, OUT_RTOL);
    kiln_tensor *loss = loss_of(ctx, c, y, ku_load(ctx, f, c->name, "target"));
    cr_assert_not_null(loss, "%s", kiln_last_error());
    expect(ctx, f, c->name, "loss", kiln_reshape(ctx, loss, 1, (int64_t[]){1}), OUT_ATOL, OUT_RTOL);
    cr_assert_eq(kiln_backward(ctx, loss), KILN_STATUS_OK, "%s", kiln_last_error());
    int n_grads = 0;
    for (size_t i = 0; i < kiln_store_count(s); i++) {
        kiln_tensor *t = kiln_store_at(s, i);
        kiln_param_info info;
        cr_assert_eq(kiln_model_param_info(m, i, &info), KILN_STATUS_OK);
        char name[256];
        snprintf(name, sizeof name, info.is_param ? "grad.%s" : "after.%s", t->name);
        expect(ctx, f, c->name, name, info.is_param ? t->grad : t, GRAD_ATOL, GRAD_RTOL);
        n_grads += info.is_param;
    }
    cr_expect_eq(n_grads, c->n_params, "%s: %d gradients compared", c->name, n_grads);
    if (ku_has(f, c->name, "grad.x")) {
        cr_assert_not_null(xg->grad, "%s: x requires grad and got none", c->name);
        expect(ctx, f, c->name, "grad.x", xg->grad, GRAD_ATOL, GRAD_RTOL);
    }
    int64_t counters[64];
    size_t nc = kiln_model_counters(m, counters, 64);
    int n4 = 0;
    for (size_t i = 0; i < nc && i < 64; i++) n4 += counters[i] == 4;
    cr_expect_eq(n4, c->n_bn, "%s: %d BatchNorm counters went from 3 to 4, expected %d", c->name, n4, c->n_bn);
    kiln_model_free(m);
    kiln_st_close(f);
    ku_ctx_free(ctx);
}

Test(tabular_model, classification_matches_pytorch) { parity(&cases[0]); }
Test(tabular_model, regression_with_y_range_and_bn_final_matches_pytorch) { parity(&cases[1]); }
Test(tabular_model, without_batchnorm_matches_pytorch) { parity(&cases[2]); }
Test(tabular_model, collab_embedding_nn_matches_pytorch) { parity(&cases[3]); }
Test(tabular_model, embedding_dot_bias_with_repeated_codes_matches_pytorch) { parity(&cases[4]); }

/* ---- finite differences ------------------------------------------------------------------------ */

typedef struct gc {
    kiln_model *m;
    kiln_tensor *x;
} gc;

static kiln_tensor *gc_forward(kiln_ctx *ctx, kiln_tensor **inputs, void *user)
{
    (void)inputs; /* the model's own parameters */
    gc *g = user;
    return kiln_model_forward(g->m, ctx, g->x);
}

/* Every weight in train mode (BatchNorm on batch statistics, bn_final, SigmoidRange, the dot
 * product with repeated codes). clf and cnn are left out: some of their ReLU inputs lie within a
 * finite-difference step of 0 on the fixture's batch, so the differences cross the kink (their
 * gradients are compared with PyTorch's above). */
Test(tabular_model, gradient_check_of_every_weight)
{
    kiln_ctx *ctx = ku_ctx();
    kiln_st_file *f = ku_fixture("tabular_model");
    for (size_t k = 1; k < sizeof cases / sizeof cases[0]; k++) {
        if (!strcmp(cases[k].name, "cnn")) continue;
        kiln_model *m = load(ctx, f, &cases[k]);
        kiln_model_train(m, true);
        gc g = {.m = m, .x = ku_load(ctx, f, cases[k].name, "x")};
        kiln_store *s = kiln_model_store(m);
        kiln_tensor *in[32];
        int n = 0;
        for (size_t i = 0; i < kiln_store_count(s) && n < 32; i++) {
            kiln_tensor *t = kiln_store_at(s, i);
            if (t->requires_grad) in[n++] = t;
        }
        cr_assert_eq(n, cases[k].n_params);
        kiln_gradcheck_params gp = kiln_gradcheck_default_params();
        gp.eps = 3e-3, gp.atol = 2e-3, gp.rtol = 1e-2;
        double used = 0;
        cr_expect_eq(kiln_gradcheck(ctx, gc_forward, in, n, &g, &gp, &used), KILN_STATUS_OK, "%s: %s",
                     cases[k].name, kiln_last_error());
        cr_expect(used > 0, "%s: something was checked", cases[k].name);
        if (getenv("TM_SURVEY")) fprintf(stderr, "survey gradcheck %s: %.0f%% of the tolerance\n", cases[k].name, 100 * used);
        kiln_model_free(m);
    }
    kiln_st_close(f);
    ku_ctx_free(ctx);
}

/* ---- emb_sz_rule, layout, init ----------------------------------------------------------------- */

Test(tabular_model, emb_sz_rule_is_fastais)
{
    /* values from Python: min(600, round(1.6 * n ** 0.56)) */
    static const int64_t want[][2] = {{1, 2},     {2, 2},       {3, 3},         {4, 3},          {5, 4},
                                      {6, 4},     {7, 5},       {10, 6},        {50, 14},        {100, 21},
                                      {1000, 77}, {10000, 278}, {39431, 599},   {39432, 600},    {1000000, 600},
                                      {0, 0},     {-3, 0}};
    for (size_t i = 0; i < sizeof want / sizeof want[0]; i++)
        cr_expect_eq(kiln_emb_sz_rule(want[i][0]), want[i][1], "emb_sz_rule(%lld) = %lld, fastai gives %lld",
                     (long long)want[i][0], (long long)kiln_emb_sz_rule(want[i][0]), (long long)want[i][1]);
}

static kiln_module *find(kiln_model *m, const char *path, const char *type)
{
    kiln_module *mod = kiln_model_find(m, path);
    cr_assert_not_null(mod, "no module %s", path);
    cr_expect_str_eq(kiln_module_type(mod), type, "%s is a %s, expected %s", path, kiln_module_type(mod), type);
    return mod;
}

Test(tabular_model, layout_and_fastai_init)
{
    kiln_ctx *ctx = ku_ctx();
    static const int64_t card[2] = {1000, 10};
    static const float ps[2] = {0.25f, 0.0f};
    kiln_tabular_model_params p = kiln_tabular_model_default_params();
    p.n_cat = 2, p.cardinality = card, p.n_cont = 4, p.n_out = 5, p.ps = ps;
    kiln_model *m = kiln_tabular_model_new(&p);
    cr_assert_not_null(m, "%s", kiln_last_error());
    cr_assert_eq(kiln_model_alloc(m, ctx), KILN_STATUS_OK, "%s", kiln_last_error());
    cr_expect_str_eq(kiln_module_type(kiln_model_root(m)), "TabularModel");
    find(m, "embeds.0", "Embedding");
    find(m, "emb_drop", "Dropout");
    find(m, "bn_cont", "BatchNorm1d");
    find(m, "layers.0.0", "Linear");
    find(m, "layers.0.1", "ReLU");
    find(m, "layers.0.2", "BatchNorm1d");
    find(m, "layers.0.3", "Dropout"); /* ps[0] 0.25 */
    cr_expect_null(kiln_model_find(m, "layers.1.3"), "ps[1] 0: no Dropout, as fastai");
    find(m, "layers.2.0", "Linear");
    cr_expect_null(kiln_model_find(m, "layers.2.1"), "the last layer is a plain Linear");
    cr_expect_null(kiln_model_find(m, "layers.3"), "no SigmoidRange without y_range");
    kiln_store *s = kiln_model_store(m);
    /* sizes: 1000 -> 77, 10 -> 6; layers {200, 100} */
    kiln_tensor *e0 = kiln_store_find(s, "embeds.0.weight"), *e1 = kiln_store_find(s, "embeds.1.weight");
    cr_assert(e0 && e1);
    cr_expect(e0->shape[0] == 1000 && e0->shape[1] == 77 && e1->shape[0] == 10 && e1->shape[1] == 6);
    kiln_tensor *w0 = kiln_store_find(s, "layers.0.0.weight");
    cr_assert_not_null(w0);
    cr_expect(w0->shape[0] == 200 && w0->shape[1] == 77 + 6 + 4, "layers.0.0.weight (200, 87)");
    cr_expect_null(kiln_store_find(s, "layers.0.0.bias"), "no bias before a BatchNorm");
    cr_expect_not_null(kiln_store_find(s, "layers.2.0.bias"));
    kiln_tensor *w2 = kiln_store_find(s, "layers.2.0.weight");
    cr_expect(w2 && w2->shape[0] == 5 && w2->shape[1] == 100);
    /* fastai's trunc_normal_(std=0.01): normal().fmod(2) * 0.01 has std 0.00866, |w| < 0.02 */
    const float *w = e0->data;
    double sum = 0, sq = 0, mx = 0;
    int64_t n = kiln_numel(e0);
    for (int64_t i = 0; i < n; i++) sum += w[i], sq += (double)w[i] * w[i], mx = fmax(mx, fabs(w[i]));
    double mean = sum / n, sd = sqrt(sq / n - mean * mean);
    cr_expect(fabs(mean) < 3e-4, "embedding mean %g", mean);
    cr_expect(sd > 0.0083 && sd < 0.0090, "embedding std %g, trunc_normal_(std=0.01) gives 0.00866", sd);
    cr_expect(mx < 0.02 && mx > 0.015, "embedding max |w| %g: below 0.02, near it", mx);
    /* LinBnDrop's BatchNorm: weight 1, bias 1e-3 (fastai's BatchNorm); bn_cont: torch's 1 and 0 */
    kiln_tensor *bb = kiln_store_find(s, "layers.1.2.bias"), *bw = kiln_store_find(s, "layers.1.2.weight");
    kiln_tensor *cb = kiln_store_find(s, "bn_cont.bias");
    cr_assert(bb && bw && cb);
    cr_expect(((float *)bb->data)[0] == 1e-3f && ((float *)bw->data)[99] == 1.0f && ((float *)cb->data)[3] == 0.0f);
    /* Linear: PyTorch's default U(+-1/sqrt(in)) */
    double bound = 1 / sqrt(87.0), wmax = 0;
    for (int64_t i = 0; i < kiln_numel(w0); i++) wmax = fmax(wmax, fabs(((float *)w0->data)[i]));
    cr_expect(wmax <= bound && wmax > 0.9 * bound, "layers.0.0.weight max |w| %g, bound %g", wmax, bound);
    cr_expect_eq(kiln_model_n_groups(m), 1);
    /* the summary runs a forward through the custom root and lists every module */
    kiln_tensor *x = kiln_empty(ctx, KILN_DTYPE_F32, 2, (int64_t[]){3, 6});
    cr_assert_not_null(x);
    memset(x->data, 0, 18 * sizeof(float));
    ((float *)x->data)[0] = 999, ((float *)x->data)[7] = 9;
    FILE *out = tmpfile();
    cr_assert_not_null(out);
    cr_expect_eq(kiln_model_summary(m, ctx, x, out), KILN_STATUS_OK, "%s", kiln_last_error());
    fclose(out);
    kiln_model_free(m);

    /* EmbeddingDotBias: the four tables, trunc-normal too */
    m = kiln_collab_dot_bias_new(300, 200, 50, false, 0, 0);
    cr_assert_not_null(m, "%s", kiln_last_error());
    kiln_collab_tables t;
    cr_expect_eq(kiln_collab_tables_of(m, &t), KILN_STATUS_STATE, "tables before alloc");
    cr_assert_eq(kiln_model_alloc(m, ctx), KILN_STATUS_OK, "%s", kiln_last_error());
    cr_assert_eq(kiln_collab_tables_of(m, &t), KILN_STATUS_OK, "%s", kiln_last_error());
    s = kiln_model_store(m);
    cr_expect(t.u_weight == kiln_store_find(s, "u_weight.weight") && t.i_weight == kiln_store_find(s, "i_weight.weight") &&
              t.u_bias == kiln_store_find(s, "u_bias.weight") && t.i_bias == kiln_store_find(s, "i_bias.weight"));
    cr_expect(t.n_users == 300 && t.n_items == 200 && t.n_factors == 50);
    cr_expect(t.u_weight->shape[0] == 300 && t.u_weight->shape[1] == 50 && t.i_bias->shape[0] == 200 &&
              t.i_bias->shape[1] == 1);
    kiln_tensor *tabs[4] = {t.u_weight, t.i_weight, t.u_bias, t.i_bias};
    for (int k = 0; k < 4; k++) {
        double m2 = 0;
        for (int64_t i = 0; i < kiln_numel(tabs[k]); i++) m2 = fmax(m2, fabs(((float *)tabs[k]->data)[i]));
        cr_expect(m2 < 0.02 && m2 > 0, "%s max |w| %g", tabs[k]->name, m2);
    }
    cr_expect_eq(kiln_store_count(s), 4);
    kiln_model_free(m);
    /* tables of another model: refused */
    m = kiln_collab_nn_new(6, 5, 1, hidden4, false, 0, 0);
    cr_assert(m && !kiln_model_alloc(m, ctx), "%s", kiln_last_error());
    cr_expect_eq(kiln_collab_tables_of(m, &t), KILN_STATUS_INVALID);
    ku_expect_error("not an EmbeddingDotBias", "tables of a TabularModel");
    /* EmbeddingNN: the rule's sizes (6 -> 4, 5 -> 4), no bn_cont, out 1 */
    cr_expect_null(kiln_model_find(m, "bn_cont"));
    kiln_tensor *ew = kiln_store_find(kiln_model_store(m), "embeds.0.weight");
    cr_expect(ew && ew->shape[0] == 6 && ew->shape[1] == 4);
    kiln_model_free(m);
    ku_ctx_free(ctx);
}

/* embed_p and ps act in train mode only; a model stays usable after an error */
Test(tabular_model, dropouts_act_in_train_mode_only)
{
    kiln_ctx *ctx = ku_ctx();
    kiln_st_file *f = ku_fixture("tabular_model");
    static const float ps[2] = {0.5f, 0.5f};
    kiln_tabular_model_params p = kiln_tabular_model_default_params();
    p.n_cat = 3, p.cardinality = clf_card, p.n_cont = 3, p.n_out = 3, p.n_layers = 2, p.layers = hidden86;
    p.ps = ps, p.embed_p = 0.5f;
    kiln_model *m = kiln_tabular_model_new(&p);
    cr_assert(m && !kiln_model_alloc(m, ctx), "%s", kiln_last_error());
    cr_assert_eq(kiln_model_load_st(m, f, "clf.", false), KILN_STATUS_OK, "%s", kiln_last_error());
    kiln_tensor *x = ku_load(ctx, f, "clf", "x");
    kiln_model_train(m, false);
    expect(ctx, f, "clf", "y_eval", kiln_model_forward(m, ctx, x), OUT_ATOL, OUT_RTOL);
    kiln_model_train(m, true);
    kiln_tensor *y = kiln_model_forward(m, ctx, x), *want = ku_load(ctx, f, "clf", "y_train");
    cr_assert_not_null(y, "%s", kiln_last_error());
    double d = 0;
    for (int64_t i = 0; i < kiln_numel(y); i++) d = fmax(d, fabs(kiln_get_flat(y, i) - kiln_get_flat(want, i)));
    cr_expect_gt(d, 1e-3, "dropout 0.5 changed nothing in train mode (max difference %g)", d);
    kiln_model_free(m);
    kiln_st_close(f);
    ku_ctx_free(ctx);
}

/* ---- bad input ------------------------------------------------------------------------------------ */

/* x as a named (rows, cols) tensor with the given values */
static kiln_tensor *mkx(kiln_ctx *ctx, int64_t rows, int64_t cols, const float *v)
{
    kiln_tensor *x = kiln_empty(ctx, KILN_DTYPE_F32, 2, (int64_t[]){rows, cols});
    cr_assert_not_null(x);
    memcpy(x->data, v, (size_t)(rows * cols) * sizeof(float));
    x->name = "batch";
    return x;
}

static void expect_refused(kiln_model *m, kiln_ctx *ctx, kiln_tensor *x, const char *const *needles, const char *what)
{
    cr_expect_null(kiln_model_forward(m, ctx, x), "%s: accepted", what);
    for (int i = 0; needles[i]; i++) ku_expect_error(needles[i], what);
}

Test(tabular_model, bad_codes_and_shapes_are_named_errors)
{
    kiln_ctx *ctx = ku_ctx();
    static const int64_t card[2] = {3, 4};
    kiln_tabular_model_params p = kiln_tabular_model_default_params();
    p.n_cat = 2, p.cardinality = card, p.n_cont = 1, p.n_out = 2, p.n_layers = 1, p.layers = hidden4;
    kiln_model *m = kiln_tabular_model_new(&p);
    cr_assert(m && !kiln_model_alloc(m, ctx), "%s", kiln_last_error());
    kiln_model_train(m, false);
    const float good[6] = {0, 3, 0.5f, 2, 1, -1.5f};
    cr_assert_not_null(kiln_model_forward(m, ctx, mkx(ctx, 2, 3, good)), "%s", kiln_last_error());
    /* row 1, column 1: 4 is out of range for cardinality 4 */
    const float out_of_range[6] = {0, 3, 0.5f, 2, 4, -1.5f};
    expect_refused(m, ctx, mkx(ctx, 2, 3, out_of_range),
                   (const char *[]){"TabularModel", "batch", "row 1", "column 1", "holds 4", "[0, 4)", NULL}, "code 4");
    const float negative[6] = {-1, 3, 0.5f, 2, 1, -1.5f};
    expect_refused(m, ctx, mkx(ctx, 2, 3, negative), (const char *[]){"row 0", "column 0", "holds -1", NULL}, "code -1");
    const float fraction[6] = {0, 3, 0.5f, 1.5f, 1, -1.5f};
    expect_refused(m, ctx, mkx(ctx, 2, 3, fraction), (const char *[]){"row 1", "column 0", "1.5", "not a category code", NULL},
                   "code 1.5");
    const float nan_code[6] = {0, NAN, 0.5f, 2, 1, -1.5f};
    expect_refused(m, ctx, mkx(ctx, 2, 3, nan_code), (const char *[]){"row 0", "column 1", "nan", NULL}, "code NaN");
    const float huge[6] = {0, 1e30f, 0.5f, 2, 1, -1.5f};
    expect_refused(m, ctx, mkx(ctx, 2, 3, huge), (const char *[]){"row 0", "column 1", NULL}, "code 1e30");
    /* a NaN in a continuous column is data, not a code: no error here */
    const float nan_cont[6] = {0, 1, NAN, 2, 1, -1.5f};
    cr_expect_not_null(kiln_model_forward(m, ctx, mkx(ctx, 2, 3, nan_cont)), "%s", kiln_last_error());
    /* width, rank, dtype */
    const float wide[8] = {0};
    expect_refused(m, ctx, mkx(ctx, 2, 4, wide), (const char *[]){"TabularModel", "batch", "(2, 4)", "(batch, 3)", NULL},
                   "4 columns for 2 + 1");
    kiln_tensor *flat = kiln_reshape(ctx, mkx(ctx, 2, 3, good), 1, (int64_t[]){6});
    expect_refused(m, ctx, flat, (const char *[]){"TabularModel", "(6,)", NULL}, "1-D x");
    kiln_tensor *ix = kiln_empty(ctx, KILN_DTYPE_I64, 2, (int64_t[]){2, 3});
    memset(ix->data, 0, 6 * sizeof(int64_t));
    expect_refused(m, ctx, ix, (const char *[]){"TabularModel", "i64", NULL}, "i64 x");
    /* still usable */
    cr_expect_not_null(kiln_model_forward(m, ctx, mkx(ctx, 2, 3, good)), "%s", kiln_last_error());
    kiln_model_free(m);

    /* EmbeddingDotBias: user 6 of 6, item -1, 3 columns */
    m = kiln_collab_dot_bias_new(6, 5, 4, true, 0, 5.5f);
    cr_assert(m && !kiln_model_alloc(m, ctx), "%s", kiln_last_error());
    const float pairs[4] = {1, 2, 5, 4};
    cr_expect_not_null(kiln_model_forward(m, ctx, mkx(ctx, 2, 2, pairs)), "%s", kiln_last_error());
    const float bad_user[4] = {1, 2, 6, 4};
    expect_refused(m, ctx, mkx(ctx, 2, 2, bad_user),
                   (const char *[]){"EmbeddingDotBias", "batch", "row 1", "column 0", "[0, 6)", NULL}, "user 6");
    const float bad_item[4] = {1, -1, 5, 4};
    expect_refused(m, ctx, mkx(ctx, 2, 2, bad_item), (const char *[]){"row 0", "column 1", "[0, 5)", NULL}, "item -1");
    const float three[6] = {1, 2, 0, 5, 4, 0};
    expect_refused(m, ctx, mkx(ctx, 2, 3, three), (const char *[]){"EmbeddingDotBias", "(batch, 2)", "[user, item]", NULL},
                   "3 columns");
    kiln_model_free(m);
    ku_ctx_free(ctx);
}

Test(tabular_model, bad_parameters_are_refused)
{
    static const int64_t card[2] = {3, 4}, zero_card[2] = {3, 0}, bad_layers[2] = {8, 0};
    static const float bad_ps[1] = {1.0f};
    kiln_tabular_model_params base = kiln_tabular_model_default_params();
    base.n_cat = 2, base.cardinality = card, base.n_cont = 1, base.n_out = 2;
    cr_expect_null(kiln_tabular_model_new(NULL));
    ku_expect_error("tabular_model", "NULL parameters");
    kiln_tabular_model_params p = base;
    p.cardinality = NULL;
    cr_expect_null(kiln_tabular_model_new(&p));
    ku_expect_error("cardinality NULL", "NULL cardinality");
    p = base, p.cardinality = zero_card;
    cr_expect_null(kiln_tabular_model_new(&p));
    ku_expect_error("column 1: cardinality 0", "cardinality 0");
    p = base, p.n_cat = 0, p.n_cont = 0;
    cr_expect_null(kiln_tabular_model_new(&p));
    ku_expect_error("at least one input column", "no columns");
    p = base, p.n_out = 0;
    cr_expect_null(kiln_tabular_model_new(&p));
    ku_expect_error("n_out 0", "n_out 0");
    p = base, p.layers = bad_layers;
    cr_expect_null(kiln_tabular_model_new(&p));
    ku_expect_error("hidden layer 1: size 0", "hidden size 0");
    p = base, p.layers = NULL;
    cr_expect_null(kiln_tabular_model_new(&p));
    ku_expect_error("hidden sizes", "layers NULL");
    p = base, p.n_layers = 1, p.ps = bad_ps;
    cr_expect_null(kiln_tabular_model_new(&p));
    ku_expect_error("dropout 1", "ps 1");
    p = base, p.embed_p = -0.1f;
    cr_expect_null(kiln_tabular_model_new(&p));
    ku_expect_error("embed_p", "embed_p -0.1");
    p = base, p.y_range = true, p.y_lo = 2, p.y_hi = 1;
    cr_expect_null(kiln_tabular_model_new(&p));
    ku_expect_error("y_range (2, 1)", "y_range reversed");
    cr_expect_null(kiln_collab_dot_bias_new(0, 5, 4, false, 0, 0));
    ku_expect_error("n_users 0", "no users");
    cr_expect_null(kiln_collab_dot_bias_new(6, 5, 4, true, 5.5f, 0));
    ku_expect_error("y_range", "collab y_range reversed");
    cr_expect_null(kiln_collab_nn_new(6, 0, 1, hidden4, false, 0, 0));
    ku_expect_error("collab_nn", "no items");
    cr_expect_null(kiln_collab_nn_new(6, 5, 1, NULL, false, 0, 0));
    ku_expect_error("hidden sizes", "collab_nn layers NULL");
}
