/* A small RFC 4180 CSV reader for the vision CSV source: the whole file is read once and
 * unescaped in place (a field never grows when its quotes are removed), so every cell is a
 * pointer into one buffer. Rows must all have the header's width; errors give file and line. */
#include "data/vision/vision_internal.h"

#include <string.h>

typedef struct growv {
    void *v;
    int64_t n, cap;
    size_t elem;
} growv;

static bool push(growv *g, const void *x)
{
    if (g->n == g->cap) {
        int64_t nc = g->cap ? g->cap * 2 : 256;
        void *nv = realloc(g->v, (size_t)nc * g->elem);
        if (!nv) return false;
        g->v = nv;
        g->cap = nc;
    }
    memcpy((char *)g->v + (size_t)g->n * g->elem, x, g->elem);
    g->n++;
    return true;
}

void kiln__csv_free(kiln__csv *c)
{
    if (!c) return;
    free(c->buf), free(c->cells), free(c->line);
    *c = (kiln__csv){0};
}

int kiln__csv_col(const kiln__csv *c, const char *name)
{
    for (int j = 0; j < c->n_cols; j++)
        if (!strcmp(kiln__csv_at(c, 0, j), name)) return j;
    return -1;
}

kiln_status kiln__csv_read(const char *path, kiln__csv *out)
{
    *out = (kiln__csv){0};
    unsigned char *ub;
    size_t len;
    kiln_status st = kiln__vision_read_file("csv", path, &ub, &len);
    if (st) return st;
    char *buf = realloc(ub, len + 1);
    if (!buf) {
        free(ub);
        return kiln__err(KILN_STATUS_NOMEM, "csv: out of memory reading %s", path);
    }
    buf[len] = '\0';
    growv cells = {.elem = sizeof(char *)}, lines = {.elem = sizeof(int64_t)};
    char *p = buf, *end = buf + len, *w = buf;
    if (len >= 3 && !memcmp(p, "\xEF\xBB\xBF", 3)) p += 3, w += 3;
    int64_t line = 1, row_start = 0, row_line = 1;
    int n_cols = -1;
    bool ok = true;
    while (p < end && ok) {
        /* one row: fields until an unquoted line break or the end */
        row_start = cells.n;
        row_line = line;
        for (;;) {
            char *field = w;
            if (*p == '"') {
                p++;
                for (;;) {
                    if (p >= end) {
                        st = kiln__err(KILN_STATUS_FORMAT, "csv: %s:%lld: unterminated quoted field", path,
                                       (long long)row_line);
                        goto fail;
                    }
                    if (*p == '"') {
                        if (p + 1 < end && p[1] == '"') *w++ = '"', p += 2;
                        else {
                            p++;
                            break;
                        }
                    } else {
                        if (*p == '\n') line++;
                        *w++ = *p++;
                    }
                }
                if (p < end && *p != ',' && *p != '\n' && *p != '\r') {
                    st = kiln__err(KILN_STATUS_FORMAT, "csv: %s:%lld: text after a closing quote", path, (long long)line);
                    goto fail;
                }
            } else {
                while (p < end && *p != ',' && *p != '\n' && *p != '\r') *w++ = *p++;
            }
            char d = p < end ? *p : '\n'; /* read before the terminator may overwrite it */
            if (p < end) p++;
            *w++ = '\0';
            if (!(ok = push(&cells, &field))) break;
            if (d == ',') continue;
            if (d == '\r' && p < end && *p == '\n') p++;
            line++;
            break;
        }
        if (!ok) break;
        int64_t nf = cells.n - row_start;
        char **row = (char **)cells.v + row_start;
        if (nf == 1 && row[0][0] == '\0') { /* empty line */
            cells.n = row_start;
            continue;
        }
        if (n_cols < 0) n_cols = (int)nf;
        else if (nf != n_cols) {
            st = kiln__err(KILN_STATUS_FORMAT, "csv: %s:%lld: %lld fields, the header has %d", path, (long long)row_line,
                           (long long)nf, n_cols);
            goto fail;
        }
        ok = push(&lines, &row_line);
    }
    if (!ok) {
        st = kiln__err(KILN_STATUS_NOMEM, "csv: out of memory reading %s", path);
        goto fail;
    }
    if (n_cols < 0) {
        st = kiln__err(KILN_STATUS_FORMAT, "csv: %s: empty file (no header row)", path);
        goto fail;
    }
    *out = (kiln__csv){.buf = buf, .cells = cells.v, .line = lines.v, .n_rows = lines.n, .n_cols = n_cols};
    return KILN_STATUS_OK;
fail:
    free(buf), free(cells.v), free(lines.v);
    return st;
}
