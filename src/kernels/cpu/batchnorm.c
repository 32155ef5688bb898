/* Batch normalisation kernels over x seen as (N, C, S): OpenMP loops for the CPU table,
 * and the reference loops the tests compare against.
 *
 * Why not oneDNN here: kiln keeps activations in plain NCHW, and oneDNN 2.6's batch norm
 * for that layout (ncsp_bnorm) measured 7.5 ms forward and 13.5 ms backward on
 * (64, 64, 32, 32) with 2 threads, against 2.1 ms and 2.6 ms for these loops; its fast
 * jit version needs the blocked layout, and reordering there and back costs more than the
 * whole op. The loops work one channel per iteration: a channel's N*S values (256 KB in
 * that benchmark) stay in L2 between the passes, so x and gy are read from memory once.
 * Statistics use two passes (mean, then the biased variance around it) with float SIMD
 * partial sums per (n, c) row added in double. (N, C) inputs (S = 1) run across channels
 * instead, so the inner loops stay contiguous. The running-statistics update (unbiased
 * variance) is the separate batch_norm_running entry, the same for both tables.
 * Channels-last data (g->cl) goes to batchnorm_nhwc.c; the reference entries transpose it
 * to NCHW and back. SyncBatchNorm's two passes (kiln_bn_geom.sums_out, then sums and count;
 * conv.h) reuse these loops: the first stops after the sums, the second takes every rank's
 * sums instead of computing them (the forward then runs as in eval mode).
 *
 * g->relu (batch norm + ReLU, see conv.h): the forward clamps as it writes y; the backward
 * recomputes x * k + sh with bn_coef's k and sh, exactly the forward's arithmetic, and
 * drops gy where that is not > 0 in both of its passes. The relu loops are separate
 * copies so that the plain loops stay as they were. */
#define KILN_CONV_CPU_INTERNAL
#include "core/parallel.h"
#include "kernels/conv.h"

#include <math.h>
#include <string.h>

/* The forward's y = x * k + sh of channel c; the relu backward recomputes it with these. */
static inline void bn_coef(const float *w, const float *b, const float *mean, const float *var, float eps, int64_t c,
                           float *k, float *sh)
{
    *k = (w ? w[c] : 1.0f) / sqrtf(var[c] + eps);
    *sh = (b ? b[c] : 0.0f) - mean[c] * *k;
}

/* max(0, v) with NaN kept, as torch.relu */
static inline float relu1(float v) { return v < 0.0f ? 0.0f : v; }

/* gy where x * k + sh > 0, else 0: threshold_backward of the fused forward's y */
static inline float mask1(float x, float k, float sh, float gy) { return x * k + sh > 0.0f ? gy : 0.0f; }

/* S >= 2: one channel per iteration. */
static void fwd_channels(kiln_ctx *ctx, const kiln_bn_geom *g, bool train, float eps, const float *x, const float *w,
                         const float *b, float *mean, float *var, float *y)
{
    const int64_t s = g->s, cs = g->c * s;
    const double m = (double)(g->n * s);
    KILN_PAR_FOR(ctx, 2 * g->n * cs) /* two passes over x */
    for (int64_t c = 0; c < g->c; c++) {
        if (train) {
            double acc = 0, sq = 0;
            for (int64_t n = 0; n < g->n; n++) {
                const float *p = x + n * cs + c * s;
                float a = 0;
#pragma omp simd reduction(+ : a)
                for (int64_t i = 0; i < s; i++) a += p[i];
                acc += a;
            }
            const float mu = (float)(acc / m);
            for (int64_t n = 0; n < g->n; n++) {
                const float *p = x + n * cs + c * s;
                float a = 0;
#pragma omp simd reduction(+ : a)
                for (int64_t i = 0; i < s; i++) a += (p[i] - mu) * (p[i] - mu);
                sq += a;
            }
            if (g->sums_out) { /* SyncBatchNorm's first pass */
                kiln__bn_put_sums(g, c, m, mu, acc - m * mu, sq);
                continue;
            }
            mean[c] = mu;
            var[c] = (float)(sq / m);
        }
        float k, sh;
        bn_coef(w, b, mean, var, eps, c, &k, &sh);
        for (int64_t n = 0; n < g->n; n++) {
            const float *p = x + n * cs + c * s;
            float *q = y + n * cs + c * s;
            if (g->relu) {
#pragma omp simd
                for (int64_t i = 0; i < s; i++) q[i] = relu1(p[i] * k + sh);
            } else {
#pragma omp simd
                for (int64_t i = 0; i < s; i++) q[i] = p[i] * k + sh;
            }
        }
    }
}

/* S = 1, x (N, C): blocks of channels per iteration, rows inside. The loops over the block's
 * channels (j) are vectorised across channels (for AVX-512 / AVX2 / baseline, picked at load
 * time): each channel's sums still add its rows in order, so the bits are those of the
 * scalar loops. */
#define VEC_ROWS __attribute__((target_clones("avx512f", "avx2", "default")))
#ifdef _OPENMP
#define SIMD_J _Pragma("omp simd")
#else
#define SIMD_J
#endif
#define CB 64
VEC_ROWS static void fwd_rows(kiln_ctx *ctx, const kiln_bn_geom *g, bool train, float eps, const float *x,
                              const float *w, const float *b, float *mean, float *var, float *y)
{
    const int64_t C = g->c;
    KILN_PAR_LOOP(kiln__par_threads(ctx, 2 * g->n * C) /* two passes over x */,
                  for (int64_t c0 = 0; c0 < C; c0 += CB) {
        const int64_t nc = C - c0 < CB ? C - c0 : CB;
        double acc[CB] = {0}, sq[CB] = {0};
        float k[CB], sh[CB];
        if (train) {
            for (int64_t n = 0; n < g->n; n++)
                SIMD_J
                for (int64_t j = 0; j < nc; j++) acc[j] += x[n * C + c0 + j];
            for (int64_t j = 0; j < nc; j++) mean[c0 + j] = (float)(acc[j] / (double)g->n);
            for (int64_t n = 0; n < g->n; n++)
                SIMD_J
                for (int64_t j = 0; j < nc; j++) {
                    double d = x[n * C + c0 + j] - mean[c0 + j];
                    sq[j] += d * d;
                }
            for (int64_t j = 0; j < nc; j++) var[c0 + j] = (float)(sq[j] / (double)g->n);
            if (g->sums_out) { /* SyncBatchNorm's first pass (mean, var: scratch) */
                for (int64_t j = 0; j < nc; j++) {
                    const double n = (double)g->n, mu = mean[c0 + j];
                    kiln__bn_put_sums(g, c0 + j, n, mu, acc[j] - n * mu, sq[j]);
                }
                continue;
            }
        }
        for (int64_t j = 0; j < nc; j++) bn_coef(w, b, mean, var, eps, c0 + j, &k[j], &sh[j]);
        if (g->relu) {
            for (int64_t n = 0; n < g->n; n++)
                SIMD_J
                for (int64_t j = 0; j < nc; j++) y[n * C + c0 + j] = relu1(x[n * C + c0 + j] * k[j] + sh[j]);
        } else {
            for (int64_t n = 0; n < g->n; n++)
                SIMD_J
                for (int64_t j = 0; j < nc; j++) y[n * C + c0 + j] = x[n * C + c0 + j] * k[j] + sh[j];
        }
    });
}

kiln_status kiln__cpu_batch_norm_fwd(kiln_ctx *ctx, const kiln_bn_geom *g, bool train, float eps,
                                     const float *x, const float *w, const float *b, float *mean,
                                     float *var, float *y)
{
    if (train && g->sums) { /* SyncBatchNorm's second pass: every rank's statistics */
        kiln__batch_norm_sync_stats(g, mean, var);
        train = false;
    }
    if (g->cl) return kiln__cpu_batch_norm_fwd_nhwc(ctx, g, train, eps, x, w, b, mean, var, y);
    if (g->s == 1) fwd_rows(ctx, g, train, eps, x, w, b, mean, var, y);
    else fwd_channels(ctx, g, train, eps, x, w, b, mean, var, y);
    return KILN_STATUS_OK;
}

/* gx = k * (gy - a - (x - mean) * q) with k = w * invstd, and in train mode a = mean(gy),
 * q = mean(gy * (x - mean)) * invstd^2 (the statistics' own gradients); eval: a = q = 0.
 * relu: gy masked (mask1) wherever it is read. */
static void bwd_channels(kiln_ctx *ctx, const kiln_bn_geom *g, bool train, float eps, const float *x, const float *w,
                         const float *mean, const float *var, const float *gy, float *gx, bool gx_acc, float *gw,
                         float *gb)
{
    const int64_t s = g->s, cs = g->c * s;
    const double m = g->sums ? g->count : (double)(g->n * s);
    KILN_PAR_FOR(ctx, 2 * g->n * cs) /* two passes over x */
    for (int64_t c = 0; c < g->c; c++) {
        const float mu = mean[c], invstd = 1.0f / sqrtf(var[c] + eps);
        float fk = 0, fsh = 0; /* relu: the forward's coefficients */
        if (g->relu) bn_coef(w, g->b, mean, var, eps, c, &fk, &fsh);
        double sg = 0, sgx = 0;
        if (g->sums) sg = g->sums[c], sgx = g->sums[g->c + c]; /* SyncBatchNorm: every rank's */
        else for (int64_t n = 0; n < g->n; n++) {
            const float *p = x + n * cs + c * s, *q = gy + n * cs + c * s;
            float a = 0, d = 0;
            if (g->relu) {
#pragma omp simd reduction(+ : a, d)
                for (int64_t i = 0; i < s; i++) {
                    const float gm = mask1(p[i], fk, fsh, q[i]);
                    a += gm;
                    d += gm * (p[i] - mu);
                }
            } else {
#pragma omp simd reduction(+ : a, d)
                for (int64_t i = 0; i < s; i++) {
                    a += q[i];
                    d += q[i] * (p[i] - mu);
                }
            }
            sg += a, sgx += d;
        }
        if (g->sums_out) g->sums_out[c] = sg, g->sums_out[g->c + c] = sgx;
        if (gb) gb[c] += (float)sg;
        if (gw) gw[c] += (float)(sgx * invstd);
        if (!gx) continue;
        const float k = (w ? w[c] : 1.0f) * invstd;
        const float a = train ? (float)(sg / m) : 0.0f, qq = train ? (float)(sgx / m) * invstd * invstd : 0.0f;
        for (int64_t n = 0; n < g->n; n++) {
            const float *p = x + n * cs + c * s, *q = gy + n * cs + c * s;
            float *r = gx + n * cs + c * s;
            if (g->relu && gx_acc) {
#pragma omp simd
                for (int64_t i = 0; i < s; i++) r[i] += k * (mask1(p[i], fk, fsh, q[i]) - a - (p[i] - mu) * qq);
            } else if (g->relu) {
#pragma omp simd
                for (int64_t i = 0; i < s; i++) r[i] = k * (mask1(p[i], fk, fsh, q[i]) - a - (p[i] - mu) * qq);
            } else if (gx_acc) {
#pragma omp simd
                for (int64_t i = 0; i < s; i++) r[i] += k * (q[i] - a - (p[i] - mu) * qq);
            } else {
#pragma omp simd
                for (int64_t i = 0; i < s; i++) r[i] = k * (q[i] - a - (p[i] - mu) * qq);
            }
        }
    }
}

VEC_ROWS static void bwd_rows(kiln_ctx *ctx, const kiln_bn_geom *g, bool train, float eps, const float *x,
                              const float *w, const float *mean, const float *var, const float *gy, float *gx,
                              bool gx_acc, float *gw, float *gb)
{
    const int64_t C = g->c;
    const double m = g->sums ? g->count : (double)g->n;
    KILN_PAR_LOOP(kiln__par_threads(ctx, 2 * g->n * C) /* two passes over x */,
                  for (int64_t c0 = 0; c0 < C; c0 += CB) {
        const int64_t nc = C - c0 < CB ? C - c0 : CB;
        double sg[CB] = {0}, sgx[CB] = {0};
        float k[CB], a[CB], qq[CB], invstd[CB], fk[CB], fsh[CB];
        if (g->relu)
            for (int64_t j = 0; j < nc; j++) bn_coef(w, g->b, mean, var, eps, c0 + j, &fk[j], &fsh[j]);
        if (g->sums) { /* SyncBatchNorm: every rank's */
            for (int64_t j = 0; j < nc; j++) sg[j] = g->sums[c0 + j], sgx[j] = g->sums[C + c0 + j];
        } else if (g->relu) {
            for (int64_t n = 0; n < g->n; n++)
                SIMD_J
                for (int64_t j = 0; j < nc; j++) {
                    const int64_t i = n * C + c0 + j;
                    const float gm = mask1(x[i], fk[j], fsh[j], gy[i]);
                    sg[j] += gm;
                    sgx[j] += (double)gm * (x[i] - mean[c0 + j]);
                }
        } else {
            for (int64_t n = 0; n < g->n; n++)
                SIMD_J
                for (int64_t j = 0; j < nc; j++) {
                    const int64_t i = n * C + c0 + j;
                    sg[j] += gy[i];
                    sgx[j] += (double)gy[i] * (x[i] - mean[c0 + j]);
                }
        }
        if (g->sums_out)
            for (int64_t j = 0; j < nc; j++) g->sums_out[c0 + j] = sg[j], g->sums_out[C + c0 + j] = sgx[j];
        for (int64_t j = 0; j < nc; j++) {
            invstd[j] = 1.0f / sqrtf(var[c0 + j] + eps);
            if (gb) gb[c0 + j] += (float)sg[j];
            if (gw) gw[c0 + j] += (float)(sgx[j] * invstd[j]);
            k[j] = (w ? w[c0 + j] : 1.0f) * invstd[j];
            a[j] = train ? (float)(sg[j] / m) : 0.0f;
            qq[j] = train ? (float)(sgx[j] / m) * invstd[j] * invstd[j] : 0.0f;
        }
        if (!gx) continue;
        if (g->relu) {
            for (int64_t n = 0; n < g->n; n++)
                SIMD_J
                for (int64_t j = 0; j < nc; j++) {
                    const int64_t i = n * C + c0 + j;
                    const float d = k[j] * (mask1(x[i], fk[j], fsh[j], gy[i]) - a[j] - (x[i] - mean[c0 + j]) * qq[j]);
                    gx[i] = gx_acc ? gx[i] + d : d;
                }
            continue;
        }
        for (int64_t n = 0; n < g->n; n++)
            SIMD_J
            for (int64_t j = 0; j < nc; j++) {
                const int64_t i = n * C + c0 + j;
                const float d = k[j] * (gy[i] - a[j] - (x[i] - mean[c0 + j]) * qq[j]);
                gx[i] = gx_acc ? gx[i] + d : d;
            }
    });
}

kiln_status kiln__cpu_batch_norm_bwd(kiln_ctx *ctx, const kiln_bn_geom *g, bool train, float eps,
                                     const float *x, const float *w, const float *mean,
                                     const float *var, const float *gy, float *gx, bool gx_acc,
                                     float *gw, float *gb)
{
    if (g->cl) return kiln__cpu_batch_norm_bwd_nhwc(ctx, g, train, eps, x, w, mean, var, gy, gx, gx_acc, gw, gb);
    if (g->s == 1) bwd_rows(ctx, g, train, eps, x, w, mean, var, gy, gx, gx_acc, gw, gb);
    else bwd_channels(ctx, g, train, eps, x, w, mean, var, gy, gx, gx_acc, gw, gb);
    return KILN_STATUS_OK;
}

void kiln__batch_norm_sync_stats(const kiln_bn_geom *g, float *mean, float *var)
{
    for (int64_t c = 0; c < g->c; c++) {
        const double mu = g->sums[c] / g->count, v = g->sums[g->c + c] / g->count - mu * mu;
        mean[c] = (float)mu;
        var[c] = (float)(v > 0 ? v : 0); /* rounding may leave a constant channel's just below 0 */
    }
}

void kiln__batch_norm_running(kiln_ctx *ctx, int64_t c, double momentum, double unbias, const float *mean,
                              const float *var, float *rm, float *rv)
{
    (void)ctx;
    for (int64_t i = 0; i < c; i++) {
        rm[i] = (float)(momentum * mean[i] + (1.0 - momentum) * rm[i]);
        rv[i] = (float)(momentum * var[i] * unbias + (1.0 - momentum) * rv[i]);
    }
}

/* ---- reference ---------------------------------------------------------------------------- */

/* An NCHW step-arena copy of channels-last src (N*S, C); NULL when out of memory. */
static float *to_nchw(kiln_ctx *ctx, const kiln_bn_geom *g, const float *src)
{
    float *d = kiln_step_alloc(ctx, (size_t)(g->n * g->c * g->s) * sizeof(float));
    if (d) kiln__nhwc_relayout(src, d, g->n, g->c, g->s, false);
    return d;
}

/* g->cl: the NCHW reference on transposed copies. */
static kiln_status ref_fwd_cl(kiln_ctx *ctx, const kiln_bn_geom *g, bool train, float eps, const float *x,
                              const float *w, const float *b, float *mean, float *var, float *y)
{
    kiln_mark mark = kiln_step_mark(ctx);
    kiln_bn_geom gc = *g;
    gc.cl = false;
    float *xc = to_nchw(ctx, g, x), *yc = kiln_step_alloc(ctx, (size_t)(g->n * g->c * g->s) * sizeof(float));
    kiln_status st = xc && yc ? kiln__ref_batch_norm_fwd(ctx, &gc, train, eps, xc, w, b, mean, var, yc)
                              : KILN_STATUS_NOMEM;
    if (st == KILN_STATUS_OK) kiln__nhwc_relayout(yc, y, g->n, g->c, g->s, true);
    kiln_step_rewind(ctx, mark);
    return st;
}

static kiln_status ref_bwd_cl(kiln_ctx *ctx, const kiln_bn_geom *g, bool train, float eps, const float *x,
                              const float *w, const float *mean, const float *var, const float *gy, float *gx,
                              bool gx_acc, float *gw, float *gb)
{
    kiln_mark mark = kiln_step_mark(ctx);
    kiln_bn_geom gc = *g;
    gc.cl = false;
    float *xc = to_nchw(ctx, g, x), *gyc = to_nchw(ctx, g, gy);
    float *gxc = NULL;
    if (gx) gxc = gx_acc ? to_nchw(ctx, g, gx) : kiln_step_alloc(ctx, (size_t)(g->n * g->c * g->s) * sizeof(float));
    kiln_status st = xc && gyc && (gxc || !gx)
                         ? kiln__ref_batch_norm_bwd(ctx, &gc, train, eps, xc, w, mean, var, gyc, gxc, gx_acc, gw, gb)
                         : KILN_STATUS_NOMEM;
    if (st == KILN_STATUS_OK && gx) kiln__nhwc_relayout(gxc, gx, g->n, g->c, g->s, true);
    kiln_step_rewind(ctx, mark);
    return st;
}

/* The reference y of one value (before the ReLU when !relu); its backward recomputes it
 * for the mask (g->relu). */
static float ref_y(float x, float mean, double k, double sh, bool relu)
{
    const float v = (float)((x - (double)mean) * k + sh);
    return relu && v < 0.0f ? 0.0f : v; /* NaN stays NaN */
}

kiln_status kiln__ref_batch_norm_fwd(kiln_ctx *ctx, const kiln_bn_geom *g, bool train, float eps,
                                     const float *x, const float *w, const float *b, float *mean,
                                     float *var, float *y)
{
    if (train && g->sums) { /* SyncBatchNorm's second pass: every rank's statistics */
        kiln__batch_norm_sync_stats(g, mean, var);
        train = false;
    }
    if (g->cl) return ref_fwd_cl(ctx, g, train, eps, x, w, b, mean, var, y);
    int64_t s = g->s, cs = g->c * s, m = g->n * s;
    for (int64_t c = 0; c < g->c; c++) {
        if (train) {
            double acc = 0, sq = 0;
            for (int64_t n = 0; n < g->n; n++)
                for (int64_t i = 0; i < s; i++) acc += x[n * cs + c * s + i];
            double mu = acc / (double)m;
            for (int64_t n = 0; n < g->n; n++)
                for (int64_t i = 0; i < s; i++) {
                    double d = x[n * cs + c * s + i] - mu;
                    sq += d * d;
                }
            if (g->sums_out) { /* SyncBatchNorm's first pass */
                kiln__bn_put_sums(g, c, (double)m, mu, acc - (double)m * mu, sq);
                continue;
            }
            mean[c] = (float)mu;
            var[c] = (float)(sq / (double)m);
        }
        double invstd = 1.0 / sqrt((double)var[c] + eps);
        double k = (w ? w[c] : 1.0) * invstd, sh = b ? b[c] : 0.0;
        for (int64_t n = 0; n < g->n; n++)
            for (int64_t i = 0; i < s; i++) {
                int64_t j = n * cs + c * s + i;
                y[j] = ref_y(x[j], mean[c], k, sh, g->relu);
            }
    }
    return KILN_STATUS_OK;
}

kiln_status kiln__ref_batch_norm_bwd(kiln_ctx *ctx, const kiln_bn_geom *g, bool train, float eps,
                                     const float *x, const float *w, const float *mean,
                                     const float *var, const float *gy, float *gx, bool gx_acc,
                                     float *gw, float *gb)
{
    if (g->cl) return ref_bwd_cl(ctx, g, train, eps, x, w, mean, var, gy, gx, gx_acc, gw, gb);
    int64_t s = g->s, cs = g->c * s;
    const double m = g->sums ? g->count : (double)(g->n * s);
    for (int64_t c = 0; c < g->c; c++) {
        double invstd = 1.0 / sqrt((double)var[c] + eps), mu = mean[c], wc = w ? w[c] : 1.0;
        double k = wc * invstd, sh = g->b ? g->b[c] : 0.0; /* as the forward (relu mask) */
        double sg = 0, sgd = 0; /* sum gy, sum gy * (x - mu) (gy masked when relu) */
        if (g->sums) sg = g->sums[c], sgd = g->sums[g->c + c]; /* SyncBatchNorm: every rank's */
        else for (int64_t n = 0; n < g->n; n++)
            for (int64_t i = 0; i < s; i++) {
                int64_t j = n * cs + c * s + i;
                double gj = !g->relu || ref_y(x[j], mean[c], k, sh, false) > 0.0f ? gy[j] : 0.0;
                sg += gj;
                sgd += gj * (x[j] - mu);
            }
        if (g->sums_out) g->sums_out[c] = sg, g->sums_out[g->c + c] = sgd;
        const double sgx = sgd * invstd; /* sum gy * xhat */
        if (gb) gb[c] += (float)sg;
        if (gw) gw[c] += (float)sgx;
        if (!gx) continue;
        for (int64_t n = 0; n < g->n; n++)
            for (int64_t i = 0; i < s; i++) {
                int64_t j = n * cs + c * s + i;
                double d = !g->relu || ref_y(x[j], mean[c], k, sh, false) > 0.0f ? gy[j] : 0.0;
                if (train) d -= (sg + (x[j] - mu) * invstd * sgx) / m;
                d *= wc * invstd;
                gx[j] = (float)((gx_acc ? gx[j] : 0.0) + d);
            }
    }
    return KILN_STATUS_OK;
}
