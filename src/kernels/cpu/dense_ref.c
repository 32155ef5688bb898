/* Reference kernels of the dense family: the plainest correct loops, single-threaded,
 * accumulating in double and using libm's exp/log. Same signatures as the optimized table
 * in dense.c; tests/test_dense.c and test_loss.c compare the two. Not for production use. */
#include "kernels/dense.h"

#include <math.h>
#include <string.h>

static kiln_status ref_gemm(kiln_ctx *ctx, bool ta, bool tb, int64_t m, int64_t n, int64_t k, float alpha,
                            const float *a, int64_t lda, const float *b, int64_t ldb, float beta, float *c,
                            int64_t ldc)
{
    (void)ctx;
    for (int64_t i = 0; i < m; i++)
        for (int64_t j = 0; j < n; j++) {
            double s = 0.0;
            for (int64_t p = 0; p < k; p++)
                s += (double)(ta ? a[p * lda + i] : a[i * lda + p]) * (tb ? b[j * ldb + p] : b[p * ldb + j]);
            float *cij = c + i * ldc + j;
            *cij = (float)(alpha * s + (beta == 0.0f ? 0.0 : (double)beta * *cij));
        }
    return KILN_STATUS_OK;
}

static void ref_fill_rows(kiln_ctx *ctx, const float *b, int64_t m, int64_t n, float *y)
{
    (void)ctx;
    for (int64_t i = 0; i < m; i++)
        for (int64_t j = 0; j < n; j++) y[i * n + j] = b[j];
}

static void ref_col_sum(kiln_ctx *ctx, const float *g, int64_t m, int64_t n, float *gb)
{
    (void)ctx;
    for (int64_t j = 0; j < n; j++) {
        double s = 0.0;
        for (int64_t i = 0; i < m; i++) s += g[i * n + j];
        gb[j] += (float)s;
    }
}

static void ref_embedding_fwd(kiln_ctx *ctx, const int64_t *idx, int64_t n, const float *w, int64_t d, float *out)
{
    (void)ctx;
    for (int64_t i = 0; i < n; i++)
        for (int64_t j = 0; j < d; j++) out[i * d + j] = w[idx[i] * d + j];
}

static kiln_status ref_embedding_bwd(kiln_ctx *ctx, const int64_t *idx, int64_t n, const float *gy, int64_t v,
                                     int64_t d, float *gw)
{
    (void)ctx;
    (void)v;
    for (int64_t i = 0; i < n; i++)
        for (int64_t j = 0; j < d; j++) gw[idx[i] * d + j] += gy[i * d + j];
    return KILN_STATUS_OK;
}

/* The max *m of the c values x[0], x[st], ... and log sum exp(x - m), in double; the
 * callers form (x - m) - log s, as the optimised kernels do. */
static double logsum_d(const float *x, int64_t c, int64_t st, double *m)
{
    double s = 0.0;
    *m = -INFINITY;
    for (int64_t j = 0; j < c; j++) *m = x[j * st] > *m ? x[j * st] : *m;
    for (int64_t j = 0; j < c; j++) s += exp(x[j * st] - *m);
    return log(s);
}

static void ref_softmax_fwd(kiln_ctx *ctx, const float *x, float *y, int64_t outer, int64_t c, int64_t inner,
                            bool lg)
{
    (void)ctx;
    for (int64_t o = 0; o < outer; o++)
        for (int64_t k = 0; k < inner; k++) {
            const float *xp = x + o * c * inner + k;
            float *yp = y + o * c * inner + k;
            double m, ls = logsum_d(xp, c, inner, &m);
            for (int64_t j = 0; j < c; j++) {
                double lp = (xp[j * inner] - m) - ls;
                yp[j * inner] = (float)(lg ? lp : exp(lp));
            }
        }
}

static void ref_softmax_bwd(kiln_ctx *ctx, const float *y, const float *gy, float *gx, int64_t outer, int64_t c,
                            int64_t inner, bool lg)
{
    (void)ctx;
    for (int64_t o = 0; o < outer; o++)
        for (int64_t k = 0; k < inner; k++) {
            int64_t b = o * c * inner + k;
            double s = 0.0;
            for (int64_t j = 0; j < c; j++) s += lg ? gy[b + j * inner] : (double)gy[b + j * inner] * y[b + j * inner];
            for (int64_t j = 0; j < c; j++) {
                int64_t q = b + j * inner;
                gx[q] += (float)(lg ? gy[q] - exp(y[q]) * s : y[q] * (gy[q] - s));
            }
        }
}

static double ref_xent_fwd(kiln_ctx *ctx, const float *x, const int64_t *t, int64_t outer, int64_t c,
                           int64_t inner, int64_t ignore_index, float smoothing, float *loss, float *stat)
{
    (void)ctx;
    double sum = 0.0;
    for (int64_t p = 0; p < outer * inner; p++) {
        if (c == 0) {
            loss[p] = stat[2 * p] = stat[2 * p + 1] = 0.0f;
            continue;
        }
        const float *xp = x + (p / inner) * c * inner + p % inner;
        double m, ls = logsum_d(xp, c, inner, &m), sm = 0.0;
        stat[2 * p] = (float)m; /* a float logit: exact */
        stat[2 * p + 1] = (float)ls;
        if (t[p] == ignore_index) {
            loss[p] = 0.0f;
            continue;
        }
        for (int64_t j = 0; j < c; j++) sm += ls - (xp[j * inner] - m);
        loss[p] = (float)((1.0 - smoothing) * (ls - (xp[t[p] * inner] - m)) + smoothing / (double)c * sm);
        sum += loss[p];
    }
    return sum;
}

static void ref_xent_bwd(kiln_ctx *ctx, const float *x, const int64_t *t, const float *stat, const float *g,
                         int64_t g_stride, int64_t outer, int64_t c, int64_t inner, int64_t ignore_index,
                         float smoothing, float *gx, bool overwrite)
{
    (void)ctx;
    for (int64_t p = 0; p < outer * inner; p++) {
        int64_t b = (p / inner) * c * inner + p % inner;
        for (int64_t j = 0; j < c; j++) {
            int64_t q = b + j * inner;
            double v = 0.0;
            if (t[p] != ignore_index)
                v = g[p * g_stride] * (exp(((double)x[q] - stat[2 * p]) - stat[2 * p + 1]) - smoothing / (double)c -
                                       (j == t[p] ? 1.0 - smoothing : 0.0));
            gx[q] = (float)(overwrite ? v : gx[q] + v);
        }
    }
}

static double ref_ploss1(kiln_ploss_kind kind, double x, double y, double pw, double *dx, double *dy)
{
    double sp = fmax(-x, 0.0) + log1p(exp(-fabs(x))); /* softplus(-x) */
    switch (kind) {
    case KILN_PLOSS_MSE: *dx = 2 * (x - y); *dy = -*dx; return (x - y) * (x - y);
    case KILN_PLOSS_L1: *dx = (x > y) - (x < y); *dy = -*dx; return fabs(x - y);
    case KILN_PLOSS_BCE:
        *dx = (pw * y + 1 - y) / (1 + exp(-x)) - pw * y;
        *dy = -x + (pw - 1) * sp;
        return (1 - y) * x + (1 + (pw - 1) * y) * sp;
    }
    return 0.0;
}

static double ref_ploss_fwd(kiln_ctx *ctx, kiln_ploss_kind kind, const float *x, const float *y, const float *pw,
                            int64_t n, float *out)
{
    (void)ctx;
    double s = 0.0, dx, dy;
    for (int64_t i = 0; i < n; i++) {
        double l = ref_ploss1(kind, x[i], y[i], pw ? pw[i] : 1.0, &dx, &dy);
        if (out) out[i] = (float)l;
        s += l;
    }
    return s;
}

static void ref_ploss_bwd(kiln_ctx *ctx, kiln_ploss_kind kind, const float *x, const float *y, const float *pw,
                          int64_t n, const float *g, int64_t g_stride, float *gx, float *gy)
{
    (void)ctx;
    for (int64_t i = 0; i < n; i++) {
        double dx, dy;
        ref_ploss1(kind, x[i], y[i], pw ? pw[i] : 1.0, &dx, &dy);
        if (gx) gx[i] += (float)(g[i * g_stride] * dx);
        if (gy) gy[i] += (float)(g[i * g_stride] * dy);
    }
}

static void ref_dropout_fwd(kiln_ctx *ctx, uint64_t seed, uint64_t first, int64_t n, float p, float scale,
                            float *mask, const float *x, float *y)
{
    (void)ctx;
    for (int64_t i = 0; i < n; i++) {
        float m = kiln_philox_uniform(seed, first + (uint64_t)i) >= p ? scale : 0.0f;
        if (mask) mask[i] = m;
        if (y) y[i] = x[i] * m;
    }
}

static void ref_dropout_bwd(kiln_ctx *ctx, uint64_t seed, uint64_t first, int64_t n, float p, float scale,
                            const float *gy, float *gx)
{
    (void)ctx;
    for (int64_t i = 0; i < n; i++) gx[i] += gy[i] * (kiln_philox_uniform(seed, first + (uint64_t)i) >= p ? scale : 0.0f);
}

const kiln_dense_kernels kiln__ref_dense = {
    .gemm = ref_gemm,
    .fill_rows = ref_fill_rows,
    .col_sum = ref_col_sum,
    .index_check = kiln__index_check,
    .embedding_fwd = ref_embedding_fwd,
    .embedding_bwd = ref_embedding_bwd,
    .rows_mark = kiln__rows_mark,
    .softmax_fwd = ref_softmax_fwd,
    .softmax_bwd = ref_softmax_bwd,
    .xent_fwd = ref_xent_fwd,
    .xent_bwd = ref_xent_bwd,
    .ploss_fwd = ref_ploss_fwd,
    .ploss_bwd = ref_ploss_bwd,
    .dropout_fwd = ref_dropout_fwd,
    .dropout_bwd = ref_dropout_bwd,
};
