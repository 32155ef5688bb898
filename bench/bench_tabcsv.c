/* The tabular data layer's speed (src/data/tabular/): writes a generated CSV of about 100 MB
 * (an id, three floats, one with missing values, two integer columns of small and large
 * cardinality, two word columns, a date, a numeric target) to a temp file, then times
 * kiln_table_read_csv (the file in the page cache after the write), procs learn on all rows,
 * and procs apply, best of 2, and prints MB/s.
 * bench_ops 1 0 tabcsv [PATH] (default $TMPDIR or /tmp/kiln_bench_tab.csv, removed). */
#include "bench.h"
#include "kiln/tabular.h"

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

static size_t generate(char *s, size_t target)
{
    static const char *words[] = {"red", "green", "blue", "\"Smith, John\"", "cyan", "magenta", "yellow", "black"};
    uint64_t rs = 7;
    size_t n = (size_t)sprintf(s, "id,x1,x2,x3,small,big,color,shade,saledate,y\n");
    for (int64_t r = 0; n < target; r++) {
        rs = rs * 6364136223846793005ull + 1442695040888963407ull;
        double u = (double)(rs >> 11) * 0x1p-53;
        char x3[32] = "";
        if (r % 10) snprintf(x3, sizeof x3, "%.4f", u * 100);
        n += (size_t)sprintf(s + n, "%lld,%.6f,%.3f,%s,%d,%d,%s,shade_%d,20%02d-%02d-%02d,%.2f\n", (long long)r, u,
                             u * 1000 - 500, x3, (int)(rs % 7), (int)((rs >> 20) % 5000), words[(rs >> 33) % 8],
                             (int)((rs >> 40) % 300), (int)(r % 20), (int)(r % 12) + 1, (int)(r % 28) + 1, u * 50 + 10);
    }
    return n;
}

void kiln_bench_tabcsv(const char *path)
{
    char def[512];
    if (!path) {
        const char *t = getenv("TMPDIR");
        snprintf(def, sizeof def, "%s/kiln_bench_tab.csv", t && *t ? t : "/tmp");
        path = def;
    }
    size_t target = (size_t)100 << 20;
    char *s = malloc(target + 512);
    if (!s) return;
    size_t n = generate(s, target);
    FILE *f = fopen(path, "wb");
    if (!f || fwrite(s, 1, n, f) != n || fclose(f)) {
        fprintf(stderr, "bench tabcsv: cannot write %s\n", path);
        free(s);
        return;
    }
    free(s);
    double best[3] = {1e30, 1e30, 1e30};
    int64_t rows = 0;
    int n_cat = 0, n_cont = 0;
    for (int rep = 0; rep < 2; rep++) {
        double t0 = now();
        kiln_table *t = kiln_table_read_csv(path);
        double t1 = now();
        if (!t) {
            fprintf(stderr, "bench tabcsv: %s\n", kiln_last_error());
            break;
        }
        kiln_tab_params p = kiln_tab_default_params();
        p.target = "y";
        kiln_tab_procs *pr = kiln_tab_procs_learn(t, &p);
        double t2 = now();
        kiln_tab_rows r;
        kiln_status st = pr ? kiln_tab_procs_apply(pr, t, true, &r) : kiln_last_status();
        double t3 = now();
        if (st) {
            fprintf(stderr, "bench tabcsv: %s\n", kiln_last_error());
            kiln_tab_procs_free(pr);
            kiln_table_free(t);
            break;
        }
        rows = r.n, n_cat = r.n_cat, n_cont = r.n_cont;
        kiln_tab_rows_free(&r);
        kiln_tab_procs_free(pr);
        kiln_table_free(t);
        double dt[3] = {t1 - t0, t2 - t1, t3 - t2};
        for (int k = 0; k < 3; k++)
            if (dt[k] < best[k]) best[k] = dt[k];
    }
    double mb = (double)n / 1e6;
    printf("tabcsv: %.1f MB, %lld rows -> %d categorical + %d continuous columns\n", mb, (long long)rows, n_cat, n_cont);
    printf("%-44s %8.2f s %8.1f MB/s\n", "kiln_table_read_csv (page cache)", best[0], mb / best[0]);
    printf("%-44s %8.2f s %8.1f MB/s\n", "procs learn", best[1], mb / best[1]);
    printf("%-44s %8.2f s %8.1f MB/s\n", "procs apply", best[2], mb / best[2]);
    printf("%-44s %8.2f s %8.1f MB/s\n", "read + learn + apply", best[0] + best[1] + best[2],
           mb / (best[0] + best[1] + best[2]));
    remove(path);
}
