/* The tokenizer's speed (src/data/text/): fastai's rules + the Treebank split over real text,
 * the six Austen novels (one document per paragraph) and the fine-food reviews (train.csv's
 * review column), on 1 thread and on THREADS, best of 3, in MB/s of input and tokens/s; then
 * the vocabulary of each (fastai's defaults). bench_ops THREADS 0 text [DATASETS_DIR]
 * (default ../shared/datasets). bench/text_tok.py times the same rules in Python (re + NLTK). */
#include "bench.h"

#include <dirent.h>
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

typedef struct corpus {
    char **doc;
    int64_t n, cap;
    size_t bytes;
} corpus;

static void add(corpus *c, const char *s, size_t n)
{
    if (c->n == c->cap) c->doc = realloc(c->doc, (size_t)(c->cap = c->cap ? 2 * c->cap : 1024) * sizeof *c->doc);
    c->doc[c->n] = malloc(n + 1);
    memcpy(c->doc[c->n], s, n);
    c->doc[c->n++][n] = 0;
    c->bytes += n;
}

/* paragraphs (blank-line separated) of every .txt file in dir */
static void austen(const char *dir, corpus *c)
{
    struct dirent **list;
    int nf = scandir(dir, &list, NULL, alphasort); /* sorted, as the Python twin reads them */
    for (int fi = 0; fi < nf; fi++) {
        struct dirent *e = list[fi];
        size_t l = strlen(e->d_name);
        char path[8192];
        if (l < 5 || strcmp(e->d_name + l - 4, ".txt") ||
            snprintf(path, sizeof path, "%s/%s", dir, e->d_name) >= (int)sizeof path)
            continue;
        FILE *f = fopen(path, "rb");
        if (!f) continue;
        char *line = NULL, *para = NULL;
        size_t cap = 0, plen = 0;
        ssize_t n;
        while ((n = getline(&line, &cap, f)) >= 0) {
            bool blank = n <= 1 || (n == 2 && line[0] == '\r');
            if (blank && plen) {
                add(c, para, plen);
                plen = 0;
            } else if (!blank) {
                para = realloc(para, plen + (size_t)n + 1);
                memcpy(para + plen, line, (size_t)n);
                plen += (size_t)n;
            }
        }
        if (plen) add(c, para, plen);
        free(para);
        free(line);
        fclose(f);
    }
    for (int fi = 0; fi < nf; fi++) free(list[fi]);
    if (nf > 0) free(list);
}

static void reviews(const char *path, corpus *c)
{
    kiln_csv *csv;
    if (kiln_csv_open(path, NULL, &csv)) return;
    int col = kiln_csv_col(csv, "review");
    bool more;
    while (col >= 0 && !kiln_csv_next(csv, &more) && more) {
        const char *s = kiln_csv_field(csv, col);
        add(c, s, strlen(s));
    }
    kiln_csv_close(csv);
}

static void run(const char *name, corpus *c, int max_threads)
{
    if (!c->n) {
        printf("text %-12s skipped: no documents found\n", name);
        return;
    }
    kiln_tokens *t = calloc((size_t)c->n, sizeof *t);
    for (int th = 1; th <= max_threads; th = th < max_threads ? max_threads : th + 1) {
        double best = 1e30;
        int64_t ntok = 0;
        uint64_t hash = 0;
        for (int rep = 0; rep < 3; rep++) {
            double t0 = now();
            if (kiln_text_tokenize_many((const char *const *)c->doc, NULL, c->n, th, t)) {
                printf("text %s: %s\n", name, kiln_last_error());
                return;
            }
            double dt = now() - t0;
            if (dt < best) best = dt;
            ntok = 0;
            hash = 1469598103934665603ull; /* FNV-1a over every token and a '\n' after each */
            for (int64_t i = 0; i < c->n; i++) {
                ntok += t[i].n;
                for (int64_t k = 0; k < t[i].n; k++) {
                    for (const char *p = t[i].tok[k]; *p; p++) hash = (hash ^ (unsigned char)*p) * 1099511628211ull;
                    hash = (hash ^ '\n') * 1099511628211ull;
                }
            }
            if (rep < 2)
                for (int64_t i = 0; i < c->n; i++) kiln_tokens_free(&t[i]);
        }
        printf("text %-12s %lld documents, %.2f MB, %lld tokens (hash %016llx): %d thread%s %7.3f s  %6.2f MB/s  "
               "%5.2f M tokens/s\n", name, (long long)c->n, (double)c->bytes / 1e6, (long long)ntok,
               (unsigned long long)hash, th, th > 1 ? "s" : " ", best, (double)c->bytes / 1e6 / best,
               (double)ntok / 1e6 / best);
        if (th < max_threads)
            for (int64_t i = 0; i < c->n; i++) kiln_tokens_free(&t[i]);
    }
    kiln_vocab *v;
    double t0 = now();
    if (!kiln_vocab_build(t, c->n, NULL, &v)) {
        printf("text %-12s vocabulary (max 60000, min_freq 3): %lld tokens in %.3f s\n", name,
               (long long)kiln_vocab_size(v), now() - t0);
        kiln_vocab_free(v);
    }
    for (int64_t i = 0; i < c->n; i++) kiln_tokens_free(&t[i]);
    free(t);
}

void kiln_bench_text(const char *datasets, int max_threads)
{
    const char *dir = datasets ? datasets : "../shared/datasets";
    char path[4096];
    corpus a = {0}, r = {0};
    snprintf(path, sizeof path, "%s/austen", dir);
    austen(path, &a);
    snprintf(path, sizeof path, "%s/fine_foods/train.csv", dir);
    reviews(path, &r);
    run("austen", &a, max_threads);
    run("fine_foods", &r, max_threads);
    for (int64_t i = 0; i < a.n; i++) free(a.doc[i]);
    for (int64_t i = 0; i < r.n; i++) free(r.doc[i]);
    free(a.doc);
    free(r.doc);
}
