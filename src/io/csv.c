/* The CSV reader (include/kiln/io.h): RFC 4180 records streamed from a file in 1 MiB chunks
 * or from a caller's buffer. A record's fields are unescaped one after another into one
 * growing buffer, each NUL-terminated, with their start offsets; unquoted runs and quoted
 * runs are copied a chunk-span at a time (a 256-entry table marks the bytes that end a run),
 * which is what makes the reader fast. Errors name the input and the line. */
#include "core/internal.h"
#include "kiln/io.h"

#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>

#define CHUNK ((size_t)1 << 20)

struct kiln_csv {
    char *name;
    FILE *f;                        /* NULL for a buffer */
    unsigned char *chunk;           /* (CHUNK) file bytes */
    const unsigned char *p, *end;   /* unread bytes */
    bool eof;                       /* nothing after [p, end) */
    kiln_csv_params prm;
    bool stop_plain[256];           /* ends an unquoted run: sep, CR, LF */
    int64_t line;                   /* line of the next unread byte */
    /* the current record */
    char *rec;
    size_t rec_len, rec_cap;
    size_t *off;                    /* (n_fields + 1) field starts in rec; off[n] = rec_len */
    bool *quoted;                   /* (n_fields) */
    int n_fields, fields_cap;
    int64_t rec_line, n_records;
    /* the header, or the first record's width */
    int n_cols;
    char *hdr;                      /* header fields, NUL-separated */
    size_t *hdr_off;                /* (n_cols) */
    kiln_status err;                /* sticky */
    char msg[512];
};

kiln_csv_params kiln_csv_default_params(void)
{
    return (kiln_csv_params){.sep = ',', .header = true, .ragged = false, .max_record_bytes = KILN_CSV_MAX_RECORD,
                             .max_fields = KILN_CSV_MAX_FIELDS};
}

/* Records error st with "csv: NAME:LINE: ..." (line <= 0: no line) and makes it sticky. */
static kiln_status fail(kiln_csv *c, kiln_status st, int64_t line, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));
static kiln_status fail(kiln_csv *c, kiln_status st, int64_t line, const char *fmt, ...)
{
    char what[384];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(what, sizeof what, fmt, ap);
    va_end(ap);
    if (line > 0) snprintf(c->msg, sizeof c->msg, "csv: %s:%lld: %s", c->name, (long long)line, what);
    else snprintf(c->msg, sizeof c->msg, "csv: %s: %s", c->name, what);
    c->err = st;
    return kiln_error(st, "%s", c->msg);
}

/* Reads the next chunk; false at the end of the input or on a read error (c->err set). */
static bool read_chunk(kiln_csv *c)
{
    if (c->eof || c->err) return false;
    size_t n = fread(c->chunk, 1, CHUNK, c->f);
    if (n < CHUNK) {
        if (ferror(c->f)) {
            fail(c, KILN_STATUS_IO, 0, "cannot read: %s", strerror(errno));
            return false;
        }
        c->eof = true;
    }
    c->p = c->chunk;
    c->end = c->chunk + n;
    return n > 0;
}

/* Makes bytes available; false at the end of the input or on a read error (c->err set). */
static inline bool refill(kiln_csv *c) { return c->p < c->end || read_chunk(c); }

static bool grow_rec(kiln_csv *c, size_t need)
{
    if (need > c->prm.max_record_bytes) {
        fail(c, KILN_STATUS_FORMAT, c->rec_line, "record longer than %zu bytes (max_record_bytes)",
             c->prm.max_record_bytes);
        return false;
    }
    size_t nc = c->rec_cap ? c->rec_cap : 4096;
    while (nc < need) nc *= 2;
    char *nr = realloc(c->rec, nc);
    if (!nr) {
        fail(c, KILN_STATUS_NOMEM, c->rec_line, "out of memory for a record of %zu bytes", need);
        return false;
    }
    c->rec = nr;
    c->rec_cap = nc;
    return true;
}

static inline bool append(kiln_csv *c, const unsigned char *s, size_t n)
{
    size_t need = c->rec_len + n + 1;
    if ((need > c->rec_cap || need > c->prm.max_record_bytes) && !grow_rec(c, need)) return false;
    memcpy(c->rec + c->rec_len, s, n);
    c->rec_len += n;
    return true;
}

static inline bool start_field(kiln_csv *c, bool quoted)
{
    if (c->n_fields >= c->prm.max_fields) {
        fail(c, KILN_STATUS_FORMAT, c->rec_line, "more than %d fields (max_fields)", c->prm.max_fields);
        return false;
    }
    if (c->n_fields + 2 > c->fields_cap) { /* off also holds the end of the last field */
        int nc = c->fields_cap ? c->fields_cap * 2 : 64;
        size_t *no = realloc(c->off, (size_t)nc * sizeof *no);
        if (no) c->off = no;
        bool *nq = no ? realloc(c->quoted, (size_t)nc * sizeof *nq) : NULL;
        if (!nq) {
            fail(c, KILN_STATUS_NOMEM, c->rec_line, "out of memory for %d fields", nc);
            return false;
        }
        c->quoted = nq;
        c->fields_cap = nc;
    }
    c->off[c->n_fields] = c->rec_len;
    c->quoted[c->n_fields] = quoted;
    c->n_fields++;
    return true;
}

/* An unquoted run up to sep, CR, LF or the end. */
static inline bool plain_field(kiln_csv *c)
{
    while (refill(c)) {
        const unsigned char *q = c->p;
        while (q < c->end && !c->stop_plain[*q]) q++;
        if (!append(c, c->p, (size_t)(q - c->p))) return false;
        c->p = q;
        if (q < c->end) break;
    }
    return !c->err;
}

/* A quoted field, the opening quote consumed: up to the closing quote, "" giving one ". */
static bool quoted_field(kiln_csv *c)
{
    int64_t opened = c->line;
    bool cr = false; /* the last byte was CR: an LF right after it ends the same line */
    for (;;) {
        if (!refill(c)) {
            if (!c->err)
                fail(c, KILN_STATUS_FORMAT, opened, "unterminated quote: the quoted field opened on this line never closes");
            return false;
        }
        const unsigned char *q = c->p;
        for (; q < c->end && *q != '"'; q++) {
            if (*q == '\n' && !cr) c->line++;
            cr = *q == '\r';
            c->line += cr;
        }
        if (!append(c, c->p, (size_t)(q - c->p))) return false;
        c->p = q;
        if (q == c->end) continue;
        c->p++; /* a quote: doubled (text) or closing */
        if (!refill(c)) return !c->err;
        if (*c->p != '"') return true;
        if (!append(c, c->p, 1)) return false;
        c->p++;
        cr = false;
    }
}

/* One record into c->rec; false at the end of the input or on error. */
static bool read_record(kiln_csv *c)
{
    c->rec_len = 0;
    c->n_fields = 0;
    c->rec_line = c->line;
    if (!refill(c)) return false;
    for (;;) {
        bool q = *c->p == '"';
        if (!start_field(c, q)) return false;
        if (q) {
            c->p++;
            if (!quoted_field(c)) return false;
            if (refill(c) && !c->stop_plain[*c->p]) {
                fail(c, KILN_STATUS_FORMAT, c->line, "text after a closing quote");
                return false;
            }
        } else if (!plain_field(c)) {
            return false;
        }
        if (c->rec_len >= c->rec_cap && !grow_rec(c, c->rec_len + 1)) return false;
        c->rec[c->rec_len++] = '\0'; /* the field's end (append left room for it) */
        if (!refill(c)) break; /* the end of the input ends the record */
        unsigned char d = *c->p++;
        if (d == (unsigned char)c->prm.sep) {
            if (!refill(c) && !c->err) { /* a trailing separator: one more, empty field */
                if (!start_field(c, false) || !append(c, (const unsigned char *)"", 1)) return false;
                break;
            }
            if (c->err) return false;
            continue;
        }
        if (d == '\r' && refill(c) && *c->p == '\n') c->p++;
        c->line++;
        break;
    }
    if (c->err) return false;
    c->off[c->n_fields] = c->rec_len;
    return true;
}

static bool empty_line(const kiln_csv *c) { return c->n_fields == 1 && !c->quoted[0] && c->rec_len == 1; }

/* The next non-empty record; false at the end or on error. */
static bool next_record(kiln_csv *c)
{
    while (read_record(c))
        if (!empty_line(c)) return true;
    return false;
}

static kiln_status open_common(kiln_csv *c, const kiln_csv_params *p, kiln_csv **out)
{
    c->prm = p ? *p : kiln_csv_default_params();
    if (!c->prm.max_record_bytes) c->prm.max_record_bytes = KILN_CSV_MAX_RECORD;
    if (!c->prm.max_fields) c->prm.max_fields = KILN_CSV_MAX_FIELDS;
    kiln_status st = KILN_STATUS_OK;
    if (c->prm.sep == '"' || c->prm.sep == '\r' || c->prm.sep == '\n' || c->prm.sep == '\0')
        st = kiln_error(KILN_STATUS_INVALID, "csv: %s: the separator cannot be a quote, CR, LF or NUL", c->name);
    else if (c->prm.max_fields < 1)
        st = kiln_error(KILN_STATUS_INVALID, "csv: %s: max_fields %d must be >= 1", c->name, c->prm.max_fields);
    c->stop_plain[(unsigned char)c->prm.sep] = c->stop_plain['\r'] = c->stop_plain['\n'] = true;
    c->line = 1;
    if (!st && refill(c) && c->end - c->p >= 3 && !memcmp(c->p, "\xEF\xBB\xBF", 3)) c->p += 3;
    if (!st && c->err) st = kiln_error(c->err, "%s", c->msg);
    if (!st && c->prm.header) {
        if (!next_record(c))
            st = c->err ? kiln_error(c->err, "%s", c->msg)
                        : fail(c, KILN_STATUS_FORMAT, 0, "empty file (no header row)");
        else if (!(c->hdr = malloc(c->rec_len)) || !(c->hdr_off = malloc((size_t)c->n_fields * sizeof *c->hdr_off)))
            st = fail(c, KILN_STATUS_NOMEM, 0, "out of memory for the header");
        else {
            memcpy(c->hdr, c->rec, c->rec_len);
            memcpy(c->hdr_off, c->off, (size_t)c->n_fields * sizeof *c->hdr_off);
            c->n_cols = c->n_fields;
            c->n_fields = 0;
        }
    }
    if (st) {
        kiln_csv_close(c);
        return st;
    }
    *out = c;
    return KILN_STATUS_OK;
}

static kiln_csv *alloc_reader(const char *name)
{
    kiln_csv *c = calloc(1, sizeof *c);
    if (c && !(c->name = strdup(name ? name : "(buffer)"))) {
        free(c);
        c = NULL;
    }
    if (!c) kiln_error(KILN_STATUS_NOMEM, "csv: out of memory");
    return c;
}

kiln_status kiln_csv_open(const char *path, const kiln_csv_params *p, kiln_csv **out)
{
    if (!out) return kiln_error(KILN_STATUS_INVALID, "csv_open: out is NULL");
    *out = NULL;
    if (!path) return kiln_error(KILN_STATUS_INVALID, "csv_open: path is NULL");
    kiln_csv *c = alloc_reader(path);
    if (!c) return KILN_STATUS_NOMEM;
    if (!(c->f = fopen(path, "rb"))) {
        kiln_status st = kiln_error(KILN_STATUS_IO, "csv: cannot open %s: %s", path, strerror(errno));
        kiln_csv_close(c);
        return st;
    }
    if (!(c->chunk = malloc(CHUNK))) {
        kiln_csv_close(c);
        return kiln_error(KILN_STATUS_NOMEM, "csv: out of memory reading %s", path);
    }
    c->p = c->end = c->chunk;
    return open_common(c, p, out);
}

kiln_status kiln_csv_open_buffer(const char *name, const void *data, size_t len, const kiln_csv_params *p,
                                 kiln_csv **out)
{
    if (!out) return kiln_error(KILN_STATUS_INVALID, "csv_open_buffer: out is NULL");
    *out = NULL;
    if (!data && len) return kiln_error(KILN_STATUS_INVALID, "csv_open_buffer: data is NULL");
    kiln_csv *c = alloc_reader(name);
    if (!c) return KILN_STATUS_NOMEM;
    c->p = data ? data : (const unsigned char *)"";
    c->end = c->p + len;
    c->eof = true;
    return open_common(c, p, out);
}

void kiln_csv_close(kiln_csv *c)
{
    if (!c) return;
    if (c->f) fclose(c->f);
    free(c->chunk), free(c->rec), free(c->off), free(c->quoted), free(c->hdr), free(c->hdr_off), free(c->name);
    free(c);
}

kiln_status kiln_csv_next(kiln_csv *c, bool *more)
{
    if (more) *more = false;
    if (!c || !more) return kiln_error(KILN_STATUS_INVALID, "csv_next: NULL argument");
    if (c->err) return kiln_error(c->err, "%s", c->msg);
    if (!next_record(c)) {
        c->n_fields = 0;
        return c->err ? kiln_error(c->err, "%s", c->msg) : KILN_STATUS_OK;
    }
    if (!c->n_cols) c->n_cols = c->n_fields;
    else if (!c->prm.ragged && c->n_fields != c->n_cols) {
        int nf = c->n_fields;
        c->n_fields = 0;
        return fail(c, KILN_STATUS_FORMAT, c->rec_line, "%d fields, the %s has %d", nf,
                    c->hdr ? "header" : "first record", c->n_cols);
    }
    c->n_records++;
    *more = true;
    return KILN_STATUS_OK;
}

const char *kiln_csv_name(const kiln_csv *c) { return c ? c->name : NULL; }
int kiln_csv_n_cols(const kiln_csv *c) { return c ? c->n_cols : 0; }

const char *kiln_csv_col_name(const kiln_csv *c, int j)
{
    return c && c->hdr && j >= 0 && j < c->n_cols ? c->hdr + c->hdr_off[j] : NULL;
}

int kiln_csv_col(const kiln_csv *c, const char *name)
{
    for (int j = 0; c && c->hdr && name && j < c->n_cols; j++)
        if (!strcmp(c->hdr + c->hdr_off[j], name)) return j;
    return -1;
}

int kiln_csv_n_fields(const kiln_csv *c) { return c ? c->n_fields : 0; }

const char *kiln_csv_field(const kiln_csv *c, int j)
{
    return c && j >= 0 && j < c->n_fields ? c->rec + c->off[j] : NULL;
}

size_t kiln_csv_field_len(const kiln_csv *c, int j)
{
    return c && j >= 0 && j < c->n_fields ? c->off[j + 1] - c->off[j] - 1 : 0;
}

bool kiln_csv_field_quoted(const kiln_csv *c, int j) { return c && j >= 0 && j < c->n_fields && c->quoted[j]; }
int64_t kiln_csv_line(const kiln_csv *c) { return c ? c->rec_line : 0; }
int64_t kiln_csv_n_records(const kiln_csv *c) { return c ? c->n_records : 0; }
