/* AWD-LSTM language model (kiln_awd_lstm_lm_new): parity with fastai's model in PyTorch
 * (tests/fixtures/awd.safetensors, gen_awd.py) with the dropouts off over three windows with
 * the hidden state carried (the third with fewer rows), gradients of a loss with AR/TAR,
 * reset, the dropouts (train mode only, DropConnect leaving the raw weight as it was), the fused
 * decoder + loss against the logits, four Adam steps against PyTorch's, a finite-difference
 * gradient check of every weight, fastai's LM layer groups and the config's dropouts. */
#include <math.h>
#include <string.h>

#include "util/ku.h"

static const kiln_awd_lstm_params small = {.vocab = 50, .emb = 8, .hid = 12, .n_layers = 3};

/* the model with the fixture's weights (every parameter checked to be loaded) */
static kiln_model *load(kiln_ctx *ctx, kiln_st_file *f, const kiln_awd_lstm_params *p)
{
    kiln_model *m = kiln_awd_lstm_lm_new(p);
    cr_assert_not_null(m, "%s", kiln_last_error());
    cr_assert_eq(kiln_model_alloc(m, ctx), KILN_STATUS_OK, "%s", kiln_last_error());
    cr_assert_eq(kiln_model_load_st(m, f, "lm.", false), KILN_STATUS_OK, "%s", kiln_last_error());
    kiln_store *s = kiln_model_store(m);
    cr_assert_eq(kiln_store_count(s), 2 + 4 * 3, "encoder, decoder bias and 4 tensors per LSTM");
    for (size_t i = 0; i < kiln_store_count(s); i++) {
        kiln_tensor *t = kiln_store_at(s, i);
        ku_expect_fixture(ctx, f, "lm", t->name, t, 0, 0);
    }
    return m;
}

static kiln_tensor *forward(kiln_model *m, kiln_ctx *ctx, kiln_st_file *f, const char *x)
{
    kiln_tensor *y = kiln_model_forward(m, ctx, ku_load(ctx, f, "lm", x));
    cr_assert_not_null(y, "%s", kiln_last_error());
    return y;
}

Test(awd_lstm, parity_with_pytorch_over_carried_windows)
{
    kiln_ctx *ctx = ku_ctx();
    kiln_st_file *f = ku_fixture("awd");
    kiln_model *m = load(ctx, f, &small);
    ku_expect_fixture(ctx, f, "lm", "y1", forward(m, ctx, f, "x1"), 1e-5, 1e-4);
    kiln_model_zero_grad(m);
    kiln_tensor *y2 = forward(m, ctx, f, "x2");
    ku_expect_fixture(ctx, f, "lm", "y2", y2, 1e-5, 1e-4);
    kiln_tensor *reg = kiln_awd_lstm_ar_tar(m, ctx, 2.0f, 1000.0f); /* beta 1000 as the fixture: TAR is ~3e-6 */
    cr_assert_not_null(reg, "%s", kiln_last_error());
    ku_expect_fixture(ctx, f, "lm", "ar_tar", kiln_reshape(ctx, reg, 1, (int64_t[]){1}), 1e-6, 1e-4);
    kiln_tensor *loss = kiln_add(ctx, kiln_sum(ctx, kiln_mul(ctx, y2, ku_load(ctx, f, "lm", "g2"))), reg);
    cr_assert_eq(kiln_backward(ctx, loss), KILN_STATUS_OK, "%s", kiln_last_error());
    kiln_store *s = kiln_model_store(m);
    for (size_t i = 0; i < kiln_store_count(s); i++) {
        kiln_tensor *t = kiln_store_at(s, i);
        char name[256];
        snprintf(name, sizeof name, "grad.%s", t->name);
        ku_expect_fixture(ctx, f, "lm", name, t->grad, 1e-5, 1e-3);
    }
    /* 2 rows instead of 3: the first two rows' state goes on */
    ku_expect_fixture(ctx, f, "lm", "y3", forward(m, ctx, f, "x3"), 1e-5, 1e-4);
    kiln_model_free(m);
    kiln_st_close(f);
    ku_ctx_free(ctx);
}

/* Four training steps against PyTorch's (case "steps"): the fused decoder + cross-entropy, Adam
 * (fastai's betas and eps, no weight decay), the state carried between the windows; each step's
 * loss and every weight after the last. */
Test(awd_lstm, four_adam_steps_match_pytorch)
{
    kiln_ctx *ctx = ku_ctx();
    kiln_st_file *f = ku_fixture("awd");
    kiln_model *m = kiln_awd_lstm_lm_new(&small);
    cr_assert(m && !kiln_model_alloc(m, ctx), "%s", kiln_last_error());
    cr_assert_eq(kiln_model_load_st(m, f, "steps.", false), KILN_STATUS_OK, "%s", kiln_last_error());
    cr_assert_eq(kiln_awd_lstm_set_fused_decoder(m, true), KILN_STATUS_OK);
    kiln_adam_params ap = kiln_adam_default_params();
    ap.lr = 1e-2f, ap.weight_decay = 0;
    kiln_optim *opt = kiln_optim_new_adam(kiln_model_store(m), &ap);
    cr_assert_not_null(opt, "%s", kiln_last_error());
    kiln_model_train(m, true);
    kiln_tensor *want = ku_load(ctx, f, "steps", "losses");
    for (int k = 0; k < 4; k++) {
        char xn[8], yn[8];
        snprintf(xn, sizeof xn, "x%d", k), snprintf(yn, sizeof yn, "y%d", k);
        kiln_optim_zero_grad(opt);
        kiln_tensor *out = kiln_model_forward(m, ctx, ku_load(ctx, f, "steps", xn));
        cr_assert(out && out->shape[2] == small.emb, "a fused train forward gives the decoder's input: %s", kiln_last_error());
        kiln_tensor *loss = kiln_awd_lstm_loss(m, ctx, out, ku_load(ctx, f, "steps", yn), NULL);
        cr_assert_not_null(loss, "%s", kiln_last_error());
        double got = ((const float *)loss->data)[0], exp = ((const float *)want->data)[k];
        cr_expect(fabs(got - exp) <= 1e-5 * fabs(exp) + 1e-6, "step %d loss %.9g, PyTorch %.9g", k, got, exp);
        cr_assert_eq(kiln_backward(ctx, loss), KILN_STATUS_OK, "%s", kiln_last_error());
        cr_assert_eq(kiln_optim_step(opt), KILN_STATUS_OK, "%s", kiln_last_error());
    }
    kiln_store *s = kiln_model_store(m);
    for (size_t i = 0; i < kiln_store_count(s); i++) {
        kiln_tensor *t = kiln_store_at(s, i);
        char name[256];
        snprintf(name, sizeof name, "after.%s", t->name);
        ku_expect_fixture(ctx, f, "steps", name, t, 1e-4, 1e-3);
    }
    kiln_optim_free(opt);
    kiln_model_free(m);
    kiln_st_close(f);
    ku_ctx_free(ctx);
}

/* The loss of one window from a reset state (the model's parameters are inputs[]) */
typedef struct gc_lm {
    kiln_model *m;
    kiln_tensor *x, *y;
} gc_lm;

static kiln_tensor *gc_lm_loss(kiln_ctx *ctx, kiln_tensor **inputs, void *user)
{
    (void)inputs; /* they are the model's own parameters */
    gc_lm *g = user;
    kiln_awd_lstm_reset(g->m);
    kiln_tensor *out = kiln_model_forward(g->m, ctx, g->x);
    kiln_tensor *loss = out ? kiln_awd_lstm_loss(g->m, ctx, out, g->y, NULL) : NULL;
    kiln_tensor *reg = loss ? kiln_awd_lstm_ar_tar(g->m, ctx, 2.0f, 1.0f) : NULL;
    return reg ? kiln_add(ctx, loss, reg) : NULL;
}

/* Finite differences agree with the backward for every weight of a small language model (train
 * mode, dropouts off): cross-entropy through the fused decoder plus AR/TAR, and through the
 * logits. */
Test(awd_lstm, gradient_check_of_every_weight)
{
    kiln_ctx *ctx = ku_ctx();
    kiln_st_file *f = ku_fixture("awd");
    for (int fused = 0; fused < 2; fused++) {
        kiln_model *m = load(ctx, f, &small);
        cr_assert_eq(kiln_awd_lstm_set_fused_decoder(m, fused), KILN_STATUS_OK);
        kiln_model_train(m, true);
        gc_lm g = {.m = m, .x = ku_load(ctx, f, "lm", "x1"), .y = ku_load(ctx, f, "lm", "x2")};
        kiln_store *s = kiln_model_store(m);
        kiln_tensor *in[16];
        int n = 0;
        for (size_t i = 0; i < kiln_store_count(s); i++) in[n++] = kiln_store_at(s, i);
        kiln_gradcheck_params gp = kiln_gradcheck_default_params();
        gp.eps = 1e-2, gp.atol = 2e-3, gp.rtol = 2e-2;
        double used = 0;
        cr_expect_eq(kiln_gradcheck(ctx, gc_lm_loss, in, n, &g, &gp, &used), KILN_STATUS_OK, "%s (fused %d)",
                     kiln_last_error(), fused);
        cr_expect(used > 0, "something was checked");
        kiln_model_free(m);
    }
    kiln_st_close(f);
    ku_ctx_free(ctx);
}

Test(awd_lstm, reset_and_the_carried_state)
{
    kiln_ctx *ctx = ku_ctx();
    kiln_st_file *f = ku_fixture("awd");
    kiln_model *m = load(ctx, f, &small);
    forward(m, ctx, f, "x1");
    kiln_tensor *y2 = forward(m, ctx, f, "x2");
    cr_assert_eq(kiln_awd_lstm_reset(m), KILN_STATUS_OK);
    kiln_tensor *y2_fresh = forward(m, ctx, f, "x2");
    float d = 0;
    for (int64_t i = 0; i < kiln_numel(y2); i++) d = fmaxf(d, fabsf(((float *)y2->data)[i] - ((float *)y2_fresh->data)[i]));
    cr_expect_gt(d, 1e-4, "the state carried from x1 changed nothing (max difference %g)", d);
    cr_assert_eq(kiln_awd_lstm_reset(m), KILN_STATUS_OK);
    ku_expect_fixture(ctx, f, "lm", "y1", forward(m, ctx, f, "x1"), 1e-5, 1e-4);
    /* a switch to eval mode (validation) starts from zero state, as does the switch back */
    forward(m, ctx, f, "x2");
    kiln_model_train(m, false);
    ku_expect_fixture(ctx, f, "lm", "y1", forward(m, ctx, f, "x1"), 1e-5, 1e-4);
    forward(m, ctx, f, "x2");
    kiln_model_train(m, true);
    ku_expect_fixture(ctx, f, "lm", "y1", forward(m, ctx, f, "x1"), 1e-5, 1e-4);
    kiln_model *other = kiln_simple_resnet_new(1, 2);
    cr_expect_lt(kiln_awd_lstm_reset(other), 0);
    kiln_model_free(other);
    kiln_model_free(m);
    kiln_st_close(f);
    ku_ctx_free(ctx);
}

static float max_diff(const kiln_tensor *a, const kiln_tensor *b)
{
    float d = 0;
    for (int64_t i = 0; i < kiln_numel(a); i++) d = fmaxf(d, fabsf(((float *)a->data)[i] - ((float *)b->data)[i]));
    return d;
}

Test(awd_lstm, dropouts_act_in_train_mode_only)
{
    kiln_ctx *ctx = ku_ctx();
    kiln_st_file *f = ku_fixture("awd");
    kiln_awd_lstm_params p = small;
    p.output_p = 0.1f, p.hidden_p = 0.15f, p.input_p = 0.25f, p.embed_p = 0.02f, p.weight_p = 0.2f;
    kiln_model *m = load(ctx, f, &p);
    kiln_tensor *whh = kiln_store_find(kiln_model_store(m), "0.rnns.1.module.weight_hh_l0");
    float before = ((float *)whh->data)[7];
    kiln_model_train(m, false);
    ku_expect_fixture(ctx, f, "lm", "y1", forward(m, ctx, f, "x1"), 1e-5, 1e-4);
    kiln_model_train(m, true);
    kiln_awd_lstm_reset(m);
    kiln_tensor *a = forward(m, ctx, f, "x1");
    kiln_awd_lstm_reset(m);
    kiln_tensor *b = forward(m, ctx, f, "x1");
    cr_expect_gt(max_diff(a, b), 1e-4, "two train forwards drew the same dropouts");
    cr_expect_eq(((float *)whh->data)[7], before, "DropConnect changed the raw weight");
    /* each dropout alone changes the train output */
    float *ps[5] = {&p.output_p, &p.hidden_p, &p.input_p, &p.embed_p, &p.weight_p};
    for (int k = 0; k < 5; k++) {
        kiln_awd_lstm_params q = small;
        float *qs[5] = {&q.output_p, &q.hidden_p, &q.input_p, &q.embed_p, &q.weight_p};
        *qs[k] = k == 3 ? 0.3f : *ps[k]; /* embed_p 0.02 of 50 rows may drop none: 0.3 */
        kiln_model *mq = load(ctx, f, &q);
        kiln_model_train(mq, true);
        kiln_tensor *y = forward(mq, ctx, f, "x1");
        kiln_model_train(mq, false);
        kiln_awd_lstm_reset(mq);
        kiln_tensor *e = forward(mq, ctx, f, "x1");
        cr_expect_gt(max_diff(y, e), 1e-5, "dropout %d alone did nothing in train mode", k);
        kiln_model_free(mq);
    }
    kiln_model_free(m);
    kiln_st_close(f);
    ku_ctx_free(ctx);
}

/* every parameter's gradient, copied out (malloc'd, n floats in all) */
static float *grads_of(kiln_model *m, int64_t *n)
{
    kiln_store *s = kiln_model_store(m);
    *n = 0;
    for (size_t i = 0; i < kiln_store_count(s); i++) *n += kiln_numel(kiln_store_at(s, i));
    float *g = malloc((size_t)*n * sizeof *g), *p = g;
    cr_assert_not_null(g);
    for (size_t i = 0; i < kiln_store_count(s); i++) {
        const kiln_tensor *t = kiln_store_at(s, i);
        memcpy(p, t->grad->data, (size_t)kiln_numel(t) * sizeof *p);
        p += kiln_numel(t);
    }
    return g;
}

/* kiln_awd_lstm_set_fused_decoder + kiln_awd_lstm_loss: the same loss (+ AR/TAR) and parameter
 * gradients as the logits and kiln_cross_entropy, with every dropout on (the same masks: the fused
 * path draws nothing more); eval forwards still give logits. Tolerances: loss rtol 1e-5; gradients
 * 2e-5 of the largest |gradient| (different GEMM sizes and chunked sums; measured ~1e-6 of it). */
Test(awd_lstm, fused_decoder_loss_matches_the_logits)
{
    kiln_ctx *ctx = ku_ctx();
    kiln_st_file *f = ku_fixture("awd");
    kiln_awd_lstm_params p = small;
    p.output_p = 0.1f, p.hidden_p = 0.15f, p.input_p = 0.25f, p.embed_p = 0.3f, p.weight_p = 0.2f;
    kiln_model *m = load(ctx, f, &p);
    kiln_tensor *x = ku_load(ctx, f, "lm", "x1"), *y = kiln_zeros(ctx, KILN_DTYPE_I64, 2, x->shape);
    const int64_t B = x->shape[0], T = x->shape[1];
    for (int64_t i = 0; i < B * T; i++) ((int64_t *)y->data)[i] = i % 9 == 4 ? -100 : (((int64_t *)x->data)[i] * 7 + i) % p.vocab;
    kiln_rng_state r0 = kiln_rng_get(ctx);
    float loss[2];
    float *g[2];
    int64_t ng = 0;
    for (int fused = 0; fused < 2; fused++) {
        cr_assert_eq(kiln_awd_lstm_set_fused_decoder(m, fused), KILN_STATUS_OK, "%s", kiln_last_error());
        kiln_model_train(m, true);
        kiln_awd_lstm_reset(m);
        kiln_model_zero_grad(m);
        kiln_rng_set(ctx, r0);
        kiln_tensor *out = kiln_model_forward(m, ctx, x);
        cr_assert_not_null(out, "%s", kiln_last_error());
        cr_assert_eq(out->ndim, 3);
        cr_assert_eq(out->shape[2], fused ? p.emb : p.vocab, "fused %d: output (B, T, %lld)", fused,
                     (long long)out->shape[2]);
        kiln_tensor *l = kiln_awd_lstm_loss(m, ctx, out, y, NULL);
        cr_assert_not_null(l, "fused %d: %s", fused, kiln_last_error());
        l = kiln_add(ctx, l, kiln_awd_lstm_ar_tar(m, ctx, 2.0f, 1.0f));
        cr_assert_not_null(l, "%s", kiln_last_error());
        cr_assert_eq(kiln_backward(ctx, l), KILN_STATUS_OK, "%s", kiln_last_error());
        loss[fused] = kiln_item(l);
        g[fused] = grads_of(m, &ng);
    }
    cr_expect(fabsf(loss[1] - loss[0]) <= 1e-5f * fabsf(loss[0]), "loss fused %.9g, logits %.9g", (double)loss[1],
              (double)loss[0]);
    float mx = 0;
    for (int64_t i = 0; i < ng; i++) mx = fmaxf(mx, fabsf(g[0][i]));
    cr_assert_gt(mx, 0.0f);
    ku_expect_arrays(g[1], g[0], ng, 2e-5 * mx, 0.0, "parameter gradients, fused vs logits");
    free(g[0]);
    free(g[1]);
    /* eval forwards give logits with the fused decoder on, the same as without */
    kiln_model_train(m, false);
    kiln_awd_lstm_reset(m);
    kiln_tensor *e = kiln_model_forward(m, ctx, x);
    cr_assert(e && e->ndim == 3 && e->shape[2] == p.vocab, "eval output: %s", e ? "not logits" : kiln_last_error());
    kiln_tensor *le = kiln_awd_lstm_loss(m, ctx, e, y, NULL);
    cr_assert(le && isfinite(kiln_item(le)), "%s", kiln_last_error());
    /* errors: a tensor that is neither; a model that is not the LM */
    cr_assert_null(kiln_awd_lstm_loss(m, ctx, kiln_zeros(ctx, KILN_DTYPE_F32, 3, (int64_t[]){B, T, 7}), y, NULL));
    char want[160];
    snprintf(want, sizeof want, "awd_lstm_loss: output (%lld, %lld, 7) is neither (B, T, 50) logits nor this step's "
             "fused decoder input", (long long)B, (long long)T);
    ku_expect_error(want, "neither logits nor the decoder input");
    cr_assert_null(kiln_awd_lstm_loss(m, ctx, e, kiln_zeros(ctx, KILN_DTYPE_I64, 1, (int64_t[]){B * T}), NULL));
    snprintf(want, sizeof want, "awd_lstm_loss: output (%lld, %lld, 50) and targets (%lld,) are not (B, T, C) and (B, T)",
             (long long)B, (long long)T, (long long)(B * T));
    ku_expect_error(want, "targets shape");
    kiln_awd_clas_params cp = kiln_awd_clas_default_params(50, 3, 0.0f);
    cp.enc.emb = 8, cp.enc.hid = 12;
    kiln_model *c = kiln_awd_lstm_clas_new(&cp);
    cr_assert_not_null(c, "%s", kiln_last_error());
    cr_assert_lt(kiln_awd_lstm_set_fused_decoder(c, true), 0);
    ku_expect_error("awd_lstm_set_fused_decoder: not an AWD-LSTM language model", "classifier");
    cr_assert_null(kiln_awd_lstm_loss(c, ctx, e, y, NULL));
    ku_expect_error("awd_lstm_loss: not an AWD-LSTM language model", "classifier");
    kiln_model_free(c);
    kiln_model_free(m);
    kiln_st_close(f);
    ku_ctx_free(ctx);
}

Test(awd_lstm, layer_groups_and_config)
{
    kiln_model *m = kiln_awd_lstm_lm_new(&small);
    cr_assert_not_null(m);
    kiln_ctx *ctx = ku_ctx();
    cr_assert_eq(kiln_model_alloc(m, ctx), KILN_STATUS_OK);
    cr_expect_eq(kiln_model_n_groups(m), 4);
    kiln_store *s = kiln_model_store(m);
    for (size_t i = 0; i < kiln_store_count(s); i++) {
        const char *n = kiln_store_at(s, i)->name;
        int want = !strncmp(n, "0.rnns.", 7) ? n[7] - '0' : 3;
        cr_expect_eq(kiln_model_param_group(m, i), want, "%s", n);
    }
    /* the encoder starts U(-0.1, 0.1), the decoder bias 0 */
    kiln_tensor *enc = kiln_store_find(s, "0.encoder.weight"), *bias = kiln_store_find(s, "1.decoder.bias");
    float lo = 1, hi = -1;
    for (int64_t i = 0; i < kiln_numel(enc); i++) lo = fminf(lo, ((float *)enc->data)[i]), hi = fmaxf(hi, ((float *)enc->data)[i]);
    cr_expect(lo >= -0.1f && hi <= 0.1f && hi - lo > 0.15f, "encoder init in [%g, %g]", lo, hi);
    for (int64_t i = 0; i < kiln_numel(bias); i++) cr_expect_eq(((float *)bias->data)[i], 0.0f);
    kiln_model_free(m);
    ku_ctx_free(ctx);
    kiln_awd_lstm_params c = kiln_awd_lstm_lm_config(1000, 0.5f);
    cr_expect_eq(c.emb, 400);
    cr_expect_eq(c.hid, 1152);
    cr_expect_eq(c.n_layers, 3);
    cr_expect_float_eq(c.input_p, 0.125f, 1e-7);
    cr_expect_float_eq(c.weight_p, 0.1f, 1e-7);
    c.hidden_p = 1.0f;
    cr_expect_null(kiln_awd_lstm_lm_new(&c));
}

/* the classifier: encoder in chunks of bptt 4 keeping the last 8 tokens' outputs, masked concat
 * pooling over documents padded in front (0, 3, 6 and 10 pads of 11), the BatchNorm head */
Test(awd_lstm, classifier_parity_with_pytorch)
{
    kiln_ctx *ctx = ku_ctx();
    kiln_st_file *f = ku_fixture("awd");
    kiln_awd_clas_params p = {.enc = small, .n_classes = 3, .bptt = 4, .max_len = 8, .lin_ftrs = 6, .head_p = 0, .pad_idx = 1};
    kiln_model *m = kiln_awd_lstm_clas_new(&p);
    cr_assert_not_null(m, "%s", kiln_last_error());
    cr_assert_eq(kiln_model_alloc(m, ctx), KILN_STATUS_OK, "%s", kiln_last_error());
    cr_assert_eq(kiln_model_load_st(m, f, "clas.", false), KILN_STATUS_OK, "%s", kiln_last_error());
    kiln_store *s = kiln_model_store(m);
    int n_params = 0;
    for (size_t i = 0; i < kiln_store_count(s); i++) {
        kiln_tensor *t = kiln_store_at(s, i);
        if (!kiln_store_is_param(s, i)) continue; /* BatchNorm's running statistics */
        ku_expect_fixture(ctx, f, "clas", t->name, t, 0, 0);
        n_params++;
    }
    cr_expect_eq(n_params, 1 + 12 + 6);
    cr_expect_eq(kiln_model_n_groups(m), 5);
    kiln_tensor *y = kiln_model_forward(m, ctx, ku_load(ctx, f, "clas", "x"));
    cr_assert_not_null(y, "%s", kiln_last_error());
    ku_expect_fixture(ctx, f, "clas", "y", y, 1e-4, 1e-3);
    cr_assert_eq(kiln_backward(ctx, kiln_sum(ctx, kiln_mul(ctx, y, ku_load(ctx, f, "clas", "g")))), KILN_STATUS_OK);
    for (size_t i = 0; i < kiln_store_count(s); i++) {
        kiln_tensor *t = kiln_store_at(s, i);
        if (!kiln_store_is_param(s, i)) continue;
        char name[256];
        snprintf(name, sizeof name, "grad.%s", t->name);
        /* gradients up to 3.5 through two train-mode BatchNorms of 4 rows: rounding reaches 2e-4 */
        ku_expect_fixture(ctx, f, "clas", name, t->grad, 1e-3, 1e-3);
    }
    kiln_model_free(m);
    kiln_st_close(f);
    ku_ctx_free(ctx);
}
