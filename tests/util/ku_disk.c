/* tmpfs mounts and disk filling for the disk-full tests (see ku_disk.h). */
#include "util/ku_disk.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mount.h>
#include <sys/stat.h>
#include <sys/statvfs.h>
#include <unistd.h>

bool ku_tmpfs_mount(char *dir, size_t dir_cap, size_t size_kb, char *why, size_t why_cap)
{
    snprintf(dir, dir_cap, "/tmp/kiln_disk.XXXXXX");
    cr_assert(mkdtemp(dir), "mkdtemp failed");
    char opt[64];
    snprintf(opt, sizeof opt, "size=%zuk,mode=0755", size_kb);
    if (mount("tmpfs", dir, "tmpfs", MS_NOSUID | MS_NODEV, opt) != 0) {
        snprintf(why, why_cap, "cannot mount a tmpfs on %s (%s; needs root or CAP_SYS_ADMIN)", dir, strerror(errno));
        return false;
    }
    return true;
}

void ku_tmpfs_unmount(const char *dir)
{
    umount2(dir, MNT_DETACH);
    rmdir(dir);
}

void ku_fill_disk(const char *dir, size_t leave)
{
    char path[512];
    snprintf(path, sizeof path, "%s/filler", dir);
    int fd = open(path, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0644);
    cr_assert(fd >= 0, "cannot create %s: %s", path, strerror(errno));
    static const char zero[4096];
    for (;;) {
        ssize_t w = write(fd, zero, sizeof zero);
        if (w <= 0) {
            cr_assert(w == 0 || errno == ENOSPC, "filling %s: %s", path, strerror(errno));
            break;
        }
    }
    struct stat st;
    cr_assert(fstat(fd, &st) == 0);
    cr_assert((size_t)st.st_size >= leave, "%s: only %lld bytes could be filled", dir, (long long)st.st_size);
    cr_assert(ftruncate(fd, st.st_size - (off_t)leave) == 0, "truncating %s: %s", path, strerror(errno));
    close(fd);
    struct statvfs vs;
    cr_assert(statvfs(dir, &vs) == 0);
    size_t avail = (size_t)vs.f_bavail * vs.f_frsize;
    cr_assert(avail <= leave + 4096, "%s: %zu bytes free after filling, wanted %zu", dir, avail, leave);
}

unsigned char *ku_read_all(const char *path, size_t *n)
{
    FILE *f = fopen(path, "rb");
    cr_assert(f, "cannot open %s: %s", path, strerror(errno));
    size_t cap = 1 << 16, len = 0, got;
    unsigned char *b = malloc(cap);
    cr_assert(b);
    while ((got = fread(b + len, 1, cap - len, f)) > 0)
        if ((len += got) == cap) cr_assert(b = realloc(b, cap *= 2));
    fclose(f);
    *n = len;
    return b;
}

void ku_expect_same_file(const char *path, const unsigned char *want, size_t n)
{
    size_t m;
    unsigned char *got = ku_read_all(path, &m);
    cr_expect(m == n && !memcmp(got, want, n), "%s changed: %zu bytes, was %zu", path, m, n);
    free(got);
}

void ku_expect_no_temp(const char *dir)
{
    DIR *d = opendir(dir);
    cr_assert(d, "no folder %s", dir);
    for (struct dirent *e; (e = readdir(d));)
        cr_expect(!strstr(e->d_name, ".tmp."), "temp file %s/%s left behind", dir, e->d_name);
    closedir(d);
}
