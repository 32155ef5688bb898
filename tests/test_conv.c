/* kiln_conv2d: parity with torch.nn.functional.conv2d (tests/fixtures/conv.safetensors,
 * written by gen_conv.py) for forward and every gradient, finite differences, the oneDNN
 * kernels against the reference loops, gradient accumulation, strided inputs and argument
 * errors.
 *
 * Tolerances (|got - ref| <= atol + rtol*|ref|):
 *   vs PyTorch: atol 1e-4, rtol 1e-4 (f32 both sides, different summation orders);
 *   oneDNN vs reference kernels: atol 1e-4 + 1e-5 * max|ref|, rtol 1e-4 (reference
 *   accumulates in double; oneDNN may use Winograd, whose rounding scales with the terms);
 *   finite differences: eps 0.5, atol 1e-4, rtol 1e-3 (linear in each input, so no
 *   truncation; f32 rounding of the many outputs one element feeds, ~3u|f|sqrt(k)/eps). */
#include "util/ku.h"
#include "autograd/tape.h"
#include "kernels/conv.h"

#include <math.h>
#include <string.h>

#define FX_ATOL 1e-4
#define FX_RTOL 1e-4

static kiln_ctx *ctx;
static kiln_st_file *fx;
static void setup(void) { ctx = ku_ctx(); fx = ku_fixture("conv"); }
static void teardown(void) { kiln_st_close(fx); ku_ctx_free(ctx); }
TestSuite(conv2d, .init = setup, .fini = teardown);

static kiln_conv2d_params params_of(const kiln_tensor *p) /* [sh, sw, ph, pw, dh, dw, groups] */
{
    kiln_conv2d_params cp;
    cp.stride[0] = (int)kiln_get_flat(p, 0), cp.stride[1] = (int)kiln_get_flat(p, 1);
    cp.padding[0] = (int)kiln_get_flat(p, 2), cp.padding[1] = (int)kiln_get_flat(p, 3);
    cp.dilation[0] = (int)kiln_get_flat(p, 4), cp.dilation[1] = (int)kiln_get_flat(p, 5);
    cp.groups = (int)kiln_get_flat(p, 6);
    return cp;
}

static void check_fixture(const char *kase)
{
    kiln_tensor *x = ku_load_grad(ctx, fx, kase, "x"), *w = ku_load_grad(ctx, fx, kase, "w");
    kiln_tensor *b = ku_has(fx, kase, "b") ? ku_load_grad(ctx, fx, kase, "b") : NULL;
    kiln_conv2d_params p = params_of(ku_load(ctx, fx, kase, "p"));
    kiln_tensor *y = kiln_conv2d(ctx, x, w, b, &p);
    cr_assert(y != NULL, "%s: conv2d failed: %s", kase, kiln_last_error());
    ku_expect_fixture(ctx, fx, kase, "y", y, FX_ATOL, FX_RTOL);
    cr_assert_eq(kiln_backward_with(ctx, y, ku_load(ctx, fx, kase, "gy")), KILN_STATUS_OK, "%s", kiln_last_error());
    ku_expect_fixture(ctx, fx, kase, "grad.x", x->grad, FX_ATOL, FX_RTOL);
    ku_expect_fixture(ctx, fx, kase, "grad.w", w->grad, FX_ATOL, FX_RTOL);
    if (b) ku_expect_fixture(ctx, fx, kase, "grad.b", b->grad, FX_ATOL, FX_RTOL);
}

Test(conv2d, torch_basic_bias) { check_fixture("conv_basic"); }
Test(conv2d, torch_stride2_pad1) { check_fixture("conv_s2p1"); }
Test(conv2d, torch_dilation2) { check_fixture("conv_dil2"); }
Test(conv2d, torch_groups2) { check_fixture("conv_g2"); }
Test(conv2d, torch_depthwise_mult2) { check_fixture("conv_dw"); }
Test(conv2d, torch_non_square) { check_fixture("conv_nonsq"); }
Test(conv2d, torch_1x1_stride2_leftover) { check_fixture("conv_1x1s2"); }
Test(conv2d, torch_16_channels_blocked) { check_fixture("conv_c16"); }
Test(conv2d, torch_7x7_stride2) { check_fixture("conv_7x7s2"); }

/* Only some inputs need grad: weights frozen, then x frozen, then only the bias. */
Test(conv2d, torch_partial_grads)
{
    const char *kase = "conv_s2p1";
    kiln_conv2d_params p = params_of(ku_load(ctx, fx, kase, "p"));
    for (int mode = 0; mode < 3; mode++) {
        kiln_tensor *x = ku_load(ctx, fx, kase, "x"), *w = ku_load(ctx, fx, kase, "w"), *b = ku_load(ctx, fx, kase, "b");
        kiln_set_requires_grad(x, mode == 0);
        kiln_set_requires_grad(w, mode == 1);
        kiln_set_requires_grad(b, true);
        kiln_tensor *y = kiln_conv2d(ctx, x, w, b, &p);
        cr_assert_eq(kiln_backward_with(ctx, y, ku_load(ctx, fx, kase, "gy")), KILN_STATUS_OK, "%s", kiln_last_error());
        if (mode == 0) ku_expect_fixture(ctx, fx, kase, "grad.x", x->grad, FX_ATOL, FX_RTOL);
        if (mode == 1) ku_expect_fixture(ctx, fx, kase, "grad.w", w->grad, FX_ATOL, FX_RTOL);
        cr_assert(mode == 0 || x->grad == NULL);
        cr_assert(mode == 1 || w->grad == NULL);
        ku_expect_fixture(ctx, fx, kase, "grad.b", b->grad, FX_ATOL, FX_RTOL);
    }
}

/* A leaf that already holds a gradient gets the new one added. */
Test(conv2d, grads_accumulate)
{
    const char *kase = "conv_c16";
    kiln_tensor *x = ku_load_grad(ctx, fx, kase, "x"), *w = ku_load_grad(ctx, fx, kase, "w");
    kiln_conv2d_params p = params_of(ku_load(ctx, fx, kase, "p"));
    x->grad = kiln_full(ctx, x->ndim, x->shape, 1.0f);
    w->grad = kiln_full(ctx, w->ndim, w->shape, -2.0f);
    kiln_tensor *y = kiln_conv2d(ctx, x, w, ku_load(ctx, fx, kase, "b"), &p);
    cr_assert_eq(kiln_backward_with(ctx, y, ku_load(ctx, fx, kase, "gy")), KILN_STATUS_OK, "%s", kiln_last_error());
    kiln_tensor *wx = kiln_add_scalar(ctx, ku_load(ctx, fx, kase, "grad.x"), 1.0f);
    kiln_tensor *ww = kiln_add_scalar(ctx, ku_load(ctx, fx, kase, "grad.w"), -2.0f);
    ku_expect_close(x->grad, wx, FX_ATOL, FX_RTOL, "accumulated grad.x");
    ku_expect_close(w->grad, ww, FX_ATOL, FX_RTOL, "accumulated grad.w");
}

/* x given as a permuted (non-contiguous) view gives the same output and gradient. */
Test(conv2d, strided_input)
{
    const char *kase = "conv_basic";
    kiln_tensor *x = ku_load(ctx, fx, kase, "x"); /* (2, 3, 7, 6) */
    const int perm[4] = {0, 1, 3, 2}, back[4] = {0, 1, 3, 2};
    kiln_tensor *xt = kiln_contiguous(ctx, kiln_permute(ctx, x, perm)); /* (2, 3, 6, 7) */
    kiln_set_requires_grad(xt, true);
    kiln_tensor *xv = kiln_permute(ctx, xt, back); /* strided view of x's values */
    cr_assert(xv && !kiln_is_contiguous(xv));
    kiln_tensor *w = ku_load(ctx, fx, kase, "w"), *b = ku_load(ctx, fx, kase, "b");
    kiln_conv2d_params p = params_of(ku_load(ctx, fx, kase, "p"));
    kiln_tensor *y = kiln_conv2d(ctx, xv, w, b, &p);
    ku_expect_fixture(ctx, fx, kase, "y", y, FX_ATOL, FX_RTOL);
    cr_assert_eq(kiln_backward_with(ctx, y, ku_load(ctx, fx, kase, "gy")), KILN_STATUS_OK, "%s", kiln_last_error());
    kiln_tensor *gx = kiln_contiguous(ctx, kiln_permute(ctx, xt->grad, back));
    ku_expect_fixture(ctx, fx, kase, "grad.x", gx, FX_ATOL, FX_RTOL);
}

Test(conv2d, no_grad_records_nothing)
{
    const char *kase = "conv_basic";
    kiln_tensor *x = ku_load_grad(ctx, fx, kase, "x"), *w = ku_load_grad(ctx, fx, kase, "w");
    kiln_conv2d_params p = params_of(ku_load(ctx, fx, kase, "p"));
    kiln_set_grad_enabled(ctx, false);
    kiln_tensor *y = kiln_conv2d(ctx, x, w, NULL, &p);
    kiln_set_grad_enabled(ctx, true);
    cr_assert(y && y->node == NULL && !y->requires_grad);
}

/* ---- finite differences ----------------------------------------------------------------- */

static kiln_tensor *gc_fn(kiln_ctx *c, kiln_tensor **in, void *user)
{
    return kiln_conv2d(c, in[0], in[1], in[2], user);
}

static kiln_tensor *rnd(int64_t a, int64_t b, int64_t c, int64_t d, int ndim)
{
    const int64_t s[4] = {a, b, c, d};
    kiln_tensor *t = kiln_randn(ctx, ndim, s, 0.0f, 1.0f);
    cr_assert(t != NULL, "%s", kiln_last_error());
    kiln_set_requires_grad(t, true);
    return t;
}

Test(conv2d, gradcheck)
{
    struct { int64_t n, c, h, w, o, kh, kw; int s[2], p[2], d[2], g; bool bias; } cases[] = {
        {2, 3, 5, 6, 4, 3, 3, {1, 1}, {0, 0}, {1, 1}, 1, true},
        {1, 2, 7, 6, 3, 3, 2, {2, 1}, {1, 1}, {1, 1}, 1, false},
        {1, 2, 7, 7, 2, 3, 3, {1, 1}, {2, 1}, {2, 2}, 1, true},
        {2, 4, 5, 5, 6, 3, 3, {1, 2}, {1, 1}, {1, 1}, 2, true},
        {1, 3, 6, 6, 6, 3, 3, {2, 2}, {1, 1}, {1, 1}, 3, false},
        {1, 4, 6, 6, 3, 1, 1, {2, 2}, {0, 0}, {1, 1}, 1, true},
    };
    for (size_t i = 0; i < sizeof cases / sizeof *cases; i++) {
        kiln_mark m = kiln_step_mark(ctx);
        kiln_conv2d_params p = {.stride = {cases[i].s[0], cases[i].s[1]}, .padding = {cases[i].p[0], cases[i].p[1]},
                                .dilation = {cases[i].d[0], cases[i].d[1]}, .groups = cases[i].g};
        kiln_tensor *in[3] = {rnd(cases[i].n, cases[i].c, cases[i].h, cases[i].w, 4),
                              rnd(cases[i].o, cases[i].c / cases[i].g, cases[i].kh, cases[i].kw, 4),
                              cases[i].bias ? rnd(cases[i].o, 0, 0, 0, 1) : NULL};
        char what[32];
        snprintf(what, sizeof what, "conv2d case %zu", i);
        /* wiring; every gradient's value is checked against PyTorch in the fixture tests */
        ku_gradcheck(ctx, gc_fn, in, 3, &p, 0.5, 1e-4, 1e-3, what);
        kiln_step_rewind(ctx, m);
    }
}

/* ---- oneDNN kernels vs reference loops -------------------------------------------------------- */

/* atol grows with the largest reference value: a result that nearly cancels (a weight
 * gradient summed over 1000+ products) carries rounding of the size of its terms, and
 * Winograd's transforms add some more of it. */
static void expect_buf(const float *got, const float *want, int64_t n, const char *what)
{
    kiln_tensor a, b;
    const int64_t s[1] = {n};
    double big = 0;
    for (int64_t i = 0; i < n; i++) big = fabs(want[i]) > big ? fabs(want[i]) : big;
    kiln_tensor_wrap(&a, KILN_DTYPE_F32, 1, s, (void *)got);
    kiln_tensor_wrap(&b, KILN_DTYPE_F32, 1, s, (void *)want);
    ku_expect_close(&a, &b, 1e-4 + 1e-5 * big, 1e-4, what);
}

static void compare_kernels(kiln_conv2d_geom g, const char *name)
{
    g.oh = (g.h + 2 * g.ph - g.dh * (g.kh - 1) - 1) / g.sh + 1;
    g.ow = (g.w + 2 * g.pw - g.dw * (g.kw - 1) - 1) / g.sw + 1;
    int64_t nx = g.n * g.c * g.h * g.w, nw = g.o * (g.c / g.groups) * g.kh * g.kw, ny = g.n * g.o * g.oh * g.ow;
    float *x = ku_randn_buf(ctx, nx), *w = ku_randn_buf(ctx, nw), *b = ku_randn_buf(ctx, g.o), *gy = ku_randn_buf(ctx, ny);
    float *y1 = ku_randn_buf(ctx, ny), *y2 = ku_randn_buf(ctx, ny);
    const kiln_conv_kernels *K[2] = {&kiln__cpu_conv, &kiln__ref_conv};
    float *ys[2] = {y1, y2};
    for (int k = 0; k < 2; k++)
        cr_assert_eq(K[k]->conv2d_fwd(ctx, &g, x, w, b, ys[k]), KILN_STATUS_OK, "%s: %s", name, kiln_last_error());
    char what[96];
    snprintf(what, sizeof what, "%s: y", name);
    expect_buf(y1, y2, ny, what);
    /* Backward twice: gx overwritten (fresh) and accumulated onto the same start values. */
    float *init_x = ku_randn_buf(ctx, nx), *init_w = ku_randn_buf(ctx, nw), *init_b = ku_randn_buf(ctx, g.o);
    for (int acc = 0; acc < 2; acc++) {
        float *gx[2], *gw[2], *gb[2];
        for (int k = 0; k < 2; k++) {
            gx[k] = ku_randn_buf(ctx, nx), gw[k] = ku_randn_buf(ctx, nw), gb[k] = ku_randn_buf(ctx, g.o);
            memcpy(gx[k], init_x, (size_t)nx * sizeof(float));
            memcpy(gw[k], init_w, (size_t)nw * sizeof(float));
            memcpy(gb[k], init_b, (size_t)g.o * sizeof(float));
            cr_assert_eq(K[k]->conv2d_bwd(ctx, &g, x, w, gy, gx[k], acc, gw[k], gb[k]), KILN_STATUS_OK, "%s: %s",
                         name, kiln_last_error());
        }
        snprintf(what, sizeof what, "%s: gx (acc %d)", name, acc);
        expect_buf(gx[0], gx[1], nx, what);
        snprintf(what, sizeof what, "%s: gw", name);
        expect_buf(gw[0], gw[1], nw, what);
        snprintf(what, sizeof what, "%s: gb", name);
        expect_buf(gb[0], gb[1], g.o, what);
    }
    /* Only some gradients. */
    float *gw1 = ku_randn_buf(ctx, nw), *gw2 = ku_randn_buf(ctx, nw), *gb1 = ku_randn_buf(ctx, g.o), *gb2 = ku_randn_buf(ctx, g.o);
    memcpy(gw2, gw1, (size_t)nw * sizeof(float));
    memcpy(gb2, gb1, (size_t)g.o * sizeof(float));
    cr_assert_eq(K[0]->conv2d_bwd(ctx, &g, x, w, gy, NULL, false, gw1, NULL), KILN_STATUS_OK);
    cr_assert_eq(K[1]->conv2d_bwd(ctx, &g, x, w, gy, NULL, false, gw2, NULL), KILN_STATUS_OK);
    cr_assert_eq(K[0]->conv2d_bwd(ctx, &g, x, w, gy, NULL, false, NULL, gb1), KILN_STATUS_OK);
    cr_assert_eq(K[1]->conv2d_bwd(ctx, &g, x, w, gy, NULL, false, NULL, gb2), KILN_STATUS_OK);
    snprintf(what, sizeof what, "%s: gw only", name);
    expect_buf(gw1, gw2, nw, what);
    snprintf(what, sizeof what, "%s: gb only", name);
    expect_buf(gb1, gb2, g.o, what);
}

Test(conv2d, onednn_matches_reference)
{
    compare_kernels((kiln_conv2d_geom){.n = 2, .c = 32, .h = 12, .w = 12, .o = 32, .kh = 3, .kw = 3, .sh = 1, .sw = 1,
                                       .ph = 1, .pw = 1, .dh = 1, .dw = 1, .groups = 1}, "3x3 32->32");
    compare_kernels((kiln_conv2d_geom){.n = 2, .c = 16, .h = 10, .w = 10, .o = 32, .kh = 1, .kw = 1, .sh = 2, .sw = 2,
                                       .ph = 0, .pw = 0, .dh = 1, .dw = 1, .groups = 1}, "1x1 s2");
    compare_kernels((kiln_conv2d_geom){.n = 3, .c = 3, .h = 17, .w = 15, .o = 16, .kh = 7, .kw = 7, .sh = 2, .sw = 2,
                                       .ph = 3, .pw = 3, .dh = 1, .dw = 1, .groups = 1}, "7x7 s2 stem");
    compare_kernels((kiln_conv2d_geom){.n = 2, .c = 32, .h = 9, .w = 9, .o = 32, .kh = 3, .kw = 3, .sh = 1, .sw = 1,
                                       .ph = 1, .pw = 1, .dh = 1, .dw = 1, .groups = 32}, "depthwise 32");
    compare_kernels((kiln_conv2d_geom){.n = 2, .c = 8, .h = 11, .w = 9, .o = 12, .kh = 3, .kw = 2, .sh = 2, .sw = 1,
                                       .ph = 2, .pw = 0, .dh = 2, .dw = 3, .groups = 4}, "grouped dilated");
}

/* Channels-last data (x, y, gx, gy stored NHWC): oneDNN's nhwc kernels (brgconv skipped
 * for <= 32 channels) against the reference, which runs its NCHW loops on relaid copies. */
Test(conv2d, onednn_matches_reference_nhwc)
{
    compare_kernels((kiln_conv2d_geom){.n = 4, .c = 8, .h = 14, .w = 14, .o = 8, .kh = 3, .kw = 3, .sh = 1, .sw = 1,
                                       .ph = 1, .pw = 1, .dh = 1, .dw = 1, .groups = 1, .nhwc = 1}, "nhwc 3x3 8->8");
    compare_kernels((kiln_conv2d_geom){.n = 3, .c = 1, .h = 28, .w = 28, .o = 8, .kh = 3, .kw = 3, .sh = 2, .sw = 2,
                                       .ph = 1, .pw = 1, .dh = 1, .dw = 1, .groups = 1, .nhwc = 1}, "nhwc stem 1->8 s2");
    compare_kernels((kiln_conv2d_geom){.n = 2, .c = 16, .h = 7, .w = 7, .o = 64, .kh = 1, .kw = 1, .sh = 2, .sw = 2,
                                       .ph = 0, .pw = 0, .dh = 1, .dw = 1, .groups = 1, .nhwc = 1}, "nhwc 1x1 s2 16->64");
    compare_kernels((kiln_conv2d_geom){.n = 2, .c = 64, .h = 6, .w = 5, .o = 48, .kh = 3, .kw = 3, .sh = 1, .sw = 1,
                                       .ph = 1, .pw = 1, .dh = 1, .dw = 1, .groups = 1, .nhwc = 1}, "nhwc 3x3 64->48");
}

/* Shapes for which the CPU kernels let oneDNN use Winograd (3x3 stride 1, >= 32 channels,
 * >= 1024 output pixels): its transform rounding must stay inside the same tolerance. */
Test(conv2d, winograd_matches_reference)
{
    compare_kernels((kiln_conv2d_geom){.n = 16, .c = 32, .h = 8, .w = 8, .o = 32, .kh = 3, .kw = 3, .sh = 1, .sw = 1,
                                       .ph = 1, .pw = 1, .dh = 1, .dw = 1, .groups = 1}, "winograd 32->32 bs16 8x8");
    compare_kernels((kiln_conv2d_geom){.n = 20, .c = 64, .h = 9, .w = 7, .o = 48, .kh = 3, .kw = 3, .sh = 1, .sw = 1,
                                       .ph = 1, .pw = 1, .dh = 1, .dw = 1, .groups = 1}, "winograd 64->48 bs20 9x7");
}

/* ---- bad input -------------------------------------------------------------------------------- */

static kiln_tensor *zeros4(int64_t a, int64_t b, int64_t c, int64_t d)
{
    const int64_t s[4] = {a, b, c, d};
    return kiln_zeros(ctx, KILN_DTYPE_F32, 4, s);
}

Test(conv2d, errors)
{
    kiln_conv2d_params p = kiln_conv2d_default_params();
    kiln_tensor *x = zeros4(2, 4, 5, 5), *w = zeros4(8, 3, 3, 3);
    cr_assert_null(kiln_conv2d(ctx, x, w, NULL, &p));
    ku_expect_error("conv2d: weight (8, 3, 3, 3) expects 3 input channels per group, x has shape (2, 4, 5, 5)",
                    "wrong channels");

    kiln_tensor *w2 = zeros4(8, 4, 7, 7);
    cr_assert_null(kiln_conv2d(ctx, x, w2, NULL, &p));
    ku_expect_error("kernel 7x7 (dilation 1x1) is larger than the padded input 5x5", "kernel too big");
    p.padding[0] = p.padding[1] = 1;
    cr_assert_not_null(kiln_conv2d(ctx, x, w2, NULL, &p), "7x7 fits 5x5 padded by 1: %s", kiln_last_error());
    p = kiln_conv2d_default_params();

    const int64_t s3[3] = {4, 5, 5};
    cr_assert_null(kiln_conv2d(ctx, kiln_zeros(ctx, KILN_DTYPE_F32, 3, s3), w, NULL, &p));
    ku_expect_error("conv2d: x has shape (4, 5, 5), expected 4 dims (N, C, H, W)", "bad ndim");

    kiln_clear_error();
    cr_assert_null(kiln_conv2d(ctx, NULL, w, NULL, &p));
    cr_assert_null(kiln_conv2d(ctx, x, NULL, NULL, &p));

    const int64_t s1[1] = {5};
    kiln_tensor *w4 = zeros4(8, 4, 3, 3);
    cr_assert_null(kiln_conv2d(ctx, x, w4, kiln_zeros(ctx, KILN_DTYPE_F32, 1, s1), &p));
    ku_expect_error("conv2d: bias has shape (5,), expected (8,)", "bias shape");

    p.groups = 3;
    cr_assert_null(kiln_conv2d(ctx, x, w4, NULL, &p));
    ku_expect_error("groups 3 does not divide the 4 input channels", "groups");
    p.groups = 2;
    cr_assert_null(kiln_conv2d(ctx, x, zeros4(7, 2, 3, 3), NULL, &p));
    ku_expect_error("groups 2 does not divide the 7 output channels", "groups out");
    p = kiln_conv2d_default_params();
    p.stride[1] = 0;
    cr_assert_null(kiln_conv2d(ctx, x, w4, NULL, &p));
    ku_expect_error("stride (1, 0) must be >= 1", "stride");
    p = kiln_conv2d_default_params();
    p.dilation[0] = 0;
    cr_assert_null(kiln_conv2d(ctx, x, w4, NULL, &p));
    ku_expect_error("dilation (0, 1) must be >= 1", "dilation");

    kiln_tensor *xi = kiln_zeros(ctx, KILN_DTYPE_I64, 4, x->shape);
    cr_assert_null(kiln_conv2d(ctx, xi, w4, NULL, NULL));
    ku_expect_error("conv2d: x must be f32", "dtype");
}

Test(conv2d, default_params)
{
    kiln_conv2d_params p = kiln_conv2d_default_params();
    cr_assert(p.stride[0] == 1 && p.stride[1] == 1 && p.padding[0] == 0 && p.padding[1] == 0 && p.dilation[0] == 1 &&
              p.dilation[1] == 1 && p.groups == 1);
    /* NULL params mean the defaults. */
    kiln_tensor *y = kiln_conv2d(ctx, zeros4(1, 2, 4, 4), zeros4(3, 2, 3, 3), NULL, NULL);
    cr_assert(y && y->shape[1] == 3 && y->shape[2] == 2 && y->shape[3] == 2, "%s", kiln_last_error());
}
