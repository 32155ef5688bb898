/* A language-model corpus from files (kiln/text.h, kiln_text_lm_data_open): text files cut into
 * paragraphs, folders of .txt files, CSV text columns; a seeded document split; tokenizing on
 * threads; the vocabulary; the LM batches. */
#include "data/text/text_internal.h"
#include "kiln/io.h"

#include <dirent.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

kiln_text_lm_data_params kiln_text_lm_data_default_params(void)
{
    return (kiln_text_lm_data_params){.text_col = "text", .valid_pct = 0.1, .split_seed = 42,
                                      .vocab = kiln_vocab_default_params(), .lm = kiln_lm_data_default_params(),
                                      .n_threads = 2};
}

typedef struct docs {
    char **s;
    size_t *len;
    int64_t n, cap, n_files;
} docs;

static kiln_status add(docs *d, const char *s, size_t n)
{
    if (d->n == d->cap) {
        int64_t cap = d->cap ? 2 * d->cap : 1024;
        char **a = realloc(d->s, (size_t)cap * sizeof *a);
        if (a) d->s = a;
        size_t *b = realloc(d->len, (size_t)cap * sizeof *b);
        if (b) d->len = b;
        if (!a || !b) return kiln__err(KILN_STATUS_NOMEM, "text corpus: out of memory at document %lld", (long long)d->n);
        d->cap = cap;
    }
    if (!(d->s[d->n] = malloc(n + 1))) return kiln__err(KILN_STATUS_NOMEM, "text corpus: out of memory");
    memcpy(d->s[d->n], s, n);
    d->s[d->n][n] = 0;
    d->len[d->n++] = n;
    return KILN_STATUS_OK;
}

static void docs_free(docs *d)
{
    for (int64_t i = 0; i < d->n; i++) free(d->s[i]);
    free(d->s);
    free(d->len);
}

/* a text file's paragraphs (runs of lines up to a blank one) */
static kiln_status text_file(const char *path, docs *d)
{
    FILE *f = fopen(path, "rb");
    if (!f) return kiln__err(KILN_STATUS_IO, "cannot open %s: %s", path, strerror(errno));
    char *line = NULL, *para = NULL;
    size_t cap = 0, plen = 0, pcap = 0;
    ssize_t n;
    kiln_status st = KILN_STATUS_OK;
    int64_t before = d->n;
    while (!st && (n = getline(&line, &cap, f)) >= 0) {
        bool blank = true;
        for (ssize_t i = 0; i < n && blank; i++) blank = line[i] == ' ' || line[i] == '\t' || line[i] == '\r' || line[i] == '\n';
        if (blank) {
            if (plen) st = add(d, para, plen);
            plen = 0;
            continue;
        }
        if (plen + (size_t)n + 1 > pcap) {
            size_t c = 2 * (plen + (size_t)n + 1);
            char *g = realloc(para, c);
            if (!g) {
                st = kiln__err(KILN_STATUS_NOMEM, "%s: out of memory", path);
                break;
            }
            para = g, pcap = c;
        }
        memcpy(para + plen, line, (size_t)n);
        plen += (size_t)n;
    }
    if (!st && ferror(f)) st = kiln__err(KILN_STATUS_IO, "cannot read %s: %s", path, strerror(errno));
    if (!st && plen) st = add(d, para, plen);
    free(line);
    free(para);
    fclose(f);
    if (!st && d->n == before) st = kiln__err(KILN_STATUS_FORMAT, "%s: no text (empty or only blank lines)", path);
    if (!st) d->n_files++;
    return st;
}

static kiln_status csv_file(const char *path, const char *col, docs *d)
{
    kiln_text_table t;
    kiln_status st = kiln_text_csv_read(path, col, NULL, false, &t);
    for (int64_t i = 0; !st && i < t.n; i++) st = add(d, t.text[i], t.text_len[i]);
    if (!st) d->n_files++;
    kiln_text_table_free(&t);
    return st;
}

static bool ends_with(const char *s, const char *suffix)
{
    size_t a = strlen(s), b = strlen(suffix);
    return a >= b && !strcasecmp(s + a - b, suffix);
}

static kiln_status source(const char *path, const char *col, docs *d, int depth)
{
    struct stat sb;
    if (stat(path, &sb)) return kiln__err(KILN_STATUS_IO, "cannot open %s: %s", path, strerror(errno));
    if (!S_ISDIR(sb.st_mode)) return ends_with(path, ".csv") ? csv_file(path, col, d) : text_file(path, d);
    if (depth > 16) return kiln__err(KILN_STATUS_INVALID, "%s: folders nested more than 16 deep", path);
    struct dirent **list;
    int n = scandir(path, &list, NULL, alphasort);
    if (n < 0) return kiln__err(KILN_STATUS_IO, "cannot read folder %s: %s", path, strerror(errno));
    kiln_status st = KILN_STATUS_OK;
    int64_t before = d->n_files;
    for (int i = 0; i < n; i++) {
        const char *name = list[i]->d_name;
        if (!st && name[0] != '.') {
            char sub[8192];
            if (snprintf(sub, sizeof sub, "%s/%s", path, name) >= (int)sizeof sub) {
                st = kiln__err(KILN_STATUS_INVALID, "%s/%s: path too long", path, name);
            } else if (!stat(sub, &sb) && (S_ISDIR(sb.st_mode) || ends_with(name, ".txt"))) {
                st = source(sub, col, d, depth + 1);
            }
        }
        free(list[i]);
    }
    free(list);
    if (!st && depth == 0 && d->n_files == before) st = kiln__err(KILN_STATUS_FORMAT, "%s: no .txt file in the folder", path);
    return st;
}

kiln_status kiln__text_numericalize_all(const kiln_vocab *v, const kiln_tokens *tok, int64_t n, int64_t n_train,
                                        int64_t **ids, int64_t *lens, kiln_text_corpus_info *info, const char *who)
{
    for (int64_t i = 0; i < n; i++) {
        int s = i < n_train ? 0 : 1;
        if (!(ids[i] = malloc((size_t)(tok[i].n ? tok[i].n : 1) * sizeof **ids)))
            return kiln__err(KILN_STATUS_NOMEM, "%s: out of memory", who);
        int64_t unk;
        kiln_vocab_numericalize(v, &tok[i], ids[i], &unk);
        lens[i] = tok[i].n;
        info->n_docs[s]++, info->n_tokens[s] += tok[i].n, info->n_unk[s] += unk, info->n_replaced += tok[i].n_replaced;
    }
    return KILN_STATUS_OK;
}

kiln_data *kiln_text_lm_data_open(const char *const *sources, int n_sources, const kiln_text_lm_data_params *p,
                                  kiln_vocab **vocab, kiln_text_corpus_info *info)
{
    kiln_text_lm_data_params q = p ? *p : kiln_text_lm_data_default_params();
    if (!sources || n_sources < 1 || !vocab || !(q.valid_pct > 0 && q.valid_pct < 1) || !q.text_col)
        return kiln__errp(KILN_STATUS_INVALID, "text_lm_data_open: needs sources, a vocabulary pointer, a text column and "
                                               "valid_pct in (0, 1) (%g)", q.valid_pct);
    *vocab = NULL;
    kiln_text_corpus_info inf = {0};
    docs d = {0};
    kiln_tokens *tok = NULL;
    int64_t *perm = NULL, **ids = NULL, *lens = NULL;
    kiln_data *data = NULL;
    kiln_vocab *v = NULL;
    for (int i = 0; i < n_sources; i++)
        if (source(sources[i], q.text_col, &d, 0)) goto done;
    inf.n_files = d.n_files;
    int64_t n_valid = (int64_t)(q.valid_pct * (double)d.n + 0.5), n_train = d.n - n_valid;
    if (n_valid < 1 || n_train < 1) {
        kiln__err(KILN_STATUS_INVALID, "text_lm_data_open: %lld documents are too few for a %g validation share",
                  (long long)d.n, q.valid_pct);
        goto done;
    }
    /* documents in the split's order: train first, then valid */
    perm = malloc((size_t)d.n * sizeof *perm);
    tok = calloc((size_t)d.n, sizeof *tok);
    const char **texts = malloc((size_t)d.n * sizeof *texts);
    size_t *tl = malloc((size_t)d.n * sizeof *tl);
    ids = calloc((size_t)d.n, sizeof *ids);
    lens = calloc((size_t)d.n, sizeof *lens);
    if (!perm || !tok || !texts || !tl || !ids || !lens) {
        free(texts), free(tl);
        kiln__err(KILN_STATUS_NOMEM, "text_lm_data_open: out of memory for %lld documents", (long long)d.n);
        goto done;
    }
    kiln_data_permutation(q.split_seed, 0, d.n, perm);
    for (int64_t i = 0; i < d.n; i++) texts[i] = d.s[perm[i]], tl[i] = d.len[perm[i]];
    double t0 = kiln__now();
    kiln_status st = kiln_text_tokenize_many(texts, tl, d.n, q.n_threads, tok);
    inf.seconds_tokenize = kiln__now() - t0;
    free(texts), free(tl);
    if (st) {
        free(tok);
        tok = NULL;
        goto done;
    }
    if (q.vocab_in) st = (v = kiln_vocab_copy(q.vocab_in)) ? KILN_STATUS_OK : kiln_last_status();
    else st = kiln_vocab_build(tok, n_train, &q.vocab, &v);
    if (st) goto done;
    if (kiln__text_numericalize_all(v, tok, d.n, n_train, ids, lens, &inf, "text_lm_data_open")) goto done;
    data = kiln_lm_data_new((const int64_t *const *)ids, lens, n_train, (const int64_t *const *)ids + n_train,
                            lens + n_train, n_valid, kiln_vocab_size(v), &q.lm);
    if (data) {
        *vocab = v;
        v = NULL;
        if (info) *info = inf;
    }
done:
    kiln_vocab_free(v);
    if (tok)
        for (int64_t i = 0; i < d.n; i++) kiln_tokens_free(&tok[i]);
    if (ids)
        for (int64_t i = 0; i < d.n; i++) free(ids[i]);
    free(tok), free(ids), free(lens), free(perm);
    docs_free(&d);
    if (data) kiln_clear_error();
    return data;
}
