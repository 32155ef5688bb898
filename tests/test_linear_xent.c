/* Tests of kiln_linear_cross_entropy, the fused linear + cross-entropy that never holds the whole
 * logits: PyTorch 1.13 parity (tests/fixtures/gen_dense.py, cases lxe_*: mean with ignore_index,
 * label smoothing with sum, none, no bias, the tied weight an embedding also uses) at several chunk
 * sizes; against the unfused kiln_linear + kiln_cross_entropy on random data with chunk boundaries
 * that do not divide the rows (every reduction, smoothing, ignored rows, a tied weight, gradients
 * accumulated onto earlier ones, a frozen weight); the automatic chunk on a 20,000-class decoder;
 * the arena it takes (one chunk of logits, not all of them); the cross-entropy backward kernel in
 * place; bad arguments by message.
 * Tolerances: vs PyTorch atol 1e-6 + rtol 1e-5, as test_loss.c (f32 both sides, sums of at most 11
 * terms per logit and 10 rows per weight gradient in another order). Fused vs unfused: the same
 * kernels on the same rows, but GEMMs of other sizes may block their sums differently and the
 * weight gradient adds the chunks' products one after the other instead of in one GEMM: rtol
 * 2e-5 of the largest magnitude of each tensor (atol), measured ~1e-6 of it on AVX2 and AVX-512. */
#include "util/ku.h"
#include "kernels/dense.h"

#include <math.h>
#include <string.h>

/* ---- PyTorch parity -------------------------------------------------------------------- */

static void fixture_case(const char *kase, kiln_reduction r, float smoothing, int64_t chunk)
{
    kiln_ctx *ctx = ku_ctx();
    kiln_st_file *f = ku_fixture("dense");
    kiln_tensor *w = ku_load_grad(ctx, f, kase, "w");
    kiln_tensor *b = ku_has(f, kase, "b") ? ku_load_grad(ctx, f, kase, "b") : NULL;
    kiln_tensor *tg = ku_load(ctx, f, kase, "target"), *x;
    if (ku_has(f, kase, "idx")) /* tied: x is the embedding of idx in the same w */
        x = kiln_embedding(ctx, ku_load(ctx, f, kase, "idx"), w);
    else
        x = ku_load_grad(ctx, f, kase, "x");
    cr_assert_not_null(x, "%s", kiln_last_error());
    kiln_xent_params p = kiln_xent_default_params();
    p.reduction = r;
    p.label_smoothing = smoothing;
    kiln_tensor *y = kiln_linear_cross_entropy(ctx, x, w, b, tg, &p, chunk);
    char what[96];
    snprintf(what, sizeof what, "%s chunk %lld", kase, (long long)chunk);
    cr_assert_not_null(y, "%s: %s", what, kiln_last_error());
    ku_expect_fixture(ctx, f, kase, "y", y, 1e-6, 1e-5);
    cr_assert_eq(kiln_backward_with(ctx, y, ku_load(ctx, f, kase, "gy")), KILN_STATUS_OK, "%s: %s", what,
                 kiln_last_error());
    if (ku_has(f, kase, "grad.x")) ku_expect_fixture(ctx, f, kase, "grad.x", x->grad, 1e-6, 1e-5);
    ku_expect_fixture(ctx, f, kase, "grad.w", w->grad, 1e-6, 1e-5);
    if (b) ku_expect_fixture(ctx, f, kase, "grad.b", b->grad, 1e-6, 1e-5);
    kiln_st_close(f);
    ku_ctx_free(ctx);
}

static void fixture_chunks(const char *kase, kiln_reduction r, float smoothing)
{
    static const int64_t chunks[] = {3, 4, 1, 0}; /* 10 rows: 3+3+3+1, 4+4+2, ten of one, one of ten */
    for (int i = 0; i < 4; i++) fixture_case(kase, r, smoothing, chunks[i]);
}

Test(linear_xent_fixture, mean_with_ignore_index) { fixture_chunks("lxe_mean", KILN_REDUCTION_MEAN, 0.0f); }
Test(linear_xent_fixture, sum_with_label_smoothing) { fixture_chunks("lxe_smooth_sum", KILN_REDUCTION_SUM, 0.1f); }
Test(linear_xent_fixture, none_per_row) { fixture_chunks("lxe_none", KILN_REDUCTION_NONE, 0.0f); }
Test(linear_xent_fixture, no_bias) { fixture_chunks("lxe_nobias", KILN_REDUCTION_MEAN, 0.0f); }
Test(linear_xent_fixture, tied_with_an_embedding) { fixture_chunks("lxe_tied", KILN_REDUCTION_MEAN, 0.0f); }

/* ---- fused vs unfused ------------------------------------------------------------------- */

static kiln_tensor *rnd(kiln_ctx *ctx, int nd, const int64_t *shape, float std)
{
    kiln_tensor *t = kiln_randn(ctx, nd, shape, 0.0f, std);
    cr_assert_not_null(t, "%s", kiln_last_error());
    kiln_set_requires_grad(t, true);
    return t;
}

/* rtol of the largest |want| as the absolute tolerance (see the top) */
static void expect_close_scaled(const kiln_tensor *got, const kiln_tensor *want, const char *what)
{
    cr_assert_not_null(got, "%s: no gradient", what);
    cr_assert_not_null(want, "%s: no reference gradient", what);
    int64_t n = kiln_numel(want);
    const float *wv = want->data;
    double mx = 0.0;
    for (int64_t i = 0; i < n; i++) mx = fmax(mx, fabs(wv[i]));
    cr_assert(mx > 0.0, "%s: the reference is all zeros (nothing to compare)", what);
    ku_expect_close(got, want, 2e-5 * mx, 0.0, what);
}

typedef struct cmp_case {
    int64_t rows_a, rows_b, in, out; /* x (rows_a, rows_b, in), w (out, in) */
    bool bias, tied, frozen_w, acc;  /* tied: x = embedding(idx, w); acc: grads already hold values */
    kiln_xent_params p;
} cmp_case;

/* loss and gradients of the unfused pair and of the fused op at chunk, on the same tensors */
static void compare(const cmp_case *c, int64_t chunk)
{
    kiln_ctx *ctx = ku_ctx();
    const int64_t n = c->rows_a * c->rows_b;
    kiln_tensor *w = rnd(ctx, 2, (int64_t[]){c->out, c->in}, 0.5f);
    kiln_tensor *b = c->bias ? rnd(ctx, 1, (int64_t[]){c->out}, 0.5f) : NULL;
    kiln_tensor *x0 = rnd(ctx, 3, (int64_t[]){c->rows_a, c->rows_b, c->in}, 1.0f);
    if (c->frozen_w) kiln_set_requires_grad(w, false);
    int64_t *t = kiln_step_alloc(ctx, (size_t)n * sizeof *t), *ix = kiln_step_alloc(ctx, (size_t)n * sizeof *ix);
    for (int64_t i = 0; i < n; i++) {
        t[i] = i % 7 == 5 ? c->p.ignore_index : (int64_t)(kiln_philox_uniform(11, (uint64_t)i) * (float)c->out) % c->out;
        ix[i] = (int64_t)(kiln_philox_uniform(12, (uint64_t)i) * (float)c->out) % c->out;
    }
    kiln_tensor *tg = kiln_from_data(ctx, KILN_DTYPE_I64, 2, (int64_t[]){c->rows_a, c->rows_b}, t);
    kiln_tensor *idx = kiln_from_data(ctx, KILN_DTYPE_I64, 2, (int64_t[]){c->rows_a, c->rows_b}, ix);
    kiln_tensor *gy = c->p.reduction == KILN_REDUCTION_NONE ? kiln_randn(ctx, 2, (int64_t[]){c->rows_a, c->rows_b}, 0.0f, 1.0f)
                                                            : kiln_full(ctx, 0, NULL, 0.7f);
    cr_assert(tg && idx && gy, "%s", kiln_last_error());
    /* acc: gradients that already hold values (another loss, the previous micro-batch) */
    kiln_tensor *g0[3] = {0};
    kiln_tensor *leaf[3] = {x0, w, b};
    kiln_tensor *grads[2][3] = {{0}};
    float loss[2][1];
    kiln_tensor *losses[2] = {0};
    for (int fused = 0; fused < 2; fused++) {
        for (int k = 0; k < 3; k++) {
            if (!leaf[k]) continue;
            leaf[k]->grad = NULL;
            if (c->acc && leaf[k]->requires_grad) {
                if (!g0[k]) g0[k] = kiln_randn(ctx, leaf[k]->ndim, leaf[k]->shape, 0.0f, 0.1f);
                leaf[k]->grad = kiln_contiguous(ctx, kiln_add_scalar(ctx, g0[k], 0.0f));
                cr_assert_not_null(leaf[k]->grad);
            }
        }
        kiln_tensor *x = c->tied ? kiln_embedding(ctx, idx, w) : x0;
        cr_assert_not_null(x, "%s", kiln_last_error());
        kiln_tensor *y;
        if (fused) {
            y = kiln_linear_cross_entropy(ctx, x, w, b, tg, &c->p, chunk);
        } else {
            kiln_tensor *lg = kiln_linear(ctx, x, w, b);
            y = kiln_cross_entropy(ctx, kiln_reshape(ctx, lg, 2, (int64_t[]){n, c->out}),
                                   kiln_reshape(ctx, tg, 1, (int64_t[]){n}), &c->p);
            if (y && c->p.reduction == KILN_REDUCTION_NONE) y = kiln_reshape(ctx, y, 2, tg->shape);
        }
        cr_assert_not_null(y, "fused %d: %s", fused, kiln_last_error());
        cr_assert_eq(kiln_backward_with(ctx, y, gy), KILN_STATUS_OK, "fused %d: %s", fused, kiln_last_error());
        losses[fused] = y;
        loss[fused][0] = kiln_numel(y) == 1 ? kiln_item(y) : 0.0f;
        for (int k = 0; k < 3; k++) grads[fused][k] = leaf[k] ? leaf[k]->grad : NULL;
    }
    char what[160];
    snprintf(what, sizeof what, "(%lld, %lld, %lld) -> %lld, chunk %lld, reduction %d, smoothing %g%s%s%s%s",
             (long long)c->rows_a, (long long)c->rows_b, (long long)c->in, (long long)c->out, (long long)chunk,
             (int)c->p.reduction, (double)c->p.label_smoothing, c->bias ? ", bias" : "", c->tied ? ", tied" : "",
             c->frozen_w ? ", frozen w" : "", c->acc ? ", accumulated" : "");
    if (c->p.reduction == KILN_REDUCTION_NONE) {
        ku_expect_close(losses[1], losses[0], 1e-6, 1e-5, what);
    } else {
        cr_assert(isfinite(loss[0][0]), "%s: unfused loss %g", what, (double)loss[0][0]);
        cr_assert(fabsf(loss[1][0] - loss[0][0]) <= 1e-5f * fabsf(loss[0][0]), "%s: loss %.9g, unfused %.9g", what,
                  (double)loss[1][0], (double)loss[0][0]);
    }
    static const char *names[3] = {"grad x", "grad w", "grad b"};
    for (int k = 0; k < 3; k++) {
        if (!leaf[k]) continue;
        char wk[200];
        snprintf(wk, sizeof wk, "%s: %s", what, names[k]);
        if (k == 1 && c->frozen_w) {
            cr_assert_null(grads[1][k], "%s: a frozen w got a gradient", wk);
            continue;
        }
        if (k == 0 && c->tied) continue; /* x is made by the embedding: its gradient went on into w */
        expect_close_scaled(grads[1][k], grads[0][k], wk);
    }
    ku_ctx_free(ctx);
}

static kiln_xent_params xp(kiln_reduction r, float smoothing, int64_t ignore)
{
    kiln_xent_params p = kiln_xent_default_params();
    p.reduction = r;
    p.label_smoothing = smoothing;
    p.ignore_index = ignore;
    return p;
}

Test(linear_xent_vs_unfused, chunk_boundaries_every_reduction)
{
    /* 3 x 37 = 111 rows: chunks of 1, 16, 50 (50, 50, 11), 110 (110, 1), 111, 500 (one) */
    static const int64_t chunks[] = {1, 16, 50, 110, 111, 500, 0};
    for (int r = 0; r < 3; r++)
        for (int s = 0; s < 2; s++) {
            cmp_case c = {.rows_a = 3, .rows_b = 37, .in = 24, .out = 53, .bias = true,
                          .p = xp((kiln_reduction)r, s ? 0.1f : 0.0f, -100)};
            for (int i = 0; i < 7; i++) compare(&c, chunks[i]);
        }
}

Test(linear_xent_vs_unfused, tied_frozen_accumulated_and_no_bias)
{
    cmp_case tied = {.rows_a = 4, .rows_b = 19, .in = 16, .out = 40, .bias = true, .tied = true,
                     .p = xp(KILN_REDUCTION_MEAN, 0.0f, 3)}; /* ignore_index 3: a real class id */
    compare(&tied, 7);
    compare(&tied, 0);
    tied.acc = true;
    compare(&tied, 9);
    cmp_case frozen = {.rows_a = 2, .rows_b = 33, .in = 12, .out = 30, .bias = true, .frozen_w = true,
                       .p = xp(KILN_REDUCTION_MEAN, 0.0f, -100)};
    compare(&frozen, 8);
    cmp_case nob = {.rows_a = 5, .rows_b = 13, .in = 9, .out = 21, .acc = true,
                    .p = xp(KILN_REDUCTION_SUM, 0.05f, -100)};
    compare(&nob, 6);
}

Test(linear_xent_vs_unfused, automatic_chunk_on_a_wide_decoder)
{
    /* 20,000 classes: 9 x 50 = 450 rows of logits are 9M floats, over the automatic chunk's 8M: two
     * chunks, 240 + 210 rows */
    cmp_case c = {.rows_a = 9, .rows_b = 50, .in = 8, .out = 20000, .bias = true,
                  .p = xp(KILN_REDUCTION_MEAN, 0.0f, -100)};
    compare(&c, 0);
}

/* ---- memory --------------------------------------------------------------------------- */

Test(linear_xent_memory, one_chunk_of_logits_at_a_time)
{
    kiln_ctx *ctx = ku_ctx();
    const int64_t n = 600, in = 8, out = 20000, chunk = 64; /* all logits: 48 MB; one chunk: 5.1 MB */
    kiln_tensor *x = rnd(ctx, 2, (int64_t[]){n, in}, 1.0f), *w = rnd(ctx, 2, (int64_t[]){out, in}, 0.5f);
    kiln_tensor *b = rnd(ctx, 1, (int64_t[]){out}, 0.5f);
    kiln_tensor *tg = kiln_zeros(ctx, KILN_DTYPE_I64, 1, (int64_t[]){n});
    /* the gradients of w and b exist before, as a model's parameters' do */
    w->grad = kiln_zeros(ctx, KILN_DTYPE_F32, 2, w->shape);
    b->grad = kiln_zeros(ctx, KILN_DTYPE_F32, 1, b->shape);
    cr_assert(tg && w->grad && b->grad);
    size_t before = kiln_step_bytes(ctx);
    kiln_tensor *y = kiln_linear_cross_entropy(ctx, x, w, b, tg, NULL, chunk);
    cr_assert_not_null(y, "%s", kiln_last_error());
    size_t after_fwd = kiln_step_bytes(ctx);
    cr_assert_eq(kiln_backward(ctx, y), KILN_STATUS_OK, "%s", kiln_last_error());
    size_t peak = kiln_step_peak_bytes(ctx), after = kiln_step_bytes(ctx);
    const size_t chunk_bytes = (size_t)(chunk * out) * 4, all = (size_t)(n * out) * 4;
    /* kept after the forward: targets, (n, 2) statistics, the node: well under one chunk */
    cr_assert_lt(after_fwd - before, chunk_bytes / 4, "the forward kept %zu bytes", after_fwd - before);
    /* at most: one chunk, the per-row losses, x's gradient and small things */
    cr_assert_lt(peak - before, chunk_bytes + (size_t)(n * in) * 4 + ((size_t)1 << 20),
                 "peak %zu bytes over the start (all logits: %zu)", peak - before, all);
    cr_assert_lt(after - before, chunk_bytes / 2, "the backward kept %zu bytes", after - before);
    ku_ctx_free(ctx);
}

/* ---- the cross-entropy backward kernel in place ------------------------------------------ */

Test(linear_xent_kernels, xent_bwd_in_place_matches_reference)
{
    kiln_ctx *ctx = ku_ctx();
    const kiln_dense_kernels *opt = &kiln__cpu_dense, *ref = &kiln__ref_dense;
    const int64_t o = 37, k = 20000, n = o * k;
    float *x = ku_randn_buf(ctx, n), *g1 = kiln_step_alloc(ctx, n * 4), *g2 = kiln_step_alloc(ctx, n * 4);
    float *e = kiln_step_alloc(ctx, o * 8), *l = kiln_step_alloc(ctx, o * 4), *g = ku_randn_buf(ctx, o);
    int64_t *t = kiln_step_alloc(ctx, o * 8);
    for (int64_t p = 0; p < o; p++) t[p] = p % 5 == 3 ? -100 : (int64_t)(kiln_philox_uniform(70, p) * k) % k;
    for (int s = 0; s < 2; s++) {
        float eps = s ? 0.1f : 0.0f;
        ref->xent_fwd(ctx, x, t, o, k, 1, -100, eps, l, e);
        memcpy(g1, x, n * 4);
        memset(g2, 0xff, n * 4); /* NaN: overwrite must not read it */
        opt->xent_bwd(ctx, g1, t, e, g, 1, o, k, 1, -100, eps, g1, true); /* in place */
        ref->xent_bwd(ctx, x, t, e, g, 1, o, k, 1, -100, eps, g2, true);
        ku_expect_arrays(g1, g2, n, 1e-6, 1e-5, eps ? "xent_bwd in place, smoothing" : "xent_bwd in place");
    }
    ku_ctx_free(ctx);
}

/* ---- errors --------------------------------------------------------------------------- */

Test(linear_xent_errors, messages)
{
    kiln_ctx *ctx = ku_ctx();
    kiln_tensor *x = kiln_zeros(ctx, KILN_DTYPE_F32, 3, (int64_t[]){2, 3, 4});
    kiln_tensor *w = kiln_zeros(ctx, KILN_DTYPE_F32, 2, (int64_t[]){5, 4}), *b = kiln_zeros(ctx, KILN_DTYPE_F32, 1, (int64_t[]){5});
    int64_t tv[] = {0, 1, 5, 2, 3, 4};
    kiln_tensor *tg = kiln_from_data(ctx, KILN_DTYPE_I64, 2, (int64_t[]){2, 3}, tv);
    cr_assert_null(kiln_linear_cross_entropy(ctx, x, w, b, tg, NULL, 0));
    ku_expect_error("linear_cross_entropy: target 5 at position 2 is out of range for 5 classes (w (5, 4))",
                    "target range");
    kiln_tensor *t6 = kiln_zeros(ctx, KILN_DTYPE_I64, 1, (int64_t[]){6});
    cr_assert_null(kiln_linear_cross_entropy(ctx, x, w, b, t6, NULL, 0));
    ku_expect_error("linear_cross_entropy: target has shape (6,), expected x's leading dims (x (2, 3, 4))",
                    "target shape");
    kiln_tensor *t32 = kiln_zeros(ctx, KILN_DTYPE_I32, 2, (int64_t[]){2, 3});
    cr_assert_null(kiln_linear_cross_entropy(ctx, x, w, b, t32, NULL, 0));
    ku_expect_error("linear_cross_entropy: target must be i64 class indices, got i32", "target dtype");
    kiln_tensor *t0 = kiln_zeros(ctx, KILN_DTYPE_I64, 2, (int64_t[]){2, 3});
    kiln_tensor *w3 = kiln_zeros(ctx, KILN_DTYPE_F32, 2, (int64_t[]){5, 3});
    cr_assert_null(kiln_linear_cross_entropy(ctx, x, w3, b, t0, NULL, 0));
    ku_expect_error("linear_cross_entropy: w has shape (5, 3), expected in_features 4 to match x (2, 3, 4)",
                    "w shape");
    kiln_tensor *b6 = kiln_zeros(ctx, KILN_DTYPE_F32, 1, (int64_t[]){6});
    cr_assert_null(kiln_linear_cross_entropy(ctx, x, w, b6, t0, NULL, 0));
    ku_expect_error("linear_cross_entropy: b has shape (6,), expected (5,) to match w (5, 4)", "b shape");
    cr_assert_null(kiln_linear_cross_entropy(ctx, x, w, b, t0, NULL, -1));
    ku_expect_error("linear_cross_entropy: chunk_rows -1 is negative", "chunk");
    kiln_xent_params p = kiln_xent_default_params();
    p.label_smoothing = -0.5f;
    cr_assert_null(kiln_linear_cross_entropy(ctx, x, w, b, t0, &p, 0));
    ku_expect_error("linear_cross_entropy: label_smoothing -0.5 is outside [0, 1]", "smoothing");
    /* every row ignored: the mean is NaN as PyTorch's, no gradient flows */
    int64_t iv[6] = {-100, -100, -100, -100, -100, -100};
    kiln_tensor *ti = kiln_from_data(ctx, KILN_DTYPE_I64, 2, (int64_t[]){2, 3}, iv);
    kiln_tensor *xr = rnd(ctx, 3, (int64_t[]){2, 3, 4}, 1.0f);
    kiln_tensor *y = kiln_linear_cross_entropy(ctx, xr, w, b, ti, NULL, 4);
    cr_assert(y && isnan(kiln_item(y)), "all ignored: %s", y ? "not NaN" : kiln_last_error());
    p = kiln_xent_default_params();
    p.reduction = KILN_REDUCTION_SUM;
    y = kiln_linear_cross_entropy(ctx, xr, w, b, ti, &p, 4);
    cr_assert(y && kiln_item(y) == 0.0f);
    cr_assert_eq(kiln_backward(ctx, y), KILN_STATUS_OK, "%s", kiln_last_error());
    for (int i = 0; i < 24; i++) cr_assert(((float *)xr->grad->data)[i] == 0.0f, "grad x[%d] of an ignored row", i);
    ku_ctx_free(ctx);
}
