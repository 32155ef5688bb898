/* CPU dropout mask: element i of a draw keeps (mask = scale) when the context RNG's
 * uniform at counter first + i is >= p. Each element depends only on (seed, first + i),
 * so the mask is identical for any thread count, and a backward can draw it again instead of
 * keeping it (dropout_bwd).
 *
 * kiln_philox_uniform (src/core/rng.c) is an out-of-line call per element; to let the
 * compiler vectorise the draw (~5x faster), the generator it is built on (core/philox.h,
 * always inlined) is used here directly. The reference kernel in dense_ref.c calls
 * kiln_philox_uniform itself and tests/test_dropout.c requires both masks to be equal bit
 * for bit. */
#include "core/philox.h"
#include "core/parallel.h"
#include "kernels/dense.h"

#define VEC __attribute__((target_clones("avx512f", "avx2", "default")))

VEC static void mask_block(uint64_t seed, uint64_t first, int64_t i0, int64_t i1, float p, float scale,
                           float *restrict mask, const float *restrict x, float *restrict y)
{
#ifdef _OPENMP
#pragma omp simd
#endif
    for (int64_t i = i0; i < i1; i++) {
        float u = kiln__philox_u01(kiln__philox(seed, first + (uint64_t)i).v[0]);
        mask[i] = u >= p ? scale : 0.0f;
    }
    if (y) {
#ifdef _OPENMP
#pragma omp simd
#endif
        for (int64_t i = i0; i < i1; i++) y[i] = x[i] * mask[i];
    }
}

/* y[i] (+)= x[i] * mask[i] without storing the mask: dropout's forward when nobody keeps the mask,
 * and its backward (x = gy, y = gx, acc) drawing the same mask again */
VEC static void apply_block(uint64_t seed, uint64_t first, int64_t i0, int64_t i1, float p, float scale,
                            const float *restrict x, float *restrict y, bool acc)
{
    if (acc) {
#ifdef _OPENMP
#pragma omp simd
#endif
        for (int64_t i = i0; i < i1; i++) {
            float u = kiln__philox_u01(kiln__philox(seed, first + (uint64_t)i).v[0]);
            y[i] += x[i] * (u >= p ? scale : 0.0f);
        }
    } else {
#ifdef _OPENMP
#pragma omp simd
#endif
        for (int64_t i = i0; i < i1; i++) {
            float u = kiln__philox_u01(kiln__philox(seed, first + (uint64_t)i).v[0]);
            y[i] = x[i] * (u >= p ? scale : 0.0f);
        }
    }
}

void kiln__cpu_dropout_fwd(kiln_ctx *ctx, uint64_t seed, uint64_t first, int64_t n, float p, float scale,
                           float *mask, const float *x, float *y)
{
    const int64_t blk = 4096;
    int64_t nb = (n + blk - 1) / blk;
    KILN_PAR_FOR(ctx, 2 * n) /* a Philox draw per element */
    for (int64_t b = 0; b < nb; b++) {
        int64_t i0 = b * blk, i1 = b + 1 < nb ? (b + 1) * blk : n;
        if (mask)
            mask_block(seed, first, i0, i1, p, scale, mask, x, y);
        else
            apply_block(seed, first, i0, i1, p, scale, x, y, false);
    }
}

void kiln__cpu_dropout_bwd(kiln_ctx *ctx, uint64_t seed, uint64_t first, int64_t n, float p, float scale,
                           const float *gy, float *gx)
{
    const int64_t blk = 4096;
    int64_t nb = (n + blk - 1) / blk;
    KILN_PAR_FOR(ctx, 3 * n) /* a Philox draw per element */
    for (int64_t b = 0; b < nb; b++) apply_block(seed, first, b * blk, b + 1 < nb ? (b + 1) * blk : n, p, scale, gy, gx, true);
}
