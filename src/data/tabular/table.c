/* Tables: a CSV file (or buffer) read whole through the streaming RFC 4180 reader of
 * src/io/csv.c into one block of NUL-terminated cells, with each row's line for messages.
 * The table checks what the reader does not: no data row, an empty column name, a column
 * named twice. */
#include "data/tabular/tab_internal.h"
#include "core/json.h"
#include "kiln/io.h"

#include <stdlib.h>
#include <string.h>

char *kiln__tab_strdup(const char *s)
{
    size_t n = strlen(s) + 1;
    char *d = malloc(n);
    if (d) memcpy(d, s, n);
    return d;
}

void kiln_table_free(kiln_table *t)
{
    if (!t) return;
    for (int j = 0; j < t->n_cols; j++) free(t->col_names ? t->col_names[j] : NULL);
    free(t->col_names);
    free(t->name);
    free(t->text);
    free(t->off);
    free(t->line);
    free(t);
}

static kiln_table *fail(kiln_table *t, kiln_csv *c)
{
    char *msg = kiln__error_dup();
    kiln_status st = kiln_last_status();
    kiln_csv_close(c);
    kiln_table_free(t);
    if (msg) {
        kiln__err(st ? st : KILN_STATUS_NOMEM, "%s", msg);
        free(msg);
    }
    return NULL;
}

static bool grow(void **p, size_t *cap, size_t need, size_t elem)
{
    if (need <= *cap) return true;
    size_t c = *cap ? *cap : 1024;
    while (c < need) c *= 2;
    void *q = realloc(*p, c * elem);
    if (!q) return false;
    *p = q;
    *cap = c;
    return true;
}

/* Reads every record of c into a new table. */
static kiln_table *read_all(kiln_csv *c, const char *name, size_t size_hint)
{
    kiln_table *t = calloc(1, sizeof *t);
    if (!t || !(t->name = kiln__tab_strdup(name))) {
        free(t);
        kiln_csv_close(c);
        return kiln__errp(KILN_STATUS_NOMEM, "table: out of memory reading %s", name);
    }
    int nc = kiln_csv_n_cols(c);
    t->col_names = calloc((size_t)(nc ? nc : 1), sizeof *t->col_names);
    if (!t->col_names) return kiln__errp(KILN_STATUS_NOMEM, "table: out of memory reading %s", name), fail(t, c);
    t->n_cols = nc;
    for (int j = 0; j < nc; j++) {
        const char *cn = kiln_csv_col_name(c, j);
        if (!cn || !*cn) {
            kiln__err(KILN_STATUS_FORMAT, "%s: line 1: column %d has an empty name", name, j + 1);
            return fail(t, c);
        }
        if (!(t->col_names[j] = kiln__tab_strdup(cn))) {
            kiln__err(KILN_STATUS_NOMEM, "table: out of memory reading %s", name);
            return fail(t, c);
        }
        for (int k = 0; k < j; k++)
            if (!strcmp(t->col_names[k], cn)) {
                char q[80];
                kiln__err(KILN_STATUS_FORMAT, "%s: line 1: column \"%s\" is named twice (columns %d and %d)", name,
                          kiln__json_quote(cn, q, sizeof q), k + 1, j + 1);
                return fail(t, c);
            }
    }
    size_t text_cap = size_hint ? size_hint + 64 : 0, off_cap = 0, line_cap = 0;
    if (text_cap && !(t->text = malloc(text_cap))) text_cap = 0;
    bool more;
    kiln_status st;
    while (!(st = kiln_csv_next(c, &more)) && more) {
        int64_t i = t->n_rows;
        if (!grow((void **)&t->off, &off_cap, (size_t)(i + 1) * (size_t)nc, sizeof *t->off) ||
            !grow((void **)&t->line, &line_cap, (size_t)i + 1, sizeof *t->line)) {
            kiln__err(KILN_STATUS_NOMEM, "table: out of memory reading %s (%lld rows)", name, (long long)i);
            return fail(t, c);
        }
        t->line[i] = kiln_csv_line(c);
        uint64_t *o = t->off + (size_t)i * (size_t)nc;
        for (int j = 0; j < nc; j++) {
            size_t len = kiln_csv_field_len(c, j);
            if (!len) {
                o[j] = 0;
                continue;
            }
            if (!grow((void **)&t->text, &text_cap, t->text_len + len + 1, 1)) {
                kiln__err(KILN_STATUS_NOMEM, "table: out of memory reading %s (%lld rows)", name, (long long)i);
                return fail(t, c);
            }
            memcpy(t->text + t->text_len, kiln_csv_field(c, j), len + 1);
            o[j] = t->text_len + 1;
            t->text_len += len + 1;
        }
        t->n_rows = i + 1;
    }
    if (st) return fail(t, c);
    if (!t->n_rows) {
        kiln__err(KILN_STATUS_FORMAT, "%s: line 1: a header row only (no data rows)", name);
        return fail(t, c);
    }
    kiln_csv_close(c);
    return t;
}

kiln_table *kiln_table_read_csv(const char *path)
{
    if (!path) return kiln__errp(KILN_STATUS_INVALID, "table_read_csv: path is NULL");
    kiln_csv *c;
    if (kiln_csv_open(path, NULL, &c)) return NULL;
    FILE *f = fopen(path, "rb");
    size_t hint = 0;
    if (f) {
        if (!fseek(f, 0, SEEK_END)) {
            long sz = ftell(f);
            if (sz > 0) hint = (size_t)sz;
        }
        fclose(f);
    }
    kiln_table *t = read_all(c, path, hint);
    if (t) kiln_clear_error();
    return t;
}

kiln_table *kiln_table_read_csv_buffer(const char *name, const void *data, size_t len)
{
    if (!name) name = "(buffer)";
    kiln_csv *c;
    if (kiln_csv_open_buffer(name, data, len, NULL, &c)) return NULL;
    kiln_table *t = read_all(c, name, len);
    if (t) kiln_clear_error();
    return t;
}

const char *kiln_table_name(const kiln_table *t) { return t ? t->name : NULL; }
int64_t kiln_table_n_rows(const kiln_table *t) { return t ? t->n_rows : 0; }
int kiln_table_n_cols(const kiln_table *t) { return t ? t->n_cols : 0; }

const char *kiln_table_col_name(const kiln_table *t, int j)
{
    return t && j >= 0 && j < t->n_cols ? t->col_names[j] : NULL;
}

int kiln_table_col(const kiln_table *t, const char *name)
{
    if (!t || !name) return -1;
    for (int j = 0; j < t->n_cols; j++)
        if (!strcmp(t->col_names[j], name)) return j;
    return -1;
}

const char *kiln_table_cell(const kiln_table *t, int64_t i, int j)
{
    if (!t || i < 0 || i >= t->n_rows || j < 0 || j >= t->n_cols) return NULL;
    uint64_t o = t->off[(size_t)i * (size_t)t->n_cols + (size_t)j];
    return o ? t->text + o - 1 : NULL;
}

int64_t kiln_table_line(const kiln_table *t, int64_t i)
{
    return t && i >= 0 && i < t->n_rows ? t->line[i] : 0;
}

kiln_table *kiln_table_rows(const kiln_table *t, const int64_t *rows, int64_t n)
{
    if (!t || (n && !rows) || n < 0) return kiln__errp(KILN_STATUS_INVALID, "table_rows: bad arguments");
    size_t nc = (size_t)t->n_cols, bytes = 0;
    for (int64_t r = 0; r < n; r++) {
        if (rows[r] < 0 || rows[r] >= t->n_rows)
            return kiln__errp(KILN_STATUS_INVALID, "table_rows: row %lld of %s out of range (%lld rows)",
                              (long long)rows[r], t->name, (long long)t->n_rows);
        for (size_t j = 0; j < nc; j++) {
            uint64_t o = t->off[(size_t)rows[r] * nc + j];
            if (o) bytes += strlen(t->text + o - 1) + 1;
        }
    }
    kiln_table *s = calloc(1, sizeof *s);
    if (!s) return kiln__errp(KILN_STATUS_NOMEM, "table_rows: out of memory");
    s->n_cols = t->n_cols;
    s->name = kiln__tab_strdup(t->name);
    s->col_names = calloc(nc ? nc : 1, sizeof *s->col_names);
    s->text = malloc(bytes ? bytes : 1);
    s->off = malloc((n ? (size_t)n : 1) * (nc ? nc : 1) * sizeof *s->off);
    s->line = malloc((n ? (size_t)n : 1) * sizeof *s->line);
    bool ok = s->name && s->col_names && s->text && s->off && s->line;
    for (size_t j = 0; ok && j < nc; j++) ok = (s->col_names[j] = kiln__tab_strdup(t->col_names[j])) != NULL;
    if (!ok) {
        s->n_cols = s->col_names ? s->n_cols : 0;
        kiln_table_free(s);
        return kiln__errp(KILN_STATUS_NOMEM, "table_rows: out of memory");
    }
    for (int64_t r = 0; r < n; r++) {
        s->line[r] = t->line[rows[r]];
        for (size_t j = 0; j < nc; j++) {
            uint64_t o = t->off[(size_t)rows[r] * nc + j];
            if (!o) {
                s->off[(size_t)r * nc + j] = 0;
                continue;
            }
            size_t len = strlen(t->text + o - 1) + 1;
            memcpy(s->text + s->text_len, t->text + o - 1, len);
            s->off[(size_t)r * nc + j] = s->text_len + 1;
            s->text_len += len;
        }
    }
    s->n_rows = n;
    return s;
}
