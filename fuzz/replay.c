/* Replays fuzz inputs without libFuzzer: each argument is a file or a folder of files, each
 * file is passed once to the target's LLVMFuzzerTestOneInput. Built with every fuzz target in
 * the normal build (cmake/fuzz.cmake) so ctest keeps checking the seeds and the minimised
 * crashers under fuzz/regress/ with gcc and, in CI, under ASan/UBSan. Exits non-zero when an
 * argument cannot be read or holds no file. */
#include "fuzz.h"

#include <dirent.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

static int run_file(const char *path)
{
    FILE *f = fopen(path, "rb");
    if (!f) {
        fprintf(stderr, "replay: cannot open %s\n", path);
        return -1;
    }
    size_t cap = 4096, n = 0;
    uint8_t *b = malloc(cap);
    for (size_t got; b && (got = fread(b + n, 1, cap - n, f)) > 0;) {
        n += got;
        if (n == cap) {
            uint8_t *nb = realloc(b, cap *= 2);
            if (!nb) free(b);
            b = nb;
        }
    }
    fclose(f);
    if (!b) {
        fprintf(stderr, "replay: out of memory reading %s\n", path);
        return -1;
    }
    LLVMFuzzerTestOneInput(b, n);
    free(b);
    return 1;
}

static int cmp(const void *a, const void *b) { return strcmp(*(char *const *)a, *(char *const *)b); }

/* Files of a folder in name order; the number replayed or -1. */
static int run_dir(const char *dir)
{
    DIR *d = opendir(dir);
    if (!d) return -1;
    char **names = NULL;
    size_t n = 0;
    for (struct dirent *e; (e = readdir(d));) {
        if (e->d_name[0] == '.') continue;
        char **nn = realloc(names, (n + 1) * sizeof *names);
        if (!nn) break;
        names = nn;
        names[n++] = strdup(e->d_name);
    }
    closedir(d);
    if (n) qsort(names, n, sizeof *names, cmp);
    int count = 0;
    for (size_t i = 0; i < n; i++) {
        char path[4096];
        snprintf(path, sizeof path, "%s/%s", dir, names[i]);
        if (count >= 0) {
            int r = run_file(path);
            count = r < 0 ? -1 : count + r;
        }
        free(names[i]);
    }
    free(names);
    return count;
}

int main(int argc, char **argv)
{
    int total = 0;
    for (int i = 1; i < argc; i++) {
        struct stat st;
        int r = stat(argv[i], &st) != 0 ? -1 : S_ISDIR(st.st_mode) ? run_dir(argv[i]) : run_file(argv[i]);
        if (r <= 0) {
            fprintf(stderr, "replay: %s: %s\n", argv[i], r < 0 ? "cannot read" : "no input files");
            return 1;
        }
        printf("replay: %s: %d inputs, no crash\n", argv[i], r);
        total += r;
    }
    if (!total) fprintf(stderr, "usage: %s FILE_OR_DIR...\n", argv[0]);
    return total ? 0 : 1;
}
