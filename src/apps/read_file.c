/* Reading a small file whole (app_internal.h): the model.json of any task. */
#include "app_internal.h"

#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

kiln_status kiln__read_file(const char *path, size_t max, char **out, size_t *len)
{
    *out = NULL, *len = 0;
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) return kiln__err(KILN_STATUS_IO, "cannot read %s: %s", path, strerror(errno));
    struct stat st;
    const char *why = fstat(fd, &st) != 0 ? strerror(errno)
                    : S_ISDIR(st.st_mode) ? "it is a folder, not a file"
                    : !S_ISREG(st.st_mode) ? "not a regular file" : NULL;
    if (why) {
        close(fd);
        return kiln__err(KILN_STATUS_IO, "cannot read %s: %s", path, why);
    }
    if ((uint64_t)st.st_size > max) {
        close(fd);
        return kiln__err(KILN_STATUS_FORMAT, "%s: %lld bytes, more than the limit of %zu MiB", path,
                         (long long)st.st_size, max >> 20);
    }
    /* read to the end (the file may grow while read): at most max + 1 bytes */
    size_t cap = (size_t)st.st_size + 1, n = 0;
    char *buf = malloc(cap);
    kiln_status rc = buf ? KILN_STATUS_OK : kiln__err(KILN_STATUS_NOMEM, "%s: out of memory", path);
    while (!rc) {
        if (n == cap) {
            size_t nc = cap * 2 > max + 1 ? max + 1 : cap * 2;
            char *nb = nc > cap ? realloc(buf, nc) : NULL;
            if (!nb) {
                rc = nc > cap ? kiln__err(KILN_STATUS_NOMEM, "%s: out of memory", path)
                              : kiln__err(KILN_STATUS_FORMAT, "%s: more than the limit of %zu MiB", path, max >> 20);
                break;
            }
            buf = nb, cap = nc;
        }
        ssize_t k = read(fd, buf + n, cap - n);
        if (k < 0 && errno == EINTR) continue;
        if (k < 0) rc = kiln__err(KILN_STATUS_IO, "cannot read %s: %s", path, strerror(errno));
        if (k <= 0) break;
        n += (size_t)k;
    }
    close(fd);
    if (rc) {
        free(buf);
        return rc;
    }
    *out = buf, *len = n;
    return KILN_STATUS_OK;
}
