/* Helpers for the fuzz targets: inputs as in-memory or temporary files (fuzz.h). */
#include "fuzz.h"

#include <stdio.h>
#include <stdlib.h>
#include <sys/mman.h>
#include <unistd.h>

#include "kiln/core.h"

struct kiln_ctx *kf_ctx(void)
{
    static kiln_ctx *ctx;
    if (!ctx) {
        kiln_ctx_params p = kiln_ctx_default_params();
        p.n_threads = 1;
        p.arena_block_bytes = 8 << 20;
        if (!(ctx = kiln_ctx_new(&p))) abort();
    }
    return ctx;
}

_Noreturn void kf_bug(const char *why)
{
    fprintf(stderr, "fuzz: BUG: %s (last message: %s)\n", why, kiln_last_error());
    abort();
}

void kf_refused(const char *what)
{
    const char *m = kiln_last_error();
    if (!m || !*m) {
        fprintf(stderr, "fuzz: %s failed without a message\n", what);
        abort();
    }
    if (getenv("KILN_FUZZ_VERBOSE")) fprintf(stderr, "fuzz: %s: %s\n", what, m);
}

const char *kf_memfile(const uint8_t *data, size_t size)
{
    static int fd = -1;
    static char path[64];
    if (fd < 0) {
        if ((fd = memfd_create("kiln_fuzz", MFD_CLOEXEC)) < 0) return NULL;
        snprintf(path, sizeof path, "/proc/self/fd/%d", fd);
    }
    if (ftruncate(fd, 0) != 0) return NULL;
    for (size_t off = 0; off < size;) {
        ssize_t w = pwrite(fd, data + off, size - off, (off_t)off);
        if (w <= 0) return NULL;
        off += (size_t)w;
    }
    return path;
}

static char g_dir[64];

static void rm_dir(void)
{
    char cmd[128];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", g_dir);
    if (system(cmd) != 0) fprintf(stderr, "fuzz: could not remove %s\n", g_dir);
}

const char *kf_tmpdir(void)
{
    if (!g_dir[0]) {
        snprintf(g_dir, sizeof g_dir, "/tmp/kiln_fuzz_XXXXXX");
        if (!mkdtemp(g_dir)) {
            g_dir[0] = '\0';
            return NULL;
        }
        atexit(rm_dir);
    }
    return g_dir;
}

const char *kf_write(const char *dir, const char *name, const uint8_t *data, size_t size)
{
    static char path[256];
    snprintf(path, sizeof path, "%s/%s", dir, name);
    FILE *f = fopen(path, "wb");
    if (!f) return NULL;
    size_t w = size ? fwrite(data, 1, size, f) : 0;
    if (fclose(f) != 0 || w != size) return NULL;
    return path;
}
