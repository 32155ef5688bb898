/* fastai v2's text rules (fastai/text/core.py, defaults.text_proc_rules), in its order, on code
 * points: fix_html, replace_rep, replace_wrep, spec_add_spaces, rm_useless_spaces,
 * replace_all_caps, replace_maj, lowercase (with xxbos). Each is the regex fastai uses, written
 * as a scan that matches what Python's re.sub does with it (leftmost, non-overlapping, greedy);
 * tests/fixtures/gen_text.py runs the Python originals for the expected strings. */
#include "data/text/text_internal.h"

#include <string.h>

typedef struct { const char *from; const char *to; } pair;

/* fix_html's literal replacements, each over the whole text before the next; "\xe2\x80\xa6" is … */
static const pair html_fixes[] = {
    {"#39;", "'"}, {"amp;", "&"}, {"#146;", "'"}, {"nbsp;", " "}, {"#36;", "$"}, {"\\n", "\n"},
    {"quot;", "'"}, {"<br />", "\n"}, {"\\\"", "\""}, {"<unk>", "xxunk"}, {" @.@ ", "."}, {" @-@ ", "-"},
    {"...", " \xe2\x80\xa6"},
};

/* html.unescape's named references that kiln knows (with the ';'); others are left as they are. */
static const struct { const char *name; int32_t c; } entities[] = {
    {"amp", '&'}, {"lt", '<'}, {"gt", '>'}, {"quot", '"'}, {"apos", '\''}, {"nbsp", 0xa0}, {"copy", 0xa9},
    {"reg", 0xae}, {"trade", 0x2122}, {"hellip", 0x2026}, {"mdash", 0x2014}, {"ndash", 0x2013},
    {"lsquo", 0x2018}, {"rsquo", 0x2019}, {"ldquo", 0x201c}, {"rdquo", 0x201d}, {"laquo", 0xab},
    {"raquo", 0xbb}, {"eacute", 0xe9}, {"egrave", 0xe8}, {"ecirc", 0xea}, {"agrave", 0xe0}, {"aacute", 0xe1},
    {"acirc", 0xe2}, {"ccedil", 0xe7}, {"ouml", 0xf6}, {"uuml", 0xfc}, {"auml", 0xe4}, {"iuml", 0xef},
    {"euro", 0x20ac}, {"pound", 0xa3}, {"yen", 0xa5}, {"cent", 0xa2}, {"deg", 0xb0}, {"times", 0xd7},
    {"divide", 0xf7}, {"frac12", 0xbd}, {"middot", 0xb7}, {"bull", 0x2022}, {"sect", 0xa7}, {"para", 0xb6},
};

/* html.unescape's numeric references 0x80-0x9f: Windows-1252 */
static const int32_t cp1252[32] = {
    0x20ac, 0x81,   0x201a, 0x0192, 0x201e, 0x2026, 0x2020, 0x2021, 0x02c6, 0x2030, 0x0160,
    0x2039, 0x0152, 0x8d,   0x017d, 0x8f,   0x90,   0x2018, 0x2019, 0x201c, 0x201d, 0x2022,
    0x2013, 0x2014, 0x02dc, 0x2122, 0x0161, 0x203a, 0x0153, 0x9d,   0x017e, 0x0178,
};

static bool is_upper_ascii(int32_t c) { return c >= 'A' && c <= 'Z'; }
static bool is_lower_ascii(int32_t c) { return c >= 'a' && c <= 'z'; }

static bool match_ascii(const kiln__cps *t, int64_t i, const char *s)
{
    for (; *s; s++, i++)
        if (i >= t->n || t->c[i] != (unsigned char)*s) return false;
    return true;
}

static bool contains(const kiln__cps *t, const char *s)
{
    for (int64_t i = 0; i < t->n; i++)
        if (t->c[i] == (unsigned char)s[0] && match_ascii(t, i, s)) return true;
    return false;
}

static void replace_all(const kiln__cps *in, const char *from, const char *to, kiln__cps *out)
{
    size_t nf = strlen(from);
    kiln__cps to_c = {0};
    int64_t dummy = 0;
    kiln__utf8_decode(to, strlen(to), &to_c, &dummy);
    for (int64_t i = 0; i < in->n;) {
        if (match_ascii(in, i, from)) {
            for (int64_t k = 0; k < to_c.n; k++) kiln__cps_push(out, to_c.c[k]);
            i += (int64_t)nf;
        } else {
            kiln__cps_push(out, in->c[i++]);
        }
    }
    if (to_c.oom) out->oom = true;
    kiln__cps_free(&to_c);
}

/* html.unescape, for numeric references and the named ones above: returns the code points
 * consumed at i (0: no reference there), the replacement in *c (-1: nothing, as Python does
 * for control characters) */
static int64_t charref(const kiln__cps *t, int64_t i, int32_t *c)
{
    if (t->c[i] != '&' || i + 1 >= t->n) return 0;
    int64_t j = i + 1;
    if (t->c[j] == '#') {
        bool hex = j + 1 < t->n && (t->c[j + 1] == 'x' || t->c[j + 1] == 'X');
        j += hex ? 2 : 1;
        int64_t start = j;
        uint64_t num = 0;
        for (; j < t->n; j++) {
            int32_t d = t->c[j];
            int v = d >= '0' && d <= '9' ? d - '0' : hex && d >= 'a' && d <= 'f' ? d - 'a' + 10
                    : hex && d >= 'A' && d <= 'F' ? d - 'A' + 10 : -1;
            if (v < 0) break;
            if (num <= 0x10ffff) num = num * (hex ? 16 : 10) + (uint64_t)v;
        }
        if (j == start) return 0;
        if (j < t->n && t->c[j] == ';') j++;
        if (num == 0) *c = 0xfffd;
        else if (num == 0x0d) *c = '\r';
        else if (num >= 0x80 && num <= 0x9f) *c = cp1252[num - 0x80];
        else if ((num >= 0xd800 && num <= 0xdfff) || num > 0x10ffff) *c = 0xfffd;
        else if ((num >= 1 && num <= 8) || (num >= 0x0e && num <= 0x1f) || num == 0x0b || num == 0x7f ||
                 (num >= 0xfdd0 && num <= 0xfdef) || (num & 0xfffe) == 0xfffe)
            *c = -1;
        else *c = (int32_t)num;
        return j - i;
    }
    for (size_t e = 0; e < sizeof entities / sizeof entities[0]; e++) {
        size_t n = strlen(entities[e].name);
        if (match_ascii(t, j, entities[e].name) && j + (int64_t)n < t->n && t->c[j + (int64_t)n] == ';') {
            *c = entities[e].c;
            return (int64_t)n + 2;
        }
    }
    return 0;
}

static void fix_html(const kiln__cps *in, kiln__cps *out)
{
    kiln__cps a = {0}, b = {0};
    for (int64_t i = 0; i < in->n; i++) kiln__cps_push(&a, in->c[i]);
    for (size_t r = 0; r < sizeof html_fixes / sizeof html_fixes[0]; r++) {
        if (!contains(&a, html_fixes[r].from)) continue;
        b.n = 0;
        replace_all(&a, html_fixes[r].from, html_fixes[r].to, &b);
        kiln__cps t = a;
        a = b;
        b = t;
    }
    for (int64_t i = 0; i < a.n;) {
        int32_t c;
        int64_t k = charref(&a, i, &c);
        if (k) {
            if (c >= 0) kiln__cps_push(out, c);
            i += k;
        } else {
            kiln__cps_push(out, a.c[i++]);
        }
    }
    if (a.oom || b.oom) out->oom = true;
    kiln__cps_free(&a);
    kiln__cps_free(&b);
}

/* (\S)(\1{2,}) -> " xxrep N c " */
static void replace_rep(const kiln__cps *in, kiln__cps *out)
{
    for (int64_t i = 0; i < in->n;) {
        int32_t c = in->c[i];
        int64_t k = 1;
        if (!kiln__is_space(c))
            while (i + k < in->n && in->c[i + k] == c) k++;
        if (k >= 3) {
            kiln__cps_push_ascii(out, " xxrep ");
            kiln__cps_push_int(out, k);
            kiln__cps_push(out, ' ');
            kiln__cps_push(out, c);
            kiln__cps_push(out, ' ');
            i += k;
        } else {
            kiln__cps_push(out, in->c[i++]);
        }
    }
}

static bool same_word(const kiln__cps *t, int64_t at, int64_t w, int64_t wn)
{
    if (at + wn > t->n) return false;
    return memcmp(t->c + at, t->c + w, (size_t)wn * sizeof(int32_t)) == 0;
}

/* (?:\s|^)(\w+)\s+((?:\1\s+)+)\1(\s|\W|$) -> " xxwrep N w e": at p, the word w (a whole run of
 * \w) repeated j >= 3 times with whitespace between, the last followed by a non-word character
 * (kept as e, and consumed) or the end; the greedy group takes the largest such j. */
static int64_t wrep_at(const kiln__cps *t, int64_t p, kiln__cps *out)
{
    int64_t q;
    if (p < t->n && kiln__is_space(t->c[p])) q = p + 1;
    else if (p == 0) q = 0;
    else return 0;
    int64_t w = q, wn = 0;
    while (q + wn < t->n && kiln__is_word(t->c[q + wn])) wn++;
    if (!wn) return 0;
    int64_t r = w + wn;
    if (r >= t->n || !kiln__is_space(t->c[r])) return 0;
    while (r < t->n && kiln__is_space(t->c[r])) r++;
    int64_t best = 0, best_end = 0;
    for (int64_t j = 2;; j++) {
        if (!same_word(t, r, w, wn)) break;
        int64_t s = r + wn;
        if (s >= t->n || !kiln__is_word(t->c[s])) {
            if (j >= 3) best = j, best_end = s;
        }
        if (s >= t->n || !kiln__is_space(t->c[s])) break;
        r = s;
        while (r < t->n && kiln__is_space(t->c[r])) r++;
    }
    if (!best) return 0;
    kiln__cps_push_ascii(out, " xxwrep ");
    kiln__cps_push_int(out, best);
    kiln__cps_push(out, ' ');
    for (int64_t k = 0; k < wn; k++) kiln__cps_push(out, t->c[w + k]);
    kiln__cps_push(out, ' ');
    if (best_end < t->n) {
        kiln__cps_push(out, t->c[best_end]);
        best_end++;
    }
    return best_end - p;
}

static void replace_wrep(const kiln__cps *in, kiln__cps *out)
{
    for (int64_t p = 0; p < in->n;) {
        int64_t k = wrep_at(in, p, out);
        if (k) p += k;
        else kiln__cps_push(out, in->c[p++]);
    }
}

/* ([/#\\]) -> " c ", then " {2,}" -> " " */
static void spaces(const kiln__cps *in, kiln__cps *out)
{
    kiln__cps a = {0};
    for (int64_t i = 0; i < in->n; i++) {
        int32_t c = in->c[i];
        if (c == '/' || c == '#' || c == '\\') {
            kiln__cps_push(&a, ' ');
            kiln__cps_push(&a, c);
            kiln__cps_push(&a, ' ');
        } else {
            kiln__cps_push(&a, c);
        }
    }
    for (int64_t i = 0; i < a.n; i++)
        if (!(a.c[i] == ' ' && i > 0 && a.c[i - 1] == ' ')) kiln__cps_push(out, a.c[i]);
    if (a.oom) out->oom = true;
    kiln__cps_free(&a);
}

/* (\s|^)([A-Z]+[^a-z\s]*)(?=(\s|$)) -> "xxup w" (all_caps) and (\s|^)([A-Z][^A-Z\s]*)(?=(\s|$))
 * -> "xxmaj w" (maj), the word lowercased; the tag only for words of 2+ characters */
static void caps(const kiln__cps *in, kiln__cps *out, bool all_caps)
{
    for (int64_t p = 0; p < in->n;) {
        int64_t q = -1;
        if (kiln__is_space(in->c[p])) q = p + 1;
        else if (p == 0) q = 0;
        int64_t e = q;
        if (q >= 0 && q < in->n && is_upper_ascii(in->c[q])) {
            e = q + 1;
            while (e < in->n && !kiln__is_space(in->c[e]) &&
                   !(all_caps ? is_lower_ascii(in->c[e]) : is_upper_ascii(in->c[e])))
                e++;
            if (e < in->n && !kiln__is_space(in->c[e])) e = q; /* stopped at a letter: no match */
        }
        if (q < 0 || e == q) {
            kiln__cps_push(out, in->c[p++]);
            continue;
        }
        if (q > p) kiln__cps_push(out, in->c[p]);
        if (e - q > 1) kiln__cps_push_ascii(out, all_caps ? "xxup " : "xxmaj ");
        kiln__lower_into(in->c + q, e - q, out);
        p = e;
    }
}

/* "xxbos " + t.lower().strip() */
static void lowercase(const kiln__cps *in, kiln__cps *out)
{
    int64_t a = 0, b = in->n;
    while (a < b && kiln__is_space(in->c[a])) a++;
    while (b > a && kiln__is_space(in->c[b - 1])) b--;
    kiln__cps_push_ascii(out, "xxbos ");
    if (b > a) kiln__lower_into(in->c + a, b - a, out);
}

void kiln__text_rules(const kiln__cps *in, kiln__cps *out)
{
    void (*step[])(const kiln__cps *, kiln__cps *) = {fix_html, replace_rep, replace_wrep, spaces};
    kiln__cps a = {0}, b = {0};
    for (int64_t i = 0; i < in->n; i++) kiln__cps_push(&a, in->c[i]);
    for (size_t s = 0; s < sizeof step / sizeof step[0]; s++) {
        b.n = 0;
        step[s](&a, &b);
        kiln__cps t = a;
        a = b;
        b = t;
    }
    b.n = 0;
    caps(&a, &b, true);
    a.n = 0;
    caps(&b, &a, false);
    lowercase(&a, out);
    if (a.oom || b.oom || in->oom) out->oom = true;
    kiln__cps_free(&a);
    kiln__cps_free(&b);
}
