/* CPU softmax, log-softmax and the fused log-softmax + NLL (cross-entropy) kernels.
 *
 * The hot case is a long contiguous class row (language-model decoders: 2240 x 20000
 * logits). Cross-entropy never materialises log-probabilities: the forward reads each row
 * twice (max, then sum of exp; the second read hits L2) and keeps only the per-row
 * log-sum-exp; the backward makes one pass that reads the logits and writes
 * softmax - target straight into the gradient. Both passes need exp at vector speed, so
 * the row functions are compiled for AVX-512 / AVX2 / baseline with target_clones (picked
 * at load time) and use kexp below, a Cephes-style polynomial that gcc vectorises
 * (max relative error ~1e-7 over the float range; exp(-inf) = 0, NaN stays NaN; no
 * -ffast-math needed).
 *
 * Row sums (sum of exp, of gy, of gy * y) are accurate whatever the compiler did with the
 * loop (8/16 vector lanes at -O2, one sequential chain at -O0 in the sanitizer build,
 * where a flat float sum of a 20000-class row drifted 280 ulp): see row_sumexp.
 *
 * Rows with a strided class dim (softmax over a middle dim, (N, C, d...) cross-entropy)
 * use scalar loops over (outer, inner) positions, summing in double. */
#include "core/parallel.h"
#include "kernels/dense.h"

#include <math.h>
#include <string.h>

#define VEC __attribute__((target_clones("avx512f", "avx2", "default")))
#define PRAGMA_(x) _Pragma(#x)
/* gcc's -O2 vectoriser ("very cheap" model) skips loops of unknown trip count; omp simd
 * forces them. Without OpenMP the loops stay scalar but correct. */
#ifdef _OPENMP
#define SIMD PRAGMA_(omp simd)
#define SIMD_RED(op, ...) PRAGMA_(omp simd reduction(op : __VA_ARGS__))
#else
#define SIMD
#define SIMD_RED(op, ...)
#endif

static inline __attribute__((always_inline)) float kexp(float x)
{
    float xc = x < -88.0f ? -88.0f : x;
    xc = xc > 88.5f ? 88.5f : xc;
    xc = xc == xc ? xc : 0.0f;                                              /* NaN: patched below */
    float n = (xc * 1.44269504088896341f + 12582912.0f) - 12582912.0f;     /* round(x / ln 2) */
    float r = xc - n * 0.693359375f;
    r = r - n * -2.12194440e-4f;
    float p = 1.9875691500e-4f;
    p = p * r + 1.3981999507e-3f;
    p = p * r + 8.3334519073e-3f;
    p = p * r + 4.1665795894e-2f;
    p = p * r + 1.6666665459e-1f;
    p = p * r + 5.0000001201e-1f;
    p = p * r * r + r + 1.0f;
    int32_t bits = ((int32_t)n + 127) << 23;                                /* 2^n */
    float s;
    memcpy(&s, &bits, sizeof s);
    float y = p * s;
    y = x < -87.5f ? 0.0f : y;
    return x == x ? y : x;
}

/* ---- contiguous rows ----------------------------------------------------------------- */

VEC static float row_max(const float *x, int64_t c)
{
    float m = -INFINITY;
    SIMD_RED(max, m)
    for (int64_t j = 0; j < c; j++) m = x[j] > m ? x[j] : m;
    return m;
}

/* Row sums keep LANES float partial sums (lane k adds elements j = k mod LANES, so the
 * order is the same vectorised or not) and move them into a double every FLUSH elements:
 * each float chain is at most FLUSH / LANES = 64 adds long, error <= ~64 ulp of the sum. */
enum { LANES = 16, FLUSH = 64 * LANES };

/* end of the next run of whole LANES-groups starting at j, at most FLUSH long */
static inline int64_t run_end(int64_t j, int64_t c)
{
    int64_t whole = c - (c - j) % LANES;
    return whole - j > FLUSH ? j + FLUSH : whole;
}

/* sum exp(x - m); *dsum = sum (x - m) when dsum is not NULL. */
VEC static float row_sumexp(const float *x, int64_t c, float m, float *dsum)
{
    float a[LANES] = {0}, b[LANES] = {0};
    double s = 0.0, d = 0.0;
    int64_t j = 0;
    while (c - j >= LANES) {
        int64_t e = run_end(j, c);
        if (!dsum) {
            for (; j < e; j += LANES) {
                SIMD
                for (int k = 0; k < LANES; k++) a[k] += kexp(x[j + k] - m);
            }
        } else {
            for (; j < e; j += LANES) {
                SIMD
                for (int k = 0; k < LANES; k++) {
                    a[k] += kexp(x[j + k] - m);
                    b[k] += x[j + k] - m;
                }
            }
        }
        for (int k = 0; k < LANES; k++) {
            s += a[k];
            d += b[k];
            a[k] = b[k] = 0.0f;
        }
    }
    for (; j < c; j++) {
        s += kexp(x[j] - m);
        d += x[j] - m;
    }
    if (dsum) *dsum = (float)d;
    return (float)s;
}

/* sum a[j] * b[j] (sum a[j] when b is NULL), in lanes as row_sumexp */
VEC static double row_dot(const float *a, const float *b, int64_t c)
{
    float acc[LANES] = {0};
    double s = 0.0;
    int64_t j = 0;
    while (c - j >= LANES) {
        int64_t e = run_end(j, c);
        for (; j < e; j += LANES) {
            if (b) {
                SIMD
                for (int k = 0; k < LANES; k++) acc[k] += a[j + k] * b[j + k];
            } else {
                SIMD
                for (int k = 0; k < LANES; k++) acc[k] += a[j + k];
            }
        }
        for (int k = 0; k < LANES; k++) {
            s += acc[k];
            acc[k] = 0.0f;
        }
    }
    for (; j < c; j++) s += b ? (double)a[j] * b[j] : a[j];
    return s;
}

VEC static void row_softmax(const float *restrict x, float *restrict y, int64_t c, bool log)
{
    float m = row_max(x, c);
    if (log) { /* (x - m) - log s: never m + log s, which rounds to the precision of |m| */
        float ls = logf(row_sumexp(x, c, m, NULL));
        SIMD
        for (int64_t j = 0; j < c; j++) y[j] = (x[j] - m) - ls;
        return;
    }
    SIMD
    for (int64_t j = 0; j < c; j++) y[j] = kexp(x[j] - m);
    float inv = (float)(1.0 / row_dot(y, NULL, c));
    SIMD
    for (int64_t j = 0; j < c; j++) y[j] *= inv;
}

VEC static void row_softmax_bwd(const float *restrict y, const float *restrict gy, float *restrict gx, int64_t c, bool log)
{
    float s = (float)row_dot(gy, log ? NULL : y, c);
    if (log) {
        SIMD
        for (int64_t j = 0; j < c; j++) gx[j] += gy[j] - kexp(y[j]) * s;
    } else {
        SIMD
        for (int64_t j = 0; j < c; j++) gx[j] += y[j] * (gy[j] - s);
    }
}

/* softmax = exp((x - m) - ls), ls = log sum exp(x - m) */
VEC static void row_xent_grad(const float *restrict x, float m, float ls, float scale, float off, float *restrict gx,
                              int64_t c, bool overwrite)
{
    if (overwrite) {
        SIMD
        for (int64_t j = 0; j < c; j++) gx[j] = scale * kexp((x[j] - m) - ls) - off;
    } else {
        SIMD
        for (int64_t j = 0; j < c; j++) gx[j] += scale * kexp((x[j] - m) - ls) - off;
    }
}

/* the same written over x itself (gx == x: the chunks of kiln_linear_cross_entropy turn their
 * logits into their gradient in place); each element is read before it is written */
VEC static void row_xent_grad_inplace(float *x, float m, float ls, float scale, float off, int64_t c)
{
    SIMD
    for (int64_t j = 0; j < c; j++) x[j] = scale * kexp((x[j] - m) - ls) - off;
}

/* ---- strided class dim: one (outer, inner) position at a time ------------------------- */

static float col_max(const float *x, int64_t c, int64_t st)
{
    float m = -INFINITY;
    for (int64_t j = 0; j < c; j++) m = x[j * st] > m ? x[j * st] : m;
    return m;
}

static void col_softmax(const float *x, float *y, int64_t c, int64_t st, bool log)
{
    float m = col_max(x, c, st);
    double s = 0.0;
    for (int64_t j = 0; j < c; j++) s += kexp(x[j * st] - m);
    float ls = logf((float)s), inv = (float)(1.0 / s);
    for (int64_t j = 0; j < c; j++) y[j * st] = log ? (x[j * st] - m) - ls : kexp(x[j * st] - m) * inv;
}

static void col_softmax_bwd(const float *y, const float *gy, float *gx, int64_t c, int64_t st, bool log)
{
    double sd = 0.0;
    for (int64_t j = 0; j < c; j++) sd += log ? gy[j * st] : gy[j * st] * y[j * st];
    float s = (float)sd;
    for (int64_t j = 0; j < c; j++)
        gx[j * st] += log ? gy[j * st] - kexp(y[j * st]) * s : y[j * st] * (gy[j * st] - s);
}

/* ---- table entries -------------------------------------------------------------------- */

void kiln__cpu_softmax_fwd(kiln_ctx *ctx, const float *x, float *y, int64_t outer, int64_t c, int64_t inner, bool log)
{
    int64_t np = outer * inner;
    KILN_PAR_FOR(ctx, np * c)
    for (int64_t p = 0; p < np; p++) {
        int64_t o = p / inner, k = p % inner, base = o * c * inner + k;
        if (inner == 1)
            row_softmax(x + base, y + base, c, log);
        else
            col_softmax(x + base, y + base, c, inner, log);
    }
}

void kiln__cpu_softmax_bwd(kiln_ctx *ctx, const float *y, const float *gy, float *gx, int64_t outer, int64_t c,
                           int64_t inner, bool log)
{
    int64_t np = outer * inner;
    KILN_PAR_FOR(ctx, np * c)
    for (int64_t p = 0; p < np; p++) {
        int64_t o = p / inner, k = p % inner, base = o * c * inner + k;
        if (inner == 1)
            row_softmax_bwd(y + base, gy + base, gx + base, c, log);
        else
            col_softmax_bwd(y + base, gy + base, gx + base, c, inner, log);
    }
}

double kiln__cpu_xent_fwd(kiln_ctx *ctx, const float *x, const int64_t *t, int64_t outer, int64_t c,
                          int64_t inner, int64_t ignore_index, float smoothing, float *loss, float *stat)
{
    int64_t np = outer * inner;
    if (c == 0) { /* every target ignored (checked by the caller) */
        memset(loss, 0, (size_t)np * sizeof *loss);
        memset(stat, 0, (size_t)(2 * np) * sizeof *stat);
        return 0.0;
    }
    KILN_PAR_FOR(ctx, np * c)
    for (int64_t p = 0; p < np; p++) {
        int64_t o = p / inner, k = p % inner;
        const float *xp = x + o * c * inner + k;
        float m, s, dsum = 0.0f; /* dsum = sum_j (x_j - m) */
        if (inner == 1) {
            m = row_max(xp, c);
            s = row_sumexp(xp, c, m, smoothing != 0.0f ? &dsum : NULL);
        } else {
            m = col_max(xp, c, inner);
            double sd = 0.0, dd = 0.0;
            for (int64_t j = 0; j < c; j++) {
                sd += kexp(xp[j * inner] - m);
                dd += xp[j * inner] - m;
            }
            s = (float)sd;
            dsum = (float)dd;
        }
        float ls = logf(s);
        stat[2 * p] = m;
        stat[2 * p + 1] = ls;
        if (t[p] == ignore_index) {
            loss[p] = 0.0f;
            continue;
        }
        /* -log p_t = log s - (x_t - m); -sum_j log p_j = c log s - sum_j (x_j - m) */
        float nll = ls - (xp[t[p] * inner] - m);
        float l = (1.0f - smoothing) * nll;
        if (smoothing != 0.0f) l += smoothing / (float)c * ((float)c * ls - dsum);
        loss[p] = l;
    }
    double sum = 0.0; /* in position order: the same bits for any thread count */
    for (int64_t p = 0; p < np; p++) sum += loss[p];
    return sum;
}

void kiln__cpu_xent_bwd(kiln_ctx *ctx, const float *x, const int64_t *t, const float *stat, const float *g,
                        int64_t g_stride, int64_t outer, int64_t c, int64_t inner, int64_t ignore_index,
                        float smoothing, float *gx, bool overwrite)
{
    int64_t np = outer * inner;
    KILN_PAR_FOR(ctx, np * c)
    for (int64_t p = 0; p < np; p++) {
        int64_t o = p / inner, k = p % inner, base = o * c * inner + k;
        float *gp = gx + base;
        if (t[p] == ignore_index) {
            if (overwrite)
                for (int64_t j = 0; j < c; j++) gp[j * inner] = 0.0f;
            continue;
        }
        float scale = g[p * g_stride], off = scale * smoothing / (float)c, m = stat[2 * p], ls = stat[2 * p + 1];
        if (inner == 1 && overwrite && gp == x + base) {
            row_xent_grad_inplace(gp, m, ls, scale, off, c);
        } else if (inner == 1) {
            row_xent_grad(x + base, m, ls, scale, off, gp, c, overwrite);
        } else {
            for (int64_t j = 0; j < c; j++) {
                float v = scale * kexp((x[base + j * inner] - m) - ls) - off;
                gp[j * inner] = overwrite ? v : gp[j * inner] + v;
            }
        }
        gp[t[p] * inner] -= scale * (1.0f - smoothing);
    }
}
