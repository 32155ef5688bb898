/* CPU GEMM for the dense family: oneDNN's dnnl_sgemm (JIT AVX-512/AVX2 kernels, threaded
 * with the same OpenMP runtime as the rest of kiln), and linear's bias: the row fill its
 * forward starts from and the column sum of its gradient. Measured on this machine (2
 * cores, Xeon with AVX-512), 1024^3 row-major:
 * dnnl_sgemm ~235 GFLOP/s; Debian's OpenBLAS 0.3.21 pthread build detects the CPU as
 * "Prescott" (31 GFLOP/s) and even forced to SkylakeX is slower than oneDNN and runs its
 * own thread pool beside OpenMP's, so kiln does not route GEMMs through BLAS. */
#include "core/parallel.h"
#include "kernels/dense.h"
#include "kernels/cpu/dnnl_util.h"

#include <string.h>

/* gcc's -O2 vectoriser skips loops of unknown trip count; omp simd forces them. */
#define PRAGMA_(x) _Pragma(#x)
#ifdef _OPENMP
#define SIMD PRAGMA_(omp simd)
#else
#define SIMD
#endif

kiln_status kiln__cpu_gemm(kiln_ctx *ctx, bool trans_a, bool trans_b, int64_t m, int64_t n, int64_t k, float alpha,
                           const float *a, int64_t lda, const float *b, int64_t ldb, float beta, float *c,
                           int64_t ldc)
{
    if (m <= 0 || n <= 0) return KILN_STATUS_OK;
    if (k <= 0) { /* nothing to multiply: c = beta * c */
        for (int64_t i = 0; i < m; i++) {
            float *row = c + i * ldc;
            if (beta == 0.0f)
                memset(row, 0, (size_t)n * sizeof *row);
            else
                for (int64_t j = 0; j < n; j++) row[j] *= beta;
        }
        return KILN_STATUS_OK;
    }
    kiln__dnnl_threads(ctx);
    KILN_DNNL("gemm", dnnl_sgemm(trans_a ? 'T' : 'N', trans_b ? 'T' : 'N', m, n, k, alpha, a, lda, b, ldb, beta,
                                 c, ldc));
    return KILN_STATUS_OK;
}

void kiln__cpu_fill_rows(kiln_ctx *ctx, const float *b, int64_t m, int64_t n, float *y)
{
    KILN_PAR_LOOP(kiln__par_threads(ctx, m * n), for (int64_t i = 0; i < m; i++) memcpy(y + i * n, b, (size_t)n * sizeof *y););
}

/* Column sums: threads own disjoint column blocks and walk all rows, so each gb[j] is
 * summed in row order by one thread (deterministic, no atomics). */
#define COL_BLOCK 512

__attribute__((target_clones("avx512f", "avx2", "default"))) static void col_block(const float *g, int64_t m,
                                                                                   int64_t n, int64_t j0,
                                                                                   int64_t j1, float *gb)
{
    float acc[COL_BLOCK];
    int64_t w = j1 - j0;
    for (int64_t j = 0; j < w; j++) acc[j] = 0.0f;
    for (int64_t i = 0; i < m; i++) {
        const float *row = g + i * n + j0;
        SIMD
        for (int64_t j = 0; j < w; j++) acc[j] += row[j];
    }
    for (int64_t j = 0; j < w; j++) gb[j0 + j] += acc[j];
}

void kiln__cpu_col_sum(kiln_ctx *ctx, const float *g, int64_t m, int64_t n, float *gb)
{
    int64_t nb = (n + COL_BLOCK - 1) / COL_BLOCK;
    KILN_PAR_LOOP(kiln__par_threads(ctx, m * n), for (int64_t b = 0; b < nb; b++) {
        int64_t j0 = b * COL_BLOCK, j1 = j0 + COL_BLOCK < n ? j0 + COL_BLOCK : n;
        col_block(g, m, n, j0, j1, gb);
    });
}
