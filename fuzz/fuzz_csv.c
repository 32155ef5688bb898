/* Fuzz target: the image-list CSV (src/data/vision/csv.c, and kiln_vision_csv_new in
 * folder.c that turns its rows into classes, items and the split). The CSV is written next
 * to two tiny images a.png and b.jpg in a private folder; rows naming any other place (a '/'
 * or a leading '.') are skipped so that the target never opens files outside that folder. */
#include "fuzz.h"

#include "data/vision/vision_internal.h"

#include <stdlib.h>
#include <string.h>

#include "kf_images.h"

static const char *g_dir;

static bool confined(const kiln__csv *c)
{
    for (int64_t r = 0; r < c->n_rows; r++)
        for (int j = 0; j < c->n_cols; j++) {
            const char *s = kiln__csv_at(c, r, j);
            if (strchr(s, '/') || s[0] == '.') return false;
        }
    return true;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (!g_dir) {
        uint8_t px[8 * 8] = {0, 255, 128, 64}, *png, *jpg; /* (8, 8) grey */
        size_t npng, njpg;
        if (!(g_dir = kf_tmpdir()) || kf_png_encode(px, 2, 2, 1, &png, &npng) || kf_jpeg_encode(px, 8, 8, 1, &jpg, &njpg))
            abort();
        if (!kf_write(g_dir, "a.png", png, npng) || !kf_write(g_dir, "b.jpg", jpg, njpg)) abort();
        free(png), free(jpg);
    }
    const char *path = kf_write(g_dir, "labels.csv", data, size);
    if (!path) abort();
    char csv[256];
    strcpy(csv, path);
    kiln__csv c;
    kiln_clear_error();
    if (kiln__csv_read(csv, &c)) {
        kf_refused("csv_read");
        return 0;
    }
    if (c.n_rows < 1 || c.n_cols < 1) kf_bug("csv read without a header row");
    bool ok = confined(&c), has_valid = kiln__csv_col(&c, "is_valid") >= 0;
    kiln__csv_free(&c);
    if (!ok) return KF_SKIP;
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
