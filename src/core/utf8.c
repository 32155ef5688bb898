/* Strict UTF-8 validation (no overlong forms, surrogates or code points above U+10FFFF), as
 * JSON readers (Python's json, the Rust safetensors crate, cJSON users) expect. */
#include "core/internal.h"

int64_t kiln__utf8_invalid_at(const char *str, size_t n)
{
    const unsigned char *s = (const unsigned char *)str;
    for (size_t i = 0; i < n;) {
        unsigned c = s[i];
        if (c < 0x80) {
            i++;
            continue;
        }
        if (c < 0xc2 || c > 0xf4) return (int64_t)i;
        size_t k = c >= 0xf0 ? 3 : c >= 0xe0 ? 2 : 1;
        unsigned lo = c == 0xe0 ? 0xa0 : c == 0xf0 ? 0x90 : 0x80, hi = c == 0xed ? 0x9f : c == 0xf4 ? 0x8f : 0xbf;
        if (k > n - i - 1) return (int64_t)i;
        for (size_t j = 1; j <= k; j++, lo = 0x80, hi = 0xbf)
            if (s[i + j] < lo || s[i + j] > hi) return (int64_t)i;
        i += k + 1;
    }
    return -1;
}
