/* The vocabulary (kiln/text.h): fastai v2's make_vocab (count, most common first with ties in
 * the order first seen, min_freq, max_vocab, the specials in front, "xxfake" padding to a
 * multiple of 8), numericalizing, and the one-token-per-line file saved with a model. */
#include "data/text/text_internal.h"
#include "kiln/io.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

struct kiln_vocab {
    int64_t n;
    char **tok;
    kiln__strmap *id; /* token -> id ("xxfake" is left out: it maps to xxunk) */
};

kiln_vocab_params kiln_vocab_default_params(void)
{
    return (kiln_vocab_params){.max_vocab = 60000, .min_freq = 3};
}

void kiln_vocab_free(kiln_vocab *v)
{
    if (!v) return;
    if (v->tok)
        for (int64_t i = 0; i < v->n; i++) free(v->tok[i]);
    free(v->tok);
    kiln__strmap_free(v->id);
    free(v);
}

int64_t kiln_vocab_size(const kiln_vocab *v) { return v ? v->n : 0; }

const char *kiln_vocab_token(const kiln_vocab *v, int64_t id)
{
    return v && id >= 0 && id < v->n ? v->tok[id] : NULL;
}

int64_t kiln_vocab_id(const kiln_vocab *v, const char *token)
{
    if (!v || !token) return KILN_TOK_UNK;
    int64_t i = kiln__strmap_get(v->id, token);
    return i < 0 ? KILN_TOK_UNK : i;
}

void kiln_vocab_numericalize(const kiln_vocab *v, const kiln_tokens *doc, int64_t *ids, int64_t *n_unk)
{
    int64_t unk = 0;
    for (int64_t i = 0; i < doc->n; i++) {
        int64_t k = kiln__strmap_get(v->id, doc->tok[i]);
        if (k < 0) unk++, k = KILN_TOK_UNK;
        ids[i] = k;
    }
    if (n_unk) *n_unk = unk;
}

/* a vocabulary holding list[0..n) (copied); the specials must come first */
static kiln_status make(const char *const *list, int64_t n, const char *where, kiln_vocab **out)
{
    *out = NULL;
    for (int i = 0; i < KILN_TOK_N_SPECIAL && i < n; i++)
        if (strcmp(list[i], kiln_text_special(i)))
            return kiln__err(KILN_STATUS_FORMAT, "%s: token %d is \"%s\", expected the special token \"%s\" (line %d)",
                             where, i, list[i], kiln_text_special(i), i + 1);
    if (n < KILN_TOK_N_SPECIAL)
        return kiln__err(KILN_STATUS_FORMAT, "%s: %lld tokens, fewer than the %d special tokens", where, (long long)n,
                         KILN_TOK_N_SPECIAL);
    kiln_vocab *v = calloc(1, sizeof *v);
    if (!v || !(v->tok = calloc((size_t)n, sizeof *v->tok)) || !(v->id = kiln__strmap_new())) {
        kiln_vocab_free(v);
        return kiln__err(KILN_STATUS_NOMEM, "%s: out of memory for %lld tokens", where, (long long)n);
    }
    for (int64_t i = 0; i < n; i++) {
        v->n = i + 1;
        if (!(v->tok[i] = strdup(list[i]))) goto nomem;
        if (!strcmp(list[i], "xxfake")) continue;
        bool ins;
        int64_t *slot = kiln__strmap_slot(v->id, list[i], i, &ins);
        if (!slot) goto nomem;
        if (!ins) {
            kiln_status st = kiln__err(KILN_STATUS_FORMAT, "%s: token \"%s\" on line %lld is also on line %lld", where,
                                       list[i], (long long)(i + 1), (long long)(*slot + 1));
            kiln_vocab_free(v);
            return st;
        }
    }
    *out = v;
    return KILN_STATUS_OK;
nomem:
    kiln_vocab_free(v);
    return kiln__err(KILN_STATUS_NOMEM, "%s: out of memory for %lld tokens", where, (long long)n);
}

kiln_status kiln_vocab_from_list(const char *const *tokens, int64_t n, kiln_vocab **out)
{
    if (!out || (n && !tokens)) return kiln__err(KILN_STATUS_INVALID, "kiln_vocab_from_list: NULL argument");
    for (int64_t i = 0; i < n; i++)
        if (!tokens[i] || !tokens[i][0])
            return kiln__err(KILN_STATUS_INVALID, "kiln_vocab_from_list: token %lld is empty", (long long)i);
    return kiln__done(make(tokens, n, "kiln_vocab_from_list", out));
}

kiln_vocab *kiln_vocab_copy(const kiln_vocab *v)
{
    if (!v) return kiln__errp(KILN_STATUS_INVALID, "kiln_vocab_copy: NULL vocabulary");
    kiln_vocab *c = NULL;
    return make((const char *const *)v->tok, v->n, "kiln_vocab_copy", &c) ? NULL : c;
}

typedef struct counted {
    const char *tok;
    int64_t count, first;
} counted;

static int by_count(const void *a, const void *b)
{
    const counted *x = a, *y = b;
    if (x->count != y->count) return x->count > y->count ? -1 : 1;
    return x->first < y->first ? -1 : x->first > y->first;
}

kiln_status kiln_vocab_build(const kiln_tokens *docs, int64_t n_docs, const kiln_vocab_params *p, kiln_vocab **out)
{
    kiln_vocab_params d = p ? *p : kiln_vocab_default_params();
    if (!out || (n_docs && !docs) || n_docs < 0)
        return kiln__err(KILN_STATUS_INVALID, "kiln_vocab_build: NULL argument");
    if (d.max_vocab < KILN_TOK_N_SPECIAL || d.min_freq < 1)
        return kiln__err(KILN_STATUS_INVALID, "kiln_vocab_build: max_vocab %lld (at least %d) and min_freq %lld (at least 1)",
                         (long long)d.max_vocab, KILN_TOK_N_SPECIAL, (long long)d.min_freq);
    kiln__strmap *m = kiln__strmap_new();
    int64_t n_tok = 0, cap = 1024;
    counted *c = malloc((size_t)cap * sizeof *c);
    const char **list = NULL;
    kiln_status st = KILN_STATUS_OK;
    if (!m || !c) goto nomem;
    /* count, remembering the order each token was first seen (Python's Counter) */
    for (int64_t i = 0; i < n_docs; i++)
        for (int64_t k = 0; k < docs[i].n; k++) {
            bool ins;
            int64_t *slot = kiln__strmap_slot(m, docs[i].tok[k], n_tok, &ins);
            if (!slot) goto nomem;
            if (ins) {
                if (n_tok == cap) {
                    counted *g = realloc(c, (size_t)(cap *= 2) * sizeof *c);
                    if (!g) goto nomem;
                    c = g;
                }
                c[n_tok] = (counted){docs[i].tok[k], 0, n_tok};
                n_tok++;
            }
            c[*slot].count++;
        }
    qsort(c, (size_t)n_tok, sizeof *c, by_count);
    /* most_common(max_vocab) with count >= min_freq, then the specials moved to the front */
    int64_t keep = 0;
    while (keep < n_tok && keep < d.max_vocab && c[keep].count >= d.min_freq) keep++;
    list = malloc((size_t)(keep + KILN_TOK_N_SPECIAL + 8) * sizeof *list);
    if (!list) goto nomem;
    int64_t n = 0;
    for (int i = 0; i < KILN_TOK_N_SPECIAL; i++) list[n++] = kiln_text_special(i);
    for (int64_t i = 0; i < keep; i++) {
        bool spec = false;
        for (int s = 0; s < KILN_TOK_N_SPECIAL; s++) spec |= !strcmp(c[i].tok, kiln_text_special(s));
        if (!spec) list[n++] = c[i].tok;
    }
    if (n > d.max_vocab) n = d.max_vocab;
    while (n % 8) list[n++] = "xxfake";
    st = make(list, n, "kiln_vocab_build", out);
    goto done;
nomem:
    st = kiln__err(KILN_STATUS_NOMEM, "kiln_vocab_build: out of memory counting %lld distinct tokens", (long long)n_tok);
done:
    free(list);
    free(c);
    kiln__strmap_free(m);
    return kiln__done(st);
}

kiln_status kiln_vocab_save(const kiln_vocab *v, const char *path)
{
    if (!v || !path) return kiln__err(KILN_STATUS_INVALID, "kiln_vocab_save: NULL argument");
    kiln_atomic *a;
    if (kiln_atomic_begin(path, &a)) return kiln_last_status();
    FILE *f = kiln_atomic_stream(a);
    for (int64_t i = 0; i < v->n; i++) fprintf(f, "%s\n", v->tok[i]);
    return kiln_atomic_commit(a);
}

kiln_status kiln_vocab_load(const char *path, kiln_vocab **out)
{
    if (!path || !out) return kiln__err(KILN_STATUS_INVALID, "kiln_vocab_load: NULL argument");
    *out = NULL;
    FILE *f = fopen(path, "rb");
    if (!f) return kiln__err(KILN_STATUS_IO, "cannot open vocabulary %s: %s", path, strerror(errno));
    char **list = NULL;
    int64_t n = 0, cap = 0;
    char *line = NULL;
    size_t lcap = 0;
    ssize_t len;
    kiln_status st = KILN_STATUS_OK;
    while ((len = getline(&line, &lcap, f)) >= 0) {
        if (len && line[len - 1] == '\n') line[--len] = 0;
        const char *why = NULL;
        if (!len) why = "an empty line";
        else if ((size_t)len != strlen(line)) why = "a NUL byte";
        else if (kiln__utf8_invalid_at(line, (size_t)len) >= 0) why = "invalid UTF-8";
        else
            for (ssize_t i = 0; i < len && !why; i++)
                if (line[i] == ' ' || line[i] == '\t' || line[i] == '\r') why = "whitespace inside a token";
        if (why) {
            st = kiln__err(KILN_STATUS_FORMAT, "vocabulary %s line %lld: %s", path, (long long)(n + 1), why);
            break;
        }
        if (n == cap) {
            char **g = realloc(list, (size_t)(cap = cap ? cap * 2 : 1024) * sizeof *list);
            if (!g) {
                st = kiln__err(KILN_STATUS_NOMEM, "vocabulary %s: out of memory", path);
                break;
            }
            list = g;
        }
        if (!(list[n] = strdup(line))) {
            st = kiln__err(KILN_STATUS_NOMEM, "vocabulary %s: out of memory", path);
            break;
        }
        n++;
    }
    if (!st && ferror(f)) st = kiln__err(KILN_STATUS_IO, "cannot read vocabulary %s: %s", path, strerror(errno));
    fclose(f);
    free(line);
    if (!st) {
        char where[4200];
        snprintf(where, sizeof where, "vocabulary %s", path);
        st = make((const char *const *)list, n, where, out);
    }
    for (int64_t i = 0; i < n; i++) free(list[i]);
    free(list);
    return kiln__done(st);
}

kiln_status kiln_vocab_match_embeds(const kiln_vocab *old_v, const float *old_w, const kiln_vocab *new_v,
                                    int64_t dim, float *new_w, int64_t *n_copied)
{
    if (!old_v || !old_w || !new_v || !new_w || dim < 1)
        return kiln__err(KILN_STATUS_INVALID, "kiln_vocab_match_embeds: NULL argument or dim %lld < 1", (long long)dim);
    double *mean = calloc((size_t)dim, sizeof *mean);
    if (!mean) return kiln__err(KILN_STATUS_NOMEM, "kiln_vocab_match_embeds: out of memory");
    for (int64_t i = 0; i < old_v->n; i++)
        for (int64_t k = 0; k < dim; k++) mean[k] += old_w[i * dim + k];
    for (int64_t k = 0; k < dim; k++) mean[k] /= (double)old_v->n;
    int64_t copied = 0;
    for (int64_t i = 0; i < new_v->n; i++) {
        int64_t j = strcmp(new_v->tok[i], "xxfake") ? kiln__strmap_get(old_v->id, new_v->tok[i]) : -1;
        for (int64_t k = 0; k < dim; k++) new_w[i * dim + k] = j >= 0 ? old_w[j * dim + k] : (float)mean[k];
        copied += j >= 0;
    }
    free(mean);
    if (n_copied) *n_copied = copied;
    return kiln__done(KILN_STATUS_OK);
}
