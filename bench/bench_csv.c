/* The CSV reader's speed (src/io/csv.c): writes a generated CSV of about 100 MB (tabular
 * rows: integers, floats, words, quoted fields with separators and doubled quotes, one
 * quoted line break in 16 rows), then reads it through kiln_csv_open (the file, in the page
 * cache after the write) and kiln_csv_open_buffer (the same bytes in memory), best of 3, and
 * prints MB/s. bench_ops 1 0 csv [PATH] (default $TMPDIR or /tmp/kiln_bench.csv, removed). */
#include "bench.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

static double now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

/* About target bytes of rows with a header; returns the length (s has target + 256 bytes). */
static size_t generate(char *s, size_t target)
{
    static const char *words[] = {"red", "green", "blue", "\"Smith, John\"", "\"say \"\"hi\"\"\"", "category_7",
                                  "", "\"two\nlines\""};
    uint64_t rs = 42;
    size_t n = (size_t)sprintf(s, "id,x,y,name,note,date\n");
    for (int64_t r = 0; n < target; r++) {
        rs = rs * 6364136223846793005ull + 1442695040888963407ull;
        unsigned w1 = (unsigned)(rs >> 40) % 7, w2 = r % 16 == 0 ? 7 : (unsigned)(rs >> 20) % 7;
        n += (size_t)sprintf(s + n, "%lld,%.6f,%d,%s,%s,2026-12-%02d\n", (long long)r, (double)(rs >> 11) * 0x1p-53,
                             (int)(rs % 1000) - 500, words[w1], words[w2], (int)(r % 28) + 1);
    }
    return n;
}

/* Reads every field of c; returns the bytes of the fields (so the work is used). */
static size_t drain(kiln_csv *c)
{
    size_t sum = 0;
    bool more;
    while (!kiln_csv_next(c, &more) && more)
        for (int j = 0; j < kiln_csv_n_fields(c); j++) sum += kiln_csv_field_len(c, j);
    return sum;
}

void kiln_bench_csv(const char *path)
{
    char def[512];
    if (!path) {
        const char *t = getenv("TMPDIR");
        snprintf(def, sizeof def, "%s/kiln_bench.csv", t && *t ? t : "/tmp");
        path = def;
    }
    size_t target = (size_t)100 << 20;
    char *s = malloc(target + 256);
    if (!s) return;
    size_t n = generate(s, target);
    FILE *f = fopen(path, "wb");
    if (!f || fwrite(s, 1, n, f) != n || fclose(f)) {
        fprintf(stderr, "bench csv: cannot write %s\n", path);
        free(s);
        return;
    }
    double best[2] = {1e30, 1e30};
    size_t sums[2] = {0, 0};
    int64_t recs = 0;
    for (int rep = 0; rep < 3; rep++)
        for (int mode = 0; mode < 2; mode++) {
            kiln_csv *c;
            double t0 = now();
            kiln_status st = mode ? kiln_csv_open_buffer("bench", s, n, NULL, &c) : kiln_csv_open(path, NULL, &c);
            if (st) {
                fprintf(stderr, "bench csv: %s\n", kiln_last_error());
                break;
            }
            sums[mode] = drain(c);
            double dt = now() - t0;
            recs = kiln_csv_n_records(c);
            kiln_csv_close(c);
            if (dt < best[mode]) best[mode] = dt;
        }
    printf("csv: %.1f MB, %lld records of 6 fields (%zu field bytes)\n", (double)n / 1e6, (long long)recs, sums[0]);
    printf("%-44s %8.1f MB/s\n", "csv read, file (page cache)", (double)n / 1e6 / best[0]);
    printf("%-44s %8.1f MB/s\n", "csv read, buffer", (double)n / 1e6 / best[1]);
    remove(path);
    free(s);
}
