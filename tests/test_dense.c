/* Tests of the dense family: matmul (2-D, batched, broadcast), linear and embedding against
 * PyTorch fixtures (tests/fixtures/gen_dense.py), finite-difference gradchecks, optimized
 * vs reference kernels, a 60,000-row embedding backward, and bad input by message.
 * Tolerances: matmul / linear atol 1e-5 + rtol 1e-4 (GEMM blocking reorders sums);
 * embedding exact up to 1e-6 (copies and short sums); gradcheck eps 1e-2, atol/rtol 1e-2. */
#include "util/ku.h"
#include "kernels/dense.h"

#include <math.h>
#include <string.h>

typedef kiln_tensor *(*case_fn)(kiln_ctx *ctx, kiln_tensor **in);

/* Loads the case's inputs (f32 ones require grad), runs fn, compares y with the fixture,
 * then backpropagates the fixture's gy and compares every input gradient it has. */
static void check_case(const char *kase, const char *const *names, int n, case_fn fn, double atol, double rtol)
{
    kiln_ctx *ctx = ku_ctx();
    kiln_st_file *f = ku_fixture("dense");
    kiln_tensor *in[8] = {0};
    for (int i = 0; i < n; i++) in[i] = ku_has(f, kase, names[i]) ? ku_load_grad(ctx, f, kase, names[i]) : NULL;
    kiln_tensor *y = fn(ctx, in);
    ku_expect_fixture(ctx, f, kase, "y", y, atol, rtol);
    if (ku_has(f, kase, "gy")) {
        kiln_tensor *gy = ku_load(ctx, f, kase, "gy");
        cr_assert(kiln_backward_with(ctx, y, gy) == KILN_STATUS_OK, "%s: backward: %s", kase, kiln_last_error());
        for (int i = 0; i < n; i++) {
            char g[64];
            snprintf(g, sizeof g, "grad.%s", names[i]);
            if (ku_has(f, kase, g)) ku_expect_fixture(ctx, f, kase, g, in[i] ? in[i]->grad : NULL, atol, rtol);
        }
    }
    kiln_st_close(f);
    ku_ctx_free(ctx);
}

static kiln_tensor *f_matmul(kiln_ctx *ctx, kiln_tensor **in) { return kiln_matmul(ctx, in[0], in[1]); }
static kiln_tensor *f_linear(kiln_ctx *ctx, kiln_tensor **in) { return kiln_linear(ctx, in[0], in[1], in[2]); }
static kiln_tensor *f_embedding(kiln_ctx *ctx, kiln_tensor **in) { return kiln_embedding(ctx, in[0], in[1]); }

static const char *const AB[] = {"a", "b"};
static const char *const XWB[] = {"x", "w", "b"};
static const char *const IW[] = {"idx", "w"};

/* ---- parity with PyTorch --------------------------------------------------------------- */

Test(dense_fixture, matmul_2d) { check_case("mm_2d", AB, 2, f_matmul, 1e-5, 1e-4); }
Test(dense_fixture, matmul_batch_times_2d) { check_case("mm_bk_kn", AB, 2, f_matmul, 1e-5, 1e-4); }
Test(dense_fixture, matmul_batched) { check_case("mm_batch", AB, 2, f_matmul, 1e-5, 1e-4); }
Test(dense_fixture, matmul_2d_times_batch) { check_case("mm_mk_bkn", AB, 2, f_matmul, 1e-5, 1e-4); }
Test(dense_fixture, matmul_broadcast_4d) { check_case("mm_bcast", AB, 2, f_matmul, 1e-5, 1e-4); }
Test(dense_fixture, linear_bias_3d) { check_case("lin_bias3d", XWB, 3, f_linear, 1e-5, 1e-4); }
Test(dense_fixture, linear_nobias_3d) { check_case("lin_nobias3d", XWB, 3, f_linear, 1e-5, 1e-4); }
Test(dense_fixture, linear_2d) { check_case("lin_2d", XWB, 3, f_linear, 1e-5, 1e-4); }
Test(dense_fixture, embedding_i64_repeated) { check_case("emb_i64", IW, 2, f_embedding, 1e-6, 1e-6); }
Test(dense_fixture, embedding_i32) { check_case("emb_i32", IW, 2, f_embedding, 1e-6, 1e-6); }

/* ---- finite differences ---------------------------------------------------------------- */

static kiln_tensor *g_matmul(kiln_ctx *ctx, kiln_tensor **in, void *u)
{
    (void)u;
    return kiln_matmul(ctx, in[0], in[1]);
}
static kiln_tensor *g_linear(kiln_ctx *ctx, kiln_tensor **in, void *u)
{
    (void)u;
    return kiln_linear(ctx, in[0], in[1], in[2]);
}
static kiln_tensor *g_embedding(kiln_ctx *ctx, kiln_tensor **in, void *u) { return kiln_embedding(ctx, u, in[0]); }

static kiln_tensor *rnd(kiln_ctx *ctx, int nd, const int64_t *shape)
{
    kiln_tensor *t = kiln_randn(ctx, nd, shape, 0.0f, 1.0f);
    cr_assert(t, "randn: %s", kiln_last_error());
    kiln_set_requires_grad(t, true);
    return t;
}

Test(dense_gradcheck, matmul_shapes)
{
    kiln_ctx *ctx = ku_ctx();
    static const int64_t shapes[][2][4] = {
        {{3, 4}, {4, 2}}, {{2, 3, 4}, {4, 2}}, {{2, 3, 4}, {2, 4, 2}}, {{3, 4}, {2, 4, 2}}, {{2, 1, 3, 2}, {3, 2, 2}}};
    static const int nds[][2] = {{2, 2}, {3, 2}, {3, 3}, {2, 3}, {4, 3}};
    for (int c = 0; c < 5; c++) {
        kiln_tensor *in[2] = {rnd(ctx, nds[c][0], shapes[c][0]), rnd(ctx, nds[c][1], shapes[c][1])};
        /* linear in each input: no truncation, so a large step; f32 rounding of the outputs
         * (~3u|f|sqrt(k)/eps) is what remains, measured <= 0.01 of the tolerance.
         * Values vs PyTorch in dense_fixture. */
        ku_gradcheck(ctx, g_matmul, in, 2, NULL, 0.5, 1e-4, 1e-3, "matmul");
    }
    ku_ctx_free(ctx);
}

Test(dense_gradcheck, matmul_transposed_input)
{
    kiln_ctx *ctx = ku_ctx();
    /* a non-contiguous operand goes through kiln_contiguous and its node */
    kiln_tensor *a = rnd(ctx, 2, (int64_t[]){4, 3}), *b = rnd(ctx, 2, (int64_t[]){4, 2});
    kiln_tensor *at = kiln_transpose(ctx, a, 0, 1);
    kiln_tensor *y = kiln_matmul(ctx, at, b);
    cr_assert(y && y->shape[0] == 3 && y->shape[1] == 2, "matmul of a transposed view: %s", kiln_last_error());
    cr_assert(kiln_backward_with(ctx, y, kiln_full(ctx, 2, y->shape, 1.0f)) == KILN_STATUS_OK);
    /* d sum(a^T b) / da[k][i] = sum_j b[k][j] */
    const float *B = b->data, *GA = a->grad->data;
    for (int k = 0; k < 4; k++)
        for (int i = 0; i < 3; i++) cr_expect_float_eq(GA[k * 3 + i], B[k * 2] + B[k * 2 + 1], 1e-5);
    ku_ctx_free(ctx);
}

Test(dense_gradcheck, linear_with_and_without_bias)
{
    kiln_ctx *ctx = ku_ctx();
    kiln_tensor *in[3] = {rnd(ctx, 3, (int64_t[]){2, 3, 4}), rnd(ctx, 2, (int64_t[]){5, 4}), rnd(ctx, 1, (int64_t[]){5})};
    /* linear in each input, as matmul: eps 0.5, f32 rounding measured <= 0.01 of the tolerance */
    ku_gradcheck(ctx, g_linear, in, 3, NULL, 0.5, 1e-4, 1e-3, "linear with bias");
    in[2] = NULL;
    ku_gradcheck(ctx, g_linear, in, 3, NULL, 0.5, 1e-4, 1e-3, "linear without bias");
    kiln_tensor *in1[3] = {rnd(ctx, 1, (int64_t[]){4}), in[1], NULL};
    ku_gradcheck(ctx, g_linear, in1, 3, NULL, 0.5, 1e-4, 1e-3, "linear on a vector");
    ku_ctx_free(ctx);
}

Test(dense_gradcheck, embedding)
{
    kiln_ctx *ctx = ku_ctx();
    int64_t ids[] = {2, 0, 2, 4, 4, 4};
    kiln_tensor *idx = kiln_from_data(ctx, KILN_DTYPE_I64, 2, (int64_t[]){2, 3}, ids);
    kiln_tensor *in[1] = {rnd(ctx, 2, (int64_t[]){5, 3})};
    /* linear (a gather): exact up to f32 rounding of the outputs (measured <= 1e-6) */
    ku_gradcheck(ctx, g_embedding, in, 1, idx, 1e-2, 1e-4, 1e-3, "embedding");
    ku_ctx_free(ctx);
}

/* ---- optimized vs reference kernels ---------------------------------------------------- */

static void fill(float *p, int64_t n, uint64_t seed)
{
    for (int64_t i = 0; i < n; i++) p[i] = kiln_philox_uniform(seed, (uint64_t)i) * 2.0f - 1.0f;
}

Test(dense_kernels, gemm_matches_reference)
{
    kiln_ctx *ctx = ku_ctx();
    const kiln_dense_kernels *opt = &kiln__cpu_dense, *ref = &kiln__ref_dense;
    const int64_t m = 37, n = 29, k = 53, ld = 64; /* padded leading dims */
    float *a = kiln_step_alloc(ctx, 64 * 64 * 4), *b = kiln_step_alloc(ctx, 64 * 64 * 4);
    float *c1 = kiln_step_alloc(ctx, 64 * 64 * 4), *c2 = kiln_step_alloc(ctx, 64 * 64 * 4);
    fill(a, 64 * 64, 1);
    fill(b, 64 * 64, 2);
    for (int t = 0; t < 4; t++) {
        bool ta = t & 1, tb = t & 2;
        for (int beta = 0; beta < 2; beta++) {
            fill(c1, 64 * 64, 3);
            memcpy(c2, c1, 64 * 64 * 4);
            cr_assert(opt->gemm(ctx, ta, tb, m, n, k, 0.5f, a, ld, b, ld, (float)beta, c1, ld) == KILN_STATUS_OK,
                      "gemm: %s", kiln_last_error());
            ref->gemm(ctx, ta, tb, m, n, k, 0.5f, a, ld, b, ld, (float)beta, c2, ld);
            ku_expect_arrays(c1, c2, 64 * 64, 1e-5, 1e-4, "gemm");
        }
    }
    /* k = 0 scales c by beta */
    fill(c1, 64, 4);
    memcpy(c2, c1, 64 * 4);
    opt->gemm(ctx, false, false, 8, 8, 0, 1.0f, a, 1, b, 8, 2.0f, c1, 8);
    for (int i = 0; i < 64; i++) cr_assert_float_eq(c1[i], 2.0f * c2[i], 1e-6);
    ku_ctx_free(ctx);
}

Test(dense_kernels, col_sum_and_embedding_match_reference)
{
    kiln_ctx *ctx = ku_ctx();
    const kiln_dense_kernels *opt = &kiln__cpu_dense, *ref = &kiln__ref_dense;
    const int64_t m = 300, n = 1100; /* more than one column block, parallel path */
    float *g = kiln_step_alloc(ctx, m * n * 4), *b1 = kiln_step_alloc(ctx, n * 4), *b2 = kiln_step_alloc(ctx, n * 4);
    fill(g, m * n, 5);
    fill(b1, n, 6);
    memcpy(b2, b1, n * 4);
    opt->col_sum(ctx, g, m, n, b1);
    ref->col_sum(ctx, g, m, n, b2);
    ku_expect_arrays(b1, b2, n, 1e-5, 1e-5, "col_sum");

    const int64_t v = 97, d = 130, cnt = 4000; /* n * d above the parallel threshold */
    int64_t *idx = kiln_step_alloc(ctx, cnt * 8);
    for (int64_t i = 0; i < cnt; i++) idx[i] = (int64_t)(kiln_philox_uniform(9, i) * v) % v;
    float *w = kiln_step_alloc(ctx, v * d * 4), *o1 = kiln_step_alloc(ctx, cnt * d * 4), *o2 = kiln_step_alloc(ctx, cnt * d * 4);
    fill(w, v * d, 7);
    opt->embedding_fwd(ctx, idx, cnt, w, d, o1);
    ref->embedding_fwd(ctx, idx, cnt, w, d, o2);
    ku_expect_arrays(o1, o2, cnt * d, 0, 0, "embedding_fwd");
    float *gw1 = kiln_step_alloc(ctx, v * d * 4), *gw2 = kiln_step_alloc(ctx, v * d * 4);
    fill(gw1, v * d, 8);
    memcpy(gw2, gw1, v * d * 4);
    cr_assert(opt->embedding_bwd(ctx, idx, cnt, o1, v, d, gw1) == KILN_STATUS_OK);
    ref->embedding_bwd(ctx, idx, cnt, o1, v, d, gw2);
    /* same summation order per row: bitwise equal */
    ku_expect_arrays(gw1, gw2, v * d, 0, 0, "embedding_bwd");
    ku_ctx_free(ctx);
}

/* linear on a shape large enough for the threaded bias fill and column sum */
Test(dense_kernels, linear_large_matches_reference)
{
    kiln_ctx *ctx = ku_ctx();
    const int64_t m = 96, in = 33, out = 1500;
    kiln_tensor *x = kiln_randn(ctx, 2, (int64_t[]){m, in}, 0, 1), *w = kiln_randn(ctx, 2, (int64_t[]){out, in}, 0, 1);
    kiln_tensor *b = kiln_randn(ctx, 1, (int64_t[]){out}, 0, 1);
    kiln_set_requires_grad(b, true);
    kiln_tensor *y = kiln_linear(ctx, x, w, b);
    cr_assert(y, "%s", kiln_last_error());
    float *want = kiln_step_alloc(ctx, m * out * 4);
    for (int64_t i = 0; i < m; i++) memcpy(want + i * out, b->data, out * 4);
    kiln__ref_dense.gemm(ctx, false, true, m, out, in, 1.0f, x->data, in, w->data, in, 1.0f, want, out);
    ku_expect_arrays(y->data, want, m * out, 1e-5, 1e-4, "linear forward");
    kiln_tensor *gy = kiln_randn(ctx, 2, y->shape, 0, 1);
    cr_assert(kiln_backward_with(ctx, y, gy) == KILN_STATUS_OK, "%s", kiln_last_error());
    float *gb = kiln_step_alloc(ctx, out * 4);
    memset(gb, 0, out * 4);
    kiln__ref_dense.col_sum(ctx, gy->data, m, out, gb);
    ku_expect_arrays(b->grad->data, gb, out, 1e-5, 1e-5, "linear bias gradient");
    ku_ctx_free(ctx);
}

/* 60,000 rows: the backward touches only indexed rows, matches the reference, and gives
 * the same bits with 1 and 2 threads. */
Test(dense_kernels, embedding_backward_60000_rows)
{
    kiln_ctx *ctx = ku_ctx();
    const int64_t V = 60000, D = 64, N = 8192;
    kiln_store *s = kiln_store_new();
    kiln_tensor *w = kiln_store_param(s, "emb.weight", 2, (int64_t[]){V, D});
    cr_assert(w && kiln_store_alloc(s) == KILN_STATUS_OK, "%s", kiln_last_error());
    fill(w->data, V * D, 10);
    int64_t *ids = kiln_step_alloc(ctx, N * 8);
    for (int64_t i = 0; i < N; i++) /* skewed: half the tokens among the first 100 ids */
        ids[i] = i % 2 ? (int64_t)(kiln_philox_uniform(11, i) * 100) : (int64_t)(kiln_philox_uniform(12, i) * V) % V;
    ids[0] = V - 1;
    kiln_tensor *idx = kiln_from_data(ctx, KILN_DTYPE_I64, 2, (int64_t[]){64, N / 64}, ids);
    float *want = kiln_step_alloc(ctx, V * D * 4), *first = kiln_step_alloc(ctx, V * D * 4);
    for (int threads = 2; threads >= 1; threads--) {
        kiln_ctx_set_threads(ctx, threads);
        kiln_store_zero_grad(s);
        kiln_mark mk = kiln_step_mark(ctx);
        kiln_tensor *y = kiln_embedding(ctx, idx, w); /* (64, 128, D) */
        cr_assert(y, "%s", kiln_last_error());
        kiln_tensor *gy = kiln_randn(ctx, y->ndim, y->shape, 0.0f, 1.0f);
        cr_assert(kiln_backward_with(ctx, y, gy) == KILN_STATUS_OK, "%s", kiln_last_error());
        if (threads == 2) {
            memset(want, 0, V * D * 4);
            kiln__ref_dense.embedding_bwd(ctx, ids, N, gy->data, V, D, want);
            ku_expect_arrays(w->grad->data, want, V * D, 0, 0, "embedding backward (60000 rows)");
            memcpy(first, w->grad->data, V * D * 4);
        } else {
            cr_assert(memcmp(first, w->grad->data, V * D * 4) == 0, "embedding backward differs with 1 thread");
        }
        kiln_step_rewind(ctx, mk);
        kiln_rng_seed(ctx, 1234);
    }
    /* untouched rows stay exactly zero */
    bool used[60000] = {false};
    for (int64_t i = 0; i < N; i++) used[ids[i]] = true;
    const float *g = w->grad->data;
    for (int64_t r = 0; r < V; r++)
        if (!used[r])
            for (int64_t j = 0; j < D; j++) cr_assert(g[r * D + j] == 0.0f, "row %lld was touched", (long long)r);
    kiln_store_free(s);
    ku_ctx_free(ctx);
}

/* ---- bad input ------------------------------------------------------------------------- */

Test(dense_errors, messages)
{
    kiln_ctx *ctx = ku_ctx();
    kiln_tensor *a = kiln_zeros(ctx, KILN_DTYPE_F32, 2, (int64_t[]){3, 4});
    kiln_tensor *b = kiln_zeros(ctx, KILN_DTYPE_F32, 2, (int64_t[]){5, 6});
    cr_assert_null(kiln_matmul(ctx, a, b));
    ku_expect_error("matmul: a (3, 4) has 4 columns but b (5, 6) has 5 rows", "matmul inner dims");
    kiln_tensor *a3 = kiln_zeros(ctx, KILN_DTYPE_F32, 3, (int64_t[]){2, 3, 4});
    kiln_tensor *b3 = kiln_zeros(ctx, KILN_DTYPE_F32, 3, (int64_t[]){3, 4, 5});
    cr_assert_null(kiln_matmul(ctx, a3, b3));
    ku_expect_error("batch dims of a (2, 3, 4) and b (3, 4, 5) do not broadcast", "matmul batch");
    kiln_tensor *v = kiln_zeros(ctx, KILN_DTYPE_F32, 1, (int64_t[]){4});
    cr_assert_null(kiln_matmul(ctx, v, a));
    ku_expect_error("at least 2 dims", "matmul 1-d");

    kiln_tensor *x = kiln_zeros(ctx, KILN_DTYPE_F32, 2, (int64_t[]){2, 4});
    kiln_tensor *w = kiln_zeros(ctx, KILN_DTYPE_F32, 2, (int64_t[]){10, 5});
    cr_assert_null(kiln_linear(ctx, x, w, NULL));
    ku_expect_error("linear: w has shape (10, 5), expected in_features 4 to match x (2, 4)", "linear w");
    kiln_tensor *w4 = kiln_zeros(ctx, KILN_DTYPE_F32, 2, (int64_t[]){10, 4});
    kiln_tensor *b7 = kiln_zeros(ctx, KILN_DTYPE_F32, 1, (int64_t[]){7});
    cr_assert_null(kiln_linear(ctx, x, w4, b7));
    ku_expect_error("linear: b has shape (7,), expected (10,) to match w (10, 4)", "linear b");
    kiln_tensor *xi = kiln_zeros(ctx, KILN_DTYPE_I64, 2, (int64_t[]){2, 4});
    cr_assert_null(kiln_linear(ctx, xi, w4, NULL));
    ku_expect_error("linear: x must be f32, got i64", "linear dtype");
    cr_assert_null(kiln_linear(ctx, NULL, w4, NULL)); /* NULL input: NULL, message kept */
    ku_expect_error("linear: x must be f32", "NULL input keeps the first message");

    kiln_tensor *emb = kiln_zeros(ctx, KILN_DTYPE_F32, 2, (int64_t[]){7, 3});
    int64_t bad[] = {1, 2, 7, 0};
    kiln_tensor *idx = kiln_from_data(ctx, KILN_DTYPE_I64, 1, (int64_t[]){4}, bad);
    cr_assert_null(kiln_embedding(ctx, idx, emb));
    ku_expect_error("embedding: index 7 at position 2 is out of range for vocab size 7", "embedding index");
    int32_t neg[] = {-1};
    kiln_tensor *idx32 = kiln_from_data(ctx, KILN_DTYPE_I32, 1, (int64_t[]){1}, neg);
    cr_assert_null(kiln_embedding(ctx, idx32, emb));
    ku_expect_error("index -1 at position 0 is out of range for vocab size 7", "embedding negative");
    cr_assert_null(kiln_embedding(ctx, x, emb));
    ku_expect_error("embedding: idx must be i64 or i32, got f32", "embedding dtype");
    ku_ctx_free(ctx);
}
