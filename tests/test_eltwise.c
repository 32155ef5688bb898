/* Elementwise ops (unary, broadcasting binary, where, masked_fill): forward and backward
 * against PyTorch fixtures (tests/fixtures/eltwise.safetensors, gen_eltwise.py), finite
 * differences, the optimized CPU kernels against the reference kernels, and bad input.
 *
 * Tolerances: fixtures |got - ref| <= 1e-6 + 1e-5 |ref| (f32 both sides, same formulas;
 * these check every gradient's value); gradcheck 1e-4 abs + 1e-3 rel, on the f32 rounding
 * of the Richardson difference quotient (~3u|f|/eps, measured below 0.07 of it); CPU vs
 * reference kernels: bit-exact, except 1e-6 abs + 2e-6 rel
 * where oneDNN's JIT exp/tanh/sigmoid/sqrt replace libm (contiguous, past ~1000 elements). */
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
TestSuite(eltwise, .init = setup, .fini = teardown);

typedef kiln_tensor *(*un_fn)(kiln_ctx *, kiln_tensor *);
typedef kiln_tensor *(*bin_fn)(kiln_ctx *, kiln_tensor *, kiln_tensor *);

static void expect_ok(kiln_status st, const char *what)
{
    cr_assert_eq(st, KILN_STATUS_OK, "%s: %s", what, kiln_last_error());
}

/* y = f(x) and dL/dx against the fixture; x is the given tensor (may be a view). */
static void check_unary_on(const char *kase, un_fn f, kiln_tensor *x)
{
    kiln_tensor *y = f(ctx, x);
    ku_expect_fixture(ctx, fx, kase, "y", y, ATOL, RTOL);
    expect_ok(kiln_backward_with(ctx, y, ku_load(ctx, fx, kase, "gy")), kase);
    ku_expect_fixture(ctx, fx, kase, "grad.x", x->grad, ATOL, RTOL);
}

static void check_unary(const char *kase, un_fn f) { check_unary_on(kase, f, ku_load_grad(ctx, fx, kase, "x")); }

/* x = base^T as a strided view that is a leaf of the graph */
static kiln_tensor *transposed_leaf(const char *kase)
{
    kiln_tensor *base = ku_load(ctx, fx, kase, "base");
    kiln_tensor *x = kiln_detach(ctx, kiln_transpose(ctx, base, 0, 1));
    cr_assert(x && !kiln_is_contiguous(x), "%s: expected a strided view", kase);
    kiln_set_requires_grad(x, true);
    return x;
}

static kiln_tensor *f_leaky(kiln_ctx *c, kiln_tensor *x) { return kiln_leaky_relu(c, x, 0.1f); }
static kiln_tensor *f_add_s(kiln_ctx *c, kiln_tensor *x) { return kiln_add_scalar(c, x, 2.5f); }
static kiln_tensor *f_mul_s(kiln_ctx *c, kiln_tensor *x) { return kiln_mul_scalar(c, x, -1.5f); }
static kiln_tensor *f_pow2(kiln_ctx *c, kiln_tensor *x) { return kiln_pow_scalar(c, x, 2.0f); }
static kiln_tensor *f_pow3(kiln_ctx *c, kiln_tensor *x) { return kiln_pow_scalar(c, x, 3.0f); }
static kiln_tensor *f_pow_half(kiln_ctx *c, kiln_tensor *x) { return kiln_pow_scalar(c, x, 0.5f); }
static kiln_tensor *f_pow_m1_5(kiln_ctx *c, kiln_tensor *x) { return kiln_pow_scalar(c, x, -1.5f); }
static kiln_tensor *f_pow2_5(kiln_ctx *c, kiln_tensor *x) { return kiln_pow_scalar(c, x, 2.5f); }

Test(eltwise, neg) { check_unary("neg", kiln_neg); }
Test(eltwise, relu) { check_unary("relu", kiln_relu); }
Test(eltwise, leaky_relu) { check_unary("leaky_relu", f_leaky); }
Test(eltwise, sigmoid) { check_unary("sigmoid", kiln_sigmoid); }
Test(eltwise, tanh) { check_unary("tanh", kiln_tanh); }
Test(eltwise, softplus_across_threshold) { check_unary("softplus", kiln_softplus); }
Test(eltwise, exp) { check_unary("exp", kiln_exp); }
Test(eltwise, log) { check_unary("log", kiln_log); }
Test(eltwise, sqrt) { check_unary("sqrt", kiln_sqrt); }
Test(eltwise, add_scalar) { check_unary("add_scalar", f_add_s); }
Test(eltwise, mul_scalar) { check_unary("mul_scalar", f_mul_s); }
Test(eltwise, pow_scalar)
{
    check_unary("pow2", f_pow2);
    check_unary("pow3", f_pow3);
    check_unary("pow_half", f_pow_half);
    check_unary("pow_m1_5", f_pow_m1_5);
    check_unary("pow2_5", f_pow2_5);
}
Test(eltwise, sigmoid_of_transposed) { check_unary_on("sigmoid_t", kiln_sigmoid, transposed_leaf("sigmoid_t")); }
Test(eltwise, log_of_transposed) { check_unary_on("log_t", kiln_log, transposed_leaf("log_t")); }

/* ---- binary ------------------------------------------------------------------------------ */

static void check_binary_on(const char *kase, bin_fn f, kiln_tensor *a, kiln_tensor *b)
{
    kiln_tensor *y = f(ctx, a, b);
    ku_expect_fixture(ctx, fx, kase, "y", y, ATOL, RTOL);
    expect_ok(kiln_backward_with(ctx, y, ku_load(ctx, fx, kase, "gy")), kase);
    ku_expect_fixture(ctx, fx, kase, "grad.a", a->grad, ATOL, RTOL);
    ku_expect_fixture(ctx, fx, kase, "grad.b", b->grad, ATOL, RTOL);
}

static void check_binary(const char *kase, bin_fn f)
{
    check_binary_on(kase, f, ku_load_grad(ctx, fx, kase, "a"), ku_load_grad(ctx, fx, kase, "b"));
}

Test(eltwise, add_same_shape) { check_binary("add_same", kiln_add); }
Test(eltwise, add_broadcast_234_31) { check_binary("add_b1", kiln_add); }
Test(eltwise, sub_broadcast_1_23) { check_binary("sub_b2", kiln_sub); }
Test(eltwise, mul_broadcast_41_15) { check_binary("mul_b3", kiln_mul); }
Test(eltwise, div_broadcast_41_15) { check_binary("div_b3", kiln_div); }
Test(eltwise, div_row_broadcast) { check_binary("div_row", kiln_div); }
Test(eltwise, sub_0d) { check_binary("sub_scalar0d", kiln_sub); }
Test(eltwise, mul_0d) { check_binary("mul_scalar0d", kiln_mul); }
Test(eltwise, mul_transposed)
{
    check_binary_on("mul_t", kiln_mul, transposed_leaf("mul_t"), ku_load_grad(ctx, fx, "mul_t", "b"));
}

/* an explicitly expanded (stride 0) input gives the same values and, through the expand
 * node, the same gradients as implicit broadcasting */
Test(eltwise, mul_expanded_view)
{
    kiln_tensor *a = ku_load_grad(ctx, fx, "mul_b3", "a"), *b = ku_load_grad(ctx, fx, "mul_b3", "b");
    kiln_tensor *ae = kiln_expand(ctx, a, 2, (int64_t[]){4, 5});
    cr_assert(ae && ae->stride[1] == 0);
    kiln_tensor *y = kiln_mul(ctx, ae, b);
    ku_expect_fixture(ctx, fx, "mul_b3", "y", y, ATOL, RTOL);
    expect_ok(kiln_backward_with(ctx, y, ku_load(ctx, fx, "mul_b3", "gy")), "mul_expanded");
    ku_expect_fixture(ctx, fx, "mul_b3", "grad.a", a->grad, ATOL, RTOL);
    ku_expect_fixture(ctx, fx, "mul_b3", "grad.b", b->grad, ATOL, RTOL);
}

Test(eltwise, same_tensor_twice)
{
    /* y = x * x: both gradient slots land in one accumulator */
    kiln_tensor *x = ku_load_grad(ctx, fx, "pow2", "x");
    kiln_tensor *y = kiln_mul(ctx, x, x);
    ku_expect_fixture(ctx, fx, "pow2", "y", y, ATOL, RTOL);
    expect_ok(kiln_backward_with(ctx, y, ku_load(ctx, fx, "pow2", "gy")), "x*x");
    ku_expect_fixture(ctx, fx, "pow2", "grad.x", x->grad, ATOL, RTOL);
}

/* ---- where / masked_fill ----------------------------------------------------------------- */

static kiln_tensor *to_f32(kiln_tensor *t)
{
    kiln_tensor *f = kiln_empty(ctx, KILN_DTYPE_F32, t->ndim, t->shape);
    for (int64_t i = 0; i < kiln_numel(t); i++) ((float *)f->data)[i] = (float)kiln_get_flat(t, i) * 3.0f;
    return f;
}

static void check_where(const char *kase, bool f32_cond)
{
    kiln_tensor *c = ku_load(ctx, fx, kase, "cond");
    if (f32_cond) c = to_f32(c);
    kiln_tensor *a = ku_load_grad(ctx, fx, kase, "a"), *b = ku_load_grad(ctx, fx, kase, "b");
    kiln_tensor *y = kiln_where(ctx, c, a, b);
    ku_expect_fixture(ctx, fx, kase, "y", y, 0, 0);
    expect_ok(kiln_backward_with(ctx, y, ku_load(ctx, fx, kase, "gy")), kase);
    ku_expect_fixture(ctx, fx, kase, "grad.a", a->grad, ATOL, RTOL);
    ku_expect_fixture(ctx, fx, kase, "grad.b", b->grad, ATOL, RTOL);
}

Test(eltwise, where_u8_cond) { check_where("where", false); }
Test(eltwise, where_f32_cond) { check_where("where", true); }
Test(eltwise, where_broadcast_all_three) { check_where("where_b", false); }

Test(eltwise, masked_fill)
{
    kiln_tensor *m = ku_load(ctx, fx, "masked_fill", "mask"), *x = ku_load_grad(ctx, fx, "masked_fill", "x");
    kiln_tensor *y = kiln_masked_fill(ctx, x, m, -1.5f);
    ku_expect_fixture(ctx, fx, "masked_fill", "y", y, 0, 0);
    expect_ok(kiln_backward_with(ctx, y, ku_load(ctx, fx, "masked_fill", "gy")), "masked_fill");
    ku_expect_fixture(ctx, fx, "masked_fill", "grad.x", x->grad, ATOL, RTOL);
}

/* ---- finite differences ------------------------------------------------------------------ */

/* values in [-2, -0.3] U [0.3, 2]: no kink of relu/leaky_relu within eps of any element */
static kiln_tensor *away(int ndim, const int64_t *shape, float lo)
{
    kiln_tensor *t = kiln_rand(ctx, ndim, shape, -1.0f, 1.0f);
    float *p = t->data;
    for (int64_t i = 0; i < kiln_numel(t); i++) p[i] = p[i] < 0 ? -lo + p[i] * (2.0f - lo) : lo + p[i] * (2.0f - lo);
    kiln_set_requires_grad(t, true);
    return t;
}

typedef struct unary_case {
    un_fn f;
} unary_case;

static kiln_tensor *gc_unary(kiln_ctx *c, kiln_tensor **in, void *user) { return ((unary_case *)user)->f(c, in[0]); }

static void gradcheck_unary(const char *what, un_fn f, float lo, bool positive)
{
    kiln_tensor *x = away(2, (int64_t[]){3, 5}, lo);
    if (positive) {
        float *p = x->data;
        for (int i = 0; i < 15; i++) p[i] = fabsf(p[i]);
    }
    unary_case u = {f};
    /* guards the autograd wiring; the values are checked against PyTorch in check_unary.
     * eps 1e-2: truncation h^4 f^(5) is negligible after Richardson even for pow -1.5 at
     * 0.5; f32 rounding ~3u|f|/eps dominates (worst 5.7e-5 at |f'| 12, 0.02 of the tolerance) */
    ku_gradcheck(ctx, gc_unary, &x, 1, &u, 1e-2, 1e-4, 1e-3, what);
}

static kiln_tensor *f_softplus_wide(kiln_ctx *c, kiln_tensor *x) { return kiln_softplus(c, kiln_mul_scalar(c, x, 12.0f)); }

Test(eltwise, gradcheck_unary)
{
    gradcheck_unary("neg", kiln_neg, 0.3f, false);
    gradcheck_unary("relu", kiln_relu, 0.3f, false);
    gradcheck_unary("leaky_relu", f_leaky, 0.3f, false);
    gradcheck_unary("sigmoid", kiln_sigmoid, 0.0f, false);
    gradcheck_unary("tanh", kiln_tanh, 0.0f, false);
    gradcheck_unary("softplus", kiln_softplus, 0.0f, false);
    gradcheck_unary("softplus*12", f_softplus_wide, 0.0f, false);
    gradcheck_unary("exp", kiln_exp, 0.0f, false);
    gradcheck_unary("log", kiln_log, 0.5f, true);
    gradcheck_unary("sqrt", kiln_sqrt, 0.5f, true);
    gradcheck_unary("add_scalar", f_add_s, 0.0f, false);
    gradcheck_unary("mul_scalar", f_mul_s, 0.0f, false);
    gradcheck_unary("pow2", f_pow2, 0.0f, false);
    gradcheck_unary("pow3", f_pow3, 0.0f, false);
    gradcheck_unary("pow_half", f_pow_half, 0.5f, true);
    gradcheck_unary("pow_m1_5", f_pow_m1_5, 0.5f, true);
    gradcheck_unary("pow2_5", f_pow2_5, 0.5f, true);
}

typedef struct binary_case {
    bin_fn f;
} binary_case;

static kiln_tensor *gc_binary(kiln_ctx *c, kiln_tensor **in, void *user)
{
    return ((binary_case *)user)->f(c, in[0], in[1]);
}

static void gradcheck_binary(const char *what, bin_fn f, int na, const int64_t *sa, int nb, const int64_t *sb)
{
    kiln_tensor *in[2] = {away(na, sa, 0.5f), away(nb, sb, 0.5f)};
    binary_case u = {f};
    /* guards the wiring; values against PyTorch in check_binary. eps 3e-2: add/sub/mul are
     * linear in each input and div's truncation is cancelled, so f32 rounding of the outputs
     * a broadcast input feeds (~3u|f|sqrt(k)/eps) is what remains (worst 0.06 of the tolerance) */
    ku_gradcheck(ctx, gc_binary, in, 2, &u, 3e-2, 1e-4, 1e-3, what);
}

Test(eltwise, gradcheck_binary)
{
    bin_fn fs[4] = {kiln_add, kiln_sub, kiln_mul, kiln_div};
    const char *names[4] = {"add", "sub", "mul", "div"};
    for (int k = 0; k < 4; k++) {
        gradcheck_binary(names[k], fs[k], 2, (int64_t[]){3, 4}, 2, (int64_t[]){3, 4});
        gradcheck_binary(names[k], fs[k], 3, (int64_t[]){2, 3, 4}, 2, (int64_t[]){3, 1});
        gradcheck_binary(names[k], fs[k], 1, (int64_t[]){1}, 2, (int64_t[]){2, 3});
        gradcheck_binary(names[k], fs[k], 2, (int64_t[]){4, 1}, 2, (int64_t[]){1, 5});
        gradcheck_binary(names[k], fs[k], 0, NULL, 2, (int64_t[]){2, 3});
    }
}

static kiln_tensor *g_cond;
static kiln_tensor *gc_where(kiln_ctx *c, kiln_tensor **in, void *user)
{
    (void)user;
    return kiln_where(c, g_cond, in[0], in[1]);
}
static kiln_tensor *gc_masked(kiln_ctx *c, kiln_tensor **in, void *user)
{
    (void)user;
    return kiln_masked_fill(c, in[0], g_cond, 0.25f);
}

Test(eltwise, gradcheck_where_masked_fill)
{
    g_cond = ku_load(ctx, fx, "where_b", "cond"); /* (3, 1) */
    kiln_tensor *in[2] = {away(2, (int64_t[]){1, 4}, 0.0f), away(3, (int64_t[]){2, 3, 4}, 0.0f)};
    /* linear in each input: central differences exact up to f32 rounding (measured <= 3e-5) */
    ku_gradcheck(ctx, gc_where, in, 2, NULL, 1e-2, 1e-4, 1e-3, "where");
    g_cond = ku_load(ctx, fx, "masked_fill", "mask"); /* (3, 4) */
    kiln_tensor *x = away(3, (int64_t[]){2, 1, 4}, 0.0f);
    ku_gradcheck(ctx, gc_masked, &x, 1, NULL, 1e-2, 1e-4, 1e-3, "masked_fill"); /* linear, as where */
}

/* ---- optimized vs reference kernels -------------------------------------------------------- */

static const kiln_eltwise_kernels *cpu(void) { return &kiln__cpu_eltwise; }
static const kiln_eltwise_kernels *ref(void) { return &kiln__ref_eltwise; }

static kiln_tensor *randt(int ndim, const int64_t *shape, float lo, float hi)
{
    return kiln_rand(ctx, ndim, shape, lo, hi);
}

/* x for op: strictly positive where the op needs it */
static void domain(kiln_unary_op op, float *lo, float *hi)
{
    *lo = -6.0f;
    *hi = 6.0f;
    if (op == KILN_UNARY_LOG || op == KILN_UNARY_SQRT || op == KILN_UNARY_POW_SCALAR) {
        *lo = 0.01f;
        *hi = 30.0f;
    }
    if (op == KILN_UNARY_SOFTPLUS) {
        *lo = -40.0f;
        *hi = 40.0f;
    }
}

static void compare_unary(kiln_unary_op op, float alpha, kiln_tensor *x, double atol, double rtol)
{
    char what[96];
    snprintf(what, sizeof what, "%s(alpha %g) fwd n=%lld", kiln__unary_name(op), alpha, (long long)kiln_numel(x));
    kiln_tensor *y1 = kiln_empty_like(ctx, x), *y2 = kiln_empty_like(ctx, x);
    expect_ok(cpu()->unary_fwd(ctx, op, alpha, x, y1), what);
    expect_ok(ref()->unary_fwd(ctx, op, alpha, x, y2), what);
    ku_expect_close(y1, y2, atol, rtol, what);
    /* backward into a gradient that already holds values (accumulation) */
    snprintf(what, sizeof what, "%s(alpha %g) bwd n=%lld", kiln__unary_name(op), alpha, (long long)kiln_numel(x));
    kiln_tensor *gy = randt(x->ndim, x->shape, -1, 1), *g0 = randt(x->ndim, x->shape, -1, 1);
    kiln_tensor *g1 = kiln_empty_like(ctx, x), *g2 = kiln_empty_like(ctx, x);
    memcpy(g1->data, g0->data, (size_t)kiln_numel(x) * 4);
    memcpy(g2->data, g0->data, (size_t)kiln_numel(x) * 4);
    expect_ok(cpu()->unary_bwd(ctx, op, alpha, x, y2, gy, g1), what);
    expect_ok(ref()->unary_bwd(ctx, op, alpha, x, y2, gy, g2), what);
    ku_expect_close(g1, g2, atol, rtol, what);
}

Test(eltwise, cpu_vs_ref_unary)
{
    float alphas[KILN_UNARY_COUNT] = {0};
    alphas[KILN_UNARY_ADD_SCALAR] = 0.75f;
    alphas[KILN_UNARY_MUL_SCALAR] = -1.25f;
    alphas[KILN_UNARY_LEAKY_RELU] = 0.01f;
    for (int op = 0; op < KILN_UNARY_COUNT; op++) {
        float lo, hi;
        domain((kiln_unary_op)op, &lo, &hi);
        int64_t tiny[2] = {7, 9}, small[2] = {37, 29}, big[1] = {100003}, tb[2] = {300, 257};
        bool jit = op == KILN_UNARY_SIGMOID || op == KILN_UNARY_TANH || op == KILN_UNARY_SOFTPLUS ||
                   op == KILN_UNARY_EXP || op == KILN_UNARY_LOG || op == KILN_UNARY_SQRT;
        double atol = jit ? 1e-6 : 0, rtol = jit ? 2e-6 : 0;
        float a = alphas[op];
        float pows[] = {2.0f, 3.0f, 0.5f, -1.5f, 2.5f, 0.0f, 1.0f};
        int n_alpha = op == KILN_UNARY_POW_SCALAR ? 7 : 1;
        for (int k = 0; k < n_alpha; k++) {
            if (op == KILN_UNARY_POW_SCALAR) a = pows[k];
            compare_unary((kiln_unary_op)op, a, randt(2, tiny, lo, hi), 0, 0);
            compare_unary((kiln_unary_op)op, a, randt(2, small, lo, hi), atol, rtol);
            compare_unary((kiln_unary_op)op, a, randt(1, big, lo, hi), atol, rtol);
            /* large strided: transposed view (gather path, no oneDNN) */
            kiln_tensor *base = randt(2, tb, lo, hi);
            kiln_tensor *t = kiln_transpose(ctx, base, 0, 1);
            compare_unary((kiln_unary_op)op, a, t, 0, 0);
        }
    }
}

static void compare_binary(kiln_binary_op op, kiln_tensor *a, kiln_tensor *b, int nd, const int64_t *shape)
{
    /* views in the output shape, as the ops build them */
    kiln_tensor av = *a, bv = *b;
    for (int i = 0; i < nd; i++) {
        if (a->shape[i] != shape[i]) { av.shape[i] = shape[i]; av.stride[i] = 0; }
        if (b->shape[i] != shape[i]) { bv.shape[i] = shape[i]; bv.stride[i] = 0; }
    }
    for (int acc = 0; acc < 2; acc++) {
        kiln_tensor *y1 = kiln_full(ctx, nd, shape, 0.5f), *y2 = kiln_full(ctx, nd, shape, 0.5f);
        expect_ok(cpu()->binary(ctx, op, &av, &bv, y1, acc), "binary");
        expect_ok(ref()->binary(ctx, op, &av, &bv, y2, acc), "binary");
        ku_expect_close(y1, y2, 0, 0, kiln__binary_name(op));
    }
}

Test(eltwise, cpu_vs_ref_binary_where_copy_axpy)
{
    int64_t s3[3] = {64, 33, 17}, sb[3] = {1, 33, 1}, sr[3] = {1, 1, 17}, big[3] = {8, 100, 50};
    for (int op = 0; op < KILN_BINARY_COUNT; op++) {
        kiln_tensor *a = randt(3, s3, 0.5f, 2), *b = randt(3, sb, 0.5f, 2), *r = randt(3, sr, 0.5f, 2);
        compare_binary((kiln_binary_op)op, a, b, 3, s3);
        compare_binary((kiln_binary_op)op, r, a, 3, s3);
        compare_binary((kiln_binary_op)op, a, a, 3, s3);
        kiln_tensor *bg = randt(3, big, 0.5f, 2), *bg2 = randt(3, big, 0.5f, 2);
        compare_binary((kiln_binary_op)op, bg, bg2, 3, big);
        /* strided: a permuted view against a contiguous tensor of the same shape */
        kiln_tensor *p = kiln_permute(ctx, randt(3, (int64_t[]){50, 8, 100}, 0.5f, 2), (int[]){1, 2, 0});
        compare_binary((kiln_binary_op)op, p, bg2, 3, big);
    }
    /* where with u8 and f32 conditions, broadcast */
    kiln_tensor *c8 = kiln_empty(ctx, KILN_DTYPE_U8, 3, (int64_t[]){64, 1, 17});
    for (int i = 0; i < 64 * 17; i++) ((uint8_t *)c8->data)[i] = (uint8_t)((i * 7) % 3 == 0);
    kiln_tensor *cf = to_f32(c8);
    kiln_tensor *a = randt(3, s3, -1, 1), *b = randt(3, sr, -1, 1);
    kiln_tensor bv = *b;
    bv.shape[0] = 64; bv.stride[0] = 0; bv.shape[1] = 33; bv.stride[1] = 0;
    for (int k = 0; k < 2; k++) {
        kiln_tensor cv = k ? *cf : *c8;
        cv.shape[1] = 33;
        cv.stride[1] = 0;
        kiln_tensor *y1 = kiln_full(ctx, 3, s3, 1.0f), *y2 = kiln_full(ctx, 3, s3, 1.0f);
        expect_ok(cpu()->where(ctx, &cv, a, &bv, y1, k), "where");
        expect_ok(ref()->where(ctx, &cv, a, &bv, y2, k), "where");
        ku_expect_close(y1, y2, 0, 0, "where");
    }
    /* copy of a permuted i64 and f32 tensor; axpy from a strided view */
    kiln_tensor *x = randt(3, (int64_t[]){50, 8, 100}, -1, 1);
    kiln_tensor *xp = kiln_permute(ctx, x, (int[]){2, 0, 1});
    kiln_tensor *c1 = kiln_empty_like(ctx, xp), *c2 = kiln_empty_like(ctx, xp);
    expect_ok(cpu()->copy(ctx, xp, c1), "copy");
    expect_ok(ref()->copy(ctx, xp, c2), "copy");
    ku_expect_close(c1, c2, 0, 0, "copy");
    kiln_tensor *i64 = kiln_empty(ctx, KILN_DTYPE_I64, 2, (int64_t[]){40, 30});
    for (int i = 0; i < 1200; i++) ((int64_t *)i64->data)[i] = (int64_t)i * 1000003;
    kiln_tensor it = *i64;
    it.shape[0] = 30; it.shape[1] = 40; it.stride[0] = 1; it.stride[1] = 30;
    kiln_tensor *d1 = kiln_empty_like(ctx, &it), *d2 = kiln_empty_like(ctx, &it);
    expect_ok(cpu()->copy(ctx, &it, d1), "copy i64");
    expect_ok(ref()->copy(ctx, &it, d2), "copy i64");
    ku_expect_close(d1, d2, 0, 0, "copy i64");
    kiln_tensor *y1 = kiln_full(ctx, 3, xp->shape, 2.0f), *y2 = kiln_full(ctx, 3, xp->shape, 2.0f);
    expect_ok(cpu()->axpy(ctx, -0.5f, xp, y1), "axpy");
    expect_ok(ref()->axpy(ctx, -0.5f, xp, y2), "axpy");
    ku_expect_close(y1, y2, 0, 0, "axpy");
}

/* ---- bad input ---------------------------------------------------------------------------- */

Test(eltwise, bad_input)
{
    kiln_tensor *a = randt(2, (int64_t[]){2, 3}, -1, 1), *b = randt(2, (int64_t[]){4, 3}, -1, 1);
    cr_assert_null(kiln_add(ctx, a, b));
    ku_expect_error("add: shapes (2, 3) and (4, 3) do not broadcast", "add");
    cr_assert_null(kiln_div(ctx, a, randt(1, (int64_t[]){2}, -1, 1)));
    ku_expect_error("div: shapes (2, 3) and (2,) do not broadcast", "div");
    /* a NULL input propagates and keeps the first message */
    cr_assert_null(kiln_relu(ctx, kiln_mul(ctx, a, b)));
    ku_expect_error("mul: shapes (2, 3) and (4, 3)", "chain");

    kiln_tensor *i = kiln_zeros(ctx, KILN_DTYPE_I64, 2, (int64_t[]){2, 3});
    cr_assert_null(kiln_relu(ctx, i));
    ku_expect_error("relu: x must be f32, got i64", "relu dtype");
    cr_assert_null(kiln_sub(ctx, a, i));
    ku_expect_error("sub: b must be f32, got i64", "sub dtype");
    cr_assert_null(kiln_where(ctx, i, a, a));
    ku_expect_error("where: cond must be u8 or f32, got i64", "where dtype");
    kiln_tensor *m = kiln_zeros(ctx, KILN_DTYPE_U8, 1, (int64_t[]){4});
    cr_assert_null(kiln_where(ctx, m, a, a));
    ku_expect_error("where: shapes (4,) and (2, 3) do not broadcast", "where shape");
    cr_assert_null(kiln_where(ctx, kiln_zeros(ctx, KILN_DTYPE_U8, 1, (int64_t[]){3}), a, b));
    ku_expect_error("where: shapes (2, 3) and (4, 3) do not broadcast", "where a/b");
    cr_assert_null(kiln_masked_fill(ctx, a, m, 1.0f));
    ku_expect_error("masked_fill: shapes", "masked_fill shape");
}

Test(eltwise, no_node_without_grad)
{
    kiln_tensor *a = randt(2, (int64_t[]){2, 3}, -1, 1);
    kiln_tensor *y = kiln_exp(ctx, kiln_add(ctx, a, a));
    cr_assert(y && !y->requires_grad && y->node == NULL);
    kiln_tensor *g = away(2, (int64_t[]){2, 3}, 0.1f);
    bool was = kiln_set_grad_enabled(ctx, false);
    y = kiln_tanh(ctx, g);
    cr_assert(y && !y->requires_grad);
    kiln_set_grad_enabled(ctx, was);
}

Test(eltwise, empty_tensors_broadcast)
{
    kiln_tensor *a = kiln_zeros(ctx, KILN_DTYPE_F32, 2, (int64_t[]){0, 1}), *b = away(2, (int64_t[]){1, 5}, 0.5f);
    kiln_set_requires_grad(a, true);
    kiln_tensor *y = kiln_mul(ctx, a, b);
    cr_assert(y && y->shape[0] == 0 && y->shape[1] == 5, "%s", kiln_last_error());
    kiln_tensor *s = kiln_sum(ctx, kiln_sigmoid(ctx, y));
    cr_assert(s && kiln_item(s) == 0.0f);
    expect_ok(kiln_backward(ctx, s), "empty backward");
    cr_assert(a->grad && kiln_numel(a->grad) == 0);
    for (int i = 0; i < 5; i++) cr_assert_eq(kiln_get_flat(b->grad, i), 0.0);
}
