/* Atomic file writes (see include/kiln/io.h): the one place in kiln that creates
 * "<path>.tmp.<pid>", checks every write, flush and close, fsyncs, renames over the target
 * and fsyncs the folder, and the cleaner of temp files left by killed processes.
 *
 * The stream is a fopencookie() FILE over the temp file's descriptor, so the first failing
 * write(2) keeps its errno (ENOSPC, EIO, EFBIG) for the message: a plain stdio stream
 * only remembers that an error happened. */
#include "core/internal.h"
#include "kiln/io.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

struct kiln_atomic {
    char *path, *tmp;
    int fd;
    int err; /* errno of the first failed write, 0 while all went well */
    FILE *f;
};

static ssize_t cookie_write(void *c, const char *buf, size_t n)
{
    kiln_atomic *a = c;
    size_t done = 0;
    while (done < n && !a->err) {
        ssize_t w = write(a->fd, buf + done, n - done);
        if (w > 0) done += (size_t)w;
        else if (w < 0 && errno == EINTR) continue;
        else a->err = w < 0 ? errno : ENOSPC; /* write() of 0 bytes: the device is full */
    }
    return a->err ? 0 : (ssize_t)done; /* 0 marks the stream as failed */
}

static int cookie_close(void *c)
{
    (void)c; /* the descriptor is closed by commit/abort, after fsync */
    return 0;
}

static void atomic_free(kiln_atomic *a)
{
    if (a->f) fclose(a->f);
    if (a->fd >= 0) close(a->fd);
    free(a->path);
    free(a->tmp);
    free(a);
}

void kiln_atomic_abort(kiln_atomic *a)
{
    if (!a) return;
    int keep = errno;
    if (!a->err) a->err = ECANCELED; /* fclose must not write what is still buffered */
    if (a->f) fclose(a->f);
    a->f = NULL;
    unlink(a->tmp);
    atomic_free(a);
    errno = keep;
}

kiln_status kiln_atomic_begin(const char *path, kiln_atomic **out)
{
    if (out) *out = NULL;
    if (!path || !*path || !out) return kiln__err(KILN_STATUS_INVALID, "atomic_begin: path is NULL or empty");
    struct stat sb;
    if (stat(path, &sb) == 0 && S_ISDIR(sb.st_mode))
        return kiln__err(KILN_STATUS_IO, "cannot write %s: it is a folder", path);
    kiln_atomic *a = calloc(1, sizeof *a);
    size_t tlen = strlen(path) + 32;
    if (!a || !(a->path = strdup(path)) || !(a->tmp = malloc(tlen))) {
        if (a) free(a->path);
        free(a);
        return kiln__err(KILN_STATUS_NOMEM, "cannot write %s: out of memory", path);
    }
    snprintf(a->tmp, tlen, "%s.tmp.%ld", path, (long)getpid());
    a->fd = open(a->tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0666);
    if (a->fd < 0) {
        kiln_status s = kiln__err(KILN_STATUS_IO, "cannot write %s: cannot create %s: %s", path, a->tmp,
                                  strerror(errno));
        atomic_free(a);
        return s;
    }
    cookie_io_functions_t io = {.write = cookie_write, .close = cookie_close};
    if (!(a->f = fopencookie(a, "w", io))) {
        kiln_status s = kiln__err(KILN_STATUS_NOMEM, "cannot write %s: out of memory", path);
        kiln_atomic_abort(a);
        return s;
    }
    *out = a;
    return KILN_STATUS_OK;
}

FILE *kiln_atomic_stream(kiln_atomic *a) { return a ? a->f : NULL; }
const char *kiln_atomic_temp_path(const kiln_atomic *a) { return a ? a->tmp : NULL; }

/* fsync of the folder makes the rename itself durable. Filesystems that cannot sync a
 * folder say EINVAL; that is not a failure of this write. */
static int sync_dir(const char *path)
{
    const char *slash = strrchr(path, '/');
    char *dir = slash ? strndup(path, slash == path ? 1 : (size_t)(slash - path)) : strdup(".");
    if (!dir) return ENOMEM;
    int fd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC), err = 0;
    if (fd < 0 || (fsync(fd) != 0 && errno != EINVAL)) err = errno;
    if (fd >= 0) close(fd);
    free(dir);
    return err;
}

kiln_status kiln_atomic_commit(kiln_atomic *a)
{
    if (!a) return kiln__err(KILN_STATUS_INVALID, "atomic_commit: NULL handle");
    const char *step = "write";
    int err = 0;
    if (fflush(a->f) != 0 || ferror(a->f) || a->err) err = a->err ? a->err : errno ? errno : EIO;
    if (!err && fsync(a->fd) != 0) step = "fsync", err = errno;
    if (!err && close(a->fd) != 0) step = "close", err = errno;
    if (!err) a->fd = -1;
    if (!err && rename(a->tmp, a->path) != 0) step = "rename", err = errno;
    if (err) {
        kiln_status s = kiln__err(KILN_STATUS_IO, "cannot write %s: %s of %s failed: %s (the previous file is kept)",
                                  a->path, step, a->tmp, strerror(err));
        kiln_atomic_abort(a);
        return s;
    }
    kiln_status s = KILN_STATUS_OK;
    if ((err = sync_dir(a->path)))
        s = kiln__err(KILN_STATUS_IO, "%s: written, but its folder could not be synced: %s", a->path, strerror(err));
    atomic_free(a);
    return s;
}

kiln_status kiln_atomic_write(const char *path, const void *data, size_t n)
{
    if (!data && n) return kiln__err(KILN_STATUS_INVALID, "atomic_write: %s: data is NULL", path ? path : "");
    kiln_atomic *a;
    kiln_status s = kiln_atomic_begin(path, &a);
    if (s) return s;
    if (n) (void)fwrite(data, 1, n, a->f); /* a short write is reported by commit, with its cause */
    return kiln_atomic_commit(a);
}

/* "<anything>.tmp.<digits>": the pid, or 0 when name is not such a temp file. */
static long temp_pid(const char *name)
{
    const char *t = strstr(name, ".tmp.");
    if (!t || t == name) return 0;
    const char *last;
    while ((last = strstr(t + 1, ".tmp."))) t = last;
    const char *d = t + 5;
    if (!*d || strlen(d) > 9) return 0;
    long pid = 0;
    for (; *d; d++) {
        if (*d < '0' || *d > '9') return 0;
        pid = pid * 10 + (*d - '0');
    }
    return pid;
}

kiln_status kiln_atomic_clean_stale(const char *dir, int *removed)
{
    if (removed) *removed = 0;
    if (!dir || !*dir) return kiln__err(KILN_STATUS_INVALID, "atomic_clean_stale: dir is NULL or empty");
    DIR *d = opendir(dir);
    if (!d) return kiln__err(KILN_STATUS_IO, "cannot list %s: %s", dir, strerror(errno));
    int fd = dirfd(d), n = 0;
    struct dirent *e;
    kiln_status s = KILN_STATUS_OK;
    while ((e = readdir(d))) {
        long pid = temp_pid(e->d_name);
        if (pid <= 0 || pid == (long)getpid()) continue;
        /* a live process (ours or not) may still be writing it; EPERM means alive too */
        if (kill((pid_t)pid, 0) == 0 || errno != ESRCH) continue;
        struct stat sb;
        if (fstatat(fd, e->d_name, &sb, AT_SYMLINK_NOFOLLOW) != 0 || !S_ISREG(sb.st_mode)) continue;
        if (unlinkat(fd, e->d_name, 0) == 0) n++;
        else if (!s) s = kiln__err(KILN_STATUS_IO, "cannot remove the stale temp file %s/%s: %s", dir, e->d_name,
                                   strerror(errno));
    }
    closedir(d);
    if (removed) *removed = n;
    return s;
}
