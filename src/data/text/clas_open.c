/* A text classifier's data from CSV files (kiln/text.h, kiln_text_clas_data_open): texts and
 * labels, a validation file or a seeded split, tokens, the vocabulary, padded batches. */
#include "data/text/text_internal.h"

#include <stdlib.h>
#include <string.h>

kiln_text_clas_data_params kiln_text_clas_data_default_params(void)
{
    return (kiln_text_clas_data_params){.text_col = "text", .label_col = "label", .valid_pct = 0.2, .split_seed = 42,
                                        .vocab = kiln_vocab_default_params(), .clas = kiln_clas_data_default_params(),
                                        .n_threads = 2};
}

void kiln_text_classes_free(kiln_text_classes *c)
{
    if (!c) return;
    for (int64_t i = 0; i < c->n; i++) free(c->name[i]);
    free(c->name);
    c->name = NULL, c->n = 0;
}

/* rows (the table's, in order) tokenized and numericalized into ids / lens */
typedef struct rows {
    const char **text;
    size_t *len;
    int64_t *y, *line, n;
    const char *path;
} rows;

kiln_data *kiln_text_clas_data_open(const char *train_csv, const char *valid_csv, const kiln_text_clas_data_params *p,
                                    kiln_vocab **vocab, kiln_text_classes *classes, kiln_text_corpus_info *info)
{
    kiln_text_clas_data_params q = p ? *p : kiln_text_clas_data_default_params();
    if (!train_csv || !vocab || !classes || !q.text_col || !q.label_col || (!valid_csv && !(q.valid_pct > 0 && q.valid_pct < 1)))
        return kiln__errp(KILN_STATUS_INVALID, "text_clas_data_open: needs a train CSV, vocabulary and classes pointers, "
                                               "the columns, and valid_pct in (0, 1) without a valid CSV");
    *vocab = NULL;
    memset(classes, 0, sizeof *classes);
    kiln_text_table tt = {0}, vt = {0};
    kiln_vocab *v = NULL;
    kiln_data *data = NULL;
    kiln_tokens *tok = NULL;
    int64_t **ids = NULL, *lens = NULL, *ys = NULL, *perm = NULL;
    const char **texts = NULL;
    size_t *tl = NULL;
    kiln_text_corpus_info inf = {.n_files = valid_csv ? 2 : 1};
    int64_t n = 0, n_valid = 0, n_train = 0;
    if (kiln_text_csv_read(train_csv, q.text_col, q.label_col, true, &tt)) goto done;
    if (valid_csv && kiln_text_csv_read(valid_csv, q.text_col, q.label_col, false, &vt)) goto done;
    /* the rows: train then valid; from one file, a permutation's first rows are valid */
    n = tt.n + vt.n, n_valid = valid_csv ? vt.n : (int64_t)(q.valid_pct * (double)tt.n + 0.5);
    n_train = n - n_valid;
    if (n_valid < 1 || n_train < 1) {
        kiln__err(KILN_STATUS_INVALID, "%s: %lld rows are too few to keep %lld for validation", train_csv,
                  (long long)tt.n, (long long)n_valid);
        goto done;
    }
    texts = malloc((size_t)n * sizeof *texts), tl = malloc((size_t)n * sizeof *tl), ys = malloc((size_t)n * sizeof *ys);
    perm = malloc((size_t)tt.n * sizeof *perm), tok = calloc((size_t)n, sizeof *tok);
    ids = calloc((size_t)n, sizeof *ids), lens = calloc((size_t)n, sizeof *lens);
    if (!texts || !tl || !ys || !perm || !tok || !ids || !lens) {
        kiln__err(KILN_STATUS_NOMEM, "text_clas_data_open: out of memory for %lld rows", (long long)n);
        goto done;
    }
    if (valid_csv) {
        for (int64_t i = 0; i < tt.n; i++) perm[i] = i;
    } else {
        kiln_data_permutation(q.split_seed, 0, tt.n, perm);
        /* train first: rotate the permutation so its first n_valid go last */
        int64_t *tmp = malloc((size_t)tt.n * sizeof *tmp);
        if (!tmp) {
            kiln__err(KILN_STATUS_NOMEM, "text_clas_data_open: out of memory");
            goto done;
        }
        for (int64_t i = 0; i < tt.n; i++) tmp[i] = perm[(i + n_valid) % tt.n];
        memcpy(perm, tmp, (size_t)tt.n * sizeof *tmp);
        free(tmp);
    }
    for (int64_t i = 0; i < tt.n; i++) texts[i] = tt.text[perm[i]], tl[i] = tt.text_len[perm[i]], ys[i] = tt.y[perm[i]];
    for (int64_t i = 0; i < vt.n; i++) {
        int64_t k = 0;
        while (k < tt.n_classes && strcmp(tt.classes[k], vt.classes[vt.y[i]])) k++;
        if (k == tt.n_classes) {
            kiln__err(KILN_STATUS_FORMAT, "%s line %lld: label \"%s\" is not among the %lld classes of %s", valid_csv,
                      (long long)vt.line[i], vt.classes[vt.y[i]], (long long)tt.n_classes, train_csv);
            goto done;
        }
        texts[tt.n + i] = vt.text[i], tl[tt.n + i] = vt.text_len[i], ys[tt.n + i] = k;
    }
    if (kiln_text_tokenize_many(texts, tl, n, q.n_threads, tok)) {
        free(tok);
        tok = NULL;
        goto done;
    }
    if (q.vocab_in) {
        if (!(v = kiln_vocab_copy(q.vocab_in))) goto done;
    } else if (kiln_vocab_build(tok, n_train, &q.vocab, &v)) {
        goto done;
    }
    if (kiln__text_numericalize_all(v, tok, n, n_train, ids, lens, &inf, "text_clas_data_open")) goto done;
    data = kiln_clas_data_new((const int64_t *const *)ids, lens, ys, n_train, (const int64_t *const *)ids + n_train,
                              lens + n_train, ys + n_train, n_valid, kiln_vocab_size(v), tt.n_classes, &q.clas);
    if (data) {
        classes->name = tt.classes, classes->n = tt.n_classes;
        tt.classes = NULL, tt.n_classes = 0;
        *vocab = v;
        v = NULL;
        if (info) *info = inf;
    }
done:
    kiln_vocab_free(v);
    if (tok)
        for (int64_t i = 0; i < n; i++) kiln_tokens_free(&tok[i]);
    if (ids)
        for (int64_t i = 0; i < n; i++) free(ids[i]);
    free(tok), free(ids), free(lens), free(ys), free(perm), free(texts), free(tl);
    kiln_text_table_free(&tt);
    kiln_text_table_free(&vt);
    if (data) kiln_clear_error();
    return data;
}
