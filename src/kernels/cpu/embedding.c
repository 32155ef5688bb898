/* CPU embedding kernels: the row gather of the forward and the sparse scatter-add of the
 * backward. The backward touches only the rows named by the indices (never a V x D pass),
 * and is race free by row ownership: thread t of T adds exactly the rows r with
 * r % T == t, scanning the n indices in order. So every row's sum runs in ascending
 * index position whatever T is, and a skewed (Zipf) vocabulary still spreads over threads
 * because neighbouring frequent ids land on different threads. */
#include "kernels/dense.h"

#include <string.h>
#ifdef _OPENMP
#include <omp.h>
#endif

void kiln__cpu_embedding_fwd(kiln_ctx *ctx, const int64_t *idx, int64_t n, const float *w, int64_t d, float *out)
{
    (void)ctx;
#pragma omp parallel for schedule(static) if (n * d > 32768)
    for (int64_t i = 0; i < n; i++) memcpy(out + i * d, w + idx[i] * d, (size_t)d * sizeof(float));
}

__attribute__((target_clones("avx512f", "avx2", "default"))) static void row_add(float *restrict dst,
                                                                                 const float *restrict src,
                                                                                 int64_t d)
{
#ifdef _OPENMP
#pragma omp simd
#endif
    for (int64_t j = 0; j < d; j++) dst[j] += src[j];
}

kiln_status kiln__cpu_embedding_bwd(kiln_ctx *ctx, const int64_t *idx, int64_t n, const float *gy, int64_t v,
                                    int64_t d, float *gw)
{
    (void)ctx;
    (void)v;
    if (n * d <= 32768) {
        for (int64_t i = 0; i < n; i++) row_add(gw + idx[i] * d, gy + i * d, d);
        return KILN_STATUS_OK;
    }
#pragma omp parallel
    {
        int64_t t = 0, nt = 1;
#ifdef _OPENMP
        t = omp_get_thread_num();
        nt = omp_get_num_threads();
#endif
        for (int64_t i = 0; i < n; i++)
            if (idx[i] % nt == t) row_add(gw + idx[i] * d, gy + i * d, d);
    }
    return KILN_STATUS_OK;
}
