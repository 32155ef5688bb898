/* The text code's buffers and Unicode helpers (text_internal.h): code point and byte buffers,
 * UTF-8 decoding that replaces and counts bad bytes, and the character classes of Python's re
 * module (\s, \w) and str.lower, through utf8proc, so kiln's rules match fastai's regexes. */
#include "data/text/text_internal.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <utf8proc.h>

static bool grow(void **p, int64_t *cap, int64_t need, size_t elem)
{
    if (need <= *cap) return true;
    int64_t c = *cap ? *cap : 64;
    while (c < need) c *= 2;
    void *q = realloc(*p, (size_t)c * elem);
    if (!q) return false;
    *p = q;
    *cap = c;
    return true;
}

bool kiln__cps_grow(kiln__cps *b, int64_t need)
{
    if (b->oom) return false;
    if (!grow((void **)&b->c, &b->cap, need, sizeof(int32_t))) {
        b->oom = true;
        return false;
    }
    return true;
}

void kiln__cps_push_ascii(kiln__cps *b, const char *s)
{
    for (; *s; s++) kiln__cps_push(b, (unsigned char)*s);
}

void kiln__cps_push_int(kiln__cps *b, int64_t v)
{
    char num[24];
    snprintf(num, sizeof num, "%lld", (long long)v);
    kiln__cps_push_ascii(b, num);
}

void kiln__cps_free(kiln__cps *b)
{
    free(b->c);
    memset(b, 0, sizeof *b);
}

bool kiln__bytes_grow(kiln__bytes *b, size_t need)
{
    if (b->oom) return false;
    int64_t cap = (int64_t)b->cap;
    if (!grow((void **)&b->s, &cap, (int64_t)need + 1, 1)) {
        b->oom = true;
        return false;
    }
    b->cap = (size_t)cap;
    return true;
}

void kiln__bytes_free(kiln__bytes *b)
{
    free(b->s);
    memset(b, 0, sizeof *b);
}

void kiln__utf8_decode(const char *s, size_t n, kiln__cps *out, int64_t *n_replaced)
{
    const utf8proc_uint8_t *u = (const utf8proc_uint8_t *)s;
    for (size_t i = 0; i < n;) {
        utf8proc_int32_t c;
        utf8proc_ssize_t k = utf8proc_iterate(u + i, (utf8proc_ssize_t)(n - i), &c);
        if (k <= 0 || c == 0) { /* a bad byte (or NUL): U+FFFD, move one byte on */
            kiln__cps_push(out, 0xFFFD);
            (*n_replaced)++;
            i++;
            continue;
        }
        kiln__cps_push(out, c);
        i += (size_t)k;
    }
}

void kiln__utf8_encode(const int32_t *c, int64_t n, kiln__bytes *out)
{
    for (int64_t i = 0; i < n; i++) {
        utf8proc_uint8_t buf[4];
        utf8proc_ssize_t k = utf8proc_encode_char(c[i], buf);
        kiln__bytes_put(out, (const char *)buf, (size_t)k);
    }
}

bool kiln__is_space(int32_t c)
{
    /* CPython's _PyUnicode_IsWhitespace: bidi classes WS, B, S and category Zs */
    if (c < 0x80) return c == ' ' || (c >= 0x09 && c <= 0x0d) || (c >= 0x1c && c <= 0x1f);
    switch (c) {
    case 0x85: case 0xa0: case 0x1680: case 0x2028: case 0x2029: case 0x202f: case 0x205f: case 0x3000:
        return true;
    default:
        return c >= 0x2000 && c <= 0x200a;
    }
}

bool kiln__is_word(int32_t c)
{
    if (c < 0x80) return (c >= '0' && c <= '9') || (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || c == '_';
    switch (utf8proc_category(c)) {
    case UTF8PROC_CATEGORY_LU: case UTF8PROC_CATEGORY_LL: case UTF8PROC_CATEGORY_LT: case UTF8PROC_CATEGORY_LM:
    case UTF8PROC_CATEGORY_LO: case UTF8PROC_CATEGORY_ND: case UTF8PROC_CATEGORY_NL: case UTF8PROC_CATEGORY_NO:
        return true;
    default:
        return false;
    }
}

int32_t kiln__lower(int32_t c)
{
    if (c < 0x80) return c >= 'A' && c <= 'Z' ? c + 32 : c;
    return utf8proc_tolower(c);
}

static bool cased(int32_t c)
{
    return utf8proc_tolower(c) != c || utf8proc_toupper(c) != c || utf8proc_category(c) == UTF8PROC_CATEGORY_LT;
}

static bool case_ignorable(int32_t c)
{
    switch (utf8proc_category(c)) {
    case UTF8PROC_CATEGORY_MN: case UTF8PROC_CATEGORY_ME: case UTF8PROC_CATEGORY_CF: case UTF8PROC_CATEGORY_LM:
    case UTF8PROC_CATEGORY_SK:
        return true;
    default: /* Word_Break MidLetter, MidNumLet, Single_Quote */
        return c == '\'' || c == '.' || c == ':' || c == 0xb7 || c == 0x2018 || c == 0x2019 || c == 0x2024 ||
               c == 0xfe52 || c == 0xff07 || c == 0xff0e || c == 0x387 || c == 0x5f4 || c == 0x2027 || c == 0xfe13 ||
               c == 0xfe55 || c == 0xff1a;
    }
}

void kiln__lower_into(const int32_t *c, int64_t n, kiln__cps *out)
{
    for (int64_t i = 0; i < n; i++) {
        if (c[i] == 0x130) { /* the one one-to-many lowercase mapping: I with dot above */
            kiln__cps_push(out, 'i');
            kiln__cps_push(out, 0x307);
            continue;
        }
        if (c[i] == 0x3a3) { /* capital sigma: final (ς) after a cased letter and not before one */
            int64_t j = i - 1, k = i + 1;
            while (j >= 0 && case_ignorable(c[j])) j--;
            while (k < n && case_ignorable(c[k])) k++;
            bool final = j >= 0 && cased(c[j]) && !(k < n && cased(c[k]));
            kiln__cps_push(out, final ? 0x3c2 : 0x3c3);
            continue;
        }
        kiln__cps_push(out, kiln__lower(c[i]));
    }
}
