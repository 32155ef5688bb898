/* The CPU kernel table of the dense family: optimized kernels from gemm.c, embedding.c
 * (with the index check both tables share), softmax.c, loss.c and dropout.c (their
 * reference twins are in dense_ref.c). */
#include "kernels/dense.h"

kiln_status kiln__cpu_gemm(kiln_ctx *ctx, bool trans_a, bool trans_b, int64_t m, int64_t n, int64_t k, float alpha,
                           const float *a, int64_t lda, const float *b, int64_t ldb, float beta, float *c,
                           int64_t ldc);
void kiln__cpu_fill_rows(kiln_ctx *ctx, const float *b, int64_t m, int64_t n, float *y);
void kiln__cpu_col_sum(kiln_ctx *ctx, const float *g, int64_t m, int64_t n, float *gb);
void kiln__cpu_embedding_fwd(kiln_ctx *ctx, const int64_t *idx, int64_t n, const float *w, int64_t d, float *out);
kiln_status kiln__cpu_embedding_bwd(kiln_ctx *ctx, const int64_t *idx, int64_t n, const float *gy, int64_t v,
                                    int64_t d, float *gw);
void kiln__cpu_softmax_fwd(kiln_ctx *ctx, const float *x, float *y, int64_t outer, int64_t c, int64_t inner,
                           bool log);
void kiln__cpu_softmax_bwd(kiln_ctx *ctx, const float *y, const float *gy, float *gx, int64_t outer, int64_t c,
                           int64_t inner, bool log);
double kiln__cpu_xent_fwd(kiln_ctx *ctx, const float *x, const int64_t *t, int64_t outer, int64_t c,
                          int64_t inner, int64_t ignore_index, float smoothing, float *loss, float *stat);
void kiln__cpu_xent_bwd(kiln_ctx *ctx, const float *x, const int64_t *t, const float *stat, const float *g,
                        int64_t g_stride, int64_t outer, int64_t c, int64_t inner, int64_t ignore_index,
                        float smoothing, float *gx, bool overwrite);
double kiln__cpu_ploss_fwd(kiln_ctx *ctx, kiln_ploss_kind kind, const float *x, const float *y, const float *pw,
                           int64_t n, float *out);
void kiln__cpu_ploss_bwd(kiln_ctx *ctx, kiln_ploss_kind kind, const float *x, const float *y, const float *pw,
                         int64_t n, const float *g, int64_t g_stride, float *gx, float *gy);
void kiln__cpu_dropout_fwd(kiln_ctx *ctx, uint64_t seed, uint64_t first, int64_t n, float p, float scale,
                           float *mask, const float *x, float *y);
void kiln__cpu_dropout_bwd(kiln_ctx *ctx, uint64_t seed, uint64_t first, int64_t n, float p, float scale,
                           const float *gy, float *gx);

const kiln_dense_kernels kiln__cpu_dense = {
    .gemm = kiln__cpu_gemm,
    .fill_rows = kiln__cpu_fill_rows,
    .col_sum = kiln__cpu_col_sum,
    .index_check = kiln__index_check,
    .embedding_fwd = kiln__cpu_embedding_fwd,
    .embedding_bwd = kiln__cpu_embedding_bwd,
    .rows_mark = kiln__rows_mark,
    .softmax_fwd = kiln__cpu_softmax_fwd,
    .softmax_bwd = kiln__cpu_softmax_bwd,
    .xent_fwd = kiln__cpu_xent_fwd,
    .xent_bwd = kiln__cpu_xent_bwd,
    .ploss_fwd = kiln__cpu_ploss_fwd,
    .ploss_bwd = kiln__cpu_ploss_bwd,
    .dropout_fwd = kiln__cpu_dropout_fwd,
    .dropout_bwd = kiln__cpu_dropout_bwd,
};
