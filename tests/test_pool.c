/* 2-D pooling: parity with torch.nn.functional max_pool2d / avg_pool2d (padding, ceil_mode,
 * count_include_pad) and adaptive_avg/max_pool2d (1x1, even and uneven bins, upsampling)
 * from tests/fixtures/conv.safetensors (gen_conv.py); finite differences; oneDNN / OpenMP
 * kernels against the reference loops; argument errors.
 *
 * Tolerances (|got - ref| <= atol + rtol*|ref|):
 *   vs PyTorch and oneDNN vs reference: atol 1e-6, rtol 1e-5 (max pooling is exact; averages
 *   differ only in summation order);
 *   finite differences: atol 1e-4, rtol 1e-3; max pooling at eps 1e-2 on inputs whose values
 *   are at least 0.1 apart, so no window's maximum changes under the step (then exact);
 *   average pooling is linear: eps 0.5, only f32 rounding of the outputs remains. */
#include "util/ku.h"
#include "autograd/tape.h"
#include "kernels/conv.h"

#include <string.h>

#define ATOL 1e-6
#define RTOL 1e-5

static kiln_ctx *ctx;
static kiln_st_file *fx;
static void setup(void) { ctx = ku_ctx(); fx = ku_fixture("conv"); }
static void teardown(void) { kiln_st_close(fx); ku_ctx_free(ctx); }
TestSuite(pool, .init = setup, .fini = teardown);

static kiln_pool2d_params params_of(const kiln_tensor *p) /* [kh, kw, sh, sw, ph, pw, ceil, incl] */
{
    kiln_pool2d_params q;
    for (int i = 0; i < 2; i++) {
        q.kernel[i] = (int)kiln_get_flat(p, i);
        q.stride[i] = (int)kiln_get_flat(p, 2 + i);
        q.padding[i] = (int)kiln_get_flat(p, 4 + i);
    }
    q.ceil_mode = kiln_get_flat(p, 6) != 0;
    q.count_include_pad = kiln_get_flat(p, 7) != 0;
    return q;
}

typedef enum kind { MAX, AVG, AMAX, AAVG } kind;

static kiln_tensor *run(kind k, kiln_tensor *x, const kiln_tensor *p)
{
    if (k == AMAX || k == AAVG) {
        int oh = (int)kiln_get_flat(p, 0), ow = (int)kiln_get_flat(p, 1);
        return k == AMAX ? kiln_adaptive_max_pool2d(ctx, x, oh, ow) : kiln_adaptive_avg_pool2d(ctx, x, oh, ow);
    }
    kiln_pool2d_params q = params_of(p);
    return k == MAX ? kiln_max_pool2d(ctx, x, &q) : kiln_avg_pool2d(ctx, x, &q);
}

static void check_fixture(kind k, const char *kase)
{
    kiln_tensor *x = ku_load_grad(ctx, fx, kase, "x");
    kiln_tensor *y = run(k, x, ku_load(ctx, fx, kase, "p"));
    cr_assert(y != NULL, "%s: pooling failed: %s", kase, kiln_last_error());
    ku_expect_fixture(ctx, fx, kase, "y", y, ATOL, RTOL);
    cr_assert_eq(kiln_backward_with(ctx, y, ku_load(ctx, fx, kase, "gy")), KILN_STATUS_OK, "%s", kiln_last_error());
    ku_expect_fixture(ctx, fx, kase, "grad.x", x->grad, ATOL, RTOL);
}

Test(pool, torch_max_k3s2p1) { check_fixture(MAX, "max_k3s2p1"); }
Test(pool, torch_max_ceil) { check_fixture(MAX, "max_ceil"); }
Test(pool, torch_max_ceil_pad) { check_fixture(MAX, "max_ceil_pad"); }
Test(pool, torch_max_leftover) { check_fixture(MAX, "max_leftover"); }
Test(pool, torch_max_non_square) { check_fixture(MAX, "max_nonsq"); }
Test(pool, torch_max_16_channels) { check_fixture(MAX, "max_c16"); }
Test(pool, torch_avg_k3s2p1) { check_fixture(AVG, "avg_k3s2p1"); }
Test(pool, torch_avg_exclude_pad) { check_fixture(AVG, "avg_excl"); }
Test(pool, torch_avg_ceil_include_pad) { check_fixture(AVG, "avg_ceil_incl"); }
Test(pool, torch_avg_ceil_exclude_pad) { check_fixture(AVG, "avg_ceil_excl"); }
Test(pool, torch_avg_leftover) { check_fixture(AVG, "avg_leftover"); }
Test(pool, torch_avg_non_square_ceil) { check_fixture(AVG, "avg_nonsq"); }
Test(pool, torch_adaptive_avg_1x1) { check_fixture(AAVG, "aavg_1x1"); }
Test(pool, torch_adaptive_avg_uneven_3x2) { check_fixture(AAVG, "aavg_3x2"); }
Test(pool, torch_adaptive_avg_even) { check_fixture(AAVG, "aavg_even"); }
Test(pool, torch_adaptive_avg_upsample) { check_fixture(AAVG, "aavg_up"); }
Test(pool, torch_adaptive_max_1x1) { check_fixture(AMAX, "amax_1x1"); }
Test(pool, torch_adaptive_max_uneven_3x2) { check_fixture(AMAX, "amax_3x2"); }
Test(pool, torch_adaptive_max_even) { check_fixture(AMAX, "amax_even"); }
Test(pool, torch_adaptive_max_upsample) { check_fixture(AMAX, "amax_up"); }

/* A gradient already on x gets the pooling gradient added, for each kind. */
Test(pool, grads_accumulate)
{
    const struct { kind k; const char *kase; } cases[] = {
        {MAX, "max_k3s2p1"}, {AVG, "avg_ceil_incl"}, {AVG, "avg_excl"}, {AAVG, "aavg_3x2"}, {AMAX, "amax_even"},
        {AMAX, "amax_3x2"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof *cases; i++) {
        kiln_tensor *x = ku_load_grad(ctx, fx, cases[i].kase, "x");
        x->grad = kiln_full(ctx, x->ndim, x->shape, 0.25f);
        kiln_tensor *y = run(cases[i].k, x, ku_load(ctx, fx, cases[i].kase, "p"));
        cr_assert_eq(kiln_backward_with(ctx, y, ku_load(ctx, fx, cases[i].kase, "gy")), KILN_STATUS_OK, "%s",
                     kiln_last_error());
        ku_expect_close(x->grad, kiln_add_scalar(ctx, ku_load(ctx, fx, cases[i].kase, "grad.x"), 0.25f), ATOL, RTOL,
                        cases[i].kase);
    }
}

Test(pool, params_make)
{
    kiln_pool2d_params p = kiln_pool2d_default_params(3, 2, 1);
    cr_assert(p.kernel[0] == 3 && p.kernel[1] == 3 && p.stride[0] == 2 && p.stride[1] == 2 && p.padding[0] == 1 &&
              p.padding[1] == 1 && !p.ceil_mode && p.count_include_pad);
    p = kiln_pool2d_default_params(2, 0, 0); /* stride 0: the kernel size, as PyTorch's default */
    cr_assert(p.stride[0] == 2 && p.stride[1] == 2);
}

/* ---- finite differences ----------------------------------------------------------------- */

typedef struct gc_user {
    kind k;
    kiln_pool2d_params p;
    int oh, ow;
} gc_user;

static kiln_tensor *gc_fn(kiln_ctx *c, kiln_tensor **in, void *user)
{
    gc_user *u = user;
    switch (u->k) {
    case MAX: return kiln_max_pool2d(c, in[0], &u->p);
    case AVG: return kiln_avg_pool2d(c, in[0], &u->p);
    case AMAX: return kiln_adaptive_max_pool2d(c, in[0], u->oh, u->ow);
    default: return kiln_adaptive_avg_pool2d(c, in[0], u->oh, u->ow);
    }
}

/* (n, c, h, w) holding a shuffled 0.1 * (0 .. numel-1) - 1: distinct values, 0.1 apart. */
static kiln_tensor *distinct(int64_t n, int64_t c, int64_t h, int64_t w)
{
    const int64_t s[4] = {n, c, h, w};
    kiln_tensor *t = kiln_empty(ctx, KILN_DTYPE_F32, 4, s);
    cr_assert(t != NULL);
    float *d = t->data;
    int64_t m = n * c * h * w;
    for (int64_t i = 0; i < m; i++) d[i] = 0.1f * (float)i - 1.0f;
    uint64_t state = 88172645463325252ull;
    for (int64_t i = m - 1; i > 0; i--) { /* Fisher-Yates with xorshift */
        state ^= state << 13, state ^= state >> 7, state ^= state << 17;
        int64_t j = (int64_t)(state % (uint64_t)(i + 1));
        float tmp = d[i];
        d[i] = d[j], d[j] = tmp;
    }
    kiln_set_requires_grad(t, true);
    return t;
}

Test(pool, gradcheck)
{
    kiln_pool2d_params ceil_p = kiln_pool2d_default_params(3, 2, 1);
    ceil_p.ceil_mode = true;
    kiln_pool2d_params excl_p = ceil_p;
    excl_p.count_include_pad = false;
    kiln_pool2d_params rect = {.kernel = {3, 2}, .stride = {2, 1}, .padding = {1, 0}, .count_include_pad = true};
    const kiln_pool2d_params none = {{0}, {0}, {0}, false, false}; /* adaptive: unused */
    gc_user cases[] = {
        {MAX, kiln_pool2d_default_params(3, 2, 1), 0, 0}, {MAX, ceil_p, 0, 0},  {MAX, rect, 0, 0},
        {MAX, kiln_pool2d_default_params(2, 2, 0), 0, 0}, {AVG, kiln_pool2d_default_params(3, 2, 1), 0, 0},
        {AVG, ceil_p, 0, 0},                           {AVG, excl_p, 0, 0}, {AVG, rect, 0, 0},
        {AMAX, none, 1, 1},                           {AMAX, none, 3, 2}, {AMAX, none, 7, 8},
        {AAVG, none, 1, 1},                           {AAVG, none, 3, 2}, {AAVG, none, 7, 8},
    };
    for (size_t i = 0; i < sizeof cases / sizeof *cases; i++) {
        kiln_mark m = kiln_step_mark(ctx);
        kiln_tensor *in[1] = {distinct(2, 2, 5, 7)};
        char what[32];
        snprintf(what, sizeof what, "pool case %zu", i);
        bool max = cases[i].k == MAX || cases[i].k == AMAX;
        /* wiring; values vs PyTorch in the fixture tests. Measured <= 0.03 of the tolerance */
        ku_gradcheck(ctx, gc_fn, in, 1, &cases[i], max ? 1e-2 : 0.5, 1e-4, 1e-3, what);
        kiln_step_rewind(ctx, m);
    }
}

/* ---- optimized kernels vs reference loops ------------------------------------------------------ */

static void expect_buf(const float *got, const float *want, int64_t n, const char *what)
{
    kiln_tensor a, b;
    const int64_t s[1] = {n};
    kiln_tensor_wrap(&a, KILN_DTYPE_F32, 1, s, (void *)got);
    kiln_tensor_wrap(&b, KILN_DTYPE_F32, 1, s, (void *)want);
    ku_expect_close(&a, &b, ATOL, RTOL, what);
}

/* ties: x = relu(x), so many windows hold several zeros (or only zeros) and the gradient
 * must go to the first maximum in row-major window order, as PyTorch does. */
static void compare_kernels_x(kind k, kiln_pool2d_geom g, const char *name, bool ties)
{
    int64_t nx = g.n * g.c * g.h * g.w, ny = g.n * g.c * g.oh * g.ow;
    float *x = ku_randn_buf(ctx, nx), *gy = ku_randn_buf(ctx, ny), *init = ku_randn_buf(ctx, nx);
    for (int64_t i = 0; ties && i < nx; i++) x[i] = x[i] > 0 ? x[i] : 0.0f;
    const kiln_conv_kernels *K[2] = {&kiln__cpu_conv, &kiln__ref_conv};
    for (int acc = 0; acc < 2; acc++) {
        float *y[2], *gx[2];
        for (int j = 0; j < 2; j++) {
            y[j] = ku_randn_buf(ctx, ny), gx[j] = ku_randn_buf(ctx, nx);
            memcpy(gx[j], init, (size_t)nx * sizeof(float));
            void *keep = NULL;
            kiln_status s1, s2;
            switch (k) {
            case MAX:
                s1 = K[j]->max_pool2d_fwd(ctx, &g, x, y[j], &keep);
                s2 = K[j]->max_pool2d_bwd(ctx, &g, x, keep, gy, gx[j], acc);
                break;
            case AVG:
                s1 = K[j]->avg_pool2d_fwd(ctx, &g, x, y[j]);
                s2 = K[j]->avg_pool2d_bwd(ctx, &g, gy, gx[j], acc);
                break;
            case AMAX:
                s1 = K[j]->adaptive_max_pool2d_fwd(ctx, &g, x, y[j], &keep);
                s2 = K[j]->adaptive_max_pool2d_bwd(ctx, &g, x, keep, gy, gx[j], acc);
                break;
            default:
                s1 = K[j]->adaptive_avg_pool2d_fwd(ctx, &g, x, y[j]);
                s2 = K[j]->adaptive_avg_pool2d_bwd(ctx, &g, gy, gx[j], acc);
                break;
            }
            cr_assert(s1 == KILN_STATUS_OK && s2 == KILN_STATUS_OK, "%s: %s", name, kiln_last_error());
        }
        char what[96];
        snprintf(what, sizeof what, "%s: y", name);
        expect_buf(y[0], y[1], ny, what);
        snprintf(what, sizeof what, "%s: gx (acc %d)", name, acc);
        expect_buf(gx[0], gx[1], nx, what);
    }
}

static void compare_kernels(kind k, kiln_pool2d_geom g, const char *name) { compare_kernels_x(k, g, name, false); }

static kiln_pool2d_geom geom(int64_t n, int64_t c, int64_t h, int64_t w, int k, int s, int p, bool ceil, bool incl)
{
    kiln_pool2d_geom g = {.n = n, .c = c, .h = h, .w = w, .kh = k, .kw = k, .sh = s, .sw = s, .ph = p, .pw = p,
                          .count_include_pad = incl};
    int64_t ext = ceil ? s - 1 : 0;
    g.oh = (h + 2 * p - k + ext) / s + 1;
    g.ow = (w + 2 * p - k + ext) / s + 1;
    if (ceil && (g.oh - 1) * s >= h + p) g.oh--;
    if (ceil && (g.ow - 1) * s >= w + p) g.ow--;
    return g;
}

Test(pool, kernels_match_reference)
{
    compare_kernels(MAX, geom(4, 16, 32, 32, 3, 2, 1, false, true), "max 3x3 s2 p1 32x32");
    compare_kernels(MAX, geom(2, 8, 15, 13, 2, 2, 0, false, true), "max 2x2 leftover");
    compare_kernels(MAX, geom(2, 8, 15, 13, 3, 2, 1, true, true), "max ceil");
    compare_kernels_x(MAX, geom(4, 16, 16, 16, 3, 2, 1, false, true), "max with ties", true);
    compare_kernels_x(MAX, geom(4, 16, 16, 16, 2, 2, 0, false, true), "max 2x2 with ties", true);
    kiln_pool2d_geom ag = {.n = 4, .c = 16, .h = 8, .w = 8, .oh = 2, .ow = 4};
    compare_kernels_x(AMAX, ag, "adaptive max (even bins) with ties", true);
    compare_kernels(AVG, geom(4, 16, 32, 32, 3, 2, 1, false, true), "avg include pad");
    compare_kernels(AVG, geom(2, 8, 15, 13, 3, 2, 1, false, false), "avg exclude pad");
    compare_kernels(AVG, geom(2, 8, 14, 14, 3, 2, 1, true, true), "avg ceil include pad (loop)");
    compare_kernels(AVG, geom(2, 8, 14, 14, 3, 2, 1, true, false), "avg ceil exclude pad");
    compare_kernels(AVG, geom(2, 8, 15, 13, 2, 2, 0, false, true), "avg leftover");
    const int64_t sizes[][6] = {{4, 64, 8, 8, 1, 1}, {2, 16, 12, 10, 4, 5}, {2, 16, 13, 10, 3, 4}, {2, 3, 5, 7, 9, 11}};
    for (size_t i = 0; i < sizeof sizes / sizeof *sizes; i++) {
        kiln_pool2d_geom g = {.n = sizes[i][0], .c = sizes[i][1], .h = sizes[i][2], .w = sizes[i][3],
                              .oh = sizes[i][4], .ow = sizes[i][5]};
        char name[64];
        snprintf(name, sizeof name, "adaptive avg %lldx%lld", (long long)g.oh, (long long)g.ow);
        compare_kernels(AAVG, g, name);
        snprintf(name, sizeof name, "adaptive max %lldx%lld", (long long)g.oh, (long long)g.ow);
        compare_kernels(AMAX, g, name);
    }
}

/* ---- bad input -------------------------------------------------------------------------------- */

Test(pool, errors)
{
    const int64_t s4[4] = {1, 2, 4, 4}, s3[3] = {2, 4, 4};
    kiln_tensor *x = kiln_zeros(ctx, KILN_DTYPE_F32, 4, s4);
    kiln_pool2d_params p = kiln_pool2d_default_params(5, 1, 0);
    cr_assert_null(kiln_max_pool2d(ctx, x, &p));
    ku_expect_error("max_pool2d: kernel 5x5 is larger than the padded input 4x4", "kernel too big");
    p = kiln_pool2d_default_params(5, 1, 2);
    cr_assert_not_null(kiln_avg_pool2d(ctx, x, &p), "5x5 fits 4x4 padded by 2: %s", kiln_last_error());
    p = kiln_pool2d_default_params(2, 2, 2);
    cr_assert_null(kiln_avg_pool2d(ctx, x, &p));
    ku_expect_error("avg_pool2d: padding (2, 2) must be >= 0 and at most half the kernel (2, 2)", "padding");
    p = kiln_pool2d_default_params(2, 2, 0);
    cr_assert_null(kiln_max_pool2d(ctx, kiln_zeros(ctx, KILN_DTYPE_F32, 3, s3), &p));
    ku_expect_error("max_pool2d: x has shape (2, 4, 4), expected 4 dims (N, C, H, W)", "bad ndim");
    cr_assert_null(kiln_adaptive_avg_pool2d(ctx, kiln_zeros(ctx, KILN_DTYPE_F32, 3, s3), 1, 1));
    ku_expect_error("adaptive_avg_pool2d: x has shape (2, 4, 4), expected 4 dims", "bad ndim adaptive");
    cr_assert_null(kiln_adaptive_max_pool2d(ctx, x, 0, 2));
    ku_expect_error("adaptive_max_pool2d: output size (0, 2) must be >= 1", "output size");
    cr_assert_null(kiln_max_pool2d(ctx, x, NULL));
    ku_expect_error("max_pool2d: NULL params", "null params");
    kiln_clear_error();
    cr_assert_null(kiln_max_pool2d(ctx, NULL, &p));
    cr_assert_null(kiln_adaptive_avg_pool2d(ctx, NULL, 1, 1));
}
