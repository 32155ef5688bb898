/* Reductions (sum, mean, max over a dim) and joins (concat, split): forward and backward
 * against PyTorch fixtures (tests/fixtures/eltwise.safetensors, gen_eltwise.py), finite
 * differences, the optimized CPU kernels against the reference kernels, determinism
 * across thread counts, and bad input.
 *
 * Tolerances: fixtures |got - ref| <= 1e-6 + 1e-5 |ref| (max values, indices, concat and
 * split exactly; these check every gradient's value); gradcheck 1e-4 abs + 1e-3 rel (f32
 * rounding of the difference quotient, see below); CPU vs reference sums 1e-6 rel
 * (both accumulate in double, in different orders), max exactly. */
#include "util/ku.h"

#include "kernels/eltwise.h"

#include <math.h>
#include <string.h>

#define ATOL 1e-6
#define RTOL 1e-5

static kiln_ctx *ctx;
static kiln_st_file *fx;
static void setup(void) { ctx = ku_ctx(); fx = ku_fixture("eltwise"); }
static void teardown(void) { kiln_st_close(fx); ku_ctx_free(ctx); }
TestSuite(reduce, .init = setup, .fini = teardown);

static void expect_ok(kiln_status st, const char *what)
{
    cr_assert_eq(st, KILN_STATUS_OK, "%s: %s", what, kiln_last_error());
}

static void check_y_grad(const char *kase, kiln_tensor *x, kiln_tensor *y, double atol, double rtol)
{
    ku_expect_fixture(ctx, fx, kase, "y", y, atol, rtol);
    expect_ok(kiln_backward_with(ctx, y, ku_load(ctx, fx, kase, "gy")), kase);
    ku_expect_fixture(ctx, fx, kase, "grad.x", x->grad, ATOL, RTOL);
}

/* ---- sum / mean ---------------------------------------------------------------------------- */

static void check_sum(const char *kase, bool mean, int n, const int *dims, bool keepdim)
{
    kiln_tensor *x = ku_load_grad(ctx, fx, kase, "x");
    kiln_tensor *y = mean ? kiln_mean_dims(ctx, x, n, dims, keepdim) : kiln_sum_dims(ctx, x, n, dims, keepdim);
    check_y_grad(kase, x, y, ATOL, RTOL);
}

Test(reduce, sum_all)
{
    kiln_tensor *x = ku_load_grad(ctx, fx, "sum_all", "x");
    kiln_tensor *y = kiln_sum(ctx, x);
    cr_assert(y && y->ndim == 0);
    check_y_grad("sum_all", x, y, ATOL, RTOL);
}

Test(reduce, mean_all)
{
    kiln_tensor *x = ku_load_grad(ctx, fx, "mean_all", "x");
    kiln_tensor *y = kiln_mean(ctx, x);
    cr_assert(y && y->ndim == 0);
    check_y_grad("mean_all", x, y, ATOL, RTOL);
}

Test(reduce, sum_dims)
{
    check_sum("sum_d1", false, 1, (int[]){1}, false);
    check_sum("sum_d02_keep", false, 2, (int[]){0, 2}, true);
    check_sum("sum_dm1", false, 1, (int[]){-1}, false);
    check_sum("sum_dm1_0_keep", false, 2, (int[]){-1, 0}, true);
}

Test(reduce, mean_dims)
{
    check_sum("mean_d1_keep", true, 1, (int[]){1}, true);
    check_sum("mean_d02", true, 2, (int[]){0, 2}, false);
    check_sum("mean_dm2", true, 1, (int[]){-2}, false);
}

Test(reduce, sum_of_transposed)
{
    kiln_tensor *base = ku_load(ctx, fx, "sum_t", "base");
    kiln_tensor *x = kiln_detach(ctx, kiln_transpose(ctx, base, 0, 1));
    cr_assert(x && !kiln_is_contiguous(x));
    kiln_set_requires_grad(x, true);
    check_y_grad("sum_t", x, kiln_sum_dims(ctx, x, 1, (int[]){0}, false), ATOL, RTOL);
}

Test(reduce, empty_dim_list_reduces_all)
{
    kiln_tensor *x = ku_load(ctx, fx, "sum_all", "x");
    kiln_tensor *y = kiln_sum_dims(ctx, x, 0, NULL, true);
    cr_assert(y && y->ndim == 3 && kiln_numel(y) == 1);
    ku_expect_close(kiln_sum(ctx, x), ku_load(ctx, fx, "sum_all", "y"), ATOL, RTOL, "sum");
    cr_assert_float_eq(kiln_item(y), kiln_item(ku_load(ctx, fx, "sum_all", "y")), 1e-5);
}

/* ---- max over a dim ------------------------------------------------------------------------ */

static void check_max(const char *kase, int dim, bool keepdim)
{
    kiln_tensor *x = ku_load_grad(ctx, fx, kase, "x"), *idx = NULL;
    kiln_tensor *y = kiln_max_dim(ctx, x, dim, keepdim, &idx);
    cr_assert(idx && idx->dtype == KILN_DTYPE_I64, "%s: indices", kase);
    ku_expect_fixture(ctx, fx, kase, "idx", idx, 0, 0);
    check_y_grad(kase, x, y, 0, 0);
}

Test(reduce, max_dim)
{
    check_max("max_d1", 1, false);
    check_max("max_dm1_keep", -1, true);
    check_max("max_d0", 0, false);
}

Test(reduce, max_dim_ties_take_first_index) { check_max("max_ties", 1, false); }

Test(reduce, max_dim_nan_propagates)
{
    float v[8] = {1, NAN, 3, NAN, 5, 2, 7, 1};
    kiln_tensor *x = kiln_from_data(ctx, KILN_DTYPE_F32, 2, (int64_t[]){2, 4}, v), *idx;
    kiln_tensor *y = kiln_max_dim(ctx, x, 1, false, &idx);
    cr_assert(y && isnan(kiln_get_flat(y, 0)) && kiln_get_flat(y, 1) == 7);
    cr_assert(kiln_get_flat(idx, 0) == 1 && kiln_get_flat(idx, 1) == 2); /* torch: first NaN */
    kiln_tensor *y0 = kiln_max_dim(ctx, x, 0, false, &idx);
    cr_assert(y0 && kiln_get_flat(y0, 0) == 5 && isnan(kiln_get_flat(y0, 1)) && kiln_get_flat(idx, 1) == 0);
}

/* ---- concat / split ------------------------------------------------------------------------- */

static void check_cat(const char *kase, int dim)
{
    kiln_tensor *xs[3] = {ku_load_grad(ctx, fx, kase, "a"), ku_load_grad(ctx, fx, kase, "b"),
                          ku_load_grad(ctx, fx, kase, "c")};
    kiln_tensor *y = kiln_concat(ctx, xs, 3, dim);
    ku_expect_fixture(ctx, fx, kase, "y", y, 0, 0);
    expect_ok(kiln_backward_with(ctx, y, ku_load(ctx, fx, kase, "gy")), kase);
    ku_expect_fixture(ctx, fx, kase, "grad.a", xs[0]->grad, 0, 0);
    ku_expect_fixture(ctx, fx, kase, "grad.b", xs[1]->grad, 0, 0);
    ku_expect_fixture(ctx, fx, kase, "grad.c", xs[2]->grad, 0, 0);
}

Test(reduce, concat)
{
    check_cat("cat_d0", 0);
    check_cat("cat_d1", 1);
    check_cat("cat_dm1", -1);
}

Test(reduce, concat_of_strided_and_many_inputs)
{
    /* 11 inputs (more than one node holds), one of them a transposed view */
    kiln_tensor *xs[11];
    for (int i = 0; i < 11; i++) {
        xs[i] = kiln_rand(ctx, 2, (int64_t[]){3, i % 3 + 1}, -1, 1);
        kiln_set_requires_grad(xs[i], true);
    }
    kiln_tensor *base = kiln_rand(ctx, 2, (int64_t[]){2, 3}, -1, 1);
    xs[4] = kiln_detach(ctx, kiln_transpose(ctx, base, 0, 1));
    kiln_set_requires_grad(xs[4], true);
    kiln_tensor *y = kiln_concat(ctx, xs, 11, 1);
    cr_assert(y, "%s", kiln_last_error());
    int64_t off = 0;
    for (int i = 0; i < 11; i++) {
        for (int64_t r = 0; r < 3; r++)
            for (int64_t c = 0; c < xs[i]->shape[1]; c++)
                cr_assert_eq(kiln_get_flat(y, r * y->shape[1] + off + c), kiln_get_flat(xs[i], r * xs[i]->shape[1] + c));
        off += xs[i]->shape[1];
    }
    /* d(sum(y * w))/dx_i = the matching slice of w */
    kiln_tensor *w = kiln_rand(ctx, 2, y->shape, -1, 1);
    expect_ok(kiln_backward_with(ctx, y, w), "concat11");
    off = 0;
    for (int i = 0; i < 11; i++) {
        for (int64_t r = 0; r < 3; r++)
            for (int64_t c = 0; c < xs[i]->shape[1]; c++)
                cr_assert_eq(kiln_get_flat(xs[i]->grad, r * xs[i]->shape[1] + c),
                             kiln_get_flat(w, r * y->shape[1] + off + c));
        off += xs[i]->shape[1];
    }
}

static void check_split(const char *kase, int dim, int n, const int64_t *sizes, int skip)
{
    kiln_tensor *x = ku_load_grad(ctx, fx, kase, "x"), *out[4];
    expect_ok(kiln_split(ctx, x, dim, n, sizes, out), kase);
    char name[16];
    for (int k = 0; k < n; k++) {
        snprintf(name, sizeof name, "y%d", k);
        ku_expect_fixture(ctx, fx, kase, name, out[k], 0, 0);
    }
    /* each piece's gradient flows back on its own; the skipped piece gets none */
    for (int k = 0; k < n; k++) {
        if (k == skip) continue;
        snprintf(name, sizeof name, "gy%d", k);
        expect_ok(kiln_backward_with(ctx, out[k], ku_load(ctx, fx, kase, name)), kase);
    }
    ku_expect_fixture(ctx, fx, kase, "grad.x", x->grad, 0, 0);
}

Test(reduce, split)
{
    check_split("split_d1", 1, 3, (int64_t[]){2, 4, 1}, -1);
    check_split("split_d0", 0, 3, (int64_t[]){1, 3, 2}, 1);
    check_split("split_dm1", -1, 2, (int64_t[]){3, 2}, -1);
}

/* ---- finite differences --------------------------------------------------------------------- */

typedef struct red_case {
    int kind; /* 0 sum_dims, 1 mean_dims, 2 max_dim, 3 sum, 4 mean */
    int n, dims[3];
    bool keepdim;
} red_case;

static kiln_tensor *gc_reduce(kiln_ctx *c, kiln_tensor **in, void *user)
{
    const red_case *r = user;
    switch (r->kind) {
    case 0: return kiln_sum_dims(c, in[0], r->n, r->dims, r->keepdim);
    case 1: return kiln_mean_dims(c, in[0], r->n, r->dims, r->keepdim);
    case 2: return kiln_max_dim(c, in[0], r->dims[0], r->keepdim, NULL);
    case 3: return kiln_sum(c, in[0]);
    default: return kiln_mean(c, in[0]);
    }
}

/* distinct values at least 0.1 apart in a scrambled order: no max tie within eps */
static kiln_tensor *spaced(int ndim, const int64_t *shape)
{
    kiln_tensor *t = kiln_empty(ctx, KILN_DTYPE_F32, ndim, shape);
    int64_t n = kiln_numel(t);
    for (int64_t i = 0; i < n; i++) ((float *)t->data)[i] = 0.1f * (float)((i * 7 + 3) % n) - 1.0f;
    kiln_set_requires_grad(t, true);
    return t;
}

Test(reduce, gradcheck_reductions)
{
    int64_t s[3] = {2, 3, 5};
    red_case cases[] = {
        {0, 1, {1}, false}, {0, 2, {0, 2}, true}, {0, 1, {-1}, false}, {1, 1, {1}, true},
        {1, 2, {-1, 0}, false}, {2, 1, {0}, false}, {2, 1, {1}, true}, {2, 1, {-1}, false},
        {3, 0, {0}, false}, {4, 0, {0}, false},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        kiln_tensor *x = spaced(3, s);
        char what[32];
        snprintf(what, sizeof what, "reduce case %zu", i);
        /* wiring; values vs PyTorch in the fixture tests above. Sums and means are linear
         * (eps 0.1, only f32 rounding of the outputs, measured <= 0.01 of the tolerance); max
         * is piecewise linear, so eps 1e-2 stays below the 0.1 spacing and it is exact */
        ku_gradcheck(ctx, gc_reduce, &x, 1, &cases[i], cases[i].kind == 2 ? 1e-2 : 1e-1, 1e-4, 1e-3, what);
    }
}

static kiln_tensor *gc_concat(kiln_ctx *c, kiln_tensor **in, void *user)
{
    return kiln_concat(c, in, 3, *(int *)user);
}

static kiln_tensor *gc_split(kiln_ctx *c, kiln_tensor **in, void *user)
{
    (void)user;
    kiln_tensor *out[3];
    if (kiln_split(c, in[0], 1, 3, (int64_t[]){1, 3, 2}, out) < 0) return NULL;
    /* pieces recombined in another order, one of them used twice */
    kiln_tensor *parts[4] = {out[2], out[0], out[1], out[0]};
    return kiln_concat(c, parts, 4, 1);
}

Test(reduce, gradcheck_joins)
{
    for (int dim = -1; dim < 2; dim++) {
        int64_t sa[2] = {2, 3}, sb[2] = {2, 3}, sc[2] = {2, 3};
        int d = dim < 0 ? 1 : dim;
        sa[d] = 1;
        sc[d] = 2;
        kiln_tensor *in[3] = {spaced(2, sa), spaced(2, sb), spaced(2, sc)};
        /* linear in each input: central differences exact up to f32 rounding (measured <= 3e-5) */
        ku_gradcheck(ctx, gc_concat, in, 3, &dim, 1e-2, 1e-4, 1e-3, "concat");
    }
    kiln_tensor *x = spaced(2, (int64_t[]){3, 6});
    ku_gradcheck(ctx, gc_split, &x, 1, NULL, 1e-2, 1e-4, 1e-3, "split"); /* linear, as concat */
}

/* ---- optimized vs reference kernels ---------------------------------------------------------- */

/* sum of x down to the keepdim shape given by mask, both tables */
static void compare_sum(kiln_tensor *x, unsigned mask, const char *what)
{
    int64_t ks[KILN_MAX_DIMS];
    for (int i = 0; i < x->ndim; i++) ks[i] = (mask >> i) & 1 ? 1 : x->shape[i];
    for (int acc = 0; acc < 2; acc++) {
        kiln_tensor *y1 = kiln_full(ctx, x->ndim, ks, 0.25f), *y2 = kiln_full(ctx, x->ndim, ks, 0.25f);
        expect_ok(kiln__cpu_eltwise.sum_to(ctx, x, 0.5, y1, acc), what);
        expect_ok(kiln__ref_eltwise.sum_to(ctx, x, 0.5, y2, acc), what);
        ku_expect_close(y1, y2, 0, 1e-6, what);
    }
}

Test(reduce, cpu_vs_ref_sum)
{
    kiln_tensor *a = kiln_rand(ctx, 3, (int64_t[]){3, 50000, 2}, 0, 1);
    compare_sum(a, 2, "(3,50000,2) dim 1 (inner kept, long reduction)");
    compare_sum(a, 1, "dim 0");
    compare_sum(a, 4, "dim 2");
    compare_sum(a, 7, "all");
    compare_sum(a, 5, "dims 0,2");
    kiln_tensor *b = kiln_rand(ctx, 2, (int64_t[]){7, 70000}, 0, 1);
    compare_sum(b, 2, "(7,70000) dim 1 (inner reduced, few outputs)");
    compare_sum(b, 1, "(7,70000) dim 0 (many columns)");
    kiln_tensor *c = kiln_rand(ctx, 4, (int64_t[]){4, 6, 5, 33}, 0, 1);
    for (unsigned m = 0; m < 16; m++) compare_sum(c, m, "(4,6,5,33) every mask");
    kiln_tensor *p = kiln_permute(ctx, c, (int[]){3, 1, 0, 2});
    for (unsigned m = 0; m < 16; m++) compare_sum(p, m, "permuted, every mask");
    kiln_tensor *big = kiln_rand(ctx, 1, (int64_t[]){1000003}, 0, 1);
    compare_sum(big, 1, "1M to a scalar");
    kiln_tensor *e = kiln_rand(ctx, 2, (int64_t[]){3, 0}, 0, 1);
    compare_sum(e, 2, "empty");
}

Test(reduce, sum_is_deterministic_across_threads)
{
    kiln_tensor *x = kiln_rand(ctx, 2, (int64_t[]){3, 400000}, -1, 1);
    kiln_tensor *y1 = kiln_sum(ctx, x), *r1 = kiln_sum_dims(ctx, x, 1, (int[]){0}, false);
    expect_ok(kiln_ctx_set_threads(ctx, 1), "threads");
    kiln_tensor *y2 = kiln_sum(ctx, x), *r2 = kiln_sum_dims(ctx, x, 1, (int[]){0}, false);
    expect_ok(kiln_ctx_set_threads(ctx, 2), "threads");
    cr_assert_eq(memcmp(y1->data, y2->data, 4), 0, "sum differs between 2 and 1 threads");
    cr_assert_eq(memcmp(r1->data, r2->data, 400000 * 4), 0, "column sums differ between 2 and 1 threads");
}

static void compare_max(kiln_tensor *x, int dim, const char *what)
{
    int64_t ks[KILN_MAX_DIMS];
    for (int i = 0; i < x->ndim; i++) ks[i] = i == dim ? 1 : x->shape[i];
    kiln_tensor *y1 = kiln_empty(ctx, KILN_DTYPE_F32, x->ndim, ks), *y2 = kiln_empty(ctx, KILN_DTYPE_F32, x->ndim, ks);
    kiln_tensor *i1 = kiln_empty(ctx, KILN_DTYPE_I64, x->ndim, ks), *i2 = kiln_empty(ctx, KILN_DTYPE_I64, x->ndim, ks);
    expect_ok(kiln__cpu_eltwise.max_dim(ctx, x, dim, y1, i1), what);
    expect_ok(kiln__ref_eltwise.max_dim(ctx, x, dim, y2, i2), what);
    for (int64_t k = 0; k < kiln_numel(y1); k++) {
        double a = kiln_get_flat(y1, k), b = kiln_get_flat(y2, k);
        cr_assert((isnan(a) && isnan(b)) || a == b, "%s: value %lld: %g vs %g", what, (long long)k, a, b);
    }
    ku_expect_close(i1, i2, 0, 0, what);
    kiln_tensor *gy = kiln_rand(ctx, x->ndim, ks, -1, 1);
    kiln_tensor *g1 = kiln_full(ctx, x->ndim, x->shape, 1.0f), *g2 = kiln_full(ctx, x->ndim, x->shape, 1.0f);
    expect_ok(kiln__cpu_eltwise.max_dim_bwd(ctx, gy, i1, dim, g1), what);
    expect_ok(kiln__ref_eltwise.max_dim_bwd(ctx, gy, i1, dim, g2), what);
    ku_expect_close(g1, g2, 0, 0, what);
}

Test(reduce, cpu_vs_ref_max)
{
    /* small integers: many ties; a few NaNs */
    kiln_tensor *x = kiln_rand(ctx, 3, (int64_t[]){37, 70, 130}, 0, 4);
    float *p = x->data;
    for (int64_t i = 0; i < kiln_numel(x); i++) p[i] = floorf(p[i]);
    for (int64_t i = 0; i < kiln_numel(x); i += 997) p[i] = NAN;
    for (int d = 0; d < 3; d++) compare_max(x, d, "(37,70,130)");
    kiln_tensor *t = kiln_contiguous(ctx, kiln_permute(ctx, x, (int[]){2, 0, 1}));
    kiln_tensor *pv = kiln_permute(ctx, x, (int[]){2, 0, 1});
    for (int d = 0; d < 3; d++) {
        compare_max(pv, d, "permuted view");
        compare_max(t, d, "permuted copy");
    }
}

/* ---- bad input -------------------------------------------------------------------------------- */

Test(reduce, bad_input)
{
    kiln_tensor *x = kiln_rand(ctx, 3, (int64_t[]){2, 3, 4}, -1, 1);
    cr_assert_null(kiln_sum_dims(ctx, x, 1, (int[]){3}, false));
    ku_expect_error("sum: dim 3 out of range for a 3-d tensor", "sum dim");
    cr_assert_null(kiln_mean_dims(ctx, x, 1, (int[]){-4}, false));
    ku_expect_error("mean: dim -4 out of range", "mean dim");
    cr_assert_null(kiln_sum_dims(ctx, x, 2, (int[]){1, -2}, false));
    ku_expect_error("sum: dim 1 appears more than once", "sum repeated dim");
    cr_assert_null(kiln_max_dim(ctx, x, 5, false, NULL));
    ku_expect_error("max_dim: dim 5 out of range", "max dim");
    kiln_tensor *e = kiln_rand(ctx, 2, (int64_t[]){2, 0}, -1, 1);
    cr_assert_null(kiln_max_dim(ctx, e, 1, false, NULL));
    ku_expect_error("max_dim: dim 1 of tensor (2, 0) is empty", "max empty");

    kiln_tensor *b = kiln_rand(ctx, 3, (int64_t[]){2, 5, 4}, -1, 1), *c = kiln_rand(ctx, 3, (int64_t[]){2, 3, 5}, -1, 1);
    kiln_tensor *xs[3] = {x, b, c};
    cr_assert_null(kiln_concat(ctx, xs, 3, 1));
    ku_expect_error("concat: tensor 2 has shape (2, 3, 5) but tensor 0 has shape (2, 3, 4) (sizes must match except in dim 1)",
                    "concat shape");
    kiln_tensor *d = kiln_rand(ctx, 2, (int64_t[]){2, 3}, -1, 1);
    kiln_tensor *ys[2] = {x, d};
    cr_assert_null(kiln_concat(ctx, ys, 2, 0));
    ku_expect_error("concat: tensor 1 has shape (2, 3)", "concat ndim");
    cr_assert_null(kiln_concat(ctx, xs, 2, 3));
    ku_expect_error("concat: dim 3 out of range", "concat dim");
    cr_assert_null(kiln_concat(ctx, xs, 0, 0));
    ku_expect_error("concat: needs at least one tensor", "concat empty");

    kiln_tensor *out[3];
    cr_assert_eq(kiln_split(ctx, x, 2, 2, (int64_t[]){1, 2}, out), KILN_STATUS_INVALID);
    ku_expect_error("split: sizes sum to 3 but dim 2 of tensor (2, 3, 4) has size 4", "split sum");
    cr_assert(out[0] == NULL && out[1] == NULL);
    cr_assert_eq(kiln_split(ctx, x, 0, 2, (int64_t[]){3, -1}, out), KILN_STATUS_INVALID);
    ku_expect_error("split: size 1 is negative", "split negative");
    cr_assert_eq(kiln_split(ctx, x, -4, 1, (int64_t[]){2}, out), KILN_STATUS_INVALID);
    ku_expect_error("split: dim -4 out of range", "split dim");

    kiln_tensor *i = kiln_zeros(ctx, KILN_DTYPE_I64, 1, (int64_t[]){3});
    cr_assert_null(kiln_sum(ctx, i));
    ku_expect_error("sum: x must be f32, got i64", "sum dtype");
}

Test(reduce, split_pieces_are_views)
{
    kiln_tensor *x = kiln_rand(ctx, 2, (int64_t[]){4, 6}, -1, 1), *out[2];
    expect_ok(kiln_split(ctx, x, 1, 2, (int64_t[]){4, 2}, out), "split");
    cr_assert_eq(out[0]->data, x->data);
    cr_assert_eq(out[1]->data, (float *)x->data + 4);
    cr_assert_eq(out[1]->shape[1], 2);
}

Test(reduce, empty_reductions_match_torch)
{
    /* torch: sum over an empty dim is 0, mean is NaN */
    kiln_tensor *x = kiln_zeros(ctx, KILN_DTYPE_F32, 2, (int64_t[]){3, 0});
    kiln_tensor *s = kiln_sum_dims(ctx, x, 1, (int[]){1}, false), *m = kiln_mean_dims(ctx, x, 1, (int[]){-1}, true);
    cr_assert(s && s->ndim == 1 && s->shape[0] == 3 && m && m->ndim == 2 && m->shape[1] == 1);
    for (int i = 0; i < 3; i++) cr_assert(kiln_get_flat(s, i) == 0.0 && isnan(kiln_get_flat(m, i)));
}
