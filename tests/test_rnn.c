/* kiln_lstm: parity with torch.nn.LSTM (tests/fixtures/rnn.safetensors, written by
 * gen_rnn.py), finite differences, the fast CPU kernels against the reference loops (with and
 * without a kept cell), kiln_lstm_weight_drop against kiln_lstm of kiln_dropout, weights made by
 * other ops (non-leaf), and argument errors.
 *
 * Tolerances (|got - ref| <= atol + rtol*|ref|):
 *   vs PyTorch: atol 2e-5, rtol 1e-4 (f32 both sides; different GEMM orders and exp);
 *   fast vs reference kernels: atol 2e-5, rtol 2e-4 (reference accumulates in double);
 *   finite differences: eps 3e-2, atol 1e-4, rtol 1e-3 (smooth: truncation cancelled to
 *   h^4 by Richardson; f32 rounding through T steps of gates dominates, ~0.1 of it). */
#include "util/ku.h"
#include "autograd/tape.h"
#include "kernels/rnn.h"

#include <math.h>
#include <string.h>

#define FX_ATOL 2e-5
#define FX_RTOL 1e-4

static kiln_ctx *ctx;
static kiln_st_file *fx;
static void setup(void) { ctx = ku_ctx(); fx = ku_fixture("rnn"); }
static void teardown(void) { kiln_st_close(fx); ku_ctx_free(ctx); }
TestSuite(lstm, .init = setup, .fini = teardown);

static const char *const IN_NAMES[7] = {"x", "h0", "c0", "w_ih", "w_hh", "b_ih", "b_hh"};

/* Loads the case's inputs (absent optional ones stay NULL), all requiring grad. */
static void load_inputs(const char *kase, kiln_tensor **in)
{
    for (int i = 0; i < 7; i++) in[i] = ku_has(fx, kase, IN_NAMES[i]) ? ku_load_grad(ctx, fx, kase, IN_NAMES[i]) : NULL;
}

/* Runs backward for loss = sum(y*gy) + sum(h_n*ghn) + sum(c_n*gcn): h_n's and c_n's grads are
 * seeded directly, as their consumers' backward would have done, then y is walked with gy. */
static void backward3(kiln_tensor *y, kiln_tensor *hn, kiln_tensor *cn, kiln_tensor *gy, kiln_tensor *ghn,
                      kiln_tensor *gcn)
{
    hn->grad = ghn;
    cn->grad = gcn;
    cr_assert_eq(kiln_backward_with(ctx, y, gy), KILN_STATUS_OK, "backward: %s", kiln_last_error());
}

static void check_fixture(const char *kase)
{
    kiln_tensor *in[7], *hn = NULL, *cn = NULL;
    load_inputs(kase, in);
    kiln_tensor *y = kiln_lstm(ctx, in[0], in[1], in[2], in[3], in[4], in[5], in[6], &hn, &cn);
    cr_assert(y != NULL, "%s: lstm failed: %s", kase, kiln_last_error());
    ku_expect_fixture(ctx, fx, kase, "y", y, FX_ATOL, FX_RTOL);
    ku_expect_fixture(ctx, fx, kase, "h_n", hn, FX_ATOL, FX_RTOL);
    ku_expect_fixture(ctx, fx, kase, "c_n", cn, FX_ATOL, FX_RTOL);
    backward3(y, hn, cn, ku_load(ctx, fx, kase, "gy"), ku_load(ctx, fx, kase, "ghn"), ku_load(ctx, fx, kase, "gcn"));
    for (int i = 0; i < 7; i++) {
        if (!in[i]) continue;
        char name[32];
        snprintf(name, sizeof name, "grad.%s", IN_NAMES[i]);
        ku_expect_fixture(ctx, fx, kase, name, in[i]->grad, FX_ATOL, FX_RTOL);
    }
}

Test(lstm, torch_state_bias) { check_fixture("state_bias"); }
Test(lstm, torch_no_state_no_bias) { check_fixture("nostate_nobias"); }
Test(lstm, torch_one_step) { check_fixture("t1"); }
Test(lstm, torch_one_step_no_state) { check_fixture("t1_nostate"); }
Test(lstm, torch_odd_sizes) { check_fixture("odd"); }

/* ---- finite differences ---------------------------------------------------------------- */

static kiln_tensor *gc_fn(kiln_ctx *c, kiln_tensor **in, void *user)
{
    int which = *(int *)user; /* 0: y, 1: h_n, 2: c_n */
    kiln_tensor *hn = NULL, *cn = NULL;
    kiln_tensor *y = kiln_lstm(c, in[0], in[1], in[2], in[3], in[4], in[5], in[6], &hn, &cn);
    return which == 0 ? y : which == 1 ? hn : cn;
}

static kiln_tensor *rnd(int ndim, const int64_t *shape, float scale)
{
    kiln_tensor *t = kiln_randn(ctx, ndim, shape, 0.0f, scale);
    cr_assert(t != NULL, "%s", kiln_last_error());
    kiln_set_requires_grad(t, true);
    return t;
}

Test(lstm, gradcheck_every_input_and_output)
{
    const int64_t B = 2, T = 3, I = 3, H = 2;
    kiln_tensor *in[7] = {
        rnd(3, (int64_t[]){B, T, I}, 1.0f), rnd(2, (int64_t[]){B, H}, 1.0f), rnd(2, (int64_t[]){B, H}, 1.0f),
        rnd(2, (int64_t[]){4 * H, I}, 0.5f), rnd(2, (int64_t[]){4 * H, H}, 0.5f), rnd(1, (int64_t[]){4 * H}, 0.5f),
        rnd(1, (int64_t[]){4 * H}, 0.5f),
    };
    const char *what[3] = {"lstm y", "lstm h_n", "lstm c_n"};
    for (int which = 0; which < 3; which++)
        ku_gradcheck(ctx, gc_fn, in, 7, &which, 3e-2, 1e-4, 1e-3, what[which]); /* values vs PyTorch: torch_* */
}

Test(lstm, gradcheck_no_state_no_bias)
{
    const int64_t B = 3, T = 4, I = 2, H = 3;
    kiln_tensor *in[7] = {rnd(3, (int64_t[]){B, T, I}, 1.0f), NULL, NULL, rnd(2, (int64_t[]){4 * H, I}, 0.5f),
                          rnd(2, (int64_t[]){4 * H, H}, 0.5f), NULL, NULL};
    for (int which = 0; which < 3; which++) ku_gradcheck(ctx, gc_fn, in, 7, &which, 3e-2, 1e-4, 1e-3, "lstm no state");
}

/* ---- fast kernels against the reference loops ---------------------------------------- */

static float *rnd_buf(int64_t n, float scale)
{
    kiln_tensor *t = kiln_randn(ctx, 1, (int64_t[]){n}, 0.0f, scale);
    cr_assert(t != NULL);
    return t->data;
}

static float *zero_buf(int64_t n)
{
    kiln_tensor *t = kiln_zeros(ctx, KILN_DTYPE_F32, 1, (int64_t[]){n});
    cr_assert(t != NULL);
    return t->data;
}

static void expect_buf(const float *got, const float *want, int64_t n, const char *what, const char *cfg)
{
    if (!want) return;
    kiln_tensor g, w;
    kiln_tensor_wrap(&g, KILN_DTYPE_F32, 1, (int64_t[]){n}, (void *)got);
    kiln_tensor_wrap(&w, KILN_DTYPE_F32, 1, (int64_t[]){n}, (void *)want);
    char label[128];
    snprintf(label, sizeof label, "%s (%s)", what, cfg);
    ku_expect_close(&g, &w, 2e-5, 2e-4, label);
}

/* flags: 1 h0, 2 c0, 4 biases, 8 gy, 16 gh_n, 32 gc_n, 64 no cell kept (the kernels make it
 * again in the backward). */
static void ref_vs_fast(int64_t B, int64_t T, int64_t I, int64_t H, int flags)
{
    char cfg[96];
    snprintf(cfg, sizeof cfg, "B %lld T %lld I %lld H %lld flags %d", (long long)B, (long long)T, (long long)I,
             (long long)H, flags);
    const int64_t G = 4 * H, BH = B * H, BTH = B * T * H;
    kiln_lstm_args in = {
        .B = B, .T = T, .I = I, .H = H,
        .x = rnd_buf(B * T * I, 1.0f), .w_ih = rnd_buf(G * I, 0.3f), .w_hh = rnd_buf(G * H, 0.3f),
        .h0 = flags & 1 ? rnd_buf(BH, 1.0f) : NULL, .c0 = flags & 2 ? rnd_buf(BH, 1.0f) : NULL,
        .b_ih = flags & 4 ? rnd_buf(G, 0.5f) : NULL, .b_hh = flags & 4 ? rnd_buf(G, 0.5f) : NULL,
        .gy = flags & 8 ? rnd_buf(BTH, 1.0f) : NULL, .gh_n = flags & 16 ? rnd_buf(BH, 1.0f) : NULL,
        .gc_n = flags & 32 ? rnd_buf(BH, 1.0f) : NULL,
    };
    kiln_lstm_args r[2]; /* 0: reference, 1: fast */
    for (int k = 0; k < 2; k++) {
        r[k] = in;
        r[k].y = zero_buf(BTH);
        r[k].h_n = zero_buf(BH);
        r[k].c_n = zero_buf(BH);
        r[k].gates = zero_buf(B * T * G);
        r[k].cell = flags & 64 ? NULL : zero_buf(BTH);
        r[k].gx = zero_buf(B * T * I);
        r[k].gw_ih = zero_buf(G * I);
        r[k].gw_hh = zero_buf(G * H);
        r[k].gh0 = in.h0 ? zero_buf(BH) : NULL;
        r[k].gc0 = in.c0 ? zero_buf(BH) : NULL;
        r[k].gb_ih = in.b_ih ? zero_buf(G) : NULL;
        r[k].gb_hh = in.b_hh ? zero_buf(G) : NULL;
        kiln_lstm_fn fwd = k ? kiln__cpu_rnn.lstm_fwd : kiln__ref_lstm_fwd;
        kiln_lstm_fn bwd = k ? kiln__cpu_rnn.lstm_bwd : kiln__ref_lstm_bwd;
        cr_assert_eq(fwd(ctx, &r[k]), KILN_STATUS_OK, "fwd %d: %s", k, kiln_last_error());
        if (k) {
            expect_buf(r[1].y, r[0].y, BTH, "y", cfg);
            expect_buf(r[1].h_n, r[0].h_n, BH, "h_n", cfg);
            expect_buf(r[1].c_n, r[0].c_n, BH, "c_n", cfg);
            if (r[0].cell) expect_buf(r[1].cell, r[0].cell, BTH, "cell", cfg);
            expect_buf(r[1].gates, r[0].gates, B * T * G, "gates", cfg);
        }
        cr_assert_eq(bwd(ctx, &r[k]), KILN_STATUS_OK, "bwd %d: %s", k, kiln_last_error());
    }
    expect_buf(r[1].gx, r[0].gx, B * T * I, "grad x", cfg);
    expect_buf(r[1].gw_ih, r[0].gw_ih, G * I, "grad w_ih", cfg);
    expect_buf(r[1].gw_hh, r[0].gw_hh, G * H, "grad w_hh", cfg);
    expect_buf(r[1].gh0, r[0].gh0, BH, "grad h0", cfg);
    expect_buf(r[1].gc0, r[0].gc0, BH, "grad c0", cfg);
    expect_buf(r[1].gb_ih, r[0].gb_ih, G, "grad b_ih", cfg);
    expect_buf(r[1].gb_hh, r[0].gb_hh, G, "grad b_hh", cfg);
}

Test(lstm, fast_matches_reference)
{
    ref_vs_fast(3, 5, 7, 9, 63);
    ref_vs_fast(2, 4, 5, 6, 8);       /* no state, no bias, only gy */
    ref_vs_fast(4, 3, 6, 5, 1 | 16);  /* h0 only; only h_n's gradient */
    ref_vs_fast(2, 6, 3, 4, 2 | 32);  /* c0 only; only c_n's gradient */
    ref_vs_fast(5, 1, 4, 3, 63);      /* one step */
    ref_vs_fast(16, 5, 24, 160, 63);  /* large enough for the OpenMP paths */
    ref_vs_fast(7, 11, 33, 45, 4 | 8 | 32);
    ref_vs_fast(1, 8, 3, 17, 63);     /* batch of one */
    ref_vs_fast(3, 4, 1, 1, 63);      /* input and hidden size one */
    ref_vs_fast(3, 5, 7, 9, 63 | 64); /* no cell kept: every input, output and gradient */
    ref_vs_fast(2, 6, 3, 4, 8 | 64);  /* no cell, no state */
    ref_vs_fast(16, 5, 24, 160, 63 | 64);
}

/* The fast kernels without a kept cell give what they give with one: the forward's outputs and
 * the backward's gradients (the cell made again from the gates has the same values; a tolerance
 * of float rounding in case a compiler fuses its multiply-add differently). */
Test(lstm, fast_without_cell_matches_with_cell)
{
    const int64_t B = 8, T = 9, I = 12, H = 40, G = 4 * H, BH = B * H, BTH = B * T * H;
    kiln_lstm_args in = {
        .B = B, .T = T, .I = I, .H = H,
        .x = rnd_buf(B * T * I, 1.0f), .w_ih = rnd_buf(G * I, 0.3f), .w_hh = rnd_buf(G * H, 0.3f),
        .h0 = rnd_buf(BH, 1.0f), .c0 = rnd_buf(BH, 1.0f), .b_ih = rnd_buf(G, 0.5f), .b_hh = rnd_buf(G, 0.5f),
        .gy = rnd_buf(BTH, 1.0f), .gh_n = rnd_buf(BH, 1.0f), .gc_n = rnd_buf(BH, 1.0f),
    };
    kiln_lstm_args r[2]; /* 0: cell kept, 1: none */
    for (int k = 0; k < 2; k++) {
        r[k] = in;
        r[k].y = zero_buf(BTH), r[k].h_n = zero_buf(BH), r[k].c_n = zero_buf(BH);
        r[k].gates = zero_buf(B * T * G);
        r[k].cell = k ? NULL : zero_buf(BTH);
        r[k].gx = zero_buf(B * T * I), r[k].gw_ih = zero_buf(G * I), r[k].gw_hh = zero_buf(G * H);
        r[k].gh0 = zero_buf(BH), r[k].gc0 = zero_buf(BH), r[k].gb_ih = zero_buf(G), r[k].gb_hh = zero_buf(G);
        cr_assert_eq(kiln__cpu_rnn.lstm_fwd(ctx, &r[k]), KILN_STATUS_OK, "%s", kiln_last_error());
        cr_assert_eq(kiln__cpu_rnn.lstm_bwd(ctx, &r[k]), KILN_STATUS_OK, "%s", kiln_last_error());
    }
    struct { const float *a, *b; int64_t n; const char *what; } c[] = {
        {r[1].y, r[0].y, BTH, "y"}, {r[1].h_n, r[0].h_n, BH, "h_n"}, {r[1].c_n, r[0].c_n, BH, "c_n"},
        {r[1].gx, r[0].gx, B * T * I, "grad x"}, {r[1].gw_ih, r[0].gw_ih, G * I, "grad w_ih"},
        {r[1].gw_hh, r[0].gw_hh, G * H, "grad w_hh"}, {r[1].gh0, r[0].gh0, BH, "grad h0"},
        {r[1].gc0, r[0].gc0, BH, "grad c0"}, {r[1].gb_ih, r[0].gb_ih, G, "grad b_ih"},
    };
    for (size_t i = 0; i < sizeof c / sizeof *c; i++) ku_expect_arrays(c[i].a, c[i].b, c[i].n, 1e-6, 1e-5, c[i].what);
}

/* ---- DropConnect inside the node ------------------------------------------------------- */

/* kiln_lstm_weight_drop against kiln_lstm of kiln_dropout(w_hh) from the same RNG state: the same
 * counters taken, the same outputs bit for bit (the same dropped values through the same kernels),
 * the same gradients (w_hh's through the mask drawn again: within float rounding of the
 * multiply-add); nothing of (4H, H) kept by the forward; p = 0 is kiln_lstm; p outside [0, 1). */
Test(lstm, weight_drop_inside_the_node)
{
    const char *kase = "state_bias";
    kiln_tensor *in[7], *gin[2][7] = {{0}}, *out[2][3];
    load_inputs(kase, in);
    const int64_t H = in[4]->shape[1], nw = 4 * H * H;
    kiln_tensor *gy = ku_load(ctx, fx, kase, "gy"), *ghn = ku_load(ctx, fx, kase, "ghn"), *gcn = ku_load(ctx, fx, kase, "gcn");
    kiln_rng_state r0 = kiln_rng_get(ctx);
    uint64_t counter[2];
    size_t kept[2];
    for (int fused = 0; fused < 2; fused++) {
        for (int i = 0; i < 7; i++)
            if (in[i]) in[i]->grad = NULL;
        kiln_rng_set(ctx, r0);
        size_t before = kiln_step_bytes(ctx);
        kiln_tensor *hn = NULL, *cn = NULL, *y;
        if (fused) {
            y = kiln_lstm_weight_drop(ctx, in[0], in[1], in[2], in[3], in[4], in[5], in[6], 0.4f, &hn, &cn);
        } else {
            kiln_tensor *wd = kiln_dropout(ctx, in[4], 0.4f, true, NULL);
            y = wd ? kiln_lstm(ctx, in[0], in[1], in[2], in[3], wd, in[5], in[6], &hn, &cn) : NULL;
        }
        cr_assert(y && hn && cn, "fused %d: %s", fused, kiln_last_error());
        kept[fused] = kiln_step_bytes(ctx) - before;
        counter[fused] = kiln_rng_get(ctx).counter;
        out[fused][0] = y, out[fused][1] = hn, out[fused][2] = cn;
        backward3(y, hn, cn, gy, ghn, gcn);
        for (int i = 0; i < 7; i++) gin[fused][i] = in[i] ? in[i]->grad : NULL;
    }
    cr_assert_eq(counter[1], counter[0], "RNG counters: fused %llu, kiln_dropout %llu", (unsigned long long)counter[1],
                 (unsigned long long)counter[0]);
    cr_assert_gt(counter[0], r0.counter + (uint64_t)nw - 1, "the mask took 4H * H counters");
    static const char *outs[3] = {"y", "h_n", "c_n"};
    for (int k = 0; k < 3; k++)
        cr_assert(memcmp(out[1][k]->data, out[0][k]->data, (size_t)kiln_numel(out[0][k]) * 4) == 0, "%s differs",
                  outs[k]);
    for (int i = 0; i < 7; i++) {
        if (!in[i]) continue;
        char what[48];
        snprintf(what, sizeof what, "grad %s", IN_NAMES[i]);
        ku_expect_close(gin[1][i], gin[0][i], 1e-6, 1e-5, what);
    }
    cr_assert_leq(kept[1] + (size_t)nw * 4, kept[0], "forward kept %zu bytes fused, %zu through kiln_dropout", kept[1],
                  kept[0]);
    /* p = 0: kiln_lstm itself, nothing drawn */
    kiln_rng_state r1 = kiln_rng_get(ctx);
    kiln_tensor *y0 = kiln_lstm_weight_drop(ctx, in[0], in[1], in[2], in[3], in[4], in[5], in[6], 0.0f, NULL, NULL);
    kiln_tensor *y1 = kiln_lstm(ctx, in[0], in[1], in[2], in[3], in[4], in[5], in[6], NULL, NULL);
    cr_assert(y0 && y1 && memcmp(y0->data, y1->data, (size_t)kiln_numel(y0) * 4) == 0, "p = 0 differs from kiln_lstm");
    cr_assert_eq(kiln_rng_get(ctx).counter, r1.counter, "p = 0 drew random numbers");
    cr_assert_null(kiln_lstm_weight_drop(ctx, in[0], in[1], in[2], in[3], in[4], in[5], in[6], 1.0f, NULL, NULL));
    ku_expect_error("lstm_weight_drop: p 1 is outside [0, 1)", "p = 1");
}

/* ---- weights that are not leaves ------------------------------------------------------- */

/* Parameters stored in another layout and turned into w_ih / w_hh by view ops: w_hh from a
 * transposed (H, 4H) tensor (non-leaf and non-contiguous), w_ih from a flat vector. The
 * gradients must arrive in those tensors, transposed/flattened back. */
Test(lstm, non_leaf_weights)
{
    const char *kase = "state_bias";
    kiln_tensor *in[7];
    load_inputs(kase, in);
    kiln_tensor *whh = in[4], *wih = in[3];
    const int64_t G = whh->shape[0], H = whh->shape[1], I = wih->shape[1];
    /* p_hh (H, 4H) = w_hh^T as data */
    kiln_tensor *p_hh = kiln_empty(ctx, KILN_DTYPE_F32, 2, (int64_t[]){H, G});
    for (int64_t g = 0; g < G; g++)
        for (int64_t k = 0; k < H; k++) ((float *)p_hh->data)[k * G + g] = ((float *)whh->data)[g * H + k];
    kiln_set_requires_grad(p_hh, true);
    kiln_tensor *p_ih = kiln_from_data(ctx, KILN_DTYPE_F32, 1, (int64_t[]){G * I}, wih->data);
    kiln_set_requires_grad(p_ih, true);

    kiln_tensor *w_hh = kiln_transpose(ctx, p_hh, 0, 1);
    kiln_tensor *w_ih = kiln_reshape(ctx, p_ih, 2, (int64_t[]){G, I});
    cr_assert(w_hh && w_ih && w_hh->node && w_ih->node, "views must be non-leaf: %s", kiln_last_error());
    kiln_tensor *hn = NULL, *cn = NULL;
    kiln_tensor *y = kiln_lstm(ctx, in[0], in[1], in[2], w_ih, w_hh, in[5], in[6], &hn, &cn);
    cr_assert(y != NULL, "%s", kiln_last_error());
    ku_expect_fixture(ctx, fx, kase, "y", y, FX_ATOL, FX_RTOL);
    backward3(y, hn, cn, ku_load(ctx, fx, kase, "gy"), ku_load(ctx, fx, kase, "ghn"), ku_load(ctx, fx, kase, "gcn"));

    kiln_tensor *want_hh = ku_load(ctx, fx, kase, "grad.w_hh"); /* (4H, H) */
    kiln_tensor *want_ih = ku_load(ctx, fx, kase, "grad.w_ih"); /* (4H, I) */
    cr_assert(p_hh->grad && p_ih->grad, "parameters behind views got no gradient");
    ku_expect_close(kiln_transpose(ctx, p_hh->grad, 0, 1), want_hh, FX_ATOL, FX_RTOL, "grad p_hh (transposed w_hh)");
    ku_expect_close(kiln_reshape(ctx, p_ih->grad, 2, (int64_t[]){G, I}), want_ih, FX_ATOL, FX_RTOL,
                    "grad p_ih (flat w_ih)");
    ku_expect_fixture(ctx, fx, kase, "grad.x", in[0]->grad, FX_ATOL, FX_RTOL);
}

/* AWD-LSTM weight dropout: w_hh = apply_mask(p_hh, mask) made fresh each step, and w_ih
 * scaled by another op. The parameters' grads must equal mask * (grad of a leaf holding
 * the dropped-out values), i.e. what the same LSTM gives with those values as leaves. */
Test(lstm, weight_dropout_non_leaf)
{
    const char *kase = "odd";
    kiln_tensor *in[7];
    load_inputs(kase, in);
    kiln_tensor *p_hh = in[4], *p_ih = in[3];
    kiln_tensor *mask = kiln_dropout_mask(ctx, 2, p_hh->shape, 0.5f);
    kiln_tensor *w_hh = kiln_apply_mask(ctx, p_hh, mask);
    kiln_tensor *w_ih = kiln_mul_scalar(ctx, p_ih, 0.75f);
    cr_assert(w_hh && w_ih && w_hh->node && w_ih->node, "%s", kiln_last_error());
    kiln_tensor *hn = NULL, *cn = NULL;
    kiln_tensor *y = kiln_lstm(ctx, in[0], in[1], in[2], w_ih, w_hh, in[5], in[6], &hn, &cn);
    cr_assert(y != NULL, "%s", kiln_last_error());
    kiln_tensor *gy = ku_load(ctx, fx, kase, "gy"), *ghn = ku_load(ctx, fx, kase, "ghn"), *gcn = ku_load(ctx, fx, kase, "gcn");
    backward3(y, hn, cn, gy, ghn, gcn);

    /* the same values as leaves */
    kiln_tensor *l_hh = kiln_from_data(ctx, KILN_DTYPE_F32, 2, w_hh->shape, w_hh->data);
    kiln_tensor *l_ih = kiln_from_data(ctx, KILN_DTYPE_F32, 2, w_ih->shape, w_ih->data);
    kiln_tensor *x2 = kiln_from_data(ctx, KILN_DTYPE_F32, 3, in[0]->shape, in[0]->data);
    kiln_set_requires_grad(l_hh, true);
    kiln_set_requires_grad(l_ih, true);
    kiln_set_requires_grad(x2, true);
    kiln_tensor *hn2 = NULL, *cn2 = NULL;
    kiln_tensor *y2 = kiln_lstm(ctx, x2, in[1], in[2], l_ih, l_hh, in[5], in[6], &hn2, &cn2);
    cr_assert(y2 != NULL, "%s", kiln_last_error());
    ku_expect_close(y, y2, 0, 0, "dropped-out weights: same forward as leaves");
    backward3(y2, hn2, cn2, gy, ghn, gcn);
    const float *m = mask->data, *g_leaf = l_hh->grad->data, *g_ih = l_ih->grad->data;
    for (int64_t k = 0; k < kiln_numel(p_hh); k++)
        cr_assert_float_eq(((float *)p_hh->grad->data)[k], g_leaf[k] * m[k], 1e-6f * (1.0f + fabsf(g_leaf[k] * m[k])),
                           "grad p_hh[%lld]", (long long)k);
    for (int64_t k = 0; k < kiln_numel(p_ih); k++)
        cr_assert_float_eq(((float *)p_ih->grad->data)[k], g_ih[k] * 0.75f, 1e-6f * (1.0f + fabsf(g_ih[k])),
                           "grad p_ih[%lld]", (long long)k);
    ku_expect_close(in[0]->grad, x2->grad, 0, 0, "grad x with dropped-out weights");
}

/* ---- modes ------------------------------------------------------------------------------ */

Test(lstm, no_grad_records_nothing)
{
    kiln_tensor *in[7];
    load_inputs("state_bias", in);
    kiln_set_grad_enabled(ctx, false);
    kiln_tensor *hn = NULL, *cn = NULL;
    kiln_tensor *y = kiln_lstm(ctx, in[0], in[1], in[2], in[3], in[4], in[5], in[6], &hn, &cn);
    kiln_set_grad_enabled(ctx, true);
    cr_assert(y && hn && cn, "%s", kiln_last_error());
    cr_assert(y->node == NULL && !y->requires_grad);
    ku_expect_fixture(ctx, fx, "state_bias", "y", y, FX_ATOL, FX_RTOL);
    ku_expect_fixture(ctx, fx, "state_bias", "c_n", cn, FX_ATOL, FX_RTOL);
}

Test(lstm, only_h_n_used)
{
    /* The gradient of h_n alone must reach every input (y's gradient is NULL = zero). */
    kiln_tensor *in[7], *hn = NULL;
    load_inputs("state_bias", in);
    kiln_tensor *y = kiln_lstm(ctx, in[0], in[1], in[2], in[3], in[4], in[5], in[6], &hn, NULL);
    cr_assert(y && hn, "%s", kiln_last_error());
    cr_assert_eq(kiln_backward_with(ctx, hn, ku_load(ctx, fx, "state_bias", "ghn")), KILN_STATUS_OK, "%s",
                 kiln_last_error());
    for (int i = 0; i < 7; i++) {
        cr_assert(in[i]->grad != NULL, "%s got no gradient", IN_NAMES[i]);
        double s = 0;
        for (int64_t k = 0; k < kiln_numel(in[i]); k++) s += fabs(kiln_get_flat(in[i]->grad, k));
        cr_assert(s > 0, "gradient of %s is zero", IN_NAMES[i]);
    }
}

Test(lstm, second_backward_is_an_error)
{
    kiln_tensor *in[7];
    load_inputs("t1", in);
    kiln_tensor *y = kiln_lstm(ctx, in[0], in[1], in[2], in[3], in[4], in[5], in[6], NULL, NULL);
    kiln_tensor *gy = ku_load(ctx, fx, "t1", "gy");
    cr_assert_eq(kiln_backward_with(ctx, y, gy), KILN_STATUS_OK, "%s", kiln_last_error());
    cr_assert_lt(kiln_backward_with(ctx, y, gy), 0);
    ku_expect_error("backward through the same graph twice", "second backward");
}

/* ---- argument errors -------------------------------------------------------------------- */

static kiln_tensor *z(int ndim, const int64_t *shape) { return kiln_zeros(ctx, KILN_DTYPE_F32, ndim, shape); }

Test(lstm, bad_shapes_are_named)
{
    kiln_tensor *x = z(3, (int64_t[]){2, 3, 5});     /* B 2, T 3, I 5 */
    kiln_tensor *wih = z(2, (int64_t[]){16, 5});     /* H 4 */
    kiln_tensor *whh = z(2, (int64_t[]){16, 4});
    kiln_tensor *st = z(2, (int64_t[]){2, 4});
    kiln_tensor *b = z(1, (int64_t[]){16});
    cr_assert(kiln_lstm(ctx, x, st, st, wih, whh, b, b, NULL, NULL) != NULL, "valid call failed: %s", kiln_last_error());

    cr_assert_null(kiln_lstm(ctx, x, NULL, NULL, wih, z(2, (int64_t[]){16, 5}), NULL, NULL, NULL, NULL));
    ku_expect_error("lstm: w_hh has shape (16, 5), expected (16, 4) for hidden size 4", "w_hh");
    cr_assert_null(kiln_lstm(ctx, x, NULL, NULL, wih, z(2, (int64_t[]){15, 4}), NULL, NULL, NULL, NULL));
    ku_expect_error("lstm: w_hh has shape (15, 4), expected (4H, H)", "w_hh rows");
    cr_assert_null(kiln_lstm(ctx, x, NULL, NULL, z(2, (int64_t[]){16, 6}), whh, NULL, NULL, NULL, NULL));
    ku_expect_error("lstm: w_ih has shape (16, 6), expected (16, 5) for hidden size 4 and input size 5", "w_ih");
    cr_assert_null(kiln_lstm(ctx, z(2, (int64_t[]){3, 5}), NULL, NULL, wih, whh, NULL, NULL, NULL, NULL));
    ku_expect_error("lstm: x has shape (3, 5), expected 3 dims (B, T, I)", "x 2-D");
    cr_assert_null(kiln_lstm(ctx, x, z(2, (int64_t[]){3, 4}), st, wih, whh, NULL, NULL, NULL, NULL));
    ku_expect_error("lstm: h0 has shape (3, 4), expected (2, 4) for batch 2 and hidden size 4", "h0");
    cr_assert_null(kiln_lstm(ctx, x, st, z(1, (int64_t[]){8}), wih, whh, NULL, NULL, NULL, NULL));
    ku_expect_error("lstm: c0 has shape (8,), expected (2, 4)", "c0");
    cr_assert_null(kiln_lstm(ctx, x, NULL, NULL, wih, whh, b, z(1, (int64_t[]){4}), NULL, NULL));
    ku_expect_error("lstm: b_hh has shape (4,), expected (16,) for hidden size 4", "b_hh");
    cr_assert_null(kiln_lstm(ctx, z(3, (int64_t[]){2, 0, 5}), NULL, NULL, wih, whh, NULL, NULL, NULL, NULL));
    ku_expect_error("every dim must be >= 1", "empty sequence");
    kiln_tensor *xi = kiln_zeros(ctx, KILN_DTYPE_I64, 3, (int64_t[]){2, 3, 5});
    cr_assert_null(kiln_lstm(ctx, xi, NULL, NULL, wih, whh, NULL, NULL, NULL, NULL));
    ku_expect_error("lstm: x must be f32, got i64", "dtype");

    /* A NULL required input (an earlier op failed) gives NULL and keeps the first message. */
    kiln_clear_error();
    cr_assert_null(kiln_reshape(ctx, x, 2, (int64_t[]){7, -1}));
    char first[256];
    snprintf(first, sizeof first, "%s", kiln_last_error());
    kiln_tensor *hn = (kiln_tensor *)1;
    cr_assert_null(kiln_lstm(ctx, NULL, NULL, NULL, wih, whh, NULL, NULL, &hn, NULL));
    cr_assert_null(hn, "h_n must be cleared on failure");
    cr_assert_str_eq(kiln_last_error(), first);
}
