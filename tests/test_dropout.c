/* Tests of dropout. PyTorch's RNG cannot be matched, so these check the definition: keep
 * rate (1,000,000 draws, |rate - (1-p)| < 0.003, about 6 standard deviations), exact
 * 1/(1-p) scaling, the mask formula (uniform(seed, first + i) >= p), identity in eval and
 * for p = 0, determinism for one seed across 1 and 2 threads, gradient = mask * gy
 * (exact), the mask drawn again in the backward when it is not kept (the same bits), and the
 * broadcast reuse of one mask across time steps and on a weight matrix. */
#include "util/ku.h"
#include "kernels/dense.h"

#include <math.h>
#include <string.h>

static kiln_tensor *rnd(kiln_ctx *ctx, int nd, const int64_t *shape)
{
    kiln_tensor *t = kiln_randn(ctx, nd, shape, 0.0f, 1.0f);
    cr_assert(t, "randn: %s", kiln_last_error());
    kiln_set_requires_grad(t, true);
    return t;
}

Test(dropout, keep_rate_scaling_and_mask_formula)
{
    kiln_ctx *ctx = ku_ctx();
    const int64_t shape[2] = {1000, 1000};
    const float p = 0.3f, scale = 1.0f / (1.0f - p);
    kiln_tensor *x = kiln_full(ctx, 2, shape, 2.0f);
    kiln_rng_state s0 = kiln_rng_get(ctx);
    kiln_tensor *mask = NULL;
    kiln_tensor *y = kiln_dropout(ctx, x, p, true, &mask);
    cr_assert(y && mask, "%s", kiln_last_error());
    cr_assert(kiln_rng_get(ctx).counter == s0.counter + 1000000, "dropout takes one counter per element");
    const float *Y = y->data, *M = mask->data;
    int64_t kept = 0;
    for (int64_t i = 0; i < 1000000; i++) {
        bool keep = kiln_philox_uniform(s0.seed, s0.counter + (uint64_t)i) >= p;
        cr_assert(M[i] == (keep ? scale : 0.0f), "mask[%lld] = %g", (long long)i, M[i]);
        cr_assert(Y[i] == 2.0f * M[i], "y[%lld] = %g", (long long)i, Y[i]);
        kept += keep;
    }
    double rate = (double)kept / 1e6;
    cr_assert(fabs(rate - 0.7) < 0.003, "keep rate %g, expected 0.7", rate);
    ku_ctx_free(ctx);
}

Test(dropout, identity_in_eval_and_p0_zero_at_p1)
{
    kiln_ctx *ctx = ku_ctx();
    kiln_tensor *x = rnd(ctx, 2, (int64_t[]){3, 4}), *mask = (kiln_tensor *)1;
    cr_assert(kiln_dropout(ctx, x, 0.5f, false, &mask) == x && mask == NULL, "eval returns x itself");
    cr_assert(kiln_dropout(ctx, x, 0.0f, true, NULL) == x, "p = 0 returns x itself");
    kiln_tensor *y = kiln_dropout(ctx, x, 1.0f, true, NULL);
    cr_assert(y);
    for (int i = 0; i < 12; i++) cr_assert(((float *)y->data)[i] == 0.0f, "p = 1 drops everything");
    cr_assert_null(kiln_dropout(ctx, x, -0.1f, true, NULL));
    ku_expect_error("dropout: p -0.1 is outside [0, 1]", "bad p");
    cr_assert_null(kiln_dropout_mask(ctx, 2, (int64_t[]){2, 2}, 1.5f));
    ku_expect_error("dropout_mask: p 1.5 is outside [0, 1]", "bad mask p");
    kiln_tensor *xi = kiln_zeros(ctx, KILN_DTYPE_I64, 1, (int64_t[]){3});
    cr_assert_null(kiln_dropout(ctx, xi, 0.5f, true, NULL));
    ku_expect_error("dropout: x must be f32, got i64", "dtype");
    ku_ctx_free(ctx);
}

Test(dropout, same_seed_same_mask_for_1_and_2_threads)
{
    kiln_ctx *ctx = ku_ctx();
    const int64_t shape[3] = {8, 70, 1152}; /* large enough for the parallel path */
    kiln_tensor *x = kiln_full(ctx, 3, shape, 1.0f);
    int64_t n = kiln_numel(x);
    float *first = kiln_step_alloc(ctx, (size_t)n * 4);
    for (int threads = 1; threads <= 2; threads++) {
        kiln_ctx_set_threads(ctx, threads);
        kiln_rng_seed(ctx, 99);
        kiln_tensor *y = kiln_dropout(ctx, x, 0.4f, true, NULL);
        kiln_tensor *m = kiln_dropout_mask(ctx, 3, shape, 0.25f);
        cr_assert(y && m, "%s", kiln_last_error());
        if (threads == 1) {
            memcpy(first, y->data, (size_t)n * 4);
            continue;
        }
        cr_assert(memcmp(first, y->data, (size_t)n * 4) == 0, "dropout differs between 1 and 2 threads");
    }
    /* the reference kernel gives the same mask */
    float *m1 = kiln_step_alloc(ctx, (size_t)n * 4), *m2 = kiln_step_alloc(ctx, (size_t)n * 4);
    kiln__cpu_dense.dropout_fwd(ctx, 5, 77, n, 0.4f, 2.0f, m1, NULL, NULL);
    kiln__ref_dense.dropout_fwd(ctx, 5, 77, n, 0.4f, 2.0f, m2, NULL, NULL);
    cr_assert(memcmp(m1, m2, (size_t)n * 4) == 0, "optimized and reference masks differ");
    ku_ctx_free(ctx);
}

Test(dropout, gradient_is_mask_times_gy)
{
    kiln_ctx *ctx = ku_ctx();
    kiln_tensor *x = rnd(ctx, 2, (int64_t[]){300, 200});
    kiln_tensor *mask = NULL;
    kiln_tensor *y = kiln_dropout(ctx, x, 0.5f, true, &mask);
    kiln_tensor *gy = kiln_randn(ctx, 2, y->shape, 0.0f, 1.0f);
    cr_assert(kiln_backward_with(ctx, y, gy) == KILN_STATUS_OK, "%s", kiln_last_error());
    const float *G = x->grad->data, *M = mask->data, *GY = gy->data;
    for (int64_t i = 0; i < 60000; i++) cr_assert(G[i] == M[i] * GY[i], "grad[%lld]", (long long)i);
    ku_ctx_free(ctx);
}

/* Without mask_out the mask is not kept: the backward draws it again. The same output bit for bit
 * and the same gradient as with the kept mask (the same seed and counters), onto a gradient that already
 * holds values (within a rounding of each term: a compiler may fuse the multiply-add); the
 * kernels that draw it again (cpu, reference) agree with the kept mask, on 1 and 2 threads. */
Test(dropout, mask_drawn_again_in_the_backward)
{
    kiln_ctx *ctx = ku_ctx();
    const int64_t shape[2] = {300, 517};
    const int64_t n = shape[0] * shape[1];
    kiln_tensor *x = rnd(ctx, 2, shape), *gy = kiln_randn(ctx, 2, shape, 0.0f, 1.0f);
    kiln_tensor *g0 = kiln_randn(ctx, 2, shape, 0.0f, 1.0f);
    cr_assert(gy && g0);
    kiln_rng_state s0 = kiln_rng_get(ctx);
    float *out[2], *grad[2];
    kiln_tensor *mask = NULL;
    for (int kept = 0; kept < 2; kept++) {
        kiln_rng_set(ctx, s0);
        x->grad = kiln_contiguous(ctx, kiln_add_scalar(ctx, g0, 0.0f)); /* a gradient with values already */
        kiln_tensor *y = kiln_dropout(ctx, x, 0.35f, true, kept ? &mask : NULL);
        cr_assert(y && x->grad, "%s", kiln_last_error());
        cr_assert(kiln_backward_with(ctx, y, gy) == KILN_STATUS_OK, "%s", kiln_last_error());
        out[kept] = y->data;
        grad[kept] = x->grad->data;
    }
    cr_assert(memcmp(out[0], out[1], (size_t)n * 4) == 0, "output: drawn again vs kept mask");
    /* gradient: g0 + gy * mask both ways; within a rounding of each term (a compiler may fuse the
     * multiply-add in one kernel and not in the other) */
    const float *G0 = g0->data, *GY = gy->data, *MK = mask->data;
    for (int64_t i = 0; i < n; i++)
        cr_assert(fabsf(grad[0][i] - grad[1][i]) <= 1e-6f * (fabsf(G0[i]) + fabsf(GY[i] * MK[i])),
                  "gradient [%lld]: drawn again %.9g, kept mask %.9g", (long long)i, (double)grad[0][i],
                  (double)grad[1][i]);
    int64_t dropped = 0;
    for (int64_t i = 0; i < n; i++) dropped += ((float *)mask->data)[i] == 0.0f;
    cr_assert(dropped > n / 4 && dropped < n / 2, "%lld of %lld dropped", (long long)dropped, (long long)n);
    /* the kernels themselves: fwd without a mask, bwd against the kept mask */
    float *y1 = kiln_step_alloc(ctx, (size_t)n * 4), *y2 = kiln_step_alloc(ctx, (size_t)n * 4);
    float *a1 = kiln_step_alloc(ctx, (size_t)n * 4), *a2 = kiln_step_alloc(ctx, (size_t)n * 4);
    float *m = kiln_step_alloc(ctx, (size_t)n * 4), *want = kiln_step_alloc(ctx, (size_t)n * 4);
    const float *X = x->data;
    kiln__ref_dense.dropout_fwd(ctx, 5, 77, n, 0.4f, 1.0f / 0.6f, m, NULL, NULL);
    for (int64_t i = 0; i < n; i++) want[i] = G0[i] + GY[i] * m[i];
    for (int threads = 1; threads <= 2; threads++) {
        kiln_ctx_set_threads(ctx, threads);
        kiln__cpu_dense.dropout_fwd(ctx, 5, 77, n, 0.4f, 1.0f / 0.6f, NULL, X, y1);
        kiln__ref_dense.dropout_fwd(ctx, 5, 77, n, 0.4f, 1.0f / 0.6f, NULL, X, y2);
        memcpy(a1, G0, (size_t)n * 4);
        memcpy(a2, G0, (size_t)n * 4);
        kiln__cpu_dense.dropout_bwd(ctx, 5, 77, n, 0.4f, 1.0f / 0.6f, GY, a1);
        kiln__ref_dense.dropout_bwd(ctx, 5, 77, n, 0.4f, 1.0f / 0.6f, GY, a2);
        for (int64_t i = 0; i < n; i++) {
            cr_assert(y1[i] == X[i] * m[i] && y2[i] == y1[i], "fwd without a mask [%lld], %d threads", (long long)i,
                      threads);
            float tol = 1e-6f * (fabsf(G0[i]) + fabsf(GY[i] * m[i]));
            cr_assert(fabsf(a1[i] - want[i]) <= tol && fabsf(a2[i] - want[i]) <= tol, "bwd [%lld], %d threads",
                      (long long)i, threads);
        }
    }
    ku_ctx_free(ctx);
}

Test(dropout, mask_reused_across_time_steps)
{
    kiln_ctx *ctx = ku_ctx();
    const int64_t B = 3, T = 5, H = 7;
    kiln_tensor *x = rnd(ctx, 3, (int64_t[]){B, T, H});
    kiln_tensor *m = kiln_dropout_mask(ctx, 3, (int64_t[]){B, 1, H}, 0.5f); /* (B, 1, H) */
    cr_assert(m && !m->requires_grad, "%s", kiln_last_error());
    kiln_tensor *y = kiln_apply_mask(ctx, x, m); /* (B, T, H) */
    cr_assert(y && y->ndim == 3 && y->shape[1] == T, "%s", kiln_last_error());
    kiln_tensor *gy = kiln_randn(ctx, 3, y->shape, 0.0f, 1.0f);
    cr_assert(kiln_backward_with(ctx, y, gy) == KILN_STATUS_OK, "%s", kiln_last_error());
    const float *X = x->data, *M = m->data, *Y = y->data, *G = x->grad->data, *GY = gy->data;
    for (int64_t b = 0; b < B; b++)
        for (int64_t t = 0; t < T; t++)
            for (int64_t h = 0; h < H; h++) {
                int64_t i = (b * T + t) * H + h;
                float mv = M[b * H + h];
                cr_assert(mv == 0.0f || mv == 2.0f);
                cr_assert(Y[i] == X[i] * mv && G[i] == GY[i] * mv, "(%lld, %lld, %lld)", (long long)b,
                          (long long)t, (long long)h);
            }
    kiln_tensor *bad = kiln_dropout_mask(ctx, 3, (int64_t[]){B, 2, H}, 0.5f);
    cr_assert_null(kiln_apply_mask(ctx, x, bad));
    ku_expect_error("apply_mask: shapes (3, 5, 7) and (3, 2, 7) do not broadcast", "mask shape");
    ku_ctx_free(ctx);
}

/* Large enough (>= 1 MiB) for the backward to write x's gradient over y's (apply_mask_bwd): the
 * values as above; x used again by another op (its gradient accumulates onto the donated buffer);
 * a mask that requires grad gets gy * x from gy as it was. */
Test(dropout, apply_mask_gradient_written_over_gy)
{
    kiln_ctx *ctx = ku_ctx();
    const int64_t B = 4, T = 70, H = 1152, n = B * T * H;
    kiln_tensor *x = rnd(ctx, 3, (int64_t[]){B, T, H});
    kiln_tensor *m = kiln_dropout_mask(ctx, 3, (int64_t[]){B, 1, H}, 0.5f);
    kiln_tensor *gy = kiln_randn(ctx, 3, x->shape, 0.0f, 1.0f);
    cr_assert(m && gy);
    for (int twice = 0; twice < 2; twice++) {
        x->grad = NULL;
        kiln_tensor *y = kiln_apply_mask(ctx, x, m);
        if (twice) y = kiln_add(ctx, y, kiln_mul_scalar(ctx, x, 3.0f)); /* x's gradient gets 3 more */
        cr_assert(y, "%s", kiln_last_error());
        cr_assert(kiln_backward_with(ctx, y, gy) == KILN_STATUS_OK, "%s", kiln_last_error());
        const float *M = m->data, *G = x->grad->data, *GY = gy->data;
        for (int64_t i = 0; i < n; i++) {
            int64_t b = i / (T * H), h = i % H;
            float want = GY[i] * M[b * H + h] + (twice ? GY[i] * 3.0f : 0.0f);
            cr_assert(fabsf(G[i] - want) <= 1e-6f * (fabsf(want) + 1.0f), "twice %d: grad[%lld] %g, want %g", twice,
                      (long long)i, (double)G[i], (double)want);
        }
    }
    /* a mask with a gradient: gy * x summed over T, from gy before it was overwritten */
    kiln_tensor *mg = kiln_contiguous(ctx, kiln_add_scalar(ctx, m, 0.0f));
    cr_assert_not_null(mg);
    kiln_set_requires_grad(mg, true);
    x->grad = NULL;
    kiln_tensor *y = kiln_apply_mask(ctx, x, mg);
    cr_assert(y && kiln_backward_with(ctx, y, gy) == KILN_STATUS_OK, "%s", kiln_last_error());
    const float *X = x->data, *GY = gy->data, *GM = mg->grad->data, *G = x->grad->data, *M = m->data;
    for (int64_t b = 0; b < B; b++)
        for (int64_t h = 0; h < H; h++) {
            double s = 0.0;
            for (int64_t t = 0; t < T; t++) s += (double)GY[(b * T + t) * H + h] * X[(b * T + t) * H + h];
            cr_assert(fabs(GM[b * H + h] - s) <= 1e-4 * (fabs(s) + 1.0), "mask grad (%lld, %lld)", (long long)b,
                      (long long)h);
            cr_assert(G[(b * T) * H + h] == GY[(b * T) * H + h] * M[b * H + h]);
        }
    ku_ctx_free(ctx);
}

Test(dropout, weight_drop_gradient_flows_to_w)
{
    kiln_ctx *ctx = ku_ctx();
    const int64_t H = 6;
    kiln_store *s = kiln_store_new();
    kiln_tensor *w = kiln_store_param(s, "weight_hh_l0_raw", 2, (int64_t[]){4 * H, H});
    cr_assert(w && kiln_store_alloc(s) == KILN_STATUS_OK);
    kiln_rng_normal(ctx, w->data, (size_t)(4 * H * H), 0.0f, 1.0f);
    kiln_tensor *m = kiln_dropout_mask(ctx, 2, w->shape, 0.3f); /* (4H, H) */
    kiln_tensor *wd = kiln_apply_mask(ctx, w, m);
    kiln_tensor *h = kiln_randn(ctx, 2, (int64_t[]){2, H}, 0.0f, 1.0f);
    kiln_tensor *g = kiln_linear(ctx, h, wd, NULL); /* (2, 4H) = h @ (w * m)^T */
    cr_assert(g, "%s", kiln_last_error());
    cr_assert(kiln_backward_with(ctx, g, kiln_full(ctx, 2, g->shape, 1.0f)) == KILN_STATUS_OK);
    /* d/dw sum(h (w m)^T) [o][i] = m[o][i] * sum_b h[b][i] */
    const float *G = w->grad->data, *M = m->data, *Hd = h->data;
    for (int64_t o = 0; o < 4 * H; o++)
        for (int64_t i = 0; i < H; i++)
            cr_assert_float_eq(G[o * H + i], M[o * H + i] * (Hd[i] + Hd[H + i]), 1e-5, "w.grad[%lld][%lld]",
                               (long long)o, (long long)i);
    kiln_store_free(s);
    ku_ctx_free(ctx);
}

/* gradchecks: the mask is fixed by restoring the RNG state before every evaluation */
typedef struct gc_user {
    kiln_rng_state rng;
    kiln_tensor *mask;
} gc_user;

static kiln_tensor *g_dropout(kiln_ctx *ctx, kiln_tensor **in, void *user)
{
    gc_user *u = user;
    kiln_rng_set(ctx, u->rng);
    return kiln_dropout(ctx, in[0], 0.4f, true, NULL);
}

static kiln_tensor *g_apply(kiln_ctx *ctx, kiln_tensor **in, void *user)
{
    (void)user;
    return kiln_apply_mask(ctx, in[0], in[1]);
}

Test(dropout, gradcheck)
{
    kiln_ctx *ctx = ku_ctx();
    gc_user u = {.rng = kiln_rng_get(ctx)};
    kiln_tensor *x = rnd(ctx, 2, (int64_t[]){4, 5});
    /* linear in each input: central differences exact up to f32 rounding (measured <= 3e-5) */
    ku_gradcheck(ctx, g_dropout, &x, 1, &u, 1e-2, 1e-4, 1e-3, "dropout");
    /* both operands broadcast and both need a gradient */
    kiln_tensor *in[2] = {rnd(ctx, 3, (int64_t[]){2, 1, 4}), rnd(ctx, 2, (int64_t[]){3, 1})};
    ku_gradcheck(ctx, g_apply, in, 2, NULL, 1e-2, 1e-4, 1e-3, "apply_mask"); /* linear, as above */
    ku_ctx_free(ctx);
}
