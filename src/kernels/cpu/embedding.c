/* CPU embedding kernels: the row gather of the forward and the sparse scatter-add of the
 * backward, and the index copy-and-check that embedding and cross-entropy run on their
 * indices. The backward touches only the rows named by the indices (never a V x D pass),
 * and is race free by row ownership: part t of T adds exactly the rows r with
 * r % T == t, scanning the n indices in order. So every row's sum runs in ascending
 * index position whatever T is, and a skewed (Zipf) vocabulary still spreads over threads
 * because neighbouring frequent ids land on different threads. kiln__rows_mark lists the
 * rows a batch touched, for the optimizer's sparse step. */
#include "core/parallel.h"
#include "kernels/dense.h"

#include <string.h>

int64_t kiln__index_check(kiln_ctx *ctx, const void *src, bool i32, int64_t n, int64_t limit, bool has_ignore,
                          int64_t ignore_index, int64_t *dst, int64_t *kept)
{
    (void)ctx;
    if (i32) {
        const int32_t *s = src;
        for (int64_t i = 0; i < n; i++) dst[i] = s[i];
    } else if (n) {
        memcpy(dst, src, (size_t)n * sizeof *dst);
    }
    int64_t k = 0;
    for (int64_t i = 0; i < n; i++) {
        if (has_ignore && dst[i] == ignore_index) continue;
        if (dst[i] < 0 || dst[i] >= limit) return i;
        k++;
    }
    if (kept) *kept = k;
    return -1;
}

void kiln__cpu_embedding_fwd(kiln_ctx *ctx, const int64_t *idx, int64_t n, const float *w, int64_t d, float *out)
{
    KILN_PAR_LOOP(kiln__par_threads(ctx, n * d),
                  for (int64_t i = 0; i < n; i++) memcpy(out + i * d, w + idx[i] * d, (size_t)d * sizeof(float)););
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
    (void)v;
    const int64_t nt = kiln__par_threads(ctx, n * d);
    if (nt == 1) { /* no parallel region (src/core/parallel.h, KILN_PAR_LOOP); the same order */
        for (int64_t i = 0; i < n; i++) row_add(gw + idx[i] * d, gy + i * d, d);
        return KILN_STATUS_OK;
    }
    KILN_PAR_FOR(ctx, n * d)
    for (int64_t t = 0; t < nt; t++)
        for (int64_t i = 0; i < n; i++)
            if (idx[i] % nt == t) row_add(gw + idx[i] * d, gy + i * d, d);
    return KILN_STATUS_OK;
}

void kiln__rows_mark(const int64_t *idx, int64_t n, uint8_t *mark, int64_t *list, int64_t *n_list)
{
    int64_t k = *n_list;
    for (int64_t i = 0; i < n; i++) {
        const int64_t r = idx[i];
        if (!mark[r]) mark[r] = 1, list[k++] = r;
    }
    *n_list = k;
}
