/* Philox4x32-10 (Salmon et al. 2011), the one counter-based generator behind kiln's random
 * numbers: kiln_philox_uniform and the context RNG fills (core/rng.c) and the CPU dropout
 * mask (kernels/cpu/dropout.c), which must draw the same bits (tests/test_dropout.c checks
 * the CPU mask against the reference kernel's kiln_philox_uniform bit for bit).
 *
 * Always inlined with the rounds unrolled, so a SIMD loop over counters vectorises (the
 * dropout mask is ~5x faster than an out-of-line call per element). */
#ifndef KILN_CORE_PHILOX_H
#define KILN_CORE_PHILOX_H

#include <stdint.h>

typedef struct kiln__u32x4 {
    uint32_t v[4];
} kiln__u32x4;

/* The four 32-bit words of block counter under key seed. */
static inline __attribute__((always_inline)) kiln__u32x4 kiln__philox(uint64_t seed, uint64_t counter)
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
    return (kiln__u32x4){{c0, c1, c2, c3}};
}

/* A word's top 24 bits as a float in [0, 1). */
static inline __attribute__((always_inline)) float kiln__philox_u01(uint32_t x)
{
    return (float)(x >> 8) * (1.0f / 16777216.0f);
}

#endif
