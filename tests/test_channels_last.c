/* Channels-last (NHWC) tensors: kiln_to_channels_last, and every op that keeps the layout
 * (conv2d, 2-D pooling, relu and the other unary ops, add of two channels-last tensors) or
 * takes a contiguous copy (broadcasting binary ops, reductions, concat, views) gives the
 * same values and the same gradients as on plain NCHW input. Each case runs twice from the
 * same data: once on contiguous leaves, once with the 4-D leaves passed through
 * kiln_to_channels_last, then compares outputs and every leaf's gradient. */
#include "util/ku.h"

#include <stdlib.h>
#include <string.h>

static kiln_ctx *ctx;
static void setup(void) { ctx = ku_ctx(); }
static void teardown(void) { ku_ctx_free(ctx); }
TestSuite(channels_last, .init = setup, .fini = teardown);

#define MAX_IN 4

typedef kiln_tensor *(*case_fn)(kiln_ctx *ctx, kiln_tensor **in);

typedef struct cl_case {
    const char *name;
    case_fn fn;
    int n_in;
    int ndim[MAX_IN];
    int64_t shape[MAX_IN][4];
    bool to_cl[MAX_IN];  /* convert this input in the channels-last run */
    int out_cl;          /* 1: the channels-last run's output must be channels-last */
} cl_case;

/* One run: leaves from data (requires grad), optionally converted, y = fn, backward of
 * sum(y * r). Returns y; grads of the leaves in leaves[i]->grad. */
static kiln_tensor *run(const cl_case *c, float *const *data, const float *r, bool cl, kiln_tensor **leaves)
{
    kiln_tensor *in[MAX_IN];
    for (int i = 0; i < c->n_in; i++) {
        leaves[i] = kiln_from_data(ctx, KILN_DTYPE_F32, c->ndim[i], c->shape[i], data[i]);
        cr_assert(leaves[i]);
        kiln_set_requires_grad(leaves[i], true);
        in[i] = cl && c->to_cl[i] ? kiln_to_channels_last(ctx, leaves[i]) : leaves[i];
        cr_assert(in[i], "%s: to_channels_last: %s", c->name, kiln_last_error());
        if (cl && c->to_cl[i]) cr_assert(kiln_is_channels_last(in[i]), "%s: input %d not channels-last", c->name, i);
    }
    kiln_tensor *y = c->fn(ctx, in);
    cr_assert(y, "%s: %s", c->name, kiln_last_error());
    if (cl && c->out_cl) cr_assert(kiln_is_channels_last(y), "%s: output lost the channels-last layout", c->name);
    if (!r) return y;
    kiln_tensor *rt = kiln_from_data(ctx, KILN_DTYPE_F32, y->ndim, y->shape, r);
    kiln_tensor *loss = kiln_sum(ctx, kiln_mul(ctx, y, rt));
    cr_assert(loss, "%s: loss: %s", c->name, kiln_last_error());
    cr_assert(kiln_backward(ctx, loss) >= 0, "%s: backward: %s", c->name, kiln_last_error());
    return y;
}

static void check(const cl_case *c, double tol)
{
    float *data[MAX_IN];
    for (int i = 0; i < c->n_in; i++) {
        int64_t n = 1;
        for (int d = 0; d < c->ndim[i]; d++) n *= c->shape[i][d];
        data[i] = ku_randn_buf(ctx, n);
    }
    kiln_tensor *pl[MAX_IN], *cl[MAX_IN];
    kiln_tensor *y0 = run(c, data, NULL, false, pl); /* shape probe: no backward */
    float *r = ku_randn_buf(ctx, kiln_numel(y0));
    kiln_tensor *ya = run(c, data, r, false, pl);
    kiln_tensor *yb = run(c, data, r, true, cl);
    char what[128];
    snprintf(what, sizeof what, "%s: output", c->name);
    ku_expect_close(kiln_contiguous(ctx, yb), ya, tol, tol, what);
    for (int i = 0; i < c->n_in; i++) {
        snprintf(what, sizeof what, "%s: grad of input %d", c->name, i);
        cr_assert(pl[i]->grad && cl[i]->grad, "%s missing", what);
        ku_expect_close(kiln_contiguous(ctx, cl[i]->grad), pl[i]->grad, tol, tol, what);
    }
}

/* ---- cases ---------------------------------------------------------------------------- */

static kiln_conv2d_params conv_p(int stride, int pad)
{
    kiln_conv2d_params p = kiln_conv2d_default_params();
    p.stride[0] = p.stride[1] = stride;
    p.padding[0] = p.padding[1] = pad;
    return p;
}

static kiln_tensor *f_conv_s1(kiln_ctx *c, kiln_tensor **in)
{
    kiln_conv2d_params p = conv_p(1, 1);
    return kiln_conv2d(c, in[0], in[1], NULL, &p);
}

static kiln_tensor *f_conv_s2_bias(kiln_ctx *c, kiln_tensor **in)
{
    kiln_conv2d_params p = conv_p(2, 1);
    return kiln_conv2d(c, in[0], in[1], in[2], &p);
}

/* conv -> relu -> + x -> conv -> relu: a residual block without batch norm */
static kiln_tensor *f_res_chain(kiln_ctx *c, kiln_tensor **in)
{
    kiln_conv2d_params p = conv_p(1, 1);
    kiln_tensor *h = kiln_relu(c, kiln_conv2d(c, in[0], in[1], NULL, &p));
    h = kiln_add(c, in[0], h);
    return kiln_relu(c, kiln_conv2d(c, h, in[2], NULL, &p));
}

static kiln_tensor *f_relu(kiln_ctx *c, kiln_tensor **in) { return kiln_relu(c, in[0]); }
static kiln_tensor *f_sigmoid(kiln_ctx *c, kiln_tensor **in) { return kiln_sigmoid(c, in[0]); }
static kiln_tensor *f_add(kiln_ctx *c, kiln_tensor **in) { return kiln_add(c, in[0], in[1]); }
static kiln_tensor *f_mul(kiln_ctx *c, kiln_tensor **in) { return kiln_mul(c, in[0], in[1]); }
static kiln_tensor *f_div(kiln_ctx *c, kiln_tensor **in) { return kiln_div(c, in[0], kiln_add_scalar(c, kiln_mul(c, in[1], in[1]), 1.0f)); }
static kiln_tensor *f_mean_hw(kiln_ctx *c, kiln_tensor **in) { return kiln_mean_dims(c, in[0], 2, (const int[]){2, 3}, false); }
static kiln_tensor *f_max_c(kiln_ctx *c, kiln_tensor **in) { return kiln_max_dim(c, in[0], 1, false, NULL); }
static kiln_tensor *f_concat(kiln_ctx *c, kiln_tensor **in)
{
    kiln_tensor *xs[2] = {in[0], in[1]};
    return kiln_concat(c, xs, 2, 1);
}
static kiln_tensor *f_flatten(kiln_ctx *c, kiln_tensor **in) { return kiln_flatten(c, in[0], 1, -1); }
static kiln_tensor *f_permute(kiln_ctx *c, kiln_tensor **in) { return kiln_permute(c, in[0], (const int[]){0, 2, 3, 1}); }
/* max pool, then both adaptive 1x1 pools of it, concatenated (concat takes contiguous
 * copies, so the result is NCHW; the pools in between keep x's layout) */
static kiln_tensor *f_pools(kiln_ctx *c, kiln_tensor **in)
{
    kiln_pool2d_params p = kiln_pool2d_default_params(3, 2, 1);
    kiln_tensor *m = kiln_max_pool2d(c, in[0], &p);
    cr_assert(m && kiln_is_channels_last(m) == kiln_is_channels_last(in[0]), "max pool changed the layout");
    kiln_tensor *a = kiln_adaptive_avg_pool2d(c, m, 1, 1);
    kiln_tensor *b = kiln_adaptive_max_pool2d(c, m, 1, 1);
    cr_assert(a && b && kiln_is_channels_last(a) == kiln_is_channels_last(m) &&
                  kiln_is_channels_last(b) == kiln_is_channels_last(m),
              "adaptive 1x1 pool changed the layout");
    kiln_tensor *xs[2] = {a, b};
    return kiln_concat(c, xs, 2, 1);
}

/* One pooling op for f_pool / f_pool_pair, set by the pooling test before each check(). */
typedef enum pool_op { P_MAX, P_AVG, P_AMAX, P_AAVG } pool_op;

typedef struct pool_spec {
    const char *name;
    pool_op op;
    int k, s, p;        /* max / avg: kernel, stride, padding */
    bool ceil, incl;    /* max / avg: ceil_mode, count_include_pad */
    int oh, ow;         /* adaptive: output size */
    int64_t shape[4];   /* x (N, C, H, W) */
} pool_spec;

static const pool_spec *pool_cur;

static kiln_tensor *pool_apply(kiln_ctx *c, pool_op op, kiln_tensor *x)
{
    const pool_spec *ps = pool_cur;
    kiln_pool2d_params p = kiln_pool2d_default_params(ps->k, ps->s, ps->p);
    p.ceil_mode = ps->ceil;
    p.count_include_pad = ps->incl;
    switch (op) {
    case P_MAX: return kiln_max_pool2d(c, x, &p);
    case P_AVG: return kiln_avg_pool2d(c, x, &p);
    case P_AMAX: return kiln_adaptive_max_pool2d(c, x, ps->oh, ps->ow);
    default: return kiln_adaptive_avg_pool2d(c, x, ps->oh, ps->ow);
    }
}

static kiln_tensor *f_pool(kiln_ctx *c, kiln_tensor **in) { return pool_apply(c, pool_cur->op, in[0]); }

/* max + avg of the same x (adaptive: amax + aavg): the second backward adds into x's
 * gradient (gx_acc), in x's layout. */
static kiln_tensor *f_pool_pair(kiln_ctx *c, kiln_tensor **in)
{
    bool ad = pool_cur->op == P_AMAX || pool_cur->op == P_AAVG;
    return kiln_add(c, pool_apply(c, ad ? P_AMAX : P_MAX, in[0]), pool_apply(c, ad ? P_AAVG : P_AVG, in[0]));
}

#define S4(a, b, c, d) {a, b, c, d}

Test(channels_last, conversion_keeps_values_and_gradient)
{
    const int64_t shapes[][4] = {{2, 3, 4, 5}, {3, 1, 6, 6}, {2, 7, 1, 1}, {1, 16, 3, 2}};
    for (int k = 0; k < 4; k++) {
        const int64_t *s = shapes[k];
        int64_t n = s[0] * s[1] * s[2] * s[3];
        kiln_tensor *x = kiln_from_data(ctx, KILN_DTYPE_F32, 4, s, ku_randn_buf(ctx, n));
        kiln_set_requires_grad(x, true);
        kiln_tensor *y = kiln_to_channels_last(ctx, x);
        cr_assert(y && kiln_is_channels_last(y), "case %d: not channels-last", k);
        cr_assert(kiln_to_channels_last(ctx, y) == y, "case %d: converting twice copied", k);
        ku_expect_close(y, x, 0, 0, "to_channels_last values");
        /* memory is NHWC: element (n, c, h, w) at ((n*H + h)*W + w)*C + c */
        const float *p = y->data;
        for (int64_t i = 0; i < n; i++) {
            int64_t w = i % s[3], h = i / s[3] % s[2], c = i / (s[3] * s[2]) % s[1], b = i / (s[1] * s[2] * s[3]);
            cr_assert_eq(p[((b * s[2] + h) * s[3] + w) * s[1] + c], (float)kiln_get_flat(x, i), "case %d elem %lld", k,
                         (long long)i);
        }
        kiln_tensor *r = kiln_from_data(ctx, KILN_DTYPE_F32, 4, s, ku_randn_buf(ctx, n));
        cr_assert(kiln_backward(ctx, kiln_sum(ctx, kiln_mul(ctx, y, r))) >= 0, "%s", kiln_last_error());
        /* a layout copy moves values without arithmetic: exact, 1e-6 is only a floor */
        ku_expect_close(x->grad, r, 1e-6, 1e-6, "to_channels_last gradient");
        cr_assert(kiln_is_contiguous(x->grad), "a contiguous leaf's gradient must stay contiguous");
    }
    kiln_tensor *v = kiln_zeros(ctx, KILN_DTYPE_F32, 2, (const int64_t[]){3, 4});
    cr_assert_null(kiln_to_channels_last(ctx, v));
    ku_expect_error("expected 4 dims", "to_channels_last of a 2-D tensor");
}

Test(channels_last, conv2d_keeps_layout_and_matches)
{
    const cl_case cases[] = {
        {"conv 8->8 s1", f_conv_s1, 2, {4, 4}, {S4(4, 8, 14, 14), S4(8, 8, 3, 3)}, {true, false}, 1},
        {"conv 1->8 s2 bias", f_conv_s2_bias, 3, {4, 4, 1}, {S4(3, 1, 28, 28), S4(8, 1, 3, 3), S4(8, 0, 0, 0)},
         {true, false, false}, 1},
        {"conv 16->32 s2 bias", f_conv_s2_bias, 3, {4, 4, 1}, {S4(2, 16, 7, 7), S4(32, 16, 3, 3), S4(32, 0, 0, 0)},
         {true, false, false}, 1},
        {"conv 3->5 s2 odd", f_conv_s2_bias, 3, {4, 4, 1}, {S4(2, 3, 9, 6), S4(5, 3, 3, 3), S4(5, 0, 0, 0)},
         {true, false, false}, 1},
        {"residual chain", f_res_chain, 3, {4, 4, 4}, {S4(2, 8, 6, 6), S4(8, 8, 3, 3), S4(4, 8, 3, 3)},
         {true, false, false}, 1},
    };
    /* 1e-4: oneDNN picks another kernel (and summation order) for nhwc than for nchw; the
     * weight gradients sum up to 2*28*28 products of randn values, f32 rounding ~u*sqrt(K)*|terms| */
    for (size_t i = 0; i < sizeof cases / sizeof *cases; i++) check(&cases[i], 1e-4);
}

Test(channels_last, elementwise_keeps_layout_and_matches)
{
    const cl_case cases[] = {
        {"relu", f_relu, 1, {4}, {S4(2, 5, 3, 4)}, {true}, 1},
        {"sigmoid", f_sigmoid, 1, {4}, {S4(2, 5, 3, 4)}, {true}, 1},
        {"add both cl", f_add, 2, {4, 4}, {S4(2, 5, 3, 4), S4(2, 5, 3, 4)}, {true, true}, 1},
        {"mul both cl", f_mul, 2, {4, 4}, {S4(2, 5, 3, 4), S4(2, 5, 3, 4)}, {true, true}, 1},
        {"div both cl", f_div, 2, {4, 4}, {S4(2, 5, 3, 4), S4(2, 5, 3, 4)}, {true, true}, 1},
    };
    /* 1e-5: the same scalar formulas on the same values; only the vectorised exp (sigmoid) and
     * the order of the chunks differ with the layout */
    for (size_t i = 0; i < sizeof cases / sizeof *cases; i++) check(&cases[i], 1e-5);
}

Test(channels_last, mixed_and_layout_blind_ops_match)
{
    const cl_case cases[] = {
        {"add cl + plain", f_add, 2, {4, 4}, {S4(2, 5, 3, 4), S4(2, 5, 3, 4)}, {true, false}, 0},
        {"add cl + channel bias", f_add, 2, {4, 4}, {S4(2, 5, 3, 4), S4(1, 5, 1, 1)}, {true, false}, 0},
        {"mul cl * broadcast cl", f_mul, 2, {4, 4}, {S4(2, 5, 3, 4), S4(2, 5, 1, 1)}, {true, true}, 0},
        {"mean over H, W", f_mean_hw, 1, {4}, {S4(3, 6, 4, 5)}, {true}, 0},
        {"max over C", f_max_c, 1, {4}, {S4(3, 6, 4, 5)}, {true}, 0},
        {"concat along C", f_concat, 2, {4, 4}, {S4(2, 3, 4, 5), S4(2, 4, 4, 5)}, {true, true}, 0},
        {"flatten", f_flatten, 1, {4}, {S4(2, 3, 4, 5)}, {true}, 0},
        {"permute", f_permute, 1, {4}, {S4(2, 3, 4, 5)}, {true}, 0},
    };
    /* 1e-5: a contiguous copy, then the same kernels; the broadcast gradients and the mean
     * sum the same terms in another order (f32, at most 20 terms) */
    for (size_t i = 0; i < sizeof cases / sizeof *cases; i++) check(&cases[i], 1e-5);
}

/* Every 2-D pool on a channels-last x gives a channels-last y with the NCHW run's values
 * and x gradient: oneDNN paths (nhwc descriptors, max workspace), the OpenMP loops (ceil-mode
 * average counting padding past H+P, uneven adaptive bins, overlapping; large enough to run
 * in parallel) and the 1x1 output. Tolerance 1e-5 abs and rel: max pooling is exact, the
 * averages may sum in another order. */
Test(channels_last, pools_keep_layout_and_match)
{
    static const pool_spec specs[] = {
        {"max k3 s2 p1", P_MAX, 3, 2, 1, false, true, 0, 0, {2, 6, 9, 7}},
        {"max k3 s2 p1 ceil", P_MAX, 3, 2, 1, true, true, 0, 0, {2, 5, 8, 8}},
        {"max k3 s2 p0 ceil (short last window)", P_MAX, 3, 2, 0, true, true, 0, 0, {2, 4, 8, 7}},
        {"max k2 s2 16 channels", P_MAX, 2, 2, 0, false, true, 0, 0, {2, 16, 8, 8}},
        {"avg k3 s2 p1 count pad", P_AVG, 3, 2, 1, false, true, 0, 0, {2, 6, 9, 7}},
        {"avg k3 s2 p1 exclude pad", P_AVG, 3, 2, 1, false, false, 0, 0, {2, 6, 9, 7}},
        {"avg k3 s2 p1 ceil count pad (loop)", P_AVG, 3, 2, 1, true, true, 0, 0, {2, 5, 8, 8}},
        {"avg k3 s2 p1 ceil exclude pad", P_AVG, 3, 2, 1, true, false, 0, 0, {2, 5, 8, 8}},
        {"avg k2 s2 p1 ceil count pad (parallel loop)", P_AVG, 2, 2, 1, true, true, 0, 0, {4, 32, 15, 13}},
        {"adaptive max 7x5 -> 3x2", P_AMAX, 0, 0, 0, false, false, 3, 2, {2, 6, 7, 5}},
        {"adaptive max 7x5 -> 1x1", P_AMAX, 0, 0, 0, false, false, 1, 1, {2, 6, 7, 5}},
        {"adaptive max 8x6 -> 4x3 (even)", P_AMAX, 0, 0, 0, false, false, 4, 3, {2, 6, 8, 6}},
        {"adaptive max 15x13 -> 4x6 (parallel loop)", P_AMAX, 0, 0, 0, false, false, 4, 6, {4, 16, 15, 13}},
        {"adaptive avg 7x5 -> 3x2", P_AAVG, 0, 0, 0, false, false, 3, 2, {2, 6, 7, 5}},
        {"adaptive avg 7x5 -> 1x1", P_AAVG, 0, 0, 0, false, false, 1, 1, {2, 6, 7, 5}},
        {"adaptive avg 8x6 -> 4x3 (even)", P_AAVG, 0, 0, 0, false, false, 4, 3, {2, 6, 8, 6}},
        {"adaptive avg 15x13 -> 4x6 (parallel loop)", P_AAVG, 0, 0, 0, false, false, 4, 6, {4, 16, 15, 13}},
    };
    for (size_t i = 0; i < sizeof specs / sizeof *specs; i++) {
        pool_cur = &specs[i];
        const int64_t *sh = specs[i].shape;
        cl_case c = {specs[i].name, f_pool, 1, {4}, {S4(sh[0], sh[1], sh[2], sh[3])}, {true}, 1};
        check(&c, 1e-5);
    }
    /* x feeding two pools: gradient accumulation on the oneDNN and the loop paths */
    static const pool_spec pairs[] = {
        {"max + avg k3 s2 p1", P_MAX, 3, 2, 1, false, true, 0, 0, {2, 6, 9, 7}},
        {"max + avg k3 s2 p1 ceil count pad", P_MAX, 3, 2, 1, true, true, 0, 0, {2, 5, 8, 8}},
        {"adaptive max + avg 7x5 -> 3x2", P_AMAX, 0, 0, 0, false, false, 3, 2, {2, 6, 7, 5}},
        {"adaptive max + avg 8x6 -> 4x3", P_AMAX, 0, 0, 0, false, false, 4, 3, {2, 6, 8, 6}},
    };
    for (size_t i = 0; i < sizeof pairs / sizeof *pairs; i++) {
        pool_cur = &pairs[i];
        const int64_t *sh = pairs[i].shape;
        cl_case c = {pairs[i].name, f_pool_pair, 1, {4}, {S4(sh[0], sh[1], sh[2], sh[3])}, {true}, 1};
        check(&c, 1e-5);
    }
    const cl_case chain = {"max pool + adaptive concat pool", f_pools, 1, {4}, {S4(2, 6, 9, 7)}, {true}, 0};
    check(&chain, 1e-5);
}

/* The whole lesson-7 net (conv, batch norm, relu, residual adds, flatten) in channels-last
 * mode: the same logits, loss, parameter gradients and running statistics as in NCHW. */
Test(channels_last, simple_cnn_step_matches_nchw)
{
    kiln_model *m = kiln_simple_cnn_new(1, 10);
    cr_assert(m && kiln_model_alloc(m, ctx) >= 0, "%s", kiln_last_error());
    kiln_model_train(m, true);
    const int64_t xs[4] = {16, 1, 28, 28};
    float *xd = ku_randn_buf(ctx, 16 * 28 * 28);
    int64_t labels[16];
    for (int i = 0; i < 16; i++) labels[i] = (i * 7) % 10;
    kiln_store *st = kiln_model_store(m);
    size_t n = kiln_store_count(st);
    /* snapshot every store entry (params and running stats) to restore before run 2 */
    float **start = calloc(n, sizeof *start), **grads = calloc(n, sizeof *grads), **after = calloc(n, sizeof *after);
    for (size_t i = 0; i < n; i++) {
        kiln_tensor *t = kiln_store_at(st, i);
        size_t b = (size_t)kiln_numel(t) * sizeof(float);
        start[i] = malloc(b), grads[i] = malloc(b), after[i] = malloc(b);
        memcpy(start[i], t->data, b);
    }
    kiln_tensor *logits[2];
    for (int run = 0; run < 2; run++) {
        kiln_model_set_channels_last(m, run == 1);
        cr_assert_eq(kiln_model_channels_last(m), run == 1);
        kiln_model_zero_grad(m);
        for (size_t i = 0; i < n; i++) {
            kiln_tensor *t = kiln_store_at(st, i);
            memcpy(t->data, start[i], (size_t)kiln_numel(t) * sizeof(float));
        }
        kiln_tensor *x = kiln_from_data(ctx, KILN_DTYPE_F32, 4, xs, xd);
        kiln_tensor *y = kiln_from_data(ctx, KILN_DTYPE_I64, 1, (const int64_t[]){16}, labels);
        logits[run] = kiln_model_forward(m, ctx, x);
        cr_assert(logits[run], "run %d: %s", run, kiln_last_error());
        cr_assert(kiln_is_contiguous(logits[run]), "run %d: logits must come out contiguous", run);
        kiln_tensor *loss = kiln_cross_entropy(ctx, logits[run], y, NULL);
        cr_assert(loss && kiln_backward(ctx, loss) >= 0, "run %d: %s", run, kiln_last_error());
        for (size_t i = 0; i < n; i++) {
            kiln_tensor *t = kiln_store_at(st, i);
            size_t b = (size_t)kiln_numel(t) * sizeof(float);
            if (run == 0) {
                memcpy(after[i], t->data, b);
                if (t->grad) memcpy(grads[i], t->grad->data, b);
                continue;
            }
            char what[96];
            snprintf(what, sizeof what, "store entry %zu (value after the forward: running stats)", i);
            /* batch statistics sum N*H*W values in another order per layout: 1e-5 + 1e-4 rel */
            ku_expect_arrays(t->data, after[i], kiln_numel(t), 1e-5, 1e-4, what);
            if (!t->grad) continue;
            snprintf(what, sizeof what, "store entry %zu (gradient)", i);
            /* through every layer of other oneDNN conv kernels (nhwc vs nchw) and batch-norm
             * reductions; the weight gradients cancel in their sums, so 1e-4 abs + 1e-3 rel */
            ku_expect_arrays(t->grad->data, grads[i], kiln_numel(t), 1e-4, 1e-3, what);
        }
    }
    /* logits (|y| ~ 1) after the conv stack in other kernel orders: 1e-4 abs and rel */
    ku_expect_close(logits[1], logits[0], 1e-4, 1e-4, "logits, nhwc vs nchw");
    for (size_t i = 0; i < n; i++) free(start[i]), free(grads[i]), free(after[i]);
    free(start), free(grads), free(after);
    kiln_model_free(m);
}

/* A frozen weight with a trainable bias: the bias gradient is summed by kiln itself (not
 * by oneDNN's backward-weights), over NHWC rows in channels-last mode. */
Test(channels_last, conv2d_bias_gradient_with_frozen_weight)
{
    const int64_t xs[4] = {3, 4, 5, 6}, ws[4] = {7, 4, 3, 3}, bs[1] = {7};
    float *xd = ku_randn_buf(ctx, 3 * 4 * 5 * 6), *wd = ku_randn_buf(ctx, 7 * 4 * 9), *bd = ku_randn_buf(ctx, 7);
    float *rd = ku_randn_buf(ctx, 3 * 7 * 5 * 6);
    kiln_tensor *gb[2];
    for (int cl = 0; cl < 2; cl++) {
        kiln_tensor *x = kiln_from_data(ctx, KILN_DTYPE_F32, 4, xs, xd);
        kiln_tensor *w = kiln_from_data(ctx, KILN_DTYPE_F32, 4, ws, wd);
        kiln_tensor *b = kiln_from_data(ctx, KILN_DTYPE_F32, 1, bs, bd);
        kiln_set_requires_grad(b, true);
        kiln_conv2d_params p = conv_p(1, 1);
        kiln_tensor *y = kiln_conv2d(ctx, cl ? kiln_to_channels_last(ctx, x) : x, w, b, &p);
        cr_assert(y && kiln_is_channels_last(y) == (cl == 1), "%s", kiln_last_error());
        kiln_tensor *r = kiln_from_data(ctx, KILN_DTYPE_F32, 4, y->shape, rd);
        cr_assert(kiln_backward(ctx, kiln_sum(ctx, kiln_mul(ctx, y, r))) >= 0, "%s", kiln_last_error());
        gb[cl] = b->grad;
    }
    /* the same 90 terms per channel summed in NHWC row order vs NCHW plane order: 1e-5 */
    ku_expect_close(gb[1], gb[0], 1e-5, 1e-5, "bias gradient, nhwc vs nchw");
}
