/* kiln_batch_norm: parity with torch.nn.functional.batch_norm (tests/fixtures/conv.safetensors,
 * written by gen_conv.py) for 1d (N, C), (N, C, L) and 2d inputs in train mode (output,
 * gradients and the updated running statistics) and eval mode, with and without weight and
 * bias; finite differences; CPU (OpenMP) kernels against the reference loops, NCHW and
 * channels-last (g.cl); kiln_batch_norm on a channels-last x against the same x contiguous
 * (y, its layout, running statistics, gradients, accumulation into existing gradients);
 * argument errors. Batch norm + ReLU (kiln_bn_geom.relu, kiln_batch_norm_relu): the CPU
 * kernels against the reference as above, and the op against kiln_relu(kiln_batch_norm())
 * with many values of bn(x) exactly 0 (the mask must be y > 0, as threshold_backward).
 *
 * Tolerances (|got - ref| <= atol + rtol*|ref|):
 *   vs PyTorch: atol 1e-5, rtol 1e-5 for y and running stats (f32 both sides, the batch
 *   statistics summed in other orders); atol 2e-5, rtol 1e-4 for gradients (their
 *   reductions cancel, so absolute error is what stays small);
 *   CPU vs reference kernels: atol 2e-5, rtol 1e-4 (OpenMP chunks vs one loop in double;
 *   1e-4, 1e-4 for gw, gb, sums over every N*H*W position);
 *   channels-last vs contiguous: atol 1e-5, rtol 1e-5 for y and running stats, atol 2e-5,
 *   rtol 1e-4 for gradients (the same sums in NHWC order, as against PyTorch);
 *   finite differences: eps 0.1, atol 1e-4, rtol 1e-3 (f32 rounding of the outputs dominates);
 *   kiln_batch_norm_relu vs kiln_relu(kiln_batch_norm()): y and running stats exact (the
 *   same kernel arithmetic), gradients atol 1e-6, rtol 1e-5. */
#include "util/ku.h"
#include "autograd/tape.h"
#include "kernels/conv.h"

#include <math.h>
#include <string.h>

static kiln_ctx *ctx;
static kiln_st_file *fx;
static void setup(void) { ctx = ku_ctx(); fx = ku_fixture("conv"); }
static void teardown(void) { kiln_st_close(fx); ku_ctx_free(ctx); }
TestSuite(batch_norm, .init = setup, .fini = teardown);

static void check_fixture(const char *kase)
{
    kiln_tensor *p = ku_load(ctx, fx, kase, "p"); /* [train, momentum, eps] */
    bool train = kiln_get_flat(p, 0) != 0;
    float momentum = (float)kiln_get_flat(p, 1), eps = (float)kiln_get_flat(p, 2);
    kiln_tensor *x = ku_load_grad(ctx, fx, kase, "x");
    kiln_tensor *w = ku_has(fx, kase, "w") ? ku_load_grad(ctx, fx, kase, "w") : NULL;
    kiln_tensor *b = ku_has(fx, kase, "b") ? ku_load_grad(ctx, fx, kase, "b") : NULL;
    kiln_tensor *rm = ku_load(ctx, fx, kase, "rm"), *rv = ku_load(ctx, fx, kase, "rv");
    kiln_tensor *y = kiln_batch_norm(ctx, x, w, b, rm, rv, train, momentum, eps);
    cr_assert(y != NULL, "%s: batch_norm failed: %s", kase, kiln_last_error());
    ku_expect_fixture(ctx, fx, kase, "y", y, 1e-5, 1e-5);
    if (train) {
        ku_expect_fixture(ctx, fx, kase, "rm_out", rm, 1e-5, 1e-5);
        ku_expect_fixture(ctx, fx, kase, "rv_out", rv, 1e-5, 1e-5);
    } else {
        ku_expect_fixture(ctx, fx, kase, "rm", rm, 0, 0);
        ku_expect_fixture(ctx, fx, kase, "rv", rv, 0, 0);
    }
    cr_assert_eq(kiln_backward_with(ctx, y, ku_load(ctx, fx, kase, "gy")), KILN_STATUS_OK, "%s", kiln_last_error());
    ku_expect_fixture(ctx, fx, kase, "grad.x", x->grad, 2e-5, 1e-4);
    if (w) ku_expect_fixture(ctx, fx, kase, "grad.w", w->grad, 2e-5, 1e-4);
    if (b) ku_expect_fixture(ctx, fx, kase, "grad.b", b->grad, 2e-5, 1e-4);
}

Test(batch_norm, torch_1d_nc_train) { check_fixture("bn1d_nc_train"); }
Test(batch_norm, torch_1d_ncl_train_no_affine) { check_fixture("bn1d_ncl_train"); }
Test(batch_norm, torch_2d_train) { check_fixture("bn2d_train"); }
Test(batch_norm, torch_2d_train_no_affine) { check_fixture("bn2d_train_noaffine"); }
Test(batch_norm, torch_2d_32_channels_train) { check_fixture("bn2d_c32_train"); }
Test(batch_norm, torch_2d_eval) { check_fixture("bn2d_eval"); }
Test(batch_norm, torch_2d_eval_no_affine) { check_fixture("bn2d_eval_noaffine"); }
Test(batch_norm, torch_1d_nc_eval) { check_fixture("bn1d_nc_eval"); }

/* Train mode without running statistics normalises the same and touches nothing else. */
Test(batch_norm, train_without_running_stats)
{
    const char *kase = "bn2d_train";
    kiln_tensor *p = ku_load(ctx, fx, kase, "p");
    kiln_tensor *x = ku_load(ctx, fx, kase, "x"), *w = ku_load(ctx, fx, kase, "w"), *b = ku_load(ctx, fx, kase, "b");
    kiln_tensor *y = kiln_batch_norm(ctx, x, w, b, NULL, NULL, true, 0.1f, (float)kiln_get_flat(p, 2));
    ku_expect_fixture(ctx, fx, kase, "y", y, 1e-5, 1e-5);
}

/* Only the weight and bias need grad (x is data). */
Test(batch_norm, param_grads_only)
{
    for (int k = 0; k < 2; k++) {
        const char *kase = k ? "bn2d_eval" : "bn2d_train";
        kiln_tensor *p = ku_load(ctx, fx, kase, "p");
        kiln_tensor *x = ku_load(ctx, fx, kase, "x"), *w = ku_load_grad(ctx, fx, kase, "w");
        kiln_tensor *b = ku_load_grad(ctx, fx, kase, "b");
        kiln_tensor *y = kiln_batch_norm(ctx, x, w, b, ku_load(ctx, fx, kase, "rm"), ku_load(ctx, fx, kase, "rv"),
                                         kiln_get_flat(p, 0) != 0, (float)kiln_get_flat(p, 1), (float)kiln_get_flat(p, 2));
        cr_assert_eq(kiln_backward_with(ctx, y, ku_load(ctx, fx, kase, "gy")), KILN_STATUS_OK, "%s", kiln_last_error());
        cr_assert_null(x->grad);
        ku_expect_fixture(ctx, fx, kase, "grad.w", w->grad, 2e-5, 1e-4);
        ku_expect_fixture(ctx, fx, kase, "grad.b", b->grad, 2e-5, 1e-4);
    }
}

Test(batch_norm, grads_accumulate)
{
    const char *kase = "bn2d_c32_train";
    kiln_tensor *p = ku_load(ctx, fx, kase, "p");
    kiln_tensor *x = ku_load_grad(ctx, fx, kase, "x"), *w = ku_load_grad(ctx, fx, kase, "w");
    x->grad = kiln_full(ctx, x->ndim, x->shape, 0.5f);
    kiln_tensor *y = kiln_batch_norm(ctx, x, w, ku_load(ctx, fx, kase, "b"), ku_load(ctx, fx, kase, "rm"),
                                     ku_load(ctx, fx, kase, "rv"), true, (float)kiln_get_flat(p, 1),
                                     (float)kiln_get_flat(p, 2));
    cr_assert_eq(kiln_backward_with(ctx, y, ku_load(ctx, fx, kase, "gy")), KILN_STATUS_OK, "%s", kiln_last_error());
    ku_expect_close(x->grad, kiln_add_scalar(ctx, ku_load(ctx, fx, kase, "grad.x"), 0.5f), 2e-5, 1e-4,
                    "accumulated grad.x");
}

/* ---- finite differences ----------------------------------------------------------------- */

typedef struct gc_user {
    bool train;
    kiln_tensor *rm, *rv;
} gc_user;

static kiln_tensor *gc_fn(kiln_ctx *c, kiln_tensor **in, void *user)
{
    gc_user *u = user;
    return kiln_batch_norm(c, in[0], in[1], in[2], u->rm, u->rv, u->train, 0.1f, 1e-5f);
}

static kiln_tensor *rnd(int ndim, const int64_t *shape, float mean, float std, bool grad)
{
    kiln_tensor *t = kiln_randn(ctx, ndim, shape, mean, std);
    cr_assert(t != NULL, "%s", kiln_last_error());
    kiln_set_requires_grad(t, grad);
    return t;
}

Test(batch_norm, gradcheck)
{
    const int64_t shapes[3][4] = {{6, 3}, {3, 2, 4}, {2, 3, 3, 2}};
    for (int s = 0; s < 3; s++)
        for (int train = 0; train < 2; train++)
            for (int affine = 0; affine < 2; affine++) {
                kiln_mark m = kiln_step_mark(ctx);
                int nd = s + 2;
                const int64_t c[1] = {shapes[s][1]};
                gc_user u = {.train = train, .rm = rnd(1, c, 0.0f, 0.3f, false), .rv = kiln_rand(ctx, 1, c, 0.5f, 1.5f)};
                kiln_tensor *in[3] = {rnd(nd, shapes[s], 0.5f, 2.0f, true),
                                      affine ? rnd(1, c, 1.0f, 0.5f, true) : NULL,
                                      affine ? rnd(1, c, 0.0f, 1.0f, true) : NULL};
                char what[64];
                snprintf(what, sizeof what, "batch_norm %dd train %d affine %d", nd, train, affine);
                /* wiring; gradient values vs PyTorch in the fixture tests. eps 0.1: train mode
                 * is smooth (truncation cancelled to h^4), eval mode linear; f32 rounding of the
                 * normalised outputs dominates, measured <= 0.05 of the tolerance */
                ku_gradcheck(ctx, gc_fn, in, 3, &u, 1e-1, 1e-4, 1e-3, what);
                kiln_step_rewind(ctx, m);
            }
}

/* ---- CPU kernels vs reference loops -------------------------------------------------------- */

static float *rand_buf(int64_t n, float mean, float std)
{
    const int64_t s[1] = {n};
    kiln_tensor *t = kiln_randn(ctx, 1, s, mean, std);
    cr_assert(t != NULL);
    return t->data;
}

static void expect_buf(const float *got, const float *want, int64_t n, double atol, double rtol, const char *what)
{
    kiln_tensor a, b;
    const int64_t s[1] = {n};
    kiln_tensor_wrap(&a, KILN_DTYPE_F32, 1, s, (void *)got);
    kiln_tensor_wrap(&b, KILN_DTYPE_F32, 1, s, (void *)want);
    ku_expect_close(&a, &b, atol, rtol, what);
}

#define GEOM(n_, c_, s_, cl_) {.n = (n_), .c = (c_), .s = (s_), .cl = (cl_)}

/* The channel of element i of a (N, C, S) or channels-last (N*S, C) buffer. */
static int64_t channel_of(const kiln_bn_geom *g, int64_t i) { return g->cl ? i % g->c : i / g->s % g->c; }

/* relu: ties and a safe margin for the comparison of two kernel sets. Channels c % 3 == 0
 * hold 0.5 (with bias 0 and, in eval mode, running mean 0.5), so bn(x) is exactly 0 there
 * in both (0.5 * k is exact); every other value whose bn(x) (the reference's, before the
 * ReLU) lies within 1e-4 of 0 is moved to about +-1e-2, so that rounding differences
 * between the kernels cannot flip the mask. Train mode repeats: the statistics move with x. */
static void relu_inputs(kiln_bn_geom g, bool train, float *x, float *w, float *b, float *rm, const float *rv)
{
    const int64_t n = g.n * g.c * g.s;
    for (int64_t i = 0; i < n; i++)
        if (channel_of(&g, i) % 3 == 0) x[i] = 0.5f;
    for (int64_t c = 0; c < g.c; c += 3) {
        rm[c] = 0.5f;
        if (b) b[c] = 0.0f;
    }
    if (w) /* away from 0, so that moving y moves x little */
        for (int64_t c = 0; c < g.c; c++)
            if (fabsf(w[c]) < 0.25f) w[c] = w[c] < 0 ? -0.25f : 0.25f;
    g.relu = false;
    float *y = rand_buf(n, 0, 1), *mean = rand_buf(g.c, 0, 1), *var = rand_buf(g.c, 0, 1);
    int64_t moved = 1;
    for (int it = 0; it < 10 && moved; it++) {
        memcpy(mean, rm, (size_t)g.c * sizeof(float)), memcpy(var, rv, (size_t)g.c * sizeof(float));
        cr_assert_eq(kiln__ref_batch_norm_fwd(ctx, &g, train, 1e-5f, x, w, b, mean, var, y), KILN_STATUS_OK);
        moved = 0;
        for (int64_t i = 0; i < n; i++) {
            const int64_t c = channel_of(&g, i);
            if (y[i] == 0.0f || fabsf(y[i]) >= 1e-4f) continue;
            const float k = (w ? w[c] : 1.0f) / sqrtf(var[c] + 1e-5f);
            x[i] += ((y[i] > 0 ? 1e-2f : -1e-2f) - y[i]) / k;
            moved++;
        }
    }
    cr_assert_eq(moved, 0, "relu inputs: values near the threshold keep moving");
}

static void compare_kernels(kiln_bn_geom g, bool train, bool affine, bool relu)
{
    int64_t n = g.n * g.c * g.s;
    float *x = rand_buf(n, 1.0f, 3.0f), *gy = rand_buf(n, 0.0f, 1.0f);
    float *w = affine ? rand_buf(g.c, 1.0f, 0.5f) : NULL, *b = affine ? rand_buf(g.c, 0.0f, 1.0f) : NULL;
    const kiln_conv_kernels *K[2] = {&kiln__cpu_conv, &kiln__ref_conv};
    float *y[2], *mean[2], *var[2], *gx[2], *gw[2], *gb[2];
    float *rm = rand_buf(g.c, 0.0f, 1.0f), *rv = rand_buf(g.c, 2.0f, 0.3f), *init = rand_buf(n, 0.0f, 1.0f);
    if (relu) relu_inputs(g, train, x, w, b, rm, rv);
    g.relu = relu, g.b = relu ? b : NULL;
    char what[160];
    for (int acc = 0; acc < 2; acc++) {
        for (int k = 0; k < 2; k++) {
            y[k] = rand_buf(n, 0, 1), gx[k] = rand_buf(n, 0, 1);
            mean[k] = rand_buf(g.c, 0, 1), var[k] = rand_buf(g.c, 0, 1);
            gw[k] = rand_buf(g.c, 0, 1), gb[k] = rand_buf(g.c, 0, 1);
            memcpy(gx[k], init, (size_t)n * sizeof(float));
            memset(gw[k], 0, (size_t)g.c * sizeof(float));
            memset(gb[k], 0, (size_t)g.c * sizeof(float));
            if (!train) memcpy(mean[k], rm, (size_t)g.c * sizeof(float)), memcpy(var[k], rv, (size_t)g.c * sizeof(float));
            cr_assert_eq(K[k]->batch_norm_fwd(ctx, &g, train, 1e-5f, x, w, b, mean[k], var[k], y[k]), KILN_STATUS_OK,
                         "%s", kiln_last_error());
            cr_assert_eq(K[k]->batch_norm_bwd(ctx, &g, train, 1e-5f, x, w, mean[k], var[k], gy, gx[k], acc,
                                              affine ? gw[k] : NULL, affine ? gb[k] : NULL),
                         KILN_STATUS_OK, "%s", kiln_last_error());
        }
        snprintf(what, sizeof what, "bn (%lld, %lld, %lld) cl %d train %d affine %d relu %d acc %d", (long long)g.n,
                 (long long)g.c, (long long)g.s, g.cl, train, affine, relu, acc);
        expect_buf(y[0], y[1], n, 2e-5, 1e-4, what);
        expect_buf(mean[0], mean[1], g.c, 2e-5, 1e-4, what);
        expect_buf(var[0], var[1], g.c, 2e-5, 1e-4, what);
        expect_buf(gx[0], gx[1], n, 2e-5, 1e-4, what);
        expect_buf(gw[0], gw[1], g.c, 1e-4, 1e-4, what);
        expect_buf(gb[0], gb[1], g.c, 1e-4, 1e-4, what);
        if (relu) { /* the ties: y and gx exactly 0 in channel 0 (gx: the mask is y > 0, not >= 0) */
            for (int64_t i = 0; i < n; i++)
                if (channel_of(&g, i) == 0) {
                    cr_assert(y[0][i] == 0.0f, "%s: y[%lld] = %g at a tie", what, (long long)i, (double)y[0][i]);
                    if (!acc)
                        cr_assert(gx[0][i] == 0.0f, "%s: gx[%lld] = %g at a tie", what, (long long)i, (double)gx[0][i]);
                }
            if (affine) cr_assert(gb[0][0] == 0.0f, "%s: gb[0] = %g at a tie", what, (double)gb[0][0]);
        }
    }
}

Test(batch_norm, cpu_matches_reference)
{
    const kiln_bn_geom geoms[] = {GEOM(16, 64, 1, false), GEOM(4, 16, 37, false), GEOM(8, 32, 64, false),
                                  GEOM(3, 5, 7, false)};
    for (size_t i = 0; i < sizeof geoms / sizeof *geoms; i++)
        for (int train = 0; train < 2; train++)
            for (int affine = 0; affine < 2; affine++) compare_kernels(geoms[i], train, affine, false);
}

Test(batch_norm, relu_cpu_matches_reference)
{
    const kiln_bn_geom geoms[] = {GEOM(16, 64, 1, false), GEOM(4, 16, 37, false), GEOM(8, 32, 64, false),
                                  GEOM(3, 5, 7, false), GEOM(128, 8, 196, false)};
    for (size_t i = 0; i < sizeof geoms / sizeof *geoms; i++)
        for (int train = 0; train < 2; train++)
            for (int affine = 0; affine < 2; affine++) compare_kernels(geoms[i], train, affine, true);
}

/* Channels-last (g.cl): x, y, gx, gy are (N*S, C). The random buffers are just read in that
 * layout; the reference transposes them to NCHW. Geometries cover one thread and two, the
 * wide rows of batchnorm_nhwc.c from W = 16 (C = 8, 16) to 1200 (C = 600), partial row
 * groups and blocks, and a short last row (C = 5: W = 80, C = 33: W = 528). */
Test(batch_norm, cpu_matches_reference_channels_last)
{
    const kiln_bn_geom geoms[] = {GEOM(128, 8, 196, true), GEOM(4, 5, 21, true),  GEOM(2, 64, 1, true),
                                  GEOM(3, 16, 4, true),    GEOM(50, 5, 99, true), GEOM(7, 33, 99, true),
                                  GEOM(2, 600, 16, true)};
    for (size_t i = 0; i < sizeof geoms / sizeof *geoms; i++)
        for (int train = 0; train < 2; train++)
            for (int affine = 0; affine < 2; affine++) compare_kernels(geoms[i], train, affine, false);
}

/* The same geometries with the ReLU: (128, 8, 14x14) and (3, 16, 2x2) take the register
 * paths (W = 16), C = 5 and 33 the short last row, C = 600 the coefficient tables. */
Test(batch_norm, relu_cpu_matches_reference_channels_last)
{
    const kiln_bn_geom geoms[] = {GEOM(128, 8, 196, true), GEOM(4, 5, 21, true),  GEOM(2, 64, 1, true),
                                  GEOM(3, 16, 4, true),    GEOM(50, 5, 99, true), GEOM(7, 33, 99, true),
                                  GEOM(2, 600, 16, true),  GEOM(128, 32, 16, true)};
    for (size_t i = 0; i < sizeof geoms / sizeof *geoms; i++)
        for (int train = 0; train < 2; train++)
            for (int affine = 0; affine < 2; affine++) compare_kernels(geoms[i], train, affine, true);
}

/* Statistics of data far from zero (mean 1000, std 1; the first rows, one image's border,
 * at 1010): the one-pass variance of the channels-last kernel must not cancel. y = x * k +
 * sh loses |x| * 2^-24 in both layouts, hence its atol. */
Test(batch_norm, statistics_far_from_zero)
{
    for (int cl = 0; cl < 2; cl++) {
        const kiln_bn_geom g = GEOM(64, 16, 49, cl);
        const int64_t n = g.n * g.c * g.s;
        float *x = rand_buf(n, 1000.0f, 1.0f), *y[2], mean[2][16], var[2][16];
        for (int64_t i = 0; i < 16 * g.c; i++) x[i] = 1010.0f; /* rows 0..15 (cl) or part of (0, 0, :) */
        const kiln_conv_kernels *K[2] = {&kiln__cpu_conv, &kiln__ref_conv};
        for (int k = 0; k < 2; k++) {
            y[k] = rand_buf(n, 0, 1);
            cr_assert_eq(K[k]->batch_norm_fwd(ctx, &g, true, 1e-5f, x, NULL, NULL, mean[k], var[k], y[k]),
                         KILN_STATUS_OK);
        }
        const char *what = cl ? "far from zero, channels-last" : "far from zero, NCHW";
        /* mean: 1e-6 relative, f32 results of sums in another order; var (~1, from values
         * whose squares are ~1e6): 1e-4 relative, where a one-pass sum of squares in f32
         * would lose ~1e6 * 2^-24 = 0.06 of it */
        expect_buf(mean[0], mean[1], g.c, 0, 1e-6, what);
        expect_buf(var[0], var[1], g.c, 0, 1e-4, what);
        expect_buf(y[0], y[1], n, 3e-4, 1e-4, what);
    }
}

/* The reference's channels-last entries are its NCHW loops on transposed data: checked
 * here by hand on one element so that both sides of the test above cannot share a
 * transposition mistake. (N, C, S) = (2, 3, 2): NHWC element (n*S + i)*C + c. */
Test(batch_norm, reference_channels_last_layout)
{
    const kiln_bn_geom g = GEOM(2, 3, 2, true);
    float x[12], y[12], mean[3], var[3];
    for (int n = 0; n < 2; n++)
        for (int i = 0; i < 2; i++)
            for (int c = 0; c < 3; c++) x[(n * 2 + i) * 3 + c] = (float)(c * 10 + n * 2 + i); /* channel c: 10c + 0..3 */
    cr_assert_eq(kiln__ref_batch_norm_fwd(ctx, &g, true, 0.0f, x, NULL, NULL, mean, var, y), KILN_STATUS_OK);
    for (int c = 0; c < 3; c++) { /* small integers: exact but for the sqrt, 1e-5 is a floor */
        cr_expect_float_eq(mean[c], 10.0f * c + 1.5f, 1e-5, "mean[%d] %g", c, (double)mean[c]);
        cr_expect_float_eq(var[c], 1.25f, 1e-5, "var[%d] %g", c, (double)var[c]);
        /* n = 1, i = 1 is the largest value of each channel: (3 - 1.5) / sqrt(1.25) */
        cr_expect_float_eq(y[3 * 3 + c], 1.5f / sqrtf(1.25f), 1e-5, "y[1, %d, 1] %g", c, (double)y[9 + c]);
    }
    float cy[12], cmean[3], cvar[3];
    cr_assert_eq(kiln__cpu_conv.batch_norm_fwd(ctx, &g, true, 0.0f, x, NULL, NULL, cmean, cvar, cy), KILN_STATUS_OK);
    expect_buf(cy, y, 12, 1e-5, 1e-5, "cpu channels-last (2, 3, 2)");
}

/* kiln_batch_norm on kiln_to_channels_last(x) against the same x contiguous: y (and that it
 * stays channels-last), the running statistics, and the gradients of x (when xgrad),
 * weight and bias from the backward of sum(y * r). */
static void check_channels_last(const int64_t shape[4], bool train, bool affine, bool xgrad)
{
    kiln_mark mk = kiln_step_mark(ctx);
    const int64_t c[1] = {shape[1]};
    kiln_tensor *x = rnd(4, shape, 0.5f, 2.0f, xgrad), *r = rnd(4, shape, 0.0f, 1.0f, false);
    kiln_tensor *w = affine ? rnd(1, c, 1.0f, 0.5f, true) : NULL, *b = affine ? rnd(1, c, 0.0f, 1.0f, true) : NULL;
    kiln_tensor *rm[2], *rv[2];
    rm[0] = rnd(1, c, 0.0f, 0.3f, false), rv[0] = kiln_rand(ctx, 1, c, 0.5f, 1.5f);
    rm[1] = kiln_add_scalar(ctx, rm[0], 0.0f), rv[1] = kiln_add_scalar(ctx, rv[0], 0.0f); /* copies */
    char what[160];
    snprintf(what, sizeof what, "channels-last (%lld, %lld, %lld, %lld) train %d affine %d x grad %d",
             (long long)shape[0], (long long)shape[1], (long long)shape[2], (long long)shape[3], train, affine, xgrad);

    kiln_tensor *y0 = kiln_batch_norm(ctx, x, w, b, rm[0], rv[0], train, 0.1f, 1e-5f);
    cr_assert(y0 != NULL, "%s: %s", what, kiln_last_error());
    cr_assert_eq(kiln_backward(ctx, kiln_sum(ctx, kiln_mul(ctx, y0, r))), KILN_STATUS_OK, "%s: %s", what,
                 kiln_last_error());
    kiln_tensor *gx0 = x->grad, *gw0 = affine ? w->grad : NULL, *gb0 = affine ? b->grad : NULL;
    if (affine) w->grad = b->grad = NULL;

    /* a leaf, so that its gradient is kept and can be checked for layout */
    kiln_tensor *xc = kiln_to_channels_last(ctx, kiln_detach(ctx, x));
    cr_assert(xc != NULL, "%s: %s", what, kiln_last_error());
    cr_assert(kiln_is_channels_last(xc) && !kiln_is_contiguous(xc), "%s: input is not channels-last", what);
    kiln_set_requires_grad(xc, xgrad);
    kiln_tensor *y1 = kiln_batch_norm(ctx, xc, w, b, rm[1], rv[1], train, 0.1f, 1e-5f);
    cr_assert(y1 != NULL, "%s: %s", what, kiln_last_error());
    cr_assert(kiln_is_channels_last(y1) && !kiln_is_contiguous(y1), "%s: y is not channels-last", what);
    ku_expect_close(kiln_contiguous(ctx, y1), y0, 1e-5, 1e-5, what);
    ku_expect_close(rm[1], rm[0], 1e-5, 1e-5, what);
    ku_expect_close(rv[1], rv[0], 1e-5, 1e-5, what);
    cr_assert_eq(kiln_backward(ctx, kiln_sum(ctx, kiln_mul(ctx, y1, r))), KILN_STATUS_OK, "%s: %s", what,
                 kiln_last_error());
    if (xgrad) {
        cr_assert(xc->grad && kiln_is_channels_last(xc->grad), "%s: grad of the channels-last input is not", what);
        ku_expect_close(kiln_contiguous(ctx, xc->grad), gx0, 2e-5, 1e-4, what);
    } else {
        cr_assert_null(xc->grad, "%s", what);
    }
    if (affine) {
        ku_expect_close(w->grad, gw0, 2e-5, 1e-4, what);
        ku_expect_close(b->grad, gb0, 2e-5, 1e-4, what);
    }
    kiln_step_rewind(ctx, mk);
}

Test(batch_norm, channels_last_matches_contiguous)
{
    const int64_t shapes[][4] = {{128, 8, 14, 14}, {4, 5, 3, 7}, {3, 16, 2, 2}, {16, 32, 4, 4}, {2, 600, 3, 5}};
    for (size_t i = 0; i < sizeof shapes / sizeof *shapes; i++)
        for (int train = 0; train < 2; train++) {
            for (int affine = 0; affine < 2; affine++) check_channels_last(shapes[i], train, affine, true);
            check_channels_last(shapes[i], train, true, false); /* only weight and bias need grad */
        }
}

/* (N, C, 1, 1) channels-last strides are also contiguous ones: the NCHW path, y contiguous. */
Test(batch_norm, channels_last_1x1_is_contiguous)
{
    const int64_t s[4] = {2, 64, 1, 1};
    kiln_tensor *x = kiln_to_channels_last(ctx, rnd(4, s, 0.0f, 1.0f, false));
    cr_assert(x && kiln_is_contiguous(x));
    kiln_tensor *y = kiln_batch_norm(ctx, x, NULL, NULL, NULL, NULL, true, 0.1f, 1e-5f);
    cr_assert(y && kiln_is_contiguous(y), "%s", kiln_last_error());
    ku_expect_close(y, kiln_batch_norm(ctx, kiln_contiguous(ctx, x), NULL, NULL, NULL, NULL, true, 0.1f, 1e-5f),
                    1e-6, 1e-6, "(2, 64, 1, 1)");
}

/* An existing gradient on a channels-last leaf is added to, whether it is channels-last
 * (the kernel accumulates) or contiguous (set by the user: added through a copy). */
Test(batch_norm, channels_last_grads_accumulate)
{
    const int64_t s[4] = {8, 16, 5, 6}, c[1] = {16};
    kiln_tensor *x = rnd(4, s, 0.5f, 2.0f, true), *r = rnd(4, s, 0.0f, 1.0f, false);
    kiln_tensor *w = rnd(1, c, 1.0f, 0.5f, false);
    kiln_tensor *y0 = kiln_batch_norm(ctx, x, w, NULL, NULL, NULL, true, 0.1f, 1e-5f);
    cr_assert_eq(kiln_backward_with(ctx, y0, r), KILN_STATUS_OK, "%s", kiln_last_error());
    kiln_tensor *want = kiln_add_scalar(ctx, x->grad, 0.5f);
    for (int layout = 0; layout < 2; layout++) {
        kiln_tensor *xl = kiln_to_channels_last(ctx, kiln_detach(ctx, x));
        cr_assert(xl && kiln_is_channels_last(xl) && !kiln_is_contiguous(xl));
        kiln_set_requires_grad(xl, true);
        if (layout) {
            xl->grad = kiln_full(ctx, 4, s, 0.5f);
        } else {
            xl->grad = kiln_empty_channels_last(ctx, s);
            for (int64_t i = 0; i < kiln_numel(xl); i++) ((float *)xl->grad->data)[i] = 0.5f;
        }
        kiln_tensor *y = kiln_batch_norm(ctx, xl, w, NULL, NULL, NULL, true, 0.1f, 1e-5f);
        cr_assert_eq(kiln_backward_with(ctx, y, r), KILN_STATUS_OK, "%s", kiln_last_error());
        ku_expect_close(xl->grad, want, 2e-5, 1e-4, layout ? "contiguous grad" : "channels-last grad");
    }
}

/* ---- batch norm + ReLU as one op ------------------------------------------------------------- */

/* kiln_batch_norm_relu against kiln_relu(kiln_batch_norm()) on copies of the same x (nd-D,
 * channels-last when cl), weight, bias and running statistics: y (exactly, and its layout),
 * the running statistics, and the gradients of x (when xgrad), weight and bias (when
 * pgrad; else frozen) from the backward of sum(y * r). Ties: channels c % 3 == 0 hold 0.5 (train: all of the channel;
 * eval: the first half of the batch, with running mean 0.5) and bias 0, so bn(x) is
 * exactly 0 there; checked to be there, so that a mask of y >= 0 would fail. */
static void check_fused(int nd, const int64_t *shape, bool cl, bool train, bool affine, bool xgrad, bool pgrad)
{
    kiln_mark mk = kiln_step_mark(ctx);
    const int64_t C = shape[1], c[1] = {C};
    kiln_tensor *base = rnd(nd, shape, 0.3f, 2.0f, false); /* contiguous */
    kiln_tensor *w = rnd(1, c, 1.0f, 0.5f, false), *b = rnd(1, c, 0.2f, 1.0f, false);
    kiln_tensor *rm = rnd(1, c, 0.0f, 0.3f, false), *rv = kiln_rand(ctx, 1, c, 0.5f, 1.5f);
    float *xd = base->data, *bd = b->data, *rmd = rm->data;
    const int64_t N = shape[0], S = kiln_numel(base) / (N * C);
    for (int64_t ch = 0; ch < C; ch += 3) {
        bd[ch] = 0.0f, rmd[ch] = 0.5f;
        for (int64_t n = 0; n < (train ? N : (N + 1) / 2); n++)
            for (int64_t i = 0; i < S; i++) xd[(n * C + ch) * S + i] = 0.5f;
    }
    kiln_tensor *x[2], *wk[2], *bk[2], *rmk[2], *rvk[2], *y[2];
    char what[160];
    snprintf(what, sizeof what, "bn+relu %dd (%lld, %lld, ...) cl %d train %d affine %d x grad %d w, b grad %d", nd,
             (long long)shape[0], (long long)C, cl, train, affine, xgrad, pgrad);
    for (int k = 0; k < 2; k++) { /* 0: kiln_relu(kiln_batch_norm()), 1: kiln_batch_norm_relu */
        x[k] = cl ? kiln_to_channels_last(ctx, base) : kiln_add_scalar(ctx, base, 0.0f);
        cr_assert(x[k] != NULL, "%s: %s", what, kiln_last_error());
        cr_assert(!cl || kiln_is_channels_last(x[k]), "%s: not channels-last", what);
        kiln_set_requires_grad(x[k], xgrad);
        wk[k] = affine ? kiln_add_scalar(ctx, w, 0.0f) : NULL, bk[k] = affine ? kiln_add_scalar(ctx, b, 0.0f) : NULL;
        if (affine) kiln_set_requires_grad(wk[k], pgrad), kiln_set_requires_grad(bk[k], pgrad);
        rmk[k] = kiln_add_scalar(ctx, rm, 0.0f), rvk[k] = kiln_add_scalar(ctx, rv, 0.0f);
        y[k] = k ? kiln_batch_norm_relu(ctx, x[k], wk[k], bk[k], rmk[k], rvk[k], train, 0.1f, 1e-5f)
                 : kiln_relu(ctx, kiln_batch_norm(ctx, x[k], wk[k], bk[k], rmk[k], rvk[k], train, 0.1f, 1e-5f));
        cr_assert(y[k] != NULL, "%s: %s", what, kiln_last_error());
    }
    /* the ties are there: bn(x) == 0 exactly, in a third of the channels or half of that */
    kiln_tensor *pre = kiln_contiguous(ctx, kiln_batch_norm(ctx, x[0], wk[0], bk[0], train ? NULL : rm,
                                                            train ? NULL : rv, train, 0.1f, 1e-5f));
    cr_assert(pre != NULL, "%s: %s", what, kiln_last_error());
    int64_t zeros = 0;
    for (int64_t i = 0; i < kiln_numel(pre); i++) zeros += ((const float *)pre->data)[i] == 0.0f;
    const int64_t tied = (C + 2) / 3 * S * (train ? N : (N + 1) / 2);
    cr_assert_geq(zeros, tied, "%s: %lld values of bn(x) are 0, expected at least %lld", what, (long long)zeros,
                  (long long)tied);

    /* (N, C, 1, 1) channels-last is contiguous too: y contiguous (see channels_last_1x1_is_contiguous) */
    cr_assert_eq(kiln_is_channels_last(y[1]) && !kiln_is_contiguous(y[1]), cl && S > 1, "%s: layout of y", what);
    ku_expect_close(kiln_contiguous(ctx, y[1]), kiln_contiguous(ctx, y[0]), 0, 0, what);
    ku_expect_close(rmk[1], rmk[0], 0, 0, what);
    ku_expect_close(rvk[1], rvk[0], 0, 0, what);
    kiln_tensor *r = rnd(nd, shape, 0.0f, 1.0f, false);
    for (int k = 0; k < 2; k++)
        cr_assert_eq(kiln_backward(ctx, kiln_sum(ctx, kiln_mul(ctx, y[k], r))), KILN_STATUS_OK, "%s: %s", what,
                     kiln_last_error());
    if (xgrad) {
        cr_assert(x[1]->grad && kiln_is_channels_last(x[1]->grad) == kiln_is_channels_last(x[1]), "%s: grad layout",
                  what);
        ku_expect_close(kiln_contiguous(ctx, x[1]->grad), kiln_contiguous(ctx, x[0]->grad), 1e-6, 1e-5, what);
    } else {
        cr_assert_null(x[1]->grad, "%s", what);
    }
    if (affine && pgrad) {
        ku_expect_close(wk[1]->grad, wk[0]->grad, 1e-6, 1e-5, what);
        ku_expect_close(bk[1]->grad, bk[0]->grad, 1e-6, 1e-5, what);
    } else if (affine) {
        cr_assert(!wk[1]->grad && !bk[1]->grad, "%s: grads of frozen weight, bias", what);
    }
    kiln_step_rewind(ctx, mk);
}

Test(batch_norm, relu_fused_matches_unfused)
{
    const int64_t s4[][4] = {{128, 8, 14, 14}, {4, 5, 3, 7}, {3, 16, 2, 2}, {2, 64, 1, 1}, {16, 32, 4, 4}};
    const int64_t s2[2] = {16, 6}, s3[3] = {4, 5, 7};
    for (int train = 0; train < 2; train++)
        for (int affine = 0; affine < 2; affine++) {
            for (size_t i = 0; i < sizeof s4 / sizeof *s4; i++)
                for (int cl = 0; cl < 2; cl++) check_fused(4, s4[i], cl, train, affine, true, true);
            check_fused(2, s2, false, train, affine, true, true);
            check_fused(3, s3, false, train, affine, true, true);
        }
    for (int cl = 0; cl < 2; cl++) {
        check_fused(4, s4[0], cl, true, true, false, true); /* only weight and bias */
        check_fused(4, s4[0], cl, true, true, true, false); /* frozen weight and bias (train_bn off) */
        check_fused(4, s4[1], cl, false, true, true, false);
    }
}

/* NaN stays NaN in y, as torch.relu (a mask of y > 0 then drops its gradient). */
Test(batch_norm, relu_keeps_nan)
{
    const int64_t s[4] = {2, 8, 3, 3};
    for (int cl = 0; cl < 2; cl++) {
        kiln_tensor *x = rnd(4, s, 0.0f, 1.0f, false);
        ((float *)x->data)[5] = NAN;
        if (cl) x = kiln_to_channels_last(ctx, x);
        kiln_tensor *rm = kiln_zeros(ctx, KILN_DTYPE_F32, 1, (int64_t[]){8});
        kiln_tensor *rv = kiln_full(ctx, 1, (int64_t[]){8}, 1.0f);
        kiln_tensor *y = kiln_contiguous(ctx, kiln_batch_norm_relu(ctx, x, NULL, NULL, rm, rv, false, 0.1f, 1e-5f));
        cr_assert(y, "%s", kiln_last_error());
        cr_expect(isnan(kiln_get_flat(y, 5)), "cl %d: y[5] = %g", cl, kiln_get_flat(y, 5));
        cr_expect(!isnan(kiln_get_flat(y, 6)), "cl %d: y[6] = %g", cl, kiln_get_flat(y, 6));
    }
}

/* ---- bad input -------------------------------------------------------------------------------- */

Test(batch_norm, errors)
{
    const int64_t s4[4] = {2, 3, 4, 4}, s1[1] = {3}, s1b[1] = {4}, s5[5] = {1, 3, 2, 2, 2}, s11[2] = {1, 3};
    kiln_tensor *x = kiln_zeros(ctx, KILN_DTYPE_F32, 4, s4), *c3 = kiln_zeros(ctx, KILN_DTYPE_F32, 1, s1);
    kiln_tensor *c4 = kiln_zeros(ctx, KILN_DTYPE_F32, 1, s1b);
    cr_assert_null(kiln_batch_norm(ctx, x, c4, NULL, NULL, NULL, true, 0.1f, 1e-5f));
    ku_expect_error("batch_norm: weight has shape (4,), expected (3,) for x (2, 3, 4, 4)", "weight shape");
    cr_assert_null(kiln_batch_norm(ctx, x, c3, c3, c3, c4, true, 0.1f, 1e-5f));
    ku_expect_error("running_var has shape (4,)", "running var shape");
    cr_assert_null(kiln_batch_norm(ctx, kiln_zeros(ctx, KILN_DTYPE_F32, 5, s5), NULL, NULL, NULL, NULL, true, 0.1f, 1e-5f));
    ku_expect_error("batch_norm: x has shape (1, 3, 2, 2, 2), expected (N, C), (N, C, L) or (N, C, H, W)", "bad ndim");
    cr_assert_null(kiln_batch_norm(ctx, x, NULL, NULL, NULL, NULL, false, 0.1f, 1e-5f));
    ku_expect_error("eval mode needs running_mean and running_var", "eval without stats");
    cr_assert_null(kiln_batch_norm(ctx, kiln_zeros(ctx, KILN_DTYPE_F32, 2, s11), NULL, NULL, NULL, NULL, true, 0.1f, 1e-5f));
    ku_expect_error("expected more than 1 value per channel when training", "one value");
    cr_assert_not_null(kiln_batch_norm(ctx, kiln_zeros(ctx, KILN_DTYPE_F32, 2, s11), NULL, NULL, c3, c3, false, 0.1f,
                                       1e-5f), "eval with one value: %s", kiln_last_error());
    cr_assert_null(kiln_batch_norm(ctx, x, NULL, NULL, c3, NULL, true, 0.1f, 1e-5f));
    ku_expect_error("give both running_mean and running_var", "one stat");
    kiln_clear_error();
    cr_assert_null(kiln_batch_norm(ctx, NULL, NULL, NULL, NULL, NULL, true, 0.1f, 1e-5f));
}
