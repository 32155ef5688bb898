/* Tests of softmax, log_softmax and the losses: PyTorch 1.13 parity (fixtures from
 * tests/fixtures/gen_dense.py: every reduction, ignore_index, label smoothing and both
 * together, the (N, C, d...) layout, bce pos_weight), finite-difference gradchecks,
 * optimized vs reference kernels on long rows, and bad input by message.
 * Tolerances: outputs and gradients atol 1e-6 + rtol 1e-5 vs PyTorch (f32 both sides; these
 * check every gradient's value); gradcheck eps 1e-1, atol 1e-4 + rtol 1e-3 (f32 rounding of
 * the Richardson difference quotient dominates; reasons inline). */
#include "util/ku.h"
#include "kernels/dense.h"

#include <math.h>
#include <string.h>

typedef struct case_opts {
    int dim;
    kiln_xent_params xp;
    kiln_reduction r;
} case_opts;

typedef kiln_tensor *(*case_fn)(kiln_ctx *ctx, kiln_tensor **in, const case_opts *o);

static void check_case_tol(const char *kase, const char *const *names, int n, case_fn fn, const case_opts *o,
                           double atol, double rtol)
{
    kiln_ctx *ctx = ku_ctx();
    kiln_st_file *f = ku_fixture("dense");
    kiln_tensor *in[4] = {0};
    for (int i = 0; i < n; i++) in[i] = ku_has(f, kase, names[i]) ? ku_load_grad(ctx, f, kase, names[i]) : NULL;
    kiln_tensor *y = fn(ctx, in, o);
    ku_expect_fixture(ctx, f, kase, "y", y, atol, rtol);
    kiln_tensor *gy = ku_load(ctx, f, kase, "gy");
    cr_assert(kiln_backward_with(ctx, y, gy) == KILN_STATUS_OK, "%s: backward: %s", kase, kiln_last_error());
    for (int i = 0; i < n; i++) {
        char g[64];
        snprintf(g, sizeof g, "grad.%s", names[i]);
        if (ku_has(f, kase, g)) ku_expect_fixture(ctx, f, kase, g, in[i] ? in[i]->grad : NULL, atol, rtol);
    }
    kiln_st_close(f);
    ku_ctx_free(ctx);
}

/* atol 1e-6 + rtol 1e-5: float results of O(1) from exp/log and sums over up to 1000 terms
 * (xe_wide) in another order than PyTorch's: ~sqrt(1000) ulp at worst. */
static void check_case(const char *kase, const char *const *names, int n, case_fn fn, const case_opts *o)
{
    check_case_tol(kase, names, n, fn, o, 1e-6, 1e-5);
}

static kiln_tensor *f_lsm(kiln_ctx *ctx, kiln_tensor **in, const case_opts *o) { return kiln_log_softmax(ctx, in[0], o->dim); }
static kiln_tensor *f_sm(kiln_ctx *ctx, kiln_tensor **in, const case_opts *o) { return kiln_softmax(ctx, in[0], o->dim); }
static kiln_tensor *f_xent(kiln_ctx *ctx, kiln_tensor **in, const case_opts *o)
{
    return kiln_cross_entropy(ctx, in[0], in[1], &o->xp);
}
static kiln_tensor *f_mse(kiln_ctx *ctx, kiln_tensor **in, const case_opts *o) { return kiln_mse_loss(ctx, in[0], in[1], o->r); }
static kiln_tensor *f_l1(kiln_ctx *ctx, kiln_tensor **in, const case_opts *o) { return kiln_l1_loss(ctx, in[0], in[1], o->r); }
static kiln_tensor *f_bce(kiln_ctx *ctx, kiln_tensor **in, const case_opts *o)
{
    return kiln_bce_with_logits(ctx, in[0], in[1], in[2], o->r);
}

static const char *const X[] = {"x"};
static const char *const LT[] = {"logits", "target"};
static const char *const XY[] = {"x", "target", "pos_weight"};

static case_opts xo(int64_t ignore, float smooth, kiln_reduction r)
{
    return (case_opts){.xp = {.ignore_index = ignore, .label_smoothing = smooth, .reduction = r}};
}

/* ---- parity with PyTorch ---------------------------------------------------------------- */

Test(loss_fixture, log_softmax_and_softmax_every_dim)
{
    const char *lsm[] = {"lsm_d0", "lsm_d1", "lsm_d2"}, *sm[] = {"sm_d0", "sm_d1", "sm_d2"};
    for (int d = 0; d < 3; d++) {
        case_opts o = {.dim = d};
        check_case(lsm[d], X, 1, f_lsm, &o);
        check_case(sm[d], X, 1, f_sm, &o);
    }
    case_opts neg = {.dim = -1};
    check_case("lsm_2d", X, 1, f_lsm, &neg);
}

/* Logits at +-1e2..1e4 (gen_dense.py "big" cases): log-probabilities of order 1 must keep
 * float precision, as PyTorch's do. atol/rtol 2e-6: a few ulp of exp, log and a 6-term sum
 * on O(1) results; the old lse = m + log s form was off by up to ulp(1e4)/2 = 4.9e-4. */
Test(loss_fixture, large_logits)
{
    for (int e = 2; e <= 4; e++) {
        char k[32];
        case_opts last = {.dim = -1}, first = {.dim = 0};
        snprintf(k, sizeof k, "lsm_big%d", e);
        check_case_tol(k, X, 1, f_lsm, &last, 2e-6, 2e-6);
        snprintf(k, sizeof k, "sm_big%d", e);
        check_case_tol(k, X, 1, f_sm, &last, 2e-6, 2e-6);
        snprintf(k, sizeof k, "lsm_big%d_d0", e);
        check_case_tol(k, X, 1, f_lsm, &first, 2e-6, 2e-6);
        case_opts o = xo(-100, 0.1f, KILN_REDUCTION_MEAN);
        snprintf(k, sizeof k, "xe_big%d", e);
        check_case_tol(k, LT, 2, f_xent, &o, 2e-6, 2e-6);
        o = xo(-100, 0, KILN_REDUCTION_MEAN);
        snprintf(k, sizeof k, "xe_big%d_ncd", e);
        check_case_tol(k, LT, 2, f_xent, &o, 2e-6, 2e-6);
    }
    case_opts last = {.dim = -1};
    check_case_tol("lsm_three", X, 1, f_lsm, &last, 1e-7, 1e-7); /* -log 3 to the float: -1.0986123 */
}

Test(loss_fixture, cross_entropy_mean)
{
    case_opts o = xo(-100, 0, KILN_REDUCTION_MEAN);
    check_case("xe_mean", LT, 2, f_xent, &o);
    o = kiln_xent_default_params().ignore_index == -100 ? (case_opts){.xp = kiln_xent_default_params()} : o;
    check_case("xe_ignore", LT, 2, f_xent, &o); /* defaults: ignore -100, no smoothing, mean */
}
Test(loss_fixture, cross_entropy_ignore_custom)
{
    case_opts o = xo(7, 0, KILN_REDUCTION_MEAN);
    check_case("xe_ignore7", LT, 2, f_xent, &o);
}
Test(loss_fixture, cross_entropy_smoothing)
{
    case_opts o = xo(-100, 0.1f, KILN_REDUCTION_MEAN);
    check_case("xe_smooth", LT, 2, f_xent, &o);
    o = xo(-100, 0.25f, KILN_REDUCTION_MEAN);
    check_case("xe_smooth_ignore", LT, 2, f_xent, &o);
    o = xo(-100, 0.1f, KILN_REDUCTION_MEAN);
    check_case("xe_wide", LT, 2, f_xent, &o);
}
Test(loss_fixture, cross_entropy_sum_and_none)
{
    case_opts o = xo(-100, 0, KILN_REDUCTION_SUM);
    check_case("xe_sum", LT, 2, f_xent, &o);
    o = xo(-100, 0.2f, KILN_REDUCTION_SUM);
    check_case("xe_sum_smooth", LT, 2, f_xent, &o);
    o = xo(-100, 0, KILN_REDUCTION_NONE);
    check_case("xe_none", LT, 2, f_xent, &o);
    o = xo(-100, 0.3f, KILN_REDUCTION_NONE);
    check_case("xe_none_smooth", LT, 2, f_xent, &o);
}
Test(loss_fixture, cross_entropy_spatial)
{
    case_opts o = xo(-100, 0, KILN_REDUCTION_MEAN);
    check_case("xe_ncd", LT, 2, f_xent, &o);
    o = xo(-100, 0.1f, KILN_REDUCTION_MEAN);
    check_case("xe_ncd_smooth", LT, 2, f_xent, &o);
    o = xo(-100, 0.1f, KILN_REDUCTION_NONE);
    check_case("xe_ncd_none", LT, 2, f_xent, &o);
}
Test(loss_fixture, mse_l1_bce)
{
    const char *red[] = {"mean", "sum", "none"};
    for (int r = 0; r < 3; r++) {
        case_opts o = {.r = (kiln_reduction)r};
        char k[32];
        snprintf(k, sizeof k, "mse_%s", red[r]);
        check_case(k, XY, 2, f_mse, &o);
        snprintf(k, sizeof k, "l1_%s", red[r]);
        check_case(k, XY, 2, f_l1, &o);
        snprintf(k, sizeof k, "bce_%s", red[r]);
        check_case(k, XY, 2, f_bce, &o);
    }
    case_opts o = {.r = KILN_REDUCTION_MEAN};
    check_case("bce_pw", XY, 3, f_bce, &o);
    o.r = KILN_REDUCTION_NONE;
    check_case("bce_pw_none", XY, 3, f_bce, &o);
}

/* ---- finite differences ------------------------------------------------------------------ */

typedef struct gc_user {
    case_opts o;
    kiln_tensor *target, *pw;
    int which; /* 0 lsm, 1 sm, 2 xent, 3 mse, 4 l1, 5 bce */
} gc_user;

static kiln_tensor *gfn(kiln_ctx *ctx, kiln_tensor **in, void *user)
{
    gc_user *u = user;
    switch (u->which) {
    case 0: return kiln_log_softmax(ctx, in[0], u->o.dim);
    case 1: return kiln_softmax(ctx, in[0], u->o.dim);
    case 2: return kiln_cross_entropy(ctx, in[0], u->target, &u->o.xp);
    case 3: return kiln_mse_loss(ctx, in[0], in[1], u->o.r);
    case 4: return kiln_l1_loss(ctx, in[0], in[1], u->o.r);
    default: return kiln_bce_with_logits(ctx, in[0], in[1], u->pw, u->o.r);
    }
}

static kiln_tensor *rnd(kiln_ctx *ctx, int nd, const int64_t *shape, float std)
{
    kiln_tensor *t = kiln_randn(ctx, nd, shape, 0.0f, std);
    cr_assert(t, "randn: %s", kiln_last_error());
    kiln_set_requires_grad(t, true);
    return t;
}

Test(loss_gradcheck, softmax_every_dim)
{
    kiln_ctx *ctx = ku_ctx();
    kiln_tensor *in[1] = {rnd(ctx, 3, (int64_t[]){2, 3, 4}, 1.0f)};
    for (int which = 0; which < 2; which++)
        for (int d = 0; d < 3; d++) {
            gc_user u = {.o = {.dim = d}, .which = which};
            /* guards the wiring; values vs PyTorch in log_softmax_and_softmax_every_dim. eps 0.1:
             * smooth, truncation cancelled to h^4; f32 rounding measured <= 0.03 of the tolerance */
            ku_gradcheck(ctx, gfn, in, 1, &u, 1e-1, 1e-4, 1e-3, which ? "softmax" : "log_softmax");
        }
    ku_ctx_free(ctx);
}

Test(loss_gradcheck, cross_entropy_options)
{
    kiln_ctx *ctx = ku_ctx();
    int64_t t2[] = {1, -100, 3, 0, 2};
    int64_t t3[] = {0, 3, -100, 1, 2, 2};
    kiln_tensor *tg2 = kiln_from_data(ctx, KILN_DTYPE_I64, 1, (int64_t[]){5}, t2);
    kiln_tensor *tg3 = kiln_from_data(ctx, KILN_DTYPE_I64, 2, (int64_t[]){2, 3}, t3);
    kiln_tensor *x2 = rnd(ctx, 2, (int64_t[]){5, 4}, 1.0f), *x3 = rnd(ctx, 3, (int64_t[]){2, 4, 3}, 1.0f);
    const float smooth[] = {0.0f, 0.2f};
    for (int s = 0; s < 2; s++)
        for (int r = 0; r < 3; r++) {
            gc_user u = {.o = xo(-100, smooth[s], (kiln_reduction)r), .target = tg2, .which = 2};
            /* wiring; values vs PyTorch in the cross_entropy_* fixtures. Smooth: eps 0.1, f32
             * rounding of the summed loss dominates (measured <= 0.03 of the tolerance) */
            ku_gradcheck(ctx, gfn, &x2, 1, &u, 1e-1, 1e-4, 1e-3, "cross_entropy (N, C)");
            u.target = tg3;
            ku_gradcheck(ctx, gfn, &x3, 1, &u, 1e-1, 1e-4, 1e-3, "cross_entropy (N, C, d)");
        }
    ku_ctx_free(ctx);
}

Test(loss_gradcheck, pointwise_losses)
{
    kiln_ctx *ctx = ku_ctx();
    kiln_tensor *in[2] = {rnd(ctx, 2, (int64_t[]){3, 4}, 1.0f), rnd(ctx, 2, (int64_t[]){3, 4}, 1.0f)};
    kiln_tensor *pw = kiln_rand(ctx, 1, (int64_t[]){4}, 0.5f, 3.0f);
    /* |x - y| >= 0.3 everywhere: l1's kink at x == y stays farther than the step */
    float *x = in[0]->data, *y = in[1]->data;
    for (int i = 0; i < 12; i++)
        if (fabsf(x[i] - y[i]) < 0.3f) y[i] = x[i] + (y[i] < x[i] ? -0.3f : 0.3f);
    for (int which = 3; which <= 5; which++)
        for (int r = 0; r < 3; r++) {
            gc_user u = {.o = {.r = (kiln_reduction)r}, .which = which};
            /* wiring; values vs PyTorch in mse_l1_bce. eps 0.1 (kink avoided above): f32
             * rounding dominates, measured <= 0.06 of the tolerance */
            ku_gradcheck(ctx, gfn, in, 2, &u, 1e-1, 1e-4, 1e-3, "pointwise loss");
            if (which == 5) {
                u.pw = pw;
                ku_gradcheck(ctx, gfn, in, 2, &u, 1e-1, 1e-4, 1e-3, "bce with pos_weight");
            }
        }
    ku_ctx_free(ctx);
}

/* ---- optimized vs reference kernels on long rows ------------------------------------------ */

static void fill(float *p, int64_t n, uint64_t seed, float scale)
{
    for (int64_t i = 0; i < n; i++) p[i] = (kiln_philox_uniform(seed, (uint64_t)i) * 2.0f - 1.0f) * scale;
}

Test(loss_kernels, softmax_matches_reference)
{
    kiln_ctx *ctx = ku_ctx();
    const kiln_dense_kernels *opt = &kiln__cpu_dense, *ref = &kiln__ref_dense;
    /* the last two shapes again with logits near 1e4 (offset), where lse = m + log s would
     * round to ulp(1e4) = 1e-3 */
    static const int64_t shp[][3] = {{64, 3001, 1}, {3, 17, 40}, {1, 5, 1}, {16, 257, 1}, {3, 17, 40}};
    for (int c = 0; c < 5; c++) {
        int64_t o = shp[c][0], k = shp[c][1], in = shp[c][2], n = o * k * in;
        float *x = kiln_step_alloc(ctx, n * 4), *gy = kiln_step_alloc(ctx, n * 4);
        float *y1 = kiln_step_alloc(ctx, n * 4), *y2 = kiln_step_alloc(ctx, n * 4);
        float *g1 = kiln_step_alloc(ctx, n * 4), *g2 = kiln_step_alloc(ctx, n * 4);
        fill(x, n, 20 + c, 12.0f);
        for (int64_t i = 0; c >= 3 && i < n; i++) x[i] += 1e4f;
        fill(gy, n, 30 + c, 1.0f);
        x[0] = -INFINITY; /* exp(-inf) = 0 */
        for (int lg = 0; lg < 2; lg++) {
            opt->softmax_fwd(ctx, x, y1, o, k, in, lg);
            ref->softmax_fwd(ctx, x, y2, o, k, in, lg);
            if (lg) {
                y1[0] = y2[0] = -1e30f; /* log softmax of -inf: compare the rest */
            }
            ku_expect_arrays(y1, y2, n, 1e-6, 1e-5, lg ? "log_softmax_fwd" : "softmax_fwd");
            fill(g1, n, 40, 1.0f);
            memcpy(g2, g1, n * 4);
            opt->softmax_bwd(ctx, y2, gy, g1, o, k, in, lg);
            ref->softmax_bwd(ctx, y2, gy, g2, o, k, in, lg);
            ku_expect_arrays(g1, g2, n, 1e-5, 1e-5, lg ? "log_softmax_bwd" : "softmax_bwd");
        }
    }
    ku_ctx_free(ctx);
}

Test(loss_kernels, xent_matches_reference)
{
    kiln_ctx *ctx = ku_ctx();
    const kiln_dense_kernels *opt = &kiln__cpu_dense, *ref = &kiln__ref_dense;
    static const int64_t shp[][3] = {{48, 20000, 1}, {4, 7, 33}};
    for (int c = 0; c < 2; c++) {
        int64_t o = shp[c][0], k = shp[c][1], in = shp[c][2], n = o * k * in, np = o * in;
        float *x = kiln_step_alloc(ctx, n * 4), *g1 = kiln_step_alloc(ctx, n * 4), *g2 = kiln_step_alloc(ctx, n * 4);
        float *l1 = kiln_step_alloc(ctx, np * 4), *l2 = kiln_step_alloc(ctx, np * 4);
        float *e1 = kiln_step_alloc(ctx, np * 8), *e2 = kiln_step_alloc(ctx, np * 8); /* (np, 2) max, log sum */
        float *g = kiln_step_alloc(ctx, np * 4);
        int64_t *t = kiln_step_alloc(ctx, np * 8);
        fill(x, n, 50 + c, 8.0f);
        fill(g, np, 60 + c, 1.0f);
        for (int64_t p = 0; p < np; p++) t[p] = p % 5 == 3 ? -100 : (int64_t)(kiln_philox_uniform(70, p) * k) % k;
        for (int s = 0; s < 2; s++) {
            float eps = s ? 0.1f : 0.0f;
            opt->xent_fwd(ctx, x, t, o, k, in, -100, eps, l1, e1);
            ref->xent_fwd(ctx, x, t, o, k, in, -100, eps, l2, e2);
            ku_expect_arrays(l1, l2, np, 1e-5, 1e-5, "xent_fwd loss");
            /* the max is a logit, exact. log sum against double: kexp is ~1e-7 relative and the
             * kernel sums 16 float lanes of at most 64 adds each into a double (<= ~64 ulp =
             * 3.8e-6 relative in s, whatever the vectorisation), so |log s error| <= ~4e-6 absolute at any row length */
            ku_expect_arrays(e1, e2, 2 * np, 5e-6, 0.0, "xent_fwd max, log sum");
            for (int ow = 0; ow < 2; ow++) {
                fill(g1, n, 80, 1.0f);
                memcpy(g2, g1, n * 4);
                opt->xent_bwd(ctx, x, t, e2, g, 1, o, k, in, -100, eps, g1, ow);
                ref->xent_bwd(ctx, x, t, e2, g, 1, o, k, in, -100, eps, g2, ow);
                ku_expect_arrays(g1, g2, n, 1e-6, 1e-5, ow ? "xent_bwd overwrite" : "xent_bwd accumulate");
            }
        }
    }
    ku_ctx_free(ctx);
}

Test(loss_kernels, pointwise_matches_reference)
{
    kiln_ctx *ctx = ku_ctx();
    const kiln_dense_kernels *opt = &kiln__cpu_dense, *ref = &kiln__ref_dense;
    const int64_t n = 100000;
    float *x = kiln_step_alloc(ctx, n * 4), *y = kiln_step_alloc(ctx, n * 4), *pw = kiln_step_alloc(ctx, n * 4);
    float *o1 = kiln_step_alloc(ctx, n * 4), *o2 = kiln_step_alloc(ctx, n * 4);
    float *a1 = kiln_step_alloc(ctx, n * 4), *a2 = kiln_step_alloc(ctx, n * 4);
    float *b1 = kiln_step_alloc(ctx, n * 4), *b2 = kiln_step_alloc(ctx, n * 4);
    fill(x, n, 90, 40.0f);
    fill(y, n, 91, 0.5f);
    for (int64_t i = 0; i < n; i++) y[i] += 0.5f; /* bce targets in [0, 1] */
    fill(pw, n, 92, 2.0f);
    float g = 0.7f;
    for (int k = 0; k < 3; k++)
        for (int w = 0; w < 2; w++) {
            const float *p = w ? pw : NULL;
            double s1 = opt->ploss_fwd(ctx, (kiln_ploss_kind)k, x, y, p, n, o1);
            double s2 = ref->ploss_fwd(ctx, (kiln_ploss_kind)k, x, y, p, n, o2);
            ku_expect_arrays(o1, o2, n, 1e-6, 1e-5, "ploss_fwd");
            cr_assert(fabs(s1 - s2) <= 1e-5 * fabs(s2) + 1e-4, "ploss sum %g vs %g", s1, s2);
            memset(a1, 0, n * 4), memset(a2, 0, n * 4), memset(b1, 0, n * 4), memset(b2, 0, n * 4);
            opt->ploss_bwd(ctx, (kiln_ploss_kind)k, x, y, p, n, &g, 0, a1, b1);
            ref->ploss_bwd(ctx, (kiln_ploss_kind)k, x, y, p, n, &g, 0, a2, b2);
            ku_expect_arrays(a1, a2, n, 1e-6, 1e-5, "ploss_bwd dx");
            ku_expect_arrays(b1, b2, n, 1e-6, 1e-5, "ploss_bwd dy");
        }
    ku_ctx_free(ctx);
}

/* ---- semantics and bad input --------------------------------------------------------------- */

Test(loss_semantics, all_ignored_mean_is_nan_and_grad_zero)
{
    kiln_ctx *ctx = ku_ctx();
    int64_t t[] = {-100, -100};
    kiln_tensor *tg = kiln_from_data(ctx, KILN_DTYPE_I64, 1, (int64_t[]){2}, t);
    kiln_tensor *x = rnd(ctx, 2, (int64_t[]){2, 3}, 1.0f);
    kiln_tensor *l = kiln_cross_entropy(ctx, x, tg, NULL);
    cr_assert(l && isnan(kiln_item(l)), "mean over no targets is NaN as in PyTorch");
    kiln_xent_params p = kiln_xent_default_params();
    p.reduction = KILN_REDUCTION_SUM;
    l = kiln_cross_entropy(ctx, x, tg, &p);
    cr_assert(l && kiln_item(l) == 0.0f);
    cr_assert(kiln_backward(ctx, l) == KILN_STATUS_OK);
    for (int i = 0; i < 6; i++) cr_assert(((float *)x->grad->data)[i] == 0.0f);
    ku_ctx_free(ctx);
}

Test(loss_errors, messages)
{
    kiln_ctx *ctx = ku_ctx();
    kiln_tensor *x = kiln_zeros(ctx, KILN_DTYPE_F32, 2, (int64_t[]){4, 5});
    int64_t t[] = {0, 5, 1, 2};
    kiln_tensor *tg = kiln_from_data(ctx, KILN_DTYPE_I64, 1, (int64_t[]){4}, t);
    cr_assert_null(kiln_cross_entropy(ctx, x, tg, NULL));
    ku_expect_error("cross_entropy: target 5 at position 1 is out of range for 5 classes", "target range");
    kiln_tensor *t32 = kiln_zeros(ctx, KILN_DTYPE_I32, 1, (int64_t[]){4});
    cr_assert_null(kiln_cross_entropy(ctx, x, t32, NULL));
    ku_expect_error("cross_entropy: target must be i64 class indices, got i32", "target dtype");
    kiln_tensor *tf = kiln_zeros(ctx, KILN_DTYPE_F32, 1, (int64_t[]){4});
    cr_assert_null(kiln_cross_entropy(ctx, x, tf, NULL));
    ku_expect_error("target must be i64 class indices, got f32", "float target");
    kiln_tensor *t3 = kiln_zeros(ctx, KILN_DTYPE_I64, 1, (int64_t[]){3});
    cr_assert_null(kiln_cross_entropy(ctx, x, t3, NULL));
    ku_expect_error("cross_entropy: target has shape (3,), expected (4,) for logits (4, 5)", "target shape");
    kiln_xent_params p = kiln_xent_default_params();
    p.label_smoothing = 1.5f;
    kiln_tensor *t0 = kiln_zeros(ctx, KILN_DTYPE_I64, 1, (int64_t[]){4});
    cr_assert_null(kiln_cross_entropy(ctx, x, t0, &p));
    ku_expect_error("label_smoothing 1.5 is outside [0, 1]", "smoothing range");

    kiln_tensor *y = kiln_zeros(ctx, KILN_DTYPE_F32, 2, (int64_t[]){4, 6});
    cr_assert_null(kiln_mse_loss(ctx, x, y, KILN_REDUCTION_MEAN));
    ku_expect_error("mse_loss: y has shape (4, 6), expected (4, 5) to match x", "mse shape");
    cr_assert_null(kiln_l1_loss(ctx, x, tg, KILN_REDUCTION_MEAN));
    ku_expect_error("l1_loss: y must be f32, got i64", "l1 dtype");
    kiln_tensor *pw = kiln_zeros(ctx, KILN_DTYPE_F32, 1, (int64_t[]){3});
    cr_assert_null(kiln_bce_with_logits(ctx, x, x, pw, KILN_REDUCTION_MEAN));
    ku_expect_error("bce_with_logits: shapes (4, 5) and (3,) do not broadcast", "pos_weight shape");
    cr_assert_null(kiln_log_softmax(ctx, x, 2));
    ku_expect_error("log_softmax: dim 2 out of range for a 2-d tensor", "softmax dim");
    ku_ctx_free(ctx);
}
