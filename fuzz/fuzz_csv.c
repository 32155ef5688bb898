/* Fuzz target: the CSV reader (src/io/csv.c) and the image-list CSV source built on it
 * (kiln_vision_csv_new in src/data/vision/folder.c, which turns its rows into classes, items
 * and the split).
 * 1. The reader, from a buffer, header-less and ragged, with a small record cap: every record
 *    it accepts respects the caps, and writing the records back (every field quoted) and
 *    reading that gives the same fields: the reader's unescaping loses nothing.
 * 2. The image list: the CSV is written next to two tiny images a.png and b.jpg in a private
 *    folder and read through the file reader; inputs naming any other place (a '/' or a
 *    leading '.' in some field) are skipped so that the target never opens files outside it. */
#include "fuzz.h"

#include "kiln.h"

#include <stdlib.h>
#include <string.h>

#include "kf_images.h"

#define FUZZ_MAX_RECORD 4096

/* Appends field f (len bytes) quoted, with its quotes doubled. */
static void put_quoted(char **w, const char *f, size_t len)
{
    *(*w)++ = '"';
    for (size_t i = 0; i < len; i++) {
        if (f[i] == '"') *(*w)++ = '"';
        *(*w)++ = f[i];
    }
    *(*w)++ = '"';
}

/* Part 1. A field of len bytes is rewritten in at most 2 * len + 4 (quotes, separator, line
 * break); the input spent at least len + 1 on it (or 0 on a last empty field): 4 * size + 64. */
static void round_trip(const uint8_t *data, size_t size)
{
    kiln_csv_params p = kiln_csv_default_params();
    p.header = false;
    p.ragged = true;
    p.max_record_bytes = FUZZ_MAX_RECORD;
    kiln_csv *a;
    kiln_clear_error();
    if (kiln_csv_open_buffer("in", data, size, &p, &a)) {
        kf_refused("csv_open_buffer");
        return;
    }
    size_t cap = 4 * size + 64, n = 0; /* n: records */
    char *out = malloc(cap), *w = out;
    if (!out) abort();
    bool more;
    kiln_status st;
    while (!(st = kiln_csv_next(a, &more)) && more) {
        int nf = kiln_csv_n_fields(a);
        size_t total = 0;
        if (nf < 1 || nf > KILN_CSV_MAX_FIELDS) kf_bug("a record without fields or over the field cap");
        if (kiln_csv_field(a, nf) || !kiln_csv_field(a, nf - 1)) kf_bug("missing / present fields mixed up");
        for (int j = 0; j < nf; j++) {
            size_t len = kiln_csv_field_len(a, j);
            if (kiln_csv_field(a, j)[len] != '\0') kf_bug("a field without its NUL");
            total += len + 1;
            if ((size_t)(w - out) + 2 * len + 4 > cap) kf_bug("rewritten text longer than its bound");
            if (j) *w++ = ',';
            put_quoted(&w, kiln_csv_field(a, j), len);
        }
        if (total > FUZZ_MAX_RECORD) kf_bug("a record over max_record_bytes");
        *w++ = '\n';
        n++;
    }
    if (st) kf_refused("csv_next");
    /* the same records come back from the rewritten text */
    kiln_csv *b;
    kiln_csv_params q = p;
    q.max_record_bytes = 0;
    kiln_csv_close(a);
    if (kiln_csv_open_buffer("out", out, (size_t)(w - out), &q, &b)) kf_bug("rewritten text refused");
    if (kiln_csv_open_buffer("in", data, size, &p, &a)) kf_bug("second open refused");
    for (size_t r = 0; r < n; r++) {
        bool ma, mb;
        if (kiln_csv_next(a, &ma) || kiln_csv_next(b, &mb) || !ma || !mb) kf_bug("rewritten text reads differently");
        if (kiln_csv_n_fields(a) != kiln_csv_n_fields(b)) kf_bug("rewritten record has another width");
        for (int j = 0; j < kiln_csv_n_fields(a); j++) {
            size_t len = kiln_csv_field_len(a, j);
            if (len != kiln_csv_field_len(b, j) || memcmp(kiln_csv_field(a, j), kiln_csv_field(b, j), len))
                kf_bug("rewritten field differs");
        }
    }
    bool mb;
    if (kiln_csv_next(b, &mb) || mb) kf_bug("rewritten text has more records");
    kiln_csv_close(a);
    kiln_csv_close(b);
    free(out);
}

/* Every field of the CSV at path stays inside the folder (its default reading; false when it
 * does not read). */
static bool confined(const char *path, bool *has_valid)
{
    kiln_csv *c;
    kiln_clear_error();
    if (kiln_csv_open(path, NULL, &c)) {
        kf_refused("csv_open");
        return false;
    }
    if (kiln_csv_n_cols(c) < 1) kf_bug("csv read without a header row");
    bool ok = true, more;
    for (int j = 0; j < kiln_csv_n_cols(c); j++) {
        const char *s = kiln_csv_col_name(c, j);
        if (strchr(s, '/') || s[0] == '.') ok = false;
    }
    *has_valid = kiln_csv_col(c, "is_valid") >= 0;
    kiln_status st;
    while (ok && !(st = kiln_csv_next(c, &more)) && more)
        for (int j = 0; j < kiln_csv_n_fields(c); j++) {
            const char *s = kiln_csv_field(c, j);
            if (strchr(s, '/') || s[0] == '.') ok = false;
        }
    if (ok && st) kf_refused("csv_next");
    kiln_csv_close(c);
    return ok && !st;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static const char *dir;
    if (!dir) {
        uint8_t px[8 * 8] = {0, 255, 128, 64}, *png, *jpg; /* (8, 8) grey */
        size_t npng, njpg;
        if (!(dir = kf_tmpdir()) || kf_png_encode(px, 2, 2, 1, &png, &npng) || kf_jpeg_encode(px, 8, 8, 1, &jpg, &njpg))
            abort();
        if (!kf_write(dir, "a.png", png, npng) || !kf_write(dir, "b.jpg", jpg, njpg)) abort();
        free(png), free(jpg);
    }
    round_trip(data, size);
    const char *path = kf_write(dir, "labels.csv", data, size);
    if (!path) abort();
    char csv[256];
    strcpy(csv, path);
    bool has_valid;
    if (!confined(csv, &has_valid)) return KF_SKIP;
    kiln_vision_params p = kiln_vision_default_params();
    p.n_workers = 0;
    p.prefetch = 0;
    p.size = 4;
    p.valid_pct = 0.5;
    p.csv_valid_col = has_valid ? "is_valid" : NULL; /* the column's split, else a random one */
    kiln_clear_error();
    kiln_data *d = kiln_vision_csv_new(csv, &p);
    if (!d) kf_refused("vision_csv_new");
    kiln_data_free(d);
    return 0;
}
