/* Batch normalisation on channels-last data for the CPU table: x, y, gx, gy are row-major
 * (M, C) with M = N*S (NHWC). Same semantics as the NCHW loops in batchnorm.c, which call
 * these when g->cl.
 *
 * Layout of the work: channels are the fast dim and C is often small (8..64), so the
 * (M, C) array is read as "wide rows" of W = lcm(C, 16) floats (16 for C = 8 or 16, C for
 * C = 32, 64, ...): column j of a wide row is channel j % C, and per-column sums fold to C
 * at the end. The M*C % W floats left over form a shorter last row (a whole number of rows
 * of C), done by plain loops.
 *
 * Sums (the passes that read): a group of about 1 KB of rows at a time, 16 columns at a
 * time, the 16 sums held in registers (4 generic 4-float vectors, see `vc`) while the
 * group's rows stream past. A `#pragma omp simd` loop over whole rows keeps them in memory
 * instead (GCC 12, -O2), which measured 1.4 to 1.9 times slower on L2-resident data. Sums
 * are float over a block of about 64 rows, then added into per-thread doubles, like the
 * NCHW kernels' per-(n, c) partials. Writes (y, gx): row by row; with W = 16 the
 * coefficients stay in registers, otherwise they are read from a W-float table in L1.
 *
 * Two parallel loops per call over the same parts (src/core/parallel.h; static scheduling
 * gives thread t part t in both): each thread owns a fixed range of wide rows and sums it,
 * last block first; the calling thread folds the partials and computes the per-channel
 * coefficients; then every thread writes its own range first row first, starting on rows
 * still in its L2 (walking the writing pass backwards instead measured slower). Memory
 * traffic: forward reads x twice and writes y (the statistics take one pass: sums of
 * d = x - K and d^2 around a per-channel shift K, the mean of a few rows spread over the
 * batch, so E[d^2] - E[d]^2 does not cancel badly); backward reads x and gy twice and
 * writes gx.
 * NCHW has each channel's values contiguous and reads them once from memory (see
 * batchnorm.c), so on tensors far larger than L2 the backward here moves more data.
 *
 * g->relu (batch norm + ReLU, see conv.h): the forward clamps as it writes y; both passes
 * of the backward mask gy as they load it, by x * k + sh > 0 with the forward's k and sh
 * (bn_coef, the same float arithmetic), so the traffic is the plain op's. Each pass is an
 * always-inline body instantiated twice, relu false and true, as separate functions: the
 * plain ones compile to the same code as before the ReLU existed. SyncBatchNorm's passes
 * (kiln_bn_geom.sums_out, sums; conv.h): the first returns after the fold, the second skips
 * the sums and uses every rank's. */
#define KILN_CONV_CPU_INTERNAL
#include "core/parallel.h"
#include "kernels/conv.h"

#include <math.h>
#include <string.h>

#define CW 16         /* columns per register chunk */
#define SHIFT_ROWS 64 /* rows averaged for the shift K */

/* ---- 16-float chunks in registers -------------------------------------------------------- *
 * A GCC/Clang generic vector (no ISA intrinsics: an SSE register on the baseline x86-64
 * build); a struct of 4 of them, used with constant indices only, stays in registers.
 * Memory is accessed through v4u (unaligned, may alias float), not memcpy: a memcpy of the
 * struct left dead copies of it on the stack. */
typedef float v4 __attribute__((vector_size(16)));
typedef float v4u __attribute__((vector_size(16), aligned(4), may_alias));
typedef struct vc {
    v4 v[4];
} vc; /* 16 consecutive floats */

#define EACH(i) _Pragma("GCC unroll 4") for (int i = 0; i < 4; i++)
#define INLINE static inline __attribute__((always_inline))
#define NOINLINE static __attribute__((noinline))

typedef int32_t v4i __attribute__((vector_size(16))); /* comparison masks of v4 */

static inline vc vc_ld(const float *p)
{
    vc r;
    EACH(i) r.v[i] = *(const v4u *)(p + 4 * i);
    return r;
}

static inline void vc_st(float *p, vc a)
{
    EACH(i) *(v4u *)(p + 4 * i) = a.v[i];
}

/* max(0, v), NaN kept (as torch.relu): clears the lanes where v < 0 */
static inline v4 v4_relu(v4 v)
{
    const v4 z = {0, 0, 0, 0};
    return (v4)((v4i)v & ~(v < z));
}

/* g where x * k + sh > 0, else 0 (threshold_backward of the fused forward's y) */
static inline v4 v4_mask(v4 x, v4 k, v4 sh, v4 g)
{
    const v4 z = {0, 0, 0, 0};
    return (v4)((v4i)g & (x * k + sh > z));
}

static inline float relu1(float v) { return v < 0.0f ? 0.0f : v; }
static inline float mask1(float x, float k, float sh, float g) { return x * k + sh > 0.0f ? g : 0.0f; }

/* The forward's y = x * k + sh of channel c; the relu backward recomputes it with these. */
static inline void bn_coef(const float *w, const float *b, const float *mean, const float *var, float eps, int64_t c,
                           float *k, float *sh)
{
    *k = (w ? w[c] : 1.0f) / sqrtf(var[c] + eps);
    *sh = (b ? b[c] : 0.0f) - mean[c] * *k;
}

/* ---- plan ---------------------------------------------------------------------------------- */

/* The wide-row view of (M, C) and the per-thread scratch. */
typedef struct plan {
    int64_t c, w;    /* channels; floats per wide row (lcm(c, 16)) */
    int64_t rows;    /* full wide rows */
    int64_t tail;    /* floats in the short last row (< w, a multiple of c) */
    int64_t group;   /* wide rows per register group: about 1 KB, or 4 rows */
    int64_t block;   /* wide rows summed in float (a multiple of group, about 64) */
    int nt;          /* parts (one per thread): kiln__par_threads */
    int64_t tstride; /* doubles of scratch per thread */
    double *scratch; /* per thread: da (w), db (w) doubles, fa (w), fb (w) floats */
    float *coef;     /* 6 * w: per-column coefficients (channel j % c) */
} plan;


/* NOMEM (message set by the arena) when the scratch does not fit. */
static kiln_status plan_init(kiln_ctx *ctx, const kiln_bn_geom *g, plan *p)
{
    const int64_t c = g->c, total = g->n * g->s * c;
    int64_t a = c, b = CW; /* gcd */
    while (b) {
        const int64_t t = a % b;
        a = b, b = t;
    }
    p->c = c;
    p->w = c / a * CW;
    p->rows = total / p->w;
    p->tail = total - p->rows * p->w;
    p->group = p->w < 64 ? 256 / p->w : 4;
    p->block = (64 + p->group - 1) / p->group * p->group;
    p->nt = kiln__par_threads(ctx, 2 * total); /* two passes over x, as batchnorm.c */
    const int nt = p->nt;
    p->tstride = (3 * p->w + 7) & ~(int64_t)7; /* 64-byte multiple: no false sharing */
    p->scratch = kiln_step_alloc(ctx, (size_t)(nt * p->tstride) * sizeof(double));
    p->coef = kiln_step_alloc(ctx, (size_t)(6 * p->w) * sizeof(float));
    return p->scratch && p->coef ? KILN_STATUS_OK : KILN_STATUS_NOMEM;
}

/* Part t of p->nt: wide rows [r0, r1); the last part also takes the short row (tail). */
typedef struct part {
    int64_t r0, r1;
    bool tail;
} part;

static part part_of(const plan *p, int t)
{
    return (part){p->rows * t / p->nt, p->rows * (t + 1) / p->nt, t == p->nt - 1 && p->tail > 0};
}

/* Folds nt threads' da, db (w columns each) into per-channel sa, sb (c doubles). */
static void fold(const plan *p, int nt, double *sa, double *sb)
{
    memset(sa, 0, (size_t)p->c * sizeof(double));
    memset(sb, 0, (size_t)p->c * sizeof(double));
    for (int t = 0; t < nt; t++) {
        const double *da = p->scratch + t * p->tstride, *db = da + p->w;
        for (int64_t j = 0; j < p->w; j++) sa[j % p->c] += da[j], sb[j % p->c] += db[j];
    }
}

/* Repeats the c values of v across the w columns of dst. */
static void spread(const plan *p, float *dst, const float *v)
{
    for (int64_t j = 0; j < p->w; j++) dst[j] = v[j % p->c];
}

/* ---- passes -------------------------------------------------------------------------------- */

/* Per-column sums over wide rows [r0, r1) and the short row at r1 when tail, into acc:
 * da (w), db (w) doubles, then fa (w), fb (w) floats; da, db overwritten.
 * fwd: da = sum(x - k), db = sum((x - k)^2); bwd: da = sum(gy), db = sum(gy * (x - k)),
 * with gy masked by x * fk + fsh > 0 when relu (fk, fsh: w each, else NULL).
 * gy: NULL when fwd. */
INLINE void sums_body(const plan *p, bool fwd, bool relu, const float *x, const float *gy, const float *k,
                      const float *fk, const float *fsh, int64_t r0, int64_t r1, bool tail, double *acc)
{
    const int64_t W = p->w, G = p->group;
    double *da = acc, *db = acc + W;
    float *fa = (float *)(acc + 2 * W), *fb = fa + W;
    memset(da, 0, (size_t)(2 * W) * sizeof(double));
    const int64_t nb = (r1 - r0 + p->block - 1) / p->block;
    for (int64_t bi = nb - 1; bi >= 0; bi--) { /* last block first: see the top of the file */
        const int64_t rb = r0 + bi * p->block, re = rb + p->block < r1 ? rb + p->block : r1;
        memset(fa, 0, (size_t)(2 * W) * sizeof(float));
        for (int64_t rg = rb; rg < re; rg += G) {
            const int64_t nr = re - rg < G ? re - rg : G;
            for (int64_t j = 0; j < W; j += CW) {
                vc a = vc_ld(fa + j), b = vc_ld(fb + j);
                const vc kk = vc_ld(k + j);
                const float *px = x + rg * W + j, *pg = fwd ? NULL : gy + rg * W + j;
                if (fwd) {
                    for (int64_t r = 0; r < nr; r++) {
                        const vc xv = vc_ld(px + r * W);
                        EACH(i)
                        {
                            const v4 d = xv.v[i] - kk.v[i];
                            a.v[i] += d, b.v[i] += d * d;
                        }
                    }
                } else if (relu) {
                    const vc mk = vc_ld(fk + j), ms = vc_ld(fsh + j);
                    for (int64_t r = 0; r < nr; r++) {
                        const vc xv = vc_ld(px + r * W), gv = vc_ld(pg + r * W);
                        EACH(i)
                        {
                            const v4 gm = v4_mask(xv.v[i], mk.v[i], ms.v[i], gv.v[i]);
                            a.v[i] += gm, b.v[i] += gm * (xv.v[i] - kk.v[i]);
                        }
                    }
                } else {
                    for (int64_t r = 0; r < nr; r++) {
                        const vc xv = vc_ld(px + r * W), gv = vc_ld(pg + r * W);
                        EACH(i) a.v[i] += gv.v[i], b.v[i] += gv.v[i] * (xv.v[i] - kk.v[i]);
                    }
                }
                vc_st(fa + j, a), vc_st(fb + j, b);
            }
        }
        for (int64_t j = 0; j < W; j++) da[j] += fa[j], db[j] += fb[j];
    }
    if (tail) {
        const float *px = x + r1 * W, *pg = fwd ? NULL : gy + r1 * W;
        for (int64_t j = 0; j < p->tail; j++) {
            const float d = px[j] - k[j], gj = fwd ? 0.0f : relu ? mask1(px[j], fk[j], fsh[j], pg[j]) : pg[j];
            da[j] += fwd ? d : gj;
            db[j] += fwd ? d * d : gj * d;
        }
    }
}

NOINLINE void sums(const plan *p, bool fwd, const float *x, const float *gy, const float *k, int64_t r0, int64_t r1,
                   bool tail, double *acc)
{
    sums_body(p, fwd, false, x, gy, k, NULL, NULL, r0, r1, tail, acc);
}

NOINLINE void sums_relu(const plan *p, const float *x, const float *gy, const float *k, const float *fk,
                        const float *fsh, int64_t r0, int64_t r1, bool tail, double *acc)
{
    sums_body(p, false, true, x, gy, k, fk, fsh, r0, r1, tail, acc);
}

/* y = x * k + sh (max(0, .) when relu) over wide rows [r0, r1) (+ the short row at r1
 * when tail). */
INLINE void normalise_body(const plan *p, bool relu, const float *x, const float *k, const float *sh, int64_t r0,
                      int64_t r1, bool tail, float *y)
{
    const int64_t W = p->w;
    if (W == CW) { /* the coefficients fit in registers */
        const vc kk = vc_ld(k), ss = vc_ld(sh);
        for (int64_t r = r0; r < r1; r++) {
            vc v = vc_ld(x + r * W);
            EACH(i) v.v[i] = v.v[i] * kk.v[i] + ss.v[i];
            if (relu) EACH(i) v.v[i] = v4_relu(v.v[i]);
            vc_st(y + r * W, v);
        }
    } else if (relu) {
        for (int64_t r = r0; r < r1; r++) {
            const float *px = x + r * W;
            float *py = y + r * W;
#pragma omp simd
            for (int64_t j = 0; j < W; j++) py[j] = relu1(px[j] * k[j] + sh[j]);
        }
    } else {
        for (int64_t r = r0; r < r1; r++) {
            const float *px = x + r * W;
            float *py = y + r * W;
#pragma omp simd
            for (int64_t j = 0; j < W; j++) py[j] = px[j] * k[j] + sh[j];
        }
    }
    if (tail)
        for (int64_t j = 0; j < p->tail; j++) {
            const float v = x[r1 * W + j] * k[j] + sh[j];
            y[r1 * W + j] = relu ? relu1(v) : v;
        }
}

NOINLINE void normalise(const plan *p, const float *x, const float *k, const float *sh, int64_t r0, int64_t r1,
                        bool tail, float *y)
{
    normalise_body(p, false, x, k, sh, r0, r1, tail, y);
}

NOINLINE void normalise_relu(const plan *p, const float *x, const float *k, const float *sh, int64_t r0, int64_t r1,
                             bool tail, float *y)
{
    normalise_body(p, true, x, k, sh, r0, r1, tail, y);
}

/* One wide row (len floats) of grad_x, coefficients from memory; relu: gy masked with the
 * forward's coefficients fk, fsh. */
INLINE void grad_row(bool train, bool acc, bool relu, const float *px, const float *pg, const float *k,
                     const float *q, const float *a, const float *mu, const float *fk, const float *fsh, int64_t len,
                     float *pd)
{
#define GY(j) (relu ? mask1(px[j], fk[j], fsh[j], pg[j]) : pg[j])
    if (train && acc) {
#pragma omp simd
        for (int64_t j = 0; j < len; j++) pd[j] += k[j] * GY(j) + (px[j] - mu[j]) * q[j] + a[j];
    } else if (train) {
#pragma omp simd
        for (int64_t j = 0; j < len; j++) pd[j] = k[j] * GY(j) + (px[j] - mu[j]) * q[j] + a[j];
    } else if (acc) {
#pragma omp simd
        for (int64_t j = 0; j < len; j++) pd[j] += k[j] * GY(j);
    } else {
#pragma omp simd
        for (int64_t j = 0; j < len; j++) pd[j] = k[j] * GY(j);
    }
#undef GY
}

/* gx (=, or += when acc) k * gy + (x - mu) * q + a over wide rows [r0, r1) (+ the short row
 * at r1 when tail); eval: k * gy (x not read unless relu). relu: gy masked by
 * x * fk + fsh > 0. cf: k, q, a, mu, fk, fsh (w each; fk, fsh only for relu). */
INLINE void grad_x_body(const plan *p, bool train, bool acc, bool relu, const float *x, const float *gy,
                        const float *cf, int64_t r0, int64_t r1, bool tail, float *gx)
{
    const int64_t W = p->w;
    const float *k = cf, *q = cf + W, *a = cf + 2 * W, *mu = cf + 3 * W, *fk = cf + 4 * W, *fsh = cf + 5 * W;
    if (W == CW && train) { /* the coefficients fit in registers */
        const vc kk = vc_ld(k), qq = vc_ld(q), aa = vc_ld(a), mm = vc_ld(mu);
        for (int64_t r = r0; r < r1; r++) {
            const int64_t o = r * W;
            vc gv = vc_ld(gy + o);
            const vc xv = vc_ld(x + o);
            if (relu) {
                const vc mk = vc_ld(fk), ms = vc_ld(fsh); /* from L1: the registers are taken */
                EACH(i) gv.v[i] = v4_mask(xv.v[i], mk.v[i], ms.v[i], gv.v[i]);
            }
            vc d;
            EACH(i) d.v[i] = kk.v[i] * gv.v[i] + (xv.v[i] - mm.v[i]) * qq.v[i] + aa.v[i];
            if (acc) {
                const vc old = vc_ld(gx + o);
                EACH(i) d.v[i] += old.v[i];
            }
            vc_st(gx + o, d);
        }
    } else {
        for (int64_t r = r0; r < r1; r++)
            grad_row(train, acc, relu, x + r * W, gy + r * W, k, q, a, mu, fk, fsh, W, gx + r * W);
    }
    if (tail) grad_row(train, acc, relu, x + r1 * W, gy + r1 * W, k, q, a, mu, fk, fsh, p->tail, gx + r1 * W);
}

NOINLINE void grad_x(const plan *p, bool train, bool acc, const float *x, const float *gy, const float *cf, int64_t r0,
                     int64_t r1, bool tail, float *gx)
{
    grad_x_body(p, train, acc, false, x, gy, cf, r0, r1, tail, gx);
}

NOINLINE void grad_x_relu(const plan *p, bool train, bool acc, const float *x, const float *gy, const float *cf,
                          int64_t r0, int64_t r1, bool tail, float *gx)
{
    grad_x_body(p, train, acc, true, x, gy, cf, r0, r1, tail, gx);
}

/* Per-channel shift for the one-pass variance: the mean of SHIFT_ROWS rows spread evenly
 * over the batch (not the first rows, which may all be one image's border). */
static void shift(const kiln_bn_geom *g, const float *x, float *kc)
{
    const int64_t C = g->c, M = g->n * g->s, r = M < SHIFT_ROWS ? M : SHIFT_ROWS;
    for (int64_t c = 0; c < C; c++) kc[c] = 0;
    for (int64_t i = 0; i < r; i++) {
        const float *p = x + (i * M / r) * C;
        for (int64_t c = 0; c < C; c++) kc[c] += p[c];
    }
    for (int64_t c = 0; c < C; c++) kc[c] /= (float)r;
}

/* ---- entries ------------------------------------------------------------------------------- */

kiln_status kiln__cpu_batch_norm_fwd_nhwc(kiln_ctx *ctx, const kiln_bn_geom *g, bool train, float eps,
                                          const float *x, const float *w, const float *b, float *mean,
                                          float *var, float *y)
{
    kiln_mark mark = kiln_step_mark(ctx);
    plan p;
    const int64_t C = g->c;
    double *sa = kiln_step_alloc(ctx, (size_t)(2 * C) * sizeof(double)), *sb = sa ? sa + C : NULL; /* (C) */
    float *kc = kiln_step_alloc(ctx, (size_t)(3 * C) * sizeof(float)); /* shift, k, sh (C) */
    if (plan_init(ctx, g, &p) < 0 || !sa || !kc) {
        kiln_step_rewind(ctx, mark);
        return KILN_STATUS_NOMEM;
    }
    float *kw = p.coef, *shw = p.coef + p.w, *kk = kc + C, *sh = kc + 2 * C; /* (W), (W), (C), (C) */
    const double m = (double)(g->n * g->s);
    if (train && g->sums) { /* SyncBatchNorm's second pass: every rank's statistics */
        kiln__batch_norm_sync_stats(g, mean, var);
        train = false;
    }
    if (train) {
        shift(g, x, kc);
        spread(&p, p.coef + 2 * p.w, kc);
    }
    const int nt = p.nt;
    if (train) {
        KILN_PAR_FOR_N(nt)
        for (int t = 0; t < nt; t++) {
            const part q = part_of(&p, t);
            sums(&p, true, x, NULL, p.coef + 2 * p.w, q.r0, q.r1, q.tail, p.scratch + t * p.tstride);
        }
        fold(&p, nt, sa, sb);
        if (g->sums_out) { /* SyncBatchNorm's first pass */
            for (int64_t c = 0; c < C; c++) kiln__bn_put_sums(g, c, m, kc[c], sa[c], sb[c]);
            kiln_step_rewind(ctx, mark);
            return KILN_STATUS_OK;
        }
        for (int64_t c = 0; c < C; c++) {
            const double d = sa[c] / m, v = sb[c] / m - d * d;
            mean[c] = (float)(kc[c] + d);
            var[c] = (float)(v > 0 ? v : 0);
        }
    }
    for (int64_t c = 0; c < C; c++) bn_coef(w, b, mean, var, eps, c, &kk[c], &sh[c]);
    spread(&p, kw, kk);
    spread(&p, shw, sh);
    KILN_PAR_FOR_N(nt)
    for (int t = 0; t < nt; t++) {
        const part q = part_of(&p, t);
        if (g->relu) normalise_relu(&p, x, kw, shw, q.r0, q.r1, q.tail, y);
        else normalise(&p, x, kw, shw, q.r0, q.r1, q.tail, y);
    }
    kiln_step_rewind(ctx, mark);
    return KILN_STATUS_OK;
}

/* gx = k * (gy - mean(gy) - (x - mean) * mean(gy * (x - mean)) * invstd^2) in train mode
 * (k = w * invstd), as the NCHW kernel; computed as k * gy + (x - mean) * q + a. relu: gy
 * masked wherever it is read. */
kiln_status kiln__cpu_batch_norm_bwd_nhwc(kiln_ctx *ctx, const kiln_bn_geom *g, bool train, float eps,
                                          const float *x, const float *w, const float *mean,
                                          const float *var, const float *gy, float *gx, bool gx_acc,
                                          float *gw, float *gb)
{
    const bool need_sums = !g->sums && (gw || gb || (train && gx) || g->sums_out);
    if (!need_sums && !gx) return KILN_STATUS_OK;
    kiln_mark mark = kiln_step_mark(ctx);
    plan p;
    const int64_t C = g->c;
    double *sg = kiln_step_alloc(ctx, (size_t)(2 * C) * sizeof(double)), *sgx = sg ? sg + C : NULL; /* (C) */
    float *cc = kiln_step_alloc(ctx, (size_t)(5 * C) * sizeof(float)); /* k, q, a, fk, fsh (C) */
    if (plan_init(ctx, g, &p) < 0 || !sg || !cc) {
        kiln_step_rewind(ctx, mark);
        return KILN_STATUS_NOMEM;
    }
    if (g->sums) memcpy(sg, g->sums, (size_t)(2 * C) * sizeof(double)); /* SyncBatchNorm: every rank's */
    else if (!need_sums) memset(sg, 0, (size_t)(2 * C) * sizeof(double));
    float *cf = p.coef; /* k, q, a, mu, fk, fsh (W each) */
    const float *fk = cf + 4 * p.w, *fsh = cf + 5 * p.w;
    spread(&p, cf + 3 * p.w, mean);
    if (g->relu) { /* the forward's coefficients, for the mask */
        for (int64_t c = 0; c < C; c++) bn_coef(w, g->b, mean, var, eps, c, &cc[3 * C + c], &cc[4 * C + c]);
        spread(&p, cf + 4 * p.w, cc + 3 * C);
        spread(&p, cf + 5 * p.w, cc + 4 * C);
    }
    const double m = g->sums ? g->count : (double)(g->n * g->s);
    const int nt = p.nt;
    if (need_sums) {
        KILN_PAR_FOR_N(nt)
        for (int t = 0; t < nt; t++) {
            const part q = part_of(&p, t);
            double *acc = p.scratch + t * p.tstride;
            if (g->relu) sums_relu(&p, x, gy, cf + 3 * p.w, fk, fsh, q.r0, q.r1, q.tail, acc);
            else sums(&p, false, x, gy, cf + 3 * p.w, q.r0, q.r1, q.tail, acc);
        }
        fold(&p, nt, sg, sgx);
        if (g->sums_out) memcpy(g->sums_out, sg, (size_t)(2 * C) * sizeof(double));
    }
    for (int64_t c = 0; c < C; c++) {
        const float invstd = 1.0f / sqrtf(var[c] + eps), k = (w ? w[c] : 1.0f) * invstd;
        if (gb) gb[c] += (float)sg[c];
        if (gw) gw[c] += (float)(sgx[c] * invstd);
        cc[c] = k;
        cc[C + c] = train ? -k * ((float)(sgx[c] / m) * invstd * invstd) : 0.0f;
        cc[2 * C + c] = train ? -k * (float)(sg[c] / m) : 0.0f;
    }
    for (int i = 0; i < 3; i++) spread(&p, cf + i * p.w, cc + i * C);
    if (gx) {
        KILN_PAR_FOR_N(nt)
        for (int t = 0; t < nt; t++) {
            const part q = part_of(&p, t);
            if (g->relu) grad_x_relu(&p, train, gx_acc, x, gy, cf, q.r0, q.r1, q.tail, gx);
            else grad_x(&p, train, gx_acc, x, gy, cf, q.r0, q.r1, q.tail, gx);
        }
    }
    kiln_step_rewind(ctx, mark);
    return KILN_STATUS_OK;
}
