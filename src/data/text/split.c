/* Splits one whitespace-free chunk of text into words and punctuation: the Penn Treebank rules
 * as NLTK's TreebankWordTokenizer applies them (each regex pass written as a scan with Python's
 * re.sub semantics), on the chunk alone, so every chunk's final period is split off (kiln's
 * rule: NLTK splits only the text's last one) except after an abbreviation, and with both
 * kinds of Treebank quotes (`` and '') given back as ". Passes work on bytes: every pattern
 * is ASCII, and a multi-byte character only ever stands where "any other character" may. */
#include "data/text/text_internal.h"

#include <stdlib.h>
#include <string.h>
#include <utf8proc.h>

typedef kiln__bytes buf;

static void put(buf *b, const char *s) { kiln__bytes_put(b, s, strlen(s)); }

static bool is_digit(char c) { return c >= '0' && c <= '9'; }
static char lc(char c) { return c >= 'A' && c <= 'Z' ? (char)(c + 32) : c; }

/* the code point ending just before byte i / starting at byte i is a word character (\w) */
static bool word_before(const char *s, size_t i)
{
    if (i == 0) return false;
    size_t k = i - 1;
    while (k > 0 && ((unsigned char)s[k] & 0xc0) == 0x80) k--;
    utf8proc_int32_t c;
    if (utf8proc_iterate((const utf8proc_uint8_t *)s + k, (utf8proc_ssize_t)(i - k), &c) <= 0) return false;
    return kiln__is_word(c);
}

static bool word_at(const char *s, size_t n, size_t i)
{
    if (i >= n) return false;
    utf8proc_int32_t c;
    if (utf8proc_iterate((const utf8proc_uint8_t *)s + i, (utf8proc_ssize_t)(n - i), &c) <= 0) return false;
    return kiln__is_word(c);
}

static bool ieq(const char *s, size_t n, size_t i, const char *w)
{
    for (; *w; w++, i++)
        if (i >= n || lc(s[i]) != *w) return false;
    return true;
}

/* "''" and '"' -> " '' ", and the starting quotes: ^" -> ``, `` -> " `` ",
 * ([ \(\[{<])("|'') -> "\1 `` " (the three STARTING_QUOTES passes, then ENDING_QUOTES' first two:
 * both kinds become the token " in the end, so only where spaces go matters) */
static void starting_quotes(const char *s, size_t n, buf *o)
{
    buf a = {0}, b = {0};
    size_t i = 0;
    if (n && s[0] == '"') put(&a, "``"), i = 1;
    kiln__bytes_put(&a, s + i, n - i);
    for (i = 0; i < a.len;) {
        if (a.s[i] == '`' && i + 1 < a.len && a.s[i + 1] == '`') put(&b, " `` "), i += 2;
        else kiln__bytes_putc(&b, a.s[i++]);
    }
    for (i = 0; i < b.len;) {
        char c = b.s[i];
        bool open = c == ' ' || c == '(' || c == '[' || c == '{' || c == '<';
        if (open && i + 1 < b.len && b.s[i + 1] == '"') {
            kiln__bytes_putc(o, c), put(o, " `` "), i += 2;
        } else if (open && i + 2 < b.len && b.s[i + 1] == '\'' && b.s[i + 2] == '\'') {
            kiln__bytes_putc(o, c), put(o, " `` "), i += 3;
        } else {
            kiln__bytes_putc(o, b.s[i++]);
        }
    }
    if (a.oom || b.oom) o->oom = true;
    kiln__bytes_free(&a);
    kiln__bytes_free(&b);
}

/* kiln's exception to the final-period rule: "u.s.", "e.g.", "a.m." (letters and periods in
 * turn) and a few titles and Latin abbreviations keep their period */
static bool abbreviation(const char *s, size_t n)
{
    static const char *const words[] = {"mr.", "mrs.", "ms.", "dr.", "prof.", "jr.", "sr.", "st.", "vs.", "etc.",
                                        "inc.", "ltd.", "co."};
    for (size_t k = 0; k < sizeof words / sizeof words[0]; k++)
        if (strlen(words[k]) == n && ieq(s, n, 0, words[k])) return true;
    if (n < 4 || n % 2) return false;
    for (size_t i = 0; i < n; i += 2)
        if (!((lc(s[i]) >= 'a' && lc(s[i]) <= 'z') && s[i + 1] == '.')) return false;
    return true;
}

static bool closer(char c) { return c == ']' || c == ')' || c == '}' || c == '>' || c == '"' || c == '\''; }

/* PUNCTUATION and PARENS_BRACKETS and DOUBLE_DASHES */
static void punctuation(const char *s, size_t n, bool keep_period, buf *o)
{
    buf a = {0}, b = {0};
    /* ([:,])([^\d]) -> " \1 \2"; ([:,])$ -> " \1 " */
    for (size_t i = 0; i < n;) {
        if ((s[i] == ':' || s[i] == ',') && i + 1 < n && !is_digit(s[i + 1])) {
            kiln__bytes_putc(&a, ' '), kiln__bytes_putc(&a, s[i]), kiln__bytes_putc(&a, ' ');
            kiln__bytes_putc(&a, s[i + 1]);
            i += 2;
        } else if ((s[i] == ':' || s[i] == ',') && i + 1 == n) {
            kiln__bytes_putc(&a, ' '), kiln__bytes_putc(&a, s[i]), kiln__bytes_putc(&a, ' ');
            i++;
        } else {
            kiln__bytes_putc(&a, s[i++]);
        }
    }
    /* \.\.\. -> " ... "; [;@#$%&] -> " c " */
    for (size_t i = 0; i < a.len;) {
        if (i + 2 < a.len && a.s[i] == '.' && a.s[i + 1] == '.' && a.s[i + 2] == '.') {
            put(&b, " ... ");
            i += 3;
        } else if (strchr(";@#$%&", a.s[i])) {
            kiln__bytes_putc(&b, ' '), kiln__bytes_putc(&b, a.s[i]), kiln__bytes_putc(&b, ' ');
            i++;
        } else {
            kiln__bytes_putc(&b, a.s[i++]);
        }
    }
    /* ([^\.])(\.)([\]\)}>"\']*)\s*$ -> "\1 \2\3 ": the final period */
    a.len = 0;
    size_t e = b.len;
    while (e > 0 && b.s[e - 1] == ' ') e--;
    size_t c = e;
    while (c > 0 && closer(b.s[c - 1])) c--;
    if (!keep_period && c >= 2 && b.s[c - 1] == '.' && b.s[c - 2] != '.') {
        kiln__bytes_put(&a, b.s, c - 1);
        kiln__bytes_putc(&a, ' ');
        kiln__bytes_put(&a, b.s + c - 1, e - (c - 1));
        kiln__bytes_putc(&a, ' ');
    } else {
        kiln__bytes_put(&a, b.s ? b.s : "", b.len);
    }
    /* [?!] -> " c "; then ([^'])' -> "\1 ' " */
    b.len = 0;
    for (size_t i = 0; i < a.len; i++) {
        if (a.s[i] == '?' || a.s[i] == '!') kiln__bytes_putc(&b, ' '), kiln__bytes_putc(&b, a.s[i]), kiln__bytes_putc(&b, ' ');
        else kiln__bytes_putc(&b, a.s[i]);
    }
    a.len = 0;
    for (size_t i = 0; i < b.len;) {
        if (b.s[i] != '\'' && i + 2 < b.len + 0 && b.s[i + 1] == '\'' && b.s[i + 2] == ' ') {
            kiln__bytes_putc(&a, b.s[i]), put(&a, " ' ");
            i += 3;
        } else {
            kiln__bytes_putc(&a, b.s[i++]);
        }
    }
    /* brackets -> " c "; "--" -> " -- " */
    b.len = 0;
    for (size_t i = 0; i < a.len; i++) {
        if (strchr("[](){}<>", a.s[i])) kiln__bytes_putc(&b, ' '), kiln__bytes_putc(&b, a.s[i]), kiln__bytes_putc(&b, ' ');
        else kiln__bytes_putc(&b, a.s[i]);
    }
    for (size_t i = 0; i < b.len;) {
        if (i + 1 < b.len && b.s[i] == '-' && b.s[i + 1] == '-') put(o, " -- "), i += 2;
        else kiln__bytes_putc(o, b.s[i++]);
    }
    if (a.oom || b.oom) o->oom = true;
    kiln__bytes_free(&a);
    kiln__bytes_free(&b);
}

/* ENDING_QUOTES: '' and " -> " '' "; ([^' ])('[sS]|'[mM]|'[dD]|') -> "\1 \2 ";
 * ([^' ])('ll|'LL|'re|'RE|'ve|'VE|n't|N'T) -> "\1 \2 " (on " " + text + " ") */
static void ending_quotes(const char *s, size_t n, buf *o)
{
    buf a = {0}, b = {0};
    kiln__bytes_putc(&a, ' ');
    for (size_t i = 0; i < n;) {
        if (s[i] == '\'' && i + 1 < n && s[i + 1] == '\'') put(&a, " '' "), i += 2;
        else if (s[i] == '"') put(&a, " '' "), i++;
        else kiln__bytes_putc(&a, s[i++]);
    }
    kiln__bytes_putc(&a, ' ');
    for (size_t i = 0; i < a.len;) {
        size_t k = 0; /* length of \2 */
        if (a.s[i] != '\'' && a.s[i] != ' ' && i + 1 < a.len && a.s[i + 1] == '\'') {
            char x = i + 2 < a.len ? a.s[i + 2] : 0;
            if (strchr("sSmMdD", x) && x && i + 3 < a.len && a.s[i + 3] == ' ') k = 2;
            else if (x == ' ') k = 1;
        }
        if (k) {
            kiln__bytes_putc(&b, a.s[i]), kiln__bytes_putc(&b, ' ');
            kiln__bytes_put(&b, a.s + i + 1, k), kiln__bytes_putc(&b, ' ');
            i += k + 2;
        } else {
            kiln__bytes_putc(&b, a.s[i++]);
        }
    }
    static const char *const two[] = {"'ll", "'LL", "'re", "'RE", "'ve", "'VE", "n't", "N'T"};
    for (size_t i = 0; i < b.len;) {
        size_t k = 0;
        if (b.s[i] != '\'' && b.s[i] != ' ')
            for (size_t t = 0; t < 8 && !k; t++)
                if (i + 4 < b.len && !memcmp(b.s + i + 1, two[t], 3) && b.s[i + 4] == ' ') k = 3;
        if (k) {
            kiln__bytes_putc(o, b.s[i]), kiln__bytes_putc(o, ' ');
            kiln__bytes_put(o, b.s + i + 1, 3), kiln__bytes_putc(o, ' ');
            i += 5;
        } else {
            kiln__bytes_putc(o, b.s[i++]);
        }
    }
    if (a.oom || b.oom) o->oom = true;
    kiln__bytes_free(&a);
    kiln__bytes_free(&b);
}

/* CONTRACTIONS2 ((?i)\b(can)(not)\b, ... -> " \1 \2 ") and CONTRACTIONS3 ((?i) ('t)(is)\b ...),
 * each a pass of its own, in NLTK's order */
static void contraction(const char *s, size_t n, const char *w1, const char *w2, int kind, buf *o)
{
    size_t n1 = strlen(w1), n2 = strlen(w2);
    for (size_t i = 0; i < n;) {
        bool m;
        if (kind == 3) /* " 't" "is": a space first, consumed */
            m = s[i] == ' ' && ieq(s, n, i + 1, w1) && ieq(s, n, i + 1 + n1, w2) && !word_at(s, n, i + 1 + n1 + n2);
        else
            m = !word_before(s, i) && ieq(s, n, i, w1) && ieq(s, n, i + n1, w2) &&
                (kind == 1 ? (i + n1 + n2 < n && s[i + n1 + n2] == ' ') : !word_at(s, n, i + n1 + n2));
        if (m) {
            size_t a = kind == 3 ? i + 1 : i;
            put(o, " ");
            kiln__bytes_put(o, s + a, n1);
            put(o, " ");
            kiln__bytes_put(o, s + a + n1, n2);
            put(o, " ");
            i = a + n1 + n2;
        } else {
            kiln__bytes_putc(o, s[i++]);
        }
    }
}

static void contractions(const char *s, size_t n, buf *o)
{
    /* kind 0: \b..\b; 1: wan-na needs whitespace after; 3: " 't" + is / was */
    static const struct { const char *a, *b; int kind; } c[] = {
        {"can", "not", 0}, {"d", "'ye", 0}, {"gim", "me", 0}, {"gon", "na", 0}, {"got", "ta", 0},
        {"lem", "me", 0}, {"more", "'n", 0}, {"wan", "na", 1}, {"'t", "is", 3}, {"'t", "was", 3},
    };
    buf a = {0}, b = {0};
    kiln__bytes_put(&a, s, n);
    for (size_t k = 0; k < sizeof c / sizeof c[0]; k++) {
        b.len = 0;
        contraction(a.s ? a.s : "", a.len, c[k].a, c[k].b, c[k].kind, &b);
        buf t = a;
        a = b;
        b = t;
    }
    kiln__bytes_put(o, a.s ? a.s : "", a.len);
    if (a.oom || b.oom) o->oom = true;
    kiln__bytes_free(&a);
    kiln__bytes_free(&b);
}

/* A chunk of ASCII letters, digits and '_' only is one token (no pass changes it), unless it is
 * one of the contractions above, which are whole words here (\b only at its ends). */
static bool plain_word(const char *s, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        char c = s[i];
        if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '_')) return false;
    }
    static const char *const joined[] = {"cannot", "gimme", "gonna", "gotta", "lemme", "wanna"};
    for (size_t k = 0; k < sizeof joined / sizeof joined[0]; k++)
        if (strlen(joined[k]) == n && ieq(s, n, 0, joined[k])) return false;
    return true;
}

void kiln__text_split_chunk(const char *chunk, size_t n, kiln__bytes *out, int64_t *n_tok)
{
    if (plain_word(chunk, n)) {
        kiln__bytes_put(out, chunk, n);
        kiln__bytes_put(out, "", 1);
        (*n_tok)++;
        return;
    }
    /* a plain word and one of . , ; : ! ? (the commonest chunk after a plain word): the two
     * tokens, but an abbreviation's period stays */
    if (n >= 2 && strchr(".,;:!?", chunk[n - 1]) && plain_word(chunk, n - 1)) {
        bool keep = chunk[n - 1] == '.' && abbreviation(chunk, n);
        kiln__bytes_put(out, chunk, keep ? n : n - 1);
        kiln__bytes_put(out, "", 1);
        if (!keep) kiln__bytes_put(out, chunk + n - 1, 1), kiln__bytes_put(out, "", 1);
        *n_tok += keep ? 1 : 2;
        return;
    }
    buf a = {0}, b = {0};
    starting_quotes(chunk, n, &a);
    punctuation(a.s ? a.s : "", a.len, abbreviation(chunk, n), &b);
    a.len = 0;
    ending_quotes(b.s ? b.s : "", b.len, &a);
    b.len = 0;
    contractions(a.s ? a.s : "", a.len, &b);
    for (size_t i = 0; i < b.len;) {
        while (i < b.len && b.s[i] == ' ') i++;
        size_t j = i;
        while (j < b.len && b.s[j] != ' ') j++;
        if (j > i) {
            bool quote = j - i == 2 && (!memcmp(b.s + i, "``", 2) || !memcmp(b.s + i, "''", 2));
            if (quote) kiln__bytes_put(out, "\"", 1);
            else kiln__bytes_put(out, b.s + i, j - i);
            kiln__bytes_put(out, "", 1);
            (*n_tok)++;
        }
        i = j;
    }
    if (a.oom || b.oom) out->oom = true;
    kiln__bytes_free(&a);
    kiln__bytes_free(&b);
}
