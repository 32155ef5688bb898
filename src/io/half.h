/* IEEE binary16 (f16) and bfloat16 <-> f32 conversions, bit exact, used when reading and
 * writing tensor files. f16/bf16 -> f32 is exact for every input (subnormals, +-0, +-inf,
 * NaN payloads kept). f32 -> f16/bf16 rounds to nearest even as PyTorch does, overflows to
 * inf, and turns NaN into a quiet NaN with the same sign and the top payload bits. Integer
 * only, so the result does not depend on the FPU rounding mode or on flush-to-zero. */
#ifndef KILN_IO_HALF_H
#define KILN_IO_HALF_H

#include <stdint.h>
#include <string.h>

static inline float kiln__bits_f32(uint32_t u)
{
    float f;
    memcpy(&f, &u, sizeof f);
    return f;
}

static inline uint32_t kiln__f32_bits(float f)
{
    uint32_t u;
    memcpy(&u, &f, sizeof u);
    return u;
}

static inline float kiln__f16_to_f32(uint16_t h)
{
    uint32_t sign = (uint32_t)(h & 0x8000u) << 16;
    uint32_t exp = (h >> 10) & 0x1fu;
    uint32_t man = h & 0x3ffu;
    if (exp == 0x1f) return kiln__bits_f32(sign | 0x7f800000u | (man << 13)); /* inf, NaN */
    if (exp != 0) return kiln__bits_f32(sign | ((exp + 112u) << 23) | (man << 13));
    if (man == 0) return kiln__bits_f32(sign); /* +-0 */
    /* Subnormal man * 2^-24: shift the leading 1 up to the implicit bit position. */
    uint32_t e = 113; /* biased f32 exponent of 2^-14, lowered once per shift */
    while (!(man & 0x400u)) {
        man <<= 1;
        e--;
    }
    return kiln__bits_f32(sign | (e << 23) | ((man & 0x3ffu) << 13));
}

static inline uint16_t kiln__f32_to_f16(float f)
{
    uint32_t x = kiln__f32_bits(f);
    uint16_t sign = (uint16_t)((x >> 16) & 0x8000u);
    uint32_t ax = x & 0x7fffffffu;
    if (ax > 0x7f800000u) return (uint16_t)(sign | 0x7e00u | ((ax >> 13) & 0x3ffu)); /* NaN */
    if (ax >= 0x47800000u) return (uint16_t)(sign | 0x7c00u); /* >= 2^16 (and inf): inf */
    if (ax >= 0x38800000u) {                                   /* normal f16 range */
        uint32_t odd = (ax >> 13) & 1u;
        /* Rebias the exponent (127 -> 15) and round half to even; a carry out of the
         * mantissa bumps the exponent, which also turns [65520, 65536) into inf. */
        ax += ((uint32_t)(15 - 127) << 23) + 0xfffu + odd;
        return (uint16_t)(sign | (ax >> 13));
    }
    uint32_t e = ax >> 23;
    if (e < 102) return sign; /* below 2^-25: rounds to zero (2^-25 itself ties to 0) */
    uint32_t m = (ax & 0x7fffffu) | 0x800000u; /* value = m * 2^(e - 150) */
    uint32_t shift = 126 - e;                   /* in 14..24: m >> shift is units of 2^-24 */
    uint32_t r = m >> shift, rem = m & ((1u << shift) - 1u), half = 1u << (shift - 1);
    if (rem > half || (rem == half && (r & 1u))) r++; /* may carry into the smallest normal */
    return (uint16_t)(sign | r);
}

static inline float kiln__bf16_to_f32(uint16_t b) { return kiln__bits_f32((uint32_t)b << 16); }

static inline uint16_t kiln__f32_to_bf16(float f)
{
    uint32_t x = kiln__f32_bits(f);
    if ((x & 0x7fffffffu) > 0x7f800000u) return (uint16_t)((x >> 16) | 0x40u); /* quiet NaN */
    x += 0x7fffu + ((x >> 16) & 1u);
    return (uint16_t)(x >> 16);
}

#endif
