/* Mapping a whole file read-only, for the readers that index into it (safetensors, .pth). */
#include "io/safetensors.h"

#include <errno.h>
#include <fcntl.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

kiln_status kiln__io_map(const char *who, const char *path, unsigned char **map, size_t *size)
{
    *map = NULL;
    *size = 0;
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) return kiln__err(KILN_STATUS_IO, "%s: %s: cannot open: %s", who, path, strerror(errno));
    struct stat st;
    if (fstat(fd, &st) < 0 || !S_ISREG(st.st_mode)) {
        close(fd);
        return kiln__err(KILN_STATUS_IO, "%s: %s: not a regular file", who, path);
    }
    if (st.st_size == 0) {
        close(fd);
        return KILN_STATUS_OK;
    }
    void *m = mmap(NULL, (size_t)st.st_size, PROT_READ, MAP_PRIVATE, fd, 0);
    int err = errno;
    close(fd);
    if (m == MAP_FAILED)
        return kiln__err(KILN_STATUS_IO, "%s: %s: cannot map %llu bytes: %s", who, path,
                         (unsigned long long)st.st_size, strerror(err));
    *map = m;
    *size = (size_t)st.st_size;
    return KILN_STATUS_OK;
}
