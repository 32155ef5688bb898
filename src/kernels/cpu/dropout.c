/* CPU dropout mask: element i of a draw keeps (mask = scale) when the context RNG's
 * uniform at counter first + i is >= p. Each element depends only on (seed, first + i),
 * so the mask is identical for any thread count. */
#include "kernels/dense.h"

void kiln__cpu_dropout_fwd(kiln_ctx *ctx, uint64_t seed, uint64_t first, int64_t n, float p, float scale,
                           float *mask, const float *x, float *y)
{
    (void)ctx;
#pragma omp parallel for schedule(static) if (n > 16384)
    for (int64_t i = 0; i < n; i++) {
        float m = kiln_philox_uniform(seed, first + (uint64_t)i) >= p ? scale : 0.0f;
        mask[i] = m;
        if (y) y[i] = x[i] * m;
    }
}
