/* Kernel table of the dense family (see src/kernels/backend.h): GEMM, embedding gather and
 * scatter, softmax / log-softmax, the fused log-softmax + NLL of cross-entropy, the
 * pointwise losses, dropout masks, and the index copy-and-check of embedding and
 * cross-entropy. No autograd here: the ops in src/autograd/dense.c, dropout.c and loss.c
 * validate arguments, allocate outputs and call these.
 *
 * Conventions: every pointer is to contiguous row-major memory; f32 unless stated. A
 * tensor reduced over one dim is viewed as (outer, c, inner) with the reduced dim in the
 * middle (inner = 1 for the last dim). Backward kernels ADD into their gradient outputs
 * unless a flag says they overwrite. Each table entry has a plain reference twin in
 * kiln__ref_dense (src/kernels/cpu/dense_ref.c) that the tests compare it with. */
#ifndef KILN_KERNELS_DENSE_H
#define KILN_KERNELS_DENSE_H

#include "kernels/backend.h"

/* Pointwise losses sharing one kernel pair. */
typedef enum kiln_ploss_kind {
    KILN_PLOSS_MSE = 0, /* (x - y)^2 */
    KILN_PLOSS_L1,      /* |x - y| */
    KILN_PLOSS_BCE,     /* -[pw*y*log s(x) + (1-y)*log(1 - s(x))], s = sigmoid, pw = 1 or pos_weight */
} kiln_ploss_kind;

struct kiln_dense_kernels {
    /* c (m, n) = alpha * op(a) @ op(b) + beta * c, op(a) (m, k), op(b) (k, n); a stored
     * (m, k) with row stride lda, or (k, m) when trans_a; likewise b. k = 0 scales c. */
    kiln_status (*gemm)(kiln_ctx *ctx, bool trans_a, bool trans_b, int64_t m, int64_t n, int64_t k,
                        float alpha, const float *a, int64_t lda, const float *b, int64_t ldb, float beta,
                        float *c, int64_t ldc);
    /* y (m, n): every row a copy of b (n), the start that linear's GEMM adds x @ w^T into. */
    void (*fill_rows)(kiln_ctx *ctx, const float *b, int64_t m, int64_t n, float *y);
    /* gb (n) += column sums of g (m, n): the bias gradient of linear. */
    void (*col_sum)(kiln_ctx *ctx, const float *g, int64_t m, int64_t n, float *gb);
    /* dst (n) = src (n; i64, or i32 when i32, widened), checked in order: returns the first
     * position whose index lies outside [0, limit) and is not ignore_index (when has_ignore),
     * or -1 when all are good; *kept (may be NULL) = the positions not ignored. */
    int64_t (*index_check)(kiln_ctx *ctx, const void *src, bool i32, int64_t n, int64_t limit, bool has_ignore,
                           int64_t ignore_index, int64_t *dst, int64_t *kept);
    /* out (n, d) = w[idx[i]], w (v, d); idx already checked to lie in [0, v). */
    void (*embedding_fwd)(kiln_ctx *ctx, const int64_t *idx, int64_t n, const float *w, int64_t d, float *out);
    /* gw (v, d) += sum over i with idx[i] = r of gy[i] (n, d). Touches only the rows in idx;
     * race free without atomics, and the summation order per row is fixed (ascending i)
     * whatever the thread count. */
    kiln_status (*embedding_bwd)(kiln_ctx *ctx, const int64_t *idx, int64_t n, const float *gy, int64_t v,
                                 int64_t d, float *gw);
    /* The rows idx (n, each in [0, v)) names, added once each to list (*n_list entries, in
     * first-touch order) with mark[r] = 1: the touched rows of a parameter whose optimizer step
     * is sparse (src/core/rowset.h). */
    void (*rows_mark)(const int64_t *idx, int64_t n, uint8_t *mark, int64_t *list, int64_t *n_list);
    /* y = softmax or log_softmax (log) of x (outer, c, inner) over c, as exp(x - m) / s and
     * (x - m) - log s (m the max, s = sum exp(x - m)). y must not alias x. */
    void (*softmax_fwd)(kiln_ctx *ctx, const float *x, float *y, int64_t outer, int64_t c, int64_t inner, bool log);
    /* gx += dL/dx from y (the forward output) and gy, same layout. */
    void (*softmax_bwd)(kiln_ctx *ctx, const float *y, const float *gy, float *gx, int64_t outer, int64_t c,
                        int64_t inner, bool log);
    /* Cross-entropy forward over logits x (outer, c, inner), targets t (outer, inner) I64
     * already checked (in [0, c) or == ignore_index). Writes per position p the loss (0 when
     * ignored), (1-eps)*(lse - x_t) + eps/c * (c*lse - sum_c x), and stat[2p] = m, the max
     * over c, stat[2p+1] = log sum_c exp(x - m). lse = m + log s is never formed: rounded
     * to the precision of |m| it would cost x - lse up to |m| * 6e-8 (2e-4 relative at
     * logits of 1e4); (x - m) - log s keeps the float precision of the result. Returns the
     * sum of the losses, added in position order in double. c = 0 (every target ignored)
     * writes zeros. */
    double (*xent_fwd)(kiln_ctx *ctx, const float *x, const int64_t *t, int64_t outer, int64_t c, int64_t inner,
                     int64_t ignore_index, float smoothing, float *loss, float *stat);
    /* gx (outer, c, inner) (+)= g[p * g_stride] * (softmax(x) - (1-eps)*onehot(t) - eps/c),
     * softmax(x) = exp((x - m) - log s) from xent_fwd's stat; 0 at ignored positions;
     * g_stride 0 = one scale for all. overwrite: gx is written, not accumulated (it is
     * fresh, uninitialised memory); one pass over x and gx. gx may be x itself (in place,
     * with overwrite): the logits become their gradient. */
    void (*xent_bwd)(kiln_ctx *ctx, const float *x, const int64_t *t, const float *stat, const float *g,
                     int64_t g_stride, int64_t outer, int64_t c, int64_t inner, int64_t ignore_index,
                     float smoothing, float *gx, bool overwrite);
    /* Pointwise loss of x, y (n); pw (n) is bce's pos_weight or NULL. Writes the per-
     * element loss to out when not NULL and returns the sum (in double). */
    double (*ploss_fwd)(kiln_ctx *ctx, kiln_ploss_kind kind, const float *x, const float *y, const float *pw,
                        int64_t n, float *out);
    /* gx += g[i * g_stride] * dloss/dx, gy += g * dloss/dy (either may be NULL). */
    void (*ploss_bwd)(kiln_ctx *ctx, kiln_ploss_kind kind, const float *x, const float *y, const float *pw,
                      int64_t n, const float *g, int64_t g_stride, float *gx, float *gy);
    /* mask[i] = kiln_philox_uniform(seed, first + i) >= p ? scale : 0; when x and y are not
     * NULL also y[i] = x[i] * mask[i]. mask may be NULL when x and y are not: y only (a dropout
     * that draws its mask again in the backward instead of keeping it). The same for any
     * thread count. */
    void (*dropout_fwd)(kiln_ctx *ctx, uint64_t seed, uint64_t first, int64_t n, float p, float scale,
                        float *mask, const float *x, float *y);
    /* gx[i] += gy[i] * mask[i] with mask[i] drawn as dropout_fwd draws it from (seed, first):
     * dropout's backward without a stored mask. */
    void (*dropout_bwd)(kiln_ctx *ctx, uint64_t seed, uint64_t first, int64_t n, float p, float scale,
                        const float *gy, float *gx);
};

extern const kiln_dense_kernels kiln__cpu_dense;
/* Plain single-threaded versions of the same kernels, for tests. */
extern const kiln_dense_kernels kiln__ref_dense;
/* The index_check entry of both tables (a plain loop already; src/kernels/cpu/embedding.c). */
int64_t kiln__index_check(kiln_ctx *ctx, const void *src, bool i32, int64_t n, int64_t limit, bool has_ignore,
                          int64_t ignore_index, int64_t *dst, int64_t *kept);
/* The rows_mark entry of both tables (src/kernels/cpu/embedding.c). */
void kiln__rows_mark(const int64_t *idx, int64_t n, uint8_t *mark, int64_t *list, int64_t *n_list);

#endif
