/* Text tables (kiln/text.h): a CSV's text column and label column read whole through the io
 * CSV reader, labels turned into sorted classes, every bad row an error naming file and line. */
#include "data/text/text_internal.h"
#include "kiln/io.h"

#include <stdlib.h>
#include <string.h>

void kiln_text_table_free(kiln_text_table *t)
{
    if (!t) return;
    for (int64_t i = 0; i < t->n; i++) free(t->text ? t->text[i] : NULL);
    for (int64_t i = 0; i < t->n_classes; i++) free(t->classes[i]);
    free(t->text);
    free(t->text_len);
    free(t->line);
    free(t->classes);
    free(t->y);
    memset(t, 0, sizeof *t);
}

static kiln_status missing_column(kiln_csv *c, const char *what, const char *name)
{
    char cols[1024] = "";
    for (int j = 0; j < kiln_csv_n_cols(c) && strlen(cols) < sizeof cols - 64; j++)
        snprintf(cols + strlen(cols), sizeof cols - strlen(cols), "%s\"%s\"", j ? ", " : "", kiln_csv_col_name(c, j));
    return kiln__err(KILN_STATUS_FORMAT, "%s: no %s column \"%s\" (its columns: %s)", kiln_csv_name(c), what, name, cols);
}

static int by_str(const void *a, const void *b) { return strcmp(*(char *const *)a, *(char *const *)b); }

kiln_status kiln_text_csv_read(const char *path, const char *text_col, const char *label_col, bool need_two_classes,
                               kiln_text_table *out)
{
    if (!path || !text_col || !out) return kiln__err(KILN_STATUS_INVALID, "kiln_text_csv_read: NULL argument");
    memset(out, 0, sizeof *out);
    kiln_csv *c;
    if (kiln_csv_open(path, NULL, &c)) return kiln_last_status();
    kiln_status st = KILN_STATUS_OK;
    char **labels = NULL;
    kiln__strmap *seen = NULL;
    int tc = kiln_csv_col(c, text_col), lc = label_col ? kiln_csv_col(c, label_col) : -1;
    if (tc < 0) st = missing_column(c, "text", text_col);
    else if (label_col && lc < 0) st = missing_column(c, "label", label_col);
    int64_t cap = 0;
    bool more;
    while (!st && !(st = kiln_csv_next(c, &more)) && more) {
        int64_t line = kiln_csv_line(c);
        const char *t = kiln_csv_field(c, tc), *l = label_col ? kiln_csv_field(c, lc) : NULL;
        size_t tl = kiln_csv_field_len(c, tc);
        if (!t || !tl) {
            st = kiln__err(KILN_STATUS_FORMAT, "%s line %lld: the text (column \"%s\") is empty", path, (long long)line, text_col);
            break;
        }
        if (label_col && (!l || !*l)) {
            st = kiln__err(KILN_STATUS_FORMAT, "%s line %lld: the label (column \"%s\") is empty", path, (long long)line, label_col);
            break;
        }
        if (out->n == cap) {
            cap = cap ? 2 * cap : 1024;
            char **a = realloc(out->text, (size_t)cap * sizeof *a);
            if (a) out->text = a;
            size_t *b = realloc(out->text_len, (size_t)cap * sizeof *b);
            if (b) out->text_len = b;
            int64_t *d = realloc(out->line, (size_t)cap * sizeof *d);
            if (d) out->line = d;
            char **e = realloc(labels, (size_t)cap * sizeof *e);
            if (e) labels = e;
            if (!a || !b || !d || !e) goto nomem;
        }
        out->text[out->n] = malloc(tl + 1);
        labels[out->n] = label_col ? strdup(l) : NULL;
        if (!out->text[out->n] || (label_col && !labels[out->n])) {
            free(out->text[out->n]);
            free(labels[out->n]);
            goto nomem;
        }
        memcpy(out->text[out->n], t, tl + 1);
        out->text_len[out->n] = tl;
        out->line[out->n] = line;
        out->n++;
    }
    if (!st && !out->n) st = kiln__err(KILN_STATUS_FORMAT, "%s: no rows after the header", path);
    if (!st && label_col) {
        /* classes: the distinct labels, sorted; then y */
        char **cls = malloc((size_t)out->n * sizeof *cls);
        out->y = malloc((size_t)out->n * sizeof *out->y);
        if (!cls || !out->y || !(seen = kiln__strmap_new())) {
            free(cls);
            goto nomem;
        }
        int64_t nc = 0;
        for (int64_t i = 0; i < out->n; i++) {
            bool ins;
            if (!kiln__strmap_slot(seen, labels[i], 0, &ins)) {
                free(cls);
                goto nomem;
            }
            if (ins) cls[nc++] = labels[i];
        }
        qsort(cls, (size_t)nc, sizeof *cls, by_str);
        out->classes = calloc((size_t)nc, sizeof *out->classes);
        if (!out->classes) {
            free(cls);
            goto nomem;
        }
        for (int64_t k = 0; k < nc; k++) {
            *kiln__strmap_slot(seen, cls[k], 0, NULL) = k;
            out->classes[k] = strdup(cls[k]);
            out->n_classes = k + 1;
            if (!out->classes[k]) {
                free(cls);
                goto nomem;
            }
        }
        free(cls);
        for (int64_t i = 0; i < out->n; i++) out->y[i] = kiln__strmap_get(seen, labels[i]);
        if (need_two_classes && nc < 2)
            st = kiln__err(KILN_STATUS_FORMAT, "%s: the label column \"%s\" has one class (\"%s\") in %lld rows: a classifier needs at least two",
                           path, label_col, out->classes[0], (long long)out->n);
    }
    goto done;
nomem:
    st = kiln__err(KILN_STATUS_NOMEM, "%s: out of memory at row %lld", path, (long long)out->n);
done:
    if (labels)
        for (int64_t i = 0; i < out->n; i++) free(labels[i]);
    free(labels);
    kiln__strmap_free(seen);
    kiln_csv_close(c);
    if (st) kiln_text_table_free(out);
    return kiln__done(st);
}
