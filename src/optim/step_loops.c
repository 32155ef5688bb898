/* The optimizer's element loops (SGD, Adam / AdamW) over one contiguous run of a parameter,
 * vectorised: compiled for AVX-512 / AVX2 / baseline (target_clones, picked at load time) and
 * with -fno-math-errno (CMakeLists.txt, this file only), without which GCC keeps sqrtf scalar
 * to set errno on a negative argument. Vector and scalar code give the same bits: every
 * operation is IEEE-rounded (sqrt and division included) and the build does not contract
 * a*b+c into FMAs, so the expressions keep PyTorch's order element by element (src/optim/step.c
 * says which). The callers split a parameter into runs for threads (step.c) or rows for the
 * sparse step; the result does not depend on the split. */
#include "optim/optim_internal.h"

#include <math.h>

#define VEC __attribute__((target_clones("avx512f", "avx2", "default")))
#ifdef _OPENMP
#define SIMD _Pragma("omp simd")
#else
#define SIMD
#endif

/* The clones are static and called from a plain wrapper in this file: clang 14 emits a
 * multiversioned function's resolver only in a file that calls it (a call from step.c alone
 * left kiln__adam_run undefined in the fuzz build). */
VEC static void sgd_run(float *restrict p, const float *restrict g, float *restrict buf, int64_t n,
                        const kiln__sgd_h *hp)
{
    const kiln__sgd_h h = *hp;
    SIMD
    for (int64_t i = 0; i < n; i++) {
        float pi = p[i], d = g[i];
        if (h.decoupled) pi = pi * h.decay;
        if (h.use_l2) d = d + h.l2 * pi;
        if (h.use_mom) {
            float b = h.first ? d : buf[i] * h.mom + h.damp1 * d;
            buf[i] = b;
            d = h.nesterov ? d + h.mom * b : b;
        }
        p[i] = pi + h.neg_lr * d;
    }
}

VEC static void adam_run(float *restrict p, const float *restrict g, float *restrict m, float *restrict v, int64_t n,
                         const kiln__adam_h *hp)
{
    const kiln__adam_h h = *hp;
    SIMD
    for (int64_t i = 0; i < n; i++) {
        float pi = p[i], d = g[i];
        if (h.decoupled) pi = pi * h.decay;
        if (h.use_l2) d = d + h.l2 * pi;
        float mi = m[i] * h.b1 + h.omb1 * d;
        float vi = v[i] * h.b2 + h.omb2 * d * d;
        m[i] = mi;
        v[i] = vi;
        float denom = sqrtf(vi) / h.bc2_sqrt + h.eps;
        p[i] = pi + h.neg_step * mi / denom;
    }
}

void kiln__sgd_run(float *restrict p, const float *restrict g, float *restrict buf, int64_t n, const kiln__sgd_h *hp)
{
    sgd_run(p, g, buf, n, hp);
}

void kiln__adam_run(float *restrict p, const float *restrict g, float *restrict m, float *restrict v, int64_t n,
                    const kiln__adam_h *hp)
{
    adam_run(p, g, m, v, n, hp);
}
