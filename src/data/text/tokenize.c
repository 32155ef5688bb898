/* The tokenizer's public calls (kiln/text.h): fastai's rules, then the word split of every
 * whitespace-separated chunk, for one document or many on threads. */
#include "data/text/text_internal.h"

#include <stdlib.h>
#include <string.h>

static const char *const special[KILN_TOK_N_SPECIAL] = {"xxunk", "xxpad", "xxbos", "xxeos", "xxfld",
                                                        "xxrep", "xxwrep", "xxup", "xxmaj"};

const char *kiln_text_special(int i)
{
    return i >= 0 && i < KILN_TOK_N_SPECIAL ? special[i] : NULL;
}

void kiln_tokens_free(kiln_tokens *t)
{
    if (!t) return;
    free(t->tok);
    free(t->buf);
    memset(t, 0, sizeof *t);
}

static kiln_status oom(const char *what, size_t len)
{
    return kiln__err(KILN_STATUS_NOMEM, "%s: out of memory for a text of %zu bytes", what, len);
}

kiln_status kiln_text_rules(const char *text, size_t len, char **out, int64_t *n_replaced)
{
    if (!out || (!text && len)) return kiln__err(KILN_STATUS_INVALID, "kiln_text_rules: NULL argument");
    *out = NULL;
    int64_t rep = 0;
    kiln__cps in = {0}, r = {0};
    kiln__bytes o = {0};
    kiln__utf8_decode(text, len, &in, &rep);
    kiln__text_rules(&in, &r);
    kiln__utf8_encode(r.c, r.n, &o);
    bool bad = in.oom || r.oom || o.oom;
    kiln__cps_free(&in);
    kiln__cps_free(&r);
    if (bad) {
        kiln__bytes_free(&o);
        return oom("kiln_text_rules", len);
    }
    *out = o.s;
    if (n_replaced) *n_replaced = rep;
    return kiln__done(KILN_STATUS_OK);
}

/* splits s (valid UTF-8, NUL-free) at whitespace and each chunk into tokens */
static kiln_status split(const char *s, size_t n, kiln_tokens *out)
{
    kiln__bytes b = {0};
    int64_t nt = 0;
    kiln__cps cs = {0};
    int64_t dummy = 0;
    kiln__utf8_decode(s, n, &cs, &dummy); /* to find whitespace as Python's str.split does */
    size_t byte = 0;
    for (int64_t i = 0; i < cs.n;) {
        /* skip whitespace, then take a chunk: byte offsets advance with the code points */
        while (i < cs.n && kiln__is_space(cs.c[i])) byte += (size_t)kiln__cp_len(cs.c[i++]);
        size_t start = byte;
        while (i < cs.n && !kiln__is_space(cs.c[i])) byte += (size_t)kiln__cp_len(cs.c[i++]);
        if (byte > start) kiln__text_split_chunk(s + start, byte - start, &b, &nt);
    }
    bool bad = cs.oom || b.oom;
    kiln__cps_free(&cs);
    char **tok = bad ? NULL : malloc((size_t)(nt ? nt : 1) * sizeof *tok);
    if (bad || !tok) {
        kiln__bytes_free(&b);
        free(tok);
        return oom("kiln_text_split", n);
    }
    for (int64_t k = 0, at = 0; k < nt; k++) {
        tok[k] = b.s + at;
        at += (int64_t)strlen(b.s + at) + 1;
    }
    out->n = nt;
    out->tok = tok;
    out->buf = b.s;
    return KILN_STATUS_OK;
}

/* rules (or not) and split of one text, with bad bytes replaced first */
static kiln_status tokenize(const char *text, size_t len, bool rules, kiln_tokens *out)
{
    memset(out, 0, sizeof *out);
    int64_t rep = 0;
    kiln__cps in = {0}, r = {0};
    kiln__bytes o = {0};
    kiln__utf8_decode(text, len, &in, &rep);
    if (rules) kiln__text_rules(&in, &r);
    const kiln__cps *use = rules ? &r : &in;
    kiln__utf8_encode(use->c, use->n, &o);
    bool bad = in.oom || r.oom || o.oom;
    kiln__cps_free(&in);
    kiln__cps_free(&r);
    kiln_status st = bad ? oom("kiln_text_tokenize", len) : split(o.s ? o.s : "", o.len, out);
    kiln__bytes_free(&o);
    out->n_replaced = rep;
    return st;
}

kiln_status kiln_text_split(const char *text, size_t len, kiln_tokens *out)
{
    if (!out || (!text && len)) return kiln__err(KILN_STATUS_INVALID, "kiln_text_split: NULL argument");
    return kiln__done(tokenize(text, len, false, out));
}

kiln_status kiln_text_tokenize(const char *text, size_t len, kiln_tokens *out)
{
    if (!out || (!text && len)) return kiln__err(KILN_STATUS_INVALID, "kiln_text_tokenize: NULL argument");
    return kiln__done(tokenize(text, len, true, out));
}

typedef struct many {
    const char *const *texts;
    const size_t *lens;
    kiln_tokens *out;
    kiln_status *st;
} many;

static void one(void *user, int64_t i)
{
    many *m = user;
    size_t len = m->lens ? m->lens[i] : strlen(m->texts[i]);
    m->st[i] = tokenize(m->texts[i], len, true, &m->out[i]);
}

kiln_status kiln_text_tokenize_many(const char *const *texts, const size_t *lens, int64_t n, int n_threads,
                                    kiln_tokens *out)
{
    if (n < 0 || (n && (!texts || !out))) return kiln__err(KILN_STATUS_INVALID, "kiln_text_tokenize_many: bad arguments");
    for (int64_t i = 0; i < n; i++)
        if (!texts[i] && (!lens || lens[i]))
            return kiln__err(KILN_STATUS_INVALID, "kiln_text_tokenize_many: text %lld is NULL", (long long)i);
    kiln_status *st = calloc((size_t)(n ? n : 1), sizeof *st);
    if (!st) return oom("kiln_text_tokenize_many", 0);
    many m = {texts, lens, out, st};
    kiln__data_pthread_for(n_threads, n, one, &m);
    kiln_status res = KILN_STATUS_OK;
    for (int64_t i = 0; i < n; i++)
        if (st[i] && !res) res = kiln__err(st[i], "kiln_text_tokenize_many: text %lld: out of memory", (long long)i);
    free(st);
    if (res)
        for (int64_t i = 0; i < n; i++) kiln_tokens_free(&out[i]);
    return kiln__done(res);
}
