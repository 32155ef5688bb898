/* Data sets and child processes for the CLI tests (see ku_cli.h). */
#include "util/ku_cli.h"

#include <errno.h>
#include <fcntl.h>
#include <spng.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

void ku_write_bytes(const char *path, const void *data, size_t n)
{
    FILE *f = fopen(path, "wb");
    cr_assert(f, "cannot write %s", path);
    cr_assert_eq(fwrite(data, 1, n, f), n, "short write to %s", path);
    cr_assert_eq(fclose(f), 0, "cannot close %s", path);
}

void ku_write_png(const char *path, int s, const uint8_t *px)
{
    spng_ctx *sc = spng_ctx_new(SPNG_CTX_ENCODER);
    spng_set_option(sc, SPNG_ENCODE_TO_BUFFER, 1);
    struct spng_ihdr ihdr = {.width = (uint32_t)s, .height = (uint32_t)s, .bit_depth = 8,
                             .color_type = SPNG_COLOR_TYPE_GRAYSCALE};
    spng_set_ihdr(sc, &ihdr);
    int rc = spng_encode_image(sc, px, (size_t)s * s, SPNG_FMT_PNG, SPNG_ENCODE_FINALIZE);
    cr_assert(rc == 0, "spng encode: %s", spng_strerror(rc));
    size_t n;
    void *png = spng_get_png_buffer(sc, &n, &rc);
    cr_assert(png);
    ku_write_bytes(path, png, n);
    free(png);
    spng_ctx_free(sc);
}

/* Class 0 is bright on the left half, class 1 on the right half; a little texture. */
static void class_image(uint8_t *px, int s, int cls, int i)
{
    for (int y = 0; y < s; y++)
        for (int x = 0; x < s; x++)
            px[y * s + x] = (uint8_t)(((x < s / 2) == (cls == 0) ? 190 : 40) + (x * 3 + y * 5 + i * 11) % 40);
}

void ku_make_image_folder(const char *root)
{
    uint8_t px[16 * 16];
    char path[512];
    const char *cls[2] = {"left", "right"};
    for (int c = 0; c < 2; c++)
        for (int i = 0; i < 12; i++) {
            const char *split = i < 8 ? "train" : "valid";
            snprintf(path, sizeof path, "%s/%s/%s", root, split, cls[c]);
            char cmd[600];
            snprintf(cmd, sizeof cmd, "mkdir -p '%s'", path);
            cr_assert(system(cmd) == 0);
            snprintf(path, sizeof path, "%s/%s/%s/%02d.png", root, split, cls[c], i);
            class_image(px, 16, c, i);
            ku_write_png(path, 16, px);
        }
}

void ku_write_idx(const char *path, uint32_t magic, const uint32_t *dims, int nd, const uint8_t *data, size_t n)
{
    uint8_t hdr[16];
    for (int i = 0; i < 4; i++) hdr[i] = (uint8_t)(magic >> (24 - 8 * i));
    for (int d = 0; d < nd; d++)
        for (int i = 0; i < 4; i++) hdr[4 + 4 * d + i] = (uint8_t)(dims[d] >> (24 - 8 * i));
    FILE *f = fopen(path, "wb");
    cr_assert(f, "cannot write %s", path);
    fwrite(hdr, 1, 4 + 4 * (size_t)nd, f);
    fwrite(data, 1, n, f);
    cr_assert_eq(fclose(f), 0, "cannot close %s", path);
}

void ku_make_idx(const char *dir, const char *pre, int n)
{
    cr_assert(n >= 1 && n <= 64, "ku_make_idx: n %d", n);
    uint8_t *img = malloc((size_t)n * 784), lab[64];
    cr_assert(img);
    for (int i = 0; i < n; i++) {
        lab[i] = (uint8_t)(i % 3);
        for (int q = 0; q < 784; q++) img[i * 784 + q] = (uint8_t)((q % 28) / 10 == lab[i] ? 220 : (q * 7 + i) % 30);
    }
    char a[512], b[512];
    snprintf(a, sizeof a, "%s/%s-images-idx3-ubyte", dir, pre);
    snprintf(b, sizeof b, "%s/%s-labels-idx1-ubyte", dir, pre);
    ku_write_idx(a, 0x803, (uint32_t[]){(uint32_t)n, 28, 28}, 3, img, (size_t)n * 784);
    ku_write_idx(b, 0x801, (uint32_t[]){(uint32_t)n}, 1, lab, (size_t)n);
    free(img);
}

static void redirect(int fd, const char *path)
{
    int f = open(path ? path : "/dev/null", O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
    if (f < 0 || dup2(f, fd) < 0) _exit(126);
    close(f);
}

pid_t ku_spawn(const char *bin, char *const argv[], const char *out, const char *err)
{
    fflush(NULL);
    pid_t pid = fork();
    cr_assert(pid >= 0, "fork failed");
    if (pid == 0) {
        redirect(1, out);
        redirect(2, err);
        execv(bin, argv);
        _exit(127);
    }
    return pid;
}

int ku_wait(pid_t pid)
{
    int st;
    pid_t r;
    while ((r = waitpid(pid, &st, 0)) < 0 && errno == EINTR) {
    }
    cr_assert(r == pid, "waitpid %d failed", (int)pid);
    return WIFEXITED(st) ? WEXITSTATUS(st) : 128 + WTERMSIG(st);
}
