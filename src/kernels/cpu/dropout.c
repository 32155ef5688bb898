/* CPU dropout mask: element i of a draw keeps (mask = scale) when the context RNG's
 * uniform at counter first + i is >= p. Each element depends only on (seed, first + i),
 * so the mask is identical for any thread count.
 *
 * kiln_philox_uniform (src/core/rng.c) is an out-of-line call per element; to let the
 * compiler vectorise the draw (~5x faster), the same Philox4x32-10 round function and
 * 24-bit float conversion are inlined here. The reference kernel in dense_ref.c calls
 * kiln_philox_uniform itself and tests/test_dropout.c requires both masks to be equal bit
 * for bit, so any drift from core's generator fails the tests. */
#include "kernels/dense.h"

#define VEC __attribute__((target_clones("avx512f", "avx2", "default")))

static inline __attribute__((always_inline)) float philox_u01(uint64_t seed, uint64_t counter)
{
    uint32_t k0 = (uint32_t)seed, k1 = (uint32_t)(seed >> 32);
    uint32_t c0 = (uint32_t)counter, c1 = (uint32_t)(counter >> 32), c2 = 0, c3 = 0;
#pragma GCC unroll 10
    for (int r = 0; r < 10; r++) {
        uint64_t p0 = (uint64_t)0xD2511F53u * c0, p1 = (uint64_t)0xCD9E8D57u * c2;
        uint32_t n0 = (uint32_t)(p1 >> 32) ^ c1 ^ k0, n2 = (uint32_t)(p0 >> 32) ^ c3 ^ k1;
        c1 = (uint32_t)p1;
        c3 = (uint32_t)p0;
        c0 = n0;
        c2 = n2;
        k0 += 0x9E3779B9u;
        k1 += 0xBB67AE85u;
    }
    return (float)(c0 >> 8) * (1.0f / 16777216.0f);
}

VEC static void mask_block(uint64_t seed, uint64_t first, int64_t i0, int64_t i1, float p, float scale,
                           float *restrict mask, const float *restrict x, float *restrict y)
{
#ifdef _OPENMP
#pragma omp simd
#endif
    for (int64_t i = i0; i < i1; i++) mask[i] = philox_u01(seed, first + (uint64_t)i) >= p ? scale : 0.0f;
    if (y) {
#ifdef _OPENMP
#pragma omp simd
#endif
        for (int64_t i = i0; i < i1; i++) y[i] = x[i] * mask[i];
    }
}

void kiln__cpu_dropout_fwd(kiln_ctx *ctx, uint64_t seed, uint64_t first, int64_t n, float p, float scale,
                           float *mask, const float *x, float *y)
{
    (void)ctx;
    const int64_t blk = 4096;
    int64_t nb = (n + blk - 1) / blk;
#pragma omp parallel for schedule(static) if (n > 16384)
    for (int64_t b = 0; b < nb; b++) mask_block(seed, first, b * blk, b + 1 < nb ? (b + 1) * blk : n, p, scale, mask, x, y);
}
